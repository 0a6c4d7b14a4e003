//! `vow serve` against its own OpenAPI document (`GET /openapi.json`): the
//! document must describe exactly what the server accepts and answers.
//!
//! schemathesis (from `.venv-schemathesis`, see `golem.rs`) fuzzes every
//! operation of the document on a server with a component, workers and a
//! pending promise, the path parameters set to their ids so that requests
//! reach past the 404s, and checks that no answer is a 5xx or strays from
//! the document (status, content type, body) and that no request the
//! document allows is refused as bad input (`positive_data_acceptance`).

#![allow(
    clippy::print_stdout,
    reason = "the test prints schemathesis's summary: what it generated"
)]

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::golem::schemathesis;
use crate::support::Server;

/// The number of operations in the server's document.
fn operations(url: &str) -> anyhow::Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let document: Value = runtime.block_on(async {
        reqwest::get(format!("{url}/openapi.json"))
            .await?
            .error_for_status()?
            .json()
            .await
    })?;
    let count = document["paths"]
        .as_object()
        .context("no paths in the document")?
        .values()
        .filter_map(Value::as_object)
        .map(|ops| ops.len())
        .sum();
    Ok(count)
}

#[test]
fn vow_serve_conforms_to_its_own_openapi_document() -> anyhow::Result<()> {
    let started = Instant::now();
    let schemathesis = schemathesis()?;
    let harness = vow_tests::guest("harness")?;
    let server = Server::start(&[&harness])?;
    let cid = server.component_id("harness")?;
    // `w1` for reading and invoking (`nothing`, which takes and returns
    // nothing, so that nothing queued there waits); `doomed` for
    // `delete_worker`; `paused` for `interrupt_worker` / `resume_worker`;
    // `find` for the routes of the worker named `find`; `parked` waits on a
    // promise, which the promise and link operations act on. Each has its
    // own worker so that none breaks the fixture of another: a deleted or
    // interrupted worker answers 404 or runs nothing, and an invocation
    // queued behind a parked one would wait for the whole run.
    for name in ["w1", "doomed", "paused", "find", "parked"] {
        server.client(&["worker", "start", &cid, name])?.success()?;
    }
    server
        .client(&[
            "worker",
            "invoke",
            &cid,
            "parked",
            "create-and-await",
            "--no-wait",
        ])?
        .success()?;
    let promise = server.awaited_promise(&cid, "parked")?;
    let idx = promise
        .rsplit('/')
        .next()
        .context("no index in the promise id")?
        .to_owned();
    let link = server
        .client(&["promise", "link", &promise, "--action", "both"])?
        .success()?;
    let token = link
        .stdout
        .trim()
        .rsplit_once("/v1/links/")
        .map(|(_, token)| token.to_owned())
        .context("no token in the link")?;
    let documented = operations(&server.url)?;
    // `GET /v1/events` never ends (a stream of server-sent events), and
    // schemathesis reads whole answers: it is left out here, and tested by
    // `crates/server/tests/api/ui.rs` and the browser tests.
    let expected = documented - 1;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[parameters]
"path.cid" = "{cid}"
"path.name" = "w1"
"path.idx" = "{idx}"
"path.token" = "{token}"
"query.function" = "nothing"

# Real values, mixed into what schemathesis generates, so that bodies too
# reach past the 404s: the pending promise's index and id, and exports (and
# their result types) that `when` and `then` can run.
[dictionaries.idx]
values = [{idx}]

[dictionaries.promise]
values = ["{promise}"]

[dictionaries.when-function]
values = ["double"]

[dictionaries.then-function]
values = ["recover"]

[dictionaries.payload-type]
values = ["list<u8>", "result<list<u8>, string>"]

[[operations]]
include-operation-id = "delete_worker"
parameters = {{ "path.name" = "doomed" }}

[[operations]]
include-operation-id = ["interrupt_worker", "resume_worker"]
parameters = {{ "path.name" = "paused" }}

# The promise's worker. Completing or rejecting the promise settles it, after
# which these answer `false`, 409 (a link for a settled promise) or the
# settled promise: all in the document.
[[operations]]
include-operation-id = [
    "complete_promise", "rejectPromise", "getPromise", "createCompletionLink",
    "listWorkerPromises",
]
parameters = {{ "path.name" = "parked", "body.oplogIdx" = {{ dictionary = "idx", probability = 0.5 }} }}

# What a static document cannot say, these check at run time and answer with
# the 400 the document declares: invocation arguments against the export's
# WIT signature, `function` and `payloadType` (WIT text) of when/then against
# the component, and the oplog `query` language (nested parentheses, which no
# pattern describes) and `from` with `query`.
[[operations]]
include-operation-id = [
    "invoke_and_await_function", "invoke_function",
    "invoke_and_await_function_without_name", "invoke_function_without_name",
    "when", "then", "get_oplog",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409"]

[[operations]]
include-operation-id = "when"
parameters = {{ "body.function" = {{ dictionary = "when-function", probability = 0.5 }}, "body.payloadType" = {{ dictionary = "payload-type", probability = 0.5 }} }}

[[operations]]
include-operation-id = "then"
parameters = {{ "body.source" = {{ dictionary = "promise", probability = 0.5 }}, "body.function" = {{ dictionary = "then-function", probability = 0.5 }}, "body.payloadType" = {{ dictionary = "payload-type", probability = 0.5 }} }}

# A component upload is any bytes by the document, and random bytes are never
# a component: every one is a 400 (not a component), which the document
# declares. The other checks still run.
[[operations]]
include-operation-id = "uploadComponent"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]
"#
        ),
    )?;
    let out = Command::new(&schemathesis)
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args([
            // Every operation: without a filter, schemathesis leaves out
            // the one that serves the document it reads.
            "--include-path-regex",
            ".",
            "--exclude-operation-id",
            "streamEvents",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,positive_data_acceptance",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--no-color",
            "--request-timeout",
            "30",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .context("running schemathesis")?;
    let report = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "schemathesis found answers that the document does not allow, or requests it allows that were refused:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        report.contains(&format!("Selected: {expected}/{documented}"))
            && report.contains(&format!("Tested: {expected}")),
        "not every one of the document's {expected} operations was tested:\n{report}"
    );
    let summary = report
        .lines()
        .skip_while(|line| !line.starts_with("Test cases:"))
        .nth(1)
        .unwrap_or_default()
        .trim();
    println!(
        "schemathesis: {expected} operations, {summary}, in {:.1?} with the fixture",
        started.elapsed()
    );
    Ok(())
}
