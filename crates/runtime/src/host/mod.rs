//! The `golem:api/host@1.1.0` implementation, and Vow's own
//! `vow:host/promises` in [`promises`].
//!
//! Every call asks the worker's [journal](crate::journal) first: in replay it
//! answers from the recorded entry and performs nothing; live it performs the
//! call and appends its answer. The entry's index is what `create-promise`
//! embeds in the promise id.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::FutureExt as _;
use vow_store::Write;
use wasmtime::component::{HasData, Resource, ResourceTable};

pub(crate) mod poll;
mod promises;

use crate::bindings::golem::api::host::{
    self as wit, ComponentId as WitComponentId, Host, HostGetWorkers, PersistenceLevel,
    RetryPolicy, UpdateMode,
};
use crate::error::Error;
use crate::ids::{ComponentId, PromiseId, WorkerId};
use crate::journal::{Durable, SharedJournal, lock};
use crate::oplog::{HostSettings, OplogEntry, RecordedMetadata};
use crate::persist;
use crate::promise::AwaitError;
use crate::worker::{Registry, WorkerEntry, WorkerMetadata, WorkerStatus};

/// Workers returned per `get-next` page.
const PAGE_SIZE: usize = 100;

/// Per-worker state behind the host interface.
pub(crate) struct GolemCtx {
    pub(crate) worker: Arc<WorkerEntry>,
    pub(crate) registry: Weak<Registry>,
    pub(crate) journal: SharedJournal,
    /// The promise the running invocation settles (`when`, `then`).
    pub(crate) current: Option<PromiseId>,
    retry_policy: RetryPolicy,
    persistence: PersistenceLevel,
    idempotent: bool,
}

impl GolemCtx {
    pub(crate) fn new(
        worker: Arc<WorkerEntry>,
        registry: Weak<Registry>,
        journal: SharedJournal,
    ) -> Self {
        Self {
            worker,
            registry,
            journal,
            current: None,
            retry_policy: default_retry_policy(),
            persistence: PersistenceLevel::Smart,
            idempotent: true,
        }
    }

    /// The settings a snapshot keeps.
    pub(crate) fn settings(&self) -> HostSettings {
        let p = self.retry_policy;
        HostSettings {
            retry_policy: (
                p.max_attempts,
                p.min_delay,
                p.max_delay,
                p.multiplier,
                p.max_jitter_factor,
            ),
            persistence: match self.persistence {
                PersistenceLevel::PersistNothing => "persist-nothing",
                PersistenceLevel::PersistRemoteSideEffects => "persist-remote-side-effects",
                PersistenceLevel::Smart => "smart",
            }
            .to_owned(),
            idempotent: self.idempotent,
        }
    }

    /// Restores the settings a snapshot kept.
    pub(crate) fn restore_settings(&mut self, settings: &HostSettings) {
        let (max_attempts, min_delay, max_delay, multiplier, max_jitter_factor) =
            settings.retry_policy;
        self.retry_policy = RetryPolicy {
            max_attempts,
            min_delay,
            max_delay,
            multiplier,
            max_jitter_factor,
        };
        self.persistence = match settings.persistence.as_str() {
            "persist-nothing" => PersistenceLevel::PersistNothing,
            "persist-remote-side-effects" => PersistenceLevel::PersistRemoteSideEffects,
            _ => PersistenceLevel::Smart,
        };
        self.idempotent = settings.idempotent;
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

/// A promise id argument as host-call spans show it; computed only when
/// the span is enabled.
fn promise_field(id: &wit::PromiseId) -> PromiseId {
    promise_id_from_wit(id.clone())
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

fn recorded_metadata(m: &WorkerMetadata) -> RecordedMetadata {
    RecordedMetadata {
        id: m.id.clone(),
        args: m.args.clone(),
        env: m.env.clone(),
        status: m.status.as_str().to_owned(),
        component_version: m.component_version,
        retry_count: m.retry_count,
    }
}

fn recorded_to_wit(m: &RecordedMetadata) -> wit::WorkerMetadata {
    wit::WorkerMetadata {
        worker_id: worker_id_to_wit(&m.id),
        args: m.args.clone(),
        env: m.env.clone(),
        status: WorkerStatus::parse(&m.status)
            .unwrap_or(WorkerStatus::Idle)
            .into(),
        component_version: m.component_version,
        retry_count: m.retry_count,
    }
}

/// What the journal says about a host call: answer from the log, or go live.
enum Step {
    Replay(OplogEntry),
    Live,
}

impl GolemCtx {
    fn step(&self, kind: &'static str) -> wasmtime::Result<Step> {
        match lock(&self.journal).next(kind) {
            Ok(Some(entry)) => Ok(Step::Replay(entry)),
            Ok(None) => Ok(Step::Live),
            Err(divergence) => Err(trap(divergence)),
        }
    }

    /// Appends a live entry; the write is ordered before every later one.
    fn append(&self, entry: OplogEntry, extra: Vec<Write>) -> (u64, Durable) {
        lock(&self.journal).append(entry, extra)
    }

    fn record(&self, entry: OplogEntry) -> u64 {
        self.append(entry, Vec::new()).0
    }

    /// Appends a live entry and waits until it is durable.
    async fn record_durably(&self, entry: OplogEntry, extra: Vec<Write>) -> wasmtime::Result<u64> {
        let (index, write) = self.append(entry, extra);
        write
            .await
            .map_err(|e| trap(format!("the oplog could not be stored: {e}")))?;
        Ok(index)
    }

    /// Waits, live, until the promise settles. The fiber parks here; other
    /// workers keep running on the tokio threads until the dispatcher
    /// answers. The worker task may evict the worker meanwhile (drop this
    /// future and the Store) and bring it back by replay later.
    /// `function` names the host call in the trap when the executor shut
    /// down meanwhile.
    async fn await_live(
        &self,
        id: &PromiseId,
        function: &str,
    ) -> wasmtime::Result<crate::promise::Answer> {
        let shut_down = || trap(format!("{function}: the executor has shut down"));
        let worker = Arc::clone(&self.worker);
        let mut rx = worker
            .promises
            .subscribe_parked(id.clone(), &worker)
            .map_err(|_| shut_down())?;
        let answer = match (&mut rx).now_or_never() {
            Some(answer) => answer,
            None => {
                worker.park(id.clone());
                tracing::debug!(promise = %id, worker = %worker.id, "worker suspended");
                let answer = rx.await;
                worker.unpark();
                answer
            }
        };
        // Resumed: woken by this answer, or brought back by replay after
        // the settlement woke the worker out of memory (the stamp says
        // when the settlement was sent; stale ones are cleared when an
        // invocation ends).
        worker.run_env.metrics.resumed(&worker.settled);
        answer.map_err(|_| shut_down())
    }

    /// A recorded entry of the wrong shape for its kind: the log is damaged.
    fn unexpected(&self, entry: &OplogEntry) -> wasmtime::Error {
        trap(format!(
            "worker {}: the oplog entry at index {} is malformed ({:?})",
            self.worker.id,
            lock(&self.journal).position(),
            entry
        ))
    }

    fn metadata_read(
        &self,
        function: &'static str,
        live: impl FnOnce() -> wasmtime::Result<Vec<RecordedMetadata>>,
    ) -> wasmtime::Result<Vec<RecordedMetadata>> {
        match self.step("metadata-read")? {
            Step::Replay(OplogEntry::MetadataRead { answer, .. }) => Ok(answer),
            Step::Replay(other) => Err(self.unexpected(&other)),
            Step::Live => {
                let answer = live()?;
                self.record(OplogEntry::MetadataRead {
                    function: function.to_owned(),
                    answer: answer.clone(),
                });
                Ok(answer)
            }
        }
    }
}

impl HostView<'_> {
    /// `create-promise`, and `vow:host/promises.create`: the promise's
    /// index is its entry's. `spec` gives what the store keeps of its
    /// options, from the creation time; it is asked only live.
    pub(crate) fn create_promise_with(
        &mut self,
        spec: impl FnOnce(vow_store::Millis) -> wasmtime::Result<vow_store::PromiseSpec>,
    ) -> wasmtime::Result<wit::PromiseId> {
        let worker = &self.ctx.worker;
        let oplog_idx = match self.ctx.step("create-promise")? {
            Step::Replay(_) => lock(&self.ctx.journal).position(),
            Step::Live => {
                let next = lock(&self.ctx.journal).last_index() + 1;
                let id = PromiseId {
                    worker_id: worker.id.clone(),
                    oplog_idx: next,
                };
                let now = vow_store::now_millis();
                let spec = spec(now)?;
                hold_one_more(worker)?;
                let create = Write::CreatePromise {
                    key: persist::promise_key(&id),
                    at: now,
                    spec: spec.clone(),
                };
                let (index, _) = self.ctx.append(OplogEntry::CreatePromise, vec![create]);
                debug_assert_eq!(index, next);
                worker
                    .promises
                    .create_owned(id.clone(), now, spec, Arc::downgrade(worker))
                    .map_err(|e| trap(e.to_string()))?;
                tracing::debug!(promise = %id, "promise created");
                index
            }
        };
        Ok(promise_id_to_wit(&PromiseId {
            worker_id: worker.id.clone(),
            oplog_idx,
        }))
    }
}

/// Counts one more pending promise in `worker`'s, or traps when it holds
/// as many as the executor's `max_open_promises` allows.
fn hold_one_more(worker: &WorkerEntry) -> wasmtime::Result<()> {
    let limit = worker.run_env.max_open_promises;
    worker
        .open_promises
        .fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |held| (held < limit).then_some(held + 1),
        )
        .map(drop)
        .map_err(|held| {
            trap(format!(
                "creating a promise: worker {} holds {held} pending promises, the limit \
                 (--max-open-promises); settle or delete some first",
                worker.id
            ))
        })
}

impl Host for HostView<'_> {
    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.create-promise",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn create_promise(&mut self) -> wasmtime::Result<wit::PromiseId> {
        self.create_promise_with(|_| Ok(vow_store::PromiseSpec::default()))
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.await-promise",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&promise_id))
    )]
    async fn await_promise(&mut self, promise_id: wit::PromiseId) -> wasmtime::Result<Vec<u8>> {
        let id = promise_id_from_wit(promise_id);
        match self.ctx.step("await-promise")? {
            Step::Replay(OplogEntry::AwaitPromise { payload, .. }) => return Ok(payload),
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        match self.ctx.await_live(&id, "await-promise").await? {
            Ok(Ok(payload)) => {
                let data = payload.to_vec();
                self.ctx.record(OplogEntry::AwaitPromise {
                    promise: id,
                    payload: data.clone(),
                });
                Ok(data)
            }
            Ok(Err(error)) => Err(trap(format!(
                "await-promise: promise {id} {} (Golem's await-promise has no way to return an error: vow:host/promises.wait does)",
                crate::promise::describe(&error)
            ))),
            Err(AwaitError::NotFound) => Err(trap(format!(
                "await-promise: promise {id} not found (never created or deleted)"
            ))),
            Err(AwaitError::Deleted) => Err(trap(format!(
                "await-promise: promise {id} was deleted while awaited"
            ))),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.complete-promise",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&promise_id))
    )]
    async fn complete_promise(
        &mut self,
        promise_id: wit::PromiseId,
        data: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        let id = promise_id_from_wit(promise_id);
        match self.ctx.step("complete-promise")? {
            Step::Replay(OplogEntry::CompletePromise { completed, .. }) => return Ok(completed),
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let promises = self.ctx.worker.promises.clone();
        match promises.settle(id.clone(), Ok(Bytes::from(data))).await {
            Ok(completed) => {
                // The answer is durable before the guest sees it, so a replay
                // after a crash answers the same instead of asking again.
                self.ctx
                    .record_durably(
                        OplogEntry::CompletePromise {
                            promise: id,
                            completed,
                        },
                        Vec::new(),
                    )
                    .await?;
                Ok(completed)
            }
            Err(Error::PromiseNotFound(_)) => Err(trap(format!(
                "complete-promise: promise {id} not found (never created or deleted)"
            ))),
            Err(e) => Err(trap(format!("complete-promise: {e}"))),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.delete-promise",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&promise_id))
    )]
    fn delete_promise(&mut self, promise_id: wit::PromiseId) -> wasmtime::Result<()> {
        let id = promise_id_from_wit(promise_id);
        if let Step::Replay(_) = self.ctx.step("delete-promise")? {
            return Ok(());
        }
        drop(self.ctx.append(
            OplogEntry::DeletePromise {
                promise: id.clone(),
            },
            vec![Write::DeletePromise(persist::promise_key(&id))],
        ));
        self.ctx
            .worker
            .promises
            .delete(id)
            .map_err(|e| trap(e.to_string()))
    }

    #[tracing::instrument(
        level = "trace",
        name = "golem:api/host.get-oplog-index",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_oplog_index(&mut self) -> wasmtime::Result<u64> {
        Ok(lock(&self.ctx.journal).position())
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.set-oplog-index",
        skip_all,
        fields(worker = %self.ctx.worker.id, oplog_idx = oplog_idx)
    )]
    async fn set_oplog_index(&mut self, oplog_idx: u64) -> wasmtime::Result<()> {
        let (position, start) = {
            let journal = lock(&self.ctx.journal);
            (journal.position(), journal.invocation_start())
        };
        if oplog_idx == position {
            return Ok(());
        }
        if oplog_idx > position || oplog_idx < start {
            return Err(trap(format!(
                "set-oplog-index({oplog_idx}): a worker can only go back within its current \
                 invocation, to an index from {start} (its start) to {position} (now)"
            )));
        }
        // Going back is itself an entry, so a restart replays the same way;
        // it is durable before the guest is unwound.
        self.ctx
            .record_durably(OplogEntry::Jump { to: oplog_idx }, Vec::new())
            .await?;
        Err(wasmtime::Error::new(crate::run::Rewind { to: oplog_idx }))
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.oplog-commit",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    async fn oplog_commit(&mut self, replicas: u8) -> wasmtime::Result<()> {
        if let Step::Replay(_) = self.ctx.step("oplog-commit")? {
            return Ok(());
        }
        // One store, one replica: the entry is durable once its write (and
        // so every write before it) is committed.
        self.ctx
            .record_durably(OplogEntry::Commit { replicas }, Vec::new())
            .await?;
        Ok(())
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.mark-begin-operation",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn mark_begin_operation(&mut self) -> wasmtime::Result<u64> {
        match self.ctx.step("mark-begin-operation")? {
            Step::Replay(_) => Ok(lock(&self.ctx.journal).position()),
            Step::Live => Ok(self.ctx.record(OplogEntry::BeginAtomicRegion)),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.mark-end-operation",
        skip_all,
        fields(worker = %self.ctx.worker.id, begin = begin)
    )]
    fn mark_end_operation(&mut self, begin: u64) -> wasmtime::Result<()> {
        let position = lock(&self.ctx.journal).position();
        if begin == 0 || begin > position {
            return Err(trap(format!(
                "mark-end-operation({begin}): no atomic region begins at that index"
            )));
        }
        if let Step::Live = self.ctx.step("mark-end-operation")? {
            self.ctx.record(OplogEntry::EndAtomicRegion { begin });
        }
        Ok(())
    }

    #[tracing::instrument(
        level = "trace",
        name = "golem:api/host.get-retry-policy",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_retry_policy(&mut self) -> wasmtime::Result<RetryPolicy> {
        Ok(self.ctx.retry_policy)
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.set-retry-policy",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn set_retry_policy(&mut self, new_retry_policy: RetryPolicy) -> wasmtime::Result<()> {
        self.ctx.retry_policy = new_retry_policy;
        self.ctx.setting("retry-policy")
    }

    #[tracing::instrument(
        level = "trace",
        name = "golem:api/host.get-oplog-persistence-level",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_oplog_persistence_level(&mut self) -> wasmtime::Result<PersistenceLevel> {
        Ok(self.ctx.persistence)
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.set-oplog-persistence-level",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn set_oplog_persistence_level(
        &mut self,
        new_persistence_level: PersistenceLevel,
    ) -> wasmtime::Result<()> {
        self.ctx.persistence = new_persistence_level;
        self.ctx.setting("persistence-level")
    }

    #[tracing::instrument(
        level = "trace",
        name = "golem:api/host.get-idempotence-mode",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_idempotence_mode(&mut self) -> wasmtime::Result<bool> {
        Ok(self.ctx.idempotent)
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.set-idempotence-mode",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn set_idempotence_mode(&mut self, idempotent: bool) -> wasmtime::Result<()> {
        self.ctx.idempotent = idempotent;
        self.ctx.setting("idempotence-mode")
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.generate-idempotency-key",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn generate_idempotency_key(&mut self) -> wasmtime::Result<wit::Uuid> {
        let (high_bits, low_bits) = match self.ctx.step("generate-idempotency-key")? {
            Step::Replay(OplogEntry::IdempotencyKey { key }) => key,
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {
                let key = uuid::Uuid::new_v4().as_u64_pair();
                self.ctx.record(OplogEntry::IdempotencyKey { key });
                key
            }
        };
        Ok(wit::Uuid {
            high_bits,
            low_bits,
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.update-worker",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn update_worker(
        &mut self,
        worker_id: wit::WorkerId,
        target_version: u64,
        _mode: UpdateMode,
    ) -> wasmtime::Result<()> {
        let id = worker_id_from_wit(worker_id);
        Err(trap(format!(
            "update-worker({id}, version {target_version}) is not supported yet: \
             vow keeps one version per component"
        )))
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.get-self-metadata",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_self_metadata(&mut self) -> wasmtime::Result<wit::WorkerMetadata> {
        let worker = Arc::clone(&self.ctx.worker);
        let answer = self.ctx.metadata_read("get-self-metadata", || {
            Ok(vec![recorded_metadata(&worker.metadata())])
        })?;
        answer
            .first()
            .map(recorded_to_wit)
            .ok_or_else(|| trap("get-self-metadata: the recorded answer is empty".into()))
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.get-worker-metadata",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_worker_metadata(
        &mut self,
        worker_id: wit::WorkerId,
    ) -> wasmtime::Result<Option<wit::WorkerMetadata>> {
        let id = worker_id_from_wit(worker_id);
        let registry = self.ctx.registry()?;
        let answer = self.ctx.metadata_read("get-worker-metadata", || {
            // On a cluster node, another node's worker as last stored.
            Ok(registry
                .metadata(&id)
                .map(|m| recorded_metadata(&m))
                .into_iter()
                .collect())
        })?;
        Ok(answer.first().map(recorded_to_wit))
    }
}

impl GolemCtx {
    /// Records a change of `setting`, already applied.
    fn setting(&self, setting: &'static str) -> wasmtime::Result<()> {
        // Replay re-applies the setting too: the guest calls it again with
        // the same value, so only the entry is consumed.
        if let Step::Live = self.step("setting-changed")? {
            self.record(OplogEntry::SettingChanged {
                setting: setting.to_owned(),
                settings: Some(self.settings()),
            });
        }
        Ok(())
    }
}

impl HostGetWorkers for HostView<'_> {
    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.get-workers.new",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn new(
        &mut self,
        component_id: WitComponentId,
        filter: Option<wit::WorkerAnyFilter>,
        _precise: bool,
    ) -> wasmtime::Result<Resource<WorkerListing>> {
        let component = component_id_from_wit(component_id);
        let registry = self.ctx.registry()?;
        // The ids that match now are recorded; metadata is read (and
        // recorded) when each page is produced, so listings are as precise
        // as `precise = true` asks either way.
        let matched = self.ctx.metadata_read("get-workers", || {
            Ok(registry
                .all_metadata(Some(component))
                .into_iter()
                .filter(|m| filter.as_ref().is_none_or(|f| crate::filter::matches(f, m)))
                .map(|m| recorded_metadata(&m))
                .collect())
        })?;
        let remaining = matched.into_iter().map(|m| m.id).collect();
        Ok(self.table.push(WorkerListing { remaining })?)
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.get-workers.get-next",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn get_next(
        &mut self,
        listing: Resource<WorkerListing>,
    ) -> wasmtime::Result<Option<Vec<wit::WorkerMetadata>>> {
        let registry = self.ctx.registry()?;
        let listing = self.table.get_mut(&listing)?;
        if listing.remaining.is_empty() {
            return Ok(None);
        }
        let batch: Vec<WorkerId> = (0..PAGE_SIZE)
            .map_while(|_| listing.remaining.pop_front())
            .collect();
        let page = self.ctx.metadata_read("get-workers.get-next", || {
            // Workers deleted since the listing began are skipped.
            Ok(batch
                .iter()
                .filter_map(|id| registry.metadata(id))
                .map(|m| recorded_metadata(&m))
                .collect())
        })?;
        Ok(Some(page.iter().map(recorded_to_wit).collect()))
    }

    #[tracing::instrument(
        level = "debug",
        name = "golem:api/host.get-workers.drop",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn drop(&mut self, listing: Resource<WorkerListing>) -> wasmtime::Result<()> {
        self.table.delete(listing)?;
        Ok(())
    }
}

impl crate::bindings::golem::rpc::types::Host for HostView<'_> {}
