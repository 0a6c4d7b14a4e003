//! The executor: engine, linker, components, workers and the promise dispatcher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use wasmtime::component::types::Type;
use wasmtime::component::{Linker, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::component::{self, ComponentInfo, LoadedComponent};
use crate::compose::{Components, Spawner};
use crate::error::{Error, Result, chain};
use crate::host::{HasHost, HostView};
use crate::ids::{ComponentId, OplogIndex, PromiseId, WorkerId, validate_worker_name};
use crate::oplog::{OplogEntry, OplogRecord};
use crate::output::WorkerOutput;
use crate::persist;
use crate::promise::{PromiseFilter, PromiseInfo, PromiseStatus, Promises, Settlement};
use crate::run::{self, Env};
use crate::values;
use crate::worker::{
    Job, Registry, Shared, WorkerConfig, WorkerEntry, WorkerMetadata, WorkerState, WorkerStatus,
};
use vow_store::SharedStorage;

/// Settings of an [`Executor`]; see [`ExecutorBuilder`] for defaults.
#[derive(Clone, Debug)]
struct Settings {
    epoch_interval: Duration,
    memory_limit: usize,
    invocation_timeout: Option<Duration>,
    allocator: Allocator,
    cache_dir: Option<PathBuf>,
    output_limit: usize,
    max_resources: usize,
    max_queued: usize,
    evict_after: Option<Duration>,
    max_resident: usize,
    snapshot_every: Option<u64>,
    storage: StorageChoice,
    /// Sign completion links; `None` until opened (see [`ExecutorBuilder::link_keys`]).
    link_keys: Option<crate::links::LinkKeys>,
    /// The server's public base URL, for links.
    public_url: Option<String>,
    max_workers: usize,
    max_workers_per_component: usize,
    max_open_promises: usize,
    max_payload: usize,
    max_run_time: Option<Duration>,
    /// Whether the executor keeps metrics (see [`crate::metrics`]).
    metrics: bool,
    /// Whether other executors write the same store (see
    /// [`ExecutorBuilder::shared_store`]).
    shared_store: bool,
}

/// How worker instances get their memory.
#[derive(Clone, Debug)]
enum Allocator {
    /// wasmtime's on-demand allocator.
    OnDemand,
    /// A pool sized from `max_resident` when that fits, else on demand.
    Sized,
    Pooling(Box<PoolingAllocationConfig>),
}

/// The largest `max_resident` a pool is sized for by
/// [`ExecutorBuilder::pooling_sized_for_resident`]; above it the executor
/// allocates on demand. The pool reserves address space for every slot up
/// front, and more slots than this would not fit.
pub const POOLED_RESIDENT_LIMIT: usize = 2_000;

/// Worker slots in a sized pool per resident worker allowed: the cap is
/// enforced after a worker comes into memory, so the pool needs headroom
/// while evicted workers release their slots.
const POOL_HEADROOM: usize = 2;

/// A pool for `max_resident` workers whose memories may grow to
/// `memory_limit`.
fn sized_pool(max_resident: usize, memory_limit: usize) -> PoolingAllocationConfig {
    let slots = u32::try_from((max_resident * POOL_HEADROOM).max(64)).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(16))
        .total_tables(slots.saturating_mul(16))
        .total_memories(slots.saturating_mul(2))
        .total_stacks(slots)
        .max_memory_size(memory_limit);
    pool
}

/// Where an executor keeps its state.
#[derive(Clone)]
enum StorageChoice {
    Memory,
    DataDir(PathBuf),
    Handle(SharedStorage),
}

impl std::fmt::Debug for StorageChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::DataDir(dir) => f.debug_tuple("DataDir").field(dir).finish(),
            Self::Handle(storage) => f.debug_tuple("Handle").field(&storage.location()).finish(),
        }
    }
}

/// Invocations one worker's queue holds by default (see
/// [`ExecutorBuilder::max_queued`]).
pub const DEFAULT_MAX_QUEUED: usize = 10_000;

/// How many workers an executor keeps in memory unless told otherwise (see
/// [`ExecutorBuilder::max_resident`]).
pub const DEFAULT_MAX_RESIDENT: usize = 1_000;

/// After how many invocations a worker is snapshotted unless told otherwise
/// (see [`ExecutorBuilder::snapshot_every`]).
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100;

/// The name of the completion link key file inside a data directory.
pub const LINK_KEYS_FILE: &str = "link-keys";

/// The name of the SQLite file inside a data directory.
pub const DATABASE_FILE: &str = "vow.sqlite";

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
                allocator: Allocator::OnDemand,
                cache_dir: None,
                output_limit: 1 << 20,
                max_resources: 10_000,
                max_queued: DEFAULT_MAX_QUEUED,
                evict_after: Some(Duration::from_secs(10)),
                max_resident: DEFAULT_MAX_RESIDENT,
                snapshot_every: Some(DEFAULT_SNAPSHOT_EVERY),
                storage: StorageChoice::Memory,
                link_keys: None,
                public_url: None,
                max_workers: crate::limits::DEFAULT_MAX_WORKERS,
                max_workers_per_component: crate::limits::DEFAULT_MAX_WORKERS_PER_COMPONENT,
                max_open_promises: crate::limits::DEFAULT_MAX_OPEN_PROMISES,
                max_payload: crate::limits::DEFAULT_MAX_PAYLOAD,
                max_run_time: Some(crate::limits::DEFAULT_MAX_RUN_TIME),
                metrics: true,
                shared_store: false,
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

    /// Uses wasmtime's pooling allocator with this configuration instead of
    /// the one sized from [`max_resident`](Self::max_resident). Its
    /// `total_*` limits cap the number of workers in memory: starting or
    /// bringing back one more fails with [`Error::Instantiation`].
    pub fn pooling(mut self, config: PoolingAllocationConfig) -> Self {
        self.settings.allocator = Allocator::Pooling(Box::new(config));
        self
    }

    /// Uses wasmtime's pooling allocator sized from
    /// [`max_resident`](Self::max_resident) and
    /// [`memory_limit`](Self::memory_limit): twice as many worker slots as
    /// resident workers allowed (evicted workers release theirs a moment
    /// after the cap is passed), each with room for 16 core instances and
    /// tables (a componentize-py guest uses about 14) and 2 memories on
    /// average. Worker starts and returns from eviction take about half the
    /// time of the on-demand allocator (see `benchmarks/runtime.md`).
    ///
    /// The pool reserves address space for every memory slot up front, 4 GiB
    /// each so that bounds checks can be elided: about 16 TB for the default
    /// cap, of the 128 TB a process has. That suits one executor per process
    /// (`vow serve` uses it); for a `max_resident` above
    /// [`POOLED_RESIDENT_LIMIT`] the on-demand allocator is used instead.
    /// Without this call (or [`pooling`](Self::pooling)) the executor
    /// allocates on demand, with no fixed limits.
    pub fn pooling_sized_for_resident(mut self) -> Self {
        self.settings.allocator = Allocator::Sized;
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

    /// Most invocations that may wait in one worker's queue (default
    /// [`DEFAULT_MAX_QUEUED`]); past it [`submit`](Executor::submit) is
    /// refused with [`Error::QueueFull`] and stores nothing, so a client
    /// that sends faster than a worker runs cannot grow memory without
    /// bound. Invocations accepted before a restart are not counted against
    /// it.
    pub fn max_queued(mut self, count: usize) -> Self {
        self.settings.max_queued = count.max(1);
        self
    }

    /// Most host resources (streams, listings, ...) one worker may hold at
    /// once (default 10 000).
    pub fn max_resources(mut self, count: usize) -> Self {
        self.settings.max_resources = count;
        self
    }

    /// How long a worker parked in `await-promise` stays in memory (default
    /// 10 s). After that its Store is dropped; the promise's completion
    /// brings it back by replaying its log. `Some(Duration::ZERO)` evicts a
    /// worker as soon as it parks; `None` keeps parked workers in memory.
    pub fn evict_after(mut self, delay: Option<Duration>) -> Self {
        self.settings.evict_after = delay;
        self
    }

    /// Most workers kept in memory at once (default
    /// [`DEFAULT_MAX_RESIDENT`]). When one more comes into memory, the least
    /// recently used workers that are idle or parked on a promise leave it:
    /// their Store is dropped, and the next invocation or completion brings
    /// them back by replaying their log. Running workers are never evicted,
    /// so the count can exceed the cap while more than that many run at once.
    pub fn max_resident(mut self, count: usize) -> Self {
        self.settings.max_resident = count.max(1);
        self
    }

    /// How often a worker whose component exports `golem:api`'s
    /// `save-snapshot` and `load-snapshot` is snapshotted: after this many
    /// invocations (default [`DEFAULT_SNAPSHOT_EVERY`]); `None` never. A
    /// worker coming back into memory loads its latest snapshot and replays
    /// only the invocations after it, so replay time stays bounded however
    /// long its history. Components without those exports replay their
    /// whole history.
    pub fn snapshot_every(mut self, invocations: Option<u64>) -> Self {
        self.settings.snapshot_every = invocations.filter(|n| *n > 0);
        self
    }

    /// Most workers the executor holds (default
    /// [`DEFAULT_MAX_WORKERS`](crate::DEFAULT_MAX_WORKERS)): in memory or
    /// not, parked, failed or ephemeral, every worker counts until it is
    /// deleted, because each keeps an entry in memory. Starting one more
    /// is refused with [`Error::TooManyWorkers`]. Workers that `when` and
    /// `then` run in count too; a `when` from outside is refused when its
    /// worker would pass a limit, but the workers guests' `when` and
    /// `then` start are let in. Workers already in the store at
    /// [`open`](Self::open) are all recovered.
    pub fn max_workers(mut self, count: usize) -> Self {
        self.settings.max_workers = count.max(1);
        self
    }

    /// Most workers one component may have (default
    /// [`DEFAULT_MAX_WORKERS_PER_COMPONENT`](crate::DEFAULT_MAX_WORKERS_PER_COMPONENT)),
    /// counted as [`max_workers`](Self::max_workers) counts, so that one
    /// component starting workers in a loop leaves room for the others.
    pub fn max_workers_per_component(mut self, count: usize) -> Self {
        self.settings.max_workers_per_component = count.max(1);
        self
    }

    /// Most pending promises one worker may hold (default
    /// [`DEFAULT_MAX_OPEN_PROMISES`](crate::DEFAULT_MAX_OPEN_PROMISES)):
    /// the promises it created (`create-promise`, `vow:host/promises`'
    /// `create`, `all`, `any`) that are neither settled nor deleted.
    /// Creating one more traps the invocation with a message naming the
    /// limit; other workers are not affected. Promises created before a
    /// restart are not counted against it.
    pub fn max_open_promises(mut self, count: usize) -> Self {
        self.settings.max_open_promises = count.max(1);
        self
    }

    /// Largest promise settlement accepted, in bytes (default
    /// [`DEFAULT_MAX_PAYLOAD`](crate::DEFAULT_MAX_PAYLOAD)): a completion's
    /// payload, or a rejection's message and data. A larger one settles
    /// nothing: [`complete_promise`](Executor::complete_promise) and
    /// [`reject_promise`](Executor::reject_promise) answer
    /// [`Error::PayloadTooLarge`], and a guest's `complete-promise` or
    /// `reject` traps its invocation with that message. A promise the
    /// runtime settles (`when`, `then`, `all`) whose result is larger is
    /// rejected with an error of kind
    /// [`Failed`](crate::ErrorKind::Failed) saying so. Payloads stored
    /// before the limit was lowered are still served.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.settings.max_payload = bytes;
        self
    }

    /// Longest a guest may run in one invocation without returning
    /// (default [`DEFAULT_MAX_RUN_TIME`](crate::DEFAULT_MAX_RUN_TIME);
    /// `None`: no limit). Only running counts: time parked on a promise,
    /// or yielding to other workers, does not, so a worker may wait on a
    /// promise for days. Past it the guest traps with `ran for more than
    /// ... without finishing`, and the worker fails as after any trap. It
    /// is checked at each epoch tick ([`epoch_interval`](Self::epoch_interval)).
    /// Replays of finished invocations, and snapshots, are not limited.
    pub fn max_run_time(mut self, limit: Option<Duration>) -> Self {
        self.settings.max_run_time = limit;
        self
    }

    /// Whether the executor keeps metrics (default: yes): counters and
    /// histograms of invocations, completions, replays, evictions and
    /// store commits, and gauges of workers and promises by status, read
    /// through [`Executor::metrics`] (see [`crate::metrics`]). Each update
    /// is an atomic increment or a histogram observation; `false` leaves
    /// even those out, and [`Executor::metrics`] answers `None`.
    pub fn metrics(mut self, on: bool) -> Self {
        self.settings.metrics = on;
        self
    }

    /// Signs completion links with these keys (see [`crate::links`]).
    /// Default: the key file [`LINK_KEYS_FILE`] in the data directory
    /// (created with one key when missing); with no data directory, one
    /// random key kept in memory, so links stop working when the process
    /// ends.
    pub fn link_keys(mut self, keys: crate::links::LinkKeys) -> Self {
        self.settings.link_keys = Some(keys);
        self
    }

    /// The base URL clients reach the server at (`https://vow.example.com`),
    /// from which completion links make their `url`
    /// (`{base}/v1/links/{token}`). Without it links carry only the token.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        let url: String = url.into();
        self.settings.public_url = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// Keeps state in this data directory (a SQLite database,
    /// [`DATABASE_FILE`], created when missing). Open the executor with
    /// [`open`](Self::open): components, workers, promises and queued
    /// invocations stored there come back. One process at a time uses a
    /// data directory: `open` waits up to 5 s for another to let go of it
    /// (its lock file, `vow.sqlite.lock`), then fails naming that process.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.storage = StorageChoice::DataDir(dir.into());
        self
    }

    /// Keeps state in this store (any [`vow_store::Storage`] backend). Open
    /// the executor with [`open`](Self::open).
    pub fn storage(mut self, storage: SharedStorage) -> Self {
        self.settings.storage = StorageChoice::Handle(storage);
        self
    }

    /// The store (given with [`storage`](Self::storage)) is shared with
    /// other executors: this one is a node of a cluster (default: no, it
    /// is the store's only writer). [`open`](Self::open) then loads the
    /// components, promises and reactions, but runs no worker: each worker
    /// runs on the node that owns it, which the embedder decides, and
    /// this node runs those it hands to [`Executor::adopt`] and those it
    /// starts itself. Promises are the whole cluster's: any node's guests
    /// and callers may await, settle and compose any of them, and the
    /// store decides which of two settlements wins. Listings cover every
    /// node's workers (another node's as last stored). Needs a backend
    /// that reports the other writers' changes
    /// ([`Storage::remote_changes`](vow_store::Storage::remote_changes)):
    /// the PostgreSQL store of a cluster node.
    pub fn shared_store(mut self, on: bool) -> Self {
        self.settings.shared_store = on;
        self
    }

    /// Builds an executor that keeps its state in memory (the default): a
    /// restart loses every worker. Must be called inside a tokio runtime,
    /// which runs the promise dispatcher and the workers. An executor with a
    /// data directory or a store is opened with [`open`](Self::open).
    pub fn build(self) -> Result<Executor> {
        if !matches!(self.settings.storage, StorageChoice::Memory) || self.settings.shared_store {
            return Err(Error::Config(
                "an executor with a data directory or a store must be opened with ExecutorBuilder::open().await".into(),
            ));
        }
        let storage: SharedStorage = Arc::new(vow_store::MemoryStorage::new());
        let (executor, ready) = self.assemble(storage, Vec::new(), Vec::new(), None)?;
        let _ = ready.send(());
        Ok(executor)
    }

    /// Opens the executor on its store and recovers what the store holds:
    /// components are compiled again (from the compile cache when there is
    /// one), workers are listed with the status they had, and workers that
    /// were running, or have queued invocations, resume in the background
    /// by replay. Workers are not instantiated before they are needed.
    pub async fn open(self) -> Result<Executor> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("ExecutorBuilder::open must be called inside a tokio runtime".into())
        })?;
        let storage: SharedStorage = match &self.settings.storage {
            StorageChoice::Memory => Arc::new(vow_store::MemoryStorage::new()),
            StorageChoice::Handle(storage) => Arc::clone(storage),
            StorageChoice::DataDir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || open_data_dir(&dir))
                    .await
                    .map_err(|e| Error::Config(format!("opening the store failed: {e}")))??
            }
        };
        let mut this = self;
        if let (None, StorageChoice::DataDir(dir)) =
            (&this.settings.link_keys, &this.settings.storage)
        {
            let path = dir.join(LINK_KEYS_FILE);
            let keys = tokio::task::spawn_blocking(move || crate::links::LinkKeys::open(path))
                .await
                .map_err(|e| Error::Config(format!("reading the link keys failed: {e}")))??;
            this.settings.link_keys = Some(keys);
        }
        // A node of a cluster hears of the other nodes' changes from before
        // it reads anything, so that it misses none.
        let follow = match this.settings.shared_store {
            false => None,
            true => {
                let changes = storage.remote_changes().ok_or_else(|| {
                    Error::Config(format!(
                        "the store at {} does not report other nodes' changes, so it cannot be shared: \
                         a cluster node opens its PostgreSQL store with vow_store_postgres::cluster",
                        storage.location()
                    ))
                })?;
                Some((changes, tokio::sync::mpsc::unbounded_channel()))
            }
        };
        let promises = storage.promises().await?;
        let reactions = storage.reactions().await?;
        let refresh = follow.as_ref().map(|(_, (tx, _))| tx.clone());
        let (executor, ready) =
            this.assemble(Arc::clone(&storage), promises, reactions, refresh)?;
        match follow {
            None => crate::recovery::recover(&executor).await?,
            Some((changes, (_, refresh))) => {
                crate::recovery::recover_components(&executor).await?;
                crate::member::load_directory(&executor).await?;
                crate::member::follow(&executor, changes, refresh);
            }
        }
        // Workers that reactions start now find their components.
        let _ = ready.send(());
        Ok(executor)
    }

    fn assemble(
        self,
        storage: SharedStorage,
        promises: Vec<vow_store::PromiseRecord>,
        reactions: Vec<vow_store::ReactionRecord>,
        refresh: Option<tokio::sync::mpsc::UnboundedSender<crate::ids::PromiseId>>,
    ) -> Result<(Executor, tokio::sync::oneshot::Sender<()>)> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("Executor::build must be called inside a tokio runtime".into())
        })?;
        let settings = self.settings;
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Guests use the classic (WASIp2) call path; concurrent component
        // model support would add per-call bookkeeping nothing uses yet.
        config.concurrency_support(false);
        match &settings.allocator {
            Allocator::Pooling(pooling) => {
                config
                    .allocation_strategy(InstanceAllocationStrategy::Pooling((**pooling).clone()));
            }
            Allocator::Sized if settings.max_resident <= POOLED_RESIDENT_LIMIT => {
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(sized_pool(
                    settings.max_resident,
                    settings.memory_limit,
                )));
            }
            Allocator::Sized | Allocator::OnDemand => {}
        }
        let engine = Engine::new(&config).map_err(|e| Error::Config(chain(&e)))?;
        let linker = new_linker(&engine)?;
        let recorder = settings
            .metrics
            .then(|| Arc::new(crate::metrics::Recorder::new()));
        if let Some(recorder) = &recorder {
            storage.observe_commits(Arc::clone(recorder) as Arc<dyn vow_store::CommitObserver>);
        }
        let meter = crate::metrics::Meter::new(recorder.clone());
        let changes = crate::changes::Changes::default();
        let (spawner, spawned) = Spawner::new();
        let registry = Arc::new(
            Registry::new(settings.max_resident)
                .with_worker_limits(settings.max_workers, settings.max_workers_per_component)
                .with_directory(refresh.is_some()),
        );
        let needed = Arc::new(crate::member::Needed::default());
        let member = refresh.map(|refresh| {
            let mine = Arc::downgrade(&registry);
            let known = Arc::downgrade(&registry);
            let parked = Arc::downgrade(&registry);
            let tell = Arc::clone(&needed);
            crate::promise::Member {
                settled: Arc::new(move |promise: &crate::ids::PromiseId| {
                    if let Some(directory) = parked.upgrade().as_ref().and_then(|r| r.directory()) {
                        tell.send(directory.parked_on(promise));
                    }
                }),
                mine: Arc::new(move |worker: &WorkerId| {
                    mine.upgrade()
                        .is_some_and(|registry| registry.get(worker).is_some())
                }),
                known: Arc::new(move |worker: &WorkerId| {
                    known
                        .upgrade()
                        .is_some_and(|registry| registry.metadata(worker).is_some())
                }),
                refresh,
            }
        });
        let (promises, dispatcher) = Promises::spawn(
            Arc::clone(&storage),
            crate::promise::Stored {
                promises,
                reactions,
            },
            spawner.clone(),
            settings.max_payload,
            meter.clone(),
            changes.clone(),
            member,
        );
        let ticker = Ticker::start(engine.clone(), settings.epoch_interval);
        let metrics = recorder
            .map(|recorder| crate::metrics::Metrics::new(recorder, Arc::downgrade(&registry)));
        let components: Components = Arc::default();
        let links = crate::links::Links::new(
            settings
                .link_keys
                .clone()
                .unwrap_or_else(crate::links::LinkKeys::ephemeral),
            settings.public_url.clone(),
        );
        let shared = Shared {
            storage: Arc::clone(&storage),
            promises: promises.clone(),
            output_limit: settings.output_limit,
            components: Arc::clone(&components),
            spawner,
        };
        let inner = Arc::new(Inner {
            engine,
            linker,
            settings,
            components,
            envs: std::sync::Mutex::default(),
            registry,
            promises,
            storage,
            shared,
            dispatcher,
            _ticker: ticker,
            links,
            meter,
            metrics,
            changes,
            needed,
        });
        let (ready, started) = tokio::sync::oneshot::channel();
        tokio::spawn(activate(Arc::downgrade(&inner), started, spawned));
        Ok((Executor { inner }, ready))
    }
}

/// Brings to life the workers that `when` and `then` store (see
/// [`crate::compose`]), once recovery has installed the components.
async fn activate(
    inner: std::sync::Weak<Inner>,
    started: tokio::sync::oneshot::Receiver<()>,
    mut spawned: tokio::sync::mpsc::UnboundedReceiver<crate::compose::Spawned>,
) {
    if started.await.is_err() {
        return;
    }
    while let Some(worker) = spawned.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let executor = Executor { inner };
        let id = persist::worker_id(&worker.record.key);
        let settles = worker.settles.clone();
        let seq = worker.invocation.seq;
        match executor.start_spawned(worker).await {
            Ok(()) => {}
            // A `then` fires long after it was accepted, when the limit
            // may have been reached: nobody else would settle its promise,
            // so it is rejected, saying why. The worker stays in the store,
            // idle, with the failure as its invocation's outcome.
            Err(error @ Error::TooManyWorkers { .. }) => {
                tracing::warn!(worker = %id, %error, "a continuation could not start");
                let failure = crate::PromiseError {
                    kind: crate::ErrorKind::Failed,
                    message: format!("the continuation could not start: {error}"),
                    data: Vec::new(),
                };
                // Its invocation is stored as failed with the promise, so
                // recovery does not run it after a restart.
                let finished = vow_store::Write::SetInvocationState {
                    worker: persist::worker_key(&id),
                    seq,
                    state: vow_store::InvocationState::Finished(persist::encode(
                        &persist::Outcome::Err(failure.message.clone()),
                    )),
                };
                let settled = executor
                    .inner
                    .promises
                    .settle_with(settles, Err(failure), vec![finished])
                    .await;
                if let Err(error) = settled {
                    tracing::error!(worker = %id, %error, "rejecting the promise of a continuation that could not start failed");
                }
            }
            // The worker and its invocation are in the store: recovery
            // starts them at the next start.
            Err(error) => {
                tracing::error!(worker = %id, %error, "a spawned worker could not start");
            }
        }
    }
}

impl Executor {
    /// Starts a worker `when` or `then` stored, with its invocation queued,
    /// from what was stored (nothing is read back).
    async fn start_spawned(&self, spawned: crate::compose::Spawned) -> Result<()> {
        let id = persist::worker_id(&spawned.record.key);
        if self.inner.registry.get(&id).is_some() {
            return Ok(());
        }
        let loaded = self.loaded(id.component_id)?;
        let env = self.env(loaded);
        let entry = WorkerEntry::new(
            id.clone(),
            WorkerConfig::default(),
            std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(spawned.record.created_at),
            &self.inner.shared,
            1,
            spawned.invocation.seq,
            Arc::clone(&env),
        );
        let Some(job) = entry.stored_job(spawned.invocation)? else {
            return Err(Error::Storage(format!(
                "the invocation stored for spawned worker {id} names no export of its component"
            )));
        };
        // Checked before instantiating, and again (atomically) when
        // inserted: a `then` fires long after it was accepted.
        self.inner.registry.has_room(&id)?;
        let live = run::instantiate(&entry, &env, spawned.seed).await?;
        self.inner
            .registry
            .insert_within_limits(Arc::clone(&entry))?;
        entry.requeue_front(Box::new(job));
        entry.spawn_live(live);
        tracing::debug!(worker = %id, "spawned worker started");
        Ok(())
    }
}

/// Opens (creating when missing) the SQLite store of a data directory.
fn open_data_dir(dir: &Path) -> Result<SharedStorage> {
    std::fs::create_dir_all(dir).map_err(|cause| Error::Io {
        action: "creating the data directory",
        path: dir.to_owned(),
        cause: Arc::new(cause),
    })?;
    let storage = vow_store_sqlite::SqliteStorage::open(
        &dir.join(DATABASE_FILE),
        vow_store_sqlite::SqliteOptions::default(),
    )?;
    Ok(Arc::new(storage))
}

/// A linker with WASI 0.2 and `golem:api/host@1.1.0`.
fn new_linker(engine: &Engine) -> Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    let link = |linker: &mut Linker<WorkerState>| -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        // Journaled in place of wasmtime-wasi's (see host/poll.rs).
        linker.allow_shadowing(true);
        crate::host::poll::add_to_linker(linker)?;
        linker.allow_shadowing(false);
        crate::bindings::golem::api::host::add_to_linker::<_, HasHost>(linker, host_view)?;
        crate::bindings::golem::rpc::types::add_to_linker::<_, HasHost>(linker, host_view)?;
        crate::bindings::vow::host::promises::add_to_linker::<_, HasHost>(linker, host_view)?;
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

pub(crate) struct Inner {
    engine: Engine,
    linker: Linker<WorkerState>,
    settings: Settings,
    components: Components,
    /// What worker tasks run with, one per component.
    envs: std::sync::Mutex<HashMap<ComponentId, Arc<Env>>>,
    registry: Arc<Registry>,
    promises: Promises,
    storage: SharedStorage,
    shared: Shared,
    dispatcher: tokio::task::JoinHandle<()>,
    _ticker: Ticker,
    /// Mints and checks completion links.
    links: crate::links::Links,
    /// What worker tasks record metrics with (off: records nothing).
    meter: crate::metrics::Meter,
    /// The metrics, when on.
    metrics: Option<crate::metrics::Metrics>,
    /// Told of every observable change, for [`Executor::changes`].
    changes: crate::changes::Changes,
    /// On a cluster node: workers outside it that need a node.
    needed: Arc<crate::member::Needed>,
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

/// An invocation that has finished, as [`Executor::finished_invocations`]
/// reads it back.
#[derive(Clone, Debug)]
pub struct FinishedInvocation {
    /// Its sequence number on the worker, from 1.
    pub seq: u64,
    /// The exported function it called.
    pub function: String,
    /// Its results, or the message of the error that failed it.
    pub result: std::result::Result<Vec<Val>, String>,
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
    /// The caller's place in a distributed trace: the invocation's span
    /// joins that trace (see [`crate::trace`]).
    pub trace_parent: Option<crate::trace::TraceParent>,
}

impl Invocation {
    /// An invocation without an idempotency key.
    pub fn new(function: impl Into<String>, params: Vec<Val>) -> Self {
        Self {
            function: function.into(),
            params,
            idempotency_key: None,
            trace_parent: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the caller's trace context, as a `traceparent` header carries
    /// it.
    pub fn with_trace_parent(mut self, parent: crate::trace::TraceParent) -> Self {
        self.trace_parent = Some(parent);
        self
    }
}

use crate::worker::SharedOutcome;

/// Puts a job in a worker's mailbox and returns the shared future of its
/// outcome (remembered under its idempotency key, if it has one).
pub(crate) fn queue_job(
    entry: &Arc<WorkerEntry>,
    export: Arc<component::ExportFunc>,
    params: Vec<Val>,
    idempotency_key: Option<String>,
    seq: u64,
    trace_parent: Option<&crate::trace::TraceParent>,
) -> Result<SharedOutcome> {
    let (job, outcome) = Job::new(entry, export, params, idempotency_key, seq, trace_parent);
    entry.enqueue(job)?;
    Ok(outcome)
}

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

    /// Compiles and adds a component, and stores it. Refuses bytes that are
    /// not a valid component and components whose imports Vow cannot satisfy
    /// (the error names each one).
    pub async fn add_component(
        &self,
        name: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<ComponentId> {
        let bytes = bytes::Bytes::from(bytes.into());
        let sha256 = component::sha256_of(&bytes);
        let id = ComponentId::new_random();
        self.install_component(id, name, bytes.clone(), sha256.clone())
            .await?;
        let stored = self
            .inner
            .storage
            .write(vec![vow_store::Write::PutComponent(
                vow_store::ComponentRecord {
                    id: id.0,
                    name: name.to_owned(),
                    sha256,
                    bytes,
                    created_at: vow_store::now_millis(),
                },
            )])
            .await;
        if let Err(error) = stored {
            self.inner
                .components
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(error.into());
        }
        Ok(id)
    }

    /// Compiles a component and makes it available under `id`.
    pub(crate) async fn install_component(
        &self,
        id: ComponentId,
        name: &str,
        bytes: bytes::Bytes,
        sha256: String,
    ) -> Result<()> {
        let size = bytes.len();
        let compiled = component::compile(
            &self.inner.engine,
            Arc::new(bytes.to_vec()),
            &sha256,
            self.inner.settings.cache_dir.as_deref(),
        )
        .await?;
        let engine = &self.inner.engine;
        let loaded = component::load(
            engine,
            &self.inner.linker,
            || new_linker(engine),
            compiled,
            component::Source {
                id,
                name: name.to_owned(),
                size,
                sha256,
            },
        )?;
        tracing::info!(component = %id, name, exports = loaded.info.exports.len(), "component added");
        self.inner
            .components
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(loaded));
        self.inner.changes.bump();
        Ok(())
    }

    /// Reads a component file and adds it under the file's stem as name.
    pub async fn add_component_file(&self, path: impl AsRef<Path>) -> Result<ComponentId> {
        let (name, bytes) = read_component_file(path.as_ref()).await?;
        self.add_component(&name, bytes).await
    }

    /// Adds a component file unless a component of the same name and content
    /// is already there (for instance from the store, after a restart), in
    /// which case its id is returned: how a server that preloads files at
    /// every start avoids a new copy each time.
    pub async fn ensure_component_file(&self, path: impl AsRef<Path>) -> Result<ComponentId> {
        let (name, bytes) = read_component_file(path.as_ref()).await?;
        let sha256 = component::sha256_of(&bytes);
        // Another node may have added it a moment ago.
        if self.directory().is_some() {
            crate::recovery::recover_components(self).await?;
        }
        let existing = self
            .components()
            .into_iter()
            .find(|c| c.name == name && c.sha256 == sha256);
        match existing {
            Some(component) => Ok(component.id),
            None => self.add_component(&name, bytes).await,
        }
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
        self.inner.registry.get(id).ok_or_else(|| {
            // On a cluster node: it exists, and another node runs it (or
            // will); the request reached this one as it let go of it.
            match self.directory().and_then(|d| d.get(id)) {
                Some(_) => Error::WorkerMoved(id.clone()),
                None => Error::WorkerNotFound(id.clone()),
            }
        })
    }

    /// What workers of `component` run with (shared by all of them).
    pub(crate) fn env(&self, component: Arc<LoadedComponent>) -> Arc<Env> {
        let mut envs = self.inner.envs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(env) = envs.get(&component.info.id)
            && Arc::ptr_eq(&env.component, &component)
        {
            return Arc::clone(env);
        }
        let env = Arc::new(self.new_env(Arc::clone(&component)));
        envs.insert(component.info.id, Arc::clone(&env));
        env
    }

    fn new_env(&self, component: Arc<LoadedComponent>) -> Env {
        let settings = &self.inner.settings;
        Env {
            engine: self.inner.engine.clone(),
            component,
            registry: Arc::downgrade(&self.inner.registry),
            memory_limit: settings.memory_limit,
            max_resources: settings.max_resources,
            invocation_timeout: settings.invocation_timeout,
            evict_after: settings.evict_after,
            snapshot_every: settings.snapshot_every,
            max_open_promises: settings.max_open_promises,
            max_run_time: settings.max_run_time,
            links: self.inner.links.clone(),
            metrics: self.inner.meter.clone(),
            changes: self.inner.changes.clone(),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// A cluster node's directory of the other nodes' workers.
    pub(crate) fn directory(&self) -> Option<&crate::member::Directory> {
        self.inner.registry.directory()
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(inner: &std::sync::Weak<Inner>) -> Option<Self> {
        inner.upgrade().map(|inner| Self { inner })
    }

    pub(crate) fn changes_bump(&self) {
        self.inner.changes.bump();
    }

    /// Hands the promise table news from the cluster.
    pub(crate) fn promise_table(&self) -> &Promises {
        &self.inner.promises
    }

    /// On a cluster node: where the workers that need a node are told
    /// (see [`Executor::needed_workers`]).
    pub(crate) fn needed(&self) -> &crate::member::Needed {
        &self.inner.needed
    }

    pub(crate) fn promises_news(&self, command: crate::promise::Command) -> Result<()> {
        self.inner.promises.member_news(command)
    }

    pub(crate) fn storage(&self) -> &SharedStorage {
        &self.inner.storage
    }

    pub(crate) fn loaded_component(&self, id: ComponentId) -> Result<Arc<LoadedComponent>> {
        self.loaded(id)
    }

    /// Starts a worker: instantiates the component in a Store of its own and
    /// stores the worker before answering.
    pub async fn start_worker(
        &self,
        component: ComponentId,
        name: &str,
        config: WorkerConfig,
    ) -> Result<WorkerId> {
        validate_worker_name(name)?;
        let loaded = self.loaded(component)?;
        let id = WorkerId::new(component, name);
        if self.inner.registry.get(&id).is_some()
            || self.directory().is_some_and(|d| d.get(&id).is_some())
        {
            return Err(Error::WorkerExists(id));
        }
        // Refused before instantiating; checked again as it is inserted.
        self.inner.registry.has_room(&id)?;
        let created_at = std::time::SystemTime::now();
        let env = self.env(loaded);
        let entry = WorkerEntry::new(
            id.clone(),
            config,
            created_at,
            &self.inner.shared,
            1,
            0,
            Arc::clone(&env),
        );
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        let live = run::instantiate(&entry, &env, seed).await?;
        // Another start of the same name may have won the race while this
        // one was instantiating.
        self.inner
            .registry
            .insert_within_limits(Arc::clone(&entry))?;
        let create = OplogEntry::Create {
            args: entry.args.clone(),
            env: entry.env.clone(),
            insecure_seed: seed,
        };
        let key = persist::worker_key(&id);
        let stored = self
            .inner
            .storage
            .write(vec![
                vow_store::Write::CreateWorker(vow_store::WorkerRecord {
                    key: key.clone(),
                    args: entry.args.clone(),
                    env: entry.env.clone(),
                    created_at: vow_store::now_millis(),
                    state: entry.stored_state(),
                }),
                vow_store::Write::AppendOplog {
                    worker: key,
                    records: vec![vow_store::OplogRecord {
                        index: 1,
                        at: vow_store::now_millis(),
                        entry: create.encode().into(),
                    }],
                },
            ])
            .await;
        if let Err(error) = stored {
            self.inner.registry.remove(&id);
            return Err(match error {
                vow_store::Error::Conflict(_) => Error::WorkerExists(id),
                other => other.into(),
            });
        }
        entry.spawn_live(live);
        tracing::info!(worker = %id, "worker started");
        Ok(id)
    }

    /// Queues an invocation after any already queued on the worker and
    /// returns once it is stored (so it runs even if the process stops
    /// before it does). Unknown functions and wrong arguments are refused
    /// here, before anything is queued. With an idempotency key that the
    /// worker has seen before (in this process or, from the store, in an
    /// earlier one), nothing is queued and the handle yields the first
    /// request's outcome.
    pub async fn submit(
        &self,
        worker: &WorkerId,
        invocation: Invocation,
    ) -> Result<InvocationHandle> {
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
        // Held until the job is queued: submissions to one worker take
        // their turn, so a key is looked up and remembered as one step.
        let loaded = entry.ensure_loaded().await?;
        entry.check_here()?;
        if let Some(key) = &invocation.idempotency_key {
            let known = match entry.idempotent_outcome(key) {
                Some(outcome) => Some(outcome),
                None => self.stored_outcome(&entry, &export, key).await?,
            };
            if let Some(outcome) = known {
                return Ok(InvocationHandle {
                    outcome,
                    fresh: false,
                });
            }
        }
        entry.check_not_failed()?;
        let limit = self.inner.settings.max_queued;
        if entry.queued() >= limit {
            return Err(Error::QueueFull {
                worker: worker.clone(),
                limit,
            });
        }
        let params = persist::to_wave(&invocation.params)?;
        let seq = entry.next_seq();
        let request = persist::encode(&persist::Request {
            function: export.name.clone(),
            params,
            settles: None,
            trace_parent: invocation.trace_parent.map(|p| p.to_string()),
        });
        // Enqueued in the store before the job can append anything, so the
        // write order is the order things happened.
        let write = self.inner.storage.write(vec![vow_store::Write::Enqueue(
            vow_store::InvocationRecord {
                worker: persist::worker_key(worker),
                seq,
                idempotency_key: invocation.idempotency_key.clone(),
                request,
                state: vow_store::InvocationState::Queued,
                accepted_at: vow_store::now_millis(),
            },
        )]);
        let outcome = queue_job(
            &entry,
            export,
            invocation.params,
            invocation.idempotency_key,
            seq,
            invocation.trace_parent.as_ref(),
        )?;
        drop(loaded);
        if let Err(error) = write.await {
            // Refused by the store (a full disk): the job must not run. If
            // the worker task took it already, its own writes fail after
            // this one, and the worker reloads from the store (see
            // `run::run`), keeping no effect of it.
            entry.withdraw(seq);
            return Err(error.into());
        }
        Ok(InvocationHandle {
            outcome,
            fresh: true,
        })
    }

    /// The stored outcome of an invocation with this key from an earlier
    /// run of the process.
    async fn stored_outcome(
        &self,
        entry: &WorkerEntry,
        export: &component::ExportFunc,
        key: &str,
    ) -> Result<Option<SharedOutcome>> {
        let stored = self
            .inner
            .storage
            .invocation_by_key(&persist::worker_key(&entry.id), key)
            .await?;
        let Some(vow_store::InvocationRecord {
            state: vow_store::InvocationState::Finished(bytes),
            ..
        }) = stored
        else {
            return Ok(None);
        };
        let result = match persist::decode::<persist::Outcome>(&bytes, "an invocation result")? {
            persist::Outcome::Ok(values) => {
                let types: Vec<_> = export.ty.results().collect();
                persist::from_wave(&values, &types)
            }
            persist::Outcome::Err(message) => Err(Error::InvocationFailed {
                worker: entry.id.clone(),
                function: export.name.clone(),
                message,
            }),
        };
        let outcome: SharedOutcome = futures::future::ready(result).boxed().shared();
        entry.remember_outcome(key.to_owned(), outcome.clone());
        Ok(Some(outcome))
    }

    /// Queues an invocation and forgets it (fire and forget). Its outcome
    /// shows in the worker's status, last error and output.
    pub async fn enqueue(&self, worker: &WorkerId, invocation: Invocation) -> Result<()> {
        self.submit(worker, invocation).await.map(drop)
    }

    /// Invokes an exported function and waits for its results.
    pub async fn invoke(
        &self,
        worker: &WorkerId,
        function: &str,
        params: Vec<Val>,
    ) -> Result<Vec<Val>> {
        self.submit(worker, Invocation::new(function, params))
            .await?
            .result()
            .await
    }

    /// Completes a promise from the host. `Ok(true)` if this call completed
    /// it, `Ok(false)` if it was already settled (the first settlement
    /// stays); answered once the completion is durable.
    pub async fn complete_promise(&self, id: &PromiseId, data: impl Into<Bytes>) -> Result<bool> {
        self.inner
            .promises
            .settle(id.clone(), Ok(data.into()))
            .await
    }

    /// Rejects a promise from the host with `message` and `data` (an error
    /// of kind [`ErrorKind::Rejected`](crate::ErrorKind::Rejected)). As
    /// [`complete_promise`](Self::complete_promise), `Ok(false)` if it was
    /// already settled.
    pub async fn reject_promise(
        &self,
        id: &PromiseId,
        message: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Result<bool> {
        let error = crate::PromiseError {
            kind: crate::ErrorKind::Rejected,
            message: message.into(),
            data: data.into(),
        };
        self.inner.promises.settle(id.clone(), Err(error)).await
    }

    /// Promises matching the filter, ordered by worker and index.
    pub async fn promises(&self, filter: PromiseFilter) -> Result<Vec<PromiseInfo>> {
        let mut listed = self.inner.promises.list(filter).await?;
        for info in &mut listed {
            self.awaited_elsewhere(info);
        }
        Ok(listed)
    }

    /// On a cluster node, whether another node's worker is parked on the
    /// promise, as that node last stored it (this node's table knows only
    /// its own waiters).
    fn awaited_elsewhere(&self, info: &mut PromiseInfo) {
        if let Some(directory) = self.directory()
            && !info.awaited
            && self.inner.registry.get(&info.id.worker_id).is_none()
        {
            info.awaited = directory.awaits(&info.id.worker_id, &info.id);
        }
    }

    /// Runs `function` of `component` with `input` in a new worker and
    /// returns a promise of its result, as a guest's `when` does (see
    /// [`vow:host/promises`](https://github.com/vow-runtime/vow/blob/main/docs/promises.md)).
    /// The promise belongs to that worker (`when-<uuid>`): its index is 1,
    /// the worker's creation. Answered once the worker and its invocation
    /// are stored.
    pub async fn when(
        &self,
        component: ComponentId,
        function: &str,
        input: impl Into<Vec<u8>>,
        options: crate::PromiseOptions,
    ) -> Result<PromiseId> {
        let loaded = self.loaded(component)?;
        let handler =
            crate::compose::handler(&loaded, function, false).map_err(Error::CannotSettle)?;
        let name = format!("when-{}", uuid::Uuid::new_v4().simple());
        let id = PromiseId {
            worker_id: WorkerId::new(component, name.clone()),
            oplog_idx: 1,
        };
        self.inner.registry.has_room(&id.worker_id)?;
        let input: Vec<u8> = input.into();
        let (spawned, mut writes) =
            crate::compose::spawn(&handler, name, &[crate::compose::bytes_val(&input)], &id)?;
        let now = vow_store::now_millis();
        let spec = options.spec(now, true);
        writes.push(vow_store::Write::CreatePromise {
            key: persist::promise_key(&id),
            at: now,
            spec: spec.clone(),
        });
        self.inner.storage.write(writes).await?;
        self.inner.promises.create(id.clone(), now, spec)?;
        self.start_spawned(spawned).await?;
        Ok(id)
    }

    /// Once `source` settles, runs `function` of `component` in a new
    /// worker with the settlement, and returns a promise of its result, as
    /// a guest's `then` does. The promise belongs to that worker
    /// (`then-<uuid>`, index 1), which is created when `source` settles.
    /// Answered once the continuation is stored.
    pub async fn then(
        &self,
        source: &PromiseId,
        component: ComponentId,
        function: &str,
        options: crate::PromiseOptions,
    ) -> Result<PromiseId> {
        let loaded = self.loaded(component)?;
        let mut handler =
            crate::compose::handler(&loaded, function, true).map_err(Error::CannotSettle)?;
        let name = format!("then-{}", uuid::Uuid::new_v4().simple());
        handler.worker = Some(name.clone());
        let id = PromiseId {
            worker_id: WorkerId::new(component, name),
            oplog_idx: 1,
        };
        let spec = crate::compose::ReactionSpec::Then(handler);
        let now = vow_store::now_millis();
        let promise = options.spec(now, true);
        self.inner
            .storage
            .write(vec![
                vow_store::Write::CreatePromise {
                    key: persist::promise_key(&id),
                    at: now,
                    spec: promise.clone(),
                },
                vow_store::Write::PutReaction(vow_store::ReactionRecord {
                    target: persist::promise_key(&id),
                    sources: vec![persist::promise_key(source)],
                    spec: persist::encode(&spec),
                    created_at: now,
                }),
            ])
            .await?;
        self.inner.promises.create(id.clone(), now, promise)?;
        self.inner
            .promises
            .react(id.clone(), vec![source.clone()], spec)?;
        Ok(id)
    }

    /// A completion link for a pending promise: a token that lets whoever
    /// holds it complete (or reject, as `request` allows) this promise and
    /// nothing else, until it expires. A promise that runtime work settles
    /// (`when`, `then`, `all`, `any`) gets none ([`Error::CannotSettle`]),
    /// nor does one that already settled ([`Error::PromiseSettled`]).
    pub async fn completion_link(
        &self,
        id: &PromiseId,
        request: crate::links::LinkRequest,
    ) -> Result<crate::links::CompletionLink> {
        let (info, _) = self.promise(id).await?;
        if info.status != PromiseStatus::Pending {
            return Err(Error::PromiseSettled(id.clone()));
        }
        if info.composed {
            return Err(Error::CannotSettle(format!(
                "promise {id} is settled by the runtime (when, then, all or any): a link could not complete it"
            )));
        }
        Ok(self
            .inner
            .links
            .mint(id, request, vow_store::now_millis())?)
    }

    /// What a completion link token grants, if it is valid now: the token
    /// is this executor's, unaltered and unexpired. Whether the promise
    /// still exists is not checked.
    pub fn redeem_link(&self, token: &str) -> Result<crate::links::LinkGrant> {
        Ok(self
            .inner
            .links
            .keys()
            .verify(token, vow_store::now_millis())?)
    }

    /// One promise, with its settlement once it has one.
    pub async fn promise(&self, id: &PromiseId) -> Result<(PromiseInfo, Option<Settlement>)> {
        let (mut info, settlement) = self
            .inner
            .promises
            .get(id.clone())
            .await?
            .ok_or_else(|| Error::PromiseNotFound(id.clone()))?;
        if settlement.is_none() {
            self.awaited_elsewhere(&mut info);
        }
        Ok((info, settlement))
    }

    /// A feed of changes to what this executor shows (workers, their
    /// status and queues, promises, components): it says *that* something
    /// changed, and the listener reads again what it shows. The server's
    /// `GET /v1/events` stream is built on it. Costs one atomic add per
    /// change while no feed exists.
    ///
    /// ```no_run
    /// # async fn f(executor: vow_runtime::Executor) -> vow_runtime::Result<()> {
    /// let mut changes = executor.changes();
    /// loop {
    ///     changes.changed().await;
    ///     let pending = executor.promises(vow_runtime::PromiseFilter::pending()).await?;
    ///     println!("{} promises wait", pending.len());
    /// }
    /// # }
    /// ```
    pub fn changes(&self) -> crate::ChangeFeed {
        self.inner.changes.feed()
    }

    /// The executor's metrics, to encode in Prometheus' text format or to
    /// register in a `prometheus-client` registry (see [`crate::metrics`]);
    /// `None` when built with [`ExecutorBuilder::metrics`]`(false)`.
    pub fn metrics(&self) -> Option<crate::metrics::Metrics> {
        self.inner.metrics.clone()
    }

    /// How many workers have their instance in memory right now; the others
    /// are parked out of memory or idle, and come back by replay.
    pub fn resident_workers(&self) -> usize {
        self.inner.registry.resident()
    }

    /// A worker's current status.
    pub fn worker_status(&self, id: &WorkerId) -> Result<WorkerStatus> {
        self.worker(id).map(|w| w.status())
    }

    /// A worker's metadata (on a cluster node, another node's worker's as
    /// last stored).
    pub fn worker_metadata(&self, id: &WorkerId) -> Result<WorkerMetadata> {
        self.inner
            .registry
            .metadata(id)
            .ok_or_else(|| Error::WorkerNotFound(id.clone()))
    }

    /// Metadata of every worker, or of one component's workers, by id (on
    /// a cluster node, with the other nodes' workers as last stored).
    pub fn workers(&self, component: Option<ComponentId>) -> Vec<WorkerMetadata> {
        self.inner.registry.all_metadata(component)
    }

    /// Whether this executor runs the worker (on a cluster node: whether
    /// this node owns it and has taken it over).
    pub fn runs_worker(&self, id: &WorkerId) -> bool {
        self.inner.registry.get(id).is_some()
    }

    /// What a worker has written to stdout and stderr (the newest bytes up to
    /// the output limit).
    pub fn worker_output(&self, id: &WorkerId) -> Result<WorkerOutput> {
        Ok(self.worker(id)?.output.snapshot())
    }

    /// Up to `limit` entries of a worker's operation log, from index `from`
    /// (the first entry has index 1), read from the store.
    pub async fn worker_oplog(
        &self,
        id: &WorkerId,
        from: OplogIndex,
        limit: usize,
    ) -> Result<Vec<OplogRecord>> {
        let worker = self.worker(id)?;
        // Entries appended but not yet committed are committed first.
        self.inner.storage.write(Vec::new()).await?;
        let key = persist::worker_key(&worker.id);
        self.inner
            .storage
            .oplog(&key, from.max(1), limit)
            .await?
            .into_iter()
            .map(|r| OplogRecord::from_stored(r).map_err(Error::Storage))
            .collect()
    }

    /// The index of the last entry of a worker's log.
    pub async fn worker_last_oplog_index(&self, id: &WorkerId) -> Result<OplogIndex> {
        let worker = self.worker(id)?;
        self.inner.storage.write(Vec::new()).await?;
        Ok(self
            .inner
            .storage
            .last_oplog_index(&persist::worker_key(&worker.id))
            .await?)
    }

    /// The finished invocations of a worker with sequence numbers in `seqs`
    /// (the `seq` of their `invocation-started` and `invocation-finished`
    /// entries), with their results typed by the component's exports.
    pub async fn finished_invocations(
        &self,
        id: &WorkerId,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<FinishedInvocation>> {
        let worker = self.worker(id)?;
        let component = self.loaded(worker.id.component_id)?;
        let records = self
            .inner
            .storage
            .invocations_between(&persist::worker_key(&worker.id), *seqs.start(), *seqs.end())
            .await?;
        let mut finished = Vec::new();
        for record in records {
            let vow_store::InvocationState::Finished(bytes) = &record.state else {
                continue;
            };
            let request: persist::Request = persist::decode(&record.request, "an invocation")?;
            let result = match persist::decode::<persist::Outcome>(bytes, "an invocation result")? {
                persist::Outcome::Ok(values) => {
                    let export = component.export(&request.function).ok_or_else(|| {
                        Error::Storage(format!(
                            "invocation {} of {} calls {}, which its component does not export",
                            record.seq, worker.id, request.function
                        ))
                    })?;
                    let types: Vec<_> = export.ty.results().collect();
                    Ok(persist::from_wave(&values, &types)?)
                }
                persist::Outcome::Err(message) => Err(message),
            };
            finished.push(FinishedInvocation {
                seq: record.seq,
                function: request.function,
                result,
            });
        }
        Ok(finished)
    }

    /// Interrupts a worker: an invocation in progress (running, or parked
    /// on a promise) stops at once and its instance is dropped. Without
    /// `recover_immediately` the worker becomes
    /// [`Interrupted`](WorkerStatus::Interrupted) and runs nothing (queued
    /// invocations wait, a completion of its promise is kept for later)
    /// until [`resume_worker`](Self::resume_worker), across restarts too.
    /// With it, the worker goes on at once as after a crash. Either way the
    /// stopped invocation runs again by replay from its start, an open
    /// atomic region from its begin; a caller waiting on it gets its answer
    /// as before.
    pub fn interrupt_worker(&self, id: &WorkerId, recover_immediately: bool) -> Result<()> {
        let worker = self.worker(id)?;
        worker.check_not_failed()?;
        worker.interrupt(!recover_immediately);
        if !recover_immediately {
            // Shown at once; the worker task confirms it when it stops.
            worker.set_status(WorkerStatus::Interrupted);
        }
        tracing::info!(worker = %id, recover_immediately, "worker interrupted");
        Ok(())
    }

    /// Resumes an interrupted worker: its interrupted invocation runs again
    /// by replay, then its queue. Fails with [`Error::NotInterrupted`] for a
    /// worker that is not interrupted.
    pub fn resume_worker(&self, id: &WorkerId) -> Result<()> {
        let worker = self.worker(id)?;
        // A worker recovered from a crash is interrupted but not paused: it
        // is already on its way.
        if !worker.resume() && worker.status() != WorkerStatus::Interrupted {
            return Err(Error::NotInterrupted {
                worker: id.clone(),
                status: worker.status(),
            });
        }
        // A dormant worker has no task to notice.
        worker.wake_now();
        Ok(())
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
        drop(
            self.inner
                .storage
                .write(vec![vow_store::Write::DeleteWorker(persist::worker_key(
                    id,
                ))]),
        );
        tracing::info!(worker = %id, "worker deleted");
        Ok(())
    }
}

/// A component file's bytes, and its stem as the component's name.
async fn read_component_file(path: &Path) -> Result<(String, Vec<u8>)> {
    let bytes = tokio::fs::read(path).await.map_err(|cause| Error::Io {
        action: "reading",
        path: path.to_owned(),
        cause: Arc::new(cause),
    })?;
    let name = path.file_stem().map_or_else(
        || "component".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    Ok((name, bytes))
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
