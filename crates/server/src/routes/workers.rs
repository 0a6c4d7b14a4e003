//! `/v1/components/{cid}/workers`: start, list, describe and delete workers,
//! and read their output.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use vow_runtime::{WorkerConfig, WorkerId, WorkerMetadata};

use crate::error::ApiError;
use crate::extract::{
    ApiQuery, ComponentParams, ComponentPath, JsonBody, WorkerName, WorkerParams, WorkerPath,
};
use crate::integral;
use crate::openapi::responses::{E400, E404, E409, E413, E503};
use crate::routes::filter::{GolemStatus, WorkerFilter};
use crate::routes::{AppState, Empty};
use crate::time::rfc3339;

/// A worker's id.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WorkerId)]
pub(crate) struct WorkerIdBody {
    #[schema(format = Uuid)]
    component_id: String,
    worker_name: String,
}

impl From<&WorkerId> for WorkerIdBody {
    fn from(id: &WorkerId) -> Self {
        Self {
            component_id: id.component_id.to_string(),
            worker_name: id.worker_name.clone(),
        }
    }
}

/// A worker's metadata in Golem 1.1's `WorkerMetadata` shape. (The
/// fields are declared in the order Golem's server writes them: sorted.)
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WorkerMetadata)]
pub(crate) struct WorkerBody {
    /// Always empty: Vow has no plugins
    #[schema(value_type = Vec<uuid::Uuid>)]
    active_plugins: [String; 0],
    args: Vec<String>,
    component_size: u64,
    component_version: u64,
    #[schema(format = DateTime)]
    created_at: String,
    env: BTreeMap<String, String>,
    /// Left out when there is none (Golem's document has no `null` here)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_error: Option<String>,
    /// Always empty: Vow keeps no worker-owned resources between
    /// invocations
    #[schema(value_type = BTreeMap<String, Object>)]
    owned_resources: BTreeMap<String, Value>,
    pending_invocation_count: usize,
    retry_count: u64,
    status: GolemStatus,
    /// Linear memory of the worker's instance (its last one when it is out
    /// of memory)
    total_linear_memory_size: u64,
    /// Always empty: Vow keeps one version per component
    #[schema(value_type = Vec<Object>)]
    updates: [Value; 0],
    worker_id: WorkerIdBody,
}

impl WorkerBody {
    pub(crate) fn new(meta: WorkerMetadata, component_size: usize) -> Self {
        Self {
            active_plugins: [],
            args: meta.args,
            component_size: component_size as u64,
            component_version: meta.component_version,
            created_at: rfc3339(meta.created_at),
            env: meta.env.into_iter().collect(),
            last_error: meta.last_error,
            owned_resources: BTreeMap::new(),
            pending_invocation_count: meta.pending_invocations,
            retry_count: meta.retry_count,
            status: GolemStatus::from(meta.status),
            total_linear_memory_size: meta.linear_memory,
            updates: [],
            worker_id: WorkerIdBody::from(&meta.id),
        }
    }
}

/// Golem's `WorkerCreationRequest` (Vow also takes it without `args` and
/// `env`).
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateWorker)]
pub(crate) struct CreateWorker {
    #[schema(inline, value_type = WorkerName)]
    name: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The worker started.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WorkerCreated)]
pub(crate) struct Created {
    component_version: u64,
    worker_id: WorkerIdBody,
}

/// `POST /v1/components/{cid}/workers`: starts a worker (200, as Golem).
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers",
    operation_id = "launch_new_worker",
    summary = "Start a worker",
    params(ComponentParams),
    request_body = CreateWorker,
    responses(
        (status = 200, description = "success", body = Created),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 413, response = E413),
        (status = 503, response = E503),
    ),
)]
#[tracing::instrument(skip_all, fields(component = %component, worker = %body.name))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    JsonBody(body): JsonBody<CreateWorker>,
) -> Result<Json<Created>, ApiError> {
    let config = WorkerConfig {
        args: body.args,
        env: body.env.into_iter().collect(),
    };
    let id = state
        .executor
        .start_worker(component, &body.name, config)
        .await?;
    Ok(Json(Created {
        component_version: 0,
        worker_id: WorkerIdBody::from(&id),
    }))
}

/// Golem's `ScanCursor`: where the next page of a listing starts. (Vow's
/// cursor is the number of matching workers, in name order, already
/// listed; `layer` is always 0.)
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScanCursor {
    #[serde(deserialize_with = "integral::u64")]
    #[schema(inline, value_type = integral::Uint64)]
    cursor: u64,
    #[serde(deserialize_with = "integral::u64")]
    #[schema(inline, value_type = integral::Uint64)]
    layer: u64,
}

/// Golem's `WorkersMetadataResponse`: a page of workers.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkerList {
    /// Where the next page starts; left out on the last page (Golem's
    /// document has no `null` here)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    cursor: Option<ScanCursor>,
    workers: Vec<WorkerBody>,
}

/// Workers listed per page unless `count` says otherwise (Golem's default).
const DEFAULT_PAGE: u64 = 50;

/// One page of the component's workers that match `filter`, by name.
fn list_page(
    state: &AppState,
    component: vow_runtime::ComponentId,
    filter: Option<&WorkerFilter>,
    cursor: ScanCursor,
    count: Option<u64>,
) -> Result<WorkerList, ApiError> {
    // An unknown component is a 404, not an empty list.
    let size = state.executor.component(component)?.size;
    let count = usize::try_from(count.unwrap_or(DEFAULT_PAGE)).unwrap_or(usize::MAX);
    let skip = usize::try_from(cursor.cursor).unwrap_or(usize::MAX);
    let mut matching: Vec<WorkerMetadata> = state
        .executor
        .workers(Some(component))
        .into_iter()
        .filter(|w| filter.is_none_or(|f| f.matches(w)))
        .collect();
    matching.sort_by(|a, b| a.id.worker_name.cmp(&b.id.worker_name));
    let total = matching.len();
    let workers: Vec<WorkerBody> = matching
        .into_iter()
        .skip(skip)
        .take(count)
        .map(|meta| WorkerBody::new(meta, size))
        .collect();
    let listed = skip.saturating_add(workers.len());
    let cursor = (listed < total).then_some(ScanCursor {
        cursor: listed as u64,
        layer: 0,
    });
    Ok(WorkerList { cursor, workers })
}

/// `GET /v1/components/{cid}/workers?filter=F&cursor=L/C&count=N&precise=B`:
/// the component's workers, by name, a page at a time; every `filter` must
/// match. `precise` is accepted: Vow's metadata is always current.
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers",
    operation_id = "get_workers_metadata",
    summary = "The component's workers, by name, a page at a time",
    params(ComponentParams, ListQuery),
    responses(
        (status = 200, description = "success", body = WorkerList),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    RawQuery(query): RawQuery,
) -> Result<Json<WorkerList>, ApiError> {
    let query = ListQuery::parse(&query.unwrap_or_default())?;
    let filter = (!query.filters.is_empty()).then_some(WorkerFilter::And {
        filters: query.filters,
    });
    Ok(Json(list_page(
        &state,
        component,
        filter.as_ref(),
        query.cursor,
        query.count,
    )?))
}

/// The query of the worker listing. Golem repeats `filter=`, which axum's
/// `Query` cannot read into a list, so it is parsed here, and described
/// here ([`IntoParams`]) beside the parser.
#[derive(Default)]
pub(crate) struct ListQuery {
    filters: Vec<WorkerFilter>,
    cursor: ScanCursor,
    count: Option<u64>,
}

impl ListQuery {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "filter" => parsed
                    .filters
                    .push(WorkerFilter::parse(&value).map_err(ApiError::invalid)?),
                "cursor" => parsed.cursor = parse_cursor(&value).map_err(ApiError::invalid)?,
                "count" => {
                    parsed.count = Some(value.parse().map_err(|_| {
                        ApiError::invalid(format!("count: expected a number, got {value:?}"))
                    })?);
                }
                "precise" => {
                    value.parse::<bool>().map_err(|_| {
                        ApiError::invalid(format!("precise: expected true or false, got {value:?}"))
                    })?;
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown query parameter {other:?} (expected filter, cursor, count or precise)"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// What `filter=` is.
const FILTER: &str = "`<property> <comparator> <value>` (property `name`, `status`, `version`, `created_at` or `env.NAME`; comparator `==`, `!=`, `>=`, `>`, `<=`, `<`, `like`, `notlike`, the last two for `name` and `env` only; a `created_at` is RFC 3339 UTC); repeated filters must all match";

/// What `precise=` is.
const PRECISE: &str = "Accepted for Golem's clients; Vow's metadata is always current";

impl IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
        };
        let text = |pattern: String| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
        };
        let filters = ArrayBuilder::new().items(text(WorkerFilter::text_pattern()));
        let cursor = text("^[0-9]{1,19}/[0-9]{1,19}$".to_owned());
        let precise = ObjectBuilder::new().schema_type(Type::Boolean);
        vec![
            query("filter", FILTER)
                .style(Some(ParameterStyle::Form))
                .explode(Some(true))
                .schema(Some(filters))
                .build(),
            query(
                "cursor",
                "`layer/cursor` from the previous page's `cursor` (default 0/0)",
            )
            .schema(Some(cursor))
            .build(),
            query("count", "Most workers per page (default 50)")
                .schema(Some(integral::Uint64::schema()))
                .build(),
            query("precise", PRECISE).schema(Some(precise)).build(),
        ]
    }
}

/// `layer/cursor`, as Golem's listing takes its cursor.
fn parse_cursor(text: &str) -> Result<ScanCursor, String> {
    let Some((layer, cursor)) = text.split_once('/') else {
        return Err("Invalid cursor, must have 'layer/cursor' format".to_owned());
    };
    Ok(ScanCursor {
        layer: layer
            .parse()
            .map_err(|_| format!("Invalid layer part: {layer}"))?,
        cursor: cursor
            .parse()
            .map_err(|_| format!("Invalid cursor part: {cursor}"))?,
    })
}

/// Golem's `WorkersMetadataRequest`: which workers, and which page.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkersMetadataRequest)]
pub(crate) struct FindWorkers {
    filter: Option<WorkerFilter>,
    cursor: Option<ScanCursor>,
    #[serde(default, deserialize_with = "integral::option_u64")]
    #[schema(inline, value_type = integral::Uint64)]
    count: Option<u64>,
    #[expect(
        dead_code,
        reason = "accepted for Golem's clients; Vow's metadata is always current"
    )]
    precise: Option<bool>,
}

/// `POST /v1/components/{cid}/workers/find`: as the listing, with Golem's
/// `WorkerFilter` tree (`And`, `Or`, `Not`, ...) in the body.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/find",
    operation_id = "find_workers_metadata",
    summary = "The component's workers that match a filter tree, a page at a time",
    params(ComponentParams),
    request_body = FindWorkers,
    responses(
        (status = 200, description = "success", body = WorkerList),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
)]
pub(crate) async fn find(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    JsonBody(body): JsonBody<FindWorkers>,
) -> Result<Json<WorkerList>, ApiError> {
    Ok(Json(list_page(
        &state,
        component,
        body.filter.as_ref(),
        body.cursor.unwrap_or_default(),
        body.count,
    )?))
}

/// `GET /v1/components/{cid}/workers/{name}`: one worker's metadata.
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/{name}",
    operation_id = "get_worker_metadata",
    summary = "A worker's metadata",
    params(WorkerParams),
    responses(
        (status = 200, description = "success", body = WorkerBody),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<WorkerBody>, ApiError> {
    metadata(&state, &worker)
}

fn metadata(state: &AppState, worker: &WorkerId) -> Result<Json<WorkerBody>, ApiError> {
    let meta = state.executor.worker_metadata(worker)?;
    let size = state.executor.component(worker.component_id)?.size;
    Ok(Json(WorkerBody::new(meta, size)))
}

/// `GET .../workers/find`: the worker named `find` (the path is also
/// `workers/find`'s, which only takes POST).
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/find",
    operation_id = "getWorkerNamedFind",
    summary = "The metadata of the worker named `find`",
    params(ComponentParams),
    responses(
        (status = 200, description = "success", body = WorkerBody),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn get_named_find(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
) -> Result<Json<WorkerBody>, ApiError> {
    metadata(&state, &WorkerId::new(component, "find"))
}

/// `DELETE .../workers/find`: deletes the worker named `find`.
#[utoipa::path(
    delete,
    path = "/v1/components/{cid}/workers/find",
    operation_id = "deleteWorkerNamedFind",
    summary = "Stop and remove the worker named `find`",
    params(ComponentParams),
    responses(
        (status = 200, description = "success", body = Empty),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn delete_named_find(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
) -> Result<Json<Empty>, ApiError> {
    state
        .executor
        .delete_worker(&WorkerId::new(component, "find"))?;
    Ok(Json(Empty {}))
}

/// `DELETE /v1/components/{cid}/workers/{name}`: stops and removes a worker.
#[utoipa::path(
    delete,
    path = "/v1/components/{cid}/workers/{name}",
    operation_id = "delete_worker",
    summary = "Stop and remove a worker",
    params(WorkerParams),
    responses(
        (status = 200, description = "success", body = Empty),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
)]
#[tracing::instrument(skip_all, fields(worker = %worker))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<Empty>, ApiError> {
    state.executor.delete_worker(&worker)?;
    Ok(Json(Empty {}))
}

/// `?recovery-immediately=B`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InterruptQuery {
    /// Go on at once, as after a crash, instead of staying interrupted
    /// until resumed (default false)
    #[serde(rename = "recovery-immediately")]
    recovery_immediately: Option<bool>,
}

/// `POST /v1/components/{cid}/workers/{name}/interrupt?recovery-immediately=B`
/// (Golem's shape): stops the invocation in progress. The worker stays
/// `interrupted` until resumed, or goes on at once with
/// `recovery-immediately=true`.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/interrupt",
    operation_id = "interrupt_worker",
    summary = "Stop the worker's invocation in progress; it runs again by replay when resumed",
    params(WorkerParams, InterruptQuery),
    responses(
        (status = 200, description = "success", body = Empty),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
    ),
)]
pub(crate) async fn interrupt(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<InterruptQuery>,
) -> Result<Json<Empty>, ApiError> {
    state
        .executor
        .interrupt_worker(&worker, query.recovery_immediately.unwrap_or(false))?;
    Ok(Json(Empty {}))
}

/// `POST /v1/components/{cid}/workers/{name}/resume`: lets an interrupted
/// worker go on.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/resume",
    operation_id = "resume_worker",
    summary = "Let an interrupted worker go on",
    params(WorkerParams),
    responses(
        (status = 200, description = "success", body = Empty),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
    ),
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<Empty>, ApiError> {
    state.executor.resume_worker(&worker)?;
    Ok(Json(Empty {}))
}

/// What the worker wrote to stdout and stderr, and how many bytes of each
/// were dropped past the capture limit.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WorkerLogs)]
pub(crate) struct Logs {
    stdout: String,
    stderr: String,
    stdout_dropped: u64,
    stderr_dropped: u64,
}

/// `GET /v1/components/{cid}/workers/{name}/logs`: captured stdout and
/// stderr, decoded as UTF-8 with invalid bytes replaced.
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/{name}/logs",
    operation_id = "getWorkerLogs",
    summary = "What the worker wrote to stdout and stderr",
    params(WorkerParams),
    responses(
        (status = 200, description = "success", body = Logs),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn logs(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<Logs>, ApiError> {
    let output = state.executor.worker_output(&worker)?;
    Ok(Json(Logs {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout_dropped: output.stdout_dropped,
        stderr_dropped: output.stderr_dropped,
    }))
}
