//! The worker task: runs a worker's invocations one at a time, brings the
//! worker into memory by replay when it is not there, and evicts it while it
//! waits on a promise.
//!
//! A worker is *live* when it has a Store and an instance. It leaves memory
//! when it has been parked in `await-promise` for longer than the eviction
//! delay: the invocation's future and the Store are dropped, and the task
//! waits for the promise with nothing but a channel. When the promise
//! completes (or at once, for a worker that was running when the process
//! stopped) the worker is instantiated again and its log replayed: past
//! invocations rebuild its memory, and the current one runs from its start,
//! answered from the log until the log runs out.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime::component::{Instance, Val};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{ResourceTable, WasiCtxBuilder};

use crate::component::{ExportFunc, LoadedComponent};
use crate::error::{Error, Result, chain};
use crate::host::GolemCtx;
use crate::ids::PromiseId;
use crate::journal::{JournalMonotonicClock, JournalRandom, JournalWallClock, lock};
use crate::metrics::Eviction;
use crate::oplog::{OplogEntry, OplogRecord};
use crate::persist;
use crate::worker::{Job, Registry, WorkerEntry, WorkerState, WorkerStatus};

/// What a worker task needs from the executor.
pub(crate) struct Env {
    pub(crate) engine: Engine,
    pub(crate) component: Arc<LoadedComponent>,
    pub(crate) registry: Weak<Registry>,
    pub(crate) memory_limit: usize,
    pub(crate) max_resources: usize,
    pub(crate) invocation_timeout: Option<Duration>,
    /// How long a worker may stay parked in memory; `None` keeps it.
    pub(crate) evict_after: Option<Duration>,
    /// Invocations between snapshots; `None` takes none.
    pub(crate) snapshot_every: Option<u64>,
    /// Most pending promises a worker may hold.
    pub(crate) max_open_promises: usize,
    /// Longest an invocation may run (waiting not counted); `None`: no limit.
    pub(crate) max_run_time: Option<Duration>,
    /// Mints the completion links guests ask for.
    pub(crate) links: crate::links::Links,
    /// The executor's metrics.
    pub(crate) metrics: crate::metrics::Meter,
    /// Told when a worker's observable state changes.
    pub(crate) changes: crate::changes::Changes,
}

/// A worker in memory.
pub(crate) struct Live {
    store: Store<WorkerState>,
    instance: Instance,
    /// Counts the worker as resident while this lives.
    registry: Weak<Registry>,
    entry: Arc<WorkerEntry>,
    /// Invocations finished since the last snapshot (replayed ones too).
    since_snapshot: u64,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.left(&self.entry);
        }
    }
}

/// Entries read from the store per page when a worker is loaded.
const OPLOG_PAGE: usize = 4096;

/// Instantiates the worker's component with its journal wired into WASI.
pub(crate) async fn instantiate(
    entry: &Arc<WorkerEntry>,
    env: &Env,
    seed: (u64, u64),
) -> Result<Live> {
    let journal = Arc::clone(&entry.journal);
    // What a guest gets (docs/guest-capabilities.md): its own arguments and
    // environment, captured stdout and stderr, a closed stdin, journaled
    // clocks and randomness; no preopened directory, and no network (said
    // here rather than left to wasmtime-wasi's defaults, which have
    // changed between releases).
    let wasi = WasiCtxBuilder::new()
        .args(&entry.args)
        .envs(&entry.env)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .stdout(entry.output.stdout())
        .stderr(entry.output.stderr())
        .secure_random(JournalRandom::new(Arc::clone(&journal)))
        .insecure_random(JournalRandom::new(Arc::clone(&journal)))
        .insecure_random_seed((u128::from(seed.0) << 64) | u128::from(seed.1))
        .wall_clock(JournalWallClock(Arc::clone(&journal)))
        .monotonic_clock(JournalMonotonicClock(Arc::clone(&journal)))
        .build();
    let mut table = ResourceTable::new();
    table.set_max_capacity(env.max_resources);
    let state = WorkerState {
        wasi,
        table,
        golem: GolemCtx::new(Arc::clone(entry), env.registry.clone(), journal),
        limits: crate::worker::Limits {
            inner: StoreLimitsBuilder::new()
                .memory_size(env.memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            entry: Arc::clone(entry),
        },
        run_clock: crate::limits::RunClock::new(env.max_run_time),
    };
    // A new instance: its memory is counted from nothing.
    entry
        .linear_memory
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let mut store = Store::new(&env.engine, state);
    store.limiter(|s| &mut s.limits);
    // Yields at every tick, and traps a guest past its running time.
    store.epoch_deadline_callback(crate::limits::on_epoch);
    store.set_epoch_deadline(1);
    let instance = env
        .component
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| Error::Instantiation {
            worker: entry.id.clone(),
            reason: chain(&e),
        })?;
    if let Some(registry) = env.registry.upgrade() {
        registry.arrived(entry);
    }
    Ok(Live {
        store,
        instance,
        registry: env.registry.clone(),
        entry: Arc::clone(entry),
        since_snapshot: 0,
    })
}

/// Reads a worker's log from the store, from index `from` to its end.
async fn read_log(entry: &WorkerEntry, from: u64) -> Result<Vec<OplogRecord>> {
    let key = persist::worker_key(&entry.id);
    // An empty batch: once it is durable, so is everything written before,
    // and reads see it.
    entry.storage.write(Vec::new()).await?;
    let mut records = Vec::new();
    loop {
        let next = from + records.len() as u64;
        let page = entry.storage.oplog(&key, next, OPLOG_PAGE).await?;
        let done = page.len() < OPLOG_PAGE;
        for record in page {
            records.push(OplogRecord::from_stored(record).map_err(Error::Storage)?);
        }
        if done {
            return Ok(records);
        }
    }
}

/// The entry at `index`, if the log has one.
async fn read_entry(entry: &WorkerEntry, index: u64) -> Result<Option<OplogRecord>> {
    let key = persist::worker_key(&entry.id);
    let page = entry.storage.oplog(&key, index, 1).await?;
    page.into_iter()
        .next()
        .map(|r| OplogRecord::from_stored(r).map_err(Error::Storage))
        .transpose()
}

/// Why loading a worker failed.
enum LoadFailure {
    /// Its snapshot could not be used; a replay of the whole log may work.
    Snapshot(String),
    Failed(Error),
}

impl From<Error> for LoadFailure {
    fn from(error: Error) -> Self {
        Self::Failed(error)
    }
}

impl From<vow_store::Error> for LoadFailure {
    fn from(error: vow_store::Error) -> Self {
        Self::Failed(error.into())
    }
}

/// Brings a worker into memory: instantiates it, loads its latest snapshot
/// if it has one, and replays every finished invocation after that. Entries
/// of an invocation still in progress stay in the journal for [`attempt`]
/// to replay. A snapshot that cannot be loaded is passed over for a replay
/// of the whole log.
async fn load(entry: &Arc<WorkerEntry>, env: &Env) -> Result<Live> {
    let snapshot = match &env.component.snapshot {
        Some(_) => {
            entry.storage.write(Vec::new()).await?;
            entry
                .storage
                .snapshot(&persist::worker_key(&entry.id))
                .await?
        }
        None => None,
    };
    if let Some(snapshot) = snapshot {
        match load_from(entry, env, Some(snapshot)).await {
            Ok(live) => return Ok(live),
            Err(LoadFailure::Failed(error)) => return Err(error),
            Err(LoadFailure::Snapshot(reason)) => {
                tracing::warn!(worker = %entry.id, %reason, "snapshot not loaded; replaying the whole log");
            }
        }
    }
    match load_from(entry, env, None).await {
        Ok(live) => Ok(live),
        Err(LoadFailure::Failed(error)) => Err(error),
        Err(LoadFailure::Snapshot(reason)) => Err(Error::Storage(reason)),
    }
}

/// Loads a worker from its creation (`snapshot` is `None`) or from a
/// snapshot.
async fn load_from(
    entry: &Arc<WorkerEntry>,
    env: &Env,
    snapshot: Option<vow_store::SnapshotRecord>,
) -> std::result::Result<Live, LoadFailure> {
    let started = std::time::Instant::now();
    let not_created = || {
        Error::Storage(format!(
            "the oplog of worker {} does not start with its creation",
            entry.id
        ))
    };
    let seed = match read_entry(entry, 1).await?.map(|r| r.entry) {
        Some(OplogEntry::Create { insecure_seed, .. }) => insecure_seed,
        _ => return Err(not_created().into()),
    };
    let position = snapshot.as_ref().map_or(1, |s| s.index);
    let mut records = read_log(entry, position).await?;
    // The first record is the creation, or the snapshot's own entry.
    let saved = match (records.first().map(|r| &r.entry), snapshot) {
        (Some(OplogEntry::Create { .. }), None) => None,
        (
            Some(OplogEntry::Snapshot {
                settings,
                monotonic,
                ..
            }),
            Some(snapshot),
        ) => Some((snapshot.data, settings.clone(), *monotonic)),
        (_, Some(snapshot)) => {
            return Err(LoadFailure::Snapshot(format!(
                "the log of worker {} has no snapshot entry at index {}",
                entry.id, snapshot.index
            )));
        }
        (_, None) => return Err(not_created().into()),
    };
    records.remove(0);
    let log_end = records.last().map_or(position, |r| r.index);
    let mut records = crate::oplog::without_jumps(records);
    if entry.interrupted.load(std::sync::atomic::Ordering::Acquire)
        && let Some(begin) = open_region(&records)
    {
        // An atomic region a crash interrupted runs again from its start.
        tracing::info!(worker = %entry.id, begin, "re-running an interrupted atomic region");
        records.retain(|r| r.index <= begin);
        let truncated = lock(&entry.journal).truncate(begin);
        truncated.await?;
    }
    entry
        .interrupted
        .store(false, std::sync::atomic::Ordering::Release);
    let total = records.len();
    lock(&entry.journal).start_replay_after(position, records, log_end);
    let mut live = instantiate(entry, env, seed).await?;
    if let Some((data, settings, monotonic)) = saved {
        live.store.data_mut().golem.restore_settings(&settings);
        lock(&entry.journal).raise_monotonic(monotonic);
        load_snapshot(&mut live, entry, env, data.to_vec())
            .await
            .map_err(LoadFailure::Snapshot)?;
    }
    let mut replayed = 0;
    while has_finished_invocation(entry) {
        replay_invocation(&mut live, entry, env).await?;
        replayed += 1;
    }
    live.since_snapshot = replayed;
    if !lock(&entry.journal).replaying() {
        lock(&entry.journal).unmute();
    }
    tracing::debug!(
        worker = %entry.id,
        from = position,
        entries = total,
        invocations = replayed,
        elapsed_us = started.elapsed().as_micros() as u64,
        "worker loaded by replay"
    );
    Ok(live)
}

/// Calls the guest's `load-snapshot` with the journal detached.
async fn load_snapshot(
    live: &mut Live,
    entry: &WorkerEntry,
    env: &Env,
    data: Vec<u8>,
) -> std::result::Result<(), String> {
    let Some(exports) = &env.component.snapshot else {
        return Err("the component does not export load-snapshot".to_owned());
    };
    let func = live
        .instance
        .get_func(&mut live.store, exports.load.index)
        .ok_or("load-snapshot is missing from the instance")?;
    let typed = func
        .typed::<(Vec<u8>,), (std::result::Result<(), String>,)>(&live.store)
        .map_err(|e| format!("load-snapshot has an unexpected type: {}", chain(&e)))?;
    lock(&entry.journal).set_detached(true);
    let outcome = typed.call_async(&mut live.store, (data,)).await;
    lock(&entry.journal).set_detached(false);
    match outcome {
        Ok((Ok(()),)) => Ok(()),
        Ok((Err(reason),)) => Err(format!("load-snapshot refused the snapshot: {reason}")),
        Err(error) => Err(format!("load-snapshot trapped: {}", chain(&error))),
    }
}

/// Saves the worker's memory with its `save-snapshot` export and stores it
/// with a `snapshot` entry in the log. The journal is detached meanwhile,
/// so the log reads the same with or without the snapshot.
async fn take_snapshot(live: &mut Live, entry: &WorkerEntry, env: &Env) -> Result<()> {
    let Some(exports) = &env.component.snapshot else {
        return Ok(());
    };
    let failed = |message: String| Error::Trap {
        worker: entry.id.clone(),
        function: exports.save.name.clone(),
        message,
    };
    let func = live
        .instance
        .get_func(&mut live.store, exports.save.index)
        .ok_or_else(|| failed("save-snapshot is missing from the instance".to_owned()))?;
    let typed = func.typed::<(), (Vec<u8>,)>(&live.store).map_err(|e| {
        failed(format!(
            "save-snapshot has an unexpected type: {}",
            chain(&e)
        ))
    })?;
    lock(&entry.journal).set_detached(true);
    let outcome = typed.call_async(&mut live.store, ()).await;
    lock(&entry.journal).set_detached(false);
    let (data,) = outcome.map_err(|e| failed(chain(&e)))?;
    let settings = live.store.data().golem.settings();
    let size = data.len();
    let write = {
        let mut journal = lock(&entry.journal);
        let index = journal.last_index() + 1;
        let monotonic = journal.last_monotonic();
        let snapshot = vow_store::SnapshotRecord {
            worker: persist::worker_key(&entry.id),
            index,
            at: vow_store::now_millis(),
            data: data.into(),
        };
        journal
            .append(
                OplogEntry::Snapshot {
                    size: size as u64,
                    settings,
                    monotonic,
                },
                vec![vow_store::Write::PutSnapshot(snapshot)],
            )
            .1
    };
    write.await?;
    live.since_snapshot = 0;
    tracing::debug!(worker = %entry.id, bytes = size, "snapshot taken");
    Ok(())
}

/// The index of the first atomic region left open after the last finished
/// invocation, if any.
fn open_region(records: &[OplogRecord]) -> Option<u64> {
    let tail = records
        .iter()
        .rposition(|r| matches!(r.entry, OplogEntry::InvocationFinished { .. }))
        .map_or(0, |i| i + 1);
    let mut open: Vec<u64> = Vec::new();
    for record in &records[tail..] {
        match record.entry {
            OplogEntry::BeginAtomicRegion => open.push(record.index),
            OplogEntry::EndAtomicRegion { begin } => open.retain(|b| *b != begin),
            _ => {}
        }
    }
    open.first().copied()
}

fn has_finished_invocation(entry: &WorkerEntry) -> bool {
    lock(&entry.journal)
        .remaining()
        .any(|r| matches!(r.entry, OplogEntry::InvocationFinished { .. }))
}

/// Replays one finished invocation against its recorded entries.
async fn replay_invocation(live: &mut Live, entry: &WorkerEntry, env: &Env) -> Result<()> {
    let started = lock(&entry.journal).next("invocation-started");
    let (function, params, settles) = match started {
        Ok(Some(OplogEntry::InvocationStarted {
            function,
            params,
            settles,
            ..
        })) => (function, params, settles),
        Ok(_) => {
            return Err(Error::Storage(format!(
                "worker {}: invocation start missing",
                entry.id
            )));
        }
        Err(divergence) => return Err(diverged(entry, divergence)),
    };
    let export = env
        .component
        .export(&function)
        .ok_or_else(|| Error::FunctionNotFound {
            component: entry.id.component_id,
            function: function.clone(),
        })?;
    let types: Vec<_> = export.ty.params().map(|(_, t)| t).collect();
    let params = persist::from_wave(&params, &types)?;
    let func = live
        .instance
        .get_func(&mut live.store, export.index)
        .ok_or_else(|| Error::FunctionNotFound {
            component: entry.id.component_id,
            function: function.clone(),
        })?;
    // What `current` answered when it ran.
    live.store.data_mut().golem.current = settles;
    let mut results = vec![Val::Bool(false); export.result_count];
    let outcome = func
        .call_async(&mut live.store, &params, &mut results)
        .await;
    let mut journal = lock(&entry.journal);
    if let Some(divergence) = journal.divergence() {
        return Err(diverged(entry, divergence.to_owned()));
    }
    if let Err(error) = outcome {
        return Err(Error::Trap {
            worker: entry.id.clone(),
            function,
            message: format!("while replaying: {}", chain(&error)),
        });
    }
    match journal.next("invocation-finished") {
        Ok(_) => Ok(()),
        Err(_) => {
            let (index, holds) = journal
                .remaining()
                .next()
                .map(|r| (r.index, r.entry.kind()))
                .unwrap_or((0, "nothing"));
            let message = format!(
                "worker {} diverged from its oplog at index {index}: the log holds `{holds}` but the invocation of {function} returned",
                entry.id
            );
            Err(diverged(entry, message))
        }
    }
}

fn diverged(entry: &WorkerEntry, message: String) -> Error {
    Error::Trap {
        worker: entry.id.clone(),
        function: "replay".to_owned(),
        message: if message.contains("diverged") {
            message
        } else {
            format!("worker {} diverged from its oplog: {message}", entry.id)
        },
    }
}

/// How one attempt at an invocation ended.
enum Attempt {
    Done(Result<Vec<Val>>),
    /// The worker was parked on this promise too long, or the resident cap
    /// asked it to leave, and it left memory.
    Evicted(PromiseId, Eviction),
    /// The worker was interrupted; the invocation runs again later.
    Interrupted,
    /// The guest called `set-oplog-index`: the worker is rebuilt by replay
    /// up to that index and goes on live from there.
    Rewound,
}

/// The error a `set-oplog-index` call unwinds the guest with; the worker
/// task replays the worker up to `to` and lets it go on from there.
#[derive(Debug)]
pub(crate) struct Rewind {
    pub(crate) to: u64,
}

impl std::fmt::Display for Rewind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "set-oplog-index({}): going back", self.to)
    }
}

impl std::error::Error for Rewind {}

/// Runs a worker's mailbox until it has nothing to do without an instance
/// (it then becomes dormant: the task ends, and a new invocation, the
/// completion of the promise it waits on or a resumption spawns it again)
/// or the worker is deleted. `live` is the instance of a worker that was
/// just started.
///
/// The loading and running futures are boxed so that the task itself stays
/// small.
pub(crate) async fn run(entry: Arc<WorkerEntry>, mut live: Option<Live>) {
    let env = Arc::clone(&entry.run_env);
    if let Err(error) = entry.ensure_loaded().await.map(drop) {
        // Its next invocation tries again and reports the error.
        tracing::error!(worker = %entry.id, %error, "cannot read the worker's queue from the store");
        entry.go_dormant(None);
        return;
    }
    loop {
        if entry.paused() {
            // Interrupted while idle, or recovered interrupted: nothing runs
            // until the worker is resumed.
            live = None;
            hold(&entry).await;
            if entry.status() == WorkerStatus::Interrupted && !entry.has_mail() {
                entry.set_status(WorkerStatus::Idle);
                entry.persist_state();
            }
        }
        if live.is_none() && entry.go_dormant(None) {
            return;
        }
        let job = tokio::select! {
            job = entry.next_job() => job,
            () = entry.evict_signal.notified(), if live.is_some() => {
                if take_eviction(&env, &entry) && entry.evictable() {
                    tracing::debug!(worker = %entry.id, "idle worker left memory");
                    live = None;
                    env.metrics.evicted(Eviction::ResidentCap);
                }
                continue;
            }
            () = entry.interrupt_asked() => {
                entry.take_interrupt();
                live = None;
                continue;
            }
        };
        let Some(mut job) = job else {
            return;
        };
        // A request to leave memory that came too late: the worker is busy.
        take_eviction(&env, &entry);
        if let Err(error) = entry.check_not_failed() {
            let _ = job.reply.send(Err(error));
            continue;
        }
        if job.deadline.is_none() {
            job.deadline = env.invocation_timeout.map(|t| Instant::now() + t);
        }
        let started = *job.started.get_or_insert_with(std::time::Instant::now);
        let outcome = loop {
            if live.is_none() {
                let loading = std::time::Instant::now();
                let loaded = Box::pin(load(&entry, &env).instrument(job.span.clone())).await;
                env.metrics.replayed(loaded.is_ok(), loading.elapsed());
                match loaded {
                    Ok(loaded) => live = Some(loaded),
                    Err(error) => break Err(error),
                }
            }
            let Some(current) = live.as_mut() else {
                continue;
            };
            let span = job.span.clone();
            match Box::pin(attempt(current, &entry, &env, &job).instrument(span)).await {
                Attempt::Done(outcome) => break outcome,
                Attempt::Evicted(promise, why) => {
                    // The worker waits on its promise with no instance and
                    // no task; the job goes back to the head of the queue.
                    tracing::debug!(worker = %entry.id, %promise, "parked worker left memory");
                    drop(live.take());
                    env.metrics.evicted(why);
                    entry.requeue_front(job);
                    entry.go_dormant(Some(promise));
                    return;
                }
                Attempt::Interrupted => interrupted(&entry, &mut live).await,
                Attempt::Rewound => {
                    tracing::debug!(worker = %entry.id, "worker went back in its log");
                    live = None;
                }
            }
        };
        let failed = outcome.is_err();
        if let Err(error) = &outcome {
            // A trapped or interrupted instance cannot be entered again:
            // drop the Store now and fail the worker.
            job.span.in_scope(|| {
                tracing::warn!(worker = %entry.id, function = job.export.name, %error, "invocation failed");
            });
            entry.fail(error.to_string());
            live = None;
        } else {
            entry.set_status(WorkerStatus::Idle);
        }
        // The outcome is answered only once it is durable.
        let stored =
            Box::pin(finish(&entry, &job, &outcome, failed).instrument(job.span.clone())).await;
        if let Err(error) = &stored {
            // The store refused the invocation's entries (a full disk, a
            // lost database): the instance holds effects the log does not,
            // and the journal counts entries the store never took. Drop
            // both; the next invocation reloads the worker from what the
            // store holds.
            tracing::error!(worker = %entry.id, %error, "the invocation's log could not be stored; reloading the worker from the store");
            live = None;
        }
        let answer = match stored {
            Ok(()) => outcome,
            Err(error) => Err(error),
        };
        env.metrics.invocation(&answer, started.elapsed());
        // A settlement stamp this invocation did not measure is stale.
        entry.settled.clear();
        let _ = job.reply.send(answer);
        if let Some(current) = live.as_mut() {
            current.since_snapshot += 1;
            let due = env
                .snapshot_every
                .is_some_and(|every| current.since_snapshot >= every);
            if due
                && !failed
                && let Err(error) = Box::pin(take_snapshot(current, &entry, &env)).await
            {
                // A save that trapped leaves an instance that cannot be
                // entered again; the next invocation replays the log.
                tracing::warn!(worker = %entry.id, %error, "snapshot not taken");
                live = None;
            }
        }
        if live.is_some() {
            touch(&env, &entry);
        }
    }
}

/// Stops an invocation in progress: its instance is dropped, and it runs
/// again by replay from its start (an open atomic region from its begin)
/// once the worker is resumed, or at once when it was not paused.
async fn interrupted(entry: &WorkerEntry, live: &mut Option<Live>) {
    tracing::info!(worker = %entry.id, paused = entry.paused(), "invocation interrupted");
    *live = None;
    entry.clear_parked();
    entry
        .interrupted
        .store(true, std::sync::atomic::Ordering::Release);
    hold(entry).await;
}

/// Keeps a paused worker `interrupted` until it is resumed.
async fn hold(entry: &WorkerEntry) {
    if !entry.paused() {
        return;
    }
    entry.set_status(WorkerStatus::Interrupted);
    entry.persist_state();
    entry.until_resumed().await;
    tracing::info!(worker = %entry.id, "worker resumed");
}

fn take_eviction(env: &Env, entry: &WorkerEntry) -> bool {
    env.registry
        .upgrade()
        .is_some_and(|registry| registry.take_eviction(entry))
}

fn touch(env: &Env, entry: &Arc<WorkerEntry>) {
    if let Some(registry) = env.registry.upgrade() {
        registry.touch(entry);
    }
}

/// Appends the end of an invocation and stores its outcome; an invocation
/// started to settle a promise (`when`, `then`) settles it in the same
/// batch.
async fn finish(
    entry: &WorkerEntry,
    job: &Job,
    outcome: &Result<Vec<Val>>,
    failed: bool,
) -> Result<()> {
    let stored = match outcome {
        Ok(values) => persist::Outcome::Ok(persist::to_wave(values)?),
        Err(error) => persist::Outcome::Err(error.to_string()),
    };
    let writes = vec![
        vow_store::Write::SetInvocationState {
            worker: persist::worker_key(&entry.id),
            seq: job.seq,
            state: vow_store::InvocationState::Finished(persist::encode(&stored)),
        },
        entry.state_write(),
    ];
    let batch = {
        let mut journal = lock(&entry.journal);
        if journal.replaying() || journal.divergence().is_some() {
            // The log was not followed to its end (the invocation failed in
            // replay): record the outcome without appending after a log that
            // no longer matches.
            writes
        } else {
            journal
                .prepare(
                    OplogEntry::InvocationFinished {
                        ok: !failed,
                        seq: job.seq,
                    },
                    writes,
                )
                .1
        }
    };
    let settlement = job.settles.as_ref().and_then(|promise| {
        crate::compose::settlement_of(&job.export.name, outcome).map(|s| (promise.clone(), s))
    });
    match settlement {
        None => {
            entry.storage.write(batch).await?;
        }
        Some((promise, settlement)) => {
            let settlement = entry.promises.fit(settlement);
            match entry
                .promises
                .settle_with(promise.clone(), settlement, batch)
                .await
            {
                Ok(_) => {}
                // Deleted meanwhile: the outcome is stored all the same.
                Err(Error::PromiseNotFound(_)) => {
                    tracing::debug!(%promise, worker = %entry.id, "the promise this invocation settles is gone");
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}

/// Runs (or resumes by replay) one invocation on a live worker.
async fn attempt(live: &mut Live, entry: &Arc<WorkerEntry>, env: &Env, job: &Job) -> Attempt {
    let deadline = job.deadline;
    let export = &job.export;
    entry.clear_parked();
    entry.set_status(WorkerStatus::Running);
    if let Err(error) = start(entry, job) {
        return Attempt::Done(Err(error));
    }
    let Some(func) = live.instance.get_func(&mut live.store, export.index) else {
        return Attempt::Done(Err(Error::FunctionNotFound {
            component: entry.id.component_id,
            function: export.name.clone(),
        }));
    };
    // What `current` answers during this invocation.
    live.store.data_mut().golem.current = job.settles.clone();
    let mut results = vec![Val::Bool(false); export.result_count];
    let evict_after = env.evict_after;
    let clock = Arc::clone(&live.store.data().run_clock);
    clock.reset();
    let outcome = {
        let call = func.call_async(&mut live.store, &job.params, &mut results);
        tokio::pin!(call);
        // Only the time spent polling the guest is its running time.
        let mut call = crate::limits::Timed::new(call, clock);
        tokio::select! {
            outcome = &mut call => outcome,
            (promise, why) = parked_too_long(entry, env, evict_after) => return Attempt::Evicted(promise, why),
            () = entry.interrupt_asked() => {
                entry.take_interrupt();
                return Attempt::Interrupted;
            }
            () = until(deadline) => {
                return Attempt::Done(Err(Error::Timeout {
                    worker: entry.id.clone(),
                    function: export.name.clone(),
                    timeout: env.invocation_timeout.unwrap_or_default(),
                }));
            }
        }
    };
    if let Some(divergence) = lock(&entry.journal).divergence() {
        return Attempt::Done(Err(diverged(entry, divergence.to_owned())));
    }
    if let Err(error) = &outcome
        && error.downcast_ref::<Rewind>().is_some()
    {
        return Attempt::Rewound;
    }
    Attempt::Done(match outcome {
        Ok(()) => match leftover(entry, export) {
            Some(error) => Err(error),
            None => Ok(results),
        },
        Err(error) => Err(Error::Trap {
            worker: entry.id.clone(),
            function: export.name.clone(),
            message: chain(&error),
        }),
    })
}

/// Starts an invocation: replays its recorded start if the log holds one,
/// or appends it.
fn start(entry: &WorkerEntry, job: &Job) -> Result<()> {
    let mut journal = lock(&entry.journal);
    match journal.next("invocation-started") {
        Ok(Some(OplogEntry::InvocationStarted { seq, function, .. })) => {
            if seq != job.seq {
                let message = format!(
                    "worker {} diverged from its oplog at index {}: the log holds invocation {seq} ({function}) but invocation {} ({}) is next",
                    entry.id,
                    journal.position(),
                    job.seq,
                    job.export.name
                );
                return Err(diverged(entry, message));
            }
            Ok(())
        }
        Ok(_) => {
            let params = persist::to_wave(&job.params)?;
            let writes = vec![
                vow_store::Write::SetInvocationState {
                    worker: persist::worker_key(&entry.id),
                    seq: job.seq,
                    state: vow_store::InvocationState::Running,
                },
                entry.state_write(),
            ];
            drop(journal.append(
                OplogEntry::InvocationStarted {
                    function: job.export.name.clone(),
                    idempotency_key: job.idempotency_key.clone(),
                    seq: job.seq,
                    params,
                    settles: job.settles.clone(),
                },
                writes,
            ));
            Ok(())
        }
        Err(divergence) => Err(diverged(entry, divergence)),
    }
}

/// An invocation that returned while its recorded entries were not all
/// replayed has diverged.
fn leftover(entry: &WorkerEntry, export: &ExportFunc) -> Option<Error> {
    let journal = lock(&entry.journal);
    let next = journal.remaining().next()?;
    Some(diverged(
        entry,
        format!(
            "worker {} diverged from its oplog at index {}: the log holds `{}` but the invocation of {} returned",
            entry.id,
            next.index,
            next.entry.kind(),
            export.name
        ),
    ))
}

/// Resolves with the promise the guest is parked on once it has been
/// parked for `after` (never, when `after` is `None`), or once the registry
/// asks the worker to leave memory while it is parked; and which it was.
async fn parked_too_long(
    entry: &Arc<WorkerEntry>,
    env: &Env,
    after: Option<Duration>,
) -> (PromiseId, Eviction) {
    loop {
        let due = entry
            .parked()
            .zip(after)
            .map(|((_, since), after)| Instant::from_std(since) + after);
        tokio::select! {
            () = entry.park_signal.notified() => {
                // Parked or resumed: a parked worker is a candidate to leave.
                if entry.parked().is_some() {
                    touch(env, entry);
                }
            }
            () = entry.evict_signal.notified() => {
                if take_eviction(env, entry)
                    && let Some((promise, _)) = entry.parked()
                {
                    return (promise, Eviction::ResidentCap);
                }
            }
            () = until(due) => {
                if let Some((promise, since)) = entry.parked()
                    && after.is_some_and(|after| since.elapsed() >= after)
                {
                    return (promise, Eviction::Parked);
                }
            }
        }
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
