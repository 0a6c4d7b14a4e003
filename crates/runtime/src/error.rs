//! The runtime's error type.

use crate::ids::{ComponentId, PromiseId, WorkerId};

/// Everything that can go wrong when using the runtime.
///
/// Messages say what failed and with which id, in lower case, so they can be
/// shown to users as they are (the CLI and the REST API do).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a WebAssembly component, or it failed validation.
    #[error("invalid component: {reason}")]
    InvalidComponent {
        /// Why the component was refused.
        reason: String,
    },
    /// The component imports interfaces that Vow does not provide.
    #[error("component imports what vow does not provide: {}", imports.join(", "))]
    MissingImports {
        /// One entry per unsatisfied import: its name, and for a name that
        /// exists with another shape, why it does not match.
        imports: Vec<String>,
    },
    /// No component has this id.
    #[error("component {0} not found")]
    ComponentNotFound(ComponentId),
    /// No worker has this id.
    #[error("worker {0} not found")]
    WorkerNotFound(WorkerId),
    /// A worker with this id already exists.
    #[error("worker {0} already exists")]
    WorkerExists(WorkerId),
    /// A worker name is empty, too long or contains forbidden characters.
    #[error("invalid worker name {name:?}: {reason}")]
    InvalidWorkerName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `resume` of a worker that is not interrupted.
    #[error(
        "worker {worker} is not interrupted (it is {status}); only an interrupted worker can be resumed"
    )]
    NotInterrupted {
        /// The worker.
        worker: WorkerId,
        /// What it is doing instead.
        status: crate::worker::WorkerStatus,
    },
    /// The worker failed earlier and takes no more invocations.
    #[error("worker {worker} has failed and takes no more invocations: {reason}")]
    WorkerFailed {
        /// The failed worker.
        worker: WorkerId,
        /// The error that failed it.
        reason: String,
    },
    /// The component has no exported function of this name.
    #[error("component {component} exports no function {function:?}")]
    FunctionNotFound {
        /// The component that was searched.
        component: ComponentId,
        /// The requested function name.
        function: String,
    },
    /// The arguments do not match the function's parameters.
    #[error("invalid arguments for {function}: {reason}")]
    InvalidArguments {
        /// The invoked function.
        function: String,
        /// Which parameter is wrong and how.
        reason: String,
    },
    /// The guest trapped (or a host call trapped it); the worker is now failed.
    #[error("invocation of {function} on worker {worker} trapped: {message}")]
    Trap {
        /// The worker that trapped.
        worker: WorkerId,
        /// The function being invoked.
        function: String,
        /// The trap message and its causes.
        message: String,
    },
    /// The invocation ran longer than the configured timeout; the worker is
    /// now failed because its instance was interrupted mid-call.
    #[error("invocation of {function} on worker {worker} timed out after {timeout:?}")]
    Timeout {
        /// The worker that timed out.
        worker: WorkerId,
        /// The function being invoked.
        function: String,
        /// The configured limit.
        timeout: std::time::Duration,
    },
    /// The worker was deleted before the invocation finished.
    #[error("worker {0} was deleted before the invocation finished")]
    WorkerDeleted(WorkerId),
    /// On a node of a cluster: the node let go of the worker (it left
    /// memory with nothing to do) while this request was on its way to
    /// it; another node may take it now. Retrying is right.
    #[error(
        "worker {0} left this node while the request was on its way to it: retry, and the node that gets the request takes it"
    )]
    WorkerMoved(WorkerId),
    /// The worker's queue is full: try again later.
    #[error("worker {worker} has {limit} invocations waiting, its limit: try again later")]
    QueueFull {
        /// The worker.
        worker: WorkerId,
        /// The limit.
        limit: usize,
    },
    /// Starting one more worker would pass a limit on the number of
    /// workers: of the whole executor (`component` is `None`,
    /// [`max_workers`](crate::ExecutorBuilder::max_workers)) or of one
    /// component
    /// ([`max_workers_per_component`](crate::ExecutorBuilder::max_workers_per_component)).
    /// Workers that are evicted, parked or failed count until deleted.
    #[error("cannot start worker {worker}: {}", worker_limit(.component.as_ref(), *.limit))]
    TooManyWorkers {
        /// The worker that was refused.
        worker: WorkerId,
        /// The component whose limit was reached, or `None` for the
        /// executor's.
        component: Option<ComponentId>,
        /// The limit.
        limit: usize,
    },
    /// A completion or rejection whose payload is larger than the limit
    /// ([`max_payload`](crate::ExecutorBuilder::max_payload)); nothing was
    /// settled.
    #[error(
        "the payload of promise {promise} is {size} bytes, more than the limit of {limit} (--max-payload)"
    )]
    PayloadTooLarge {
        /// The promise.
        promise: PromiseId,
        /// The payload's size in bytes (a rejection's message and data).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No promise has this id (never created, or deleted).
    #[error("promise {0} not found")]
    PromiseNotFound(PromiseId),
    /// `when` or `then` was asked to run what cannot settle a promise (an
    /// unknown export, or one of another shape); the reason says which.
    #[error("{0}")]
    CannotSettle(String),
    /// A payload that is not a value of the promise's declared type.
    #[error("the payload of promise {promise} is not a {payload_type}: {reason}")]
    InvalidPayload {
        /// The promise.
        promise: PromiseId,
        /// Its declared type, as WIT text.
        payload_type: String,
        /// What is wrong, naming the place in the value.
        reason: String,
    },
    /// A promise id in text form could not be parsed.
    #[error("invalid promise id {text:?}: {reason}")]
    InvalidPromiseId {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating a worker's instance failed (e.g. a pooling limit was reached).
    #[error("cannot start worker {worker}: {reason}")]
    Instantiation {
        /// The worker being started.
        worker: WorkerId,
        /// What wasmtime reported.
        reason: String,
    },
    /// The invocation failed in an earlier run of this process or another;
    /// its outcome was read back from the store.
    #[error("invocation of {function} on worker {worker} failed: {message}")]
    InvocationFailed {
        /// The worker.
        worker: WorkerId,
        /// The function that was invoked.
        function: String,
        /// The recorded error.
        message: String,
    },
    /// A completion link token was refused, or a link cannot be made.
    #[error(transparent)]
    Link(#[from] crate::links::LinkError),
    /// The promise already settled, so what was asked (a completion link)
    /// could do nothing.
    #[error("promise {0} is already settled")]
    PromiseSettled(PromiseId),
    /// The store failed (it could not be opened, is full, or a write was
    /// refused); nothing that was acknowledged before is lost.
    #[error(transparent)]
    Store(#[from] vow_store::Error),
    /// A stored record could not be read back.
    #[error("stored record cannot be read: {0}")]
    Storage(String),
    /// The executor is shutting down or no longer running.
    #[error("the executor has shut down")]
    ShutDown,
    /// Engine configuration or another wasmtime setting was refused.
    #[error("engine configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done ("reading", "writing cache file", ...).
        action: &'static str,
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error (part of the message, so not also a `source`).
        cause: std::sync::Arc<std::io::Error>,
    },
}

/// The reason of [`Error::TooManyWorkers`], naming the flag that raises it.
fn worker_limit(component: Option<&ComponentId>, limit: usize) -> String {
    match component {
        Some(component) => format!(
            "component {component} has {limit} workers, the limit (--max-workers-per-component); delete some or raise it"
        ),
        None => {
            format!("there are {limit} workers, the limit (--max-workers); delete some or raise it")
        }
    }
}

/// Result type of the runtime, with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a wasmtime error with its chain of causes on one line, leaving out
/// the multi-line wasm backtrace context that wasmtime attaches to traps.
pub(crate) fn chain(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        error.root_cause().to_string()
    } else {
        parts.join(": ")
    }
}
