//! `vow:host/promises`: rejection, promise options, and waiting on one or
//! several promises for their settlement.
//!
//! The calls follow the journal the way Golem's do: in replay each one
//! answers from its recorded entry; live it acts and records its answer.
//! A rejection is recorded durably before the guest hears of it, as a
//! completion is, so replay after a crash answers the same.

use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt as _;
use vow_store::Write;

use super::{HostView, Step, promise_id_from_wit, promise_id_to_wit, trap};
use crate::bindings::golem::api::host::PromiseId as WitPromiseId;
use crate::bindings::vow::host::promises::{
    self as wit, Error as WitError, ErrorKind as WitErrorKind, Host, PromiseOptions as WitOptions,
};
use crate::ids::PromiseId;
use crate::journal::lock;
use crate::oplog::{OplogEntry, StoredSettlement};
use crate::persist;
use crate::promise::{Answer, AwaitError, ErrorKind, PromiseError, PromiseOptions, Settlement};

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

fn options_from_wit(options: WitOptions) -> PromiseOptions {
    PromiseOptions {
        timeout: options.timeout_ms.map(Duration::from_millis),
        retention: options.retention_ms.map(Duration::from_millis),
    }
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
    fn create(&mut self, options: WitOptions) -> wasmtime::Result<WitPromiseId> {
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
                let spec = options_from_wit(options).spec(now);
                let create = Write::CreatePromise {
                    key: persist::promise_key(&id),
                    at: now,
                    spec: spec.clone(),
                };
                let (index, _) = self.ctx.append(OplogEntry::CreatePromise, vec![create]);
                worker
                    .promises
                    .create(id.clone(), now, spec)
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
