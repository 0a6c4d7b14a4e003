//! The operation log: one entry for each thing a worker did that its own code
//! cannot recompute (its creation, invocations, host calls), numbered from 1.
//!
//! Every host call goes through [`Oplog::append`], which assigns the index that
//! promise ids embed. Today the log lives in memory and serves inspection and
//! id assignment; the durable log (SQLite) will persist the same entries from
//! this one place and answer host calls from them during replay.

use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use crate::ids::{OplogIndex, PromiseId, WorkerId};

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OplogEntry {
    /// The worker was created (always index 1).
    Create {
        /// Command-line arguments.
        args: Vec<String>,
        /// Environment variables.
        env: Vec<(String, String)>,
    },
    /// An invocation started.
    InvocationStarted {
        /// The exported function.
        function: String,
        /// The caller's idempotency key, if any.
        idempotency_key: Option<String>,
    },
    /// An invocation returned (`ok`) or failed.
    InvocationFinished {
        /// Whether it returned normally.
        ok: bool,
    },
    /// `create-promise`; the entry's index is the promise's `oplog-idx`.
    CreatePromise,
    /// `await-promise` returned this payload.
    AwaitPromise {
        /// The awaited promise.
        promise: PromiseId,
        /// The payload it returned.
        #[serde(skip)]
        payload: Bytes,
    },
    /// `complete-promise`, with whether this call completed it.
    CompletePromise {
        /// The completed promise.
        promise: PromiseId,
        /// `true` if this call completed it.
        completed: bool,
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
        setting: &'static str,
    },
    /// A read of runtime state that replay must answer the same way
    /// (worker metadata, worker listings).
    MetadataRead {
        /// Which host function.
        function: &'static str,
    },
    /// `oplog-commit`.
    Commit {
        /// Requested replica count.
        replicas: u8,
    },
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

/// A worker's operation log.
#[derive(Debug)]
pub struct Oplog {
    worker: WorkerId,
    records: Vec<OplogRecord>,
}

impl Oplog {
    /// A log holding only the worker's `Create` entry (index 1).
    pub(crate) fn new(worker: WorkerId, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let mut log = Self {
            worker,
            records: Vec::new(),
        };
        log.append(OplogEntry::Create { args, env });
        log
    }

    /// Appends an entry and returns its index.
    pub(crate) fn append(&mut self, entry: OplogEntry) -> OplogIndex {
        let index = self.records.len() as OplogIndex + 1;
        tracing::trace!(worker = %self.worker, index, ?entry, "oplog");
        self.records.push(OplogRecord {
            index,
            at: SystemTime::now(),
            entry,
        });
        index
    }

    /// Index of the latest entry.
    pub(crate) fn last_index(&self) -> OplogIndex {
        self.records.len() as OplogIndex
    }

    /// A copy of every record.
    pub(crate) fn records(&self) -> Vec<OplogRecord> {
        self.records.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ComponentId;

    #[test]
    fn indices_start_at_one_with_the_create_entry() {
        let mut log = Oplog::new(
            WorkerId::new(ComponentId::from_u64_pair(0, 1), "w"),
            vec![],
            vec![],
        );
        assert_eq!(log.last_index(), 1);
        let started = log.append(OplogEntry::InvocationStarted {
            function: "run".into(),
            idempotency_key: None,
        });
        assert_eq!(started, 2);
        assert_eq!(log.append(OplogEntry::CreatePromise), 3);
        assert_eq!(log.records()[2].entry, OplogEntry::CreatePromise);
    }
}
