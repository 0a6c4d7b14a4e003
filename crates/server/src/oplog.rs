//! A worker's log in Golem 1.1's public form: each Vow entry becomes the
//! `PublicOplogEntry` that says the same thing, tagged by `"type"`, with
//! snake_case fields and typed values (`{"typ": ..., "value": ...}`).
//!
//! | Vow entry | Golem entry |
//! |---|---|
//! | `create` | `Create` |
//! | `invocation-started` | `ExportedFunctionInvoked`, arguments typed by the export |
//! | `invocation-finished`, ok | `ExportedFunctionCompleted`, the result read from the store |
//! | `invocation-finished`, failed | `Error`, with the invocation's error |
//! | host calls (promises, clocks, random, idempotency keys, worker metadata, `oplog-commit`, persistence level, idempotence mode) | `ImportedFunctionInvoked`, named as Golem names them (`golem::api::create_promise`, `wall_clock::now`, ...) |
//! | `vow:host/promises` calls (`reject`, `wait`, `poll`, `wait-any`, `wait-all`, `when`, `then`, `all`, `any`, `link`) | `ImportedFunctionInvoked`, named `vow::promises::reject`, ... |
//! | `set-retry-policy` | `ChangeRetryPolicy` |
//! | `mark-begin-operation` / `mark-end-operation` | `BeginAtomicRegion` / `EndAtomicRegion` |
//! | `jump` (`set-oplog-index`) | `Jump`, the region replay passes over |
//! | `snapshot`, `wait-deadline`, and a setting change recorded before Vow kept its value | `NoOp` |
//!
//! Vow's own form, with every field it stores, stays at `.../oplog/raw`.

pub(crate) mod query;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type as SchemaType,
};
use utoipa::{PartialSchema, ToSchema};
use vow_runtime::{
    ErrorKind, FinishedInvocation, FunctionType, HostSettings, OplogEntry, OplogRecord,
    PromiseError, PromiseId, RecordedMetadata, StoredSettlement, Type, Val, WorkerId,
};
use wasmtime::component::wasm_wave;

use crate::json::to_golem_json;
use crate::time::rfc3339;
use crate::typed::analysed_type;

/// The schema of an entry as [`Context::render`] writes it, for the
/// OpenAPI document: its `type` (one of those in the table above) and
/// `timestamp`; the other fields depend on the type.
pub(crate) struct PublicOplogEntry;

impl PartialSchema for PublicOplogEntry {
    fn schema() -> RefOr<Schema> {
        let types = [
            "Create",
            "ImportedFunctionInvoked",
            "ExportedFunctionInvoked",
            "ExportedFunctionCompleted",
            "Error",
            "NoOp",
            "Jump",
            "ChangeRetryPolicy",
            "BeginAtomicRegion",
            "EndAtomicRegion",
        ];
        let timestamp = ObjectBuilder::new()
            .schema_type(SchemaType::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
        ObjectBuilder::new()
            .schema_type(SchemaType::Object)
            .description(Some("Golem's public oplog entry, tagged by `type`, with snake_case fields and typed values (`{\"typ\", \"value\"}`); see docs/rest-api.md for how Vow's entries map to these"))
            .property("type", ObjectBuilder::new().schema_type(SchemaType::String).enum_values(Some(types)))
            .property("timestamp", timestamp)
            .required("type")
            .required("timestamp")
            .into()
    }
}

impl ToSchema for PublicOplogEntry {}

/// A value with its `AnalysedType`: Golem's `ValueAndType`.
struct Typed {
    typ: Value,
    value: Value,
}

impl Typed {
    fn json(self) -> Value {
        json!({ "typ": self.typ, "value": self.value })
    }
}

fn tag(name: &str) -> Value {
    json!({ "type": name })
}

fn unit() -> Typed {
    tuple(Vec::new())
}

fn tuple(items: Vec<Typed>) -> Typed {
    let (typs, values): (Vec<_>, Vec<_>) = items.into_iter().map(|t| (t.typ, t.value)).unzip();
    Typed {
        typ: json!({ "type": "Tuple", "items": typs }),
        value: Value::Array(values),
    }
}

fn u64_value(n: u64) -> Typed {
    Typed {
        typ: tag("U64"),
        value: json!(n),
    }
}

fn bool_value(b: bool) -> Typed {
    Typed {
        typ: tag("Bool"),
        value: json!(b),
    }
}

fn string(s: &str) -> Typed {
    Typed {
        typ: tag("Str"),
        value: json!(s),
    }
}

fn bytes(b: &[u8]) -> Typed {
    Typed {
        typ: json!({ "type": "List", "inner": tag("U8") }),
        value: json!(b),
    }
}

fn list(inner: Value, items: Vec<Typed>) -> Typed {
    Typed {
        typ: json!({ "type": "List", "inner": inner }),
        value: Value::Array(items.into_iter().map(|t| t.value).collect()),
    }
}

fn record_of(fields: Vec<(&str, Typed)>) -> Typed {
    let mut typs = Vec::new();
    let mut values = serde_json::Map::new();
    for (name, field) in fields {
        typs.push(json!({ "name": name, "typ": field.typ }));
        values.insert(name.to_owned(), field.value);
    }
    Typed {
        typ: json!({ "type": "Record", "fields": typs }),
        value: Value::Object(values),
    }
}

fn enum_value(cases: &[&str], case: &str) -> Typed {
    Typed {
        typ: json!({ "type": "Enum", "cases": cases }),
        value: json!(case),
    }
}

/// `golem:api`'s `uuid` record.
fn uuid(high: u64, low: u64) -> Typed {
    record_of(vec![
        ("high-bits", u64_value(high)),
        ("low-bits", u64_value(low)),
    ])
}

/// `golem:api`'s `worker-id` record.
fn worker_id(id: &WorkerId) -> Typed {
    let (high, low) = id.component_id.as_u64_pair();
    record_of(vec![
        ("component-id", record_of(vec![("uuid", uuid(high, low))])),
        ("worker-name", string(&id.worker_name)),
    ])
}

/// `golem:api`'s `promise-id` record.
fn promise_id(id: &PromiseId) -> Typed {
    record_of(vec![
        ("worker-id", worker_id(&id.worker_id)),
        ("oplog-idx", u64_value(id.oplog_idx)),
    ])
}

/// The `typ` of `promise-id`.
fn promise_id_type() -> Value {
    promise_id(&PromiseId {
        worker_id: WorkerId::new(vow_runtime::ComponentId::from_u64_pair(0, 0), ""),
        oplog_idx: 0,
    })
    .typ
}

const ERROR_KINDS: [&str; 3] = ["rejected", "timed-out", "failed"];

/// `vow:host/promises`' `error` record.
fn promise_error(error: &PromiseError) -> Typed {
    let kind = match error.kind {
        ErrorKind::Rejected => "rejected",
        ErrorKind::TimedOut => "timed-out",
        ErrorKind::Failed => "failed",
    };
    record_of(vec![
        ("kind", enum_value(&ERROR_KINDS, kind)),
        ("message", string(&error.message)),
        ("data", bytes(&error.data)),
    ])
}

/// `link`'s answer: `result<completion-link, string>`.
fn minted_link(answer: Result<&vow_runtime::links::CompletionLink, &String>) -> Typed {
    let record = |link: &vow_runtime::links::CompletionLink| {
        record_of(vec![
            ("token", string(&link.token)),
            (
                "url",
                Typed {
                    typ: json!({ "type": "Option", "inner": tag("Str") }),
                    value: link.url.as_ref().map_or(Value::Null, |u| json!(u)),
                },
            ),
            (
                "action",
                enum_value(&["complete", "reject", "both"], link.action.as_str()),
            ),
            ("expires-at-ms", u64_value(link.expires_at)),
        ])
    };
    let shape = record(&vow_runtime::links::CompletionLink {
        token: String::new(),
        url: None,
        action: vow_runtime::links::LinkAction::Complete,
        expires_at: 0,
    });
    Typed {
        typ: json!({ "type": "Result", "ok": shape.typ, "err": tag("Str") }),
        value: match answer {
            Ok(link) => json!({ "ok": record(link).value }),
            Err(error) => json!({ "err": error }),
        },
    }
}

/// The `typ` of `settlement`: `result<list<u8>, error>`.
fn settlement_type() -> Value {
    json!({
        "type": "Result",
        "ok": { "type": "List", "inner": tag("U8") },
        "err": promise_error(&PromiseError::rejected("")).typ,
    })
}

/// `vow:host/promises`' `settlement`.
fn settlement(settled: &StoredSettlement) -> Typed {
    Typed {
        typ: settlement_type(),
        value: match settled {
            Ok(data) => json!({ "ok": data }),
            Err(error) => json!({ "err": promise_error(error).value }),
        },
    }
}

const WORKER_STATUSES: [&str; 7] = [
    "running",
    "idle",
    "suspended",
    "interrupted",
    "retrying",
    "failed",
    "exited",
];

/// `golem:api`'s `worker-metadata` record.
fn worker_metadata(m: &RecordedMetadata) -> Typed {
    let pair = |(k, v): &(String, String)| tuple(vec![string(k), string(v)]);
    record_of(vec![
        ("worker-id", worker_id(&m.id)),
        (
            "args",
            list(tag("Str"), m.args.iter().map(|a| string(a)).collect()),
        ),
        (
            "env",
            list(
                json!({ "type": "Tuple", "items": [tag("Str"), tag("Str")] }),
                m.env.iter().map(pair).collect(),
            ),
        ),
        ("status", enum_value(&WORKER_STATUSES, &m.status)),
        ("component-version", u64_value(m.component_version)),
        ("retry-count", u64_value(m.retry_count)),
    ])
}

/// The `typ` of `worker-metadata`, for empty lists and absent options.
fn worker_metadata_type() -> Value {
    let sample = RecordedMetadata {
        id: WorkerId::new(vow_runtime::ComponentId::from_u64_pair(0, 0), ""),
        args: Vec::new(),
        env: Vec::new(),
        status: "idle".to_owned(),
        component_version: 0,
        retry_count: 0,
    };
    worker_metadata(&sample).typ
}

const PERSISTENCE_LEVELS: [&str; 3] = ["persist-nothing", "persist-remote-side-effects", "smart"];

/// `golem:api`'s `persistence-level`: a variant without payloads.
fn persistence_level(level: &str) -> Typed {
    let cases: Vec<Value> = PERSISTENCE_LEVELS
        .iter()
        .map(|name| json!({ "name": name }))
        .collect();
    Typed {
        typ: json!({ "type": "Variant", "cases": cases }),
        value: json!({ level: null }),
    }
}

/// Values of `types` as one typed tuple, as Golem types an exported
/// function's arguments and results; `None` when a type has no Golem form.
fn typed_values(types: &[Type], values: &[Val]) -> Option<Vec<Typed>> {
    types
        .iter()
        .zip(values)
        .map(|(ty, val)| {
            Some(Typed {
                typ: analysed_type(ty).ok()?,
                value: to_golem_json(val),
            })
        })
        .collect()
}

/// What the page needs beyond the entries: the worker, its component and
/// the results of the invocations the page finishes.
pub(crate) struct Context {
    pub(crate) worker: WorkerId,
    pub(crate) component_size: u64,
    pub(crate) linear_memory: u64,
    pub(crate) finished: HashMap<u64, FinishedInvocation>,
    /// The component's exports, by name, as far as they are known.
    pub(crate) functions: HashMap<String, FunctionType>,
}

/// The invocation sequence numbers whose results rendering `records`
/// needs, first to last.
pub(crate) fn finished_seqs(records: &[OplogRecord]) -> Option<(u64, u64)> {
    let mut seqs = records.iter().filter_map(|r| match r.entry {
        OplogEntry::InvocationFinished { seq, .. } if seq > 0 => Some(seq),
        _ => None,
    });
    let first = seqs.next()?;
    let (min, max) = seqs.fold((first, first), |(lo, hi), s| (lo.min(s), hi.max(s)));
    Some((min, max))
}

/// The functions the page's invocations call.
pub(crate) fn invoked_functions(records: &[OplogRecord]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.entry {
            OplogEntry::InvocationStarted { function, .. } => Some(function.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn imported(at: &str, function: &str, request: Typed, response: Typed, kind: &str) -> Value {
    json!({
        "type": "ImportedFunctionInvoked",
        "timestamp": at,
        "function_name": function,
        "request": request.json(),
        "response": response.json(),
        "wrapped_function_type": { "type": kind },
    })
}

fn with_timestamp(kind: &str, at: &str) -> Value {
    json!({ "type": kind, "timestamp": at })
}

/// Golem's `min_delay`/`max_delay`: a humantime duration.
fn duration(nanos: u64) -> String {
    humantime::format_duration(Duration::from_nanos(nanos)).to_string()
}

fn retry_policy(at: &str, settings: &HostSettings) -> Value {
    let (max_attempts, min_delay, max_delay, multiplier, jitter) = settings.retry_policy;
    json!({
        "type": "ChangeRetryPolicy",
        "timestamp": at,
        "new_policy": {
            "max_attempts": max_attempts,
            "min_delay": duration(min_delay),
            "max_delay": duration(max_delay),
            "multiplier": multiplier,
            "max_jitter_factor": jitter,
        },
    })
}

impl Context {
    /// The public form of one entry.
    pub(crate) fn render(&self, record: &OplogRecord) -> Value {
        let at = rfc3339(record.at);
        let at = at.as_str();
        match &record.entry {
            OplogEntry::Create { args, env, .. } => json!({
                "type": "Create",
                "timestamp": at,
                "worker_id": {
                    "componentId": self.worker.component_id.to_string(),
                    "workerName": self.worker.worker_name,
                },
                "component_version": 0,
                "args": args,
                "env": env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                // Golem's open-source account.
                "account_id": "-1",
                "component_size": self.component_size,
                "initial_total_linear_memory_size": self.linear_memory,
                "initial_active_plugins": [],
            }),
            OplogEntry::InvocationStarted {
                function,
                idempotency_key,
                params,
                ..
            } => json!({
                "type": "ExportedFunctionInvoked",
                "timestamp": at,
                "function_name": function,
                "request": self.arguments(function, params),
                "idempotency_key": idempotency_key.as_deref().unwrap_or(""),
            }),
            OplogEntry::InvocationFinished { ok, seq } => {
                let finished = self.finished.get(seq);
                match (ok, finished.map(|f| &f.result)) {
                    (true, Some(Ok(values))) => json!({
                        "type": "ExportedFunctionCompleted",
                        "timestamp": at,
                        "response": self.result(finished.map(|f| f.function.as_str()), values),
                        "consumed_fuel": 0,
                    }),
                    (true, _) => json!({
                        "type": "ExportedFunctionCompleted",
                        "timestamp": at,
                        "response": unit().json(),
                        "consumed_fuel": 0,
                    }),
                    (false, Some(Err(message))) => json!({
                        "type": "Error", "timestamp": at, "error": message,
                    }),
                    (false, _) => json!({
                        "type": "Error", "timestamp": at, "error": "the invocation failed",
                    }),
                }
            }
            OplogEntry::CreatePromise => imported(
                at,
                "golem::api::create_promise",
                unit(),
                promise_id(&PromiseId {
                    worker_id: self.worker.clone(),
                    oplog_idx: record.index,
                }),
                "WriteLocal",
            ),
            OplogEntry::AwaitPromise { promise, payload } => imported(
                at,
                "golem::api::await_promise",
                promise_id(promise),
                bytes(payload),
                "ReadRemote",
            ),
            OplogEntry::CompletePromise { promise, completed } => imported(
                at,
                "golem::api::complete_promise",
                promise_id(promise),
                bool_value(*completed),
                "WriteLocal",
            ),
            OplogEntry::DeletePromise { promise } => imported(
                at,
                "golem::api::delete_promise",
                promise_id(promise),
                unit(),
                "WriteLocal",
            ),
            OplogEntry::RejectPromise { promise, rejected } => imported(
                at,
                "vow::promises::reject",
                promise_id(promise),
                bool_value(*rejected),
                "WriteLocal",
            ),
            OplogEntry::AwaitSettlement {
                promise,
                settlement: settled,
            } => imported(
                at,
                "vow::promises::wait",
                promise_id(promise),
                settlement(settled),
                "ReadRemote",
            ),
            OplogEntry::PollPromise {
                promise,
                settlement: settled,
            } => imported(
                at,
                "vow::promises::poll",
                promise_id(promise),
                Typed {
                    typ: json!({ "type": "Option", "inner": settlement_type() }),
                    value: settled
                        .as_ref()
                        .map_or(Value::Null, |s| settlement(s).value),
                },
                "ReadRemote",
            ),
            OplogEntry::WaitAny { promises, answer } => imported(
                at,
                "vow::promises::wait_any",
                list(promise_id_type(), promises.iter().map(promise_id).collect()),
                Typed {
                    typ: json!({ "type": "Option", "inner": {
                        "type": "Tuple", "items": [tag("U32"), settlement_type()] } }),
                    value: answer
                        .as_ref()
                        .map_or(Value::Null, |(i, s)| json!([i, settlement(s).value])),
                },
                "ReadRemote",
            ),
            OplogEntry::WaitAll { promises, answer } => imported(
                at,
                "vow::promises::wait_all",
                list(promise_id_type(), promises.iter().map(promise_id).collect()),
                Typed {
                    typ: json!({ "type": "Option", "inner": {
                        "type": "List", "inner": settlement_type() } }),
                    value: answer.as_ref().map_or(Value::Null, |all| {
                        Value::Array(all.iter().map(|s| settlement(s).value).collect())
                    }),
                },
                "ReadRemote",
            ),
            OplogEntry::Compose { call, error } => imported(
                at,
                &format!("vow::promises::{}", call.name()),
                unit(),
                Typed {
                    typ: json!({ "type": "Result", "ok": promise_id_type(), "err": tag("Str") }),
                    value: match error {
                        Some(error) => json!({ "err": error }),
                        None => json!({ "ok": promise_id(&PromiseId {
                            worker_id: self.worker.clone(),
                            oplog_idx: record.index,
                        }).value }),
                    },
                },
                "WriteRemote",
            ),
            OplogEntry::MintLink { promise, answer } => imported(
                at,
                "vow::promises::link",
                promise_id(promise),
                minted_link(answer.as_ref()),
                "ReadLocal",
            ),
            OplogEntry::WasiPoll { ready } => imported(
                at,
                "io::poll::poll",
                unit(),
                list(
                    tag("U32"),
                    ready
                        .iter()
                        .map(|i| Typed {
                            typ: tag("U32"),
                            value: json!(i),
                        })
                        .collect(),
                ),
                "ReadRemote",
            ),
            OplogEntry::WasiBlock => imported(
                at,
                "io::poll::pollable::block",
                unit(),
                unit(),
                "ReadRemote",
            ),
            OplogEntry::WasiReady { ready } => imported(
                at,
                "io::poll::pollable::ready",
                unit(),
                bool_value(*ready),
                "ReadRemote",
            ),
            OplogEntry::IdempotencyKey { key } => imported(
                at,
                "golem::api::generate_idempotency_key",
                unit(),
                uuid(key.0, key.1),
                "ReadLocal",
            ),
            OplogEntry::BeginAtomicRegion => with_timestamp("BeginAtomicRegion", at),
            OplogEntry::EndAtomicRegion { begin } => json!({
                "type": "EndAtomicRegion", "timestamp": at, "begin_index": begin,
            }),
            OplogEntry::SettingChanged { setting, settings } => {
                match (setting.as_str(), settings) {
                    ("retry-policy", Some(settings)) => retry_policy(at, settings),
                    ("persistence-level", Some(settings)) => imported(
                        at,
                        "golem::api::set_oplog_persistence_level",
                        persistence_level(&settings.persistence),
                        unit(),
                        "WriteLocal",
                    ),
                    ("idempotence-mode", Some(settings)) => imported(
                        at,
                        "golem::api::set_idempotence_mode",
                        bool_value(settings.idempotent),
                        unit(),
                        "WriteLocal",
                    ),
                    _ => with_timestamp("NoOp", at),
                }
            }
            OplogEntry::MetadataRead { function, answer } => self.metadata(at, function, answer),
            OplogEntry::Commit { replicas } => imported(
                at,
                "golem::api::oplog_commit",
                Typed {
                    typ: tag("U8"),
                    value: json!(replicas),
                },
                unit(),
                "WriteLocal",
            ),
            OplogEntry::Random { bytes: drawn } => imported(
                at,
                "golem random::get_random_bytes",
                u64_value(drawn.len() as u64),
                bytes(drawn),
                "ReadLocal",
            ),
            OplogEntry::WallClock { nanos } => imported(
                at,
                "wall_clock::now",
                unit(),
                record_of(vec![
                    ("seconds", u64_value(nanos / 1_000_000_000)),
                    (
                        "nanoseconds",
                        Typed {
                            typ: tag("U32"),
                            value: json!(nanos % 1_000_000_000),
                        },
                    ),
                ]),
                "ReadLocal",
            ),
            OplogEntry::MonotonicClock { nanos } => imported(
                at,
                "monotonic_clock::now",
                unit(),
                u64_value(*nanos),
                "ReadLocal",
            ),
            OplogEntry::Jump { to } => json!({
                "type": "Jump",
                "timestamp": at,
                "jump": { "start": to + 1, "end": record.index },
            }),
            // Snapshots, and entry kinds a newer Vow may add.
            _ => with_timestamp("NoOp", at),
        }
    }

    /// An invocation's arguments, typed by the export; an argument whose
    /// type has no Golem form is its WAVE text as a string.
    fn arguments(&self, function: &str, params: &[String]) -> Value {
        let parsed = self.functions.get(function).and_then(|ty| {
            let types: Vec<Type> = ty.params.iter().map(|(_, t)| t.clone()).collect();
            let values = params
                .iter()
                .zip(&types)
                .map(|(text, ty)| wasm_wave::from_str::<Val>(ty, text).ok())
                .collect::<Option<Vec<_>>>()?;
            (values.len() == params.len())
                .then(|| typed_values(&types, &values))
                .flatten()
        });
        let typed = parsed.unwrap_or_else(|| params.iter().map(|p| string(p)).collect());
        Value::Array(typed.into_iter().map(Typed::json).collect())
    }

    /// An invocation's results as Golem answers them: a tuple.
    fn result(&self, function: Option<&str>, values: &[Val]) -> Value {
        let typed = function
            .and_then(|f| self.functions.get(f))
            .and_then(|ty| typed_values(&ty.results, values))
            .unwrap_or_else(|| {
                values
                    .iter()
                    .map(|v| string(&wasm_wave::to_string(v).unwrap_or_default()))
                    .collect()
            });
        tuple(typed).json()
    }

    fn metadata(&self, at: &str, function: &str, answer: &[RecordedMetadata]) -> Value {
        let name = format!(
            "golem::api::{}",
            function.replace('-', "_").replace('.', "::")
        );
        let (request, response) = match function {
            "get-self-metadata" => (unit(), answer.first().map_or_else(unit, worker_metadata)),
            "get-worker-metadata" => (
                answer.first().map_or_else(unit, |m| worker_id(&m.id)),
                Typed {
                    typ: json!({ "type": "Option", "inner": worker_metadata_type() }),
                    value: answer
                        .first()
                        .map_or(Value::Null, |m| worker_metadata(m).value),
                },
            ),
            _ => (
                unit(),
                list(
                    worker_metadata_type(),
                    answer.iter().map(worker_metadata).collect(),
                ),
            ),
        };
        imported(at, &name, request, response, "ReadLocal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use vow_runtime::ComponentId;

    fn at_millis(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn context() -> Context {
        Context {
            worker: WorkerId::new(ComponentId::from_u64_pair(1, 2), "w"),
            component_size: 10,
            linear_memory: 65536,
            finished: HashMap::new(),
            functions: HashMap::new(),
        }
    }

    fn rendered(entry: OplogEntry, index: u64) -> Value {
        context().render(&OplogRecord {
            index,
            at: at_millis(1_000),
            entry,
        })
    }

    #[test]
    fn a_created_promise_answers_its_own_id() {
        let entry = rendered(OplogEntry::CreatePromise, 4);
        assert_eq!(entry["type"], "ImportedFunctionInvoked");
        assert_eq!(entry["function_name"], "golem::api::create_promise");
        assert_eq!(entry["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(entry["response"]["value"]["oplog-idx"], 4);
        assert_eq!(
            entry["response"]["value"]["worker-id"]["component-id"]["uuid"],
            json!({ "high-bits": 1, "low-bits": 2 })
        );
        assert_eq!(entry["response"]["typ"]["type"], "Record");
        assert_eq!(
            entry["wrapped_function_type"],
            json!({ "type": "WriteLocal" })
        );
    }

    #[test]
    fn a_jump_names_the_region_replay_passes_over() {
        let entry = rendered(OplogEntry::Jump { to: 3 }, 9);
        assert_eq!(entry["jump"], json!({ "start": 4, "end": 9 }));
    }

    #[test]
    fn a_retry_policy_change_is_golems_change_retry_policy() {
        let settings = HostSettings {
            retry_policy: (3, 1_500_000_000, 60_000_000_000, 2.0, None),
            persistence: "smart".to_owned(),
            idempotent: true,
        };
        let entry = rendered(
            OplogEntry::SettingChanged {
                setting: "retry-policy".to_owned(),
                settings: Some(settings),
            },
            5,
        );
        assert_eq!(
            entry["new_policy"],
            json!({
                "max_attempts": 3, "min_delay": "1s 500ms", "max_delay": "1m",
                "multiplier": 2.0, "max_jitter_factor": null,
            })
        );
    }

    #[test]
    fn a_failed_invocation_is_an_error_entry_with_its_message() {
        let mut ctx = context();
        ctx.finished.insert(
            2,
            FinishedInvocation {
                seq: 2,
                function: "run".to_owned(),
                result: Err("guest trapped: unreachable".to_owned()),
            },
        );
        let entry = ctx.render(&OplogRecord {
            index: 7,
            at: at_millis(0),
            entry: OplogEntry::InvocationFinished { ok: false, seq: 2 },
        });
        assert_eq!(
            entry,
            json!({
                "type": "Error",
                "timestamp": "1970-01-01T00:00:00.000Z",
                "error": "guest trapped: unreachable",
            })
        );
    }

    #[test]
    fn arguments_of_an_unknown_function_are_their_wave_text() {
        let entry = rendered(
            OplogEntry::InvocationStarted {
                function: "gone".to_owned(),
                idempotency_key: None,
                seq: 1,
                params: vec!["\"hi\"".to_owned()],
                settles: None,
            },
            2,
        );
        assert_eq!(
            entry["request"],
            json!([{ "typ": { "type": "Str" }, "value": "\"hi\"" }])
        );
        assert_eq!(entry["idempotency_key"], "");
    }
}
