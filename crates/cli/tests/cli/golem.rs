//! Golem 1.1 compatibility of `vow serve`, proven against Golem's own
//! OpenAPI document: `openapi/golem-service.yaml` of the published
//! `golem-client` 1.1.0 crate, read from cargo's registry at test time
//! (`tests/golem-openapi` is a manifest that is only fetched, never built).
//!
//! schemathesis (from `.venv-schemathesis`, installed by
//! `scripts/schemathesis.sh`, which the README's test command runs) fuzzes
//! the operations Vow implements with that document and checks every answer's
//! status, content type and body against it; hand-written requests then go
//! through a Golem client's flow and check the exact answers.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::support::Server;

/// The operations of Golem's document that Vow implements, by operation id.
const OPERATIONS: &[&str] = &[
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

/// Golem 1.1's OpenAPI document, from the golem-client 1.1.0 crate in
/// cargo's registry (`cargo metadata` fetches it when missing).
fn golem_document() -> anyhow::Result<PathBuf> {
    let manifest = vow_tests::workspace_root()
        .join("tests")
        .join("golem-openapi")
        .join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .context("running cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata for {} failed (it fetches golem-client 1.1.0 from crates.io the first time): {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout)?;
    let client = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "golem-client" && p["version"] == "1.1.0")
        .context("golem-client 1.1.0 is not in the metadata")?;
    let crate_dir = PathBuf::from(client["manifest_path"].as_str().unwrap_or_default());
    let document = crate_dir
        .parent()
        .context("no crate directory")?
        .join("openapi")
        .join("golem-service.yaml");
    ensure!(document.is_file(), "{} is missing", document.display());
    Ok(document)
}

/// The schemathesis command, or how to get it.
pub(crate) fn schemathesis() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("VOW_SCHEMATHESIS") {
        Some(path) => PathBuf::from(path),
        None => vow_tests::workspace_root()
            .join(".venv-schemathesis")
            .join("bin")
            .join("schemathesis"),
    };
    ensure!(
        path.is_file(),
        "schemathesis is not installed at {}: run `bash scripts/schemathesis.sh` \
         (the README's test command does), or set VOW_SCHEMATHESIS to its path",
        path.display()
    );
    Ok(path)
}

#[test]
fn vow_serve_conforms_to_golems_openapi_document() -> anyhow::Result<()> {
    let document = golem_document()?;
    let schemathesis = schemathesis()?;
    let harness = vow_tests::guest("harness")?;
    let server = Server::start(&[&harness])?;
    let cid = server.component_id("harness")?;
    // A worker for the operations on one, one for `delete_worker`, and one
    // for `interrupt_worker`/`resume_worker` (an interrupted worker runs
    // nothing until resumed), so that the requests get past the 404s and
    // none waits on another.
    for name in ["w1", "doomed", "paused"] {
        server.client(&["worker", "start", &cid, name])?.success()?;
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[parameters]
"path.component_id" = "{cid}"
"path.worker_name" = "w1"

[[operations]]
include-operation-id = "delete_worker"
parameters = {{ "path.worker_name" = "doomed" }}

[[operations]]
include-operation-id = ["interrupt_worker", "resume_worker"]
parameters = {{ "path.worker_name" = "paused" }}

[[operations]]
include-operation-id = [
    "invoke_and_await_function", "invoke_function",
    "invoke_and_await_function_without_name", "invoke_function_without_name",
]
parameters = {{ "query.function" = "ping" }}
"#
        ),
    )?;
    let mut command = Command::new(&schemathesis);
    command
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&document)
        .args(["--url", &server.url])
        .args([
            "--checks",
            "status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--no-color",
            "--request-timeout",
            "30",
        ])
        .env("SCHEMATHESIS_HOOKS", "");
    for operation in OPERATIONS {
        command.args(["--include-operation-id", operation]);
    }
    let out = command.output().context("running schemathesis")?;
    let report = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "schemathesis found answers that Golem's document does not allow:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        report.contains(&format!("Tested: {}", OPERATIONS.len())),
        "not every operation was tested:\n{report}"
    );
    Ok(())
}

/// A client that sends what Golem's generated client sends.
struct Golem {
    http: reqwest::Client,
    base: String,
}

impl Golem {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, String, String)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json; charset=utf-8")
                .body(serde_json::to_vec(&body)?);
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((status, content_type, answer.text().await?))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, String)> {
        let (status, content_type, text) =
            self.send(reqwest::Method::POST, path, Some(body)).await?;
        ensure!(
            content_type == "application/json; charset=utf-8",
            "POST {path}: content type {content_type:?}"
        );
        Ok((status, text))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, content_type, text) = self.send(reqwest::Method::GET, path, None).await?;
        ensure!(status == 200, "GET {path}: {status} {text}");
        ensure!(content_type == "application/json; charset=utf-8");
        Ok(serde_json::from_str(&text)?)
    }

    /// Polls the worker's metadata until its status is `status`.
    async fn wait_status(&self, worker: &str, status: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let meta = self.get(worker).await?;
            if meta["status"] == status {
                return Ok(meta);
            }
            if Instant::now() > deadline {
                bail!("{worker} never became {status}: {meta}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A Golem client's flow, request by request, with the exact answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golem_clients_requests_get_golems_answers() -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let server = Server::start(&[&harness])?;
    let cid = server.component_id("harness")?;
    let golem = Golem {
        http: reqwest::Client::new(),
        base: server.url.clone(),
    };
    let workers = format!("/v1/components/{cid}/workers");
    let worker = format!("{workers}/flow");

    let (status, body) = golem
        .post(
            &workers,
            json!({ "name": "flow", "args": [], "env": { "A": "1" } }),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!(
            r#"{{"componentVersion":0,"workerId":{{"componentId":"{cid}","workerName":"flow"}}}}"#
        )
    );

    let (status, body) = golem
        .post(
            &format!("{worker}/invoke-and-await?function=ping"),
            json!({ "params": [{ "typ": { "type": "U32" }, "value": 41 }] }),
        )
        .await?;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"result":{"typ":{"items":[{"type":"U32"}],"type":"Tuple"},"value":[42]}}"#
        )
    );

    // A promise, completed as Golem's client does it.
    let (status, body) = golem
        .post(
            &format!("{worker}/invoke?function=create-and-await"),
            json!({ "params": [] }),
        )
        .await?;
    assert_eq!((status, body.as_str()), (200, "{}"));
    let meta = golem.wait_status(&worker, "Suspended").await?;
    assert_eq!(meta["pendingInvocationCount"], 0);
    let promises = golem.get(&format!("{worker}/promises")).await?;
    let index = promises["promises"][0]["oplogIdx"]
        .as_u64()
        .context("no promise")?;
    let complete = json!({ "oplogIdx": index, "data": [1, 2, 3] });
    let (status, body) = golem
        .post(&format!("{worker}/complete"), complete.clone())
        .await?;
    assert_eq!((status, body.as_str()), (200, "true"));
    let (status, body) = golem.post(&format!("{worker}/complete"), complete).await?;
    assert_eq!((status, body.as_str()), (200, "false"));
    golem.wait_status(&worker, "Idle").await?;

    // The log, in Golem's public form, paged by Golem's cursor.
    let page = golem.get(&format!("{worker}/oplog?count=3")).await?;
    assert_eq!(page["firstIndexInChunk"], 1, "{page}");
    assert_eq!(page["entries"][0]["entry"]["type"], "Create");
    assert_eq!(page["entries"][0]["entry"]["env"], json!({ "A": "1" }));
    assert_eq!(page["entries"][1]["entry"]["function_name"], "ping");
    assert_eq!(
        page["entries"][2]["entry"]["response"],
        json!({ "typ": { "items": [{ "type": "U32" }], "type": "Tuple" }, "value": [42] })
    );
    assert_eq!(
        page["next"],
        json!({ "current_component_version": 0, "next_oplog_index": 4 })
    );
    let found = golem
        .get(&format!(
            "{worker}/oplog?count=10&cursor=4-0&query=await_promise"
        ))
        .await?;
    assert_eq!(
        found["entries"][0]["entry"]["response"]["value"],
        json!([1, 2, 3]),
        "{found}"
    );

    // Listing and finding, with Golem's filters.
    let listed = golem
        .get(&format!(
            "{workers}?filter=name%20==%20flow&filter=env.A%20==%201"
        ))
        .await?;
    assert_eq!(listed["workers"][0]["workerId"]["workerName"], "flow");
    assert_eq!(listed["workers"].as_array().map(Vec::len), Some(1));
    let (status, body) = golem
        .post(
            &format!("{workers}/find"),
            json!({ "filter": { "type": "Status", "comparator": "Equal", "value": "Idle" }, "count": 10 }),
        )
        .await?;
    assert_eq!(status, 200);
    let found: Value = serde_json::from_str(&body)?;
    assert_eq!(found["workers"][0]["workerId"]["workerName"], "flow");

    // Interrupt a parked invocation, then resume it.
    golem
        .post(
            &format!("{worker}/invoke?function=create-and-await"),
            json!({ "params": [] }),
        )
        .await?;
    golem.wait_status(&worker, "Suspended").await?;
    let (status, body) = golem
        .post(&format!("{worker}/interrupt"), json!(null))
        .await?;
    assert_eq!((status, body.as_str()), (200, "{}"));
    golem.wait_status(&worker, "Interrupted").await?;
    let (status, body) = golem.post(&format!("{worker}/resume"), json!(null)).await?;
    assert_eq!((status, body.as_str()), (200, "{}"));
    golem.wait_status(&worker, "Suspended").await?;

    // Golem's error bodies.
    let (status, body) = golem
        .post(
            &format!("{worker}/invoke-and-await?function=ping"),
            json!({ "params": [{ "typ": { "type": "Str" }, "value": "x" }] }),
        )
        .await?;
    assert_eq!(status, 400);
    assert!(body.starts_with(r#"{"errors":["params[0]: "#), "{body}");
    let (status, body) = golem
        .post(
            &format!("{workers}/nobody/invoke-and-await?function=ping"),
            json!({ "params": [{ "typ": { "type": "U32" }, "value": 1 }] }),
        )
        .await?;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        format!(r#"{{"error":"worker {cid}/nobody not found"}}"#)
    );
    let (status, body) = golem
        .post(
            &format!("{workers}/flow2/invoke-and-await?function=fail"),
            json!({ "params": [{ "typ": { "type": "Str" }, "value": "boom" }] }),
        )
        .await?;
    assert_eq!(status, 404, "{body}");
    golem
        .post(&workers, json!({ "name": "flow2", "args": [], "env": {} }))
        .await?;
    let (status, body) = golem
        .post(
            &format!("{workers}/flow2/invoke-and-await?function=fail"),
            json!({ "params": [{ "typ": { "type": "Str" }, "value": "boom" }] }),
        )
        .await?;
    assert_eq!(status, 500);
    let error: Value = serde_json::from_str(&body)?;
    assert_eq!(error["golemError"]["type"], "RuntimeError", "{body}");
    Ok(())
}
