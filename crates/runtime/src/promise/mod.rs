//! Promises and the dispatcher that owns them.
//!
//! One task owns the promise table. Everything that touches a promise —
//! creation by a worker, an await, a completion from a guest or from the
//! embedding API, a delete — is a [`Command`] on one channel to that task, so
//! the order in which completions are applied is the order they were sent and
//! first-writer-wins needs no locks.
//!
//! A completion is written to the store before it is applied: the promise
//! stays pending (and its waiters asleep) until the write is durable, and
//! only then does the completer hear `true` and the waiters their payload.
//! The dispatcher never waits for the store itself; a task per write
//! reports back with [`Command::Written`], so completions of different
//! promises share the store's group commit.

use std::collections::{HashMap, VecDeque};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use vow_store::{Outcome, PromiseRecord, PromiseState, SharedStorage, Write};

use crate::error::{Error, Result};
use crate::ids::{ComponentId, PromiseId, WorkerId};
use crate::persist;
use crate::worker::WorkerEntry;

/// Whether a promise has a payload yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromiseStatus {
    /// Not completed yet.
    Pending,
    /// Completed; awaiting it returns the payload at once.
    Completed,
}

/// What the runtime knows about one promise.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromiseInfo {
    /// The promise.
    pub id: PromiseId,
    /// Pending or completed.
    pub status: PromiseStatus,
    /// When `create-promise` ran.
    pub created_at: SystemTime,
    /// When it was completed, if it was.
    pub completed_at: Option<SystemTime>,
    /// Whether some worker is parked in `await-promise` on it right now.
    pub awaited: bool,
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

/// Why an await ended without a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AwaitError {
    /// The promise does not exist.
    NotFound,
    /// The promise was deleted while the worker waited.
    Deleted,
}

/// Who waits on a promise: a parked guest (through a channel), or a
/// dormant worker to wake when the promise completes or goes away.
pub(crate) enum Waiter {
    Channel(oneshot::Sender<Result<Bytes, AwaitError>>),
    Wake(Weak<WorkerEntry>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Self::Channel(tx) => tx.is_closed(),
            Self::Wake(entry) => entry.strong_count() == 0,
        }
    }

    fn send(self, answer: Result<Bytes, AwaitError>) {
        match self {
            Self::Channel(tx) => {
                let _ = tx.send(answer);
            }
            Self::Wake(entry) => {
                if let Some(entry) = entry.upgrade() {
                    entry.wake(true);
                }
            }
        }
    }
}
type Reply = oneshot::Sender<Result<bool>>;

/// A request to the dispatcher.
pub(crate) enum Command {
    Create {
        id: PromiseId,
    },
    Await {
        id: PromiseId,
        waiter: Waiter,
    },
    Complete {
        id: PromiseId,
        data: Bytes,
        reply: Reply,
    },
    /// The store answered a completion the dispatcher wrote.
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
}

/// Cheap handle for sending commands to the dispatcher.
#[derive(Clone, Debug)]
pub(crate) struct Promises {
    tx: mpsc::UnboundedSender<Command>,
}

impl Promises {
    /// Starts the dispatcher on the current tokio runtime with the promises
    /// the store holds; completions are written to `storage` before anyone
    /// hears of them.
    pub(crate) fn spawn(
        storage: SharedStorage,
        stored: Vec<PromiseRecord>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut table = Table {
            entries: HashMap::with_capacity(stored.len()),
            storage,
            tx: tx.clone(),
        };
        for record in stored {
            table.load(record);
        }
        let task = tokio::spawn(dispatch(table, rx));
        (Self { tx }, task)
    }

    fn send(&self, command: Command) -> Result<()> {
        self.tx.send(command).map_err(|_| Error::ShutDown)
    }

    /// Registers a new pending promise. No reply is needed: the channel is
    /// FIFO, so any later command about this id is handled after it.
    pub(crate) fn create(&self, id: PromiseId) -> Result<()> {
        self.send(Command::Create { id })
    }

    /// Asks for the payload; the receiver resolves when the promise completes.
    pub(crate) fn subscribe(
        &self,
        id: PromiseId,
    ) -> Result<oneshot::Receiver<Result<Bytes, AwaitError>>> {
        let (waiter, rx) = oneshot::channel();
        self.send(Command::Await {
            id,
            waiter: Waiter::Channel(waiter),
        })?;
        Ok(rx)
    }

    /// Wakes a dormant worker when the promise completes or is deleted (at
    /// once if it already has been, or does not exist).
    pub(crate) fn watch(&self, id: PromiseId, worker: Weak<WorkerEntry>) -> Result<()> {
        self.send(Command::Await {
            id,
            waiter: Waiter::Wake(worker),
        })
    }

    /// Completes a promise: `Ok(true)` if this call completed it. Answers
    /// only once the completion is durable.
    pub(crate) async fn complete(&self, id: PromiseId, data: Bytes) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Complete { id, data, reply })?;
        rx.await.map_err(|_| Error::ShutDown)?
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
}

struct Entry {
    created_at: SystemTime,
    state: State,
}

enum State {
    Pending(Vec<Waiter>),
    /// A completion is being written; nobody hears of it before the store
    /// has it. Later completions wait behind it: they lose if it succeeds
    /// and are tried in turn if it fails.
    Writing(Box<Writing>),
    Completed {
        data: Bytes,
        at: SystemTime,
    },
}

/// A completion being written, with who waits for it.
struct Writing {
    data: Bytes,
    reply: Reply,
    waiters: Vec<Waiter>,
    queued: VecDeque<(Bytes, Reply)>,
}

/// The promise table and the rules applied to it.
struct Table {
    entries: HashMap<PromiseId, Entry>,
    storage: SharedStorage,
    /// For the answers of the store's writes.
    tx: mpsc::UnboundedSender<Command>,
}

fn time_of(millis: vow_store::Millis) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

impl Table {
    fn load(&mut self, record: PromiseRecord) {
        let state = match record.state {
            PromiseState::Pending => State::Pending(Vec::new()),
            PromiseState::Completed { data, at } => State::Completed {
                data,
                at: time_of(at),
            },
        };
        self.entries.insert(
            persist::promise_id(&record.key),
            Entry {
                created_at: time_of(record.created_at),
                state,
            },
        );
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Create { id } => {
                self.entries.entry(id).or_insert_with(|| Entry {
                    created_at: SystemTime::now(),
                    state: State::Pending(Vec::new()),
                });
            }
            Command::Await { id, waiter } => match self.entries.get_mut(&id) {
                None => waiter.send(Err(AwaitError::NotFound)),
                Some(Entry {
                    state: State::Completed { data, .. },
                    ..
                }) => waiter.send(Ok(data.clone())),
                Some(Entry { state, .. }) => {
                    if let Some(waiters) = state.waiters() {
                        waiters.retain(|w| !w.is_closed());
                        waiters.push(waiter);
                    }
                }
            },
            Command::Complete { id, data, reply } => self.complete(id, data, reply),
            Command::Written { id, outcome } => self.written(id, outcome),
            Command::Delete { id } => {
                if let Some(entry) = self.entries.remove(&id) {
                    entry.state.fail_waiters();
                }
            }
            Command::DeleteWorker { worker } => {
                self.entries.retain(|id, entry| {
                    let keep = id.worker_id != worker;
                    if !keep {
                        std::mem::replace(&mut entry.state, State::Pending(Vec::new()))
                            .fail_waiters();
                    }
                    keep
                });
            }
            Command::List { filter, reply } => {
                let _ = reply.send(self.list(&filter));
            }
        }
    }

    fn complete(&mut self, id: PromiseId, data: Bytes, reply: Reply) {
        let Some(entry) = self.entries.get_mut(&id) else {
            let _ = reply.send(Err(Error::PromiseNotFound(id)));
            return;
        };
        match &mut entry.state {
            State::Completed { .. } => {
                let _ = reply.send(Ok(false));
            }
            State::Writing(writing) => writing.queued.push_back((data, reply)),
            State::Pending(waiters) => {
                let waiters = std::mem::take(waiters);
                let write = self.storage.write(vec![Write::CompletePromise {
                    key: persist::promise_key(&id),
                    data: data.clone(),
                    at: vow_store::now_millis(),
                }]);
                entry.state = State::Writing(Box::new(Writing {
                    data,
                    reply,
                    waiters,
                    queued: VecDeque::new(),
                }));
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let outcome = match write.await {
                        Ok(outcomes) => match outcomes.first() {
                            Some(Outcome::Completed(done)) => Ok(*done),
                            Some(Outcome::NotFound) => Err(Error::PromiseNotFound(id.clone())),
                            _ => Ok(true),
                        },
                        Err(e) => Err(Error::Store(e)),
                    };
                    let _ = tx.send(Command::Written { id, outcome });
                });
            }
        }
    }

    fn written(&mut self, id: PromiseId, outcome: Result<bool>) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let State::Writing(writing) =
            std::mem::replace(&mut entry.state, State::Pending(Vec::new()))
        else {
            return;
        };
        let Writing {
            data,
            reply,
            waiters,
            queued,
        } = *writing;
        match outcome {
            Ok(true) => {
                for waiter in waiters {
                    waiter.send(Ok(data.clone()));
                }
                entry.state = State::Completed {
                    data,
                    at: SystemTime::now(),
                };
                tracing::debug!(promise = %id, "promise completed");
                let _ = reply.send(Ok(true));
                for (_, later) in queued {
                    let _ = later.send(Ok(false));
                }
            }
            failed => {
                // Nothing was completed: the waiters keep waiting and the
                // next queued completion gets its chance.
                tracing::warn!(promise = %id, ?failed, "completion not stored");
                entry.state = State::Pending(waiters);
                let _ = reply.send(failed);
                let mut queued = queued;
                if let Some((data, next)) = queued.pop_front() {
                    self.complete(id.clone(), data, next);
                    if let Some(Entry {
                        state: State::Writing(writing),
                        ..
                    }) = self.entries.get_mut(&id)
                    {
                        writing.queued.extend(queued);
                    }
                }
            }
        }
    }

    fn list(&self, filter: &PromiseFilter) -> Vec<PromiseInfo> {
        let mut out: Vec<PromiseInfo> = self
            .entries
            .iter()
            .filter_map(|(id, entry)| {
                let (status, completed_at, awaited) = match &entry.state {
                    State::Pending(waiters) => (
                        PromiseStatus::Pending,
                        None,
                        waiters.iter().any(|w| !w.is_closed()),
                    ),
                    State::Writing(writing) => (
                        PromiseStatus::Pending,
                        None,
                        writing.waiters.iter().any(|w| !w.is_closed()),
                    ),
                    State::Completed { at, .. } => (PromiseStatus::Completed, Some(*at), false),
                };
                filter.matches(id, status).then(|| PromiseInfo {
                    id: id.clone(),
                    status,
                    created_at: entry.created_at,
                    completed_at,
                    awaited,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

impl State {
    /// Who waits, while the promise is pending.
    fn waiters(&mut self) -> Option<&mut Vec<Waiter>> {
        match self {
            State::Pending(waiters) => Some(waiters),
            State::Writing(writing) => Some(&mut writing.waiters),
            State::Completed { .. } => None,
        }
    }

    fn fail_waiters(self) {
        let (waiters, replies) = match self {
            State::Pending(waiters) => (waiters, Vec::new()),
            State::Writing(writing) => (
                writing.waiters,
                std::iter::once(writing.reply)
                    .chain(writing.queued.into_iter().map(|(_, r)| r))
                    .collect(),
            ),
            State::Completed { .. } => return,
        };
        for waiter in waiters {
            waiter.send(Err(AwaitError::Deleted));
        }
        for reply in replies {
            let _ = reply.send(Ok(false));
        }
    }
}

async fn dispatch(mut table: Table, mut rx: mpsc::UnboundedReceiver<Command>) {
    while let Some(command) = rx.recv().await {
        table.apply(command);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn() -> (Promises, SharedStorage) {
        let storage: SharedStorage = std::sync::Arc::new(vow_store::MemoryStorage::new());
        let (promises, _task) = Promises::spawn(storage.clone(), Vec::new());
        (promises, storage)
    }

    /// Creates a promise the way a host call does: in the table and the store.
    async fn create(promises: &Promises, storage: &SharedStorage, id: PromiseId) -> Result<()> {
        storage
            .write(vec![Write::CreatePromise {
                key: persist::promise_key(&id),
                at: 0,
            }])
            .await?;
        promises.create(id)
    }

    fn id(worker: &str, idx: u64) -> PromiseId {
        PromiseId {
            worker_id: WorkerId::new(ComponentId::from_u64_pair(7, 7), worker),
            oplog_idx: idx,
        }
    }

    #[tokio::test]
    async fn first_completion_wins_and_waiters_see_it() -> anyhow::Result<()> {
        let (promises, storage) = spawn();
        create(&promises, &storage, id("a", 3)).await?;
        let waiter = promises.subscribe(id("a", 3))?;
        assert!(
            promises
                .complete(id("a", 3), Bytes::from_static(b"one"))
                .await?
        );
        assert!(
            !promises
                .complete(id("a", 3), Bytes::from_static(b"two"))
                .await?
        );
        assert_eq!(waiter.await?, Ok(Bytes::from_static(b"one")));
        let late = promises.subscribe(id("a", 3))?;
        assert_eq!(late.await?, Ok(Bytes::from_static(b"one")));
        Ok(())
    }

    #[tokio::test]
    async fn unknown_and_deleted_promises_are_reported() -> anyhow::Result<()> {
        let (promises, storage) = spawn();
        let err = promises.complete(id("a", 9), Bytes::new()).await;
        assert!(matches!(err, Err(Error::PromiseNotFound(p)) if p == id("a", 9)));
        create(&promises, &storage, id("a", 3)).await?;
        let waiter = promises.subscribe(id("a", 3))?;
        promises.delete(id("a", 3))?;
        assert_eq!(waiter.await?, Err(AwaitError::Deleted));
        assert_eq!(
            promises.subscribe(id("a", 3))?.await?,
            Err(AwaitError::NotFound)
        );
        Ok(())
    }

    #[tokio::test]
    async fn listing_filters_and_reports_waiters() -> anyhow::Result<()> {
        let (promises, storage) = spawn();
        create(&promises, &storage, id("a", 3)).await?;
        create(&promises, &storage, id("b", 4)).await?;
        let _waiter = promises.subscribe(id("b", 4))?;
        promises.complete(id("a", 3), Bytes::new()).await?;
        let pending = promises.list(PromiseFilter::pending()).await?;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, id("b", 4));
        assert!(pending[0].awaited);
        let all = promises.list(PromiseFilter::default()).await?;
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].status, PromiseStatus::Completed);
        promises.delete_worker(id("b", 4).worker_id)?;
        assert_eq!(promises.list(PromiseFilter::default()).await?.len(), 1);
        Ok(())
    }
}
