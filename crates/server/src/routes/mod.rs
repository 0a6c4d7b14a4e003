//! The route table and what every handler shares.
//!
//! Routes are listed once, in [`table`]: the router is built from it and the
//! OpenAPI document is checked against it, so neither can drift.

mod components;
mod filter;
mod invoke;
mod links;
mod oplog;
mod promises;
mod workers;

pub(crate) use promises::MAX_PROMISE_MS;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{MethodFilter, MethodRouter, on};
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
}

/// The HTTP methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Delete => MethodFilter::DELETE,
        }
    }

    /// The method in lower case, as OpenAPI spells it.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the OpenAPI coverage test")
    )]
    pub(crate) fn lower(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Delete => "delete",
        }
    }
}

/// One route: a path pattern, a method and its handler.
pub(crate) struct Route {
    pub(crate) path: &'static str,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the OpenAPI coverage test")
    )]
    pub(crate) verb: Verb,
    pub(crate) handler: MethodRouter<AppState>,
}

impl Route {
    fn new<H, T>(path: &'static str, verb: Verb, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self {
            path,
            verb,
            handler: on(verb.filter(), handler),
        }
    }

    /// Lets this route's body be up to `bytes` long instead of the default.
    fn body_limit(mut self, bytes: usize) -> Self {
        self.handler = self.handler.layer(DefaultBodyLimit::max(bytes));
        self
    }
}

/// The path of a worker, or of one of its sub-resources.
macro_rules! worker {
    ($suffix:literal) => {
        concat!("/v1/components/{cid}/workers/{name}", $suffix)
    };
}

/// Every route of the API.
pub(crate) fn table(config: &ServerConfig) -> Vec<Route> {
    use Verb::{Delete, Get, Post};
    vec![
        Route::new("/v1/components", Post, components::upload)
            .body_limit(config.max_component_bytes),
        Route::new("/v1/components", Get, components::list),
        Route::new("/v1/components/{cid}", Get, components::get),
        Route::new("/v1/components/{cid}/workers", Post, workers::create),
        Route::new("/v1/components/{cid}/workers", Get, workers::list),
        Route::new(
            "/v1/components/{cid}/invoke-and-await",
            Post,
            invoke::invoke_and_await_ephemeral,
        ),
        Route::new(
            "/v1/components/{cid}/invoke",
            Post,
            invoke::invoke_ephemeral,
        ),
        Route::new("/v1/components/{cid}/workers/find", Post, workers::find),
        Route::new(
            "/v1/components/{cid}/workers/find",
            Get,
            workers::get_named_find,
        ),
        Route::new(
            "/v1/components/{cid}/workers/find",
            Delete,
            workers::delete_named_find,
        ),
        Route::new(worker!(""), Get, workers::get),
        Route::new(worker!(""), Delete, workers::delete),
        Route::new(worker!("/invoke-and-await"), Post, invoke::invoke_and_await),
        Route::new(worker!("/invoke"), Post, invoke::invoke),
        Route::new(worker!("/logs"), Get, workers::logs),
        Route::new(worker!("/oplog"), Get, oplog::golem),
        Route::new(worker!("/oplog/raw"), Get, oplog::raw),
        Route::new(worker!("/interrupt"), Post, workers::interrupt),
        Route::new(worker!("/resume"), Post, workers::resume),
        Route::new(worker!("/promises"), Get, promises::of_worker),
        Route::new(worker!("/promises/{idx}"), Get, promises::get),
        Route::new(worker!("/promises/{idx}/link"), Post, links::mint),
        Route::new(worker!("/complete"), Post, promises::complete),
        Route::new(worker!("/reject"), Post, promises::reject),
        Route::new("/v1/promises", Get, promises::list),
        Route::new("/v1/components/{cid}/when", Post, promises::when),
        Route::new("/v1/components/{cid}/then", Post, promises::then),
        Route::new("/v1/links/{token}", Get, links::show),
        Route::new("/v1/links/{token}/complete", Post, links::complete),
        Route::new("/v1/links/{token}/reject", Post, links::reject),
        Route::new("/openapi.json", Get, crate::openapi::serve),
    ]
}

/// Answers requests that match no route.
pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
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
