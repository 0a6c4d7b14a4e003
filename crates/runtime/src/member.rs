//! An executor that shares its store with other executors: a node of a
//! cluster (see [`ExecutorBuilder::shared_store`](crate::ExecutorBuilder::shared_store)).
//!
//! Each worker runs on one node, the one that owns it; the embedder (the
//! cluster layer of `vow serve`) decides which, and hands the workers this
//! node takes to [`Executor::adopt`]. Everything else is the cluster's:
//!
//! - **Promises.** Every node's table holds every promise and reaction,
//!   kept current from the other nodes' changes as the store reports them
//!   ([`Storage::remote_changes`](vow_store::Storage::remote_changes)). A
//!   settlement is decided by the store (its write settles only a pending
//!   promise), so two nodes settling one promise at once give one `true`;
//!   the loser reads the winner's settlement back. A guest may await,
//!   settle or compose any promise of the cluster. Only the owner of a
//!   promise's worker fires its timers and the reactions that settle it.
//! - **Workers.** This node's registry holds the workers it runs; the
//!   others are listed from a directory of their stored records (their
//!   status as last stored), so listings cover the whole cluster.
//! - **Components** added on one node are compiled on every node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use vow_store::{Change, WorkerRecord};

use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::ids::{ComponentId, PromiseId, WorkerId};
use crate::persist;
use crate::promise::Command;
use crate::worker::{WorkerMetadata, WorkerStatus};

/// The workers of the other nodes (and the free ones), as the store last
/// had them: their metadata, and the promise each is parked on.
#[derive(Default)]
pub(crate) struct Directory {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    workers: HashMap<WorkerId, (WorkerMetadata, Option<PromiseId>)>,
    /// The workers parked on each promise.
    parked: HashMap<PromiseId, HashSet<WorkerId>>,
}

impl Entries {
    fn insert(&mut self, meta: WorkerMetadata, parked: Option<PromiseId>) {
        self.remove(&meta.id);
        if let Some(promise) = &parked {
            self.parked
                .entry(promise.clone())
                .or_default()
                .insert(meta.id.clone());
        }
        self.workers.insert(meta.id.clone(), (meta, parked));
    }

    fn remove(&mut self, id: &WorkerId) {
        if let Some((_, Some(promise))) = self.workers.remove(id)
            && let Some(waiting) = self.parked.get_mut(&promise)
        {
            waiting.remove(id);
            if waiting.is_empty() {
                self.parked.remove(&promise);
            }
        }
    }
}

impl Directory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A worker of another node.
    pub(crate) fn get(&self, id: &WorkerId) -> Option<WorkerMetadata> {
        self.lock().workers.get(id).map(|(meta, _)| meta.clone())
    }

    /// Whether another node's worker `worker` is parked on `promise`.
    pub(crate) fn awaits(&self, worker: &WorkerId, promise: &PromiseId) -> bool {
        self.lock()
            .workers
            .get(worker)
            .is_some_and(|(_, parked)| parked.as_ref() == Some(promise))
    }

    /// The workers outside this node parked on `promise`.
    pub(crate) fn parked_on(&self, promise: &PromiseId) -> Vec<WorkerId> {
        self.lock()
            .parked
            .get(promise)
            .map(|workers| workers.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The other nodes' workers, of one component or all.
    pub(crate) fn list(&self, component: Option<ComponentId>) -> Vec<WorkerMetadata> {
        self.lock()
            .workers
            .values()
            .filter(|(w, _)| component.is_none_or(|c| c == w.id.component_id))
            .map(|(w, _)| w.clone())
            .collect()
    }

    fn put(&self, record: WorkerRecord) {
        let parked = record.state.awaiting.as_ref().map(persist::promise_id);
        self.lock().insert(metadata(record), parked);
    }

    pub(crate) fn remove(&self, id: &WorkerId) {
        self.lock().remove(id);
    }

    fn clear(&self) {
        *self.lock() = Entries::default();
    }
}

/// Where a cluster node's executor tells of workers outside it that need
/// a node (see [`Executor::needed_workers`]).
pub(crate) struct Needed {
    tx: mpsc::UnboundedSender<WorkerId>,
    /// Until the embedder takes it.
    rx: Mutex<Option<mpsc::UnboundedReceiver<WorkerId>>>,
}

impl Default for Needed {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Needed {
    pub(crate) fn send(&self, workers: Vec<WorkerId>) {
        for worker in workers {
            let _ = self.tx.send(worker);
        }
    }

    fn take(&self) -> Option<mpsc::UnboundedReceiver<WorkerId>> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// A stored worker's metadata, as far as its record tells.
fn metadata(record: WorkerRecord) -> WorkerMetadata {
    WorkerMetadata {
        id: persist::worker_id(&record.key),
        args: record.args,
        env: record.env,
        status: WorkerStatus::parse(&record.state.status).unwrap_or(WorkerStatus::Idle),
        component_version: 0,
        retry_count: 0,
        created_at: SystemTime::UNIX_EPOCH + Duration::from_millis(record.created_at),
        last_error: record.state.last_error,
        pending_invocations: 0,
        linear_memory: 0,
    }
}

/// Loads the directory: every stored worker this node does not run.
pub(crate) async fn load_directory(executor: &Executor) -> Result<()> {
    let Some(directory) = executor.directory() else {
        return Ok(());
    };
    for record in executor.storage().workers().await? {
        let id = persist::worker_id(&record.key);
        if executor.registry().get(&id).is_none() {
            directory.put(record);
        }
    }
    Ok(())
}

/// How long to wait before reading everything again after a read failed.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the other nodes' changes, and the table's requests to read a
/// promise again, for as long as the executor lives.
pub(crate) fn follow(
    executor: &Executor,
    changes: BoxStream<'static, Change>,
    refresh: mpsc::UnboundedReceiver<PromiseId>,
) {
    let weak = executor.downgrade();
    tokio::spawn(run(weak, changes, refresh));
}

/// Changes read and applied together at most: under load, notifications
/// arrive faster than one read each can follow.
const BATCH: usize = 512;

async fn run(
    executor: Weak<crate::executor::Inner>,
    mut changes: BoxStream<'static, Change>,
    mut refresh: mpsc::UnboundedReceiver<PromiseId>,
) {
    use futures::FutureExt as _;
    loop {
        let first = tokio::select! {
            change = changes.next() => match change {
                Some(change) => change,
                None => return,
            },
            id = refresh.recv() => match id {
                Some(id) => Change::Promise(persist::promise_key(&id)),
                None => return,
            },
        };
        // And whatever else has come meanwhile.
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match changes.next().now_or_never() {
                Some(Some(change)) => batch.push(change),
                _ => break,
            }
        }
        while batch.len() < BATCH {
            match refresh.try_recv() {
                Ok(id) => batch.push(Change::Promise(persist::promise_key(&id))),
                Err(_) => break,
            }
        }
        let Some(executor) = Executor::upgrade(&executor) else {
            return;
        };
        // Batches are applied one at a time, in order: a later read never
        // lands before an earlier one.
        if let Err(error) = apply_all(&executor, batch).await {
            tracing::warn!(%error, "reading another node's change failed; reading everything again");
            tokio::time::sleep(RETRY).await;
            if let Err(error) = resync(&executor).await {
                tracing::error!(%error, "reading the store again failed");
            }
        }
    }
}

/// Reads what a batch of changes names, a read per kind of record (each
/// record once, as it is now), and applies it: components, then
/// promises, then reactions (a reaction's target is then known), then
/// workers.
async fn apply_all(executor: &Executor, batch: Vec<Change>) -> Result<()> {
    let mut components = Vec::new();
    let mut workers = Vec::new();
    let mut promises = Vec::new();
    let mut reactions = Vec::new();
    for change in batch {
        match change {
            Change::Component(id) => components.push(id),
            Change::Worker(key) => workers.push(key),
            Change::Promise(key) => promises.push(key),
            Change::Reaction(key) => reactions.push(key),
            // Everything is read again (`Change` is non-exhaustive: news of
            // a kind this version does not know is read that way too).
            _ => return resync(executor).await,
        }
    }
    dedup(&mut components);
    dedup(&mut workers);
    dedup(&mut promises);
    dedup(&mut reactions);
    let storage = Arc::clone(executor.storage());
    for id in components.into_iter().map(ComponentId) {
        if executor.component(id).is_err()
            && let Some(record) = storage.component(id.0).await?
        {
            executor
                .install_component(id, &record.name, record.bytes, record.sha256)
                .await?;
        }
    }
    if !promises.is_empty() {
        let found = storage.promises_named(&promises).await?;
        let mut found = by_key(found, |record| record.key.clone());
        for key in promises {
            let record = found.remove(&key);
            let id = persist::promise_id(&key);
            executor.promises_news(Command::Refreshed { id, record })?;
        }
    }
    if !reactions.is_empty() {
        let found = storage.reactions_named(&reactions).await?;
        let mut found = by_key(found, |record| record.target.clone());
        for key in reactions {
            let record = found.remove(&key);
            let target = persist::promise_id(&key);
            executor.promises_news(Command::ReactionRefreshed { target, record })?;
        }
    }
    let Some(directory) = executor.directory() else {
        return Ok(());
    };
    workers.retain(|key| executor.registry().get(&persist::worker_id(key)).is_none());
    if !workers.is_empty() {
        let found = storage.workers_named(&workers).await?;
        let mut found = by_key(found, |record| record.key.clone());
        for key in workers {
            let id = persist::worker_id(&key);
            // Taken by this node while the read was on its way.
            if executor.registry().get(&id).is_some() {
                continue;
            }
            match found.remove(&key) {
                Some(record) => directory.put(record),
                None => directory.remove(&id),
            }
        }
        executor.changes_bump();
    }
    Ok(())
}

/// `records` by their key.
fn by_key<K: Eq + std::hash::Hash, R>(records: Vec<R>, key: impl Fn(&R) -> K) -> HashMap<K, R> {
    records.into_iter().map(|r| (key(&r), r)).collect()
}

/// Keeps the first of each value, in order.
fn dedup<T: Clone + Eq + std::hash::Hash>(values: &mut Vec<T>) {
    let mut seen = HashSet::new();
    values.retain(|value| seen.insert(value.clone()));
}

/// Reads everything again (news may have been missed): the components
/// this node lacks, every promise and reaction, and the directory.
async fn resync(executor: &Executor) -> Result<()> {
    crate::recovery::recover_components(executor).await?;
    let storage = executor.storage();
    let (promises, reactions) = (storage.promises().await?, storage.reactions().await?);
    executor.promises_news(Command::Resync {
        promises,
        reactions,
    })?;
    if let Some(directory) = executor.directory() {
        directory.clear();
    }
    load_directory(executor).await
}

impl Executor {
    /// Takes a worker over from the shared store (see
    /// [`ExecutorBuilder::shared_store`](crate::ExecutorBuilder::shared_store)):
    /// loads it as after a restart (a parked worker stays parked and
    /// resumes by replay when its promise settles; an invocation that was
    /// running runs again from its start; queued ones run), and fires the
    /// timers and reactions of its promises from now on. `false` if the
    /// store has no such worker. The caller must own the worker: two
    /// executors running one worker would interleave its log (a cluster
    /// node takes it first, see `vow_store_postgres::cluster`).
    pub async fn adopt(&self, id: &WorkerId) -> Result<bool> {
        if self.registry().get(id).is_some() {
            return Ok(true);
        }
        let storage = Arc::clone(self.storage());
        let key = persist::worker_key(id);
        let Some(record) = storage.worker(&key).await? else {
            return Ok(false);
        };
        if self.component(id.component_id).is_err() {
            let Some(component) = storage.component(id.component_id.0).await? else {
                return Err(Error::ComponentNotFound(id.component_id));
            };
            self.install_component(
                id.component_id,
                &component.name,
                component.bytes,
                component.sha256,
            )
            .await?;
        }
        let queued = !storage.unfinished_invocations(&key).await?.is_empty();
        // Taken over twice at once (a request and a sweep): one suffices.
        match crate::recovery::recover_worker(self, record, queued) {
            Ok(_) => {}
            Err(Error::WorkerExists(_)) => return Ok(true),
            Err(error) => return Err(error),
        }
        if let Some(directory) = self.directory() {
            directory.remove(id);
        }
        self.promises_news(Command::Adopted {
            workers: vec![id.clone()],
        })?;
        tracing::debug!(worker = %id, queued, "worker taken over");
        Ok(true)
    }
}

impl Executor {
    /// On a cluster node: lets go of up to `limit` workers that have been
    /// out of memory with nothing to do for `quiet` (idle, failed, or
    /// parked on a pending promise, with nothing queued, and no timer or
    /// continuation of theirs to fire). They leave this node: a request
    /// that reaches it for one of them meanwhile fails with
    /// [`Error::WorkerMoved`] (retry), and it is listed as the others'
    /// workers are. The caller then frees them in the store, once
    /// everything this node wrote is stored, and hands them to
    /// [`released`](Self::released). Nothing outside a cluster.
    pub async fn release_quiet(&self, quiet: Duration, limit: usize) -> Result<Vec<WorkerId>> {
        let Some(directory) = self.directory() else {
            return Ok(Vec::new());
        };
        let candidates: Vec<WorkerId> = self
            .registry()
            .all()
            .into_iter()
            .filter(|worker| worker.may_release(quiet))
            .take(limit)
            .map(|worker| worker.id.clone())
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let busy: HashSet<WorkerId> = self
            .promise_table()
            .busy(candidates.clone())
            .await?
            .into_iter()
            .collect();
        let mut released = Vec::new();
        for id in candidates {
            if busy.contains(&id) {
                continue;
            }
            let Some(entry) = self.registry().get(&id) else {
                continue;
            };
            if !entry.try_release(quiet) {
                continue;
            }
            self.registry().remove(&id);
            let parked = entry.parked().map(|(promise, _)| promise);
            directory.lock().insert(entry.metadata(), parked);
            released.push(id);
        }
        Ok(released)
    }

    /// After the store freed workers [`release_quiet`](Self::release_quiet)
    /// let go of: those parked on a promise that settled meanwhile (this
    /// node no longer wakes them) are told as needed workers.
    pub async fn released(&self, workers: &[WorkerId]) {
        let Some(directory) = self.directory() else {
            return;
        };
        let mut woken = Vec::new();
        for id in workers {
            let parked = directory
                .lock()
                .workers
                .get(id)
                .and_then(|(_, p)| p.clone());
            let Some(promise) = parked else {
                continue;
            };
            if let Ok(Some((info, _))) = self.promise_table().get(promise).await
                && info.status != crate::promise::PromiseStatus::Pending
            {
                woken.push(id.clone());
            }
        }
        self.needed().send(woken);
    }

    /// On a cluster node: the workers this node does not run that need a
    /// node now (they wait, out of every node's memory, on a promise this
    /// node settled). The embedder takes each one (if it is free) and
    /// hands it to [`adopt`](Self::adopt). The receiver is handed out once;
    /// `None` after that.
    pub fn needed_workers(&self) -> Option<mpsc::UnboundedReceiver<WorkerId>> {
        self.needed().take()
    }
}
