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
use crate::persist;
use crate::promise::Promises;
use crate::run::Env;

/// What every worker entry shares with the executor.
pub(crate) struct Shared {
    pub(crate) storage: SharedStorage,
    pub(crate) promises: Promises,
    pub(crate) output_limit: usize,
    /// The loaded components, for `when` and `then` into other ones.
    pub(crate) components: crate::compose::Components,
    /// Starts the workers `when` stores.
    pub(crate) spawner: crate::compose::Spawner,
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
    /// Every status, in the WIT's order.
    pub const ALL: [Self; 7] = [
        Self::Running,
        Self::Idle,
        Self::Suspended,
        Self::Interrupted,
        Self::Retrying,
        Self::Failed,
        Self::Exited,
    ];

    /// Parses the WIT spelling (`running`, `idle`, ...).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
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
    /// Bytes of linear memory of the worker's instance: the current one, or
    /// the last one for a worker out of memory (0 before its first).
    pub linear_memory: u64,
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
    /// When it must be done by, set when it first starts.
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// The promise its outcome settles (started by `when` or `then`).
    pub(crate) settles: Option<PromiseId>,
    /// Entered whenever the worker task works on it (see [`crate::trace`]).
    pub(crate) span: tracing::Span,
    /// When the worker task first took it, for its duration's metric.
    pub(crate) started: Option<Instant>,
}

impl Job {
    /// A job and the shared future of its outcome, remembered under its
    /// idempotency key if it has one; its span joins `trace_parent`'s
    /// trace.
    pub(crate) fn new(
        entry: &WorkerEntry,
        export: Arc<ExportFunc>,
        params: Vec<Val>,
        idempotency_key: Option<String>,
        seq: u64,
        trace_parent: Option<&crate::trace::TraceParent>,
    ) -> (Self, SharedOutcome) {
        use futures::FutureExt as _;
        let (reply, rx) = oneshot::channel();
        let id = entry.id.clone();
        let outcome: SharedOutcome =
            async move { rx.await.unwrap_or(Err(Error::WorkerDeleted(id))) }
                .boxed()
                .shared();
        if let Some(key) = &idempotency_key {
            entry.remember_outcome(key.clone(), outcome.clone());
        }
        let span = crate::trace::invocation_span(
            &entry.id,
            &export.name,
            seq,
            idempotency_key.as_deref(),
            trace_parent,
        );
        let job = Self {
            export,
            params,
            idempotency_key,
            seq,
            reply,
            deadline: None,
            settles: None,
            span,
            started: None,
        };
        (job, outcome)
    }
}

/// The part of a worker that lives outside its Store: readable at any time,
/// shared by the registry, the worker task and the worker's host state.
pub(crate) struct WorkerEntry {
    /// Bytes of linear memory of its current (or last) instance.
    pub(crate) linear_memory: AtomicU64,
    pub(crate) id: WorkerId,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) created_at: SystemTime,
    /// The loaded components, for `when` and `then` into other ones.
    pub(crate) components: crate::compose::Components,
    /// Starts the workers `when` stores.
    pub(crate) spawner: crate::compose::Spawner,
    pub(crate) promises: Promises,
    pub(crate) output: Arc<crate::output::Output>,
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
    /// and a million waiting workers each keep a mailbox. Jobs are boxed:
    /// the queue's first allocation holds several slots.
    mailbox: Mutex<VecDeque<Box<Job>>>,
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
    /// Set from an interruption until the worker is resumed: it runs
    /// nothing meanwhile.
    paused: AtomicBool,
    /// Set while an interruption is asked for and not carried out yet.
    interrupt_requested: AtomicBool,
    /// Wakes the worker task for an interruption or a resumption.
    control: Notify,
    /// The worker task while there is one. A worker with nothing to do and
    /// no instance has none (it is dormant): a new invocation, the
    /// completion of the promise it waits on, or a resumption spawns it.
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// The promise a dormant worker waits on; only its completion (or
    /// deletion) wakes it, so invocations queue behind the parked one.
    dormant_on: Mutex<Option<PromiseId>>,
    /// What the worker task runs with.
    pub(crate) run_env: Arc<Env>,
    /// Set once the worker's last invocation sequence number and its
    /// unfinished invocations are read from the store into the mailbox (at
    /// once for a new worker; when first needed for a recovered one).
    loaded: AtomicBool,
    /// Serialises reading the queue from the store.
    loading: tokio::sync::Mutex<()>,
    /// Outcomes of recent invocations that carried an idempotency key.
    idempotency: Mutex<VecDeque<(String, SharedOutcome)>>,
    /// Pending promises this worker created in this process (the promise
    /// table counts them down as they settle or are deleted), against
    /// the executor's `max_open_promises`.
    pub(crate) open_promises: AtomicUsize,
    /// Set while the worker has an instance in memory (for the metrics).
    resident: AtomicBool,
    /// Since when the worker has had no task (it was made, or its task
    /// ended): a cluster node lets go of workers quiet for a while.
    quiet_since: Mutex<Instant>,
    /// Set when a cluster node let go of the worker ([`Self::try_release`]).
    released: AtomicBool,
    /// When the promise table told the worker that the promise it waits
    /// on settled, until its await returns (see [`crate::metrics`]).
    pub(crate) settled: crate::metrics::Stamp,
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
        env: Arc<Env>,
    ) -> Arc<Self> {
        let output = crate::output::Output::new(shared.output_limit);
        let journal = Journal::new(
            id.clone(),
            Arc::clone(&shared.storage),
            last_index,
            Arc::clone(&output),
        )
        .shared();
        Arc::new(Self {
            linear_memory: AtomicU64::new(0),
            id,
            args: config.args,
            env: config.env,
            created_at,
            promises: shared.promises.clone(),
            components: Arc::clone(&shared.components),
            spawner: shared.spawner.clone(),
            output,
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
            paused: AtomicBool::new(false),
            interrupt_requested: AtomicBool::new(false),
            control: Notify::new(),
            task: Mutex::new(None),
            dormant_on: Mutex::new(None),
            open_promises: AtomicUsize::new(0),
            resident: AtomicBool::new(false),
            quiet_since: Mutex::new(Instant::now()),
            released: AtomicBool::new(false),
            settled: crate::metrics::Stamp::default(),
            run_env: env,
            loaded: AtomicBool::new(last_seq != UNKNOWN_SEQ),
            loading: tokio::sync::Mutex::const_new(()),
            idempotency: Mutex::new(VecDeque::new()),
        })
    }

    pub(crate) fn status(&self) -> WorkerStatus {
        WorkerStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, status: WorkerStatus) {
        self.status.store(status as u8, Ordering::Release);
        self.run_env.changes.bump();
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

    /// Reads the last invocation sequence number and the unfinished
    /// invocations from the store if that was not done yet: a recovered
    /// worker does it when first needed, so recovery reads neither for
    /// every worker. The invocations go into the mailbox ahead of anything
    /// queued later, in their order.
    ///
    /// The guard it returns keeps the queue from being dropped again (see
    /// `forget_unwatched`) until the caller has queued its job.
    pub(crate) async fn ensure_loaded(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        let guard = self.loading.lock().await;
        if self.loaded.load(Ordering::Acquire) {
            return Ok(guard);
        }
        let key = persist::worker_key(&self.id);
        if self.seq.load(Ordering::Acquire) == UNKNOWN_SEQ {
            let last = self.storage.last_invocation_seq(&key).await?;
            // Only this load sets it while it is unknown.
            self.seq.store(last, Ordering::Release);
        }
        let stored = self.storage.unfinished_invocations(&key).await?;
        let queued: Vec<u64> = lock(&self.mailbox).iter().map(|j| j.seq).collect();
        let mut jobs = Vec::with_capacity(stored.len());
        for invocation in stored {
            if queued.contains(&invocation.seq) {
                continue;
            }
            if let Some(job) = self.stored_job(invocation)? {
                jobs.push(job);
            }
        }
        let mut mailbox = lock(&self.mailbox);
        for job in jobs.into_iter().rev() {
            mailbox.push_front(Box::new(job));
        }
        self.loaded.store(true, Ordering::Release);
        Ok(guard)
    }

    /// Drops the parked job of a worker going dormant when nobody waits for
    /// its outcome (the caller went away, or there never was one) and
    /// nothing is queued behind it: the store holds the invocation, and
    /// [`ensure_loaded`](Self::ensure_loaded) reads it back when the worker
    /// wakes. A waiting worker then costs no more memory than a recovered
    /// one.
    fn forget_unwatched(&self) {
        // Someone is reading the queue or queueing a job: keep it.
        let Ok(_loading) = self.loading.try_lock() else {
            return;
        };
        self.drop_unwatched_job();
    }

    /// [`forget_unwatched`](Self::forget_unwatched), with `loading` held.
    fn drop_unwatched_job(&self) {
        let mut mailbox = lock(&self.mailbox);
        let [job] = mailbox.as_slices().0 else {
            return;
        };
        let mut keys = lock(&self.idempotency);
        let watched = match &job.idempotency_key {
            // The map holds one copy of the outcome; any other is a caller's.
            Some(key) => keys
                .iter()
                .find(|(k, _)| k == key)
                .is_some_and(|(_, outcome)| outcome.strong_count().unwrap_or(0) > 1),
            None => !job.reply.is_closed(),
        };
        if watched {
            return;
        }
        if let Some(key) = &job.idempotency_key {
            keys.retain(|(k, _)| k != key);
            keys.shrink_to_fit();
        }
        mailbox.clear();
        mailbox.shrink_to_fit();
        self.loaded.store(false, Ordering::Release);
    }

    /// A job for an invocation read from the store; `None` (logged) if the
    /// component no longer exports its function.
    pub(crate) fn stored_job(
        &self,
        invocation: vow_store::InvocationRecord,
    ) -> Result<Option<Job>> {
        let request: persist::Request = persist::decode(&invocation.request, "a request")?;
        let Some(export) = self.run_env.component.export(&request.function) else {
            tracing::error!(worker = %self.id, function = request.function, "stored invocation names an unknown function");
            return Ok(None);
        };
        let types: Vec<_> = export.ty.params().map(|(_, t)| t).collect();
        let params = persist::from_wave(&request.params, &types)?;
        // A stored traceparent that no longer parses is dropped, as a
        // malformed header is.
        let trace_parent = request
            .trace_parent
            .as_deref()
            .and_then(crate::trace::TraceParent::parse);
        let (mut job, _) = Job::new(
            self,
            export,
            params,
            invocation.idempotency_key,
            invocation.seq,
            trace_parent.as_ref(),
        );
        job.settles = request.settles;
        Ok(Some(job))
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
            linear_memory: self.linear_memory.load(Ordering::Relaxed),
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
    pub(crate) fn enqueue(self: &Arc<Self>, job: Job) -> Result<()> {
        self.check_not_failed()?;
        self.check_here()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::WorkerDeleted(self.id.clone()));
        }
        lock(&self.mailbox).push_back(Box::new(job));
        self.run_env.changes.bump();
        self.mail.notify_one();
        self.wake(false);
        Ok(())
    }

    /// Takes the job `seq` back out of the queue if the worker task has not
    /// taken it yet (its `Enqueue` write failed); whether it was there.
    /// Its idempotency key is forgotten, so that a retry with it runs.
    pub(crate) fn withdraw(&self, seq: u64) -> bool {
        let withdrawn = {
            let mut mailbox = lock(&self.mailbox);
            let at = mailbox.iter().position(|job| job.seq == seq);
            at.and_then(|at| mailbox.remove(at))
        };
        let Some(job) = withdrawn else {
            return false;
        };
        if let Some(key) = &job.idempotency_key {
            lock(&self.idempotency).retain(|(k, _)| k != key);
        }
        true
    }

    /// Puts back a job the task took and could not finish now.
    pub(crate) fn requeue_front(&self, job: Box<Job>) {
        lock(&self.mailbox).push_front(job);
    }

    /// Spawns the worker task if the worker is dormant. A dormant worker
    /// parked on a promise is only woken by that promise (`for_promise`), or
    /// by a control request ([`wake_now`](Self::wake_now)).
    pub(crate) fn wake(self: &Arc<Self>, for_promise: bool) {
        let mut task = lock(&self.task);
        if task.is_some() || self.closed.load(Ordering::Acquire) {
            return;
        }
        {
            let mut dormant_on = lock(&self.dormant_on);
            if dormant_on.is_some() && !for_promise {
                return;
            }
            *dormant_on = None;
        }
        let handle = tokio::spawn(crate::run::run(Arc::clone(self), None));
        *task = Some(handle.abort_handle());
    }

    /// Spawns the worker task if the worker is dormant, whatever it waits on.
    pub(crate) fn wake_now(self: &Arc<Self>) {
        self.wake(true);
    }

    /// Called by the worker task as it ends: the worker becomes dormant
    /// unless a job arrived meanwhile (then `false`, and the task goes on).
    /// A worker parked on `promise` waits for it without a task.
    pub(crate) fn go_dormant(self: &Arc<Self>, promise: Option<PromiseId>) -> bool {
        let mut task = lock(&self.task);
        if promise.is_none() && self.has_mail() && !self.closed.load(Ordering::Acquire) {
            return false;
        }
        *task = None;
        *lock(&self.quiet_since) = Instant::now();
        if let Some(promise) = promise {
            self.forget_unwatched();
            *lock(&self.dormant_on) = Some(promise.clone());
            drop(task);
            // Registered after the task is gone, so a completion that is
            // already there wakes the worker at once.
            if self.promises.watch(promise, Arc::downgrade(self)).is_err() {
                // The executor is shutting down.
            }
        }
        true
    }

    /// The next queued job, waiting for one; `None` once the worker is
    /// deleted. Only the worker task calls this.
    pub(crate) async fn next_job(&self) -> Option<Box<Job>> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            let job = lock(&self.mailbox).pop_front();
            if let Some(job) = job {
                self.run_env.changes.bump();
                return Some(job);
            }
            // `notify_one` stores a permit when nobody waits, so a job
            // queued between the check and here is not missed.
            self.mail.notified().await;
        }
    }

    /// Asks the worker task to stop what it is doing and drop its instance;
    /// with `pause`, the worker then runs nothing until [`resume`](Self::resume).
    pub(crate) fn interrupt(&self, pause: bool) {
        if pause {
            self.paused.store(true, Ordering::Release);
        }
        // Its next load re-runs an open atomic region from its begin.
        self.interrupted.store(true, Ordering::Release);
        self.interrupt_requested.store(true, Ordering::Release);
        self.control.notify_one();
    }

    /// Marks a worker recovered as interrupted by a user: it stays paused.
    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Lets an interrupted worker go on; `false` if it was not paused.
    pub(crate) fn resume(&self) -> bool {
        let was = self.paused.swap(false, Ordering::AcqRel);
        self.control.notify_one();
        was
    }

    pub(crate) fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Takes a pending interruption, if there is one.
    pub(crate) fn take_interrupt(&self) -> bool {
        self.interrupt_requested.swap(false, Ordering::AcqRel)
    }

    /// Resolves once an interruption is asked for (without taking it).
    pub(crate) async fn interrupt_asked(&self) {
        loop {
            if self.interrupt_requested.load(Ordering::Acquire) {
                return;
            }
            self.control.notified().await;
        }
    }

    /// Resolves once the worker is not paused.
    pub(crate) async fn until_resumed(&self) {
        while self.paused() {
            self.control.notified().await;
        }
    }

    /// How many jobs wait in the mailbox.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.mailbox).len()
    }

    /// Whether a job is waiting in the mailbox.
    pub(crate) fn has_mail(&self) -> bool {
        !lock(&self.mailbox).is_empty()
    }

    /// In a cluster, as the node lets go of the worker: closes it if it is
    /// out of memory with nothing to do (idle, failed or parked, nothing
    /// queued, no task) and has been for `quiet`; whether it did. From
    /// then on it takes no job (see [`enqueue`](Self::enqueue)) and no
    /// promise wakes it: the caller removes it from the registry, and the
    /// node that needs it next loads it from the store.
    pub(crate) fn try_release(&self, quiet: std::time::Duration) -> bool {
        // A submission holds this while it queues its job.
        let Ok(_loading) = self.loading.try_lock() else {
            return false;
        };
        let task = lock(&self.task);
        // The parked job, put back as the worker left memory, if its caller
        // has gone since (the store holds the invocation).
        if task.is_none() && self.parked().is_some() {
            self.drop_unwatched_job();
        }
        if !self.quiet_for(task.is_some(), quiet) || self.has_mail() {
            return false;
        }
        self.released.store(true, Ordering::Release);
        self.closed.store(true, Ordering::Release);
        true
    }

    /// Whether [`try_release`](Self::try_release) would let go of it now.
    pub(crate) fn may_release(&self, quiet: std::time::Duration) -> bool {
        let has_task = lock(&self.task).is_some();
        self.quiet_for(has_task, quiet)
    }

    /// Out of memory with nothing to do for `quiet`; a parked worker's
    /// parked job may still be queued (whether anyone waits for it is
    /// for [`try_release`](Self::try_release) to find out).
    fn quiet_for(&self, has_task: bool, quiet: std::time::Duration) -> bool {
        let nothing_to_do = match self.status() {
            WorkerStatus::Idle | WorkerStatus::Failed | WorkerStatus::Exited => !self.has_mail(),
            WorkerStatus::Suspended => self.parked().is_some() && self.queued() <= 1,
            _ => false,
        };
        !has_task
            && nothing_to_do
            && !self.paused()
            && !self.resident.load(Ordering::Acquire)
            && !self.closed.load(Ordering::Acquire)
            && lock(&self.quiet_since).elapsed() >= quiet
    }

    /// [`Error::WorkerMoved`] once the node let go of the worker.
    pub(crate) fn check_here(&self) -> Result<()> {
        if self.released.load(Ordering::Acquire) {
            return Err(Error::WorkerMoved(self.id.clone()));
        }
        Ok(())
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

    /// Spawns the task of a worker that was just started, with its
    /// instance.
    pub(crate) fn spawn_live(self: &Arc<Self>, live: crate::run::Live) {
        let mut task = lock(&self.task);
        let handle = tokio::spawn(crate::run::run(Arc::clone(self), Some(live)));
        *task = Some(handle.abort_handle());
    }

    /// Stops the worker task; an invocation in progress is dropped with its
    /// Store, and queued ones fail with [`Error::WorkerDeleted`].
    pub(crate) fn abort(&self) {
        self.closed.store(true, Ordering::Release);
        self.run_env.changes.bump();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
        }
        // Dropping the jobs drops their reply senders.
        let queued: Vec<Box<Job>> = lock(&self.mailbox).drain(..).collect();
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
    /// Most workers in all, and per component, that
    /// [`insert_within_limits`](Self::insert_within_limits) lets in.
    max_workers: usize,
    max_per_component: usize,
    /// Workers per component; changed with `workers`' write lock held.
    per_component: Mutex<HashMap<ComponentId, usize>>,
    /// On a cluster node: the other nodes' workers, as last stored.
    directory: Option<crate::member::Directory>,
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
            max_workers: usize::MAX,
            max_per_component: usize::MAX,
            per_component: Mutex::default(),
            directory: None,
        }
    }

    /// With a directory of the other nodes' workers (a cluster node).
    pub(crate) fn with_directory(mut self, on: bool) -> Self {
        self.directory = on.then(crate::member::Directory::default);
        self
    }

    /// A cluster node's directory of the other nodes' workers.
    pub(crate) fn directory(&self) -> Option<&crate::member::Directory> {
        self.directory.as_ref()
    }

    /// The metadata of a worker: this executor's, or on a cluster node
    /// another node's as last stored.
    pub(crate) fn metadata(&self, id: &WorkerId) -> Option<WorkerMetadata> {
        match self.get(id) {
            Some(worker) => Some(worker.metadata()),
            None => self.directory.as_ref().and_then(|d| d.get(id)),
        }
    }

    /// The metadata of every worker (of one component), with the other
    /// nodes' on a cluster node, by id.
    pub(crate) fn all_metadata(&self, component: Option<ComponentId>) -> Vec<WorkerMetadata> {
        let workers = match component {
            Some(c) => self.of_component(c),
            None => self.all(),
        };
        let mut all: Vec<WorkerMetadata> = workers.iter().map(|w| w.metadata()).collect();
        if let Some(directory) = &self.directory {
            let here: std::collections::HashSet<WorkerId> =
                all.iter().map(|w| w.id.clone()).collect();
            all.extend(
                directory
                    .list(component)
                    .into_iter()
                    .filter(|w| !here.contains(&w.id)),
            );
            all.sort_by(|a, b| a.id.cmp(&b.id));
        }
        all
    }

    /// Sets the limits [`insert_within_limits`](Self::insert_within_limits)
    /// enforces.
    pub(crate) fn with_worker_limits(mut self, max_workers: usize, per_component: usize) -> Self {
        self.max_workers = max_workers;
        self.max_per_component = per_component;
        self
    }

    /// Refuses a worker of `component` that would pass a limit.
    fn check_room(
        &self,
        workers: &HashMap<WorkerId, Arc<WorkerEntry>>,
        id: &WorkerId,
    ) -> Result<()> {
        let too_many = |component, limit| Error::TooManyWorkers {
            worker: id.clone(),
            component,
            limit,
        };
        if workers.len() >= self.max_workers {
            return Err(too_many(None, self.max_workers));
        }
        let of_component = lock(&self.per_component)
            .get(&id.component_id)
            .copied()
            .unwrap_or(0);
        if of_component >= self.max_per_component {
            return Err(too_many(Some(id.component_id), self.max_per_component));
        }
        Ok(())
    }

    /// Whether a worker `id` could be started now without passing a limit
    /// (for work that is stored before its worker is inserted).
    pub(crate) fn has_room(&self, id: &WorkerId) -> Result<()> {
        let workers = self.workers.read().unwrap_or_else(|p| p.into_inner());
        self.check_room(&workers, id)
    }

    fn counted_in(&self, component: ComponentId) {
        *lock(&self.per_component).entry(component).or_insert(0) += 1;
    }

    fn counted_out(&self, component: ComponentId) {
        let mut counts = lock(&self.per_component);
        if let Some(count) = counts.get_mut(&component) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&component);
            }
        }
    }

    /// A worker came into memory: it becomes the most recently used, and if
    /// that makes too many, the least recently used leave.
    pub(crate) fn arrived(&self, entry: &Arc<WorkerEntry>) {
        self.resident.fetch_add(1, Ordering::AcqRel);
        entry.resident.store(true, Ordering::Release);
        self.touch(entry);
    }

    /// A worker left memory.
    pub(crate) fn left(&self, entry: &WorkerEntry) {
        self.resident.fetch_sub(1, Ordering::AcqRel);
        entry.resident.store(false, Ordering::Release);
        // Not inside an `if let` on the tick's lock: its guard would be held
        // while taking the order's, the reverse of `touch`.
        let tick = lock(&entry.lru_tick).take();
        if let Some(tick) = tick {
            lock(&self.lru).order.remove(&tick);
        }
    }

    /// Marks a resident worker as used now.
    ///
    /// Called as a worker becomes idle or parks, so it also enforces the
    /// cap: when the cap was passed while every candidate was running,
    /// the first to become evictable is asked to leave.
    pub(crate) fn touch(&self, entry: &Arc<WorkerEntry>) {
        {
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
        self.enforce_cap();
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

    /// How many workers have each status, in memory and out of it: one
    /// pass over the table under its read lock, for a metrics scrape.
    pub(crate) fn census(&self) -> crate::metrics::Census {
        let mut census = crate::metrics::Census::default();
        let workers = self.workers.read().unwrap_or_else(|p| p.into_inner());
        for worker in workers.values() {
            let counts = if worker.resident.load(Ordering::Acquire) {
                &mut census.live
            } else {
                &mut census.evicted
            };
            counts[worker.status() as usize] += 1;
        }
        census
    }

    pub(crate) fn get(&self, id: &WorkerId) -> Option<Arc<WorkerEntry>> {
        self.workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Inserts a worker unless the id is taken. Workers that exist
    /// already (recovered from the store, or stored by `when` and `then`)
    /// come in this way, whatever the limits.
    pub(crate) fn insert(&self, entry: Arc<WorkerEntry>) -> Result<()> {
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        if workers.contains_key(&entry.id) {
            return Err(Error::WorkerExists(entry.id.clone()));
        }
        self.counted_in(entry.id.component_id);
        let changes = entry.run_env.changes.clone();
        workers.insert(entry.id.clone(), entry);
        drop(workers);
        changes.bump();
        Ok(())
    }

    /// Inserts a new worker unless the id is taken or one more worker
    /// would pass the executor's or its component's limit
    /// ([`Error::TooManyWorkers`]); checked and inserted as one step.
    pub(crate) fn insert_within_limits(&self, entry: Arc<WorkerEntry>) -> Result<()> {
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        if workers.contains_key(&entry.id) {
            return Err(Error::WorkerExists(entry.id.clone()));
        }
        self.check_room(&workers, &entry.id)?;
        self.counted_in(entry.id.component_id);
        let changes = entry.run_env.changes.clone();
        workers.insert(entry.id.clone(), entry);
        drop(workers);
        changes.bump();
        Ok(())
    }

    pub(crate) fn remove(&self, id: &WorkerId) -> Option<Arc<WorkerEntry>> {
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        let removed = workers.remove(id);
        if removed.is_some() {
            self.counted_out(id.component_id);
        }
        drop(workers);
        if let Some(entry) = &removed {
            entry.run_env.changes.bump();
        }
        removed
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
        let mut workers = self.workers.write().unwrap_or_else(|p| p.into_inner());
        lock(&self.per_component).clear();
        workers.drain().map(|(_, w)| w).collect()
    }
}

/// Store data of a worker.
pub(crate) struct WorkerState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) golem: GolemCtx,
    pub(crate) limits: Limits,
    /// The running time of the current invocation, against the
    /// executor's `max_run_time`.
    pub(crate) run_clock: Arc<crate::limits::RunClock>,
}

/// The store's limits, and a count of the linear memory they allowed.
pub(crate) struct Limits {
    pub(crate) inner: StoreLimits,
    pub(crate) entry: Arc<WorkerEntry>,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            let grown = desired.saturating_sub(current) as u64;
            self.entry.linear_memory.fetch_add(grown, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
