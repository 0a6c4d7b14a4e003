//! `/v1/components/{cid}/workers`: start, list, describe and delete workers,
//! and read their output.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vow_runtime::{WorkerConfig, WorkerId, WorkerMetadata};

use crate::error::ApiError;
use crate::extract::{ApiQuery, ComponentPath, JsonBody, WorkerPath};
use crate::integral;
use crate::routes::AppState;
use crate::routes::filter::{WorkerFilter, golem_status};
use crate::time::rfc3339;

/// A worker id as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkerIdBody {
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

/// A worker's metadata in Golem 1.1's `WorkerMetadata` shape. The fields
/// are declared in the order Golem's server writes them (sorted).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkerBody {
    /// Vow has no plugins.
    active_plugins: [String; 0],
    args: Vec<String>,
    component_size: u64,
    component_version: u64,
    created_at: String,
    env: BTreeMap<String, String>,
    /// Left out when there is none: Golem's document has no `null` here.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// Vow keeps no worker-owned resources between invocations.
    owned_resources: BTreeMap<String, Value>,
    pending_invocation_count: usize,
    retry_count: u64,
    status: &'static str,
    total_linear_memory_size: u64,
    /// Vow keeps one version per component: no updates.
    updates: [Value; 0],
    worker_id: WorkerIdBody,
}

impl WorkerBody {
    fn new(meta: WorkerMetadata, component_size: usize) -> Self {
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
            status: golem_status(meta.status),
            total_linear_memory_size: meta.linear_memory,
            updates: [],
            worker_id: WorkerIdBody::from(&meta.id),
        }
    }
}

/// Golem's `WorkerCreationRequest` (Vow also takes it without `args` and
/// `env`).
#[derive(Deserialize)]
pub(crate) struct CreateWorker {
    name: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Created {
    component_version: u64,
    worker_id: WorkerIdBody,
}

/// `POST /v1/components/{cid}/workers`: starts a worker (200, as Golem).
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

/// Golem's `ScanCursor`: where the next page of a listing starts. Vow's
/// cursor is the number of matching workers (in name order) already
/// listed; `layer` is always 0.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScanCursor {
    #[serde(deserialize_with = "integral::u64")]
    cursor: u64,
    #[serde(deserialize_with = "integral::u64")]
    layer: u64,
}

/// Golem's `WorkersMetadataResponse`.
#[derive(Serialize)]
pub(crate) struct WorkerList {
    /// Left out on the last page: Golem's document has no `null` here.
    #[serde(skip_serializing_if = "Option::is_none")]
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
pub(crate) async fn list(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    RawQuery(query): RawQuery,
) -> Result<Json<WorkerList>, ApiError> {
    let (mut filters, mut cursor, mut count) = (Vec::new(), ScanCursor::default(), None);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "filter" => filters.push(WorkerFilter::parse(&value).map_err(ApiError::invalid)?),
            "cursor" => cursor = parse_cursor(&value).map_err(ApiError::invalid)?,
            "count" => {
                count = Some(value.parse().map_err(|_| {
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
    let filter = (!filters.is_empty()).then_some(WorkerFilter::And { filters });
    Ok(Json(list_page(
        &state,
        component,
        filter.as_ref(),
        cursor,
        count,
    )?))
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

/// Golem's `WorkersMetadataRequest`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindWorkers {
    filter: Option<WorkerFilter>,
    cursor: Option<ScanCursor>,
    #[serde(default, deserialize_with = "integral::option_u64")]
    count: Option<u64>,
    #[expect(
        dead_code,
        reason = "accepted for Golem's clients; Vow's metadata is always current"
    )]
    precise: Option<bool>,
}

/// `POST /v1/components/{cid}/workers/find`: as the listing, with Golem's
/// `WorkerFilter` tree (`And`, `Or`, `Not`, ...) in the body.
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
pub(crate) async fn get_named_find(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
) -> Result<Json<WorkerBody>, ApiError> {
    metadata(&state, &WorkerId::new(component, "find"))
}

/// `DELETE .../workers/find`: deletes the worker named `find`.
pub(crate) async fn delete_named_find(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
) -> Result<Json<Value>, ApiError> {
    state
        .executor
        .delete_worker(&WorkerId::new(component, "find"))?;
    Ok(Json(json!({})))
}

/// `DELETE /v1/components/{cid}/workers/{name}`: stops and removes a worker.
#[tracing::instrument(skip_all, fields(worker = %worker))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<Value>, ApiError> {
    state.executor.delete_worker(&worker)?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InterruptQuery {
    #[serde(rename = "recovery-immediately")]
    recovery_immediately: Option<bool>,
}

/// `POST /v1/components/{cid}/workers/{name}/interrupt?recovery-immediately=B`
/// (Golem's shape): stops the invocation in progress. The worker stays
/// `interrupted` until resumed, or goes on at once with
/// `recovery-immediately=true`.
pub(crate) async fn interrupt(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<InterruptQuery>,
) -> Result<Json<Value>, ApiError> {
    state
        .executor
        .interrupt_worker(&worker, query.recovery_immediately.unwrap_or(false))?;
    Ok(Json(json!({})))
}

/// `POST /v1/components/{cid}/workers/{name}/resume`: lets an interrupted
/// worker go on.
pub(crate) async fn resume(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<Value>, ApiError> {
    state.executor.resume_worker(&worker)?;
    Ok(Json(json!({})))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Logs {
    stdout: String,
    stderr: String,
    stdout_dropped: u64,
    stderr_dropped: u64,
}

/// `GET /v1/components/{cid}/workers/{name}/logs`: captured stdout and
/// stderr, decoded as UTF-8 with invalid bytes replaced.
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
