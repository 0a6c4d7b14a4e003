//! Timers and `then` continuations of a real `vow serve`, killed with
//! SIGKILL and started again on the same store.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::support::{Backend, Server};

#[test]
fn timers_and_continuations_survive_kill_9_on_sqlite() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    timers_and_continuations_survive_kill_9(&Backend::DataDir(data.path().to_owned()))
}

#[test]
fn timers_and_continuations_survive_kill_9_on_postgres() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    timers_and_continuations_survive_kill_9(&Backend::Database(url))
}

/// The `oplog-idx` of the promise id in an invocation's printed result
/// (the id itself, or `{"ok": id}`).
fn oplog_idx(printed: &str) -> anyhow::Result<u64> {
    let value: Value = serde_json::from_str(printed.trim())?;
    let id = value.get("ok").unwrap_or(&value);
    id["oplog-idx"]
        .as_u64()
        .with_context(|| format!("no promise id in {printed:?}"))
}

/// A promise id of `worker` as a WAVE argument.
fn promise_arg(cid: &str, worker: &str, idx: u64) -> anyhow::Result<String> {
    let bits = u128::from_str_radix(&cid.replace('-', ""), 16)?;
    Ok(format!(
        "{{worker-id: {{component-id: {{uuid: {{high-bits: {}, low-bits: {}}}}}, worker-name: \"{worker}\"}}, oplog-idx: {idx}}}",
        bits >> 64,
        bits as u64
    ))
}

fn options(timeout_ms: Option<u64>) -> String {
    let timeout = timeout_ms.map_or("none".to_owned(), |t| format!("some({t})"));
    format!("{{timeout-ms: {timeout}, retention-ms: none, payload-type: none}}")
}

/// `vow promise show ID --json`.
fn show(server: &Server, id: &str) -> anyhow::Result<Value> {
    let shown = server
        .client(&["promise", "show", id, "--json"])?
        .success()?;
    Ok(serde_json::from_str(&shown.stdout)?)
}

/// Waits until the promise is settled; how it is shown then.
fn settled(server: &Server, id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let promise = show(server, id)?;
        if promise["status"] != "pending" {
            return Ok(promise);
        }
        ensure!(Instant::now() < deadline, "{id} never settled: {promise}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `then-` workers of the component, with how many invocations each
/// started.
fn continuations(server: &Server, cid: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let listed = server
        .client(&["worker", "list", cid, "--json"])?
        .success()?;
    let listed: Value = serde_json::from_str(&listed.stdout)?;
    let mut out = Vec::new();
    for worker in listed["workers"].as_array().into_iter().flatten() {
        let name = worker["workerId"]["workerName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !name.starts_with("then-") {
            continue;
        }
        let log = server
            .client(&["worker", "oplog", cid, &name, "--json"])?
            .success()?;
        let started = log
            .stdout
            .lines()
            .filter(|l| l.contains("\"invocation-started\""))
            .count();
        out.push((name, started));
    }
    out.sort();
    Ok(out)
}

/// A promise with a 1.5 s timeout and a `then` on it, and a promise
/// completed just before the kill with a `then` on it: after the restart
/// the timeout (which fell due while the server was down) fires once and
/// its continuation handles the timeout error; the other continuation runs
/// once; a second kill and restart runs neither again.
fn timers_and_continuations_survive_kill_9(backend: &Backend) -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let server = Server::start_on(backend, &[&harness], &[])?;
    let cid = server.component_id("harness")?;
    server
        .client(&["worker", "start", &cid, "caller"])?
        .success()?;
    let invoke = |server: &Server, function: &str, args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["worker", "invoke", cid.as_str(), "caller", function];
        all.extend(args);
        Ok(server.client(&all)?.success()?.stdout)
    };

    let timed = oplog_idx(&invoke(&server, "vow-create", &[&options(Some(1500))])?)?;
    let on_timeout = oplog_idx(&invoke(
        &server,
        "start-then",
        &[
            &promise_arg(&cid, "caller", timed)?,
            "\"recover\"",
            &options(None),
        ],
    )?)?;
    let source = oplog_idx(&invoke(&server, "vow-create", &[&options(None)])?)?;
    let on_source = oplog_idx(&invoke(
        &server,
        "start-then",
        &[
            &promise_arg(&cid, "caller", source)?,
            "\"recover\"",
            &options(None),
        ],
    )?)?;
    let id = |idx: u64| format!("{cid}/caller/{idx}");
    let done = server
        .client(&["promise", "complete", &id(source), "--data", "hello"])?
        .success()?;
    assert_eq!(done.stdout, "completed\n");
    // At once: the continuation may or may not have started.
    server.kill()?;
    // Down for longer than the timeout.
    std::thread::sleep(Duration::from_millis(2000));

    let server = Server::start_on(backend, &[&harness], &[])?;
    let handled = settled(&server, &id(on_timeout))?;
    let data: Vec<u8> = serde_json::from_value(handled["data"].clone())?;
    assert_eq!(
        String::from_utf8(data)?,
        format!(
            "handled timed-out: promise {} was not settled within its timeout of 1s 500ms",
            id(timed)
        ),
        "{handled}"
    );
    assert_eq!(show(&server, &id(timed))?["status"], "timed-out");
    let upper = settled(&server, &id(on_source))?;
    let data: Vec<u8> = serde_json::from_value(upper["data"].clone())?;
    assert_eq!(data, b"HELLO");
    let ran = continuations(&server, &cid)?;
    assert_eq!(ran.len(), 2, "{ran:?}");
    if ran.iter().any(|(_, started)| *started != 1) {
        bail!("every continuation starts its invocation once: {ran:?}");
    }
    server.kill()?;

    let server = Server::start_on(backend, &[&harness], &[])?;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        continuations(&server, &cid)?,
        ran,
        "nothing fires again after another restart"
    );
    Ok(())
}
