//! # vow-store
//!
//! The storage interface of the Vow runtime: what a durable runtime keeps
//! (components, workers, each worker's operation log, promises, the
//! invocation queue and finished results) and the one trait, [`Storage`],
//! that every backend implements. The runtime knows only this crate; the
//! backends live in crates of their own (`vow-store-sqlite` today, a
//! PostgreSQL one next), so nothing backend-specific leaks into the runtime.
//!
//! ## The write model
//!
//! Every change is a [`Write`]. A caller hands a batch of them to
//! [`Storage::write`], which *enqueues the batch at the moment of the call*
//! and returns a future that resolves once the batch is durable. Two rules
//! follow, and the runtime relies on both:
//!
//! 1. **Order.** Batches are applied in the order `write` was called. A batch
//!    whose future resolved implies that every batch enqueued before it is
//!    durable too, so a caller may drop the future of a write it does not need
//!    to wait for (an oplog entry) and later wait for a write that depends on
//!    it (the result of the invocation) without losing write-ahead order.
//! 2. **Atomicity.** A batch is applied whole or not at all. Backends are
//!    free to commit several batches in one transaction (group commit: one
//!    fsync for everything that arrived while the last commit ran), but a
//!    failing batch never takes another one down with it.
//!
//! Reads see every batch whose future has resolved.
//!
//! Identifiers here are plain keys ([`WorkerKey`], [`PromiseKey`]);
//! oplog entries, invocation parameters and results are opaque to the store
//! (the runtime encodes them), so the schema does not change when the runtime
//! records a new kind of host call.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use uuid::Uuid;

mod memory;
mod observe;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use memory::MemoryStorage;
pub use observe::{CommitHook, CommitObserver};

/// A component's id and a worker's name: the key of every per-worker record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerKey {
    /// The component the worker instantiates.
    pub component: Uuid,
    /// The worker's name, unique within the component.
    pub name: String,
}

impl fmt::Display for WorkerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.component.hyphenated(), self.name)
    }
}

/// A promise: the worker that created it and the oplog index of its creation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromiseKey {
    /// The creating worker.
    pub worker: WorkerKey,
    /// Index of the `create-promise` entry in that worker's log.
    pub index: u64,
}

impl fmt::Display for PromiseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.worker, self.index)
    }
}

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub type Millis = u64;

/// A component as uploaded: its bytes are the source of truth, compiled code
/// is only a cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentRecord {
    /// Its id.
    pub id: Uuid,
    /// The name it was added with.
    pub name: String,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The component binary.
    pub bytes: Bytes,
    /// When it was added.
    pub created_at: Millis,
}

/// A worker's configuration and last known state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Its key.
    pub key: WorkerKey,
    /// Command-line arguments.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// When it was created.
    pub created_at: Millis,
    /// Its state as of the last [`Write::UpdateWorker`].
    pub state: WorkerState,
}

/// The part of a worker's record that changes over its life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerState {
    /// The runtime's name for the status (`idle`, `suspended`, `failed`, ...).
    pub status: String,
    /// The error that failed it, if it failed.
    pub last_error: Option<String>,
    /// The promise it is parked on, while it is suspended in an await.
    pub awaiting: Option<PromiseKey>,
}

/// One entry of a worker's operation log, encoded by the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OplogRecord {
    /// Its index, from 1, without gaps.
    pub index: u64,
    /// When it was appended.
    pub at: Millis,
    /// The runtime's encoding of the entry.
    pub entry: Bytes,
}

/// Whether a promise has settled, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromiseState {
    /// Not settled.
    Pending,
    /// Completed (fulfilled) with this payload at this time.
    Completed {
        /// The payload of the first settlement.
        data: Bytes,
        /// When it was completed.
        at: Millis,
    },
    /// Rejected with this error at this time.
    Rejected {
        /// The runtime's encoding of the error.
        error: Bytes,
        /// When it was rejected.
        at: Millis,
    },
}

impl PromiseState {
    /// When it settled, if it has.
    pub fn settled_at(&self) -> Option<Millis> {
        match self {
            Self::Pending => None,
            Self::Completed { at, .. } | Self::Rejected { at, .. } => Some(*at),
        }
    }
}

/// What a promise was created with, beyond its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromiseSpec {
    /// When it times out if still pending (the runtime rejects it then).
    pub deadline: Option<Millis>,
    /// How long it is kept once settled; `None` keeps it until deleted.
    pub retention: Option<Millis>,
    /// The runtime's encoding of its other options (such as a declared
    /// payload type); empty when it has none.
    pub options: Bytes,
}

/// A promise and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromiseRecord {
    /// Its key.
    pub key: PromiseKey,
    /// When it was created.
    pub created_at: Millis,
    /// Pending, completed or rejected.
    pub state: PromiseState,
    /// Its deadline, retention and options.
    pub spec: PromiseSpec,
}

/// What settles a promise once other promises settle: a continuation to
/// start, or a combination (all, any) to evaluate. The runtime deletes it
/// in the same batch as what it does when it fires, so it fires once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionRecord {
    /// The promise it settles (one reaction per promise).
    pub target: PromiseKey,
    /// The promises it waits on, in order.
    pub sources: Vec<PromiseKey>,
    /// The runtime's encoding of what to do.
    pub spec: Bytes,
    /// When it was made.
    pub created_at: Millis,
}

/// Where an invocation is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvocationState {
    /// Waiting behind the worker's earlier invocations.
    Queued,
    /// Started (its `invocation-started` entry is in the log).
    Running,
    /// Finished; the runtime's encoding of the outcome.
    Finished(Bytes),
}

/// An invocation accepted for a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvocationRecord {
    /// The worker it runs on.
    pub worker: WorkerKey,
    /// Its position in the worker's queue, from 1; unique per worker.
    pub seq: u64,
    /// The caller's idempotency key, unique per worker when set.
    pub idempotency_key: Option<String>,
    /// The runtime's encoding of the function and its arguments.
    pub request: Bytes,
    /// Where it is.
    pub state: InvocationState,
    /// When it was accepted.
    pub accepted_at: Millis,
}

/// A worker's memory as its guest saved it (the `save-snapshot` export of
/// `golem:api`): loading it into a fresh instance stands for replaying every
/// invocation of the log up to `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The worker.
    pub worker: WorkerKey,
    /// The index of the last log entry the snapshot covers.
    pub index: u64,
    /// The guest's bytes.
    pub data: Bytes,
    /// When it was taken.
    pub at: Millis,
}

/// One change. Batches of them are applied with [`Storage::write`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// Adds a component (fails with [`Error::Conflict`] if the id exists).
    PutComponent(ComponentRecord),
    /// Adds a worker (fails with [`Error::Conflict`] if the key exists).
    CreateWorker(WorkerRecord),
    /// Replaces a worker's state.
    UpdateWorker {
        /// The worker.
        worker: WorkerKey,
        /// Its new state.
        state: WorkerState,
    },
    /// Removes a worker with its log, its snapshot, its promises (and the
    /// reactions that settle them) and its invocations.
    DeleteWorker(WorkerKey),
    /// Appends entries to a worker's log; indices must continue the log.
    AppendOplog {
        /// The worker.
        worker: WorkerKey,
        /// The entries, in index order.
        records: Vec<OplogRecord>,
    },
    /// Drops every entry of a worker's log after `after` (an atomic region
    /// that a crash interrupted is run again from its start), and its
    /// snapshot if that covers a dropped entry.
    TruncateOplog {
        /// The worker.
        worker: WorkerKey,
        /// The last index kept.
        after: u64,
    },
    /// Adds a pending promise; an existing one is left as it is (replay
    /// creates the same promise again).
    CreatePromise {
        /// The promise.
        key: PromiseKey,
        /// When it was created.
        at: Millis,
        /// Its deadline, retention and options.
        spec: PromiseSpec,
    },
    /// Completes a promise if it is pending: the outcome is
    /// [`Outcome::Completed`] with `true` if this write completed it,
    /// `false` if it already was settled; [`Outcome::NotFound`] if it does
    /// not exist.
    CompletePromise {
        /// The promise.
        key: PromiseKey,
        /// The payload.
        data: Bytes,
        /// When.
        at: Millis,
    },
    /// Rejects a promise if it is pending, with the same outcomes as
    /// [`Write::CompletePromise`].
    RejectPromise {
        /// The promise.
        key: PromiseKey,
        /// The runtime's encoding of the error.
        error: Bytes,
        /// When.
        at: Millis,
    },
    /// Removes a promise, and the reaction that was to settle it.
    DeletePromise(PromiseKey),
    /// Adds a reaction; an existing one for the same target is left as it
    /// is (replay makes the same reaction again).
    PutReaction(ReactionRecord),
    /// Removes the reaction that settles this promise, if there is one.
    DeleteReaction(PromiseKey),
    /// Queues an invocation (fails with [`Error::Conflict`] if the worker
    /// already has one with this sequence number or idempotency key).
    Enqueue(InvocationRecord),
    /// Keeps a worker's snapshot in place of the one it had.
    PutSnapshot(SnapshotRecord),
    /// Sets an invocation's state.
    SetInvocationState {
        /// The worker.
        worker: WorkerKey,
        /// The invocation's sequence number.
        seq: u64,
        /// Its new state.
        state: InvocationState,
    },
}

/// What one [`Write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Applied.
    Done,
    /// A [`Write::CompletePromise`] or [`Write::RejectPromise`]: `true` if
    /// this write settled it.
    Completed(bool),
    /// A [`Write::CompletePromise`] or [`Write::RejectPromise`] of a promise
    /// that does not exist.
    NotFound,
}

/// Errors of a storage backend. Messages say what failed, with the path or
/// key involved, so they can be shown to users as they are.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be opened or created.
    #[error("cannot open the store at {location}: {reason}")]
    Open {
        /// Its path or URL.
        location: String,
        /// Why.
        reason: String,
    },
    /// The store was written by a newer Vow.
    #[error(
        "the store at {location} has schema version {found}, but this vow understands versions up to {supported}: upgrade vow, or use another data directory"
    )]
    NewerSchema {
        /// Its path or URL.
        location: String,
        /// The version found in the store.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// The store's contents are damaged.
    #[error("the store at {location} is corrupted: {reason}")]
    Corrupt {
        /// Its path or URL.
        location: String,
        /// What the backend reported.
        reason: String,
    },
    /// The disk (or database) is full; nothing of the failed batch was kept.
    #[error("the store at {location} is full: {reason}")]
    Full {
        /// Its path or URL.
        location: String,
        /// What the backend reported.
        reason: String,
    },
    /// Another node took the store over: this one lost its exclusive hold
    /// on it (its connection dropped and someone else holds it now), may
    /// no longer write, and refuses every write from then on.
    #[error(
        "the store at {location} was taken over by another node ({holder}): this node writes nothing more; restart it once that node has stopped"
    )]
    Fenced {
        /// Its path or URL.
        location: String,
        /// Who holds the store now, as far as the backend can say.
        holder: String,
    },
    /// A write conflicts with what is stored (an id taken twice).
    #[error("{0}")]
    Conflict(String),
    /// Any other failure of the backend.
    #[error("storage failed: {0}")]
    Backend(String),
    /// The store was closed, or its writer stopped after a failure.
    #[error("the store is closed")]
    Closed,
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A storage backend: see the crate docs for the write model.
///
/// Methods that read are `async` and may run on a blocking pool; none of
/// them blocks the calling task.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Enqueues a batch now; the future resolves with one [`Outcome`] per
    /// write once the batch is durable (or with the error that refused it,
    /// in which case nothing of it was applied).
    fn write(&self, batch: Vec<Write>) -> BoxFuture<'static, Result<Vec<Outcome>>>;

    /// Every component.
    fn components(&self) -> BoxFuture<'_, Result<Vec<ComponentRecord>>>;

    /// Every worker, ordered by key.
    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerRecord>>>;

    /// Up to `limit` entries of a worker's log with index `>= from`, in order.
    fn oplog<'a>(
        &'a self,
        worker: &'a WorkerKey,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<OplogRecord>>>;

    /// The index of a worker's last log entry (0 if it has none).
    fn last_oplog_index<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>>;

    /// Every promise that exists, ordered by key.
    fn promises(&self) -> BoxFuture<'_, Result<Vec<PromiseRecord>>>;

    /// Every reaction, ordered by target.
    fn reactions(&self) -> BoxFuture<'_, Result<Vec<ReactionRecord>>>;

    /// One component, if it exists. Lets a node of a cluster re-read what
    /// another node changed; this default reads every component, so
    /// backends override it with an indexed read.
    fn component(&self, id: Uuid) -> BoxFuture<'_, Result<Option<ComponentRecord>>> {
        async move { Ok(self.components().await?.into_iter().find(|c| c.id == id)) }.boxed()
    }

    /// One worker's record, if it exists. Lets a node of a cluster re-read
    /// what another node changed; this default reads every worker, so
    /// backends override it with an indexed read.
    fn worker<'a>(&'a self, key: &'a WorkerKey) -> BoxFuture<'a, Result<Option<WorkerRecord>>> {
        async move { Ok(self.workers().await?.into_iter().find(|w| w.key == *key)) }.boxed()
    }

    /// One promise, if it exists. Lets a node of a cluster re-read what
    /// another node changed; this default reads every promise, so backends
    /// override it with an indexed read.
    fn promise<'a>(&'a self, key: &'a PromiseKey) -> BoxFuture<'a, Result<Option<PromiseRecord>>> {
        async move { Ok(self.promises().await?.into_iter().find(|p| p.key == *key)) }.boxed()
    }

    /// The reaction that settles `target`, if there is one. Lets a node of
    /// a cluster re-read what another node changed; this default reads
    /// every reaction, so backends override it with an indexed read.
    fn reaction<'a>(
        &'a self,
        target: &'a PromiseKey,
    ) -> BoxFuture<'a, Result<Option<ReactionRecord>>> {
        async move {
            Ok(self
                .reactions()
                .await?
                .into_iter()
                .find(|r| r.target == *target))
        }
        .boxed()
    }

    /// The records of those of `keys` that exist, in no particular order:
    /// one read for many changes another node made. This default reads
    /// them one at a time; backends shared by a cluster override it.
    fn workers_named<'a>(
        &'a self,
        keys: &'a [WorkerKey],
    ) -> BoxFuture<'a, Result<Vec<WorkerRecord>>> {
        async move {
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                found.extend(self.worker(key).await?);
            }
            Ok(found)
        }
        .boxed()
    }

    /// The promises of `keys` that exist, in no particular order (see
    /// [`workers_named`](Self::workers_named)).
    fn promises_named<'a>(
        &'a self,
        keys: &'a [PromiseKey],
    ) -> BoxFuture<'a, Result<Vec<PromiseRecord>>> {
        async move {
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                found.extend(self.promise(key).await?);
            }
            Ok(found)
        }
        .boxed()
    }

    /// The reactions that settle those of `targets` that have one, in no
    /// particular order (see [`workers_named`](Self::workers_named)).
    fn reactions_named<'a>(
        &'a self,
        targets: &'a [PromiseKey],
    ) -> BoxFuture<'a, Result<Vec<ReactionRecord>>> {
        async move {
            let mut found = Vec::with_capacity(targets.len());
            for target in targets {
                found.extend(self.reaction(target).await?);
            }
            Ok(found)
        }
        .boxed()
    }

    /// A worker's invocations that have not finished, in queue order.
    fn unfinished_invocations<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>>;

    /// The workers that have invocations not finished, ordered by key (one
    /// read for recovery, however many workers there are).
    fn workers_with_unfinished_invocations(&self) -> BoxFuture<'_, Result<Vec<WorkerKey>>>;

    /// A worker's latest snapshot, if it has one.
    fn snapshot<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Option<SnapshotRecord>>>;

    /// A worker's invocation with this idempotency key, if there is one.
    fn invocation_by_key<'a>(
        &'a self,
        worker: &'a WorkerKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvocationRecord>>>;

    /// A worker's invocations with sequence numbers in `first..=last`, in
    /// order (the ones a page of its log started or finished).
    fn invocations_between<'a>(
        &'a self,
        worker: &'a WorkerKey,
        first: u64,
        last: u64,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>>;

    /// The highest invocation sequence number a worker has used (0 if none).
    fn last_invocation_seq<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>>;

    /// Where the store lives, for messages (a path or a URL without secrets).
    fn location(&self) -> String;

    /// Tells `observer` of every commit from now on (how many batches it
    /// held, how long it took), in place of any observer given before; the
    /// runtime's metrics use it. Backends that make no commits of their own
    /// (the in-memory one applies each batch as it comes) ignore it, which
    /// is what this default does.
    fn observe_commits(&self, observer: Arc<dyn CommitObserver>) {
        drop(observer);
    }

    /// What other writers of the same store change, as they commit it: a
    /// backend that several nodes of a cluster share hands out this stream
    /// (to the first caller; later calls get `None`), and each node re-reads
    /// the records it names. `None` (this default) when nobody else writes.
    fn remote_changes(&self) -> Option<futures::stream::BoxStream<'static, Change>> {
        None
    }
}

/// A record another writer changed (created, updated or deleted), from
/// [`Storage::remote_changes`]. The reader re-reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A component was added.
    Component(Uuid),
    /// A worker was created, changed state, or was deleted.
    Worker(WorkerKey),
    /// A promise was created, settled or deleted.
    Promise(PromiseKey),
    /// The reaction that settles this promise was made or removed.
    Reaction(PromiseKey),
    /// Changes may have been missed (the backend lost its connection for
    /// a while): read everything again.
    Resync,
}

/// Encodes a list of promise keys as one byte string, for backends that
/// keep a reaction's sources in one column: per key, its component id (16
/// bytes), its worker name's length (4 bytes, little-endian) and UTF-8
/// bytes, and its index (8 bytes, little-endian).
pub fn encode_promise_keys(keys: &[PromiseKey]) -> Vec<u8> {
    let mut out = Vec::new();
    for key in keys {
        out.extend_from_slice(key.worker.component.as_bytes());
        // Worker names are at most 256 bytes, far below u32::MAX.
        out.extend_from_slice(&(key.worker.name.len() as u32).to_le_bytes());
        out.extend_from_slice(key.worker.name.as_bytes());
        out.extend_from_slice(&key.index.to_le_bytes());
    }
    out
}

/// Decodes what [`encode_promise_keys`] wrote; `None` if it is malformed.
pub fn decode_promise_keys(mut bytes: &[u8]) -> Option<Vec<PromiseKey>> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let (component, rest) = bytes.split_first_chunk::<16>()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (name, rest) = rest.split_at(len);
        let (index, rest) = rest.split_first_chunk::<8>()?;
        keys.push(PromiseKey {
            worker: WorkerKey {
                component: Uuid::from_bytes(*component),
                name: String::from_utf8(name.to_vec()).ok()?,
            },
            index: u64::from_le_bytes(*index),
        });
        bytes = rest;
    }
    Some(keys)
}

/// A shared handle to a backend.
pub type SharedStorage = Arc<dyn Storage>;

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
