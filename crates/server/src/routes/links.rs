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
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use vow_runtime::links::{LinkAction, LinkGrant, LinkRequest, MAX_LINK_LIFETIME};

use crate::error::ApiError;
use crate::extract::{JsonBody, PromiseParams, PromisePath};
use crate::integral;
use crate::openapi::responses::{E400, E401, E403, E404, E409, E413};
use crate::routes::AppState;
use crate::routes::promises::{Payload, PromiseBody};
use crate::time::rfc3339;

/// The `{token}` of a link's path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct LinkParams {
    /// A completion link's token
    token: String,
}

/// The optional body of `.../promises/{idx}/link`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LinkOptions {
    #[serde(default, deserialize_with = "integral::option_u64")]
    #[schema(inline, value_type = Lifetime)]
    expires_in_secs: Option<u64>,
    /// What its holder may do (default complete)
    #[serde(default)]
    action: Action,
}

/// The schema of `expiresInSecs`: up to the runtime's
/// [`MAX_LINK_LIFETIME`].
struct Lifetime;

impl PartialSchema for Lifetime {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LINK_LIFETIME.as_secs()))
            .description(Some("Seconds the link lives (default 7 days, at most 366)"))
            .into()
    }
}

impl ToSchema for Lifetime {}

/// What a link lets its holder do.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = LinkAction)]
pub(crate) enum Action {
    #[default]
    Complete,
    Reject,
    Both,
}

impl From<LinkAction> for Action {
    fn from(action: LinkAction) -> Self {
        match action {
            LinkAction::Complete => Self::Complete,
            LinkAction::Reject => Self::Reject,
            LinkAction::Both => Self::Both,
        }
    }
}

impl From<Action> for LinkAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Complete => Self::Complete,
            Action::Reject => Self::Reject,
            Action::Both => Self::Both,
        }
    }
}

/// A completion link: a token that lets its holder settle one promise.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CompletionLink)]
pub(crate) struct LinkBody {
    /// The capability: treat it as a secret
    token: String,
    /// `{public url}/v1/links/{token}`
    url: String,
    action: Action,
    #[schema(format = DateTime)]
    expires_at: String,
}

fn millis(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `POST .../workers/{name}/promises/{idx}/link`: a completion link for a
/// pending promise. The body is optional (none, or `null`, is the
/// defaults).
#[utoipa::path(
    post,
    path = "/v1/components/{cid}/workers/{name}/promises/{idx}/link",
    operation_id = "createCompletionLink",
    summary = "A completion link for a pending promise: a token that lets its holder settle this promise and nothing else",
    params(PromiseParams),
    request_body = Option<LinkOptions>,
    responses(
        (status = 200, description = "success", body = LinkBody),
        (status = 400, response = E400),
        (status = 404, response = E404),
        (status = 409, response = E409),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
#[tracing::instrument(skip_all, fields(promise = %id))]
pub(crate) async fn mint(
    State(state): State<AppState>,
    PromisePath(id): PromisePath,
    body: Bytes,
) -> Result<Json<LinkBody>, ApiError> {
    let options: LinkOptions = if body.iter().all(u8::is_ascii_whitespace) {
        LinkOptions::default()
    } else {
        serde_json::from_slice::<Option<LinkOptions>>(&body)
            .map_err(|e| ApiError::invalid(format!("invalid link options: {e}")))?
            .unwrap_or_default()
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
                action: options.action.into(),
            },
        )
        .await?;
    Ok(Json(LinkBody {
        url: link
            .url
            .unwrap_or_else(|| format!("/v1/links/{}", link.token)),
        token: link.token,
        action: link.action.into(),
        expires_at: rfc3339(millis(link.expires_at)),
    }))
}

/// What a link's holder sees: the promise (without its payload), what
/// the link allows, and until when.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkView {
    #[serde(flatten)]
    promise: PromiseBody,
    action: Action,
    /// When the link stops working
    #[schema(format = DateTime)]
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
/// when it waits, its declared type, its status), without its payload. A
/// browser (whose `Accept` prefers `text/html`) gets the web page that
/// shows this promise and its form instead; the page reads this JSON.
#[utoipa::path(
    get,
    path = "/v1/links/{token}",
    operation_id = "getCompletionLink",
    summary = "What a completion link is for: its promise (without the payload), the action it allows, its expiry",
    params(LinkParams),
    responses(
        (status = 200, description = "success; with `Accept: text/html` (a browser), the web page that shows the promise and its form", content(
            (LinkView = "application/json"),
            (String = "text/html"),
        )),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
    security(),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(LinkParams { token }): Path<LinkParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if crate::ui::wants_html(&headers) {
        // The page holds no data: it asks for this JSON with the token
        // from its URL, and says what is wrong with a bad link.
        return Ok(crate::ui::link_page(&headers));
    }
    let grant = redeem(&state, &token)?;
    let (info, _) = state.executor.promise(&grant.promise).await?;
    let view = LinkView {
        promise: PromiseBody::from(info),
        action: grant.action.into(),
        link_expires_at: rfc3339(millis(grant.expires_at)),
    };
    Ok(([(header::VARY, "Accept")], Json(view)).into_response())
}

/// `POST /v1/links/{token}/complete`: `{"data": [bytes]}` or `{"value":
/// json}`; Golem's `true` if this request completed the promise, `false`
/// if it was already settled.
#[utoipa::path(
    post,
    path = "/v1/links/{token}/complete",
    operation_id = "completeByLink",
    summary = "Complete the link's promise: true if this request completed it, false if it was already settled",
    params(LinkParams),
    request_body = Payload,
    responses(
        (status = 200, description = "success", body = bool, content_type = "application/json"),
        (status = 400, response = E400),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
    security(),
    extensions(("x-vow-extension" = json!(true))),
)]
#[tracing::instrument(skip_all, fields(promise = tracing::field::Empty))]
pub(crate) async fn complete(
    State(state): State<AppState>,
    Path(LinkParams { token }): Path<LinkParams>,
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

/// Why the link's promise is rejected.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRejection {
    /// What went wrong, for people
    error: String,
    // Whatever the rejecter attaches (default none). (A plain comment:
    // see `integral::Bytes`.)
    #[serde(default, deserialize_with = "integral::bytes")]
    #[schema(inline, value_type = integral::Bytes)]
    data: Vec<u8>,
}

/// `POST /v1/links/{token}/reject`: `{"error": "...", "data": [bytes]}`;
/// `true` if this request rejected the promise, `false` if it was already
/// settled.
#[utoipa::path(
    post,
    path = "/v1/links/{token}/reject",
    operation_id = "rejectByLink",
    summary = "Reject the link's promise: true if this request rejected it, false if it was already settled",
    params(LinkParams),
    request_body = LinkRejection,
    responses(
        (status = 200, description = "success", body = bool, content_type = "application/json"),
        (status = 400, response = E400),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
    ),
    security(),
    extensions(("x-vow-extension" = json!(true))),
)]
#[tracing::instrument(skip_all, fields(promise = tracing::field::Empty))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(LinkParams { token }): Path<LinkParams>,
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
