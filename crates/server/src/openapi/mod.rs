//! The OpenAPI 3.1 document served at `GET /openapi.json`, derived from the
//! handlers rather than written beside them.
//!
//! - Each handler's `#[utoipa::path]` gives its method, path, operation id,
//!   parameters, body and answers.
//! - The types the handlers read and write derive their schemas
//!   (`ToSchema`, and `IntoParams` for paths and queries), with the
//!   constraints the server checks (name patterns, integer ranges, bodies
//!   that refuse unknown fields).
//! - [`crate::routes::table`] registers each handler with the router and
//!   with the document in one step, so the document lists exactly the
//!   routes that are served.
//!
//! What is left here is what no handler owns: the document's info, the
//! bearer scheme, the error responses ([`responses`]), and the few
//! constraints between body fields that a derived schema cannot state
//! ([`refine`]).

mod refine;
pub(crate) mod responses;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use self::responses::{E400, E401, E403, E404, E409, E413, E422, E500, E503, E504};
use crate::error::{ErrorMessage, Errors, GolemErrorBody};
use crate::routes::AppState;

/// The document's description.
const DESCRIPTION: &str = "Runs WebAssembly components that import golem:api/host@1.1.0. \
    The worker routes follow Golem 1.1's API (same operation ids, bodies and statuses); \
    operations marked x-vow-extension are Vow's own. \
    Every error answers with JSON: 400 with {\"errors\": [...]}, 500 with {\"golemError\": {...}}, others with {\"error\": \"...\"}.";

/// The document without its paths. The bearer token is required only when
/// the server has one (`vow serve --auth-token`), hence the empty
/// requirement beside it.
#[derive(OpenApi)]
#[openapi(
    info(title = "Vow", description = DESCRIPTION),
    security(("bearer" = []), ()),
    components(
        schemas(Errors, ErrorMessage, GolemErrorBody),
        responses(E400, E401, E403, E404, E409, E413, E422, E500, E503, E504),
    ),
    modifiers(&BearerScheme),
)]
struct Base;

/// The `bearer` security scheme.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "vow serve --auth-token TOKEN (or VOW_AUTH_TOKEN): every route but /openapi.json and /v1/links/* (authorized by the link's own token) needs Authorization: Bearer TOKEN, else 401",
            ))
            .build();
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document before any route is added to it.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The document to serve, from what the route table collected.
pub(crate) fn document(api: utoipa::openapi::OpenApi) -> Value {
    let mut document = match serde_json::to_value(api) {
        Ok(document) => document,
        Err(error) => {
            tracing::error!(%error, "cannot write the OpenAPI document");
            return Value::Object(serde_json::Map::new());
        }
    };
    refine::refine(&mut document);
    document
}

/// `GET /openapi.json`: the document of the routes this server has.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "success", body = Object)),
    security(),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn serve(State(state): State<AppState>) -> Response {
    Json(state.openapi.as_ref()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;
    use crate::routes::table;

    /// The document of the default server.
    pub(super) fn served() -> Value {
        let (_, api) = table(&ServerConfig::default()).split_for_parts();
        document(api)
    }

    /// Every operation, with its path.
    fn operations(document: &Value) -> Vec<(&str, &Value)> {
        let mut all = Vec::new();
        for (path, ops) in document["paths"].as_object().into_iter().flatten() {
            for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
                all.push((path.as_str(), op));
            }
        }
        all
    }

    #[test]
    fn golem_operations_keep_golems_ids_and_the_others_are_extensions() {
        const GOLEM: &[&str] = &[
            "launch_new_worker",
            "get_worker_metadata",
            "get_workers_metadata",
            "find_workers_metadata",
            "delete_worker",
            "invoke_and_await_function",
            "invoke_and_await_function_without_name",
            "invoke_function",
            "invoke_function_without_name",
            "complete_promise",
            "interrupt_worker",
            "resume_worker",
            "get_oplog",
        ];
        let document = served();
        let mut ids = Vec::new();
        for (_, op) in operations(&document) {
            let id = op["operationId"].as_str().unwrap_or_default();
            let extension = op.get("x-vow-extension") == Some(&Value::Bool(true));
            assert_eq!(extension, !GOLEM.contains(&id), "{id}");
            ids.push(id);
        }
        for golem in GOLEM {
            assert!(ids.contains(golem), "{golem} is missing");
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "an operation id is repeated");
    }

    #[test]
    fn only_the_routes_the_api_token_does_not_guard_waive_it() {
        let document = served();
        for (path, op) in operations(&document) {
            let waived = op.get("security") == Some(&Value::Array(Vec::new()));
            assert_eq!(waived, crate::auth::is_open(path), "{path}");
        }
    }

    #[test]
    fn every_operation_says_what_it_answers() {
        let document = served();
        for (path, op) in operations(&document) {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(op["summary"].is_string(), "{id} has no summary");
            let responses = op["responses"].as_object().into_iter().flatten();
            let (mut success, mut errors) = (0, 0);
            for (status, response) in responses {
                if status.starts_with('2') {
                    success += 1;
                    assert!(response["description"].is_string(), "{id}: {status}");
                } else {
                    errors += 1;
                    assert!(response["$ref"].is_string(), "{id}: {status}");
                }
            }
            assert_eq!(success, 1, "{id} ({path})");
            if !["listComponents", "openapi"].contains(&id) {
                assert!(errors > 0, "{id} declares no error");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r.clone());
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let document = served();
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r.trim_start_matches('#');
            assert!(document.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }
}
