//! The executor: engine, linker, components, workers and the promise dispatcher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use tokio::sync::oneshot;
use wasmtime::StoreLimitsBuilder;
use wasmtime::component::types::Type;
use wasmtime::component::{Linker, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{ResourceTable, WasiCtxBuilder};

use crate::component::{self, ComponentInfo, LoadedComponent};
use crate::error::{Error, Result, chain};
use crate::host::{GolemCtx, HasHost, HostView};
use crate::ids::{ComponentId, PromiseId, WorkerId, validate_worker_name};
use crate::oplog::OplogRecord;
use crate::output::WorkerOutput;
use crate::promise::{PromiseFilter, PromiseInfo, Promises};
use crate::values;
use crate::worker::{
    self, Job, Registry, WorkerConfig, WorkerEntry, WorkerMetadata, WorkerState, WorkerStatus,
};

/// Settings of an [`Executor`]; see [`ExecutorBuilder`] for defaults.
#[derive(Clone, Debug)]
struct Settings {
    epoch_interval: Duration,
    memory_limit: usize,
    invocation_timeout: Option<Duration>,
    pooling: Option<PoolingAllocationConfig>,
    cache_dir: Option<PathBuf>,
    output_limit: usize,
    max_resources: usize,
}

/// Configures and builds an [`Executor`].
#[derive(Clone, Debug)]
pub struct ExecutorBuilder {
    settings: Settings,
}

impl Default for ExecutorBuilder {
    fn default() -> Self {
        Self {
            settings: Settings {
                epoch_interval: Duration::from_millis(10),
                memory_limit: 256 << 20,
                invocation_timeout: None,
                pooling: None,
                cache_dir: None,
                output_limit: 1 << 20,
                max_resources: 10_000,
            },
        }
    }
}

impl ExecutorBuilder {
    /// How often a running guest yields to other work (default 10 ms). A guest
    /// in a busy loop is preempted at this interval, so it cannot starve other
    /// workers.
    pub fn epoch_interval(mut self, interval: Duration) -> Self {
        self.settings.epoch_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Largest linear memory a worker may grow to, in bytes (default 256 MiB).
    /// Growing past it traps that worker's invocation.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.settings.memory_limit = bytes;
        self
    }

    /// Longest an invocation may take, waiting on promises included (default:
    /// no limit). An invocation that runs out fails, and so does its worker,
    /// because an interrupted instance cannot be entered again.
    pub fn invocation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.invocation_timeout = timeout;
        self
    }

    /// Uses wasmtime's pooling allocator with this configuration. Faster
    /// worker starts, fewer memory mappings; its `total_*` limits cap the
    /// number of live workers, and starting one more fails with
    /// [`Error::Instantiation`].
    pub fn pooling(mut self, config: PoolingAllocationConfig) -> Self {
        self.settings.pooling = Some(config);
        self
    }

    /// Caches compiled components in this directory, keyed by content hash
    /// and engine configuration, so a component is compiled once.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.cache_dir = Some(dir.into());
        self
    }

    /// Bytes of stdout and of stderr kept per worker (default 1 MiB each);
    /// older output is dropped first.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.settings.output_limit = bytes.max(1);
        self
    }

    /// Most host resources (streams, listings, ...) one worker may hold at
    /// once (default 10 000).
    pub fn max_resources(mut self, count: usize) -> Self {
        self.settings.max_resources = count;
        self
    }

    /// Builds the executor. Must be called inside a tokio runtime, which runs
    /// the promise dispatcher and the workers.
    pub fn build(self) -> Result<Executor> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("Executor::build must be called inside a tokio runtime".into())
        })?;
        let settings = self.settings;
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Guests use the classic (WASIp2) call path; concurrent component
        // model support would add per-call bookkeeping nothing uses yet.
        config.concurrency_support(false);
        if let Some(pooling) = &settings.pooling {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling.clone()));
        }
        let engine = Engine::new(&config).map_err(|e| Error::Config(chain(&e)))?;
        let linker = new_linker(&engine)?;
        let (promises, dispatcher) = Promises::spawn();
        let ticker = Ticker::start(engine.clone(), settings.epoch_interval);
        Ok(Executor {
            inner: Arc::new(Inner {
                engine,
                linker,
                settings,
                components: RwLock::new(HashMap::new()),
                registry: Arc::new(Registry::default()),
                promises,
                dispatcher,
                _ticker: ticker,
            }),
        })
    }
}

/// A linker with WASI 0.2 and `golem:api/host@1.1.0`.
fn new_linker(engine: &Engine) -> Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    let link = |linker: &mut Linker<WorkerState>| -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        crate::bindings::golem::api::host::add_to_linker::<_, HasHost>(linker, host_view)?;
        crate::bindings::golem::rpc::types::add_to_linker::<_, HasHost>(linker, host_view)?;
        Ok(())
    };
    link(&mut linker).map_err(|e| Error::Config(chain(&e)))?;
    Ok(linker)
}

fn host_view(state: &mut WorkerState) -> HostView<'_> {
    HostView {
        ctx: &mut state.golem,
        table: &mut state.table,
    }
}

/// Advances the engine's epoch on a dedicated thread so running guests yield.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("vow-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    engine.increment_epoch();
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the epoch thread; busy guests will not yield");
        }
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<WorkerState>,
    settings: Settings,
    components: RwLock<HashMap<ComponentId, Arc<LoadedComponent>>>,
    registry: Arc<Registry>,
    promises: Promises,
    dispatcher: tokio::task::JoinHandle<()>,
    _ticker: Ticker,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Worker tasks and parked waiters hold each other alive through the
        // dispatcher, so stop them explicitly.
        for worker in self.registry.drain() {
            worker.abort();
        }
        self.dispatcher.abort();
    }
}

/// Types of an exported function, from [`Executor::function_type`].
#[derive(Clone, Debug)]
pub struct FunctionType {
    /// The export's canonical name (`run`, `iface.{run}`).
    pub name: String,
    /// Parameter names and types, in order.
    pub params: Vec<(String, Type)>,
    /// Result types (zero or one).
    pub results: Vec<Type>,
}

/// An invocation request.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Name of the exported function (see [`ExportInfo::name`](crate::ExportInfo)).
    pub function: String,
    /// Arguments, checked against the function's parameter types.
    pub params: Vec<Val>,
    /// A key that makes the request idempotent per worker: a second request
    /// with the same key runs nothing and yields the first one's outcome.
    pub idempotency_key: Option<String>,
}

impl Invocation {
    /// An invocation without an idempotency key.
    pub fn new(function: impl Into<String>, params: Vec<Val>) -> Self {
        Self {
            function: function.into(),
            params,
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

use crate::worker::SharedOutcome;

/// An accepted invocation. Await [`result`](Self::result) for its outcome, or
/// drop the handle: the invocation runs either way.
#[must_use = "dropping the handle does not cancel the invocation; use `result` to get its outcome"]
pub struct InvocationHandle {
    outcome: SharedOutcome,
    /// False when an earlier request with the same idempotency key exists.
    pub fresh: bool,
}

impl InvocationHandle {
    /// Waits for the invocation to finish and returns its results.
    pub async fn result(self) -> Result<Vec<Val>> {
        self.outcome.await
    }
}

/// Runs components that import `golem:api/host@1.1.0`.
///
/// Cheap to clone; all clones share the same engine, workers and promises.
/// Dropping the last clone stops every worker.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

impl Executor {
    /// A builder with the default settings.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The wasmtime engine, for embedders that compile or link other code on
    /// the same engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles and adds a component. Refuses bytes that are not a valid
    /// component and components whose imports Vow cannot satisfy (the error
    /// names each one).
    pub async fn add_component(
        &self,
        name: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<ComponentId> {
        let bytes = Arc::new(bytes.into());
        let sha256 = component::sha256_of(&bytes);
        let compiled = component::compile(
            &self.inner.engine,
            Arc::clone(&bytes),
            &sha256,
            self.inner.settings.cache_dir.as_deref(),
        )
        .await?;
        let id = ComponentId::new_random();
        let engine = &self.inner.engine;
        let loaded = component::load(
            engine,
            &self.inner.linker,
            || new_linker(engine),
            compiled,
            component::Source {
                id,
                name: name.to_owned(),
                size: bytes.len(),
                sha256,
            },
        )?;
        tracing::info!(component = %id, name, exports = loaded.info.exports.len(), "component added");
        self.inner
            .components
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(loaded));
        Ok(id)
    }

    /// Reads a component file and adds it under the file's stem as name.
    pub async fn add_component_file(&self, path: impl AsRef<Path>) -> Result<ComponentId> {
        let path = path.as_ref();
        let bytes = tokio::fs::read(path).await.map_err(|cause| Error::Io {
            action: "reading",
            path: path.to_owned(),
            cause: Arc::new(cause),
        })?;
        let name = path.file_stem().map_or_else(
            || "component".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        );
        self.add_component(&name, bytes).await
    }

    /// Every component, ordered by name.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let mut out: Vec<_> = self
            .inner
            .components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|c| c.info.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }

    /// One component's description.
    pub fn component(&self, id: ComponentId) -> Result<ComponentInfo> {
        self.loaded(id).map(|c| c.info.clone())
    }

    /// The parameter and result types of an export, for converting values
    /// from other encodings (JSON, WAVE text) before invoking it.
    pub fn function_type(&self, component: ComponentId, function: &str) -> Result<FunctionType> {
        let export =
            self.loaded(component)?
                .export(function)
                .ok_or_else(|| Error::FunctionNotFound {
                    component,
                    function: function.to_owned(),
                })?;
        Ok(FunctionType {
            name: export.name.clone(),
            params: export.ty.params().map(|(n, t)| (n.to_owned(), t)).collect(),
            results: export.ty.results().collect(),
        })
    }

    fn loaded(&self, id: ComponentId) -> Result<Arc<LoadedComponent>> {
        self.inner
            .components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or(Error::ComponentNotFound(id))
    }

    fn worker(&self, id: &WorkerId) -> Result<Arc<WorkerEntry>> {
        self.inner
            .registry
            .get(id)
            .ok_or_else(|| Error::WorkerNotFound(id.clone()))
    }

    /// Starts a worker: instantiates the component in a Store of its own.
    pub async fn start_worker(
        &self,
        component: ComponentId,
        name: &str,
        config: WorkerConfig,
    ) -> Result<WorkerId> {
        validate_worker_name(name)?;
        let loaded = self.loaded(component)?;
        let id = WorkerId::new(component, name);
        if self.inner.registry.get(&id).is_some() {
            return Err(Error::WorkerExists(id));
        }
        let settings = &self.inner.settings;
        let (entry, mailbox) = WorkerEntry::new(
            id.clone(),
            config,
            self.inner.promises.clone(),
            settings.output_limit,
        );
        let wasi = WasiCtxBuilder::new()
            .args(&entry.args)
            .envs(&entry.env)
            .stdout(entry.stdout.clone())
            .stderr(entry.stderr.clone())
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(settings.max_resources);
        let state = WorkerState {
            wasi,
            table,
            golem: GolemCtx::new(Arc::clone(&entry), Arc::downgrade(&self.inner.registry)),
            limits: StoreLimitsBuilder::new()
                .memory_size(settings.memory_limit)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_async_yield_and_update(1);
        let instance = loaded
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| Error::Instantiation {
                worker: id.clone(),
                reason: chain(&e),
            })?;
        // Another start of the same name may have won the race while this
        // one was instantiating.
        self.inner.registry.insert(Arc::clone(&entry))?;
        let task = tokio::spawn(worker::run(
            store,
            instance,
            mailbox,
            Arc::clone(&entry),
            settings.invocation_timeout,
        ));
        entry.set_task(task.abort_handle());
        tracing::info!(worker = %id, "worker started");
        Ok(id)
    }

    /// Queues an invocation after any already queued on the worker and
    /// returns at once. Unknown functions and wrong arguments are refused
    /// here, before anything is queued.
    pub fn submit(&self, worker: &WorkerId, invocation: Invocation) -> Result<InvocationHandle> {
        let entry = self.worker(worker)?;
        let loaded = self.loaded(worker.component_id)?;
        let export =
            loaded
                .export(&invocation.function)
                .ok_or_else(|| Error::FunctionNotFound {
                    component: worker.component_id,
                    function: invocation.function.clone(),
                })?;
        check_params(&export, &invocation.params)?;
        if let Some(key) = &invocation.idempotency_key
            && let Some(outcome) = entry.idempotent_outcome(key)
        {
            return Ok(InvocationHandle {
                outcome,
                fresh: false,
            });
        }
        let (reply, rx) = oneshot::channel();
        let id = worker.clone();
        let outcome: SharedOutcome =
            async move { rx.await.unwrap_or(Err(Error::WorkerDeleted(id))) }
                .boxed()
                .shared();
        if let Some(key) = &invocation.idempotency_key {
            entry.remember_outcome(key.clone(), outcome.clone());
        }
        entry.enqueue(Job {
            export,
            params: invocation.params,
            idempotency_key: invocation.idempotency_key,
            reply,
        })?;
        Ok(InvocationHandle {
            outcome,
            fresh: true,
        })
    }

    /// Queues an invocation and forgets it (fire and forget). Its outcome
    /// shows in the worker's status, last error and output.
    pub fn enqueue(&self, worker: &WorkerId, invocation: Invocation) -> Result<()> {
        self.submit(worker, invocation).map(drop)
    }

    /// Invokes an exported function and waits for its results.
    pub async fn invoke(
        &self,
        worker: &WorkerId,
        function: &str,
        params: Vec<Val>,
    ) -> Result<Vec<Val>> {
        self.submit(worker, Invocation::new(function, params))?
            .result()
            .await
    }

    /// Completes a promise from the host. `Ok(true)` if this call completed
    /// it, `Ok(false)` if it was already completed (the first payload stays).
    pub async fn complete_promise(&self, id: &PromiseId, data: impl Into<Bytes>) -> Result<bool> {
        self.inner.promises.complete(id.clone(), data.into()).await
    }

    /// Promises matching the filter, ordered by worker and index.
    pub async fn promises(&self, filter: PromiseFilter) -> Result<Vec<PromiseInfo>> {
        self.inner.promises.list(filter).await
    }

    /// A worker's current status.
    pub fn worker_status(&self, id: &WorkerId) -> Result<WorkerStatus> {
        self.worker(id).map(|w| w.status())
    }

    /// A worker's metadata.
    pub fn worker_metadata(&self, id: &WorkerId) -> Result<WorkerMetadata> {
        self.worker(id).map(|w| w.metadata())
    }

    /// Metadata of every worker, or of one component's workers, by id.
    pub fn workers(&self, component: Option<ComponentId>) -> Vec<WorkerMetadata> {
        let workers = match component {
            Some(c) => self.inner.registry.of_component(c),
            None => self.inner.registry.all(),
        };
        workers.iter().map(|w| w.metadata()).collect()
    }

    /// What a worker has written to stdout and stderr (the newest bytes up to
    /// the output limit).
    pub fn worker_output(&self, id: &WorkerId) -> Result<WorkerOutput> {
        let worker = self.worker(id)?;
        let (stdout, stdout_dropped) = worker.stdout.snapshot();
        let (stderr, stderr_dropped) = worker.stderr.snapshot();
        Ok(WorkerOutput {
            stdout,
            stderr,
            stdout_dropped,
            stderr_dropped,
        })
    }

    /// A copy of a worker's operation log.
    pub fn worker_oplog(&self, id: &WorkerId) -> Result<Vec<OplogRecord>> {
        Ok(self.worker(id)?.oplog().records())
    }

    /// Stops and removes a worker. An invocation in progress fails with
    /// [`Error::WorkerDeleted`]; the worker's promises are deleted, so anyone
    /// awaiting them traps instead of hanging.
    pub fn delete_worker(&self, id: &WorkerId) -> Result<()> {
        let worker = self
            .inner
            .registry
            .remove(id)
            .ok_or_else(|| Error::WorkerNotFound(id.clone()))?;
        worker.abort();
        self.inner.promises.delete_worker(id.clone())?;
        tracing::info!(worker = %id, "worker deleted");
        Ok(())
    }
}

fn check_params(export: &component::ExportFunc, params: &[Val]) -> Result<()> {
    let expected: Vec<_> = export.ty.params().collect();
    if expected.len() != params.len() {
        return Err(Error::InvalidArguments {
            function: export.name.clone(),
            reason: format!(
                "expected {} argument(s), got {}",
                expected.len(),
                params.len()
            ),
        });
    }
    for ((name, ty), val) in expected.iter().zip(params) {
        let mut path = (*name).to_owned();
        values::check(val, ty, &mut path).map_err(|reason| Error::InvalidArguments {
            function: export.name.clone(),
            reason,
        })?;
    }
    Ok(())
}
