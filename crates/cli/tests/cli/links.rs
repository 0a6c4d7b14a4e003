//! Completion links from the command line and from a guest, key rotation,
//! and `vow serve` over HTTPS.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::support::{COMPILING, QUICK, Running, Server, run};

/// Posts `body` to `url` with no API token; the status and JSON answer.
fn post(url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let reply = reqwest::Client::new().post(url).json(body).send().await?;
        let status = reply.status().as_u16();
        Ok((status, reply.json().await?))
    })
}

/// GETs `url` with no API token.
fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let reply = reqwest::get(url).await?;
        let status = reply.status().as_u16();
        Ok((status, reply.json().await?))
    })
}

/// Polls the worker's output until it prints `link URL`.
fn printed_link(server: &Server, cid: &str, worker: &str, token: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + QUICK;
    while Instant::now() < deadline {
        let logs = server
            .client(&["worker", "logs", cid, worker, "--token", token])?
            .success()?;
        if let Some(url) = logs
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("link "))
        {
            return Ok(url.trim().to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("worker {worker} never printed its link")
}

#[test]
fn a_guest_mints_a_link_that_completes_its_promise_without_the_api_token() -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let token = "t0k3n";
    let server = Server::start_in(data.path(), &[&harness], &["--auth-token", token])?;
    let cid = server.component_id("harness")?;
    server
        .client(&["worker", "start", &cid, "approver", "--token", token])?
        .success()?;
    let mut call = server.spawn_client(&[
        "worker",
        "invoke",
        &cid,
        "approver",
        "approval-link",
        "--token",
        token,
    ])?;
    let url = printed_link(&server, &cid, "approver", token)?;
    assert!(
        url.starts_with(&format!("{}/v1/links/", server.url)),
        "{url} is not on {}",
        server.url
    );
    let (status, view) = get(&url)?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["workerName"], "approver");
    assert_eq!(view["status"], "pending");
    assert_eq!(
        post(&format!("{url}/complete"), &json!({ "data": b"yes" }))?,
        (200, json!(true))
    );
    let done = call.finish(QUICK)?.success()?;
    assert!(done.stdout.contains("[121,101,115]"), "{}", done.stdout);
    assert_eq!(
        post(&format!("{url}/complete"), &json!({ "data": b"again" }))?,
        (200, json!(false))
    );
    Ok(())
}

/// The Python module's `create` and `Promise.link`, through the `closures`
/// example's `ask`: the link it prints answers its question with no API
/// token.
#[test]
fn a_python_guest_mints_a_link_with_vow_promises() -> anyhow::Result<()> {
    let closures = vow_tests::python_guest("closures")?;
    let data = tempfile::tempdir()?;
    let token = "py-t0k3n";
    let server = Server::start_in(data.path(), &[&closures], &["--auth-token", token])?;
    let cid = server.component_id("closures")?;
    server
        .client(&["worker", "start", &cid, "asker", "--token", token])?
        .success()?;
    let mut call = server.spawn_client(&[
        "worker",
        "invoke",
        &cid,
        "asker",
        "ask",
        r#""ship it?""#,
        "--token",
        token,
    ])?;
    let url = printed_link(&server, &cid, "asker", token)?;
    assert!(
        url.starts_with(&format!("{}/v1/links/", server.url)),
        "{url}"
    );
    let (status, view) = get(&url)?;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("pending")),
        "{view}"
    );
    // The answer is JSON text, as `vow_promises` reads payloads.
    assert_eq!(
        post(&format!("{url}/complete"), &json!({ "data": b"\"yes\"" }))?,
        (200, json!(true))
    );
    let done = call.finish(COMPILING)?.success()?;
    assert_eq!(done.stdout.trim(), r#""value yes""#);
    // A link allows only what it says: this one cannot reject.
    let (status, _) = post(&format!("{url}/reject"), &json!({ "error": "no" }))?;
    assert_eq!(status, 403);
    Ok(())
}

#[test]
fn vow_promise_link_and_key_rotation() -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let dir = data.path().display().to_string();
    let server = Server::start_in(data.path(), &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    server.client(&["worker", "start", &cid, "w"])?.success()?;
    let mut call = server.spawn_client(&["worker", "invoke", &cid, "w", "create-and-await"])?;
    let promise = server.awaited_promise(&cid, "w")?;

    let minted = server
        .client(&["promise", "link", &promise, "--expires-in", "2h"])?
        .success()?;
    let old = minted.stdout.trim().to_owned();
    assert!(
        old.starts_with(&format!("{}/v1/links/", server.url)),
        "{old}"
    );
    assert!(
        minted.stderr.contains(&format!(
            "lets its holder complete promise {promise} until "
        )),
        "{}",
        minted.stderr
    );
    let reject_only = server
        .client(&["promise", "link", &promise, "--action", "reject", "--json"])?
        .success()?;
    let reject_only: Value = serde_json::from_str(&reject_only.stdout)?;
    assert_eq!(reject_only["action"], "reject");

    // Rotation: old links keep working, new ones are signed with key 2.
    let rotated = run(&["link-keys", "rotate", "--data-dir", &dir], QUICK)?.success()?;
    assert!(
        rotated.stdout.starts_with("key 2 signs new links"),
        "{}",
        rotated.stdout
    );
    let listed = run(&["link-keys", "list", "--data-dir", &dir], QUICK)?.success()?;
    assert_eq!(listed.stdout, "1\tverifies\n2\tsigns and verifies\n");
    assert_eq!(get(&old)?.0, 200);
    let new = server
        .client(&["promise", "link", &promise])?
        .success()?
        .stdout
        .trim()
        .to_owned();
    assert_ne!(new, old);
    let refused = run(&["link-keys", "retire", "2", "--data-dir", &dir], QUICK)?.code(1)?;
    assert!(
        refused
            .stderr
            .contains("key 2 signs new links; rotate first"),
        "{}",
        refused.stderr
    );
    run(&["link-keys", "retire", "1", "--data-dir", &dir], QUICK)?.success()?;
    let (status, body) = get(&old)?;
    assert_eq!(status, 401, "{body}");

    // The key survives a restart: the new link still works after one.
    server.kill()?;
    let server = Server::start_in(data.path(), &[&harness], &[])?;
    let new = new.replace(
        new.split("/v1/links/").next().unwrap_or_default(),
        &server.url,
    );
    assert_eq!(
        post(&format!("{new}/complete"), &json!({ "data": b"ok" }))?,
        (200, json!(true))
    );
    // The invocation's client lost its server at the kill; the worker goes
    // on by itself and finishes with the payload.
    let _ = call.kill();
    server.wait_status(&cid, "w", "idle")?;
    let shown = server
        .client(&["promise", "show", &promise, "--json"])?
        .success()?;
    let shown: Value = serde_json::from_str(&shown.stdout)?;
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["data"], json!(b"ok"));
    Ok(())
}

#[test]
fn vow_serve_speaks_https_with_the_given_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let cert = cert.display().to_string();
    let key = key.display().to_string();
    let cache = crate::support::cache_dir().display().to_string();
    let server = Running::spawn(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--in-memory",
        "--cache-dir",
        &cache,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ])?;
    let stdout = server.wait_stdout("listening on https://", COMPILING)?;
    let port = stdout
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .context("no port in the banner")?;
    let url = format!("https://localhost:{port}");
    let listed = run(
        &[
            "component",
            "list",
            "--json",
            "--server",
            &url,
            "--ca-cert",
            &cert,
        ],
        QUICK,
    )?
    .success()?;
    assert_eq!(
        serde_json::from_str::<Value>(&listed.stdout)?,
        json!({ "components": [] })
    );
    let untrusted = run(&["component", "list", "--server", &url], QUICK)?.code(1)?;
    assert!(
        untrusted.stderr.contains("cannot reach"),
        "{}",
        untrusted.stderr
    );

    let missing = run(
        &[
            "serve",
            "--in-memory",
            "--tls-cert",
            &cert,
            "--tls-key",
            "/nonexistent.pem",
        ],
        QUICK,
    )?
    .code(1)?;
    assert!(
        missing
            .stderr
            .contains("cannot set up TLS (--tls-cert, --tls-key): /nonexistent.pem"),
        "{}",
        missing.stderr
    );
    drop(server);
    Ok(())
}
