//! `vow:host/promises`: rejection, promise options, and waiting on one or
//! several promises for their settlement.
//!
//! The calls follow the journal the way Golem's do: in replay each one
//! answers from its recorded entry; live it acts and records its answer.
//! A rejection is recorded durably before the guest hears of it, as a
//! completion is, so replay after a crash answers the same.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use vow_store::Write;
use wasmtime::component::Resource;

use super::{
    HostView, Step, component_id_from_wit, promise_field, promise_id_from_wit, promise_id_to_wit,
    trap,
};
use crate::bindings::golem::api::host::PromiseId as WitPromiseId;
use crate::bindings::vow::host::promises::{
    self as wit, Error as WitError, ErrorKind as WitErrorKind, Host, PromiseOptions as WitOptions,
    Target,
};
use crate::compose::{self, ReactionSpec};
use crate::ids::PromiseId;
use crate::journal::lock;
use crate::links::{CompletionLink, LinkAction, LinkRequest};
use crate::oplog::{ComposeCall, OplogEntry, StoredSettlement};
use crate::persist;
use crate::promise::{
    Answer, AwaitError, ErrorKind, PromiseError, PromiseOptions, PromiseStatus, Settlement,
};
use crate::worker::WorkerEntry;

fn error_to_wit(error: PromiseError) -> WitError {
    WitError {
        kind: match error.kind {
            ErrorKind::Rejected => WitErrorKind::Rejected,
            ErrorKind::TimedOut => WitErrorKind::TimedOut,
            ErrorKind::Failed => WitErrorKind::Failed,
        },
        message: error.message,
        data: error.data,
    }
}

fn stored(settlement: Settlement) -> StoredSettlement {
    settlement.map(|data| data.to_vec())
}

fn to_wit(settlement: StoredSettlement) -> wit::Settlement {
    settlement.map_err(error_to_wit)
}

/// The options a guest gave; the error says why its payload type is not a
/// WIT type.
fn options_from_wit(options: WitOptions) -> Result<PromiseOptions, String> {
    let payload_type = options
        .payload_type
        .map(|text| {
            vow_payload_type::PayloadType::parse(&text)
                .map_err(|e| format!("payload-type {text:?} is not a WIT type: {e}"))
        })
        .transpose()?;
    Ok(PromiseOptions {
        timeout: options.timeout_ms.map(Duration::from_millis),
        retention: options.retention_ms.map(Duration::from_millis),
        payload_type,
    })
}

/// The settlement in an await's answer, or the trap for a promise that is
/// not there.
fn settled(function: &str, id: &PromiseId, answer: Answer) -> wasmtime::Result<Settlement> {
    match answer {
        Ok(settlement) => Ok(settlement),
        Err(AwaitError::NotFound) => Err(trap(format!(
            "{function}: promise {id} not found (never created or deleted)"
        ))),
        Err(AwaitError::Deleted) => Err(trap(format!(
            "{function}: promise {id} was deleted while awaited"
        ))),
    }
}

type Waiting = Pin<Box<dyn std::future::Future<Output = (usize, Answer)> + Send>>;

impl HostView<'_> {
    /// The deadline of a wait with a timeout: computed live, read back in
    /// replay, so a worker that comes back waits until the same moment.
    fn wait_deadline(&mut self, timeout_ms: Option<u64>) -> wasmtime::Result<Option<u64>> {
        let Some(timeout) = timeout_ms else {
            return Ok(None);
        };
        match self.ctx.step("wait-deadline")? {
            Step::Replay(OplogEntry::WaitDeadline { at }) => Ok(Some(at)),
            Step::Replay(other) => Err(self.ctx.unexpected(&other)),
            Step::Live => {
                let at = vow_store::now_millis().saturating_add(timeout);
                self.ctx.record(OplogEntry::WaitDeadline { at });
                Ok(Some(at))
            }
        }
    }

    /// Subscribes to every promise of `ids`, each answer tagged with its
    /// position.
    fn subscribe_all(&self, function: &str, ids: &[PromiseId]) -> wasmtime::Result<Vec<Waiting>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let rx = self
                    .ctx
                    .worker
                    .promises
                    .subscribe(id.clone())
                    .map_err(|e| trap(format!("{function}: {e}")))?;
                let waiting: Waiting = Box::pin(
                    rx.map(move |answer| (i, answer.unwrap_or(Err(AwaitError::NotFound)))),
                );
                Ok(waiting)
            })
            .collect()
    }

    /// Marks the worker suspended while it waits on several promises. It
    /// stays in memory (eviction follows one awaited promise), and comes
    /// back by replay after a restart like any worker in an invocation.
    fn suspend(&self) {
        self.ctx
            .worker
            .set_status(crate::worker::WorkerStatus::Suspended);
        self.ctx.worker.persist_state();
    }

    fn resume(&self) {
        self.ctx
            .worker
            .set_status(crate::worker::WorkerStatus::Running);
        self.ctx.worker.persist_state();
    }
}

/// A link to one of `worker`'s own pending promises, or why not.
async fn mint_link(
    worker: Arc<WorkerEntry>,
    id: &PromiseId,
    action: wit::LinkAction,
    expires_in_ms: Option<u64>,
) -> wasmtime::Result<Result<CompletionLink, String>> {
    if id.worker_id != worker.id {
        return Ok(Err(format!(
            "promise {id} belongs to another worker: a worker mints links only for its own promises"
        )));
    }
    let found = worker
        .promises
        .get(id.clone())
        .await
        .map_err(|e| trap(format!("link: {e}")))?;
    let Some((info, _)) = found else {
        return Ok(Err(format!(
            "promise {id} not found (never created or deleted)"
        )));
    };
    if info.status != PromiseStatus::Pending {
        return Ok(Err(format!("promise {id} is already settled")));
    }
    if info.composed {
        return Ok(Err(format!(
            "promise {id} is settled by the runtime (when, then, all or any): a link could not complete it"
        )));
    }
    let request = LinkRequest {
        expires_in: expires_in_ms.map(Duration::from_millis),
        action: match action {
            wit::LinkAction::Complete => LinkAction::Complete,
            wit::LinkAction::Reject => LinkAction::Reject,
            wit::LinkAction::Both => LinkAction::Both,
        },
    };
    Ok(worker
        .run_env
        .links
        .mint(id, request, vow_store::now_millis())
        .map_err(|e| e.to_string()))
}

/// What a composing call starts once its entry is stored.
enum Composed {
    /// A worker to start (`when`).
    Worker(Box<compose::Spawned>),
    /// A reaction to register (`then`, `all`, `any`).
    Reaction(Vec<PromiseId>, ReactionSpec),
    /// Nothing: the call was made before at this place of the log, and
    /// what it started exists (a crash inside an atomic region runs it
    /// again).
    Nothing,
}

impl HostView<'_> {
    /// `when`, `then`, `all` and `any`: the promise they make has the index
    /// of their entry. `plan` checks the call and gives the writes that go
    /// with the entry (the promise's creation is added here) and what to
    /// start; its error is the guest's.
    fn compose(
        &mut self,
        call: ComposeCall,
        options: WitOptions,
        plan: impl FnOnce(&Self, &PromiseId) -> Result<(Vec<Write>, Composed), String>,
    ) -> wasmtime::Result<Result<WitPromiseId, String>> {
        let worker = std::sync::Arc::clone(&self.ctx.worker);
        match self.ctx.step(call.name())? {
            Step::Replay(OplogEntry::Compose { error: Some(e), .. }) => return Ok(Err(e)),
            Step::Replay(OplogEntry::Compose { .. }) => {
                let oplog_idx = lock(&self.ctx.journal).position();
                return Ok(Ok(promise_id_to_wit(&PromiseId {
                    worker_id: worker.id.clone(),
                    oplog_idx,
                })));
            }
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let id = PromiseId {
            worker_id: worker.id.clone(),
            oplog_idx: lock(&self.ctx.journal).last_index() + 1,
        };
        let planned = options_from_wit(options)
            .and_then(|options| plan(self, &id).map(|planned| (options, planned)));
        let (options, (mut writes, composed)) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                self.ctx.record(OplogEntry::Compose {
                    call,
                    error: Some(error.clone()),
                });
                return Ok(Err(error));
            }
        };
        let now = vow_store::now_millis();
        let spec = options.spec(now, true);
        writes.insert(
            0,
            Write::CreatePromise {
                key: persist::promise_key(&id),
                at: now,
                spec: spec.clone(),
            },
        );
        let (index, durable) = self
            .ctx
            .append(OplogEntry::Compose { call, error: None }, writes);
        debug_assert_eq!(index, id.oplog_idx);
        worker
            .promises
            .create(id.clone(), now, spec)
            .map_err(|e| trap(e.to_string()))?;
        match composed {
            Composed::Worker(spawned) => {
                // Started once its batch is durable: see
                // `compose::store_and_start`.
                let spawner = worker.spawner.clone();
                tokio::spawn(async move {
                    match durable.await {
                        Ok(_) => spawner.activate(*spawned),
                        Err(error) => {
                            tracing::error!(%error, "storing a when failed; its worker was not started")
                        }
                    }
                });
            }
            Composed::Reaction(sources, spec) => {
                drop(durable);
                worker
                    .promises
                    .react(id.clone(), sources, spec)
                    .map_err(|e| trap(e.to_string()))?;
            }
            Composed::Nothing => drop(durable),
        }
        tracing::debug!(promise = %id, call = call.name(), "promise composed");
        Ok(Ok(promise_id_to_wit(&id)))
    }

    /// The name of the worker that settles `id`, and whether it exists
    /// already (the call was made before at this place of the log).
    fn worker_for(
        &self,
        kind: &str,
        id: &PromiseId,
        component: crate::ids::ComponentId,
    ) -> wasmtime::Result<(String, bool)> {
        let salt = self
            .ctx
            .worker
            .created_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let name = compose::worker_name(kind, id, salt);
        let registry = self.ctx.registry()?;
        let worker = crate::ids::WorkerId::new(component, name.clone());
        let exists = registry.get(&worker).is_some();
        if !exists {
            // The worker limits hold for workers a guest starts too; the
            // refusal is the guest's error, recorded with the call.
            registry
                .has_room(&worker)
                .map_err(|e| trap(e.to_string()))?;
        }
        Ok((name, exists))
    }

    /// The handler `target` names, checked for `when` or `then`.
    fn handler(&self, target: Target, then: bool) -> Result<compose::Handler, String> {
        let component = match target.component {
            Some(id) => component_id_from_wit(id),
            None => self.ctx.worker.id.component_id,
        };
        let loaded = compose::component(&self.ctx.worker.components, component)
            .ok_or_else(|| format!("component {component} not found"))?;
        compose::handler(&loaded, &target.function, then)
    }
}

/// The store's record of a reaction made now.
fn reaction(target: &PromiseId, sources: &[PromiseId], spec: &ReactionSpec) -> Write {
    Write::PutReaction(vow_store::ReactionRecord {
        target: persist::promise_key(target),
        sources: sources.iter().map(persist::promise_key).collect(),
        spec: persist::encode(spec),
        created_at: vow_store::now_millis(),
    })
}

/// Sleeps until `deadline` (milliseconds since the epoch); forever if none.
async fn until(deadline: Option<u64>) {
    match deadline {
        Some(at) => {
            let wait = at.saturating_sub(vow_store::now_millis());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

impl Host for HostView<'_> {
    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.when",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn when(
        &mut self,
        target: Target,
        input: Vec<u8>,
        options: WitOptions,
    ) -> wasmtime::Result<Result<WitPromiseId, String>> {
        self.compose(ComposeCall::When, options, |host, id| {
            let handler = host.handler(target, false)?;
            let (name, exists) = host
                .worker_for("when", id, handler.component)
                .map_err(|e| e.to_string())?;
            if exists {
                return Ok((Vec::new(), Composed::Nothing));
            }
            let (spawned, writes) =
                compose::spawn(&handler, name, &[compose::bytes_val(&input)], id)
                    .map_err(|e| e.to_string())?;
            Ok((writes, Composed::Worker(Box::new(spawned))))
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.then",
        skip_all,
        fields(worker = %self.ctx.worker.id, source = %promise_field(&source))
    )]
    fn then(
        &mut self,
        source: WitPromiseId,
        target: Target,
        options: WitOptions,
    ) -> wasmtime::Result<Result<WitPromiseId, String>> {
        let source = promise_id_from_wit(source);
        self.compose(ComposeCall::Then, options, |host, id| {
            let mut handler = host.handler(target, true)?;
            let (name, exists) = host
                .worker_for("then", id, handler.component)
                .map_err(|e| e.to_string())?;
            if exists {
                return Ok((Vec::new(), Composed::Nothing));
            }
            handler.worker = Some(name);
            let spec = ReactionSpec::Then(handler);
            let sources = vec![source];
            Ok((
                vec![reaction(id, &sources, &spec)],
                Composed::Reaction(sources, spec),
            ))
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.all",
        skip_all,
        fields(worker = %self.ctx.worker.id, promises = ids.len())
    )]
    fn all(
        &mut self,
        ids: Vec<WitPromiseId>,
        options: WitOptions,
    ) -> wasmtime::Result<Result<WitPromiseId, String>> {
        let sources: Vec<PromiseId> = ids.into_iter().map(promise_id_from_wit).collect();
        let typed = options.payload_type.is_some();
        self.compose(ComposeCall::All, options, |_, id| {
            if typed {
                return Err("all takes no payload-type: its payload is the joined payloads (declare types on its promises)".to_owned());
            }
            let spec = ReactionSpec::All;
            Ok((
                vec![reaction(id, &sources, &spec)],
                Composed::Reaction(sources, spec),
            ))
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.any",
        skip_all,
        fields(worker = %self.ctx.worker.id, promises = ids.len())
    )]
    fn any(
        &mut self,
        ids: Vec<WitPromiseId>,
        options: WitOptions,
    ) -> wasmtime::Result<Result<WitPromiseId, String>> {
        let sources: Vec<PromiseId> = ids.into_iter().map(promise_id_from_wit).collect();
        self.compose(ComposeCall::Any, options, |_, id| {
            if sources.is_empty() {
                return Err("any needs at least one promise".to_owned());
            }
            let spec = ReactionSpec::Any;
            Ok((
                vec![reaction(id, &sources, &spec)],
                Composed::Reaction(sources, spec),
            ))
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.subscribe",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&id))
    )]
    fn subscribe(
        &mut self,
        id: WitPromiseId,
    ) -> wasmtime::Result<Resource<wasmtime_wasi::p2::DynPollable>> {
        let id = promise_id_from_wit(id);
        let rx = self
            .ctx
            .worker
            .promises
            .subscribe(id)
            .map_err(super::poll::cannot_subscribe)?;
        let ready = self
            .table
            .push(super::poll::PromiseReady::new(rx))
            .map_err(super::poll::cannot_subscribe)?;
        wasmtime_wasi::p2::subscribe(self.table, ready).map_err(super::poll::cannot_subscribe)
    }

    #[tracing::instrument(
        level = "trace",
        name = "vow:host/promises.current",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn current(&mut self) -> wasmtime::Result<Option<WitPromiseId>> {
        Ok(self.ctx.current.as_ref().map(promise_id_to_wit))
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.create",
        skip_all,
        fields(worker = %self.ctx.worker.id)
    )]
    fn create(&mut self, options: WitOptions) -> wasmtime::Result<WitPromiseId> {
        self.create_promise_with(|now| {
            let options = options_from_wit(options).map_err(|e| trap(format!("create: {e}")))?;
            Ok(options.spec(now, false))
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.reject",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&id))
    )]
    async fn reject(
        &mut self,
        id: WitPromiseId,
        message: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        let id = promise_id_from_wit(id);
        match self.ctx.step("reject-promise")? {
            Step::Replay(OplogEntry::RejectPromise { rejected, .. }) => return Ok(rejected),
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let error = PromiseError {
            kind: ErrorKind::Rejected,
            message,
            data,
        };
        let promises = self.ctx.worker.promises.clone();
        match promises.settle(id.clone(), Err(error)).await {
            Ok(rejected) => {
                self.ctx
                    .record_durably(
                        OplogEntry::RejectPromise {
                            promise: id,
                            rejected,
                        },
                        Vec::new(),
                    )
                    .await?;
                Ok(rejected)
            }
            Err(crate::error::Error::PromiseNotFound(_)) => Err(trap(format!(
                "reject: promise {id} not found (never created or deleted)"
            ))),
            Err(e) => Err(trap(format!("reject: {e}"))),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.wait",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&id))
    )]
    async fn wait(&mut self, id: WitPromiseId) -> wasmtime::Result<wit::Settlement> {
        let id = promise_id_from_wit(id);
        match self.ctx.step("await-settlement")? {
            Step::Replay(OplogEntry::AwaitSettlement { settlement, .. }) => {
                return Ok(to_wit(settlement));
            }
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let answer = self.ctx.await_live(&id, "wait").await?;
        let settlement = stored(settled("wait", &id, answer)?);
        self.ctx.record(OplogEntry::AwaitSettlement {
            promise: id,
            settlement: settlement.clone(),
        });
        Ok(to_wit(settlement))
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.link",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&id))
    )]
    async fn link(
        &mut self,
        id: WitPromiseId,
        action: wit::LinkAction,
        expires_in_ms: Option<u64>,
    ) -> wasmtime::Result<Result<wit::CompletionLink, String>> {
        let id = promise_id_from_wit(id);
        let answer = match self.ctx.step("mint-link")? {
            Step::Replay(OplogEntry::MintLink { answer, .. }) => answer,
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {
                let worker = Arc::clone(&self.ctx.worker);
                let answer = mint_link(worker, &id, action, expires_in_ms).await?;
                self.ctx.record(OplogEntry::MintLink {
                    promise: id,
                    answer: answer.clone(),
                });
                answer
            }
        };
        Ok(answer.map(|link| wit::CompletionLink {
            token: link.token,
            url: link.url,
            action: match link.action {
                LinkAction::Complete => wit::LinkAction::Complete,
                LinkAction::Reject => wit::LinkAction::Reject,
                LinkAction::Both => wit::LinkAction::Both,
            },
            expires_at_ms: link.expires_at,
        }))
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.poll",
        skip_all,
        fields(worker = %self.ctx.worker.id, promise = %promise_field(&id))
    )]
    async fn poll(&mut self, id: WitPromiseId) -> wasmtime::Result<Option<wit::Settlement>> {
        let id = promise_id_from_wit(id);
        match self.ctx.step("poll-promise")? {
            Step::Replay(OplogEntry::PollPromise { settlement, .. }) => {
                return Ok(settlement.map(to_wit));
            }
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let found = self
            .ctx
            .worker
            .promises
            .get(id.clone())
            .await
            .map_err(|e| trap(format!("poll: {e}")))?;
        let Some((_, settlement)) = found else {
            return Err(trap(format!(
                "poll: promise {id} not found (never created or deleted)"
            )));
        };
        let settlement = settlement.map(stored);
        self.ctx.record(OplogEntry::PollPromise {
            promise: id,
            settlement: settlement.clone(),
        });
        Ok(settlement.map(to_wit))
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.wait-any",
        skip_all,
        fields(worker = %self.ctx.worker.id, promises = ids.len(), timeout_ms = timeout_ms)
    )]
    async fn wait_any(
        &mut self,
        ids: Vec<WitPromiseId>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<(u32, wit::Settlement)>> {
        if ids.is_empty() {
            return Err(trap("wait-any: no promises to wait on".to_owned()));
        }
        let ids: Vec<PromiseId> = ids.into_iter().map(promise_id_from_wit).collect();
        let deadline = self.wait_deadline(timeout_ms)?;
        match self.ctx.step("wait-any")? {
            Step::Replay(OplogEntry::WaitAny { answer, .. }) => {
                return Ok(answer.map(|(i, s)| (i, to_wit(s))));
            }
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let mut waiting = self.subscribe_all("wait-any", &ids)?;
        // Settled already: the lowest position wins.
        let ready = waiting.iter_mut().find_map(|w| w.as_mut().now_or_never());
        let first = match ready {
            Some(first) => Some(first),
            None => {
                self.suspend();
                let first = tokio::select! {
                    (first, _, _) = futures::future::select_all(waiting) => Some(first),
                    () = until(deadline) => None,
                };
                self.resume();
                first
            }
        };
        let answer = match first {
            Some((i, answer)) => {
                let settlement = stored(settled("wait-any", &ids[i], answer)?);
                // At most u32::MAX promises fit in a guest's list.
                Some((i as u32, settlement))
            }
            None => None,
        };
        self.ctx.record(OplogEntry::WaitAny {
            promises: ids,
            answer: answer.clone(),
        });
        Ok(answer.map(|(i, s)| (i, to_wit(s))))
    }

    #[tracing::instrument(
        level = "debug",
        name = "vow:host/promises.wait-all",
        skip_all,
        fields(worker = %self.ctx.worker.id, promises = ids.len(), timeout_ms = timeout_ms)
    )]
    async fn wait_all(
        &mut self,
        ids: Vec<WitPromiseId>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<wit::Settlement>>> {
        let ids: Vec<PromiseId> = ids.into_iter().map(promise_id_from_wit).collect();
        let deadline = self.wait_deadline(timeout_ms)?;
        match self.ctx.step("wait-all")? {
            Step::Replay(OplogEntry::WaitAll { answer, .. }) => {
                return Ok(answer.map(|all| all.into_iter().map(to_wit).collect()));
            }
            Step::Replay(other) => return Err(self.ctx.unexpected(&other)),
            Step::Live => {}
        }
        let waiting = self.subscribe_all("wait-all", &ids)?;
        let mut all = futures::future::join_all(waiting);
        let answers = match (&mut all).now_or_never() {
            Some(answers) => Some(answers),
            None => {
                self.suspend();
                let answers = tokio::select! {
                    answers = all => Some(answers),
                    () = until(deadline) => None,
                };
                self.resume();
                answers
            }
        };
        let answer = match answers {
            Some(answers) => Some(
                answers
                    .into_iter()
                    .map(|(i, answer)| settled("wait-all", &ids[i], answer).map(stored))
                    .collect::<wasmtime::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        self.ctx.record(OplogEntry::WaitAll {
            promises: ids,
            answer: answer.clone(),
        });
        Ok(answer.map(|all| all.into_iter().map(to_wit).collect()))
    }
}
