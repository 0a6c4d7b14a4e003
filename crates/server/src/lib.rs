//! # vow-server
//!
//! The HTTP API of the Vow runtime, shaped like Golem's worker API: upload
//! components, start workers, invoke their exports with arguments in Golem's
//! JSON encoding (or WAVE text), and list and complete the promises they wait
//! on. `docs/rest-api.md` is the contract; the server also describes itself
//! at `GET /openapi.json`. The same router serves a web page at `/` (its
//! files are compiled in) that lists the pending promises with a form to
//! answer each, and the workers, kept current by `GET /v1/events`
//! (`docs/web-ui.md`).
//!
//! ## Serving
//!
//! 1. Build a [`vow_runtime::Executor`] inside a tokio runtime.
//! 2. Make the routes with [`router`]; it needs no socket, so tests can call
//!    it with `tower::ServiceExt::oneshot`.
//! 3. Bind a [`tokio::net::TcpListener`] and run [`serve`] until a shutdown
//!    future, such as [`shutdown_signal`], resolves; [`serve_with`] adds
//!    HTTPS ([`tls_config`]), a connection cap and a header deadline.
//!
//! ```no_run
//! use vow_runtime::Executor;
//! use vow_server::{ServerConfig, router, serve, shutdown_signal};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let executor = Executor::builder().build()?;
//! let routes = router(executor, ServerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9881").await?;
//! serve(listener, routes, shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! When the executor keeps metrics (its default), the router also serves
//! them at `GET /metrics` in Prometheus' text format, with a count of
//! requests by route and status (`docs/metrics.md`).
//!
//! [`json`] converts between Vow's plain JSON and component values, and
//! [`typed`] gives Golem's type-annotated form, for clients that build
//! requests or read results.

mod auth;
pub mod cluster;
mod error;
mod extract;
mod integral;
pub mod json;
mod metrics;
mod openapi;
mod oplog;
mod routes;
mod serve;
pub mod time;
mod trace;
pub mod typed;
mod ui;

use std::any::Any;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use vow_runtime::Executor;

use crate::error::ApiError;
use crate::routes::AppState;

pub use crate::serve::{
    SHUTDOWN_GRACE, ServeOptions, TlsError, serve, serve_with, serve_with_grace, shutdown_signal,
    tls_config,
};

/// Limits of the HTTP API.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest JSON request body, in bytes (default 16 MiB). Larger bodies
    /// are answered with 413.
    pub max_body_bytes: usize,
    /// Largest component upload, in bytes (default 512 MiB).
    pub max_component_bytes: usize,
    /// With a token, every route but `/openapi.json` needs
    /// `Authorization: Bearer <token>` (401 otherwise); without one the API
    /// is open (default).
    pub auth_token: Option<String>,
    /// Longest a request body may stall between two reads (default 30 s):
    /// past it the request is answered 408, so a client that trickles a
    /// body cannot hold a request open. The time to send the whole body is
    /// not capped, so a large upload over a slow link still arrives.
    pub body_timeout: std::time::Duration,
}

impl std::fmt::Debug for ServerConfig {
    /// The token is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_component_bytes", &self.max_component_bytes)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "(set)"))
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_component_bytes: 512 << 20,
            auth_token: None,
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The routes of the API over `executor`, with request tracing, body limits,
/// and JSON errors for unknown paths and methods.
pub fn router(executor: Executor, config: ServerConfig) -> Router {
    let (mut router, api) = routes::table(&config).split_for_parts();
    let openapi = Arc::new(openapi::document(api));
    let http_metrics = executor.metrics().map(|m| metrics::HttpMetrics::new(&m));
    if let Some(http_metrics) = &http_metrics {
        // Prometheus' text, not JSON: not in the OpenAPI document either.
        router = router.merge(http_metrics.route());
    }
    router = router
        // The web page's files: not API routes, so not in the document.
        .merge(ui::routes())
        // After the routes: it applies to the routes present.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found);
    if let Some(token) = config.auth_token.as_deref().map(auth::Token::new) {
        // Around the fallbacks too: an unknown path answers 401 as well,
        // so the routes cannot be probed without the token.
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            auth::require(token.clone(), request, next)
        }));
    }
    router = router
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(config.body_timeout))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::request_span::<axum::body::Body>)
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::map_response(json_charset));
    if let Some(http_metrics) = http_metrics {
        // Outermost, so that every answer is counted: 401s, 413s and
        // caught panics too.
        router = router.layer(metrics::CountLayer::new(http_metrics));
    }
    router.with_state(AppState {
        executor,
        config,
        openapi,
        events: Default::default(),
    })
}

/// The content type Golem's API declares and sends for JSON.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Every JSON answer says its charset, as Golem's server does.
async fn json_charset(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
    }
    response
}

/// A handler panicked: a bug, answered as a host fault rather than by
/// dropping the connection.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
