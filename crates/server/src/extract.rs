//! Extractors that answer with [`ApiError`] instead of axum's plain-text
//! rejections, and that parse ids out of paths. The path extractors read
//! [`ComponentParams`], [`WorkerParams`] and [`PromiseParams`], which are
//! also what the OpenAPI document says of those paths.

use std::str::FromStr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use vow_runtime::{ComponentId, MAX_WORKER_NAME_LEN, PromiseId, WorkerId};

use crate::error::ApiError;
use crate::routes::AppState;

/// A JSON request body (`Content-Type: application/json`), at most
/// [`ServerConfig::max_body_bytes`](crate::ServerConfig) long.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| Self(value))
            .map_err(|r| ApiError::from_json_rejection(r, state.config.max_body_bytes))
    }
}

/// A raw request body of any content type, at most
/// [`ServerConfig::max_component_bytes`](crate::ServerConfig) long (the only
/// raw body is a component upload).
pub(crate) struct RawBody(pub(crate) Bytes);

/// Any bytes.
impl PartialSchema for RawBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for RawBody {}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|r| ApiError::from_bytes_rejection(r, state.config.max_component_bytes))
    }
}

/// Query parameters.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Query::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// The `{cid}` of a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ComponentParams {
    /// Component id
    #[param(format = Uuid)]
    cid: String,
}

/// The `{cid}/workers/{name}` of a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct WorkerParams {
    /// Component id
    #[param(format = Uuid)]
    cid: String,
    /// Worker name (1-256 bytes, no `/`, no control characters)
    #[param(inline, value_type = WorkerName)]
    name: String,
}

/// The `{cid}/workers/{name}/promises/{idx}` of a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PromiseParams {
    /// Component id
    #[param(format = Uuid)]
    cid: String,
    /// Worker name (1-256 bytes, no `/`, no control characters)
    #[param(inline, value_type = WorkerName)]
    name: String,
    /// The promise's oplog index (of its creation)
    idx: String,
}

/// The schema of a worker name, in a path or a body: 1-256 bytes, no `/`,
/// no control characters, as the runtime checks it. (JSON Schema counts
/// characters, not bytes: `maxLength` lets through a name of 256
/// characters that is longer than 256 bytes in UTF-8, which the
/// description says.)
pub(crate) struct WorkerName;

impl PartialSchema for WorkerName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_WORKER_NAME_LEN))
            .pattern(Some("^[^/\\u0000-\\u001f\\u007f-\\u009f]+$"))
            .description(Some("1-256 bytes of UTF-8, no `/`, no control characters"))
            .into()
    }
}

impl ToSchema for WorkerName {}

/// The `{cid}` of a path, parsed.
pub(crate) struct ComponentPath(pub(crate) ComponentId);

impl<S: Send + Sync> FromRequestParts<S> for ComponentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(ComponentParams { cid }) = Path::from_request_parts(parts, state).await?;
        parse_component_id(&cid)
            .map(Self)
            .map_err(ApiError::invalid)
    }
}

/// The `{cid}/workers/{name}` of a path, parsed.
pub(crate) struct WorkerPath(pub(crate) WorkerId);

impl<S: Send + Sync> FromRequestParts<S> for WorkerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(WorkerParams { cid, name }) = Path::from_request_parts(parts, state).await?;
        let component = parse_component_id(&cid).map_err(ApiError::invalid)?;
        Ok(Self(WorkerId::new(component, name)))
    }
}

/// The `{cid}/workers/{name}/promises/{idx}` of a path, parsed.
pub(crate) struct PromisePath(pub(crate) PromiseId);

impl<S: Send + Sync> FromRequestParts<S> for PromisePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(PromiseParams { cid, name, idx }) = Path::from_request_parts(parts, state).await?;
        let component = parse_component_id(&cid).map_err(ApiError::invalid)?;
        let oplog_idx = idx.parse().map_err(|_| {
            ApiError::invalid(format!(
                "invalid promise index {idx:?}: expected the oplog index of its creation, a number"
            ))
        })?;
        Ok(Self(PromiseId {
            worker_id: WorkerId::new(component, name),
            oplog_idx,
        }))
    }
}

/// Parses a component id; the error says why it is not one.
pub(crate) fn parse_component_id(text: &str) -> Result<ComponentId, String> {
    ComponentId::from_str(text).map_err(|e| format!("invalid component id {text:?}: {e}"))
}
