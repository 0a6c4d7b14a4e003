//! `invoke` and `invoke-and-await`: calling a worker's exports with
//! arguments in Golem's JSON encoding or in WAVE text.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use vow_runtime::{FunctionType, Invocation, Val, WorkerId};

use crate::error::ApiError;
use crate::extract::{ApiQuery, JsonBody, WorkerPath};
use crate::json::{from_json_at, to_json};
use crate::routes::AppState;

/// The header that makes an invocation idempotent per worker.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `?function=F`.
#[derive(Deserialize)]
pub(crate) struct FunctionQuery {
    function: String,
}

/// The arguments, in one of two encodings.
#[derive(Deserialize)]
pub(crate) struct InvokeBody {
    /// Golem's JSON encoding, typed by the export's signature.
    params: Option<Vec<Value>>,
    /// WAVE text, one string per parameter.
    params_wave: Option<Vec<String>>,
}

/// `POST .../invoke-and-await?function=F`: runs the export after whatever is
/// queued on the worker and answers with its result.
#[tracing::instrument(skip_all, fields(worker = %worker, function = %query.function))]
pub(crate) async fn invoke_and_await(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<FunctionQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<Json<Value>, ApiError> {
    let invocation = invocation(&state, &worker, &query.function, body, &headers)?;
    let results = state
        .executor
        .submit(&worker, invocation)
        .await?
        .result()
        .await?;
    let result = results.first().map_or(Value::Null, to_json);
    Ok(Json(json!({ "result": result })))
}

/// `POST .../invoke?function=F`: queues the invocation and answers at once.
/// A repeated `Idempotency-Key` answers the same without queueing again.
#[tracing::instrument(skip_all, fields(worker = %worker, function = %query.function))]
pub(crate) async fn invoke(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<FunctionQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let invocation = invocation(&state, &worker, &query.function, body, &headers)?;
    // The invocation runs whether or not anyone awaits its outcome.
    let handle = state.executor.submit(&worker, invocation).await?;
    if !handle.fresh {
        tracing::debug!("repeated idempotency key; nothing queued");
    }
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

/// Checks the worker and the function and decodes the arguments.
fn invocation(
    state: &AppState,
    worker: &WorkerId,
    function: &str,
    body: InvokeBody,
    headers: &HeaderMap,
) -> Result<Invocation, ApiError> {
    // An unknown worker is reported before anything about the function.
    state.executor.worker_status(worker)?;
    let ty = state
        .executor
        .function_type(worker.component_id, function)?;
    let params = match (body.params, body.params_wave) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give either params or params_wave, not both",
            ));
        }
        (None, Some(texts)) => decode_wave(&ty, &texts)?,
        (json, None) => decode_json(&ty, &json.unwrap_or_default())?,
    };
    let mut invocation = Invocation::new(ty.name, params);
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key
            .to_str()
            .map_err(|_| ApiError::invalid("the Idempotency-Key header is not visible ASCII"))?;
        invocation = invocation.with_idempotency_key(key);
    }
    Ok(invocation)
}

/// Checks the number of arguments: one message if it is wrong.
fn check_count(ty: &FunctionType, given: usize) -> Result<(), ApiError> {
    if ty.params.len() == given {
        return Ok(());
    }
    let names: Vec<String> = ty
        .params
        .iter()
        .map(|(name, t)| format!("{name}: {}", vow_runtime::wit_type(t)))
        .collect();
    Err(ApiError::invalid(format!(
        "{} takes {} parameter(s) ({}), got {given}",
        ty.name,
        ty.params.len(),
        names.join(", ")
    )))
}

/// Decodes JSON arguments; one message per wrong argument.
fn decode_json(ty: &FunctionType, values: &[Value]) -> Result<Vec<Val>, ApiError> {
    check_count(ty, values.len())?;
    collect(
        ty.params
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, ((_, param), value))| from_json_at(param, value, format!("params[{i}]"))),
    )
}

/// Decodes WAVE arguments; one message per wrong argument.
fn decode_wave(ty: &FunctionType, texts: &[String]) -> Result<Vec<Val>, ApiError> {
    check_count(ty, texts.len())?;
    collect(
        ty.params
            .iter()
            .zip(texts)
            .enumerate()
            .map(|(i, ((_, param), text))| {
                Val::from_wave(param, text).map_err(|e| format!("params_wave[{i}]: {e:#}"))
            }),
    )
}

/// Every value, or every error.
fn collect(results: impl Iterator<Item = Result<Val, String>>) -> Result<Vec<Val>, ApiError> {
    let (mut values, mut errors) = (Vec::new(), Vec::new());
    for result in results {
        match result {
            Ok(v) => values.push(v),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(ApiError::bad_request(errors))
    }
}
