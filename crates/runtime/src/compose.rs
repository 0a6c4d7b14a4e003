//! Promises settled by work in new workers (`when`, `then`) and by the
//! host combining other promises (`all`, `any`).
//!
//! A `when` or a fired `then` starts a fresh worker whose one invocation
//! settles the promise: its worker record, its queued invocation (which
//! names the promise it settles) and, for `then`, the deletion of the
//! reaction go to the store in one batch, so the work is started exactly
//! once, and the invocation's end settles the promise in the same batch as
//! its result (see `run::finish`). The worker is then brought to life the
//! way recovery brings a stored one: by the executor's [`Spawner`] task.
//!
//! Exports that settle promises take the payload (`list<u8>`), or for
//! `then` the whole settlement (`result<list<u8>, error>`), and give back:
//!
//! | result | settles the promise with |
//! |---|---|
//! | `list<u8>` | that payload |
//! | `result<list<u8>, string>` | the payload, or a rejection with that message |
//! | `result<list<u8>, error>` | the payload, or that error |
//! | nothing | nothing: it stays pending, for the function (or whoever it hands the id to, see `current`) to settle later |
//!
//! A trap rejects the promise with kind `failed` and the trap's message.
//! A `then` handler that takes only the payload is not run when its source
//! was rejected: the rejection passes to its promise unchanged, so it flows
//! down a chain to the first handler that takes the error.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use vow_store::{InvocationRecord, InvocationState, WorkerKey, WorkerRecord, WorkerState, Write};

use crate::component::LoadedComponent;
use crate::ids::{ComponentId, PromiseId};
use crate::oplog::OplogEntry;
use crate::persist;
use crate::promise::{ErrorKind, PromiseError, Settlement};

/// The components the executor has loaded, shared with host calls that
/// start work in other components.
pub(crate) type Components = Arc<RwLock<HashMap<ComponentId, Arc<LoadedComponent>>>>;

/// A loaded component by id.
pub(crate) fn component(components: &Components, id: ComponentId) -> Option<Arc<LoadedComponent>> {
    components
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
}

/// A worker `when` or `then` stores, with its one invocation: what the
/// executor needs to start it without reading it back.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) record: WorkerRecord,
    pub(crate) invocation: InvocationRecord,
    /// The insecure seed of its creation entry.
    pub(crate) seed: (u64, u64),
    /// The promise its invocation settles.
    pub(crate) settles: PromiseId,
}

/// Hands workers whose records are being stored to the executor, which
/// instantiates them and runs their queued invocation.
#[derive(Clone, Debug)]
pub(crate) struct Spawner(mpsc::UnboundedSender<Spawned>);

impl Spawner {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Spawned>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Starts a worker whose batch is stored.
    pub(crate) fn activate(&self, spawned: Spawned) {
        if self.0.send(spawned).is_err() {
            tracing::debug!("the executor shut down before a spawned worker started");
        }
    }
}

/// Stores `writes` and then starts `spawned`. The worker starts only once
/// its batch is durable: a batch the store refuses (a full disk) must not
/// leave a worker running that the store does not know, whose work would
/// run again when what its batch deleted (a reaction) fires after a
/// restart. A refused batch is logged, and recovery starts from what the
/// store kept.
pub(crate) fn store_and_start(
    storage: &vow_store::SharedStorage,
    spawner: &Spawner,
    writes: Vec<Write>,
    spawned: Spawned,
) {
    let write = storage.write(writes);
    let spawner = spawner.clone();
    tokio::spawn(async move {
        match write.await {
            Ok(_) => spawner.activate(spawned),
            Err(error) => {
                tracing::error!(%error, "storing a spawned worker failed; it was not started")
            }
        }
    });
}

/// What a handler takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Takes {
    /// The payload: `func(input: list<u8>)`.
    Payload,
    /// The settlement: `func(settled: result<list<u8>, error>)`.
    Settlement,
}

/// An export that settles a promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handler {
    pub(crate) component: ComponentId,
    pub(crate) function: String,
    pub(crate) takes: Takes,
    /// The name of the worker to run in, when it was chosen in advance (a
    /// `then` made from outside, whose promise belongs to that worker);
    /// derived from the promise otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) worker: Option<String>,
}

/// What a reaction does once its sources settle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ReactionSpec {
    /// Run the handler in a new worker with the source's settlement.
    Then(Handler),
    /// Fulfil with every payload once all are fulfilled; reject with the
    /// first rejection.
    All,
    /// Fulfil with the first payload; reject once all are rejected.
    Any,
}

fn is_bytes(ty: &Type) -> bool {
    matches!(ty, Type::List(list) if list.ty() == Type::U8)
}

/// Whether `ty` is `vow:host/promises`' `error` record (structurally).
fn is_error(ty: &Type) -> bool {
    let Type::Record(record) = ty else {
        return false;
    };
    let fields: Vec<_> = record.fields().collect();
    matches!(fields.as_slice(), [kind, message, data]
        if kind.name == "kind" && matches!(&kind.ty, Type::Enum(e)
            if e.names().eq(["rejected", "timed-out", "failed"]))
        && message.name == "message" && message.ty == Type::String
        && data.name == "data" && is_bytes(&data.ty))
}

fn is_settlement(ty: &Type) -> bool {
    matches!(ty, Type::Result(result)
        if result.ok().as_ref().is_some_and(is_bytes)
        && result.err().as_ref().is_some_and(is_error))
}

/// Whether the export's results settle a promise (see the module docs).
fn settles(results: &[Type]) -> bool {
    match results {
        [] => true,
        [ty] if is_bytes(ty) => true,
        [Type::Result(result)] => {
            result.ok().as_ref().is_some_and(is_bytes)
                && result
                    .err()
                    .as_ref()
                    .is_some_and(|e| *e == Type::String || is_error(e))
        }
        _ => false,
    }
}

const SHAPES: &str =
    "its result must be list<u8>, result<list<u8>, string>, result<list<u8>, error> or nothing";

/// Checks that `function` of `component` can settle a promise for `when`
/// (`then == false`: it takes the payload) or `then` (the payload or the
/// settlement); the error says what is wrong, for the guest.
pub(crate) fn handler(
    component: &LoadedComponent,
    function: &str,
    then: bool,
) -> std::result::Result<Handler, String> {
    let id = component.info.id;
    let export = component
        .export(function)
        .ok_or_else(|| format!("component {id} has no export named {function:?}"))?;
    let params: Vec<Type> = export.ty.params().map(|(_, t)| t).collect();
    let results: Vec<Type> = export.ty.results().collect();
    let takes = match params.as_slice() {
        [ty] if is_bytes(ty) => Takes::Payload,
        [ty] if then && is_settlement(ty) => Takes::Settlement,
        _ => {
            let wanted = if then {
                "one parameter, list<u8> (the payload) or result<list<u8>, error> (the settlement)"
            } else {
                "one parameter, list<u8> (the input)"
            };
            return Err(format!(
                "{function} of component {id} cannot settle a promise: it must take {wanted}"
            ));
        }
    };
    if !settles(&results) {
        return Err(format!(
            "{function} of component {id} cannot settle a promise: {SHAPES}"
        ));
    }
    Ok(Handler {
        component: id,
        function: export.name.clone(),
        takes,
        worker: None,
    })
}

/// The name of the worker that settles `promise` (`when-…` or `then-…`):
/// derived from the promise and `salt` (the creation time of the worker
/// that made it, so a worker deleted and made again under the same name
/// gets workers of its own), so a call made again at the same place of the
/// same log (replay, or after a crash in an atomic region) names the same
/// worker and finds it instead of starting another.
pub(crate) fn worker_name(kind: &str, promise: &PromiseId, salt: u64) -> String {
    let digest = Sha256::digest(format!("{promise}@{salt}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}-{hex}")
}

/// The writes that create a worker of the handler's component with one
/// queued invocation of it, with `params`, that settles `settles`; and what
/// to hand the [`Spawner`].
pub(crate) fn spawn(
    handler: &Handler,
    name: String,
    params: &[Val],
    settles: &PromiseId,
) -> crate::error::Result<(Spawned, Vec<Write>)> {
    let now = vow_store::now_millis();
    let key = WorkerKey {
        component: handler.component.0,
        name,
    };
    let record = WorkerRecord {
        key: key.clone(),
        args: Vec::new(),
        env: Vec::new(),
        created_at: now,
        state: WorkerState {
            status: "idle".to_owned(),
            last_error: None,
            awaiting: None,
        },
    };
    let request = persist::encode(&persist::Request {
        function: handler.function.clone(),
        params: persist::to_wave(params)?,
        settles: Some(settles.clone()),
        trace_parent: None,
    });
    let invocation = InvocationRecord {
        worker: key,
        seq: 1,
        idempotency_key: None,
        request,
        state: InvocationState::Queued,
        accepted_at: now,
    };
    let seed = uuid::Uuid::new_v4().as_u64_pair();
    let create = OplogEntry::Create {
        args: Vec::new(),
        env: Vec::new(),
        insecure_seed: seed,
    };
    let log = Write::AppendOplog {
        worker: record.key.clone(),
        records: vec![vow_store::OplogRecord {
            index: 1,
            at: now,
            entry: create.encode().into(),
        }],
    };
    let writes = vec![
        Write::CreateWorker(record.clone()),
        log,
        Write::Enqueue(invocation.clone()),
    ];
    Ok((
        Spawned {
            record,
            invocation,
            seed,
            settles: settles.clone(),
        },
        writes,
    ))
}

/// `bytes` as a `list<u8>` value.
pub(crate) fn bytes_val(bytes: &[u8]) -> Val {
    Val::List(bytes.iter().map(|b| Val::U8(*b)).collect())
}

fn bytes_of(val: &Val) -> Option<Vec<u8>> {
    match val {
        Val::List(items) => items
            .iter()
            .map(|v| match v {
                Val::U8(b) => Some(*b),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A settlement as the `result<list<u8>, error>` value handlers take.
pub(crate) fn settlement_val(settlement: &Settlement) -> Val {
    match settlement {
        Ok(data) => Val::Result(Ok(Some(Box::new(bytes_val(data))))),
        Err(error) => {
            let kind = match error.kind {
                ErrorKind::Rejected => "rejected",
                ErrorKind::TimedOut => "timed-out",
                ErrorKind::Failed => "failed",
            };
            Val::Result(Err(Some(Box::new(Val::Record(vec![
                ("kind".to_owned(), Val::Enum(kind.to_owned())),
                ("message".to_owned(), Val::String(error.message.clone())),
                ("data".to_owned(), bytes_val(&error.data)),
            ])))))
        }
    }
}

fn error_of(val: &Val) -> Option<PromiseError> {
    let Val::Record(fields) = val else {
        return None;
    };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let kind = match get("kind")? {
        Val::Enum(kind) => match kind.as_str() {
            "timed-out" => ErrorKind::TimedOut,
            "failed" => ErrorKind::Failed,
            _ => ErrorKind::Rejected,
        },
        _ => return None,
    };
    let Val::String(message) = get("message")? else {
        return None;
    };
    Some(PromiseError {
        kind,
        message: message.clone(),
        data: bytes_of(get("data")?)?,
    })
}

/// How the outcome of an invocation that settles a promise settles it;
/// `None` when the function returned nothing (it settles it later).
pub(crate) fn settlement_of(
    function: &str,
    outcome: &crate::error::Result<Vec<Val>>,
) -> Option<Settlement> {
    let values = match outcome {
        Ok(values) => values,
        Err(error) => {
            return Some(Err(PromiseError {
                kind: ErrorKind::Failed,
                message: error.to_string(),
                data: Vec::new(),
            }));
        }
    };
    let odd = |val: &Val| {
        Err(PromiseError {
            kind: ErrorKind::Failed,
            message: format!(
                "{function} returned {}, which does not settle a promise",
                persist::to_wave(std::slice::from_ref(val))
                    .ok()
                    .and_then(|w| w.into_iter().next())
                    .unwrap_or_default()
            ),
            data: Vec::new(),
        })
    };
    Some(match values.as_slice() {
        [] => return None,
        [Val::Result(Ok(payload))] => match payload.as_deref().map(bytes_of) {
            None => Ok(Bytes::new()),
            Some(Some(bytes)) => Ok(bytes.into()),
            Some(None) => return Some(odd(&values[0])),
        },
        [Val::Result(Err(error))] => match error.as_deref() {
            Some(Val::String(message)) => Err(PromiseError::rejected(message.clone())),
            Some(record) => match error_of(record) {
                Some(error) => Err(error),
                None => odd(&values[0]),
            },
            None => Err(PromiseError::rejected(format!(
                "{function} returned an error"
            ))),
        },
        [val] => match bytes_of(val) {
            Some(bytes) => Ok(bytes.into()),
            None => odd(val),
        },
        [first, ..] => odd(first),
    })
}

/// An `all` promise's payload: every input's payload in order, each as its
/// length (4 bytes, little-endian) and its bytes.
pub(crate) fn encode_all(payloads: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(payloads.iter().map(|p| p.len() + 4).sum());
    for payload in payloads {
        // A payload is at most a guest's list, far below 4 GiB.
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out.into()
}

/// What an `all` or `any` over sources in these states settles with, once
/// it is decided; `None` while it is not. A missing source (deleted, or
/// never created) counts as rejected.
pub(crate) fn combine(
    all: bool,
    sources: &[(PromiseId, Option<Option<Settlement>>)],
) -> Option<Settlement> {
    let state = |s: &Option<Option<Settlement>>, id: &PromiseId| -> Option<Settlement> {
        match s {
            None => Some(Err(PromiseError {
                kind: ErrorKind::Failed,
                message: format!("promise {id} does not exist (never created, or deleted)"),
                data: Vec::new(),
            })),
            Some(settled) => settled.clone(),
        }
    };
    let settled: Vec<Option<Settlement>> = sources.iter().map(|(id, s)| state(s, id)).collect();
    if all {
        if let Some(Err(error)) = settled.iter().flatten().find(|s| s.is_err()) {
            return Some(Err(error.clone()));
        }
        let payloads: Option<Vec<Bytes>> = settled
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.as_ref().ok().cloned()))
            .collect();
        payloads.map(|p| Ok(encode_all(&p)))
    } else {
        if let Some(Ok(payload)) = settled.iter().flatten().find(|s| s.is_ok()) {
            return Some(Ok(payload.clone()));
        }
        if settled.iter().all(Option::is_some) {
            let first = settled
                .iter()
                .flatten()
                .find_map(|s| s.as_ref().err())
                .map(|e| e.message.clone())
                .unwrap_or_default();
            return Some(Err(PromiseError::rejected(format!(
                "all {} promises were rejected; the first: {first}",
                settled.len()
            ))));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkerId;

    fn id(idx: u64) -> PromiseId {
        PromiseId {
            worker_id: WorkerId::new(ComponentId::from_u64_pair(1, 1), "w"),
            oplog_idx: idx,
        }
    }

    fn ok(bytes: &'static [u8]) -> Option<Option<Settlement>> {
        Some(Some(Ok(Bytes::from_static(bytes))))
    }

    fn rejected(message: &str) -> Option<Option<Settlement>> {
        Some(Some(Err(PromiseError::rejected(message))))
    }

    #[test]
    fn all_waits_for_every_payload_and_fails_fast() {
        let pending = Some(None);
        assert_eq!(
            combine(true, &[(id(1), ok(b"a")), (id(2), pending.clone())]),
            None
        );
        assert_eq!(
            combine(true, &[(id(1), ok(b"a")), (id(2), ok(b""))]),
            Some(Ok(Bytes::from_static(b"\x01\x00\x00\x00a\x00\x00\x00\x00")))
        );
        assert_eq!(
            combine(true, &[(id(1), pending), (id(2), rejected("no"))]),
            Some(Err(PromiseError::rejected("no")))
        );
        assert_eq!(combine(true, &[]), Some(Ok(Bytes::new())));
        let missing = combine(true, &[(id(9), None)]);
        assert!(
            matches!(&missing, Some(Err(e)) if e.kind == ErrorKind::Failed
                && e.message == format!("promise {} does not exist (never created, or deleted)", id(9))),
            "{missing:?}"
        );
    }

    #[test]
    fn any_takes_the_first_payload_and_fails_when_all_fail() {
        let pending = Some(None);
        assert_eq!(
            combine(false, &[(id(1), rejected("x")), (id(2), ok(b"b"))]),
            Some(Ok(Bytes::from_static(b"b")))
        );
        assert_eq!(
            combine(false, &[(id(1), rejected("x")), (id(2), pending)]),
            None
        );
        assert_eq!(
            combine(false, &[(id(1), rejected("x")), (id(2), rejected("y"))]),
            Some(Err(PromiseError::rejected(
                "all 2 promises were rejected; the first: x"
            )))
        );
    }

    #[test]
    fn outcomes_settle_by_their_shape() {
        let bytes = bytes_val(b"hi");
        assert_eq!(settlement_of("f", &Ok(vec![])), None);
        assert_eq!(
            settlement_of("f", &Ok(vec![bytes.clone()])),
            Some(Ok(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            settlement_of("f", &Ok(vec![Val::Result(Ok(Some(Box::new(bytes))))])),
            Some(Ok(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            settlement_of(
                "f",
                &Ok(vec![Val::Result(Err(Some(Box::new(Val::String(
                    "bad".into()
                )))))])
            ),
            Some(Err(PromiseError::rejected("bad")))
        );
        let error = PromiseError {
            kind: ErrorKind::TimedOut,
            message: "late".into(),
            data: vec![1],
        };
        assert_eq!(
            settlement_of("f", &Ok(vec![settlement_val(&Err(error.clone()))])),
            Some(Err(error))
        );
        let odd = settlement_of("f", &Ok(vec![Val::U32(7)]));
        assert!(
            matches!(&odd, Some(Err(e)) if e.kind == ErrorKind::Failed
                && e.message == "f returned 7, which does not settle a promise"),
            "{odd:?}"
        );
    }

    #[test]
    fn worker_names_are_derived_from_the_promise() {
        let name = worker_name("when", &id(3), 1);
        assert_eq!(name, worker_name("when", &id(3), 1));
        assert_ne!(name, worker_name("when", &id(4), 1));
        assert_ne!(name, worker_name("when", &id(3), 2));
        assert!(name.starts_with("when-") && name.len() == 5 + 32, "{name}");
    }
}
