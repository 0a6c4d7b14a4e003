//! Promises and the dispatcher that owns them.
//!
//! One task owns the promise table. Everything that touches a promise —
//! creation by a worker, an await, a completion or rejection from a guest
//! or from the embedding API, a delete, a timer falling due — is a
//! [`Command`] on one channel to that task (or a timer of that task), so
//! the order in which settlements are applied is the order they were sent
//! and first-writer-wins needs no locks.
//!
//! A settlement is written to the store before it is applied: the promise
//! stays pending (and its waiters asleep) until the write is durable, and
//! only then does the settler hear `true` and the waiters the settlement.
//! The dispatcher never waits for the store itself; a task per write
//! reports back with [`Command::Written`], so settlements of different
//! promises share the store's group commit.
//!
//! Timers are the dispatcher's too: a pending promise with a deadline is
//! rejected with [`ErrorKind::TimedOut`] when it falls due, and a settled
//! promise with a retention is deleted when that has passed. Both are
//! stored with the promise, so they fire after a restart too (at once if
//! they fell due while the runtime was down); a timeout is a settlement
//! like any other, so it fires at most once.

mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use vow_store::{PromiseRecord, ReactionRecord, SharedStorage, Write};

use crate::compose::{ReactionSpec, Spawner};
use crate::error::{Error, Result};
use crate::ids::{ComponentId, PromiseId, WorkerId};
use crate::metrics::Meter;
use crate::worker::WorkerEntry;

use table::Table;

/// Where a promise is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromiseStatus {
    /// Not settled yet.
    Pending,
    /// Completed (fulfilled) with a payload; awaiting it returns the
    /// payload at once.
    Completed,
    /// Rejected with an error, on purpose or because the function that
    /// was to settle it failed.
    Rejected,
    /// Rejected because its timeout passed while it was pending.
    TimedOut,
}

impl PromiseStatus {
    /// Reads the REST and CLI spelling (`pending`, `completed` or its alias
    /// `fulfilled`, `rejected`, `timed-out`).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "completed" | "fulfilled" => Self::Completed,
            "rejected" => Self::Rejected,
            "timed-out" => Self::TimedOut,
            _ => return None,
        })
    }
}

/// Why a promise was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// On purpose: by a guest's `reject`, over REST or the embedding API,
    /// or by the function that was to settle it returning an error.
    Rejected,
    /// Its timeout passed while it was pending.
    TimedOut,
    /// The function that was to settle it failed (trapped).
    Failed,
}

/// The error a rejected promise settled with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseError {
    /// Why it was rejected.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// Whatever the rejecter attached (empty when nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<u8>,
}

impl PromiseError {
    /// A rejection on purpose with this message and no data.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Rejected,
            message: message.into(),
            data: Vec::new(),
        }
    }
}

impl fmt::Display for PromiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Rejected => "rejected",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Failed => "failed",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

/// What happened to a rejected promise, as a sentence's predicate:
/// `was rejected: ...`, `timed out: ...`, `failed: ...`.
pub(crate) fn describe(error: &PromiseError) -> String {
    let verb = match error.kind {
        ErrorKind::Rejected => "was rejected",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::Failed => "failed",
    };
    format!("{verb}: {}", error.message)
}

/// How a promise settled: its payload, or the error that rejected it.
pub type Settlement = std::result::Result<Bytes, PromiseError>;

/// Options of a new promise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromiseOptions {
    /// After this long still pending, the promise is rejected with
    /// [`ErrorKind::TimedOut`]. `None`: it waits as long as it takes.
    pub timeout: Option<Duration>,
    /// This long after it settles, the promise is deleted. `None`: it is
    /// kept until deleted.
    pub retention: Option<Duration>,
    /// The payload's declared WIT type: a completion must be the JSON of a
    /// value of it (see [`vow_payload_type`]).
    pub payload_type: Option<vow_payload_type::PayloadType>,
}

impl PromiseOptions {
    /// What the store keeps of these options for a promise created at
    /// `now` (milliseconds since the epoch); `composed` for a promise that
    /// work the runtime runs settles (`when`, `then`, `all`, `any`).
    pub(crate) fn spec(&self, now: vow_store::Millis, composed: bool) -> vow_store::PromiseSpec {
        // Stores keep times as signed 64-bit milliseconds: a longer wait
        // (a guest may ask for u64::MAX) is the same "never", and must not
        // make the write fail.
        const NEVER: u64 = i64::MAX as u64;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NEVER).min(NEVER);
        let extra = Extra {
            composed,
            payload_type: self.payload_type.as_ref().map(ToString::to_string),
        };
        vow_store::PromiseSpec {
            deadline: self
                .timeout
                .map(|t| now.saturating_add(millis(t)).min(NEVER)),
            retention: self.retention.map(millis),
            options: if extra == Extra::default() {
                Bytes::new()
            } else {
                crate::persist::encode(&extra)
            },
        }
    }
}

/// What the runtime keeps in a promise's stored options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extra {
    /// Settled by work the runtime runs (`when`, `then`, `all`, `any`).
    #[serde(default)]
    pub(crate) composed: bool,
    /// The declared payload type, as canonical WIT text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_type: Option<String>,
}

impl Extra {
    /// Reads stored options (none: the defaults).
    pub(crate) fn read(options: &[u8]) -> Self {
        if options.is_empty() {
            return Self::default();
        }
        serde_json::from_slice(options).unwrap_or_default()
    }
}

/// What the runtime knows about one promise.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromiseInfo {
    /// The promise.
    pub id: PromiseId,
    /// Pending, completed, rejected or timed out.
    pub status: PromiseStatus,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it settled, if it has.
    pub completed_at: Option<SystemTime>,
    /// The error it was rejected with, if it was.
    pub error: Option<PromiseError>,
    /// When it times out, while it is pending and has a timeout.
    pub deadline: Option<SystemTime>,
    /// How long it is kept once settled, if not until deleted.
    pub retention: Option<Duration>,
    /// Whether some worker is parked awaiting it right now.
    pub awaited: bool,
    /// Whether work the runtime runs settles it (it was made by `when`,
    /// `then`, `all` or `any`), rather than someone completing it.
    pub composed: bool,
    /// The payload's declared type, if it has one.
    pub payload_type: Option<vow_payload_type::PayloadType>,
}

/// Selects promises in [`Executor::promises`](crate::Executor::promises).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromiseFilter {
    /// Only promises with this status.
    pub status: Option<PromiseStatus>,
    /// Only promises created by workers of this component.
    pub component: Option<ComponentId>,
    /// Only promises created by this worker.
    pub worker: Option<WorkerId>,
}

impl PromiseFilter {
    /// Only pending promises.
    pub fn pending() -> Self {
        Self {
            status: Some(PromiseStatus::Pending),
            ..Self::default()
        }
    }

    fn matches(&self, id: &PromiseId, status: PromiseStatus) -> bool {
        self.status.is_none_or(|s| s == status)
            && self
                .component
                .is_none_or(|c| c == id.worker_id.component_id)
            && self.worker.as_ref().is_none_or(|w| *w == id.worker_id)
    }
}

/// Why an await ended without a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AwaitError {
    /// The promise does not exist.
    NotFound,
    /// The promise was deleted while the worker waited.
    Deleted,
}

/// What a waiter hears.
pub(crate) type Answer = std::result::Result<Settlement, AwaitError>;

/// Who waits on a promise: a guest (through a channel), a parked guest
/// whose resumption is measured, or a dormant worker to wake when the
/// promise settles or goes away.
pub(crate) enum Waiter {
    Channel(oneshot::Sender<Answer>),
    /// A guest's await, with its worker to stamp when the settlement is
    /// sent (see [`crate::metrics`]).
    Parked(oneshot::Sender<Answer>, Weak<WorkerEntry>),
    Wake(Weak<WorkerEntry>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Self::Channel(tx) | Self::Parked(tx, _) => tx.is_closed(),
            Self::Wake(entry) => entry.strong_count() == 0,
        }
    }

    fn send(self, answer: Answer) {
        match self {
            Self::Channel(tx) | Self::Parked(tx, _) => {
                let _ = tx.send(answer);
            }
            Self::Wake(entry) => {
                if let Some(entry) = entry.upgrade() {
                    entry.wake(true);
                }
            }
        }
    }

    /// Sends a settlement that just became durable, stamping the worker
    /// that waits on it, from which its resumption is measured.
    fn settled(self, settlement: Settlement) {
        if let Self::Parked(_, entry) | Self::Wake(entry) = &self
            && let Some(entry) = entry.upgrade()
            && entry.run_env.metrics.is_on()
        {
            entry.settled.set();
        }
        self.send(Ok(settlement));
    }
}

type Reply = oneshot::Sender<Result<bool>>;

/// A request to the dispatcher.
pub(crate) enum Command {
    Create {
        id: PromiseId,
        /// When it was created, as the store has it.
        at: vow_store::Millis,
        spec: vow_store::PromiseSpec,
        /// The worker whose open promises it counts in, if any.
        owner: Option<Weak<WorkerEntry>>,
    },
    Await {
        id: PromiseId,
        waiter: Waiter,
    },
    /// Settles a promise; `also` goes to the store in the same batch as the
    /// settlement (or alone, if the promise is already settled or gone).
    Settle {
        id: PromiseId,
        settlement: Settlement,
        also: Vec<Write>,
        reply: Reply,
    },
    /// The store answered a settlement the dispatcher wrote.
    Written {
        id: PromiseId,
        outcome: Result<bool>,
    },
    Delete {
        id: PromiseId,
    },
    DeleteWorker {
        worker: WorkerId,
    },
    List {
        filter: PromiseFilter,
        reply: oneshot::Sender<Vec<PromiseInfo>>,
    },
    Get {
        id: PromiseId,
        reply: oneshot::Sender<Option<(PromiseInfo, Option<Settlement>)>>,
    },
    /// A reaction the caller stored: `target` settles once `sources` do.
    React {
        target: PromiseId,
        sources: Vec<PromiseId>,
        spec: ReactionSpec,
    },
    /// In a cluster: what the store holds for `id` now (`None`: nothing),
    /// read because another node changed it or the table asked.
    Refreshed {
        id: PromiseId,
        record: Option<PromiseRecord>,
    },
    /// In a cluster: the reaction the store holds for `target` now.
    ReactionRefreshed {
        target: PromiseId,
        record: Option<ReactionRecord>,
    },
    /// In a cluster: everything the store holds, after news from other
    /// nodes may have been missed.
    Resync {
        promises: Vec<PromiseRecord>,
        reactions: Vec<ReactionRecord>,
    },
    /// In a cluster: this node took these workers over.
    Adopted {
        workers: Vec<WorkerId>,
    },
    /// In a cluster: which of `workers` this table has work for (a timer
    /// to fire, a reaction that settles one of their promises, or one
    /// without a worker yet whose first source is theirs).
    Busy {
        workers: Vec<WorkerId>,
        reply: oneshot::Sender<Vec<WorkerId>>,
    },
}

/// What the table of a cluster node needs besides the store: which
/// workers the node runs (only their timers and reactions fire here; the
/// table holds every promise of the cluster, kept current from the other
/// nodes' changes), and where to ask for a promise to be read again.
#[derive(Clone)]
pub(crate) struct Member {
    /// Whether this node runs the worker.
    pub(crate) mine: std::sync::Arc<dyn Fn(&WorkerId) -> bool + Send + Sync>,
    /// Whether the worker exists, on this node or another.
    pub(crate) known: std::sync::Arc<dyn Fn(&WorkerId) -> bool + Send + Sync>,
    /// Told when a promise settled (this node's write won, or another
    /// node's news said so): workers of the directory parked on it may
    /// need a node.
    pub(crate) settled: std::sync::Arc<dyn Fn(&PromiseId) + Send + Sync>,
    /// Read the promise from the store, and answer with
    /// [`Command::Refreshed`].
    pub(crate) refresh: mpsc::UnboundedSender<PromiseId>,
}

/// What the store holds when the dispatcher starts.
#[derive(Default)]
pub(crate) struct Stored {
    /// Every promise.
    pub(crate) promises: Vec<PromiseRecord>,
    /// Every reaction.
    pub(crate) reactions: Vec<ReactionRecord>,
}

/// Cheap handle for sending commands to the dispatcher.
#[derive(Clone, Debug)]
pub(crate) struct Promises {
    tx: mpsc::UnboundedSender<Command>,
    /// The largest settlement accepted from a caller, in bytes.
    max_payload: usize,
    /// Counts the answers to settlements.
    metrics: Meter,
}

impl Promises {
    /// Starts the dispatcher on the current tokio runtime with the promises
    /// the store holds; settlements are written to `storage` before anyone
    /// hears of them.
    pub(crate) fn spawn(
        storage: SharedStorage,
        Stored {
            promises: stored,
            reactions,
        }: Stored,
        spawner: Spawner,
        max_payload: usize,
        metrics: Meter,
        changes: crate::changes::Changes,
        member: Option<Member>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut table = Table::new(
            storage,
            tx.clone(),
            spawner,
            stored.len(),
            max_payload,
            metrics.clone(),
            changes,
        )
        .member(member);
        for record in stored {
            table.load(record);
        }
        // Reactions whose sources settled before a crash fire now.
        table.load_reactions(reactions);
        let task = tokio::spawn(dispatch(table, rx));
        (
            Self {
                tx,
                max_payload,
                metrics,
            },
            task,
        )
    }

    fn send(&self, command: Command) -> Result<()> {
        self.tx.send(command).map_err(|_| Error::ShutDown)
    }

    /// Registers a new pending promise. No reply is needed: the channel is
    /// FIFO, so any later command about this id is handled after it.
    pub(crate) fn create(
        &self,
        id: PromiseId,
        at: vow_store::Millis,
        spec: vow_store::PromiseSpec,
    ) -> Result<()> {
        self.send(Command::Create {
            id,
            at,
            spec,
            owner: None,
        })
    }

    /// [`create`](Self::create) for a promise `owner` created: it counts in
    /// the owner's `open_promises` until it settles or is deleted (the
    /// caller counted it in).
    pub(crate) fn create_owned(
        &self,
        id: PromiseId,
        at: vow_store::Millis,
        spec: vow_store::PromiseSpec,
        owner: Weak<WorkerEntry>,
    ) -> Result<()> {
        self.send(Command::Create {
            id,
            at,
            spec,
            owner: Some(owner),
        })
    }

    /// Asks for the settlement; the receiver resolves when the promise
    /// settles (at once if it has).
    pub(crate) fn subscribe(&self, id: PromiseId) -> Result<oneshot::Receiver<Answer>> {
        let (waiter, rx) = oneshot::channel();
        self.send(Command::Await {
            id,
            waiter: Waiter::Channel(waiter),
        })?;
        Ok(rx)
    }

    /// [`subscribe`](Self::subscribe) for `worker`'s await: with metrics
    /// on, the worker is stamped when the settlement is sent, so that its
    /// resumption can be measured.
    pub(crate) fn subscribe_parked(
        &self,
        id: PromiseId,
        worker: &std::sync::Arc<WorkerEntry>,
    ) -> Result<oneshot::Receiver<Answer>> {
        if !self.metrics.is_on() {
            return self.subscribe(id);
        }
        let (waiter, rx) = oneshot::channel();
        self.send(Command::Await {
            id,
            waiter: Waiter::Parked(waiter, std::sync::Arc::downgrade(worker)),
        })?;
        Ok(rx)
    }

    /// Wakes a dormant worker when the promise settles or is deleted (at
    /// once if it already has been, or does not exist).
    pub(crate) fn watch(&self, id: PromiseId, worker: Weak<WorkerEntry>) -> Result<()> {
        self.send(Command::Await {
            id,
            waiter: Waiter::Wake(worker),
        })
    }

    /// Settles a promise: `Ok(true)` if this call settled it, `Ok(false)`
    /// if it already was. Answers only once the settlement is durable.
    pub(crate) async fn settle(&self, id: PromiseId, settlement: Settlement) -> Result<bool> {
        self.settle_with(id, settlement, Vec::new()).await
    }

    /// [`settle`](Self::settle), with `also` stored in the same batch as
    /// the settlement (or alone when the promise is already settled; an
    /// unknown promise is [`Error::PromiseNotFound`] once `also` is
    /// stored). A settlement past the payload limit settles nothing and
    /// stores nothing: [`Error::PayloadTooLarge`].
    pub(crate) async fn settle_with(
        &self,
        id: PromiseId,
        settlement: Settlement,
        also: Vec<Write>,
    ) -> Result<bool> {
        let size = crate::limits::settlement_size(&settlement);
        let answer = if size > self.max_payload {
            Err(Error::PayloadTooLarge {
                promise: id,
                size,
                limit: self.max_payload,
            })
        } else {
            let (reply, rx) = oneshot::channel();
            self.send(Command::Settle {
                id,
                settlement,
                also,
                reply,
            })?;
            rx.await.map_err(|_| Error::ShutDown)?
        };
        self.metrics.settle_answered(&answer);
        answer
    }

    /// The settlement of work the runtime ran for a promise (`when`,
    /// `then`), fitted to the payload limit: a result past it rejects the
    /// promise instead, since nobody else would settle it.
    pub(crate) fn fit(&self, settlement: Settlement) -> Settlement {
        crate::limits::fit(settlement, self.max_payload)
    }

    /// Forgets a promise; its waiters get [`AwaitError::Deleted`]. The
    /// caller writes the deletion to the store.
    pub(crate) fn delete(&self, id: PromiseId) -> Result<()> {
        self.send(Command::Delete { id })
    }

    /// Forgets every promise created by `worker`.
    pub(crate) fn delete_worker(&self, worker: WorkerId) -> Result<()> {
        self.send(Command::DeleteWorker { worker })
    }

    /// Lists promises, ordered by worker and index.
    pub(crate) async fn list(&self, filter: PromiseFilter) -> Result<Vec<PromiseInfo>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::List { filter, reply })?;
        rx.await.map_err(|_| Error::ShutDown)
    }

    /// Registers a stored reaction: `target` settles once `sources` do (at
    /// once if they already have).
    pub(crate) fn react(
        &self,
        target: PromiseId,
        sources: Vec<PromiseId>,
        spec: ReactionSpec,
    ) -> Result<()> {
        self.send(Command::React {
            target,
            sources,
            spec,
        })
    }

    /// Hands the table a command from a cluster's follower (see
    /// [`crate::member`]).
    pub(crate) fn member_news(&self, command: Command) -> Result<()> {
        self.send(command)
    }

    /// Which of `workers` the table has timers or reactions to fire for
    /// (see [`Command::Busy`]).
    pub(crate) async fn busy(&self, workers: Vec<WorkerId>) -> Result<Vec<WorkerId>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Busy { workers, reply })?;
        rx.await.map_err(|_| Error::ShutDown)
    }

    /// One promise with its settlement, if it exists.
    pub(crate) async fn get(
        &self,
        id: PromiseId,
    ) -> Result<Option<(PromiseInfo, Option<Settlement>)>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Get { id, reply })?;
        rx.await.map_err(|_| Error::ShutDown)
    }
}

/// Runs the table: commands as they come, timers as they fall due.
async fn dispatch(mut table: Table, mut rx: mpsc::UnboundedReceiver<Command>) {
    loop {
        let due = table.next_timer();
        let sleep = async {
            match due {
                Some(at) => {
                    let wait = at.saturating_sub(vow_store::now_millis());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = rx.recv() => match command {
                Some(command) => table.apply(command),
                None => return,
            },
            () = sleep => {
                table.fire_due(vow_store::now_millis());
                table.changes.bump();
            }
        }
    }
}
