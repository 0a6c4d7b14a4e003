//! [`ApiError`]: the one error type of every handler and extractor.
//!
//! Every failure answers with JSON, in Golem 1.1's error bodies: `400` with
//! `{"errors": [...]}` (one message per problem), `500` with
//! `{"golemError": {"type": ..., ...}}` (a trap is Golem's `RuntimeError`,
//! an invocation on a failed worker `PreviousInvocationFailed`, a host
//! fault `Unknown`), and every other status with `{"error": "..."}`.
//! Framework rejections go through here too, so a client never sees axum's
//! plain-text bodies. The bodies are [`Errors`], [`GolemErrorBody`] and
//! [`ErrorMessage`], whose schemas the OpenAPI document's error responses
//! use.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use vow_runtime::Error;
use vow_runtime::links::LinkError;

/// An HTTP error response: a status and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    messages: Vec<String>,
    /// The `type` of Golem's `GolemError`, for a 500.
    golem: Option<GolemErrorType>,
}

/// The body of a 400: one message per problem.
#[derive(Serialize, ToSchema)]
pub(crate) struct Errors {
    errors: Vec<String>,
}

/// The body of every error status but 400 and 500.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorMessage {
    error: String,
}

/// The body of a 500: Golem's error.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GolemErrorBody {
    #[schema(inline)]
    golem_error: GolemError,
}

/// Golem's `GolemError`, tagged by `type`.
#[derive(Serialize, ToSchema)]
pub(crate) struct GolemError {
    #[serde(rename = "type")]
    #[schema(inline)]
    kind: GolemErrorType,
    details: String,
}

/// Why an answer is a 500, as Golem names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) enum GolemErrorType {
    /// The invocation trapped.
    RuntimeError,
    /// The worker failed in an earlier invocation.
    PreviousInvocationFailed,
    /// A host fault.
    Unknown,
}

impl ApiError {
    /// An error with this status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            messages: vec![message.into()],
            golem: None,
        }
    }

    /// `400 Bad Request` with one message per problem.
    pub(crate) fn bad_request(messages: Vec<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            messages,
            golem: None,
        }
    }

    /// `400 Bad Request` with one message.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status this error answers with.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Turns a rejection's text into a message: lower case first letter, as
    /// every other message.
    fn rejection(status: StatusCode, text: String) -> Self {
        let mut chars = text.chars();
        let message = match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_owned(),
        };
        Self::new(status, message)
    }

    /// A body rejection; `limit` is named when the body was too large.
    pub(crate) fn from_bytes_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if body_timed_out(&rejection) {
            return Self::body_timeout();
        }
        Self::from_body_status(rejection.status(), rejection.body_text(), limit)
    }

    /// A JSON body rejection; `limit` is named when the body was too large.
    pub(crate) fn from_json_rejection(rejection: JsonRejection, limit: usize) -> Self {
        if body_timed_out(&rejection) {
            return Self::body_timeout();
        }
        Self::from_body_status(rejection.status(), rejection.body_text(), limit)
    }

    /// `408`: the body stalled past [`ServerConfig::body_timeout`](crate::ServerConfig).
    fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body stalled: no data arrived within the body timeout",
        )
    }

    fn from_body_status(status: StatusCode, text: String, limit: usize) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                format!("request body is larger than the limit of {limit} bytes"),
            ),
            // A 400, which Golem's document declares on every route
            // (415 it does not).
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::invalid("expected a request with `Content-Type: application/json`")
            }
            // Syntax and data errors (axum answers the latter with 422) are
            // bad input like any other.
            s if s.is_client_error() => Self::rejection(StatusCode::BAD_REQUEST, text),
            s => Self::rejection(s, text),
        }
    }
}

/// Whether a body rejection came from the body read deadline.
fn body_timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::rejection(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        let status = rejection.status();
        if status.is_server_error() {
            // A route whose pattern does not match its extractor: our bug.
            tracing::error!(error = %rejection.body_text(), "path extraction failed");
            return Self::rejection(status, rejection.body_text());
        }
        Self::rejection(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let golem = match &error {
            Error::Trap { .. } => Some(GolemErrorType::RuntimeError),
            Error::WorkerFailed { .. } => Some(GolemErrorType::PreviousInvocationFailed),
            _ => None,
        };
        if let Some(kind) = golem {
            return Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                messages: vec![error.to_string()],
                golem: Some(kind),
            };
        }
        let status = match &error {
            Error::InvalidComponent { .. }
            | Error::InvalidWorkerName { .. }
            | Error::InvalidArguments { .. }
            | Error::InvalidPromiseId { .. }
            | Error::InvalidPayload { .. }
            | Error::CannotSettle(_) => StatusCode::BAD_REQUEST,
            Error::ComponentNotFound(_)
            | Error::WorkerNotFound(_)
            | Error::FunctionNotFound { .. }
            | Error::PromiseNotFound(_) => StatusCode::NOT_FOUND,
            Error::WorkerExists(_) | Error::WorkerDeleted(_) | Error::NotInterrupted { .. } => {
                StatusCode::CONFLICT
            }
            Error::MissingImports { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            // A link's token is its holder's credential: one that is not
            // this server's, or was altered, is unauthorized; a valid one
            // that expired or does not allow the action is forbidden.
            Error::Link(LinkError::Malformed | LinkError::UnknownKey | LinkError::BadSignature) => {
                StatusCode::UNAUTHORIZED
            }
            Error::Link(LinkError::Expired(_) | LinkError::NotAllowed(_)) => StatusCode::FORBIDDEN,
            Error::Link(LinkError::Lifetime(_)) => StatusCode::BAD_REQUEST,
            Error::PromiseSettled(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // A limit reached, as Golem answers its `LimitExceeded`: not
            // worth retrying until workers are deleted.
            Error::TooManyWorkers { .. } => StatusCode::FORBIDDEN,
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Instantiation { .. }
            | Error::ShutDown
            | Error::QueueFull { .. }
            | Error::WorkerMoved(_) => StatusCode::SERVICE_UNAVAILABLE,
            // A node of a cluster that stopped writing (it drains, or lost
            // its lease): another node takes over, so retrying is right.
            Error::Store(
                vow_runtime::vow_store::Error::Closed
                | vow_runtime::vow_store::Error::Fenced { .. },
            ) => StatusCode::SERVICE_UNAVAILABLE,
            // Config, Io and whatever a newer runtime adds: host faults.
            _ => {
                tracing::error!(%error, "host fault");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = if self.status == StatusCode::BAD_REQUEST {
            (
                self.status,
                Json(Errors {
                    errors: self.messages,
                }),
            )
                .into_response()
        } else if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            let golem_error = GolemError {
                kind: self.golem.unwrap_or(GolemErrorType::Unknown),
                details: self.messages.join("; "),
            };
            (self.status, Json(GolemErrorBody { golem_error })).into_response()
        } else {
            let error = self.messages.join("; ");
            (self.status, Json(ErrorMessage { error })).into_response()
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // A full queue or a busy runtime: worth trying again shortly.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vow_runtime::{ComponentId, WorkerId};

    #[test]
    fn runtime_errors_map_to_the_contract_statuses() {
        let worker = WorkerId::new(ComponentId::from_u64_pair(1, 2), "w");
        let cases = [
            (Error::WorkerExists(worker.clone()), StatusCode::CONFLICT),
            (Error::WorkerNotFound(worker.clone()), StatusCode::NOT_FOUND),
            (
                Error::MissingImports {
                    imports: vec!["x:y/z".into()],
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (Error::ShutDown, StatusCode::SERVICE_UNAVAILABLE),
            (
                Error::WorkerMoved(worker.clone()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                Error::Config("bad".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (Error::WorkerDeleted(worker.clone()), StatusCode::CONFLICT),
            (
                Error::TooManyWorkers {
                    worker: worker.clone(),
                    component: None,
                    limit: 3,
                },
                StatusCode::FORBIDDEN,
            ),
            (
                Error::QueueFull {
                    worker: worker.clone(),
                    limit: 3,
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                Error::WorkerFailed {
                    worker,
                    reason: "boom".into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status(), status);
        }
        let full = ApiError::from(Error::QueueFull {
            worker: WorkerId::new(ComponentId::from_u64_pair(1, 2), "w"),
            limit: 3,
        })
        .into_response();
        assert_eq!(
            full.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from_static("1"))
        );
    }

    #[test]
    fn rejection_text_starts_lower_case() {
        let error = ApiError::rejection(StatusCode::BAD_REQUEST, "Failed to parse".into());
        assert_eq!(error.messages, vec!["failed to parse".to_owned()]);
    }
}
