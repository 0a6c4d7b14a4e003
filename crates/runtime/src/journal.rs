//! The record-or-replay seam: every host call, clock read and random draw of
//! a worker asks its [`Journal`] first.
//!
//! A journal is *live* when its replay queue is empty: the call is performed,
//! its answer appended to the log and handed to the store. It is *replaying*
//! while the queue holds entries loaded from the store: the call is not
//! performed, the next recorded entry is checked to be the same kind of call
//! and its answer returned. When the queue runs out the worker continues live.
//! A guest that calls something else than the entry at that index has
//! diverged from its log: the journal remembers the first divergence, every
//! later call fails with it, and the worker fails with a message naming the
//! index, what the log holds and what the guest called.
//!
//! Host functions, the WASI clocks and the WASI random sources all go through
//! here, so none of them needs to know which mode the worker is in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand_core::{Infallible, TryRng};
use vow_store::{SharedStorage, WorkerKey, Write};

use crate::ids::{OplogIndex, WorkerId};
use crate::oplog::{OplogEntry, OplogRecord};
use crate::output::Output;

/// The future of a store write; resolves once the write is durable.
pub(crate) type Durable = BoxFuture<'static, vow_store::Result<Vec<vow_store::Outcome>>>;

/// A worker's journal, shared by its host state and its WASI hooks.
pub(crate) type SharedJournal = Arc<Mutex<Journal>>;

/// Locks a journal; a panic elsewhere never leaves it half-updated, so a
/// poisoned lock is still usable.
pub(crate) fn lock(journal: &SharedJournal) -> MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|p| p.into_inner())
}

/// The record-or-replay state of one worker.
pub(crate) struct Journal {
    /// The worker (also what messages name it by).
    key: WorkerKey,
    storage: SharedStorage,
    /// Index of the last entry in the log.
    last: OplogIndex,
    /// Index of the last entry appended or replayed: what the guest sees as
    /// `get-oplog-index`.
    position: OplogIndex,
    /// Recorded entries not replayed yet.
    replay: VecDeque<OplogRecord>,
    /// The first divergence, once there was one.
    diverged: Option<String>,
    /// While set, the worker's stdout/stderr writes are not captured: they
    /// were captured when the code ran live.
    muted: Arc<Output>,
    /// The largest monotonic-clock value the guest has seen, so the clock
    /// never runs backwards across restarts.
    last_monotonic: u64,
    /// Index of the current (or last) invocation's `invocation-started`
    /// entry: `set-oplog-index` can go back no further.
    invocation_start: OplogIndex,
    /// Set while the guest saves or loads a snapshot: clocks and random are
    /// answered live and not recorded, and host calls are refused, so the
    /// log is the same whether or not a snapshot was taken.
    detached: bool,
}

/// Why a host call failed while the journal was detached.
const DETACHED: &str =
    "golem:api host functions cannot be called from save-snapshot or load-snapshot";

impl Journal {
    /// A journal whose log ends at `last` and has nothing to replay.
    pub(crate) fn new(
        worker: WorkerId,
        storage: SharedStorage,
        last: OplogIndex,
        muted: Arc<Output>,
    ) -> Self {
        Self {
            key: crate::persist::worker_key(&worker),
            storage,
            last,
            position: last,
            replay: VecDeque::new(),
            diverged: None,
            muted,
            last_monotonic: 0,
            invocation_start: 0,
            detached: false,
        }
    }

    pub(crate) fn shared(self) -> SharedJournal {
        Arc::new(Mutex::new(self))
    }

    /// Loads entries to replay: those the store holds after the entry at
    /// `position` (the worker's creation, or the snapshot the worker is
    /// loaded from), where the position goes back to.
    /// `last` is the index of the log's last entry (replay may not reach it:
    /// entries a `jump` went back over are not replayed).
    pub(crate) fn start_replay_after(
        &mut self,
        position: OplogIndex,
        records: Vec<OplogRecord>,
        last: OplogIndex,
    ) {
        self.last = last.max(position);
        for record in &records {
            if let OplogEntry::MonotonicClock { nanos }
            | OplogEntry::Snapshot {
                monotonic: nanos, ..
            } = record.entry
            {
                self.last_monotonic = self.last_monotonic.max(nanos);
            }
        }
        self.replay = records.into();
        self.position = position;
        self.diverged = None;
        self.muted.set_muted(true);
    }

    /// Raises the monotonic clock's floor (from a snapshot's record).
    pub(crate) fn raise_monotonic(&mut self, nanos: u64) {
        self.last_monotonic = self.last_monotonic.max(nanos);
    }

    /// Index of the current invocation's `invocation-started` entry.
    pub(crate) fn invocation_start(&self) -> OplogIndex {
        self.invocation_start
    }

    /// The largest monotonic-clock value the guest has seen.
    pub(crate) fn last_monotonic(&self) -> u64 {
        self.last_monotonic
    }

    /// Detaches the journal while the guest saves or loads a snapshot
    /// (`true`), or attaches it again.
    pub(crate) fn set_detached(&mut self, detached: bool) {
        self.detached = detached;
    }

    /// Index of the last entry in the log.
    pub(crate) fn last_index(&self) -> OplogIndex {
        self.last
    }

    /// What `get-oplog-index` answers: the last entry appended or replayed.
    pub(crate) fn position(&self) -> OplogIndex {
        self.position
    }

    /// Whether recorded entries remain to be replayed.
    pub(crate) fn replaying(&self) -> bool {
        !self.replay.is_empty()
    }

    /// The entries still to replay.
    pub(crate) fn remaining(&self) -> impl Iterator<Item = &OplogRecord> {
        self.replay.iter()
    }

    /// The first divergence, if the guest diverged from its log.
    pub(crate) fn divergence(&self) -> Option<&str> {
        self.diverged.as_deref()
    }

    /// Output is captured again from now on.
    pub(crate) fn unmute(&self) {
        self.muted.set_muted(false);
    }

    /// The recorded answer of a call of `kind` when replaying, `None` when
    /// live (the caller performs the call and [`append`](Self::append)s its
    /// answer), or the divergence.
    pub(crate) fn next(&mut self, kind: &'static str) -> Result<Option<OplogEntry>, String> {
        if let Some(diverged) = &self.diverged {
            return Err(diverged.clone());
        }
        if self.detached {
            return Err(DETACHED.to_owned());
        }
        // A snapshot taken between two invocations changes nothing the guest
        // sees: replay passes over it.
        while let Some(front) = self.replay.front()
            && matches!(front.entry, OplogEntry::Snapshot { .. })
        {
            self.position = front.index;
            self.replay.pop_front();
        }
        let Some(front) = self.replay.front() else {
            self.unmute();
            return Ok(None);
        };
        if front.entry.kind() != kind {
            return Err(self.diverge(front.index, front.entry.kind(), kind));
        }
        let record = self.replay.pop_front().map(|r| {
            self.position = r.index;
            if matches!(r.entry, OplogEntry::InvocationStarted { .. }) {
                self.invocation_start = r.index;
            }
            r.entry
        });
        Ok(record)
    }

    /// Records a divergence at `index` and returns its message.
    pub(crate) fn diverge(&mut self, index: OplogIndex, holds: &str, called: &str) -> String {
        let message = format!(
            "worker {} diverged from its oplog at index {index}: the log holds `{holds}` but the guest called `{called}`",
            self.key
        );
        self.diverged.get_or_insert(message).clone()
    }

    /// Appends a live entry (with any other writes that belong with it) and
    /// returns its index and the future of its write.
    pub(crate) fn append(&mut self, entry: OplogEntry, extra: Vec<Write>) -> (OplogIndex, Durable) {
        let (index, batch) = self.prepare(entry, extra);
        (index, self.storage.write(batch))
    }

    /// Takes the next index for a live entry and returns the batch that
    /// appends it (with `extra`), for the caller to store: it must be
    /// stored before anything else is appended.
    pub(crate) fn prepare(
        &mut self,
        entry: OplogEntry,
        extra: Vec<Write>,
    ) -> (OplogIndex, Vec<Write>) {
        self.last += 1;
        self.position = self.last;
        let index = self.last;
        if matches!(entry, OplogEntry::InvocationStarted { .. }) {
            self.invocation_start = index;
        }
        tracing::trace!(worker = %self.key, index, kind = entry.kind(), "oplog");
        let mut batch = Vec::with_capacity(1 + extra.len());
        batch.push(Write::AppendOplog {
            worker: self.key.clone(),
            records: vec![vow_store::OplogRecord {
                index,
                at: vow_store::now_millis(),
                entry: entry.encode().into(),
            }],
        });
        batch.extend(extra);
        (index, batch)
    }

    /// Drops the log after `after` (an atomic region a crash interrupted).
    pub(crate) fn truncate(&mut self, after: OplogIndex) -> Durable {
        self.last = after;
        self.replay.retain(|r| r.index <= after);
        self.storage.write(vec![Write::TruncateOplog {
            worker: self.key.clone(),
            after,
        }])
    }

    /// A clock read: the recorded value in replay, `live()` otherwise.
    fn clock(&mut self, kind: &'static str, live: impl FnOnce() -> u64) -> u64 {
        // TRACE, not DEBUG as the other host calls: guests read clocks
        // often (Python at every import), and the invocation's span
        // already names the worker.
        let _span = if kind == "wall-clock" {
            tracing::trace_span!("wasi:clocks/wall-clock.now").entered()
        } else {
            tracing::trace_span!("wasi:clocks/monotonic-clock.now").entered()
        };
        if self.detached {
            return live();
        }
        let replayed = match self.next(kind) {
            Ok(Some(OplogEntry::WallClock { nanos } | OplogEntry::MonotonicClock { nanos })) => {
                Some(nanos)
            }
            // A divergence fails the worker at its next host call; the
            // clock itself cannot fail, so it answers live meanwhile.
            _ => None,
        };
        if let Some(nanos) = replayed {
            return nanos;
        }
        let nanos = live();
        let entry = if kind == "wall-clock" {
            OplogEntry::WallClock { nanos }
        } else {
            OplogEntry::MonotonicClock { nanos }
        };
        if self.diverged.is_none() {
            // The clock's answer only matters if the worker goes on; its
            // write is ordered before anything that depends on it.
            drop(self.append(entry, Vec::new()).1);
        }
        nanos
    }

    fn random(&mut self, dest: &mut [u8], source: &mut StdRng) {
        let _span = tracing::trace_span!("wasi:random", bytes = dest.len()).entered();
        if self.detached {
            rand::Rng::fill_bytes(source, dest);
            return;
        }
        match self.next("random") {
            Ok(Some(OplogEntry::Random { bytes })) if bytes.len() == dest.len() => {
                dest.copy_from_slice(&bytes);
                return;
            }
            Ok(Some(OplogEntry::Random { bytes })) => {
                let at = self.position;
                self.diverge(
                    at,
                    &format!("random ({} bytes)", bytes.len()),
                    &format!("random ({} bytes)", dest.len()),
                );
            }
            _ => {}
        }
        rand::Rng::fill_bytes(source, dest);
        if self.diverged.is_none() {
            drop(
                self.append(
                    OplogEntry::Random {
                        bytes: dest.to_vec(),
                    },
                    Vec::new(),
                )
                .1,
            );
        }
    }
}

/// `wasi:clocks/wall-clock` through the journal.
pub(crate) struct JournalWallClock(pub(crate) SharedJournal);

impl wasmtime_wasi::HostWallClock for JournalWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let nanos = lock(&self.0).clock("wall-clock", || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Duration::from_nanos(nanos)
    }
}

/// `wasi:clocks/monotonic-clock` through the journal. Live readings are
/// nanoseconds since the Unix epoch, never below the largest value the guest
/// saw before, so the clock keeps running forward across restarts.
pub(crate) struct JournalMonotonicClock(pub(crate) SharedJournal);

impl wasmtime_wasi::HostMonotonicClock for JournalMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let mut journal = lock(&self.0);
        let floor = journal.last_monotonic;
        let nanos = journal.clock("monotonic-clock", || {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            now.max(floor)
        });
        journal.last_monotonic = journal.last_monotonic.max(nanos);
        nanos
    }
}

/// `wasi:random` (secure and insecure) through the journal.
pub(crate) struct JournalRandom {
    journal: SharedJournal,
    source: StdRng,
}

impl JournalRandom {
    pub(crate) fn new(journal: SharedJournal) -> Self {
        Self {
            journal,
            source: StdRng::from_rng(&mut rand::rng()),
        }
    }
}

impl TryRng for JournalRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        lock(&self.journal).random(dest, &mut self.source);
        Ok(())
    }
}
