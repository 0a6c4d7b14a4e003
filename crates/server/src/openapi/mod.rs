//! The OpenAPI 3.1 document served at `GET /openapi.json`, written by hand
//! to match `docs/rest-api.md`. A test checks that it lists exactly the
//! routes of the route table.

mod components;

use std::sync::LazyLock;

use axum::Json;
use serde_json::{Map, Value, json};

use self::components::{parameters, responses, schemas};

/// The document, built once.
static DOCUMENT: LazyLock<Value> = LazyLock::new(document);

/// `GET /openapi.json`.
pub(crate) async fn serve() -> Json<Value> {
    Json(DOCUMENT.clone())
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// One operation: its id, summary, parameters (names in
/// `#/components/parameters`), request body, success status and schema, and
/// the error statuses it can answer with.
struct Op {
    id: &'static str,
    summary: &'static str,
    params: &'static [&'static str],
    body: Option<Value>,
    ok: (&'static str, Value),
    errors: &'static [&'static str],
}

impl Op {
    fn build(self) -> Value {
        let mut responses = Map::new();
        responses.insert(
            self.ok.0.to_owned(),
            json!({ "description": "success", "content": json_content(self.ok.1) }),
        );
        for status in self.errors {
            responses.insert(
                (*status).to_owned(),
                json!({ "$ref": format!("#/components/responses/E{status}") }),
            );
        }
        let params: Vec<Value> = self
            .params
            .iter()
            .map(|p| json!({ "$ref": format!("#/components/parameters/{p}") }))
            .collect();
        let mut op = json!({
            "operationId": self.id,
            "summary": self.summary,
            "parameters": params,
            "responses": responses,
        });
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op
    }
}

fn json_body(name: &str) -> Option<Value> {
    Some(json!({ "required": true, "content": json_content(schema(name)) }))
}

const WORKER_PARAMS: &[&str] = &["cid", "name"];
const INVOKE_PARAMS: &[&str] = &["cid", "name", "function", "idempotencyKey"];

fn paths() -> Value {
    let w = |suffix: &str| format!("/v1/components/{{cid}}/workers/{{name}}{suffix}");
    let mut paths = Map::new();
    let mut add = |path: String, ops: Vec<(&str, Op)>| {
        let ops: Map<String, Value> = ops
            .into_iter()
            .map(|(m, op)| (m.to_owned(), op.build()))
            .collect();
        paths.insert(path, Value::Object(ops));
    };
    add(
        "/v1/components".into(),
        vec![
            (
                "post",
                Op {
                    id: "uploadComponent",
                    summary: "Compile and add a component",
                    params: &["componentName"],
                    body: Some(
                        json!({ "required": true, "content": { "application/wasm": { "schema": { "type": "string", "format": "binary" } },
                "*/*": { "schema": { "type": "string", "format": "binary" } } } }),
                    ),
                    ok: ("201", schema("ComponentInfo")),
                    errors: &["400", "413", "422", "500"],
                },
            ),
            (
                "get",
                Op {
                    id: "listComponents",
                    summary: "Every component, by name",
                    params: &[],
                    body: None,
                    ok: ("200", schema("ComponentList")),
                    errors: &[],
                },
            ),
        ],
    );
    add(
        "/v1/components/{cid}".into(),
        vec![(
            "get",
            Op {
                id: "getComponent",
                summary: "One component and its exports",
                params: &["cid"],
                body: None,
                ok: ("200", schema("ComponentInfo")),
                errors: &["400", "404"],
            },
        )],
    );
    add(
        "/v1/components/{cid}/workers".into(),
        vec![
            (
                "post",
                Op {
                    id: "launch_new_worker",
                    summary: "Start a worker",
                    params: &["cid"],
                    body: json_body("CreateWorker"),
                    ok: ("200", schema("WorkerCreated")),
                    errors: &["400", "404", "409", "413", "503"],
                },
            ),
            (
                "get",
                Op {
                    id: "get_workers_metadata",
                    summary: "The component's workers, by name, a page at a time",
                    params: &["cid", "workerFilter", "scanCursor", "scanCount", "precise"],
                    body: None,
                    ok: ("200", schema("WorkerList")),
                    errors: &["400", "404"],
                },
            ),
        ],
    );
    add(
        "/v1/components/{cid}/invoke-and-await".into(),
        vec![(
            "post",
            Op {
                id: "invoke_and_await_function_without_name",
                summary: "Invoke an export on a new worker of its own (deleted afterwards) and wait for its result",
                params: &["cid", "function", "idempotencyKey"],
                body: json_body("InvokeParameters"),
                ok: ("200", schema("InvokeResult")),
                errors: &["400", "404", "409", "413", "500", "503", "504"],
            },
        )],
    );
    add(
        "/v1/components/{cid}/invoke".into(),
        vec![(
            "post",
            Op {
                id: "invoke_function_without_name",
                summary: "Queue an export on a new worker of its own (deleted once it has run) and return at once",
                params: &["cid", "function", "idempotencyKey"],
                body: json_body("InvokeParameters"),
                ok: ("200", schema("Empty")),
                errors: &["400", "404", "409", "413", "503"],
            },
        )],
    );
    add(
        "/v1/components/{cid}/workers/find".into(),
        vec![
            (
                "post",
                Op {
                    id: "find_workers_metadata",
                    summary: "The component's workers that match a filter tree, a page at a time",
                    params: &["cid"],
                    body: json_body("WorkersMetadataRequest"),
                    ok: ("200", schema("WorkerList")),
                    errors: &["400", "404", "413"],
                },
            ),
            (
                "get",
                Op {
                    id: "getWorkerNamedFind",
                    summary: "The metadata of the worker named `find`",
                    params: &["cid"],
                    body: None,
                    ok: ("200", schema("WorkerMetadata")),
                    errors: &["400", "404"],
                },
            ),
            (
                "delete",
                Op {
                    id: "deleteWorkerNamedFind",
                    summary: "Stop and remove the worker named `find`",
                    params: &["cid"],
                    body: None,
                    ok: ("200", schema("Empty")),
                    errors: &["400", "404"],
                },
            ),
        ],
    );
    add(
        w(""),
        vec![
            (
                "get",
                Op {
                    id: "get_worker_metadata",
                    summary: "A worker's metadata",
                    params: WORKER_PARAMS,
                    body: None,
                    ok: ("200", schema("WorkerMetadata")),
                    errors: &["400", "404"],
                },
            ),
            (
                "delete",
                Op {
                    id: "delete_worker",
                    summary: "Stop and remove a worker",
                    params: WORKER_PARAMS,
                    body: None,
                    ok: ("200", schema("Empty")),
                    errors: &["400", "404"],
                },
            ),
        ],
    );
    add(
        w("/invoke-and-await"),
        vec![(
            "post",
            Op {
                id: "invoke_and_await_function",
                summary: "Invoke an export and wait for its result",
                params: INVOKE_PARAMS,
                body: json_body("InvokeParameters"),
                ok: ("200", schema("InvokeResult")),
                errors: &["400", "404", "409", "413", "500", "503", "504"],
            },
        )],
    );
    add(
        w("/invoke"),
        vec![(
            "post",
            Op {
                id: "invoke_function",
                summary: "Queue an invocation and return at once",
                params: INVOKE_PARAMS,
                body: json_body("InvokeParameters"),
                ok: ("200", schema("Empty")),
                errors: &["400", "404", "409", "413", "500"],
            },
        )],
    );
    add(
        w("/logs"),
        vec![(
            "get",
            Op {
                id: "getWorkerLogs",
                summary: "What the worker wrote to stdout and stderr",
                params: WORKER_PARAMS,
                body: None,
                ok: ("200", schema("WorkerLogs")),
                errors: &["400", "404"],
            },
        )],
    );
    add(
        w("/oplog"),
        vec![(
            "get",
            Op {
                id: "get_oplog",
                summary: "A page of the worker's operation log in Golem's public form, or a search of it",
                params: &[
                    "cid",
                    "name",
                    "golemOplogFrom",
                    "golemOplogCount",
                    "oplogCursor",
                    "oplogQuery",
                ],
                body: None,
                ok: ("200", schema("GetOplogResponse")),
                errors: &["400", "404"],
            },
        )],
    );
    add(
        w("/oplog/raw"),
        vec![(
            "get",
            Op {
                id: "getRawOplog",
                summary: "A page of the worker's operation log in Vow's own form, as stored",
                params: &["cid", "name", "oplogFrom", "oplogCount"],
                body: None,
                ok: ("200", schema("OplogPage")),
                errors: &["400", "404"],
            },
        )],
    );
    add(
        w("/interrupt"),
        vec![(
            "post",
            Op {
                id: "interrupt_worker",
                summary: "Stop the worker's invocation in progress; it runs again by replay when resumed",
                params: &["cid", "name", "recoverImmediately"],
                body: None,
                ok: ("200", schema("Empty")),
                errors: &["400", "404", "409"],
            },
        )],
    );
    add(
        w("/resume"),
        vec![(
            "post",
            Op {
                id: "resume_worker",
                summary: "Let an interrupted worker go on",
                params: WORKER_PARAMS,
                body: None,
                ok: ("200", schema("Empty")),
                errors: &["400", "404", "409"],
            },
        )],
    );
    add(
        w("/promises"),
        vec![(
            "get",
            Op {
                id: "listWorkerPromises",
                summary: "The worker's promises",
                params: WORKER_PARAMS,
                body: None,
                ok: ("200", schema("PromiseList")),
                errors: &["400", "404"],
            },
        )],
    );
    add(
        w("/promises/{idx}"),
        vec![(
            "get",
            Op {
                id: "getPromise",
                summary: "One of the worker's promises, with its payload or error once settled",
                params: &["cid", "name", "promiseIdx"],
                body: None,
                ok: ("200", schema("PromiseDetail")),
                errors: &["400", "404"],
            },
        )],
    );
    add(
        w("/reject"),
        vec![(
            "post",
            Op {
                id: "rejectPromise",
                summary: "Reject one of the worker's promises: true if this request settled it",
                params: WORKER_PARAMS,
                body: json_body("Rejection"),
                ok: ("200", json!({ "type": "boolean" })),
                errors: &["400", "404", "413"],
            },
        )],
    );
    add(
        w("/promises/{idx}/link"),
        vec![(
            "post",
            Op {
                id: "createCompletionLink",
                summary: "A completion link for a pending promise: a token that lets its holder settle this promise and nothing else",
                params: &["cid", "name", "promiseIdx"],
                body: Some(
                    json!({ "required": false, "content": json_content(schema("LinkOptions")) }),
                ),
                ok: ("200", schema("CompletionLink")),
                errors: &["400", "404", "409"],
            },
        )],
    );
    add(
        "/v1/links/{token}".into(),
        vec![(
            "get",
            Op {
                id: "getCompletionLink",
                summary: "What a completion link is for: its promise (without the payload), the action it allows, its expiry",
                params: &["linkToken"],
                body: None,
                ok: ("200", schema("LinkView")),
                errors: &["401", "403", "404"],
            },
        )],
    );
    add(
        "/v1/links/{token}/complete".into(),
        vec![(
            "post",
            Op {
                id: "completeByLink",
                summary: "Complete the link's promise: true if this request completed it, false if it was already settled",
                params: &["linkToken"],
                body: json_body("LinkCompletion"),
                ok: ("200", json!({ "type": "boolean" })),
                errors: &["400", "401", "403", "404", "413"],
            },
        )],
    );
    add(
        "/v1/links/{token}/reject".into(),
        vec![(
            "post",
            Op {
                id: "rejectByLink",
                summary: "Reject the link's promise: true if this request rejected it, false if it was already settled",
                params: &["linkToken"],
                body: json_body("LinkRejection"),
                ok: ("200", json!({ "type": "boolean" })),
                errors: &["400", "401", "403", "404", "413"],
            },
        )],
    );
    add(
        w("/complete"),
        vec![(
            "post",
            Op {
                id: "complete_promise",
                summary: "Complete one of the worker's promises",
                params: WORKER_PARAMS,
                body: json_body("Completion"),
                ok: ("200", json!({ "type": "boolean" })),
                errors: &["400", "404", "413"],
            },
        )],
    );
    add(
        "/v1/components/{cid}/when".into(),
        vec![(
            "post",
            Op {
                id: "when",
                summary: "Run an export in a new worker with an input; answers the promise of its result",
                params: &["cid"],
                body: json_body("WhenRequest"),
                ok: ("200", schema("PromiseInfo")),
                errors: &["400", "404", "413"],
            },
        )],
    );
    add(
        "/v1/components/{cid}/then".into(),
        vec![(
            "post",
            Op {
                id: "then",
                summary: "Once a promise settles, run an export in a new worker with the settlement; answers the promise of its result",
                params: &["cid"],
                body: json_body("ThenRequest"),
                ok: ("200", schema("PromiseInfo")),
                errors: &["400", "404", "413"],
            },
        )],
    );
    add(
        "/v1/promises".into(),
        vec![(
            "get",
            Op {
                id: "listPromises",
                summary: "Promises of every worker, filtered",
                params: &["status", "component", "worker"],
                body: None,
                ok: ("200", schema("PromiseList")),
                errors: &["400"],
            },
        )],
    );
    add(
        "/openapi.json".into(),
        vec![(
            "get",
            Op {
                id: "openapi",
                summary: "This document",
                params: &[],
                body: None,
                ok: ("200", json!({ "type": "object" })),
                errors: &[],
            },
        )],
    );
    Value::Object(paths)
}

/// Operations that Golem 1.1's API does not have: marked `x-vow-extension`
/// in the document.
const EXTENSIONS: &[&str] = &[
    "uploadComponent",
    "listComponents",
    "getComponent",
    "getWorkerNamedFind",
    "deleteWorkerNamedFind",
    "getWorkerLogs",
    "getRawOplog",
    "listWorkerPromises",
    "getPromise",
    "rejectPromise",
    "createCompletionLink",
    "getCompletionLink",
    "completeByLink",
    "rejectByLink",
    "when",
    "then",
    "listPromises",
    "openapi",
];

/// Marks the operations of [`EXTENSIONS`].
fn mark_extensions(paths: &mut Value) {
    for ops in paths
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let id = op["operationId"].as_str().unwrap_or_default();
            if EXTENSIONS.contains(&id) {
                op["x-vow-extension"] = Value::Bool(true);
            }
        }
    }
}

/// Operations a completion link's token authorizes: no API token.
const LINK_OPERATIONS: &[&str] = &["getCompletionLink", "completeByLink", "rejectByLink"];

/// Marks the operations of [`LINK_OPERATIONS`] as needing no API token.
fn mark_link_operations(paths: &mut Value) {
    for ops in paths
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in ops.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let id = op["operationId"].as_str().unwrap_or_default();
            if LINK_OPERATIONS.contains(&id) {
                op["security"] = json!([]);
            }
        }
    }
}

/// Builds the whole document.
fn document() -> Value {
    let mut paths = paths();
    mark_extensions(&mut paths);
    mark_link_operations(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs WebAssembly components that import golem:api/host@1.1.0. \
                The worker routes follow Golem 1.1's API (same operation ids, bodies and statuses); \
                operations marked x-vow-extension are Vow's own. \
                Every error answers with JSON: 400 with {\"errors\": [...]}, 500 with {\"golemError\": {...}}, others with {\"error\": \"...\"}.",
        },
        "paths": paths,
        // Required only when the server has a token (vow serve
        // --auth-token); the document itself is always open.
        "security": [{ "bearer": [] }, {}],
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "responses": responses(),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                    "description": "vow serve --auth-token TOKEN (or VOW_AUTH_TOKEN): every route but /openapi.json and /v1/links/* (authorized by the link's own token) needs Authorization: Bearer TOKEN, else 401" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;
    use crate::routes::table;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let Some(paths) = doc["paths"].as_object() else {
            panic!("no paths in the document");
        };
        let routes: Vec<(String, String)> = table(&ServerConfig::default())
            .iter()
            .map(|r| (r.path.to_owned(), r.verb.lower().to_owned()))
            .collect();
        for (path, method) in &routes {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is routed but not documented"
            );
        }
        for (path, ops) in paths {
            for method in ops.as_object().into_iter().flat_map(|o| o.keys()) {
                assert!(
                    routes.contains(&(path.clone(), method.clone())),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }

    #[test]
    fn golem_operations_keep_golems_ids_and_the_others_are_extensions() {
        let doc = document();
        let mut ids = Vec::new();
        for ops in doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                let extension = op.get("x-vow-extension") == Some(&Value::Bool(true));
                assert_eq!(extension, EXTENSIONS.contains(&id.as_str()), "{id}");
                ids.push(id);
            }
        }
        for golem in [
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
        ] {
            assert!(ids.iter().any(|id| id == golem), "{golem} is missing");
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
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }
}
