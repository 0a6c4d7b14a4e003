//! The reusable parts of the OpenAPI document: parameters, error responses
//! and the schemas of every body.

use serde_json::{Value, json};

use super::{json_content, schema};

/// A worker name: 1-256 bytes, no `/`, no control characters. (JSON
/// Schema counts characters, not bytes: `maxLength` lets through a name of
/// 256 characters that is longer than 256 bytes in UTF-8, which the
/// description says.)
fn worker_name() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 256,
        "pattern": "^[^/\\u0000-\\u001f\\u007f-\\u009f]+$",
        "description": "1-256 bytes of UTF-8, no `/`, no control characters" })
}

/// A u64 as the API reads it: an integer from 0 to 2^64 - 1.
fn uint64() -> Value {
    json!({ "type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX })
}

/// An RFC 3339 UTC timestamp, as worker filters read it (Golem's form;
/// 1970 or later, days up to 28 so that every match is a real date).
const TIMESTAMP: &str = "(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z";

/// One `filter=` of the worker listing: `<property> <comparator> <value>`.
fn worker_filter_text() -> String {
    let ordered =
        "(==|=|!=|>=|>|<=|<|eq|equal|ne|notequal|ge|greaterequal|gt|greater|le|lessequal|lt|less)";
    let strings = "(==|=|!=|eq|equal|ne|notequal|like|notlike)";
    let statuses = "(Running|Idle|Suspended|Interrupted|Retrying|Failed|Exited|running|idle|suspended|interrupted|retrying|failed|exited)";
    format!(
        "^(name {strings} [^\\s]+|env\\.[^\\s]+ {strings} [^\\s]+|status {ordered} {statuses}|version {ordered} [0-9]{{1,19}}|(created_at|createdAt) {ordered} {TIMESTAMP})$"
    )
}

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
        "name": { "name": "name", "in": "path", "required": true,
            "description": "Worker name (1-256 bytes, no `/`, no control characters)", "schema": worker_name() },
        "componentName": query("name", true, "Name of the component (not blank)",
            json!({ "type": "string", "minLength": 1, "pattern": "\\S" })),
        "function": query("function", true, "Export to invoke, as listed in the component's exports",
            json!({ "type": "string" })),
        "idempotencyKey": { "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "A repeated key runs nothing new: `invoke` answers 200 `{}`, `invoke-and-await` the first outcome; visible ASCII, spaces and tabs",
            "schema": { "type": "string", "pattern": "^[\\t\\u0020-\\u007e]*$" } },
        "oplogFrom": query("from", false, "First oplog index to return (default 1)",
            json!({ "type": "integer", "format": "uint64", "minimum": 1, "maximum": u64::MAX })),
        "oplogCount": query("count", false, "Most entries to return (default and maximum 1000)",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
        "golemOplogFrom": query("from", false, "First oplog index to return (default 1); not with `query` (a 400)",
            uint64()),
        "golemOplogCount": query("count", true, "Most entries to return (at most 100 are answered)",
            uint64()),
        "oplogCursor": query("cursor", false, "`<next_oplog_index>-<component_version>` from the previous page's `next`; overrides `from`",
            json!({ "type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$" })),
        "oplogQuery": query("query", false, "Search: Golem's Lucene-like query (terms, \"phrases\", /regex/, field:term, AND, OR, NOT, parentheses); answers the next `count` matching entries. Not with `from`; a query that does not parse (an unclosed group or phrase, a lone operator, a bad regular expression) is a 400 saying why",
            json!({ "type": "string" })),
        "recoverImmediately": query("recovery-immediately", false,
            "Go on at once, as after a crash, instead of staying interrupted until resumed (default false)",
            json!({ "type": "boolean" })),
        "workerFilter": { "name": "filter", "in": "query", "required": false, "explode": true, "style": "form",
            "description": "`<property> <comparator> <value>` (property `name`, `status`, `version`, `created_at` or `env.NAME`; comparator `==`, `!=`, `>=`, `>`, `<=`, `<`, `like`, `notlike`, the last two for `name` and `env` only; a `created_at` is RFC 3339 UTC); repeated filters must all match",
            "schema": { "type": "array", "items": { "type": "string", "pattern": worker_filter_text() } } },
        "scanCursor": query("cursor", false, "`layer/cursor` from the previous page's `cursor` (default 0/0)",
            json!({ "type": "string", "pattern": "^[0-9]{1,19}/[0-9]{1,19}$" })),
        "scanCount": query("count", false, "Most workers per page (default 50)", uint64()),
        "precise": query("precise", false, "Accepted for Golem's clients; Vow's metadata is always current",
            json!({ "type": "boolean" })),
        "status": query("status", false, "Only promises with this status (`fulfilled` is `completed`)",
            json!({ "type": "string", "enum": ["pending", "completed", "fulfilled", "rejected", "timed-out"] })),
        "promiseIdx": path("idx", "The promise's oplog index (of its creation)", None),
        "linkToken": path("token", "A completion link's token", None),
        "component": query("component", false, "Only promises of this component's workers",
            json!({ "type": "string", "format": "uuid" })),
        "worker": query("worker", false, "Only promises of workers of this name: of `component`'s worker when given, else of every component's",
            json!({ "type": "string" })),
    })
}

/// One error response per status, `E{status}`.
pub(super) fn responses() -> Value {
    let error = |description: &str| json!({ "description": description, "content": json_content(schema("Error")) });
    json!({
        "E400": { "description": "Bad input, one message per problem", "content": json_content(schema("Errors")) },
        "E401": error("Missing or wrong API token; or a completion link token this server did not issue, or that was altered"),
        "E403": error("A completion link that expired, or does not allow this action"),
        "E404": error("Unknown component, worker, function or promise"),
        "E409": error("Worker name taken, worker failed or deleted, or the promise already settled"),
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
    let count = uint64();
    let bytes =
        json!({ "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } });
    // A JSON value that is not `null` (`null` is the field left out).
    let value = json!({ "type": ["boolean", "number", "string", "array", "object"] });
    // `false` as a property's schema: the property is not there.
    let absent = json!(false);
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
            "name": worker_name(), "args": { "type": "array", "items": string },
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
        "ScanCursor": { "type": "object", "required": ["cursor", "layer"], "additionalProperties": false, "properties": {
            "cursor": count, "layer": count } },
        "WorkerList": { "type": "object", "required": ["workers"], "properties": {
            "workers": { "type": "array", "items": schema("WorkerMetadata") },
            "cursor": { "oneOf": [schema("ScanCursor"), { "type": "null" }],
                "description": "Where the next page starts; null on the last page" } } },
        "WorkersMetadataRequest": { "type": "object", "additionalProperties": false, "properties": {
            "filter": schema("WorkerFilter"), "cursor": schema("ScanCursor"), "count": count,
            "precise": { "type": "boolean" } } },
        "InvokeParameters": { "type": "object",
            "description": "At most one of `params` (Golem's type-annotated values, answered in the same form), `params_json` (Vow's plain JSON, typed by the export) or `params_wave` (WAVE text); none is no arguments. The arguments must fit the export's signature (its `exports` entry), else 400 naming each wrong one",
            "anyOf": [
                { "properties": { "params_json": absent, "params_wave": absent } },
                { "properties": { "params": absent, "params_wave": absent } },
                { "properties": { "params": absent, "params_json": absent } },
            ],
            "properties": { "params": { "type": "array", "items": schema("TypeAnnotatedValue") },
                "params_json": { "type": "array", "items": {} },
                "params_wave": { "type": "array", "items": string } } },
        "TypeAnnotatedValue": { "type": "object", "required": ["typ", "value"],
            "properties": { "typ": { "type": "object", "required": ["type"], "properties": { "type": string },
                "description": "Golem's AnalysedType, tagged by `type`" },
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
            "data": bytes } },
        "PromiseDetail": { "allOf": [schema("PromiseInfo"), { "type": "object", "properties": {
            "data": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 },
                "description": "The payload, once completed" } } }] },
        "WhenRequest": { "type": "object", "required": ["function"], "additionalProperties": false,
            "description": "The input as `input` (bytes) or `inputJson`, not both (none is no input). `function` must be an export that can settle a promise and `payloadType` WIT text that its result fits, else 400",
            "anyOf": [{ "properties": { "input": absent } }, { "properties": { "inputJson": absent } }],
            "properties": {
            "function": string,
            "input": bytes,
            "inputJson": { "description": "The input as a JSON value, sent as its JSON text" },
            "timeoutMs": promise_ms(), "retentionMs": promise_ms(), "payloadType": payload_type() } },
        "ThenRequest": { "type": "object", "required": ["source", "function"], "additionalProperties": false,
            "description": "`function` must be an export that takes the settlement and can settle a promise, and `payloadType` WIT text that its result fits, else 400",
            "properties": {
            "source": { "type": "string", "description": "{cid}/{name}/{oplogIdx}",
                "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/.+/[0-9]{1,19}$" },
            "function": string, "timeoutMs": promise_ms(), "retentionMs": promise_ms(), "payloadType": payload_type() } },
        "Rejection": { "type": "object", "required": ["oplogIdx", "error"], "additionalProperties": false, "properties": {
            "oplogIdx": count, "error": string, "data": bytes } },
        "PromiseList": { "type": "object", "required": ["promises"],
            "properties": { "promises": { "type": "array", "items": schema("PromiseInfo") } } },
        "Completion": { "type": "object", "required": ["oplogIdx"],
            "description": "The payload as `data` (Golem's form) or as `value` (a JSON value, a Vow extension; for a promise with a declared payload type, a value of that type, else 400), one of the two",
            "oneOf": [{ "required": ["data"] }, { "required": ["value"] }],
            "properties": { "oplogIdx": count, "data": bytes, "value": value } },
    });
    if let (Some(all), Value::Object(filters)) = (schemas.as_object_mut(), filter_schemas()) {
        all.extend(filters);
    }
    if let (Some(all), Value::Object(oplog)) = (schemas.as_object_mut(), oplog_schemas()) {
        all.extend(oplog);
    }
    if let (Some(all), Value::Object(links)) = (schemas.as_object_mut(), link_schemas()) {
        all.extend(links);
    }
    schemas
}

/// The bodies of the completion link routes.
fn link_schemas() -> Value {
    let string = json!({ "type": "string" });
    let bytes =
        json!({ "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } });
    let time = json!({ "type": "string", "format": "date-time" });
    json!({
        "LinkOptions": { "type": "object", "additionalProperties": false, "properties": {
            "expiresInSecs": { "type": "integer", "minimum": 1, "maximum": 31_622_400u64,
                "description": "Seconds the link lives (default 7 days, at most 366)" },
            "action": { "type": "string", "enum": ["complete", "reject", "both"],
                "description": "What its holder may do (default complete)" } } },
        "CompletionLink": { "type": "object", "required": ["token", "url", "action", "expiresAt"], "properties": {
            "token": { "type": "string", "description": "The capability: treat it as a secret" },
            "url": { "type": "string", "description": "{public url}/v1/links/{token}" },
            "action": { "type": "string", "enum": ["complete", "reject", "both"] },
            "expiresAt": time } },
        "LinkView": { "allOf": [schema("PromiseInfo"), { "type": "object", "required": ["action", "linkExpiresAt"], "properties": {
            "action": { "type": "string", "enum": ["complete", "reject", "both"] },
            "linkExpiresAt": time } }] },
        "LinkCompletion": { "type": "object",
            "description": "The payload as `data` (bytes) or as `value` (a JSON value; for a promise with a declared payload type, a value of that type, else 400), one of the two",
            "oneOf": [{ "required": ["data"] }, { "required": ["value"] }],
            "properties": {
            "data": bytes,
            "value": { "type": ["boolean", "number", "string", "array", "object"] } } },
        "LinkRejection": { "type": "object", "required": ["error"], "additionalProperties": false, "properties": {
            "error": string, "data": bytes } },
    })
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

/// A declared payload type: WIT text.
fn payload_type() -> Value {
    json!({ "type": "string",
        "description": "The declared payload type, as WIT text (`u32`, `list<u8>`, `record { ... }`, ...); text that is not a WIT type is a 400" })
}

/// Golem's `WorkerFilter` tree, one schema per `type`.
fn filter_schemas() -> Value {
    let filter = |kind: &str, comparator: &str, value: Value| {
        json!({ "type": "object", "required": ["type", "comparator", "value"], "additionalProperties": false,
            "properties": { "type": { "const": kind }, "comparator": schema(comparator), "value": value } })
    };
    json!({
        "WorkerFilter": { "description": "Golem's filter tree, tagged by `type`",
            "oneOf": [
                filter("Name", "StringComparator", json!({ "type": "string" })),
                filter("Status", "Comparator", json!({ "type": "string",
                    "enum": ["Running", "Idle", "Suspended", "Interrupted", "Retrying", "Failed", "Exited"] })),
                filter("Version", "Comparator", uint64()),
                filter("CreatedAt", "Comparator", json!({ "type": "string",
                    "pattern": format!("^{TIMESTAMP}$"), "description": "RFC 3339, UTC" })),
                { "type": "object", "required": ["type", "name", "comparator", "value"], "additionalProperties": false,
                    "properties": { "type": { "const": "Env" }, "name": { "type": "string", "description": "Matched without regard to case" },
                        "comparator": schema("StringComparator"), "value": { "type": "string" } } },
                { "type": "object", "required": ["type", "filters"], "additionalProperties": false,
                    "properties": { "type": { "enum": ["And", "Or"] },
                        "filters": { "type": "array", "items": schema("WorkerFilter") } } },
                { "type": "object", "required": ["type", "filter"], "additionalProperties": false,
                    "properties": { "type": { "const": "Not" }, "filter": schema("WorkerFilter") } },
            ] },
        "Comparator": { "type": "string", "enum": ["Equal", "NotEqual", "GreaterEqual", "Greater", "LessEqual", "Less"] },
        "StringComparator": { "type": "string", "enum": ["Equal", "NotEqual", "Like", "NotLike"] },
    })
}

/// `timeoutMs` and `retentionMs`: at most 100 years.
fn promise_ms() -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": crate::routes::MAX_PROMISE_MS,
        "description": "Milliseconds, at most 100 years" })
}
