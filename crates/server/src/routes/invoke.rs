//! `invoke` and `invoke-and-await`: calling a worker's exports.
//!
//! The arguments come in one of three forms, chosen by the body:
//! - `params`, every element type-annotated (`{"typ", "value"}`), or no
//!   arguments at all: Golem 1.1's form; the answer is Golem's too, the
//!   results as a type-annotated tuple (see [`crate::typed`]);
//! - `params_json`: Vow's plain JSON, typed by the export's signature; the
//!   answer is `{"result": <plain JSON>}`;
//! - `params_wave`: WAVE text, one string per parameter; answered as plain
//!   JSON.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use vow_runtime::{ComponentId, Executor, FunctionType, Invocation, Val, WorkerConfig, WorkerId};

use crate::error::ApiError;
use crate::extract::{
    ApiQuery, ComponentParams, ComponentPath, JsonBody, WorkerParams, WorkerPath,
};
use crate::json::{from_json_at, to_json};
use crate::openapi::responses::{E400, E404, E409, E413, E500, E503, E504};
use crate::routes::{AppState, Empty};
use crate::typed::{TypeAnnotatedValue, analysed_type, from_typed, is_typed, typed_result};

/// The header that makes an invocation idempotent per worker.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `Idempotency-Key` header, as [`invocation`] reads it.
struct IdempotencyKey;

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let visible_ascii = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[\\t\\u0020-\\u007e]*$"));
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("A repeated key runs nothing new: `invoke` answers 200 `{}`, `invoke-and-await` the first outcome; visible ASCII, spaces and tabs"))
                .schema(Some(visible_ascii))
                .build(),
        ]
    }
}

/// `?function=F`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FunctionQuery {
    /// Export to invoke, as listed in the component's exports
    function: String,
}

/// At most one of `params` (Golem's type-annotated values, answered in the
/// same form), `params_json` (Vow's plain JSON, typed by the export) or
/// `params_wave` (WAVE text); none is no arguments. The arguments must fit
/// the export's signature (its `exports` entry), else 400 naming each
/// wrong one.
#[derive(Deserialize, ToSchema)]
#[schema(as = InvokeParameters)]
pub(crate) struct InvokeBody {
    #[schema(value_type = Option<Vec<TypeAnnotatedValue>>)]
    params: Option<Vec<Value>>,
    params_json: Option<Vec<Value>>,
    /// One string per parameter
    params_wave: Option<Vec<String>>,
}

/// An invocation's outcome.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvokeResult {
    /// Type-annotated (`{"typ", "value"}`, a tuple of the results) for
    /// `params`; plain JSON (null without a result) for `params_json` and
    /// `params_wave`
    result: Value,
}

/// How the result is written back.
enum Answer {
    /// Golem's `{"result": {"typ": ..., "value": ...}}`, with the
    /// `AnalysedType` of each result.
    Typed(Vec<Value>),
    /// Vow's `{"result": <plain JSON>}`.
    Plain,
}

/// `POST .../invoke-and-await?function=F`: runs the export after whatever is
/// queued on the worker and answers with its result.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/invoke-and-await",
    operation_id = "invoke_and_await_function",
    summary = "Invoke an export and wait for its result",
    params(WorkerParams, FunctionQuery, IdempotencyKey),
    request_body = InvokeBody,
    responses(
        (status = 200, description = "success", body = InvokeResult),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 413, response = E413),
        (status = 500, response = E500),
        (status = 503, response = E503),
        (status = 504, response = E504),
    ),
)]
#[tracing::instrument(skip_all, fields(worker = %worker, function = %query.function))]
pub(crate) async fn invoke_and_await(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<FunctionQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<Json<InvokeResult>, ApiError> {
    await_result(&state, &worker, &query.function, body, &headers).await
}

async fn await_result(
    state: &AppState,
    worker: &WorkerId,
    function: &str,
    body: InvokeBody,
    headers: &HeaderMap,
) -> Result<Json<InvokeResult>, ApiError> {
    let (invocation, answer) = invocation(state, worker, function, body, headers)?;
    let results = state
        .executor
        .submit(worker, invocation)
        .await?
        .result()
        .await?;
    let result = match answer {
        Answer::Plain => results.first().map_or(Value::Null, to_json),
        Answer::Typed(types) => typed_result(types, &results),
    };
    Ok(Json(InvokeResult { result }))
}

/// `POST .../invoke?function=F`: queues the invocation and answers once it
/// is stored. A repeated `Idempotency-Key` answers the same without
/// queueing again.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/invoke",
    operation_id = "invoke_function",
    summary = "Queue an invocation and return at once",
    params(WorkerParams, FunctionQuery, IdempotencyKey),
    request_body = InvokeBody,
    responses(
        (status = 200, description = "success", body = Empty),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 413, response = E413),
        (status = 500, response = E500),
    ),
)]
#[tracing::instrument(skip_all, fields(worker = %worker, function = %query.function))]
pub(crate) async fn invoke(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<FunctionQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<Json<Empty>, ApiError> {
    let (invocation, _) = invocation(&state, &worker, &query.function, body, &headers)?;
    // The invocation runs whether or not anyone awaits its outcome.
    let handle = state.executor.submit(&worker, invocation).await?;
    if !handle.fresh {
        tracing::debug!("repeated idempotency key; nothing queued");
    }
    Ok(Json(Empty {}))
}

/// Checks the function, then starts a worker with a fresh name for one
/// invocation of it (Golem's invocation without a worker name).
async fn ephemeral(
    state: &AppState,
    component: ComponentId,
    function: &str,
) -> Result<WorkerId, ApiError> {
    state.executor.function_type(component, function)?;
    let name = format!("ephemeral-{}", uuid::Uuid::new_v4());
    Ok(state
        .executor
        .start_worker(component, &name, WorkerConfig::default())
        .await?)
}

/// Deletes the worker of an invocation without a worker name.
fn forget(executor: &Executor, worker: &WorkerId) {
    if let Err(error) = executor.delete_worker(worker) {
        tracing::warn!(%worker, %error, "cannot delete the worker of an invocation without a worker name");
    }
}

/// `POST /v1/components/{cid}/invoke-and-await?function=F`: runs the export
/// on a new worker of its own and answers with its result; the worker is
/// deleted afterwards.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/invoke-and-await",
    operation_id = "invoke_and_await_function_without_name",
    summary = "Invoke an export on a new worker of its own (deleted afterwards) and wait for its result",
    params(ComponentParams, FunctionQuery, IdempotencyKey),
    request_body = InvokeBody,
    responses(
        (status = 200, description = "success", body = InvokeResult),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 413, response = E413),
        (status = 500, response = E500),
        (status = 503, response = E503),
        (status = 504, response = E504),
    ),
)]
#[tracing::instrument(skip_all, fields(component = %component, function = %query.function))]
pub(crate) async fn invoke_and_await_ephemeral(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    ApiQuery(query): ApiQuery<FunctionQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<Json<InvokeResult>, ApiError> {
    let worker = ephemeral(&state, component, &query.function).await?;
    let answer = await_result(&state, &worker, &query.function, body, &headers).await;
    forget(&state.executor, &worker);
    answer
}

/// `POST /v1/components/{cid}/invoke?function=F`: queues the export on a new
/// worker of its own and answers at once; the worker is deleted once the
/// invocation has finished.
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/invoke",
    operation_id = "invoke_function_without_name",
    summary = "Queue an export on a new worker of its own (deleted once it has run) and return at once",
    params(ComponentParams, FunctionQuery, IdempotencyKey),
    request_body = InvokeBody,
    responses(
        (status = 200, description = "success", body = Empty),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 413, response = E413),
        (status = 503, response = E503),
    ),
)]
#[tracing::instrument(skip_all, fields(component = %component, function = %query.function))]
pub(crate) async fn invoke_ephemeral(
    State(state): State<AppState>,
    ComponentPath(component): ComponentPath,
    ApiQuery(query): ApiQuery<FunctionQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<Json<Empty>, ApiError> {
    let worker = ephemeral(&state, component, &query.function).await?;
    let queued = async {
        let (invocation, _) = invocation(&state, &worker, &query.function, body, &headers)?;
        Ok::<_, ApiError>(state.executor.submit(&worker, invocation).await?)
    }
    .await;
    match queued {
        Ok(handle) => {
            let executor = state.executor.clone();
            tokio::spawn(async move {
                let _ = handle.result().await;
                forget(&executor, &worker);
            });
            Ok(Json(Empty {}))
        }
        Err(error) => {
            forget(&state.executor, &worker);
            Err(error)
        }
    }
}

/// Checks the worker and the function and decodes the arguments; also
/// says how to answer.
fn invocation(
    state: &AppState,
    worker: &WorkerId,
    function: &str,
    body: InvokeBody,
    headers: &HeaderMap,
) -> Result<(Invocation, Answer), ApiError> {
    // An unknown worker is reported before anything about the function.
    state.executor.worker_status(worker)?;
    let ty = state
        .executor
        .function_type(worker.component_id, function)?;
    let (params, answer) = match (body.params, body.params_json, body.params_wave) {
        (Some(values), None, None) => {
            let plain: Vec<String> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| !is_typed(v))
                .map(|(i, _)| format!("params[{i}] is not a type-annotated value ({{\"typ\": ..., \"value\": ...}}); plain JSON arguments go in params_json"))
                .collect();
            if !plain.is_empty() {
                return Err(ApiError::bad_request(plain));
            }
            decode_typed(&ty, &values)?
        }
        (None, Some(values), None) => (decode_json(&ty, &values)?, Answer::Plain),
        (None, None, Some(texts)) => (decode_wave(&ty, &texts)?, Answer::Plain),
        (None, None, None) => decode_typed(&ty, &[])?,
        _ => {
            return Err(ApiError::invalid(
                "give one of params, params_json and params_wave",
            ));
        }
    };
    let mut invocation = Invocation::new(ty.name, params);
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key
            .to_str()
            .map_err(|_| ApiError::invalid("the Idempotency-Key header is not visible ASCII"))?;
        invocation = invocation.with_idempotency_key(key);
    }
    if let Some(parent) = crate::trace::trace_parent(headers) {
        invocation = invocation.with_trace_parent(parent);
    }
    Ok((invocation, answer))
}

/// Decodes type-annotated arguments, and takes the results' types (so that
/// nothing runs whose answer cannot be sent).
fn decode_typed(ty: &FunctionType, values: &[Value]) -> Result<(Vec<Val>, Answer), ApiError> {
    check_count(ty, values.len())?;
    let types = ty
        .results
        .iter()
        .map(analysed_type)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ApiError::invalid(format!(
                "{} cannot answer in the type-annotated form: {e}",
                ty.name
            ))
        })?;
    let params = collect(
        ty.params
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, ((_, param), value))| from_typed(param, value, format!("params[{i}]"))),
    )?;
    Ok((params, Answer::Typed(types)))
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
