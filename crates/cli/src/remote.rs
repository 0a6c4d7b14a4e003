//! `vow component|worker|promise ...`: the client side of the REST API.
//!
//! Each command makes one request. `--json` prints the server's answer as it
//! came; otherwise the answer is shown for people (tables, one-line
//! confirmations).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vow_runtime::{ExportInfo, ParamInfo, PromiseId};

use crate::client::{Client, Request};
use crate::output;
use crate::{ComponentCommand, InvokeArgs, NodeCommand, PromiseCommand, WorkerCommand};

/// `ComponentInfo` as the server sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Component {
    component_id: String,
    name: String,
    size: u64,
    #[serde(default)]
    exports: Vec<Export>,
}

#[derive(Debug, Deserialize)]
struct Export {
    name: String,
    #[serde(default)]
    params: Vec<Param>,
    #[serde(default)]
    results: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Param {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

impl Export {
    fn signature(&self) -> String {
        output::signature(&ExportInfo {
            name: self.name.clone(),
            params: self
                .params
                .iter()
                .map(|p| ParamInfo {
                    name: p.name.clone(),
                    ty: p.ty.clone(),
                })
                .collect(),
            results: self.results.clone(),
        })
    }
}

/// `WorkerMetadata` as the server sends it (Golem's shape; the CLI shows
/// the status in lower case).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Worker {
    worker_id: WorkerId,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    status: String,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    pending_invocation_count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkerId {
    component_id: String,
    worker_name: String,
}

/// `PromiseInfo` as the server sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    promise_id: String,
    status: String,
    #[serde(default)]
    awaited: bool,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    completed_at: Option<String>,
}

/// Worker logs as the server sends them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Logs {
    stdout: String,
    stderr: String,
    #[serde(default)]
    stdout_dropped: u64,
    #[serde(default)]
    stderr_dropped: u64,
}

/// Reads one field of an answer as `T`, or says the answer was unexpected.
fn parse<T: DeserializeOwned>(answer: &Value, field: Option<&str>) -> anyhow::Result<T> {
    let value = match field {
        Some(field) => answer.get(field).cloned().unwrap_or(Value::Null),
        None => answer.clone(),
    };
    serde_json::from_value(value).map_err(|e| anyhow!("unexpected answer from the server: {e}"))
}

pub(crate) async fn component(
    server: &crate::ServerArgs,
    command: ComponentCommand,
) -> anyhow::Result<()> {
    let client = Client::for_server(server)?;
    match command {
        ComponentCommand::Add { file, name, json } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = name.unwrap_or_else(|| stem(&file));
            let request = Request::new(Method::POST, &["v1", "components"]).query("name", name);
            let answer = client.call_bytes(request, bytes).await?;
            if json {
                return output::json(&answer);
            }
            let component: Component = parse(&answer, None)?;
            output::line(&format!(
                "added component {} {} ({})",
                component.name,
                component.component_id,
                output::size(component.size)
            ))?;
            for export in &component.exports {
                output::line(&format!("  {}", export.signature()))?;
            }
            Ok(())
        }
        ComponentCommand::List { json } => {
            let answer = client
                .call(Request::new(Method::GET, &["v1", "components"]))
                .await?;
            if json {
                return output::json(&answer);
            }
            let components: Vec<Component> = parse(&answer, Some("components"))?;
            let rows: Vec<Vec<String>> = components
                .iter()
                .map(|c| {
                    let exports: Vec<&str> = c.exports.iter().map(|e| e.name.as_str()).collect();
                    vec![
                        c.component_id.clone(),
                        c.name.clone(),
                        output::size(c.size),
                        exports.join(", "),
                    ]
                })
                .collect();
            output::line(&output::table(
                &["COMPONENT ID", "NAME", "SIZE", "EXPORTS"],
                &rows,
            ))?;
            Ok(())
        }
    }
}

/// A node as `GET /v1/nodes` sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    node_id: String,
    role: String,
    epoch: i64,
    advertise_url: String,
    expires_at: String,
    owned: u64,
    #[serde(default)]
    load: Option<NodeLoad>,
}

#[derive(Debug, Deserialize)]
struct NodeLoad {
    workers: u64,
    resident: u64,
    running: u64,
}

pub(crate) async fn node(server: &crate::ServerArgs, command: NodeCommand) -> anyhow::Result<()> {
    let client = Client::for_server(server)?;
    match command {
        NodeCommand::List { json } => {
            let answer = client
                .call(Request::new(Method::GET, &["v1", "nodes"]))
                .await?;
            if json {
                return output::json(&answer);
            }
            let this: String = parse(&answer, Some("thisNode"))?;
            let nodes: Vec<Node> = parse(&answer, Some("nodes"))?;
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| {
                    let mut id = n.node_id.clone();
                    if n.node_id == this {
                        id.push_str(" *");
                    }
                    let load = n.load.as_ref().map_or_else(String::new, |l| {
                        format!(
                            "{} loaded, {} in memory, {} running",
                            l.workers, l.resident, l.running
                        )
                    });
                    vec![
                        id,
                        n.role.clone(),
                        n.epoch.to_string(),
                        n.advertise_url.clone(),
                        n.expires_at.clone(),
                        n.owned.to_string(),
                        load,
                    ]
                })
                .collect();
            output::line(&output::table(
                &[
                    "NODE",
                    "ROLE",
                    "EPOCH",
                    "ADDRESS",
                    "RENEWED UNTIL",
                    "WORKERS",
                    "LOAD",
                ],
                &rows,
            ))?;
            output::line("(* the node that answered)")?;
            Ok(())
        }
    }
}

fn stem(file: &Path) -> String {
    file.file_stem().map_or_else(
        || "component".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    )
}

pub(crate) async fn worker(
    server: &crate::ServerArgs,
    command: WorkerCommand,
) -> anyhow::Result<()> {
    let client = Client::for_server(server)?;
    match command {
        WorkerCommand::Start {
            component,
            name,
            args,
            env,
            json,
        } => {
            let env: BTreeMap<String, String> = env.into_iter().collect();
            let body = json!({ "name": name, "args": args, "env": env });
            let path = ["v1", "components", &component, "workers"];
            let answer = client
                .call_json(Request::new(Method::POST, &path), &body)
                .await?;
            if json {
                return output::json(&answer);
            }
            let id: WorkerId = parse(&answer, Some("workerId"))?;
            output::line(&format!(
                "started worker {}/{}",
                id.component_id, id.worker_name
            ))?;
            Ok(())
        }
        WorkerCommand::List { component, json } => {
            // Every page, following the server's cursor.
            let path = ["v1", "components", &component, "workers"];
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut request = Request::new(Method::GET, &path).query("count", "1000");
                if let Some(cursor) = &cursor {
                    request = request.query("cursor", cursor.clone());
                }
                let answer = client.call(request).await?;
                all.extend(answer["workers"].as_array().cloned().unwrap_or_default());
                cursor = match (&answer["cursor"]["layer"], &answer["cursor"]["cursor"]) {
                    (Value::Number(layer), Value::Number(at)) => Some(format!("{layer}/{at}")),
                    _ => None,
                };
                if cursor.is_none() {
                    break;
                }
            }
            let answer = json!({ "workers": all, "cursor": null });
            if json {
                return output::json(&answer);
            }
            let workers: Vec<Worker> = parse(&answer, Some("workers"))?;
            let rows: Vec<Vec<String>> = workers
                .iter()
                .map(|w| {
                    vec![
                        w.worker_id.worker_name.clone(),
                        w.status.to_lowercase(),
                        w.pending_invocation_count.to_string(),
                        w.created_at.clone(),
                        w.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::line(&output::table(
                &["NAME", "STATUS", "QUEUED", "CREATED", "LAST ERROR"],
                &rows,
            ))?;
            Ok(())
        }
        WorkerCommand::Get {
            component,
            name,
            json,
        } => {
            let path = ["v1", "components", &component, "workers", &name];
            let answer = client.call(Request::new(Method::GET, &path)).await?;
            if json {
                return output::json(&answer);
            }
            let worker: Worker = parse(&answer, None)?;
            show_worker(&worker)
        }
        WorkerCommand::Invoke(args) => invoke(&client, args).await,
        WorkerCommand::Logs {
            component,
            name,
            json,
        } => {
            let path = ["v1", "components", &component, "workers", &name, "logs"];
            let answer = client.call(Request::new(Method::GET, &path)).await?;
            if json {
                return output::json(&answer);
            }
            let logs: Logs = parse(&answer, None)?;
            for (dropped, stream) in [
                (logs.stdout_dropped, "stdout"),
                (logs.stderr_dropped, "stderr"),
            ] {
                if dropped > 0 {
                    output::error_line(&format!(
                        "({dropped} earlier bytes of {stream} were dropped)"
                    ));
                }
            }
            output::raw(logs.stdout.as_bytes())?;
            output::raw_err(logs.stderr.as_bytes())?;
            Ok(())
        }
        WorkerCommand::Oplog {
            component,
            name,
            from,
            count,
            json,
        } => oplog(&client, &component, &name, from, count, json).await,
        WorkerCommand::Interrupt {
            component,
            name,
            recover_immediately,
        } => {
            let path = [
                "v1",
                "components",
                &component,
                "workers",
                &name,
                "interrupt",
            ];
            let request = Request::new(Method::POST, &path)
                .query("recovery-immediately", recover_immediately.to_string());
            client.call(request).await?;
            output::line(&if recover_immediately {
                format!("interrupted worker {component}/{name}; it goes on at once by replay")
            } else {
                format!(
                    "interrupted worker {component}/{name}; `vow worker resume {component} {name}` lets it go on"
                )
            })?;
            Ok(())
        }
        WorkerCommand::Resume { component, name } => {
            let path = ["v1", "components", &component, "workers", &name, "resume"];
            client.call(Request::new(Method::POST, &path)).await?;
            output::line(&format!("resumed worker {component}/{name}"))?;
            Ok(())
        }
        WorkerCommand::Delete { component, name } => {
            let path = ["v1", "components", &component, "workers", &name];
            client.call(Request::new(Method::DELETE, &path)).await?;
            output::line(&format!("deleted worker {component}/{name}"))?;
            Ok(())
        }
    }
}

/// Prints a worker's oplog page by page: one line per entry (index, time,
/// kind and the entry's fields), or the entries as JSON lines.
async fn oplog(
    client: &Client,
    component: &str,
    name: &str,
    from: u64,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let path = [
        "v1",
        "components",
        component,
        "workers",
        name,
        "oplog",
        "raw",
    ];
    let mut next = Some(from.max(1));
    let mut left = count.unwrap_or(u64::MAX);
    while let Some(from) = next
        && left > 0
    {
        let page_size = left.min(1000);
        let answer = client
            .call(
                Request::new(Method::GET, &path)
                    .query("from", from.to_string())
                    .query("count", page_size.to_string()),
            )
            .await?;
        let entries = answer["entries"].as_array().cloned().unwrap_or_default();
        for entry in &entries {
            if json {
                output::line(&entry.to_string())?;
                continue;
            }
            let mut fields = entry["entry"].clone();
            let kind = fields["kind"].as_str().unwrap_or("?").to_owned();
            if let Some(map) = fields.as_object_mut() {
                map.remove("kind");
            }
            let at = entry["at"]
                .as_u64()
                .map(|ms| {
                    vow_server::time::rfc3339(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                    )
                })
                .unwrap_or_default();
            let detail = match fields.as_object() {
                Some(map) if map.is_empty() => String::new(),
                _ => fields.to_string(),
            };
            output::line(
                format!(
                    "{:>6}  {at}  {kind:<20} {detail}",
                    entry["index"].as_u64().unwrap_or(0)
                )
                .trim_end(),
            )?;
        }
        left = left.saturating_sub(entries.len() as u64);
        next = answer["next"].as_u64();
    }
    Ok(())
}

fn show_worker(worker: &Worker) -> anyhow::Result<()> {
    let env: Vec<String> = worker.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let rows = [
        (
            "worker",
            format!(
                "{}/{}",
                worker.worker_id.component_id, worker.worker_id.worker_name
            ),
        ),
        ("status", worker.status.to_lowercase()),
        ("queued", worker.pending_invocation_count.to_string()),
        ("created", or_dash(worker.created_at.clone())),
        ("args", or_dash(worker.args.join(" "))),
        ("env", or_dash(env.join(" "))),
        (
            "last error",
            or_dash(worker.last_error.clone().unwrap_or_default()),
        ),
    ];
    for (key, value) in rows {
        output::line(&format!("{key:<11}{value}"))?;
    }
    Ok(())
}

async fn invoke(client: &Client, args: InvokeArgs) -> anyhow::Result<()> {
    let body = match &args.json_params {
        Some(text) => {
            let params: Value = serde_json::from_str(text)
                .map_err(|e| anyhow!("--json-params is not valid JSON: {e}"))?;
            if !params.is_array() {
                bail!("--json-params must be a JSON array with one value per parameter");
            }
            json!({ "params_json": params })
        }
        None => json!({ "params_wave": args.args }),
    };
    let endpoint = if args.no_wait {
        "invoke"
    } else {
        "invoke-and-await"
    };
    let path = [
        "v1",
        "components",
        &args.component,
        "workers",
        &args.name,
        endpoint,
    ];
    let mut request = Request::new(Method::POST, &path).query("function", args.function.clone());
    if let Some(key) = &args.idempotency_key {
        request = request.header("idempotency-key", key)?;
    }
    let answer = client.call_json(request, &body).await?;
    if args.json {
        return output::json(&answer);
    }
    if args.no_wait {
        output::line(&format!(
            "queued {} on worker {}/{}",
            args.function, args.component, args.name
        ))?;
    } else {
        let result = answer.get("result").unwrap_or(&Value::Null);
        output::line(&result.to_string())?;
    }
    Ok(())
}

/// The promises of a `GET /v1/promises` answer as a table.
fn promise_table(answer: &Value) -> anyhow::Result<String> {
    let promises: Vec<Promise> = parse(answer, Some("promises"))?;
    let rows: Vec<Vec<String>> = promises
        .iter()
        .map(|p| {
            vec![
                p.promise_id.clone(),
                p.status.clone(),
                if p.awaited { "yes" } else { "no" }.to_owned(),
                p.created_at.clone(),
                p.completed_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    Ok(output::table(
        &["PROMISE ID", "STATUS", "AWAITED", "CREATED", "COMPLETED"],
        &rows,
    ))
}

pub(crate) async fn promise(
    server: &crate::ServerArgs,
    command: PromiseCommand,
) -> anyhow::Result<()> {
    let client = Client::for_server(server)?;
    match command {
        PromiseCommand::List {
            status,
            component,
            worker,
            json,
            watch,
            interval,
        } => {
            let list = || {
                let mut request = Request::new(Method::GET, &["v1", "promises"]);
                if let Some(status) = status {
                    request = request.query("status", status.as_str());
                }
                if let Some(component) = &component {
                    request = request.query("component", component);
                }
                if let Some(worker) = &worker {
                    request = request.query("worker", worker);
                }
                client.call(request)
            };
            if watch {
                let interval = crate::local::seconds("--interval", interval)?
                    .context("--interval must be more than 0 seconds")?;
                let mut what = "vow promise list".to_owned();
                if let Some(status) = status {
                    what.push_str(&format!(" --status {}", status.as_str()));
                }
                if let Some(component) = &component {
                    what.push_str(&format!(" --component {component}"));
                }
                if let Some(worker) = &worker {
                    what.push_str(&format!(" --worker {worker}"));
                }
                return crate::watch::watch(&what, interval, || async {
                    promise_table(&list().await?)
                })
                .await;
            }
            let answer = list().await?;
            if json {
                return output::json(&answer);
            }
            output::line(&promise_table(&answer)?)?;
            Ok(())
        }
        PromiseCommand::Complete {
            promise_id,
            data,
            data_file,
            json,
        } => {
            let id: PromiseId = promise_id.parse()?;
            let payload = payload(data, data_file.as_deref(), json)?;
            let body = json!({ "oplogIdx": id.oplog_idx, "data": payload });
            settle(
                &client,
                &id,
                "complete",
                &body,
                "completed",
                "already completed",
            )
            .await
        }
        PromiseCommand::Reject {
            promise_id,
            error,
            data,
        } => {
            let id: PromiseId = promise_id.parse()?;
            let body = json!({
                "oplogIdx": id.oplog_idx,
                "error": error,
                "data": data.map(String::into_bytes).unwrap_or_default(),
            });
            settle(&client, &id, "reject", &body, "rejected", "already settled").await
        }
        PromiseCommand::When {
            component,
            function,
            input,
            json,
            options,
        } => {
            let mut body = options_body(&options);
            body["function"] = json!(function);
            if let Some(text) = json {
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| anyhow!("--json is not valid JSON: {e}"))?;
                body["inputJson"] = value;
            } else {
                body["input"] = json!(input.unwrap_or_default().into_bytes());
            }
            let path = ["v1", "components", component.as_str(), "when"];
            let answer = client
                .call_json(Request::new(Method::POST, &path), &body)
                .await?;
            print_made(&answer)
        }
        PromiseCommand::Then {
            source,
            component,
            function,
            options,
        } => {
            let mut body = options_body(&options);
            body["source"] = json!(source);
            body["function"] = json!(function);
            let path = ["v1", "components", component.as_str(), "then"];
            let answer = client
                .call_json(Request::new(Method::POST, &path), &body)
                .await?;
            print_made(&answer)
        }
        PromiseCommand::Link {
            promise_id,
            expires_in,
            action,
            json,
        } => {
            let id: PromiseId = promise_id.parse()?;
            let mut body = json!({ "action": action.as_str() });
            if let Some(lifetime) = expires_in {
                if lifetime.as_secs() == 0 {
                    bail!("--expires-in must be at least one second");
                }
                body["expiresInSecs"] = json!(lifetime.as_secs());
            }
            let path = promise_path(&id, Some("link"));
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let answer = client
                .call_json(Request::new(Method::POST, &path), &body)
                .await?;
            if json {
                return output::json(&answer);
            }
            let url = answer["url"]
                .as_str()
                .ok_or_else(|| anyhow!("unexpected answer from the server: {answer}"))?;
            output::line(url)?;
            output::error_line(&format!(
                "lets its holder {} promise {id} until {}; treat it as a secret",
                action.as_str().replace("both", "complete or reject"),
                answer["expiresAt"].as_str().unwrap_or("?")
            ));
            Ok(())
        }
        PromiseCommand::Show { promise_id, json } => {
            let id: PromiseId = promise_id.parse()?;
            let path = promise_path(&id, None);
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let answer = client.call(Request::new(Method::GET, &path)).await?;
            if json {
                return output::json(&answer);
            }
            output::line(&describe_promise(&answer))?;
            Ok(())
        }
    }
}

/// The path of one promise (`/v1/components/{cid}/workers/{name}/promises/
/// {idx}`), with `then` after it.
fn promise_path(id: &PromiseId, then: Option<&str>) -> Vec<String> {
    let mut path = vec![
        "v1".to_owned(),
        "components".to_owned(),
        id.worker_id.component_id.to_string(),
        "workers".to_owned(),
        id.worker_id.worker_name.clone(),
        "promises".to_owned(),
        id.oplog_idx.to_string(),
    ];
    path.extend(then.map(str::to_owned));
    path
}

/// Completes or rejects (`action`) a promise; prints `done`, or `already`
/// when someone settled it first.
async fn settle(
    client: &Client,
    id: &PromiseId,
    action: &str,
    body: &Value,
    done: &str,
    already: &str,
) -> anyhow::Result<()> {
    let component = id.worker_id.component_id.to_string();
    let path = [
        "v1",
        "components",
        &component,
        "workers",
        &id.worker_id.worker_name,
        action,
    ];
    match client
        .call_json(Request::new(Method::POST, &path), body)
        .await?
    {
        Value::Bool(true) => output::line(done)?,
        Value::Bool(false) => output::line(already)?,
        other => bail!("unexpected answer from the server: {other}"),
    }
    Ok(())
}

/// The JSON options of a promise made from the command line.
fn options_body(options: &crate::PromiseOptionArgs) -> Value {
    json!({
        "timeoutMs": options.timeout_ms,
        "retentionMs": options.retention_ms,
        "payloadType": options.payload_type,
    })
}

/// Prints the id of a promise the server made.
fn print_made(answer: &Value) -> anyhow::Result<()> {
    let id = answer["promiseId"]
        .as_str()
        .ok_or_else(|| anyhow!("unexpected answer from the server: {answer}"))?;
    output::line(id)?;
    Ok(())
}

/// One promise as `vow promise show` prints it: a line per fact.
fn describe_promise(promise: &Value) -> String {
    let text = |key: &str| promise[key].as_str().unwrap_or_default().to_owned();
    let mut lines = vec![
        format!("promise:   {}", text("promiseId")),
        format!("status:    {}", text("status")),
        format!("created:   {}", text("createdAt")),
    ];
    if let Some(deadline) = promise["deadline"].as_str() {
        lines.push(format!("deadline:  {deadline}"));
    }
    if let Some(settled) = promise["completedAt"].as_str() {
        lines.push(format!("settled:   {settled}"));
    }
    if let Some(retention) = promise["retentionMs"].as_u64() {
        lines.push(format!("retention: {retention} ms after settling"));
    }
    if promise["awaited"] == Value::Bool(true) {
        lines.push("awaited:   yes".to_owned());
    }
    if let Some(data) = promise["data"].as_array() {
        let bytes: Vec<u8> = data
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect();
        lines.push(format!("payload:   {}", printable(&bytes)));
    }
    if let Some(error) = promise.get("error").filter(|e| e.is_object()) {
        lines.push(format!(
            "error:     {}: {}",
            error["kind"].as_str().unwrap_or_default(),
            error["message"].as_str().unwrap_or_default()
        ));
    }
    lines.join("\n")
}

/// Bytes as text when they are UTF-8, else as a list of numbers.
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("{bytes:?} ({} bytes, not UTF-8)", bytes.len()),
    }
}

/// The completion payload from whichever of the three flags was given.
fn payload(
    data: Option<String>,
    file: Option<&Path>,
    json: Option<String>,
) -> anyhow::Result<Vec<u8>> {
    if let Some(text) = data {
        return Ok(text.into_bytes());
    }
    if let Some(file) = file {
        if file == Path::new("-") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("cannot read the payload from stdin")?;
            return Ok(bytes);
        }
        return std::fs::read(file).with_context(|| format!("cannot read {}", file.display()));
    }
    if let Some(text) = json {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| anyhow!("--json is not valid JSON: {e}"))?;
        return Ok(serde_json::to_vec(&value)?);
    }
    bail!("give the payload with --data, --data-file or --json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_comes_from_the_flag_given() -> anyhow::Result<()> {
        assert_eq!(payload(Some("yes".into()), None, None)?, b"yes");
        assert_eq!(
            payload(None, None, Some("{ \"ok\" : [1, 2] }".into()))?,
            br#"{"ok":[1,2]}"#
        );
        assert!(payload(None, None, Some("{nope".into())).is_err());
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), [0u8, 1, 255])?;
        assert_eq!(payload(None, Some(file.path()), None)?, [0, 1, 255]);
        Ok(())
    }

    #[test]
    fn server_shapes_are_read() -> anyhow::Result<()> {
        let answer = json!({"workers": [{
            "workerId": {"componentId": "c", "workerName": "w"},
            "args": [], "env": {"A": "1"}, "status": "Suspended",
            "componentVersion": 0, "retryCount": 0,
            "createdAt": "2025-01-01T00:00:00Z", "lastError": null,
            "pendingInvocationCount": 2
        }]});
        let workers: Vec<Worker> = parse(&answer, Some("workers"))?;
        assert_eq!(workers[0].status, "Suspended");
        assert_eq!(workers[0].pending_invocation_count, 2);
        assert_eq!(workers[0].env.get("A").map(String::as_str), Some("1"));
        Ok(())
    }
}
