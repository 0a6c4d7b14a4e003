//! Completion links: minting one for a promise (with the API token), and
//! what its holder may do with it (with the link's token alone).
//!
//! The holder's routes, under `/v1/links/{token}`, are the only ones the
//! API token does not guard: the link's token is their authorization, and
//! it names one promise and the actions allowed on it.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use vow_runtime::links::{LinkAction, LinkGrant, LinkRequest};

use crate::error::ApiError;
use crate::extract::{JsonBody, PromisePath};
use crate::integral;
use crate::routes::AppState;
use crate::routes::promises::{Payload, PromiseBody};
use crate::time::rfc3339;

/// The optional body of `.../promises/{idx}/link`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LinkOptions {
    /// Seconds the link lives (default 7 days, at most 366).
    #[serde(default, deserialize_with = "integral::option_u64")]
    expires_in_secs: Option<u64>,
    /// What its holder may do (default `complete`).
    #[serde(default)]
    action: LinkAction,
}

/// A minted link.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkBody {
    token: String,
    url: String,
    action: LinkAction,
    expires_at: String,
}

fn millis(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `POST .../workers/{name}/promises/{idx}/link`: a completion link for a
/// pending promise. The body is optional.
#[tracing::instrument(skip_all, fields(promise = %id))]
pub(crate) async fn mint(
    State(state): State<AppState>,
    PromisePath(id): PromisePath,
    body: Bytes,
) -> Result<Json<LinkBody>, ApiError> {
    let options: LinkOptions = if body.iter().all(u8::is_ascii_whitespace) {
        LinkOptions::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid link options: {e}")))?
    };
    if let Err(error) = state.executor.promise(&id).await {
        // Name an unknown worker as such.
        state.executor.worker_status(&id.worker_id)?;
        return Err(error.into());
    }
    let link = state
        .executor
        .completion_link(
            &id,
            LinkRequest {
                expires_in: options.expires_in_secs.map(Duration::from_secs),
                action: options.action,
            },
        )
        .await?;
    Ok(Json(LinkBody {
        url: link
            .url
            .unwrap_or_else(|| format!("/v1/links/{}", link.token)),
        token: link.token,
        action: link.action,
        expires_at: rfc3339(millis(link.expires_at)),
    }))
}

/// What a link's holder sees.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkView {
    #[serde(flatten)]
    promise: PromiseBody,
    /// What the link allows.
    action: LinkAction,
    /// When the link stops working.
    link_expires_at: String,
}

/// 403: the link does not allow what was asked.
fn not_allowed(grant: &LinkGrant) -> ApiError {
    vow_runtime::Error::from(vow_runtime::links::LinkError::NotAllowed(grant.action)).into()
}

/// The grant of a valid token, or 401 (not a token of this server, or
/// altered) / 403 (expired).
fn redeem(state: &AppState, token: &str) -> Result<LinkGrant, ApiError> {
    Ok(state.executor.redeem_link(token)?)
}

/// `GET /v1/links/{token}`: the promise the link is for (its worker, since
/// when it waits, its declared type, its status), without its payload.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let grant = redeem(&state, &token)?;
    let (info, _) = state.executor.promise(&grant.promise).await?;
    Ok(Json(LinkView {
        promise: PromiseBody::from(info),
        action: grant.action,
        link_expires_at: rfc3339(millis(grant.expires_at)),
    }))
}

/// `POST /v1/links/{token}/complete`: `{"data": [bytes]}` or `{"value":
/// json}`; Golem's `true` if this request completed the promise, `false`
/// if it was already settled.
#[tracing::instrument(skip_all, fields(promise = tracing::field::Empty))]
pub(crate) async fn complete(
    State(state): State<AppState>,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<Payload>,
) -> Result<Json<bool>, ApiError> {
    let grant = redeem(&state, &token)?;
    tracing::Span::current().record("promise", tracing::field::display(&grant.promise));
    if !grant.action.completes() {
        return Err(not_allowed(&grant));
    }
    let payload = body.payload()?;
    Ok(Json(
        state
            .executor
            .complete_promise(&grant.promise, payload)
            .await?,
    ))
}

/// The body of a link's `reject`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRejection {
    /// What went wrong, for people.
    error: String,
    /// Whatever the rejecter attaches (default none).
    #[serde(default, deserialize_with = "integral::bytes")]
    data: Vec<u8>,
}

/// `POST /v1/links/{token}/reject`: `{"error": "...", "data": [bytes]}`;
/// `true` if this request rejected the promise, `false` if it was already
/// settled.
#[tracing::instrument(skip_all, fields(promise = tracing::field::Empty))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<LinkRejection>,
) -> Result<Json<bool>, ApiError> {
    let grant = redeem(&state, &token)?;
    tracing::Span::current().record("promise", tracing::field::display(&grant.promise));
    if !grant.action.rejects() {
        return Err(not_allowed(&grant));
    }
    Ok(Json(
        state
            .executor
            .reject_promise(&grant.promise, body.error, body.data)
            .await?,
    ))
}
