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

use std::collections::HashMap;
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

/// The workers of the other nodes, as the store last had them: their
/// metadata, and the promise each is parked on.
#[derive(Default)]
pub(crate) struct Directory {
    workers: Mutex<HashMap<WorkerId, (WorkerMetadata, Option<PromiseId>)>>,
}

type Entries = HashMap<WorkerId, (WorkerMetadata, Option<PromiseId>)>;

impl Directory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A worker of another node.
    pub(crate) fn get(&self, id: &WorkerId) -> Option<WorkerMetadata> {
        self.lock().get(id).map(|(meta, _)| meta.clone())
    }

    /// Whether another node's worker `worker` is parked on `promise`.
    pub(crate) fn awaits(&self, worker: &WorkerId, promise: &PromiseId) -> bool {
        self.lock()
            .get(worker)
            .is_some_and(|(_, parked)| parked.as_ref() == Some(promise))
    }

    /// The other nodes' workers, of one component or all.
    pub(crate) fn list(&self, component: Option<ComponentId>) -> Vec<WorkerMetadata> {
        self.lock()
            .values()
            .filter(|(w, _)| component.is_none_or(|c| c == w.id.component_id))
            .map(|(w, _)| w.clone())
            .collect()
    }

    fn put(&self, record: WorkerRecord) {
        let parked = record.state.awaiting.as_ref().map(persist::promise_id);
        let meta = metadata(record);
        self.lock().insert(meta.id.clone(), (meta, parked));
    }

    fn remove(&self, id: &WorkerId) {
        self.lock().remove(id);
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

async fn run(
    executor: Weak<crate::executor::Inner>,
    mut changes: BoxStream<'static, Change>,
    mut refresh: mpsc::UnboundedReceiver<PromiseId>,
) {
    loop {
        let change = tokio::select! {
            change = changes.next() => match change {
                Some(change) => change,
                None => return,
            },
            id = refresh.recv() => match id {
                Some(id) => Change::Promise(persist::promise_key(&id)),
                None => return,
            },
        };
        let Some(executor) = Executor::upgrade(&executor) else {
            return;
        };
        // Applied one at a time, in order: a later read never lands
        // before an earlier one.
        if let Err(error) = apply(&executor, change).await {
            tracing::warn!(%error, "reading another node's change failed; reading everything again");
            tokio::time::sleep(RETRY).await;
            if let Err(error) = apply(&executor, Change::Resync).await {
                tracing::error!(%error, "reading the store again failed");
            }
        }
    }
}

/// Reads what `change` names and applies it.
async fn apply(executor: &Executor, change: Change) -> Result<()> {
    let storage = Arc::clone(executor.storage());
    match change {
        Change::Component(id) => {
            let id = ComponentId(id);
            if executor.component(id).is_err()
                && let Some(record) = storage.component(id.0).await?
            {
                executor
                    .install_component(id, &record.name, record.bytes, record.sha256)
                    .await?;
            }
        }
        Change::Worker(key) => {
            let id = persist::worker_id(&key);
            if executor.registry().get(&id).is_none()
                && let Some(directory) = executor.directory()
            {
                match storage.worker(&key).await? {
                    Some(record) => directory.put(record),
                    None => directory.remove(&id),
                }
                executor.changes_bump();
            }
        }
        Change::Promise(key) => {
            let record = storage.promise(&key).await?;
            let id = persist::promise_id(&key);
            executor.promises_news(Command::Refreshed { id, record })?;
        }
        Change::Reaction(key) => {
            let record = storage.reaction(&key).await?;
            let target = persist::promise_id(&key);
            executor.promises_news(Command::ReactionRefreshed { target, record })?;
        }
        Change::Resync => {
            for component in storage.components().await? {
                let id = ComponentId(component.id);
                if executor.component(id).is_err() {
                    executor
                        .install_component(id, &component.name, component.bytes, component.sha256)
                        .await?;
                }
            }
            let (promises, reactions) = (storage.promises().await?, storage.reactions().await?);
            executor.promises_news(Command::Resync {
                promises,
                reactions,
            })?;
            if let Some(directory) = executor.directory() {
                directory.lock().clear();
            }
            load_directory(executor).await?;
        }
        // `Change` is non-exhaustive: news of a kind this version does not
        // know is read as "read everything again".
        _ => return Box::pin(apply(executor, Change::Resync)).await,
    }
    Ok(())
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
