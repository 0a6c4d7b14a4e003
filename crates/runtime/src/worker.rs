//! Workers: one Store and instance each, a mailbox of invocations executed one
//! at a time in arrival order, and status that can be read at any moment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use vow_store::{SharedStorage, Write};
use wasmtime::StoreLimits;
use wasmtime::component::Val;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::component::ExportFunc;
use crate::error::{Error, Result};
use crate::host::GolemCtx;
use crate::ids::{ComponentId, PromiseId, WorkerId};
use crate::journal::{Journal, SharedJournal};
use crate::output::Capture;
use crate::persist;
use crate::promise::Promises;

/// What every worker entry shares with the executor.
pub(crate) struct Shared {
    pub(crate) storage: SharedStorage,
    pub(crate) promises: Promises,
    pub(crate) output_limit: usize,
}

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
    /// Was running when the process stopped; its invocation runs again (by
    /// replay) from its start.
    Interrupted = 3,
    /// Retrying a failed invocation (not produced yet; reserved for retries).
    Retrying = 4,
    /// An invocation trapped or timed out; the worker takes no more invocations.
    Failed = 5,
    /// Finished for good (not produced yet).
    Exited = 6,
}

impl WorkerStatus {
    /// Parses the WIT spelling (`running`, `idle`, ...).
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Idle,
            Self::Suspended,
            Self::Interrupted,
            Self::Retrying,
            Self::Failed,
            Self::Exited,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

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
    /// Its position in the worker's queue, as stored.
    pub(crate) seq: u64,
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
    pub(crate) storage: SharedStorage,
    pub(crate) journal: SharedJournal,
    status: AtomicU8,
    last_error: Mutex<Option<String>>,
    /// The promise the guest is parked on, and since when.
    parked: Mutex<Option<(PromiseId, Instant)>>,
    /// Signalled when the guest parks, so the worker task can evict it.
    pub(crate) park_signal: Notify,
    /// The last invocation sequence number handed out.
    seq: AtomicU64,
    /// Set for a worker that was running when the process stopped: its
    /// next load runs an interrupted atomic region again from its start.
    pub(crate) interrupted: AtomicBool,
    /// Invocations waiting for the worker task, oldest first. A plain queue
    /// rather than a channel: a channel allocates a block of slots up front,
    /// and a million waiting workers each keep a mailbox.
    mailbox: Mutex<VecDeque<Job>>,
    /// Signalled when a job is queued or the worker is closed.
    mail: Notify,
    /// Set once the worker is deleted: nothing more is queued.
    closed: AtomicBool,
    /// Asks the worker task to drop its instance (the live-worker cap was
    /// exceeded and this worker was the least recently used).
    pub(crate) evict_signal: Notify,
    /// This worker's place in the registry's least-recently-used order while
    /// it is resident and not running.
    pub(crate) lru_tick: Mutex<Option<u64>>,
    /// Set while the registry's request to leave memory is unanswered.
    pub(crate) evict_requested: AtomicBool,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Outcomes of recent invocations that carried an idempotency key.
    idempotency: Mutex<VecDeque<(String, SharedOutcome)>>,
}

/// The last invocation sequence number of a recovered worker before it is
/// read from the store.
pub(crate) const UNKNOWN_SEQ: u64 = u64::MAX;

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
    /// A worker entry; `last_index` is the last index of its log as far as
    /// known (0 when it is read from the store at the first load), and
    /// `last_seq` its last invocation sequence number ([`UNKNOWN_SEQ`] to
    /// read it from the store when needed).
    pub(crate) fn new(
        id: WorkerId,
        config: WorkerConfig,
        created_at: SystemTime,
        shared: &Shared,
        last_index: u64,
        last_seq: u64,
    ) -> Arc<Self> {
        let muted = Arc::new(AtomicBool::new(false));
        let journal = Journal::new(
            id.clone(),
            Arc::clone(&shared.storage),
            last_index,
            Arc::clone(&muted),
        )
        .shared();
        Arc::new(Self {
            id,
            args: config.args,
            env: config.env,
            created_at,
            promises: shared.promises.clone(),
            stdout: Capture::new(shared.output_limit, Arc::clone(&muted)),
            stderr: Capture::new(shared.output_limit, Arc::clone(&muted)),
            storage: Arc::clone(&shared.storage),
            journal,
            status: AtomicU8::new(WorkerStatus::Idle as u8),
            last_error: Mutex::new(None),
            parked: Mutex::new(None),
            park_signal: Notify::new(),
            seq: AtomicU64::new(last_seq),
            interrupted: AtomicBool::new(false),
            mailbox: Mutex::new(VecDeque::new()),
            mail: Notify::new(),
            closed: AtomicBool::new(false),
            evict_signal: Notify::new(),
            lru_tick: Mutex::new(None),
            evict_requested: AtomicBool::new(false),
            task: Mutex::new(None),
            idempotency: Mutex::new(VecDeque::new()),
        })
    }

    pub(crate) fn status(&self) -> WorkerStatus {
        WorkerStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, status: WorkerStatus) {
        self.status.store(status as u8, Ordering::Release);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Restores what the store says of the worker's state.
    pub(crate) fn restore(&self, status: WorkerStatus, last_error: Option<String>) {
        *lock(&self.last_error) = last_error;
        self.set_status(status);
    }

    pub(crate) fn fail(&self, reason: String) {
        *lock(&self.last_error) = Some(reason);
        self.set_status(WorkerStatus::Failed);
    }

    /// The state to store for the worker now.
    pub(crate) fn stored_state(&self) -> vow_store::WorkerState {
        vow_store::WorkerState {
            status: self.status().as_str().to_owned(),
            last_error: self.last_error(),
            awaiting: self.parked().map(|(p, _)| persist::promise_key(&p)),
        }
    }

    /// The write that stores the worker's state now.
    pub(crate) fn state_write(&self) -> Write {
        Write::UpdateWorker {
            worker: persist::worker_key(&self.id),
            state: self.stored_state(),
        }
    }

    /// Stores the worker's state; ordered before every later write.
    pub(crate) fn persist_state(&self) {
        drop(self.storage.write(vec![self.state_write()]));
    }

    /// The guest parked in `await-promise` on `promise`.
    pub(crate) fn park(&self, promise: PromiseId) {
        *lock(&self.parked) = Some((promise, Instant::now()));
        self.set_status(WorkerStatus::Suspended);
        self.persist_state();
        self.park_signal.notify_one();
    }

    /// The guest's await returned.
    pub(crate) fn unpark(&self) {
        *lock(&self.parked) = None;
        self.set_status(WorkerStatus::Running);
        self.persist_state();
        self.park_signal.notify_one();
    }

    /// What the guest is parked on, and since when.
    pub(crate) fn parked(&self) -> Option<(PromiseId, Instant)> {
        lock(&self.parked).clone()
    }

    /// Forgets a park that ended while the worker was out of memory.
    pub(crate) fn clear_parked(&self) {
        *lock(&self.parked) = None;
    }

    /// Restores the promise a worker was parked on when it was stored.
    pub(crate) fn restore_parked(&self, promise: PromiseId) {
        *lock(&self.parked) = Some((promise, Instant::now()));
    }

    /// Reads the last invocation sequence number from the store if it is
    /// not known yet (a recovered worker learns it at its first invocation,
    /// so recovery does not read it for every worker).
    pub(crate) async fn load_seq(&self) -> Result<()> {
        if self.seq.load(Ordering::Acquire) != UNKNOWN_SEQ {
            return Ok(());
        }
        let last = self
            .storage
            .last_invocation_seq(&persist::worker_key(&self.id))
            .await?;
        // A concurrent first invocation may have loaded it already.
        let _ = self
            .seq
            .compare_exchange(UNKNOWN_SEQ, last, Ordering::AcqRel, Ordering::Acquire);
        Ok(())
    }

    /// The next invocation sequence number ([`load_seq`](Self::load_seq)
    /// first).
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel) + 1
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
            pending_invocations: lock(&self.mailbox).len(),
        }
    }

    /// Refuses work if the worker has failed.
    pub(crate) fn check_not_failed(&self) -> Result<()> {
        if self.status() == WorkerStatus::Failed {
            return Err(Error::WorkerFailed {
                worker: self.id.clone(),
                reason: self.last_error().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Queues a job; it runs after every job queued before it.
    pub(crate) fn enqueue(&self, job: Job) -> Result<()> {
        self.check_not_failed()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::WorkerDeleted(self.id.clone()));
        }
        lock(&self.mailbox).push_back(job);
        self.mail.notify_one();
        Ok(())
    }

    /// The next queued job, waiting for one; `None` once the worker is
    /// deleted. Only the worker task calls this.
    pub(crate) async fn next_job(&self) -> Option<Job> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(job) = lock(&self.mailbox).pop_front() {
                return Some(job);
            }
            // `notify_one` stores a permit when nobody waits, so a job
            // queued between the check and here is not missed.
            self.mail.notified().await;
        }
    }

    /// Whether a job is waiting in the mailbox.
    pub(crate) fn has_mail(&self) -> bool {
        !lock(&self.mailbox).is_empty()
    }

    /// Whether the worker could leave memory now: idle with nothing queued,
    /// or parked on a promise.
    pub(crate) fn evictable(&self) -> bool {
        match self.status() {
            WorkerStatus::Idle => !self.has_mail(),
            WorkerStatus::Suspended => self.parked().is_some(),
            _ => false,
        }
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

    /// Stops the worker task; an invocation in progress is dropped with its
    /// Store, and queued ones fail with [`Error::WorkerDeleted`].
    pub(crate) fn abort(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        // Dropping the jobs drops their reply senders.
        let queued: Vec<Job> = lock(&self.mailbox).drain(..).collect();
        drop(queued);
        self.mail.notify_one();
    }
}

/// All workers, by id, whether in memory or not.
pub(crate) struct Registry {
    workers: RwLock<HashMap<WorkerId, Arc<WorkerEntry>>>,
    /// Workers with a Store in memory right now.
    resident: AtomicUsize,
    /// Most workers kept in memory; past it the least recently used idle or
    /// parked ones are asked to leave.
    max_resident: usize,
    /// Resident workers by last use, oldest first.
    lru: Mutex<Lru>,
    /// Workers asked to leave memory that have not answered yet.
    evicting: AtomicUsize,
}

#[derive(Default)]
struct Lru {
    next: u64,
    order: std::collections::BTreeMap<u64, std::sync::Weak<WorkerEntry>>,
}

/// How many resident workers past the cap an eviction round looks at
/// beyond the ones it needs, skipping those that are running.
const EVICTION_SCAN: usize = 64;

impl Registry {
    pub(crate) fn new(max_resident: usize) -> Self {
        Self {
            workers: RwLock::default(),
            resident: AtomicUsize::new(0),
            max_resident: max_resident.max(1),
            lru: Mutex::default(),
            evicting: AtomicUsize::new(0),
        }
    }

    /// A worker came into memory: it becomes the most recently used, and if
    /// that makes too many, the least recently used leave.
    pub(crate) fn arrived(&self, entry: &Arc<WorkerEntry>) {
        self.resident.fetch_add(1, Ordering::AcqRel);
        self.touch(entry);
        self.enforce_cap();
    }

    /// A worker left memory.
    pub(crate) fn left(&self, entry: &WorkerEntry) {
        self.resident.fetch_sub(1, Ordering::AcqRel);
        if let Some(tick) = lock(&entry.lru_tick).take() {
            lock(&self.lru).order.remove(&tick);
        }
    }

    /// Marks a resident worker as used now.
    pub(crate) fn touch(&self, entry: &Arc<WorkerEntry>) {
        let mut lru = lock(&self.lru);
        let mut tick = lock(&entry.lru_tick);
        if let Some(old) = tick.take() {
            lru.order.remove(&old);
        }
        lru.next += 1;
        let now = lru.next;
        lru.order.insert(now, Arc::downgrade(entry));
        *tick = Some(now);
    }

    /// Asks the least recently used idle or parked workers to leave memory
    /// while more are resident than the cap allows (counting those already
    /// asked). Running workers are skipped: they leave once they are idle
    /// and another worker needs the room.
    fn enforce_cap(&self) {
        let resident = self.resident.load(Ordering::Acquire);
        let over = resident
            .saturating_sub(self.max_resident)
            .saturating_sub(self.evicting.load(Ordering::Acquire));
        if over == 0 {
            return;
        }
        let lru = lock(&self.lru);
        let mut asked = 0;
        for entry in lru.order.values().take(over + EVICTION_SCAN) {
            if asked == over {
                break;
            }
            let Some(entry) = entry.upgrade() else {
                continue;
            };
            if entry.evictable() && !entry.evict_requested.swap(true, Ordering::AcqRel) {
                self.evicting.fetch_add(1, Ordering::AcqRel);
                entry.evict_signal.notify_one();
                asked += 1;
            }
        }
    }

    /// Takes this worker's pending request to leave memory, if there is one.
    pub(crate) fn take_eviction(&self, entry: &WorkerEntry) -> bool {
        let asked = entry.evict_requested.swap(false, Ordering::AcqRel);
        if asked {
            self.evicting.fetch_sub(1, Ordering::AcqRel);
        }
        asked
    }

    pub(crate) fn resident(&self) -> usize {
        self.resident.load(Ordering::Acquire)
    }

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
