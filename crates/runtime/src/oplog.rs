//! The operation log's entries: one for each thing a worker did that its own
//! code cannot recompute (its creation, invocations, host calls, clock reads,
//! random bytes), numbered from 1.
//!
//! Entries are stored as JSON (see [`OplogEntry::encode`]); the store treats
//! them as opaque bytes. The [`Journal`](crate::journal) appends them live and
//! answers host calls from them during replay.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::ids::{OplogIndex, PromiseId, WorkerId};
use crate::promise::PromiseError;

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OplogEntry {
    /// The worker was created (always index 1).
    Create {
        /// Command-line arguments.
        args: Vec<String>,
        /// Environment variables.
        env: Vec<(String, String)>,
        /// The value of `wasi:random/insecure-seed`, fixed for the worker's
        /// life so replay sees the same one.
        #[serde(default)]
        insecure_seed: (u64, u64),
    },
    /// An invocation started.
    InvocationStarted {
        /// The exported function.
        function: String,
        /// The caller's idempotency key, if any.
        idempotency_key: Option<String>,
        /// Its position in the worker's invocation queue.
        #[serde(default)]
        seq: u64,
        /// The arguments, in WAVE text form.
        #[serde(default)]
        params: Vec<String>,
        /// The promise it settles (started by `when` or `then`), which
        /// `current` answers during it, in replay too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settles: Option<PromiseId>,
    },
    /// An invocation returned (`ok`) or failed.
    InvocationFinished {
        /// Whether it returned normally.
        ok: bool,
        /// The invocation's sequence number, which finds its result in the
        /// store (0 in entries written before it was recorded).
        #[serde(default)]
        seq: u64,
    },
    /// `create-promise`; the entry's index is the promise's `oplog-idx`.
    CreatePromise,
    /// `await-promise` returned this payload.
    AwaitPromise {
        /// The awaited promise.
        promise: PromiseId,
        /// The payload it returned.
        payload: Vec<u8>,
    },
    /// `complete-promise`, with whether this call completed it.
    CompletePromise {
        /// The completed promise.
        promise: PromiseId,
        /// `true` if this call completed it.
        completed: bool,
    },
    /// `reject` (`vow:host/promises`), with whether this call settled it.
    RejectPromise {
        /// The rejected promise.
        promise: PromiseId,
        /// `true` if this call rejected it.
        rejected: bool,
    },
    /// `wait` (`vow:host/promises`) returned this settlement.
    AwaitSettlement {
        /// The awaited promise.
        promise: PromiseId,
        /// How it settled.
        settlement: StoredSettlement,
    },
    /// `poll` (`vow:host/promises`) answered this.
    PollPromise {
        /// The polled promise.
        promise: PromiseId,
        /// Its settlement, if it had one.
        settlement: Option<StoredSettlement>,
    },
    /// The deadline of a `wait-any` or `wait-all` with a timeout, fixed
    /// when it started so replay waits until the same moment.
    WaitDeadline {
        /// Milliseconds since the Unix epoch.
        at: u64,
    },
    /// `wait-any` answered: a position and its settlement, or none on
    /// timeout.
    WaitAny {
        /// The awaited promises.
        promises: Vec<PromiseId>,
        /// What it returned.
        answer: Option<(u32, StoredSettlement)>,
    },
    /// `wait-all` answered: every settlement, or none on timeout.
    WaitAll {
        /// The awaited promises.
        promises: Vec<PromiseId>,
        /// What it returned.
        answer: Option<Vec<StoredSettlement>>,
    },
    /// `when`, `then`, `all` or `any` (`vow:host/promises`): the entry's
    /// index is the index of the promise it made, unless it failed.
    Compose {
        /// Which call.
        call: ComposeCall,
        /// Why it made no promise, when it did not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// `link` (`vow:host/promises`) minted this completion link, or was
    /// refused with this message. The token is kept so replay answers the
    /// same one, whatever keys the server has by then.
    MintLink {
        /// The promise the link is for.
        promise: PromiseId,
        /// The link, or why there is none.
        answer: Result<crate::links::CompletionLink, String>,
    },
    /// `wasi:io/poll.poll` answered these positions.
    WasiPoll {
        /// The ready positions.
        ready: Vec<u32>,
    },
    /// `wasi:io/poll` `pollable.block` returned.
    WasiBlock,
    /// `wasi:io/poll` `pollable.ready` answered this.
    WasiReady {
        /// Whether it was ready.
        ready: bool,
    },
    /// `delete-promise`.
    DeletePromise {
        /// The deleted promise.
        promise: PromiseId,
    },
    /// `generate-idempotency-key` returned this key.
    IdempotencyKey {
        /// The key as (upper, lower) 64-bit halves.
        key: (u64, u64),
    },
    /// `mark-begin-operation`.
    BeginAtomicRegion,
    /// `mark-end-operation` closing the region opened at `begin`.
    EndAtomicRegion {
        /// Index of the matching begin entry.
        begin: OplogIndex,
    },
    /// A change of a per-worker setting (retry policy, persistence level,
    /// idempotence mode).
    SettingChanged {
        /// Which setting.
        setting: String,
        /// Every setting as it is after the change (absent in entries
        /// written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<HostSettings>,
    },
    /// A read of runtime state that replay must answer the same way
    /// (worker metadata, worker listings).
    MetadataRead {
        /// Which host function.
        function: String,
        /// What it answered.
        #[serde(default)]
        answer: Vec<RecordedMetadata>,
    },
    /// `oplog-commit`.
    Commit {
        /// Requested replica count.
        replicas: u8,
    },
    /// Bytes drawn from `wasi:random` (secure or insecure).
    Random {
        /// The bytes the guest received.
        bytes: Vec<u8>,
    },
    /// A read of `wasi:clocks/wall-clock`.
    WallClock {
        /// Time since the Unix epoch, in nanoseconds.
        nanos: u64,
    },
    /// A read of `wasi:clocks/monotonic-clock`.
    MonotonicClock {
        /// The instant, in nanoseconds.
        nanos: u64,
    },
    /// `set-oplog-index` sent the worker back to the entry at `to`: replay
    /// passes over every entry after `to` up to this one, and the guest
    /// went on live from there.
    Jump {
        /// The index the worker went back to.
        to: OplogIndex,
    },
    /// The guest's memory was saved with its `save-snapshot` export, after
    /// the invocation before this entry finished; the bytes are kept in the
    /// store. Loading them into a fresh instance stands for replaying every
    /// entry up to here, so replay starts after the latest snapshot.
    Snapshot {
        /// Size of the saved bytes.
        size: u64,
        /// The host-side settings in force, which replay after the snapshot
        /// cannot rebuild.
        settings: HostSettings,
        /// The largest monotonic-clock value the guest had seen.
        monotonic: u64,
    },
}

/// The calls of `vow:host/promises` that make a promise settled by others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComposeCall {
    /// `when`.
    When,
    /// `then`.
    Then,
    /// `all`.
    All,
    /// `any`.
    Any,
}

impl ComposeCall {
    /// Its WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Self::When => "when",
            Self::Then => "then",
            Self::All => "all",
            Self::Any => "any",
        }
    }
}

/// A settlement as the log keeps it: the payload, or the rejection.
pub type StoredSettlement = std::result::Result<Vec<u8>, PromiseError>;

/// Per-worker settings the guest changes through the host interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSettings {
    /// `set-retry-policy`: max attempts, min delay and max delay (ns),
    /// multiplier, max jitter factor.
    pub retry_policy: (u32, u64, u64, f64, Option<f64>),
    /// `set-oplog-persistence-level`, as the WIT spells it.
    pub persistence: String,
    /// `set-idempotence-mode`.
    pub idempotent: bool,
}

/// Worker metadata as a guest received it, recorded so replay answers the
/// same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMetadata {
    /// The worker.
    pub id: WorkerId,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Its status, as the WIT spells it.
    pub status: String,
    /// Its component version.
    pub component_version: u64,
    /// Its retry count.
    pub retry_count: u64,
}

impl OplogEntry {
    /// The entry's kind as stored and as divergence errors name it
    /// (`create-promise`, `wall-clock`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::InvocationStarted { .. } => "invocation-started",
            Self::InvocationFinished { .. } => "invocation-finished",
            Self::CreatePromise => "create-promise",
            Self::AwaitPromise { .. } => "await-promise",
            Self::CompletePromise { .. } => "complete-promise",
            Self::RejectPromise { .. } => "reject-promise",
            Self::AwaitSettlement { .. } => "await-settlement",
            Self::PollPromise { .. } => "poll-promise",
            Self::WaitDeadline { .. } => "wait-deadline",
            Self::WaitAny { .. } => "wait-any",
            Self::WaitAll { .. } => "wait-all",
            Self::Compose { call, .. } => call.name(),
            Self::MintLink { .. } => "mint-link",
            Self::WasiPoll { .. } => "wasi-poll",
            Self::WasiBlock => "wasi-block",
            Self::WasiReady { .. } => "wasi-ready",
            Self::DeletePromise { .. } => "delete-promise",
            Self::IdempotencyKey { .. } => "generate-idempotency-key",
            Self::BeginAtomicRegion => "mark-begin-operation",
            Self::EndAtomicRegion { .. } => "mark-end-operation",
            Self::SettingChanged { .. } => "setting-changed",
            Self::MetadataRead { .. } => "metadata-read",
            Self::Commit { .. } => "oplog-commit",
            Self::Random { .. } => "random",
            Self::WallClock { .. } => "wall-clock",
            Self::MonotonicClock { .. } => "monotonic-clock",
            Self::Snapshot { .. } => "snapshot",
            Self::Jump { .. } => "jump",
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain data types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The entries replay follows: those `set-oplog-index` went back over are
/// dropped, with the `jump` entries themselves.
pub(crate) fn without_jumps(records: Vec<OplogRecord>) -> Vec<OplogRecord> {
    let mut kept: Vec<OplogRecord> = Vec::with_capacity(records.len());
    for record in records {
        if let OplogEntry::Jump { to } = record.entry {
            kept.retain(|r| r.index <= to);
        } else {
            kept.push(record);
        }
    }
    kept
}

/// A log entry with its index and time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OplogRecord {
    /// Position in the log, from 1.
    pub index: OplogIndex,
    /// When it was appended.
    pub at: SystemTime,
    /// What happened.
    pub entry: OplogEntry,
}

impl OplogRecord {
    pub(crate) fn from_stored(record: vow_store::OplogRecord) -> Result<Self, String> {
        Ok(Self {
            index: record.index,
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(record.at),
            entry: OplogEntry::decode(&record.entry)
                .map_err(|e| format!("oplog entry {} cannot be read: {e}", record.index))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ComponentId;

    #[test]
    fn entries_round_trip_through_their_stored_form() {
        let promise = PromiseId {
            worker_id: WorkerId::new(ComponentId::from_u64_pair(0, 1), "w"),
            oplog_idx: 3,
        };
        for entry in [
            OplogEntry::CreatePromise,
            OplogEntry::AwaitPromise {
                promise,
                payload: vec![1, 2, 3],
            },
            OplogEntry::Random { bytes: vec![9; 16] },
            OplogEntry::WallClock { nanos: 17 },
        ] {
            assert_eq!(OplogEntry::decode(&entry.encode()), Ok(entry));
        }
        assert!(OplogEntry::decode(b"{\"kind\":\"nonsense\"}").is_err());
    }

    #[test]
    fn replay_passes_over_what_a_jump_went_back_over() {
        let record = |index, entry| OplogRecord {
            index,
            at: SystemTime::UNIX_EPOCH,
            entry,
        };
        let records = vec![
            record(5, OplogEntry::CreatePromise),
            record(6, OplogEntry::WallClock { nanos: 1 }),
            record(7, OplogEntry::WallClock { nanos: 2 }),
            record(8, OplogEntry::Jump { to: 5 }),
            record(9, OplogEntry::WallClock { nanos: 3 }),
            record(10, OplogEntry::Jump { to: 9 }),
            record(11, OplogEntry::WallClock { nanos: 4 }),
        ];
        let kept: Vec<u64> = without_jumps(records).iter().map(|r| r.index).collect();
        assert_eq!(kept, vec![5, 9, 11]);
    }
}
