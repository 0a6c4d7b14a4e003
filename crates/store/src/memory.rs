//! The in-memory backend: everything is lost with the process. For tests and
//! for embedders that want Vow's semantics without a data directory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use futures::FutureExt as _;
use futures::future::{BoxFuture, ready};

use crate::{
    ComponentRecord, Error, InvocationRecord, InvocationState, OplogRecord, Outcome, PromiseKey,
    PromiseRecord, PromiseState, ReactionRecord, Result, SnapshotRecord, Storage, WorkerKey,
    WorkerRecord, Write,
};

/// Keeps every record in memory. Writes are applied when [`Storage::write`]
/// is called, so they are "durable" at once, within the process.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    components: BTreeMap<uuid::Uuid, ComponentRecord>,
    workers: BTreeMap<WorkerKey, WorkerRecord>,
    oplogs: HashMap<WorkerKey, Vec<OplogRecord>>,
    promises: BTreeMap<PromiseKey, PromiseRecord>,
    reactions: BTreeMap<PromiseKey, ReactionRecord>,
    invocations: BTreeMap<WorkerKey, BTreeMap<u64, InvocationRecord>>,
    snapshots: HashMap<WorkerKey, SnapshotRecord>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// First writer wins: only a pending promise settles.
    fn settle(&mut self, key: &PromiseKey, settled: PromiseState) -> Outcome {
        match self.promises.get_mut(key) {
            None => Outcome::NotFound,
            Some(p) if p.state != PromiseState::Pending => Outcome::Completed(false),
            Some(p) => {
                p.state = settled;
                Outcome::Completed(true)
            }
        }
    }

    fn apply(&mut self, write: Write) -> Result<Outcome> {
        match write {
            Write::PutComponent(c) => {
                if self.components.contains_key(&c.id) {
                    return Err(Error::Conflict(format!(
                        "component {} already exists",
                        c.id
                    )));
                }
                self.components.insert(c.id, c);
            }
            Write::CreateWorker(w) => {
                if self.workers.contains_key(&w.key) {
                    return Err(Error::Conflict(format!("worker {} already exists", w.key)));
                }
                self.workers.insert(w.key.clone(), w);
            }
            Write::UpdateWorker { worker, state } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.state = state;
                }
            }
            Write::DeleteWorker(key) => {
                self.workers.remove(&key);
                self.oplogs.remove(&key);
                self.invocations.remove(&key);
                self.snapshots.remove(&key);
                self.promises.retain(|p, _| p.worker != key);
                self.reactions.retain(|p, _| p.worker != key);
            }
            Write::AppendOplog { worker, records } => {
                let log = self.oplogs.entry(worker.clone()).or_default();
                // Check every index before appending any: a one-write batch
                // is applied in place, so it must fail before changing anything.
                let next = log.len() as u64 + 1;
                for (expected, record) in (next..).zip(&records) {
                    if record.index != expected {
                        return Err(Error::Conflict(format!(
                            "oplog of worker {worker}: appending index {} where {expected} is next",
                            record.index
                        )));
                    }
                }
                log.extend(records);
            }
            Write::TruncateOplog { worker, after } => {
                if let Some(log) = self.oplogs.get_mut(&worker) {
                    log.truncate(after as usize);
                }
                if self.snapshots.get(&worker).is_some_and(|s| s.index > after) {
                    self.snapshots.remove(&worker);
                }
            }
            Write::CreatePromise { key, at, spec } => {
                self.promises.entry(key.clone()).or_insert(PromiseRecord {
                    key,
                    created_at: at,
                    state: PromiseState::Pending,
                    spec,
                });
            }
            Write::CompletePromise { key, data, at } => {
                return Ok(self.settle(&key, PromiseState::Completed { data, at }));
            }
            Write::RejectPromise { key, error, at } => {
                return Ok(self.settle(&key, PromiseState::Rejected { error, at }));
            }
            Write::DeletePromise(key) => {
                self.promises.remove(&key);
                self.reactions.remove(&key);
            }
            Write::PutReaction(reaction) => {
                self.reactions
                    .entry(reaction.target.clone())
                    .or_insert(reaction);
            }
            Write::DeleteReaction(key) => {
                self.reactions.remove(&key);
            }
            Write::Enqueue(inv) => {
                let queue = self.invocations.entry(inv.worker.clone()).or_default();
                let key_taken = inv.idempotency_key.is_some()
                    && queue
                        .values()
                        .any(|i| i.idempotency_key == inv.idempotency_key);
                if queue.contains_key(&inv.seq) || key_taken {
                    return Err(Error::Conflict(format!(
                        "worker {} already has invocation {} or its idempotency key",
                        inv.worker, inv.seq
                    )));
                }
                queue.insert(inv.seq, inv);
            }
            Write::PutSnapshot(snapshot) => {
                self.snapshots.insert(snapshot.worker.clone(), snapshot);
            }
            Write::SetInvocationState { worker, seq, state } => {
                if let Some(inv) = self
                    .invocations
                    .get_mut(&worker)
                    .and_then(|q| q.get_mut(&seq))
                {
                    inv.state = state;
                }
            }
        }
        Ok(Outcome::Done)
    }
}

/// What a write changed, to put back if a later write of its batch fails.
enum Undo {
    Component(uuid::Uuid, Option<ComponentRecord>),
    Worker(WorkerKey, Option<WorkerRecord>),
    /// The log's length before an append.
    OplogLen(WorkerKey, Option<usize>),
    Oplog(WorkerKey, Option<Vec<OplogRecord>>),
    Invocations(WorkerKey, Option<BTreeMap<u64, InvocationRecord>>),
    Invocation(WorkerKey, u64, Option<InvocationRecord>),
    Snapshot(WorkerKey, Option<SnapshotRecord>),
    Promise(PromiseKey, Option<PromiseRecord>),
    Reaction(PromiseKey, Option<ReactionRecord>),
}

impl State {
    /// Records, before `write` is applied, what it may change.
    fn remember(&self, write: &Write, undo: &mut Vec<Undo>) {
        let worker_records = |key: &WorkerKey, undo: &mut Vec<Undo>| {
            undo.push(Undo::Worker(key.clone(), self.workers.get(key).cloned()));
            undo.push(Undo::Oplog(key.clone(), self.oplogs.get(key).cloned()));
            undo.push(Undo::Invocations(
                key.clone(),
                self.invocations.get(key).cloned(),
            ));
            undo.push(Undo::Snapshot(
                key.clone(),
                self.snapshots.get(key).cloned(),
            ));
        };
        match write {
            Write::PutComponent(c) => {
                undo.push(Undo::Component(c.id, self.components.get(&c.id).cloned()));
            }
            Write::CreateWorker(w) => {
                undo.push(Undo::Worker(
                    w.key.clone(),
                    self.workers.get(&w.key).cloned(),
                ));
            }
            Write::UpdateWorker { worker, .. } => {
                undo.push(Undo::Worker(
                    worker.clone(),
                    self.workers.get(worker).cloned(),
                ));
            }
            Write::DeleteWorker(key) => {
                worker_records(key, undo);
                for (k, p) in self.promises.iter().filter(|(k, _)| k.worker == *key) {
                    undo.push(Undo::Promise(k.clone(), Some(p.clone())));
                }
                for (k, r) in self.reactions.iter().filter(|(k, _)| k.worker == *key) {
                    undo.push(Undo::Reaction(k.clone(), Some(r.clone())));
                }
            }
            Write::AppendOplog { worker, .. } => {
                undo.push(Undo::OplogLen(
                    worker.clone(),
                    self.oplogs.get(worker).map(Vec::len),
                ));
            }
            Write::TruncateOplog { worker, .. } => {
                undo.push(Undo::Oplog(
                    worker.clone(),
                    self.oplogs.get(worker).cloned(),
                ));
                undo.push(Undo::Snapshot(
                    worker.clone(),
                    self.snapshots.get(worker).cloned(),
                ));
            }
            Write::CreatePromise { key, .. }
            | Write::CompletePromise { key, .. }
            | Write::RejectPromise { key, .. } => {
                undo.push(Undo::Promise(key.clone(), self.promises.get(key).cloned()));
            }
            Write::DeletePromise(key) => {
                undo.push(Undo::Promise(key.clone(), self.promises.get(key).cloned()));
                undo.push(Undo::Reaction(
                    key.clone(),
                    self.reactions.get(key).cloned(),
                ));
            }
            Write::PutReaction(r) => {
                undo.push(Undo::Reaction(
                    r.target.clone(),
                    self.reactions.get(&r.target).cloned(),
                ));
            }
            Write::DeleteReaction(key) => {
                undo.push(Undo::Reaction(
                    key.clone(),
                    self.reactions.get(key).cloned(),
                ));
            }
            Write::Enqueue(inv) => {
                let old = self
                    .invocations
                    .get(&inv.worker)
                    .and_then(|q| q.get(&inv.seq))
                    .cloned();
                undo.push(Undo::Invocation(inv.worker.clone(), inv.seq, old));
            }
            Write::SetInvocationState { worker, seq, .. } => {
                let old = self
                    .invocations
                    .get(worker)
                    .and_then(|q| q.get(seq))
                    .cloned();
                undo.push(Undo::Invocation(worker.clone(), *seq, old));
            }
            Write::PutSnapshot(snapshot) => {
                undo.push(Undo::Snapshot(
                    snapshot.worker.clone(),
                    self.snapshots.get(&snapshot.worker).cloned(),
                ));
            }
        }
    }

    /// Puts back what the writes recorded in `undo` changed, latest first.
    fn roll_back(&mut self, undo: Vec<Undo>) {
        fn put<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
            match value {
                Some(value) => {
                    map.insert(key, value);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        fn put_hashed<K: std::hash::Hash + Eq, V>(
            map: &mut HashMap<K, V>,
            key: K,
            value: Option<V>,
        ) {
            match value {
                Some(value) => {
                    map.insert(key, value);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        for step in undo.into_iter().rev() {
            match step {
                Undo::Component(id, old) => put(&mut self.components, id, old),
                Undo::Worker(key, old) => put(&mut self.workers, key, old),
                Undo::OplogLen(key, Some(len)) => {
                    if let Some(log) = self.oplogs.get_mut(&key) {
                        log.truncate(len);
                    }
                }
                Undo::OplogLen(key, None) => {
                    self.oplogs.remove(&key);
                }
                Undo::Oplog(key, old) => put_hashed(&mut self.oplogs, key, old),
                Undo::Invocations(key, old) => put(&mut self.invocations, key, old),
                Undo::Invocation(key, seq, old) => {
                    let queue = self.invocations.entry(key.clone()).or_default();
                    put(queue, seq, old);
                    if queue.is_empty() {
                        self.invocations.remove(&key);
                    }
                }
                Undo::Snapshot(key, old) => put_hashed(&mut self.snapshots, key, old),
                Undo::Promise(key, old) => put(&mut self.promises, key, old),
                Undo::Reaction(key, old) => put(&mut self.reactions, key, old),
            }
        }
    }
}

impl Storage for MemoryStorage {
    fn write(&self, batch: Vec<Write>) -> BoxFuture<'static, Result<Vec<Outcome>>> {
        let mut state = self.state();
        // Each write first notes what it may change, so a failing write
        // puts its batch's earlier writes back: the batch is atomic without
        // copying the whole store.
        let mut undo = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut outcome = Ok(());
        for write in batch {
            state.remember(&write, &mut undo);
            match state.apply(write) {
                Ok(done) => outcomes.push(done),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        let outcome = match outcome {
            Ok(()) => Ok(outcomes),
            Err(error) => {
                state.roll_back(undo);
                Err(error)
            }
        };
        ready(outcome).boxed()
    }

    fn components(&self) -> BoxFuture<'_, Result<Vec<ComponentRecord>>> {
        let out = self.state().components.values().cloned().collect();
        ready(Ok(out)).boxed()
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerRecord>>> {
        let out = self.state().workers.values().cloned().collect();
        ready(Ok(out)).boxed()
    }

    fn oplog<'a>(
        &'a self,
        worker: &'a WorkerKey,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<OplogRecord>>> {
        let out = self
            .state()
            .oplogs
            .get(worker)
            .map_or_else(Vec::new, |log| {
                log.iter()
                    .filter(|r| r.index >= from)
                    .take(limit)
                    .cloned()
                    .collect()
            });
        ready(Ok(out)).boxed()
    }

    fn last_oplog_index<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        let out = self
            .state()
            .oplogs
            .get(worker)
            .and_then(|log| log.last().map(|r| r.index))
            .unwrap_or(0);
        ready(Ok(out)).boxed()
    }

    fn promises(&self) -> BoxFuture<'_, Result<Vec<PromiseRecord>>> {
        let out = self.state().promises.values().cloned().collect();
        ready(Ok(out)).boxed()
    }

    fn reactions(&self) -> BoxFuture<'_, Result<Vec<ReactionRecord>>> {
        let out = self.state().reactions.values().cloned().collect();
        ready(Ok(out)).boxed()
    }

    fn component(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<ComponentRecord>>> {
        let out = self.state().components.get(&id).cloned();
        ready(Ok(out)).boxed()
    }

    fn worker<'a>(&'a self, key: &'a WorkerKey) -> BoxFuture<'a, Result<Option<WorkerRecord>>> {
        let out = self.state().workers.get(key).cloned();
        ready(Ok(out)).boxed()
    }

    fn promise<'a>(&'a self, key: &'a PromiseKey) -> BoxFuture<'a, Result<Option<PromiseRecord>>> {
        let out = self.state().promises.get(key).cloned();
        ready(Ok(out)).boxed()
    }

    fn reaction<'a>(
        &'a self,
        target: &'a PromiseKey,
    ) -> BoxFuture<'a, Result<Option<ReactionRecord>>> {
        let out = self.state().reactions.get(target).cloned();
        ready(Ok(out)).boxed()
    }

    fn unfinished_invocations<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        let out = self
            .state()
            .invocations
            .get(worker)
            .map_or_else(Vec::new, |q| {
                q.values()
                    .filter(|i| !matches!(i.state, InvocationState::Finished(_)))
                    .cloned()
                    .collect()
            });
        ready(Ok(out)).boxed()
    }

    fn workers_with_unfinished_invocations(&self) -> BoxFuture<'_, Result<Vec<WorkerKey>>> {
        let out = self
            .state()
            .invocations
            .iter()
            .filter(|(_, q)| {
                q.values()
                    .any(|i| !matches!(i.state, InvocationState::Finished(_)))
            })
            .map(|(key, _)| key.clone())
            .collect();
        ready(Ok(out)).boxed()
    }

    fn snapshot<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Option<SnapshotRecord>>> {
        let out = self.state().snapshots.get(worker).cloned();
        ready(Ok(out)).boxed()
    }

    fn invocation_by_key<'a>(
        &'a self,
        worker: &'a WorkerKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvocationRecord>>> {
        let out = self.state().invocations.get(worker).and_then(|q| {
            q.values()
                .find(|i| i.idempotency_key.as_deref() == Some(key))
                .cloned()
        });
        ready(Ok(out)).boxed()
    }

    fn invocations_between<'a>(
        &'a self,
        worker: &'a WorkerKey,
        first: u64,
        last: u64,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        let out = match self.state().invocations.get(worker) {
            Some(queue) if first <= last => {
                queue.range(first..=last).map(|(_, i)| i.clone()).collect()
            }
            _ => Vec::new(),
        };
        ready(Ok(out)).boxed()
    }

    fn last_invocation_seq<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        let out = self
            .state()
            .invocations
            .get(worker)
            .and_then(|q| q.keys().next_back().copied())
            .unwrap_or(0);
        ready(Ok(out)).boxed()
    }

    fn location(&self) -> String {
        "memory".to_owned()
    }
}
