//! The route table and what every handler shares.
//!
//! Routes are listed once, in [`table`], and each handler's
//! `#[utoipa::path]` says its method and path: registering a handler with
//! [`OpenApiRouter::routes`] routes it and adds it to the OpenAPI document in
//! one step, so neither can list a route the other does not have.

mod components;
mod events;
mod filter;
mod invoke;
mod links;
mod oplog;
mod promises;
mod watch;
mod workers;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use vow_runtime::Executor;

use crate::ServerConfig;
use crate::error::ApiError;

/// What every handler gets.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    /// Runs the components.
    pub(crate) executor: Executor,
    /// Body limits.
    pub(crate) config: ServerConfig,
    /// The OpenAPI document of these routes, built once with them.
    pub(crate) openapi: Arc<serde_json::Value>,
    /// The change stream's watcher, shared by every open stream.
    pub(crate) events: events::Events,
}

/// `{}`: the answer of an operation that has nothing more to say.
#[derive(Serialize, ToSchema)]
pub(crate) struct Empty {}

/// Every route of the API, documented: [`OpenApiRouter::split_for_parts`]
/// gives the router and the document (which [`crate::openapi::document`]
/// finishes).
pub(crate) fn table(config: &ServerConfig) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(
            routes!(components::upload).layer(DefaultBodyLimit::max(config.max_component_bytes)),
        )
        .routes(routes!(components::list))
        .routes(routes!(components::get))
        .routes(routes!(workers::create))
        .routes(routes!(workers::list))
        .routes(routes!(invoke::invoke_and_await_ephemeral))
        .routes(routes!(invoke::invoke_ephemeral))
        .routes(routes!(workers::find))
        .routes(routes!(workers::get_named_find))
        .routes(routes!(workers::delete_named_find))
        .routes(routes!(workers::get))
        .routes(routes!(workers::delete))
        .routes(routes!(invoke::invoke_and_await))
        .routes(routes!(invoke::invoke))
        .routes(routes!(workers::logs))
        .routes(routes!(oplog::golem))
        .routes(routes!(oplog::raw))
        .routes(routes!(workers::interrupt))
        .routes(routes!(workers::resume))
        .routes(routes!(promises::of_worker))
        .routes(routes!(promises::get))
        .routes(routes!(links::mint))
        .routes(routes!(promises::complete))
        .routes(routes!(promises::reject))
        .routes(routes!(promises::list))
        .routes(routes!(promises::when))
        .routes(routes!(promises::then))
        .routes(routes!(links::show))
        .routes(routes!(links::complete))
        .routes(routes!(links::reject))
        .routes(routes!(events::stream))
        .routes(routes!(crate::openapi::serve))
}

/// Answers requests that match no route.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    if uri.path() == "/v1/nodes" {
        // Served by the nodes of a cluster only (`crate::cluster`).
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "this server is not a node of a cluster: it runs alone (vow serve --node-id \
             makes a node of one; see docs/cluster.md)",
        );
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// Answers requests whose path matches a route but whose method does not.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
