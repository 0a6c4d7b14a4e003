//! What changed between two looks at the runtime's state, as the events of
//! `GET /v1/events`.
//!
//! A look ([`Snapshot`]) holds the components, every worker's metadata and
//! the pending promises, all read from memory. Comparing two looks gives
//! the components added, the workers added, changed or deleted, and the
//! promises that appeared or changed while pending. A promise that left the
//! pending set is read once more, to send how it settled (or that it was
//! deleted). A promise created and settled between two looks is not seen:
//! the page learns of it through its worker's change.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;
use vow_runtime::{
    ComponentId, ComponentInfo, Executor, PromiseFilter, PromiseId, PromiseInfo, WorkerId,
    WorkerMetadata,
};

use crate::routes::components::ComponentBody;
use crate::routes::promises::PromiseBody;
use crate::routes::workers::{WorkerBody, WorkerIdBody};

/// One look at the runtime's state.
pub(crate) struct Snapshot {
    components: HashMap<ComponentId, ComponentInfo>,
    workers: HashMap<WorkerId, WorkerMetadata>,
    pending: HashMap<PromiseId, PromiseInfo>,
}

impl Snapshot {
    /// Looks at `executor` now.
    pub(crate) async fn take(executor: &Executor) -> vow_runtime::Result<Self> {
        let pending = executor.promises(PromiseFilter::pending()).await?;
        Ok(Self {
            components: executor
                .components()
                .into_iter()
                .map(|c| (c.id, c))
                .collect(),
            workers: executor
                .workers(None)
                .into_iter()
                .map(|w| (w.id.clone(), w))
                .collect(),
            pending: pending.into_iter().map(|p| (p.id.clone(), p)).collect(),
        })
    }
}

/// One server-sent event: its name and its data, one line of JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) event: &'static str,
    pub(crate) data: String,
}

impl Change {
    fn new(event: &'static str, data: &impl Serialize) -> Self {
        Self {
            event,
            data: serde_json::to_string(data).unwrap_or_default(),
        }
    }
}

/// The changes from `old` to `new`, and the promises that left the pending
/// set (to be read by [`settled`]).
pub(crate) fn diff(old: &Snapshot, new: &Snapshot) -> (Vec<Change>, Vec<PromiseId>) {
    let mut changes = Vec::new();
    let mut components: Vec<&ComponentInfo> = new
        .components
        .values()
        .filter(|c| !old.components.contains_key(&c.id))
        .collect();
    components.sort_by_key(|c| c.id);
    changes.extend(
        components
            .into_iter()
            .map(|c| Change::new("component", &ComponentBody::from(c.clone()))),
    );

    let size = |id: &WorkerId| new.components.get(&id.component_id).map_or(0, |c| c.size);
    let mut workers: Vec<&WorkerMetadata> = new
        .workers
        .values()
        .filter(|w| old.workers.get(&w.id) != Some(*w))
        .collect();
    workers.sort_by_key(|w| w.id.to_string());
    changes.extend(
        workers
            .into_iter()
            .map(|w| Change::new("worker", &WorkerBody::new(w.clone(), size(&w.id)))),
    );
    let mut deleted: Vec<&WorkerId> = old
        .workers
        .keys()
        .filter(|id| !new.workers.contains_key(id))
        .collect();
    deleted.sort_by_key(|id| id.to_string());
    changes.extend(deleted.into_iter().map(|id| {
        Change::new(
            "worker-deleted",
            &json!({ "workerId": WorkerIdBody::from(id) }),
        )
    }));

    let mut pending: Vec<&PromiseInfo> = new
        .pending
        .values()
        .filter(|p| old.pending.get(&p.id) != Some(*p))
        .collect();
    pending.sort_by_key(|p| p.created_at);
    changes.extend(
        pending
            .into_iter()
            .map(|p| Change::new("promise", &PromiseBody::from(p.clone()))),
    );
    let mut gone: Vec<PromiseId> = old
        .pending
        .keys()
        .filter(|id| !new.pending.contains_key(id))
        .cloned()
        .collect();
    gone.sort_by_key(ToString::to_string);
    (changes, gone)
}

/// How each promise of `ids`, no longer pending, settled: a `promise`
/// event with its settled state, or `promise-deleted`.
pub(crate) async fn settled(executor: &Executor, ids: Vec<PromiseId>) -> Vec<Change> {
    let mut changes = Vec::with_capacity(ids.len());
    for id in ids {
        match executor.promise(&id).await {
            Ok((info, _)) => changes.push(Change::new("promise", &PromiseBody::from(info))),
            Err(vow_runtime::Error::PromiseNotFound(_)) => changes.push(Change::new(
                "promise-deleted",
                &json!({ "promiseId": id.to_string() }),
            )),
            Err(error) => tracing::debug!(promise = %id, %error, "cannot read a settled promise"),
        }
    }
    changes
}
