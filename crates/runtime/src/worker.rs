//! Workers: one Store and instance each, a mailbox of invocations executed one
//! at a time in arrival order, and status that can be read at any moment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{Instance, Val};
use wasmtime::{Store, StoreLimits};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::component::ExportFunc;
use crate::error::{Error, Result, chain};
use crate::host::GolemCtx;
use crate::ids::{ComponentId, WorkerId};
use crate::oplog::{Oplog, OplogEntry};
use crate::output::Capture;
use crate::promise::Promises;

/// What a worker is doing; the same states as the WIT `worker-status`, in the
/// same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum WorkerStatus {
    /// Executing an invocation.
    Running = 0,
    /// Waiting for an invocation.
    Idle = 1,
    /// In an invocation, parked in `await-promise`.
    Suspended = 2,
    /// Interrupted mid-invocation (not produced yet; reserved for durability).
    Interrupted = 3,
    /// Retrying a failed invocation (not produced yet; reserved for retries).
    Retrying = 4,
    /// An invocation trapped or timed out; the worker takes no more invocations.
    Failed = 5,
    /// Finished for good (not produced yet).
    Exited = 6,
}

impl WorkerStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Running,
            1 => Self::Idle,
            2 => Self::Suspended,
            3 => Self::Interrupted,
            4 => Self::Retrying,
            5 => Self::Failed,
            _ => Self::Exited,
        }
    }

    /// The status as the WIT spells it (`running`, `idle`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Suspended => "suspended",
            Self::Interrupted => "interrupted",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Exited => "exited",
        }
    }
}

impl std::fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of what the runtime knows about a worker.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerMetadata {
    /// The worker.
    pub id: WorkerId,
    /// Command-line arguments the guest sees.
    pub args: Vec<String>,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// Current status.
    pub status: WorkerStatus,
    /// Version of the component it runs (always 0 until updates exist).
    pub component_version: u64,
    /// Retries of the current invocation (always 0 until retries exist).
    pub retry_count: u64,
    /// When the worker was started.
    pub created_at: SystemTime,
    /// The error that failed the worker, if it failed.
    pub last_error: Option<String>,
    /// Invocations queued behind the one in progress.
    pub pending_invocations: usize,
}

impl WorkerMetadata {
    /// Creation time in milliseconds since the Unix epoch (the unit of the
    /// WIT `worker-created-at-filter`).
    pub fn created_at_millis(&self) -> u64 {
        self.created_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Arguments and environment of a new worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Command-line arguments the guest sees.
    pub args: Vec<String>,
    /// Environment variables the guest sees, in order.
    pub env: Vec<(String, String)>,
}

/// One queued invocation.
pub(crate) struct Job {
    pub(crate) export: Arc<ExportFunc>,
    pub(crate) params: Vec<Val>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Val>>>,
}

/// The part of a worker that lives outside its Store: readable at any time,
/// shared by the registry, the worker task and the worker's host state.
pub(crate) struct WorkerEntry {
    pub(crate) id: WorkerId,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) created_at: SystemTime,
    pub(crate) promises: Promises,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    status: AtomicU8,
    queued: AtomicUsize,
    last_error: Mutex<Option<String>>,
    oplog: Mutex<Oplog>,
    mailbox: mpsc::UnboundedSender<Job>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Outcomes of recent invocations that carried an idempotency key.
    idempotency: Mutex<VecDeque<(String, SharedOutcome)>>,
}

/// Idempotency keys remembered per worker; older ones are forgotten first.
const IDEMPOTENCY_KEYS: usize = 1024;

pub(crate) type SharedOutcome =
    futures::future::Shared<futures::future::BoxFuture<'static, Result<Vec<Val>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Host code does not panic while holding these locks; if it ever did,
    // the data is still consistent enough to read.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WorkerEntry {
    pub(crate) fn new(
        id: WorkerId,
        config: WorkerConfig,
        promises: Promises,
        output_limit: usize,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Job>) {
        let (mailbox, rx) = mpsc::unbounded_channel();
        let oplog = Oplog::new(id.clone(), config.args.clone(), config.env.clone());
        let entry = Arc::new(Self {
            id,
            args: config.args,
            env: config.env,
            created_at: SystemTime::now(),
            promises,
            stdout: Capture::new(output_limit),
            stderr: Capture::new(output_limit),
            status: AtomicU8::new(WorkerStatus::Idle as u8),
            queued: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            oplog: Mutex::new(oplog),
            mailbox,
            task: Mutex::new(None),
            idempotency: Mutex::new(VecDeque::new()),
        });
        (entry, rx)
    }

    pub(crate) fn status(&self) -> WorkerStatus {
        WorkerStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, status: WorkerStatus) {
        self.status.store(status as u8, Ordering::Release);
    }

    pub(crate) fn oplog(&self) -> MutexGuard<'_, Oplog> {
        lock(&self.oplog)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    fn fail(&self, reason: String) {
        *lock(&self.last_error) = Some(reason);
        self.set_status(WorkerStatus::Failed);
    }

    pub(crate) fn metadata(&self) -> WorkerMetadata {
        WorkerMetadata {
            id: self.id.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            status: self.status(),
            component_version: 0,
            retry_count: 0,
            created_at: self.created_at,
            last_error: self.last_error(),
            pending_invocations: self.queued.load(Ordering::Acquire),
        }
    }

    /// Queues a job; it runs after every job queued before it.
    pub(crate) fn enqueue(&self, job: Job) -> Result<()> {
        if self.status() == WorkerStatus::Failed {
            return Err(Error::WorkerFailed {
                worker: self.id.clone(),
                reason: self.last_error().unwrap_or_default(),
            });
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.mailbox.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Error::WorkerDeleted(self.id.clone())
        })
    }

    pub(crate) fn idempotent_outcome(&self, key: &str) -> Option<SharedOutcome> {
        lock(&self.idempotency)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, o)| o.clone())
    }

    pub(crate) fn remember_outcome(&self, key: String, outcome: SharedOutcome) {
        let mut keys = lock(&self.idempotency);
        if keys.len() == IDEMPOTENCY_KEYS {
            keys.pop_front();
        }
        keys.push_back((key, outcome));
    }

    pub(crate) fn set_task(&self, handle: tokio::task::AbortHandle) {
        *lock(&self.task) = Some(handle);
    }

    /// Stops the worker task; an invocation in progress is dropped with its Store.
    pub(crate) fn abort(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// All live workers, by id.
#[derive(Default)]
pub(crate) struct Registry {
    workers: RwLock<HashMap<WorkerId, Arc<WorkerEntry>>>,
}

impl Registry {
    pub(crate) fn get(&self, id: &WorkerId) -> Option<Arc<WorkerEntry>> {
        self.workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Inserts a worker unless the id is taken.
    pub(crate) fn insert(&self, entry: Arc<WorkerEntry>) -> Result<()> {
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        if workers.contains_key(&entry.id) {
            return Err(Error::WorkerExists(entry.id.clone()));
        }
        workers.insert(entry.id.clone(), entry);
        Ok(())
    }

    pub(crate) fn remove(&self, id: &WorkerId) -> Option<Arc<WorkerEntry>> {
        self.workers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Workers of one component (or all), ordered by name.
    pub(crate) fn of_component(&self, component: ComponentId) -> Vec<Arc<WorkerEntry>> {
        let mut out: Vec<_> = self
            .workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|w| w.id.component_id == component)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub(crate) fn all(&self) -> Vec<Arc<WorkerEntry>> {
        let mut out: Vec<_> = self
            .workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub(crate) fn drain(&self) -> Vec<Arc<WorkerEntry>> {
        self.workers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect()
    }
}

/// Store data of a worker.
pub(crate) struct WorkerState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) golem: GolemCtx,
    pub(crate) limits: StoreLimits,
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Runs a worker's mailbox until the worker is deleted.
pub(crate) async fn run(
    store: Store<WorkerState>,
    instance: Instance,
    mut mailbox: mpsc::UnboundedReceiver<Job>,
    entry: Arc<WorkerEntry>,
    timeout: Option<Duration>,
) {
    // `None` once an invocation failed: the instance cannot be entered again.
    let mut store = Some(store);
    while let Some(job) = mailbox.recv().await {
        entry.queued.fetch_sub(1, Ordering::AcqRel);
        let Some(current) = store.as_mut() else {
            let _ = job.reply.send(Err(Error::WorkerFailed {
                worker: entry.id.clone(),
                reason: entry.last_error().unwrap_or_default(),
            }));
            continue;
        };
        let function = job.export.name.clone();
        let outcome = invoke(current, instance, &entry, &job, timeout).await;
        if let Err(error) = &outcome {
            // A trapped or interrupted instance cannot be entered again: drop
            // the Store now and fail the worker.
            tracing::warn!(worker = %entry.id, function, %error, "invocation failed");
            entry.fail(error.to_string());
            store = None;
        } else {
            entry.set_status(WorkerStatus::Idle);
        }
        let _ = job.reply.send(outcome);
    }
}

async fn invoke(
    store: &mut Store<WorkerState>,
    instance: Instance,
    entry: &WorkerEntry,
    job: &Job,
    timeout: Option<Duration>,
) -> Result<Vec<Val>> {
    let export = &job.export;
    entry.set_status(WorkerStatus::Running);
    entry.oplog().append(OplogEntry::InvocationStarted {
        function: export.name.clone(),
        idempotency_key: job.idempotency_key.clone(),
    });
    let func = instance
        .get_func(&mut *store, export.index)
        .ok_or_else(|| Error::FunctionNotFound {
            component: entry.id.component_id,
            function: export.name.clone(),
        })?;
    let mut results = vec![Val::Bool(false); export.result_count];
    let call = func.call_async(&mut *store, &job.params, &mut results);
    let outcome = match timeout {
        None => call.await,
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(outcome) => outcome,
            Err(_) => {
                entry
                    .oplog()
                    .append(OplogEntry::InvocationFinished { ok: false });
                return Err(Error::Timeout {
                    worker: entry.id.clone(),
                    function: export.name.clone(),
                    timeout: limit,
                });
            }
        },
    };
    entry.oplog().append(OplogEntry::InvocationFinished {
        ok: outcome.is_ok(),
    });
    match outcome {
        Ok(()) => Ok(results),
        Err(error) => Err(Error::Trap {
            worker: entry.id.clone(),
            function: export.name.clone(),
            message: chain(&error),
        }),
    }
}
