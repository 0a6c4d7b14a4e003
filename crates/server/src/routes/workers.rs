//! `/v1/components/{cid}/workers`: start, list, describe and delete workers,
//! and read their output.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vow_runtime::{WorkerConfig, WorkerId, WorkerMetadata};

use crate::error::ApiError;
use crate::extract::{ApiQuery, ComponentPath, JsonBody, WorkerPath};
use crate::routes::AppState;
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

/// A worker's metadata as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkerBody {
    worker_id: WorkerIdBody,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    status: &'static str,
    component_version: u64,
    retry_count: u64,
    created_at: String,
    last_error: Option<String>,
    pending_invocation_count: usize,
}

impl From<WorkerMetadata> for WorkerBody {
    fn from(meta: WorkerMetadata) -> Self {
        Self {
            worker_id: WorkerIdBody::from(&meta.id),
            args: meta.args,
            env: meta.env.into_iter().collect(),
            status: meta.status.as_str(),
            component_version: meta.component_version,
            retry_count: meta.retry_count,
            created_at: rfc3339(meta.created_at),
            last_error: meta.last_error,
            pending_invocation_count: meta.pending_invocations,
        }
    }
}

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
    worker_id: WorkerIdBody,
    component_version: u64,
}

/// `POST /v1/components/{cid}/workers`: starts a worker.
#[tracing::instrument(skip_all, fields(component = %component, worker = %body.name))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    JsonBody(body): JsonBody<CreateWorker>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let config = WorkerConfig {
        args: body.args,
        env: body.env.into_iter().collect(),
    };
    let id = state
        .executor
        .start_worker(component, &body.name, config)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            worker_id: WorkerIdBody::from(&id),
            component_version: 0,
        }),
    ))
}

#[derive(Serialize)]
pub(crate) struct WorkerList {
    workers: Vec<WorkerBody>,
}

/// `GET /v1/components/{cid}/workers`: the component's workers, by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
) -> Result<Json<WorkerList>, ApiError> {
    // An unknown component is a 404, not an empty list.
    state.executor.component(component)?;
    let workers = state.executor.workers(Some(component));
    Ok(Json(WorkerList {
        workers: workers.into_iter().map(WorkerBody::from).collect(),
    }))
}

/// `GET /v1/components/{cid}/workers/{name}`: one worker's metadata.
pub(crate) async fn get(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
) -> Result<Json<WorkerBody>, ApiError> {
    Ok(Json(state.executor.worker_metadata(&worker)?.into()))
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

/// Most oplog entries one page may hold.
const MAX_OPLOG_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OplogQuery {
    /// First index to return (default 1).
    from: Option<u64>,
    /// Most entries to return (default and maximum 1000).
    count: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OplogEntryBody {
    index: u64,
    /// Milliseconds since the Unix epoch.
    at: u64,
    entry: vow_runtime::OplogEntry,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OplogPage {
    entries: Vec<OplogEntryBody>,
    /// The `from` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// `GET /v1/components/{cid}/workers/{name}/oplog?from=N&count=M`: a page
/// of the worker's operation log, from the store.
pub(crate) async fn oplog(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<OplogQuery>,
) -> Result<Json<OplogPage>, ApiError> {
    let from = query.from.unwrap_or(1).max(1);
    let count = query
        .count
        .unwrap_or(MAX_OPLOG_PAGE)
        .clamp(1, MAX_OPLOG_PAGE);
    // One more than asked tells whether another page follows.
    let mut records = state
        .executor
        .worker_oplog(&worker, from, count + 1)
        .await?;
    let next = (records.len() > count).then(|| {
        records.truncate(count);
        from + count as u64
    });
    let entries = records
        .into_iter()
        .map(|r| OplogEntryBody {
            index: r.index,
            at: r
                .at
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            entry: r.entry,
        })
        .collect();
    Ok(Json(OplogPage { entries, next }))
}
