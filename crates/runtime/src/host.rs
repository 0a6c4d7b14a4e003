//! The `golem:api/host@1.1.0` implementation.
//!
//! Every call is appended to the worker's operation log first; the entry's
//! index is what `create-promise` embeds in the promise id, so this module is
//! the one place the durable log will hook into.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::FutureExt as _;
use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::bindings::golem::api::host::{
    self as wit, ComponentId as WitComponentId, Host, HostGetWorkers, PersistenceLevel,
    RetryPolicy, UpdateMode,
};
use crate::error::Error;
use crate::ids::{ComponentId, PromiseId, WorkerId};
use crate::oplog::OplogEntry;
use crate::promise::AwaitError;
use crate::worker::{Registry, WorkerEntry, WorkerMetadata, WorkerStatus};

/// Workers returned per `get-next` page.
const PAGE_SIZE: usize = 100;

/// Per-worker state behind the host interface.
pub(crate) struct GolemCtx {
    pub(crate) worker: Arc<WorkerEntry>,
    pub(crate) registry: Weak<Registry>,
    retry_policy: RetryPolicy,
    persistence: PersistenceLevel,
    idempotent: bool,
}

impl GolemCtx {
    pub(crate) fn new(worker: Arc<WorkerEntry>, registry: Weak<Registry>) -> Self {
        Self {
            worker,
            registry,
            retry_policy: default_retry_policy(),
            persistence: PersistenceLevel::Smart,
            idempotent: true,
        }
    }

    fn log(&self, entry: OplogEntry) -> u64 {
        self.worker.oplog().append(entry)
    }

    fn registry(&self) -> wasmtime::Result<Arc<Registry>> {
        self.registry
            .upgrade()
            .ok_or_else(|| wasmtime::Error::msg("the executor has shut down"))
    }
}

/// Golem's default retry policy, so guests read the values they would there.
fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        min_delay: 100_000_000,
        max_delay: 1_000_000_000,
        multiplier: 3.0,
        max_jitter_factor: Some(0.15),
    }
}

/// A borrowed view of the host state, the shape `add_to_linker` hands to
/// host functions.
pub(crate) struct HostView<'a> {
    pub(crate) ctx: &'a mut GolemCtx,
    pub(crate) table: &'a mut ResourceTable,
}

/// [`HasData`] marker for [`HostView`].
pub(crate) struct HasHost;

impl HasData for HasHost {
    type Data<'a> = HostView<'a>;
}

/// State of one `get-workers` listing: the ids that matched when it was
/// created; metadata is read when each page is produced.
pub struct WorkerListing {
    remaining: std::collections::VecDeque<WorkerId>,
}

fn trap(message: String) -> wasmtime::Error {
    wasmtime::Error::msg(message)
}

pub(crate) fn promise_id_from_wit(id: wit::PromiseId) -> PromiseId {
    PromiseId {
        worker_id: worker_id_from_wit(id.worker_id),
        oplog_idx: id.oplog_idx,
    }
}

pub(crate) fn promise_id_to_wit(id: &PromiseId) -> wit::PromiseId {
    wit::PromiseId {
        worker_id: worker_id_to_wit(&id.worker_id),
        oplog_idx: id.oplog_idx,
    }
}

fn component_id_from_wit(id: WitComponentId) -> ComponentId {
    ComponentId::from_u64_pair(id.uuid.high_bits, id.uuid.low_bits)
}

fn worker_id_from_wit(id: wit::WorkerId) -> WorkerId {
    WorkerId::new(component_id_from_wit(id.component_id), id.worker_name)
}

fn worker_id_to_wit(id: &WorkerId) -> wit::WorkerId {
    let (high_bits, low_bits) = id.component_id.as_u64_pair();
    wit::WorkerId {
        component_id: WitComponentId {
            uuid: wit::Uuid {
                high_bits,
                low_bits,
            },
        },
        worker_name: id.worker_name.clone(),
    }
}

fn metadata_to_wit(m: &WorkerMetadata) -> wit::WorkerMetadata {
    wit::WorkerMetadata {
        worker_id: worker_id_to_wit(&m.id),
        args: m.args.clone(),
        env: m.env.clone(),
        status: m.status.into(),
        component_version: m.component_version,
        retry_count: m.retry_count,
    }
}

impl From<WorkerStatus> for wit::WorkerStatus {
    fn from(s: WorkerStatus) -> Self {
        match s {
            WorkerStatus::Running => Self::Running,
            WorkerStatus::Idle => Self::Idle,
            WorkerStatus::Suspended => Self::Suspended,
            WorkerStatus::Interrupted => Self::Interrupted,
            WorkerStatus::Retrying => Self::Retrying,
            WorkerStatus::Failed => Self::Failed,
            WorkerStatus::Exited => Self::Exited,
        }
    }
}

impl From<wit::WorkerStatus> for WorkerStatus {
    fn from(s: wit::WorkerStatus) -> Self {
        match s {
            wit::WorkerStatus::Running => Self::Running,
            wit::WorkerStatus::Idle => Self::Idle,
            wit::WorkerStatus::Suspended => Self::Suspended,
            wit::WorkerStatus::Interrupted => Self::Interrupted,
            wit::WorkerStatus::Retrying => Self::Retrying,
            wit::WorkerStatus::Failed => Self::Failed,
            wit::WorkerStatus::Exited => Self::Exited,
        }
    }
}

impl Host for HostView<'_> {
    fn create_promise(&mut self) -> wasmtime::Result<wit::PromiseId> {
        let oplog_idx = self.ctx.log(OplogEntry::CreatePromise);
        let id = PromiseId {
            worker_id: self.ctx.worker.id.clone(),
            oplog_idx,
        };
        self.ctx
            .worker
            .promises
            .create(id.clone())
            .map_err(|e| trap(e.to_string()))?;
        tracing::debug!(promise = %id, "promise created");
        Ok(promise_id_to_wit(&id))
    }

    async fn await_promise(&mut self, promise_id: wit::PromiseId) -> wasmtime::Result<Vec<u8>> {
        let id = promise_id_from_wit(promise_id);
        let worker = Arc::clone(&self.ctx.worker);
        let mut rx = worker
            .promises
            .subscribe(id.clone())
            .map_err(|e| trap(e.to_string()))?;
        let outcome = match (&mut rx).now_or_never() {
            Some(outcome) => outcome,
            None => {
                // The fiber parks here; other workers keep running on the
                // tokio threads until the dispatcher answers.
                worker.set_status(WorkerStatus::Suspended);
                tracing::debug!(promise = %id, worker = %worker.id, "worker suspended");
                let outcome = rx.await;
                worker.set_status(WorkerStatus::Running);
                outcome
            }
        };
        match outcome {
            Ok(Ok(payload)) => {
                let data = payload.to_vec();
                self.ctx.log(OplogEntry::AwaitPromise {
                    promise: id,
                    payload,
                });
                Ok(data)
            }
            Ok(Err(AwaitError::NotFound)) => Err(trap(format!(
                "await-promise: promise {id} not found (never created or deleted)"
            ))),
            Ok(Err(AwaitError::Deleted)) => Err(trap(format!(
                "await-promise: promise {id} was deleted while awaited"
            ))),
            Err(_) => Err(trap("await-promise: the executor has shut down".into())),
        }
    }

    async fn complete_promise(
        &mut self,
        promise_id: wit::PromiseId,
        data: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        let id = promise_id_from_wit(promise_id);
        let promises = self.ctx.worker.promises.clone();
        match promises.complete(id.clone(), Bytes::from(data)).await {
            Ok(completed) => {
                self.ctx.log(OplogEntry::CompletePromise {
                    promise: id,
                    completed,
                });
                Ok(completed)
            }
            Err(Error::PromiseNotFound(_)) => Err(trap(format!(
                "complete-promise: promise {id} not found (never created or deleted)"
            ))),
            Err(e) => Err(trap(format!("complete-promise: {e}"))),
        }
    }

    fn delete_promise(&mut self, promise_id: wit::PromiseId) -> wasmtime::Result<()> {
        let id = promise_id_from_wit(promise_id);
        self.ctx.log(OplogEntry::DeletePromise {
            promise: id.clone(),
        });
        self.ctx
            .worker
            .promises
            .delete(id)
            .map_err(|e| trap(e.to_string()))
    }

    fn get_oplog_index(&mut self) -> wasmtime::Result<u64> {
        Ok(self.ctx.worker.oplog().last_index())
    }

    fn set_oplog_index(&mut self, oplog_idx: u64) -> wasmtime::Result<()> {
        Err(trap(format!(
            "set-oplog-index({oplog_idx}) is not supported yet: it needs durable workers with replay"
        )))
    }

    fn oplog_commit(&mut self, replicas: u8) -> wasmtime::Result<()> {
        // The log is in memory and local, so it is as durable as it gets the
        // moment the call returns; the durable log will wait for its fsync here.
        self.ctx.log(OplogEntry::Commit { replicas });
        Ok(())
    }

    fn mark_begin_operation(&mut self) -> wasmtime::Result<u64> {
        Ok(self.ctx.log(OplogEntry::BeginAtomicRegion))
    }

    fn mark_end_operation(&mut self, begin: u64) -> wasmtime::Result<()> {
        let last = self.ctx.worker.oplog().last_index();
        if begin == 0 || begin > last {
            return Err(trap(format!(
                "mark-end-operation({begin}): no atomic region begins at that index"
            )));
        }
        self.ctx.log(OplogEntry::EndAtomicRegion { begin });
        Ok(())
    }

    fn get_retry_policy(&mut self) -> wasmtime::Result<RetryPolicy> {
        Ok(self.ctx.retry_policy)
    }

    fn set_retry_policy(&mut self, new_retry_policy: RetryPolicy) -> wasmtime::Result<()> {
        self.ctx.log(OplogEntry::SettingChanged {
            setting: "retry-policy",
        });
        self.ctx.retry_policy = new_retry_policy;
        Ok(())
    }

    fn get_oplog_persistence_level(&mut self) -> wasmtime::Result<PersistenceLevel> {
        Ok(self.ctx.persistence)
    }

    fn set_oplog_persistence_level(
        &mut self,
        new_persistence_level: PersistenceLevel,
    ) -> wasmtime::Result<()> {
        self.ctx.log(OplogEntry::SettingChanged {
            setting: "persistence-level",
        });
        self.ctx.persistence = new_persistence_level;
        Ok(())
    }

    fn get_idempotence_mode(&mut self) -> wasmtime::Result<bool> {
        Ok(self.ctx.idempotent)
    }

    fn set_idempotence_mode(&mut self, idempotent: bool) -> wasmtime::Result<()> {
        self.ctx.log(OplogEntry::SettingChanged {
            setting: "idempotence-mode",
        });
        self.ctx.idempotent = idempotent;
        Ok(())
    }

    fn generate_idempotency_key(&mut self) -> wasmtime::Result<wit::Uuid> {
        let (high_bits, low_bits) = uuid::Uuid::new_v4().as_u64_pair();
        self.ctx.log(OplogEntry::IdempotencyKey {
            key: (high_bits, low_bits),
        });
        Ok(wit::Uuid {
            high_bits,
            low_bits,
        })
    }

    fn update_worker(
        &mut self,
        worker_id: wit::WorkerId,
        target_version: u64,
        _mode: UpdateMode,
    ) -> wasmtime::Result<()> {
        let id = worker_id_from_wit(worker_id);
        Err(trap(format!(
            "update-worker({id}, version {target_version}) is not supported yet: \
             it needs durable workers with replay"
        )))
    }

    fn get_self_metadata(&mut self) -> wasmtime::Result<wit::WorkerMetadata> {
        self.ctx.log(OplogEntry::MetadataRead {
            function: "get-self-metadata",
        });
        Ok(metadata_to_wit(&self.ctx.worker.metadata()))
    }

    fn get_worker_metadata(
        &mut self,
        worker_id: wit::WorkerId,
    ) -> wasmtime::Result<Option<wit::WorkerMetadata>> {
        self.ctx.log(OplogEntry::MetadataRead {
            function: "get-worker-metadata",
        });
        let id = worker_id_from_wit(worker_id);
        let registry = self.ctx.registry()?;
        Ok(registry.get(&id).map(|w| metadata_to_wit(&w.metadata())))
    }
}

impl HostGetWorkers for HostView<'_> {
    fn new(
        &mut self,
        component_id: WitComponentId,
        filter: Option<wit::WorkerAnyFilter>,
        _precise: bool,
    ) -> wasmtime::Result<Resource<WorkerListing>> {
        self.ctx.log(OplogEntry::MetadataRead {
            function: "get-workers",
        });
        let component = component_id_from_wit(component_id);
        let registry = self.ctx.registry()?;
        // Metadata is always read fresh when a page is produced, so listings
        // are as precise as `precise = true` asks either way.
        let remaining = registry
            .of_component(component)
            .into_iter()
            .filter(|w| {
                filter
                    .as_ref()
                    .is_none_or(|f| crate::filter::matches(f, &w.metadata()))
            })
            .map(|w| w.id.clone())
            .collect();
        Ok(self.table.push(WorkerListing { remaining })?)
    }

    fn get_next(
        &mut self,
        listing: Resource<WorkerListing>,
    ) -> wasmtime::Result<Option<Vec<wit::WorkerMetadata>>> {
        let registry = self.ctx.registry()?;
        let listing = self.table.get_mut(&listing)?;
        if listing.remaining.is_empty() {
            return Ok(None);
        }
        let mut page = Vec::with_capacity(PAGE_SIZE.min(listing.remaining.len()));
        while page.len() < PAGE_SIZE {
            let Some(id) = listing.remaining.pop_front() else {
                break;
            };
            // Workers deleted since the listing began are skipped.
            if let Some(worker) = registry.get(&id) {
                page.push(metadata_to_wit(&worker.metadata()));
            }
        }
        Ok(Some(page))
    }

    fn drop(&mut self, listing: Resource<WorkerListing>) -> wasmtime::Result<()> {
        self.table.delete(listing)?;
        Ok(())
    }
}

impl crate::bindings::golem::rpc::types::Host for HostView<'_> {}
