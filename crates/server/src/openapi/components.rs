//! The reusable parts of the OpenAPI document: parameters, error responses
//! and the schemas of every body.

use serde_json::{Value, json};

use super::{json_content, schema};

/// Path, query and header parameters, by the names operations use.
pub(super) fn parameters() -> Value {
    let path = |name: &str, description: &str, format: Option<&str>| {
        let mut schema = json!({ "type": "string" });
        if let Some(format) = format {
            schema["format"] = json!(format);
        }
        json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
    };
    let query = |name: &str, required: bool, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": required, "description": description, "schema": schema });
    json!({
        "cid": path("cid", "Component id", Some("uuid")),
        "name": path("name", "Worker name (1-256 bytes, no `/`, no control characters)", None),
        "componentName": query("name", true, "Name of the component", json!({ "type": "string" })),
        "function": query("function", true, "Export to invoke, as listed in the component's exports",
            json!({ "type": "string" })),
        "idempotencyKey": { "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "A repeated key runs nothing new: `invoke` answers 200 `{}`, `invoke-and-await` the first outcome",
            "schema": { "type": "string" } },
        "oplogFrom": query("from", false, "First oplog index to return (default 1)",
            json!({ "type": "integer", "format": "uint64", "minimum": 1 })),
        "oplogCount": query("count", false, "Most entries to return (default and maximum 1000)",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
        "golemOplogFrom": query("from", false, "First oplog index to return (default 1); not with `query`",
            json!({ "type": "integer", "format": "uint64" })),
        "golemOplogCount": query("count", true, "Most entries to return (at most 100 are answered)",
            json!({ "type": "integer", "format": "uint64" })),
        "oplogCursor": query("cursor", false, "`<next_oplog_index>-<component_version>` from the previous page's `next`; overrides `from`",
            json!({ "type": "string" })),
        "oplogQuery": query("query", false, "Search: Golem's Lucene-like query (terms, \"phrases\", /regex/, field:term, AND, OR, NOT, parentheses); answers the next `count` matching entries",
            json!({ "type": "string" })),
        "recoverImmediately": query("recovery-immediately", false,
            "Go on at once, as after a crash, instead of staying interrupted until resumed (default false)",
            json!({ "type": "boolean" })),
        "workerFilter": { "name": "filter", "in": "query", "required": false, "explode": true, "style": "form",
            "description": "`<property> <comparator> <value>` (property `name`, `status`, `version`, `created_at` or `env.NAME`; comparator `==`, `!=`, `>=`, `>`, `<=`, `<`, `like`, `notlike`); repeated filters must all match",
            "schema": { "type": "array", "items": { "type": "string" } } },
        "scanCursor": query("cursor", false, "`layer/cursor` from the previous page's `cursor` (default 0/0)",
            json!({ "type": "string" })),
        "scanCount": query("count", false, "Most workers per page (default 50)",
            json!({ "type": "integer", "format": "uint64" })),
        "precise": query("precise", false, "Accepted for Golem's clients; Vow's metadata is always current",
            json!({ "type": "boolean" })),
        "status": query("status", false, "Only promises with this status (`fulfilled` is `completed`)",
            json!({ "type": "string", "enum": ["pending", "completed", "fulfilled", "rejected", "timed-out"] })),
        "promiseIdx": path("idx", "The promise's oplog index (of its creation)", None),
        "component": query("component", false, "Only promises of this component's workers",
            json!({ "type": "string", "format": "uuid" })),
        "worker": query("worker", false, "Only promises of this worker (needs `component`)",
            json!({ "type": "string" })),
    })
}

/// One error response per status, `E{status}`.
pub(super) fn responses() -> Value {
    let error = |description: &str| json!({ "description": description, "content": json_content(schema("Error")) });
    json!({
        "E400": { "description": "Bad input, one message per problem", "content": json_content(schema("Errors")) },
        "E404": error("Unknown component, worker, function or promise"),
        "E409": error("Worker name taken, worker failed or deleted"),
        "E413": error("Body larger than the limit"),
        "E422": error("Component imports what Vow does not provide"),
        "E500": { "description": "Golem's error body: the invocation trapped (`RuntimeError`), the worker failed earlier (`PreviousInvocationFailed`), or a host fault (`Unknown`)",
            "content": json_content(schema("GolemErrorBody")) },
        "E503": error("Runtime shutting down or out of instance slots"),
        "E504": error("Invocation timed out"),
    })
}

/// Request and response bodies.
pub(super) fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let time = json!({ "type": "string", "format": "date-time" });
    let count = json!({ "type": "integer", "minimum": 0 });
    let mut schemas = json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": string } },
        "Errors": { "type": "object", "required": ["errors"],
            "properties": { "errors": { "type": "array", "items": string } } },
        "Empty": { "type": "object" },
        "GolemErrorBody": { "type": "object", "required": ["golemError"], "properties": {
            "golemError": { "type": "object", "required": ["type"], "properties": {
                "type": { "type": "string", "enum": ["RuntimeError", "PreviousInvocationFailed", "Unknown"] },
                "details": string } } } },
        "ComponentInfo": { "type": "object", "required": ["componentId", "name", "size", "sha256", "exports"],
            "properties": { "componentId": { "type": "string", "format": "uuid" }, "name": string, "size": count,
                "sha256": string, "exports": { "type": "array", "items": schema("Export") } } },
        "Export": { "type": "object", "required": ["name", "params", "results"], "properties": {
            "name": string,
            "params": { "type": "array", "items": { "type": "object", "required": ["name", "type"],
                "properties": { "name": string, "type": { "type": "string", "description": "WIT type" } } } },
            "results": { "type": "array", "items": { "type": "string", "description": "WIT type" } } } },
        "ComponentList": { "type": "object", "required": ["components"],
            "properties": { "components": { "type": "array", "items": schema("ComponentInfo") } } },
        "WorkerId": { "type": "object", "required": ["componentId", "workerName"],
            "properties": { "componentId": { "type": "string", "format": "uuid" }, "workerName": string } },
        "CreateWorker": { "type": "object", "required": ["name"], "properties": {
            "name": string, "args": { "type": "array", "items": string },
            "env": { "type": "object", "additionalProperties": string } } },
        "WorkerCreated": { "type": "object", "required": ["workerId", "componentVersion"],
            "properties": { "workerId": schema("WorkerId"), "componentVersion": count } },
        "WorkerMetadata": { "type": "object", "required": ["workerId", "args", "env", "status", "componentVersion",
                "retryCount", "pendingInvocationCount", "updates", "createdAt", "componentSize",
                "totalLinearMemorySize", "ownedResources", "activePlugins"], "properties": {
            "workerId": schema("WorkerId"), "args": { "type": "array", "items": string },
            "env": { "type": "object", "additionalProperties": string },
            "status": { "type": "string", "enum": ["Running", "Idle", "Suspended", "Interrupted", "Retrying", "Failed", "Exited"] },
            "componentVersion": count, "retryCount": count, "pendingInvocationCount": count,
            "updates": { "type": "array", "description": "Always empty: Vow keeps one version per component", "items": { "type": "object" } },
            "createdAt": time,
            "lastError": { "type": ["string", "null"] },
            "componentSize": count,
            "totalLinearMemorySize": { "type": "integer", "format": "uint64",
                "description": "Linear memory of the worker's instance (its last one when it is out of memory)" },
            "ownedResources": { "type": "object", "description": "Always empty in Vow", "additionalProperties": { "type": "object" } },
            "activePlugins": { "type": "array", "description": "Always empty: Vow has no plugins", "items": { "type": "string", "format": "uuid" } } } },
        "ScanCursor": { "type": "object", "required": ["cursor", "layer"], "properties": {
            "cursor": count, "layer": count } },
        "WorkerList": { "type": "object", "required": ["workers"], "properties": {
            "workers": { "type": "array", "items": schema("WorkerMetadata") },
            "cursor": { "oneOf": [schema("ScanCursor"), { "type": "null" }],
                "description": "Where the next page starts; null on the last page" } } },
        "WorkersMetadataRequest": { "type": "object", "properties": {
            "filter": schema("WorkerFilter"), "cursor": schema("ScanCursor"), "count": count,
            "precise": { "type": "boolean" } } },
        "WorkerFilter": { "type": "object", "required": ["type"],
            "description": "Golem's filter tree: `Name`, `Status`, `Version`, `CreatedAt`, `Env` (with `comparator` and `value`; `Env` also `name`), `And`/`Or` (`filters`), `Not` (`filter`)",
            "properties": { "type": { "type": "string",
                "enum": ["Name", "Status", "Version", "CreatedAt", "Env", "And", "Or", "Not"] } } },
        "InvokeParameters": { "type": "object",
            "description": "One of `params` (Golem's type-annotated values, answered in the same form), `params_json` (Vow's plain JSON, typed by the export) or `params_wave` (WAVE text)",
            "properties": { "params": { "type": "array", "items": schema("TypeAnnotatedValue") },
                "params_json": { "type": "array", "items": {} },
                "params_wave": { "type": "array", "items": string } } },
        "TypeAnnotatedValue": { "type": "object", "required": ["typ", "value"],
            "properties": { "typ": { "type": "object", "description": "Golem's AnalysedType, tagged by `type`" },
                "value": { "description": "The value in Golem's JSON encoding" } } },
        "InvokeResult": { "type": "object", "required": ["result"],
            "properties": { "result": { "description": "Type-annotated (`{\"typ\", \"value\"}`, a tuple of the results) for `params`; plain JSON (null without a result) for `params_json` and `params_wave`" } } },
        "WorkerLogs": { "type": "object", "required": ["stdout", "stderr", "stdoutDropped", "stderrDropped"],
            "properties": { "stdout": string, "stderr": string, "stdoutDropped": count, "stderrDropped": count } },
        "PromiseInfo": { "type": "object", "required": ["promiseId", "componentId", "workerName", "oplogIdx", "status",
                "createdAt", "completedAt", "awaited", "composed"], "properties": {
            "promiseId": { "type": "string", "description": "{cid}/{name}/{oplogIdx}" },
            "componentId": { "type": "string", "format": "uuid" }, "workerName": string, "oplogIdx": count,
            "status": { "type": "string", "enum": ["pending", "completed", "rejected", "timed-out"] }, "createdAt": time,
            "completedAt": { "type": ["string", "null"], "format": "date-time", "description": "When it settled" },
            "awaited": { "type": "boolean" },
            "composed": { "type": "boolean", "description": "Settled by work the runtime runs (when, then, all, any)" },
            "error": schema("PromiseError"),
            "deadline": { "type": "string", "format": "date-time", "description": "When it times out, while pending" },
            "retentionMs": { "type": "integer", "minimum": 0, "description": "How long it is kept once settled" },
            "payloadType": { "type": "string", "description": "The declared payload type, as WIT text" },
            "payloadSchema": { "type": "object", "description": "The declared payload type as Golem's AnalysedType" } } },
        "PromiseError": { "type": "object", "required": ["kind", "message", "data"], "properties": {
            "kind": { "type": "string", "enum": ["rejected", "timed-out", "failed"] }, "message": string,
            "data": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } } } },
        "PromiseDetail": { "allOf": [schema("PromiseInfo"), { "type": "object", "properties": {
            "data": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 },
                "description": "The payload, once completed" } } }] },
        "WhenRequest": { "type": "object", "required": ["function"], "properties": {
            "function": string,
            "input": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } },
            "inputJson": { "description": "The input as a JSON value, sent as its JSON text" },
            "timeoutMs": count, "retentionMs": count, "payloadType": string } },
        "ThenRequest": { "type": "object", "required": ["source", "function"], "properties": {
            "source": { "type": "string", "description": "{cid}/{name}/{oplogIdx}" },
            "function": string, "timeoutMs": count, "retentionMs": count, "payloadType": string } },
        "Rejection": { "type": "object", "required": ["oplogIdx", "error"], "properties": {
            "oplogIdx": count, "error": string,
            "data": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } } } },
        "PromiseList": { "type": "object", "required": ["promises"],
            "properties": { "promises": { "type": "array", "items": schema("PromiseInfo") } } },
        "Completion": { "type": "object", "required": ["oplogIdx"],
            "description": "The payload as `data` (Golem's form) or as `value` (a JSON value, a Vow extension; for a promise with a declared payload type, a value of that type)",
            "properties": {
            "oplogIdx": count, "data": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } },
            "value": {} } },
    });
    if let (Some(all), Value::Object(oplog)) = (schemas.as_object_mut(), oplog_schemas()) {
        all.extend(oplog);
    }
    schemas
}

/// The bodies of the two oplog routes (apart, as one `json!` would be
/// too deep for the macro).
fn oplog_schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let count = json!({ "type": "integer", "minimum": 0 });
    json!({
        "GetOplogResponse": { "type": "object", "required": ["entries", "firstIndexInChunk", "lastIndex"],
            "properties": {
                "entries": { "type": "array", "items": { "type": "object", "required": ["oplogIndex", "entry"],
                    "properties": { "oplogIndex": count, "entry": schema("PublicOplogEntry") } } },
                "firstIndexInChunk": count,
                "lastIndex": { "type": "integer", "format": "uint64", "description": "Index of the worker's last entry" },
                "next": { "allOf": [schema("OplogCursor")],
                    "description": "Where the next page starts; present whenever `entries` is not empty, absent otherwise" } } },
        "OplogCursor": { "type": "object", "required": ["next_oplog_index", "current_component_version"],
            "properties": { "next_oplog_index": count, "current_component_version": count } },
        "PublicOplogEntry": { "type": "object", "required": ["type", "timestamp"],
            "description": "Golem's public oplog entry, tagged by `type`, with snake_case fields and typed values (`{\"typ\", \"value\"}`); see docs/rest-api.md for how Vow's entries map to these",
            "properties": {
                "type": { "type": "string", "enum": ["Create", "ImportedFunctionInvoked", "ExportedFunctionInvoked",
                    "ExportedFunctionCompleted", "Error", "NoOp", "Jump", "ChangeRetryPolicy",
                    "BeginAtomicRegion", "EndAtomicRegion"] },
                "timestamp": time } },
        "OplogPage": { "type": "object", "required": ["entries"],
            "properties": {
                "entries": { "type": "array", "items": { "type": "object", "required": ["index", "at", "entry"],
                    "properties": {
                        "index": { "type": "integer", "format": "uint64" },
                        "at": { "type": "integer", "format": "uint64", "description": "Milliseconds since the Unix epoch" },
                        "entry": { "type": "object", "required": ["kind"], "description": "The entry; `kind` names it (`create`, `invocation-started`, `create-promise`, `await-promise`, `wall-clock`, ...)",
                            "properties": { "kind": { "type": "string" } } } } } },
                "next": { "type": "integer", "format": "uint64", "description": "`from` of the next page; absent on the last page" } } },
    })
}
