//! Promises: listing and reading them, and settling them from outside.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use vow_runtime::{ErrorKind, PromiseFilter, PromiseId, PromiseInfo, PromiseStatus, WorkerId};

use crate::error::ApiError;
use crate::extract::{
    ApiQuery, ComponentParams, ComponentPath, JsonBody, PromiseParams, PromisePath, WorkerParams,
    WorkerPath, parse_component_id,
};
use crate::integral;
use crate::openapi::responses::{E400, E404, E413};
use crate::routes::AppState;
use crate::time::rfc3339;

/// A promise: whose it is, where it is in its life, and what it settled
/// with.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PromiseInfo)]
pub(crate) struct PromiseBody {
    /// `{cid}/{name}/{oplogIdx}`
    promise_id: String,
    #[schema(format = Uuid)]
    component_id: String,
    worker_name: String,
    oplog_idx: u64,
    status: Status,
    #[schema(format = DateTime)]
    created_at: String,
    /// When it settled (completed, rejected or timed out); null while
    /// pending
    #[schema(format = DateTime, required = true)]
    completed_at: Option<String>,
    awaited: bool,
    /// Settled by work the runtime runs (`when`, `then`, `all`, `any`)
    composed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<ErrorBody>,
    /// When it times out, while pending
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    deadline: Option<String>,
    /// How long it is kept once settled
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    retention_ms: Option<u64>,
    /// The declared payload type, as WIT text
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    payload_type: Option<String>,
    /// The declared payload type as Golem's AnalysedType, for forms
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    payload_schema: Option<serde_json::Value>,
}

/// Where a promise is in its life.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = PromiseStatus)]
enum Status {
    Pending,
    Completed,
    Rejected,
    TimedOut,
}

impl From<PromiseStatus> for Status {
    fn from(status: PromiseStatus) -> Self {
        match status {
            PromiseStatus::Pending => Self::Pending,
            PromiseStatus::Completed => Self::Completed,
            PromiseStatus::Rejected => Self::Rejected,
            PromiseStatus::TimedOut => Self::TimedOut,
        }
    }
}

/// What a rejected promise settled with.
#[derive(Serialize, ToSchema)]
#[schema(as = PromiseError)]
pub(crate) struct ErrorBody {
    #[schema(inline)]
    kind: Kind,
    message: String,
    #[schema(inline, value_type = integral::Bytes)]
    data: Vec<u8>,
}

/// Why a promise was rejected.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Rejected,
    TimedOut,
    Failed,
}

impl From<ErrorKind> for Kind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Rejected => Self::Rejected,
            ErrorKind::TimedOut => Self::TimedOut,
            ErrorKind::Failed => Self::Failed,
        }
    }
}

impl From<PromiseInfo> for PromiseBody {
    fn from(info: PromiseInfo) -> Self {
        Self {
            promise_id: info.id.to_string(),
            component_id: info.id.worker_id.component_id.to_string(),
            worker_name: info.id.worker_id.worker_name,
            oplog_idx: info.id.oplog_idx,
            status: Status::from(info.status),
            created_at: rfc3339(info.created_at),
            completed_at: info.completed_at.map(rfc3339),
            awaited: info.awaited,
            composed: info.composed,
            error: info.error.map(|e| ErrorBody {
                kind: Kind::from(e.kind),
                message: e.message,
                data: e.data,
            }),
            deadline: info.deadline.map(rfc3339),
            retention_ms: info
                .retention
                .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
            payload_schema: info.payload_type.as_ref().map(|t| t.analysed_type()),
            payload_type: info.payload_type.as_ref().map(ToString::to_string),
        }
    }
}

/// Promises.
#[derive(Serialize, ToSchema)]
pub(crate) struct PromiseList {
    promises: Vec<PromiseBody>,
}

impl PromiseList {
    fn of(promises: Vec<PromiseInfo>) -> Json<Self> {
        Json(Self {
            promises: promises.into_iter().map(PromiseBody::from).collect(),
        })
    }
}

/// `?status=&component=&worker=`, all optional.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only promises with this status (`fulfilled` is `completed`)
    #[param(inline, value_type = Option<StatusFilter>)]
    status: Option<String>,
    /// Only promises of this component's workers
    #[param(format = Uuid)]
    component: Option<String>,
    /// Only promises of workers of this name: of `component`'s worker when
    /// given, else of every component's
    worker: Option<String>,
}

/// The schema of `status=`: what [`PromiseStatus::parse`] reads.
struct StatusFilter;

impl PartialSchema for StatusFilter {
    fn schema() -> RefOr<Schema> {
        let names = ["pending", "completed", "fulfilled", "rejected", "timed-out"];
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for StatusFilter {}

impl ListQuery {
    /// The filter and, for `worker=` without `component=`, the worker name
    /// to match in every component; or one message per bad parameter.
    fn filter(self) -> Result<(PromiseFilter, Option<String>), ApiError> {
        let mut errors = Vec::new();
        let status = match self.status.as_deref() {
            None => None,
            Some(text) => match PromiseStatus::parse(text) {
                Some(status) => Some(status),
                None => {
                    errors.push(format!(
                        "status must be \"pending\", \"completed\" (or \"fulfilled\"), \"rejected\" or \"timed-out\", got {text:?}"
                    ));
                    None
                }
            },
        };
        let component = match self.component.as_deref().map(parse_component_id) {
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            Some(Ok(c)) => Some(c),
            None => None,
        };
        // Without `component=`, the workers of that name in every
        // component. (A bad component id is reported above.)
        let (worker, in_every_component) = match (self.worker, component) {
            (Some(name), Some(c)) => (Some(WorkerId::new(c, name)), None),
            (Some(name), None) => (None, Some(name)),
            (None, _) => (None, None),
        };
        if !errors.is_empty() {
            return Err(ApiError::bad_request(errors));
        }
        let filter = PromiseFilter {
            status,
            component,
            worker,
        };
        Ok((filter, in_every_component))
    }
}

/// `GET /v1/promises`: promises of every worker, filtered.
#[utoipa::path(
    get,
    path = "/v1/promises",
    operation_id = "listPromises",
    summary = "Promises of every worker, filtered",
    params(ListQuery),
    responses(
        (status = 200, description = "success", body = PromiseList),
        (status = 400, response = E400),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<PromiseList>, ApiError> {
    let (filter, worker_name) = query.filter()?;
    let mut promises = state.executor.promises(filter).await?;
    if let Some(name) = worker_name {
        promises.retain(|p| p.id.worker_id.worker_name == name);
    }
    Ok(PromiseList::of(promises))
}

/// `GET .../workers/{name}/promises`: one worker's promises.
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/{name}/promises",
    operation_id = "listWorkerPromises",
    summary = "The worker's promises",
    params(WorkerParams),
    responses(
        (status = 200, description = "success", body = PromiseList),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn of_worker(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<PromiseList>, ApiError> {
    state.executor.worker_status(&worker)?;
    let filter = PromiseFilter {
        worker: Some(worker),
        ..PromiseFilter::default()
    };
    Ok(PromiseList::of(state.executor.promises(filter).await?))
}

/// The payload as `data` (bytes) or as `value` (a JSON value; for a
/// promise with a declared payload type, a value of that type, else 400),
/// one of the two.
#[derive(Deserialize, ToSchema)]
#[schema(as = LinkCompletion)]
pub(crate) struct Payload {
    #[serde(default, deserialize_with = "integral::option_bytes")]
    #[schema(inline, value_type = integral::Bytes)]
    data: Option<Vec<u8>>,
    #[schema(inline, value_type = JsonValue, required = false)]
    value: Option<serde_json::Value>,
}

/// The schema of a payload's `value`: any JSON value but `null`, which is
/// the field left out.
struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        let types = [
            Type::Boolean,
            Type::Number,
            Type::String,
            Type::Array,
            Type::Object,
        ];
        ObjectBuilder::new()
            .schema_type(types.into_iter().collect::<SchemaType>())
            .into()
    }
}

impl ToSchema for JsonValue {}

impl Payload {
    /// The payload, or the error for a body with neither or both forms.
    pub(crate) fn payload(self) -> Result<Vec<u8>, ApiError> {
        match (self.data, self.value) {
            (Some(data), None) => Ok(data),
            (None, Some(value)) => Ok(serde_json::to_vec(&value).unwrap_or_default()),
            (None, None) => Err(ApiError::invalid(
                "missing field `data` (the payload's bytes) or `value` (a JSON value)",
            )),
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "give the payload as `data` or as `value`, not both",
            )),
        }
    }
}

/// The payload as `data` (Golem's form) or as `value` (a JSON value, a Vow
/// extension; for a promise with a declared payload type, a value of that
/// type, else 400), one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Completion {
    #[serde(deserialize_with = "integral::u64")]
    #[schema(inline, value_type = integral::Uint64)]
    oplog_idx: u64,
    #[serde(default, deserialize_with = "integral::option_bytes")]
    #[schema(inline, value_type = integral::Bytes)]
    data: Option<Vec<u8>>,
    #[schema(inline, value_type = JsonValue, required = false)]
    value: Option<serde_json::Value>,
}

impl Completion {
    fn payload(self) -> Result<Vec<u8>, ApiError> {
        Payload {
            data: self.data,
            value: self.value,
        }
        .payload()
    }
}

/// `POST .../workers/{name}/complete`: completes one of the worker's
/// promises. `true` if this request completed it, `false` if it already was.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/complete",
    operation_id = "complete_promise",
    summary = "Complete one of the worker's promises",
    params(WorkerParams),
    request_body = Completion,
    responses(
        (status = 200, description = "success", body = bool, content_type = "application/json"),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
)]
#[tracing::instrument(skip_all, fields(worker = %worker, oplog_idx = body.oplog_idx))]
pub(crate) async fn complete(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    JsonBody(body): JsonBody<Completion>,
) -> Result<Json<bool>, ApiError> {
    // An unknown worker is named as such, not as an unknown promise.
    state.executor.worker_status(&worker)?;
    let id = PromiseId {
        worker_id: worker,
        oplog_idx: body.oplog_idx,
    };
    let payload = body.payload()?;
    Ok(Json(state.executor.complete_promise(&id, payload).await?))
}

/// The promise to reject and why.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rejection {
    #[serde(deserialize_with = "integral::u64")]
    #[schema(inline, value_type = integral::Uint64)]
    oplog_idx: u64,
    /// What went wrong, for people
    error: String,
    // Whatever the rejecter attaches (default none). (A plain comment:
    // see `integral::Bytes`.)
    #[serde(default, deserialize_with = "integral::bytes")]
    #[schema(inline, value_type = integral::Bytes)]
    data: Vec<u8>,
}

/// `POST .../workers/{name}/reject`: rejects one of the worker's promises
/// (a Vow extension, shaped like `complete`). `true` if this request
/// settled it, `false` if it already was settled.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/reject",
    operation_id = "rejectPromise",
    summary = "Reject one of the worker's promises: true if this request settled it",
    params(WorkerParams),
    request_body = Rejection,
    responses(
        (status = 200, description = "success", body = bool, content_type = "application/json"),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
#[tracing::instrument(skip_all, fields(worker = %worker, oplog_idx = body.oplog_idx))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    JsonBody(body): JsonBody<Rejection>,
) -> Result<Json<bool>, ApiError> {
    state.executor.worker_status(&worker)?;
    let id = PromiseId {
        worker_id: worker,
        oplog_idx: body.oplog_idx,
    };
    Ok(Json(
        state
            .executor
            .reject_promise(&id, body.error, body.data)
            .await?,
    ))
}

/// A promise, with its payload as `data` once completed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromiseDetail {
    #[serde(flatten)]
    promise: PromiseBody,
    // The payload, once completed. (A plain comment: see
    // `integral::Bytes`.)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(inline, value_type = integral::Bytes)]
    data: Option<Vec<u8>>,
}

/// `GET .../workers/{name}/promises/{idx}`: one promise, with its payload
/// or error once it settled.
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/{name}/promises/{idx}",
    operation_id = "getPromise",
    summary = "One of the worker's promises, with its payload or error once settled",
    params(PromiseParams),
    responses(
        (status = 200, description = "success", body = PromiseDetail),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    PromisePath(id): PromisePath,
) -> Result<Json<PromiseDetail>, ApiError> {
    // A then made over REST owns its promise before its worker exists:
    // the promise is looked up first, the worker only to name what is
    // missing.
    let (info, settlement) = match state.executor.promise(&id).await {
        Ok(found) => found,
        Err(error) => {
            state.executor.worker_status(&id.worker_id)?;
            return Err(error.into());
        }
    };
    Ok(Json(PromiseDetail {
        promise: PromiseBody::from(info),
        data: settlement.and_then(Result::ok).map(|data| data.to_vec()),
    }))
}

/// Options of a promise made over REST.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OptionsBody {
    timeout_ms: Option<u64>,
    retention_ms: Option<u64>,
    payload_type: Option<String>,
}

/// The longest `timeoutMs` and `retentionMs`: 100 years (of 365.25 days).
/// Deadlines are stored as milliseconds since the Unix epoch in a signed
/// 64-bit number, which a longer time could overflow.
pub(crate) const MAX_PROMISE_MS: u64 = 3_155_760_000_000;

/// The schema of `timeoutMs` and `retentionMs`: up to [`MAX_PROMISE_MS`].
struct PromiseMs;

impl PartialSchema for PromiseMs {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_PROMISE_MS))
            .description(Some("Milliseconds, at most 100 years"))
            .into()
    }
}

impl ToSchema for PromiseMs {}

impl OptionsBody {
    fn options(self) -> Result<vow_runtime::PromiseOptions, ApiError> {
        let too_long: Vec<String> = [
            ("timeoutMs", self.timeout_ms),
            ("retentionMs", self.retention_ms),
        ]
        .into_iter()
        .filter(|(_, ms)| ms.is_some_and(|ms| ms > MAX_PROMISE_MS))
        .map(|(name, ms)| {
            format!(
                "{name}: {} is more than {MAX_PROMISE_MS} (100 years)",
                ms.unwrap_or_default()
            )
        })
        .collect();
        if !too_long.is_empty() {
            return Err(ApiError::bad_request(too_long));
        }
        let payload_type = self
            .payload_type
            .map(|text| {
                vow_payload_type::PayloadType::parse(&text).map_err(|e| {
                    ApiError::invalid(format!("payloadType {text:?} is not a WIT type: {e}"))
                })
            })
            .transpose()?;
        Ok(vow_runtime::PromiseOptions {
            timeout: self.timeout_ms.map(std::time::Duration::from_millis),
            retention: self.retention_ms.map(std::time::Duration::from_millis),
            payload_type,
        })
    }
}

/// The input as `input` (bytes) or `inputJson`, not both (none is no
/// input). `function` must be an export that can settle a promise and
/// `payloadType` WIT text that its result fits, else 400.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WhenRequest)]
pub(crate) struct WhenBody {
    function: String,
    #[serde(default, deserialize_with = "integral::option_bytes")]
    #[schema(inline, value_type = integral::Bytes)]
    input: Option<Vec<u8>>,
    /// The input as a JSON value, sent as its JSON text
    input_json: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "integral::option_u64")]
    #[schema(inline, value_type = PromiseMs)]
    timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "integral::option_u64")]
    #[schema(inline, value_type = PromiseMs)]
    retention_ms: Option<u64>,
    /// The declared payload type, as WIT text (`u32`, `list<u8>`, `record {
    /// ... }`, ...); text that is not a WIT type is a 400
    payload_type: Option<String>,
}

/// `POST /v1/components/{cid}/when`: runs an export in a new worker with
/// an input, and answers the promise of its result.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/when",
    operation_id = "when",
    summary = "Run an export in a new worker with an input; answers the promise of its result",
    params(ComponentParams),
    request_body = WhenBody,
    responses(
        (status = 200, description = "success", body = PromiseBody),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn when(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    JsonBody(body): JsonBody<WhenBody>,
) -> Result<Json<PromiseBody>, ApiError> {
    let input = match (body.input, body.input_json) {
        (Some(bytes), None) => bytes,
        (None, Some(value)) => serde_json::to_vec(&value).unwrap_or_default(),
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give the input as `input` or as `inputJson`, not both",
            ));
        }
    };
    let options = OptionsBody {
        timeout_ms: body.timeout_ms,
        retention_ms: body.retention_ms,
        payload_type: body.payload_type,
    }
    .options()?;
    let id = state
        .executor
        .when(component, &body.function, input, options)
        .await?;
    let (info, _) = state.executor.promise(&id).await?;
    Ok(Json(PromiseBody::from(info)))
}

/// `function` must be an export that takes the settlement and can settle a
/// promise, and `payloadType` WIT text that its result fits, else 400.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ThenRequest)]
pub(crate) struct ThenBody {
    /// The promise to follow: `{cid}/{name}/{oplogIdx}`
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/.+/[0-9]{1,19}$"
    )]
    source: String,
    function: String,
    #[serde(default, deserialize_with = "integral::option_u64")]
    #[schema(inline, value_type = PromiseMs)]
    timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "integral::option_u64")]
    #[schema(inline, value_type = PromiseMs)]
    retention_ms: Option<u64>,
    /// The declared payload type, as WIT text (`u32`, `list<u8>`, `record {
    /// ... }`, ...); text that is not a WIT type is a 400
    payload_type: Option<String>,
}

/// `POST /v1/components/{cid}/then`: once a promise settles, runs an export
/// in a new worker with the settlement; answers the promise of its result.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/then",
    operation_id = "then",
    summary = "Once a promise settles, run an export in a new worker with the settlement; answers the promise of its result",
    params(ComponentParams),
    request_body = ThenBody,
    responses(
        (status = 200, description = "success", body = PromiseBody),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn then(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    JsonBody(body): JsonBody<ThenBody>,
) -> Result<Json<PromiseBody>, ApiError> {
    let source: PromiseId = body.source.parse().map_err(ApiError::from)?;
    let options = OptionsBody {
        timeout_ms: body.timeout_ms,
        retention_ms: body.retention_ms,
        payload_type: body.payload_type,
    }
    .options()?;
    let id = state
        .executor
        .then(&source, component, &body.function, options)
        .await?;
    let (info, _) = state.executor.promise(&id).await?;
    Ok(Json(PromiseBody::from(info)))
}
