//! Extractors that answer with [`ApiError`] instead of axum's plain-text
//! rejections, and that parse ids out of paths.

use std::str::FromStr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use vow_runtime::{ComponentId, PromiseId, WorkerId};

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
pub(crate) struct ComponentPath(pub(crate) ComponentId);

impl<S: Send + Sync> FromRequestParts<S> for ComponentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(cid) = Path::<String>::from_request_parts(parts, state).await?;
        parse_component_id(&cid)
            .map(Self)
            .map_err(ApiError::invalid)
    }
}

/// The `{cid}/workers/{name}` of a path.
pub(crate) struct WorkerPath(pub(crate) WorkerId);

impl<S: Send + Sync> FromRequestParts<S> for WorkerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((cid, name)) = Path::<(String, String)>::from_request_parts(parts, state).await?;
        let component = parse_component_id(&cid).map_err(ApiError::invalid)?;
        Ok(Self(WorkerId::new(component, name)))
    }
}

/// The `{cid}/workers/{name}/promises/{idx}` of a path.
pub(crate) struct PromisePath(pub(crate) PromiseId);

impl<S: Send + Sync> FromRequestParts<S> for PromisePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((cid, name, idx)) =
            Path::<(String, String, String)>::from_request_parts(parts, state).await?;
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
