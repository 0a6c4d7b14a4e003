//! A real `vow serve` with a data directory, killed with SIGKILL while
//! workers wait, and started again on the same directory.

use anyhow::Context as _;

use crate::support::{Backend, QUICK, Server, run};

/// `vow worker invoke` of `function` with an idempotency key, waiting for
/// the result (or queueing it, with `--no-wait`).
fn invoke(
    server: &Server,
    cid: &str,
    worker: &str,
    function: &str,
    args: &[&str],
    key: &str,
    wait: bool,
) -> anyhow::Result<String> {
    let mut all = vec!["worker", "invoke", cid, worker, function];
    all.extend(args);
    all.extend(["--idempotency-key", key]);
    if !wait {
        all.push("--no-wait");
    }
    Ok(server.client(&all)?.success()?.stdout)
}

#[test]
fn waiting_workers_survive_kill_9_and_resume_exactly_once_on_sqlite() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    kill_9_and_restart(&Backend::DataDir(data.path().to_owned()))
}

#[test]
fn waiting_workers_survive_kill_9_and_resume_exactly_once_on_postgres() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    kill_9_and_restart(&Backend::Database(url))
}

/// Parks Rust and Python workers and counts with a harness worker on
/// `backend`, kills the server with SIGKILL, starts it again and completes
/// every promise: each invocation returns its own payload exactly once.
fn kill_9_and_restart(backend: &Backend) -> anyhow::Result<()> {
    let rust = vow_tests::guest("approval")?;
    let python = vow_tests::python_guest("approval")?;
    let harness = vow_tests::guest("harness")?;
    let components = [rust.as_path(), python.as_path(), harness.as_path()];

    let server = Server::start_on(backend, &components, &[])?;
    let approval = server.component_id("approval")?;
    let python_cid = server
        .banner
        .lines()
        .filter_map(|l| l.strip_prefix("component approval "))
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|id| *id != approval)
        .context("no second approval component (the Python one) in the banner")?
        .to_owned();
    let harness_cid = server.component_id("harness")?;

    let parked = [
        (approval.clone(), "rust-1"),
        (approval.clone(), "rust-2"),
        (python_cid.clone(), "python-1"),
    ];
    for (cid, worker) in &parked {
        server
            .client(&["worker", "start", cid, worker])?
            .success()?;
        let subject = format!("\"deploy {worker}\"");
        invoke(
            &server,
            cid,
            worker,
            "request-approval",
            &[&subject],
            worker,
            false,
        )?;
    }
    let mut promises = Vec::new();
    for (cid, worker) in &parked {
        promises.push(server.awaited_promise(cid, worker)?);
    }
    server
        .client(&["worker", "start", &harness_cid, "counter"])?
        .success()?;
    for n in 1..=5 {
        let out = invoke(
            &server,
            &harness_cid,
            "counter",
            "increment",
            &[],
            &format!("inc-{n}"),
            true,
        )?;
        assert_eq!(out.trim(), n.to_string());
    }
    server.kill()?;

    let server = Server::start_on(backend, &components, &[])?;
    assert_eq!(
        server.component_id("harness")?,
        harness_cid,
        "same ids after a restart"
    );
    for (cid, worker) in &parked {
        server.wait_status(cid, worker, "suspended")?;
    }
    // State the guest kept in memory is rebuilt by replay.
    let out = invoke(
        &server,
        &harness_cid,
        "counter",
        "increment",
        &[],
        "inc-6",
        true,
    )?;
    assert_eq!(out.trim(), "6");
    // A repeated key answers from the stored result; nothing runs again.
    let out = invoke(
        &server,
        &harness_cid,
        "counter",
        "increment",
        &[],
        "inc-3",
        true,
    )?;
    assert_eq!(out.trim(), "3");

    for ((cid, worker), promise) in parked.iter().zip(&promises) {
        let payload = format!("approved {worker}");
        let done = server
            .client(&["promise", "complete", promise, "--data", &payload])?
            .success()?;
        assert_eq!(done.stdout, "completed\n");
        // The same key waits for the invocation that was parked before the
        // kill and answers its result, with this worker's own payload.
        let subject = format!("\"deploy {worker}\"");
        let out = invoke(
            &server,
            cid,
            worker,
            "request-approval",
            &[&subject],
            worker,
            true,
        )?;
        assert!(
            out.contains(&format!("deploy {worker}")) && out.contains(&payload),
            "{worker}: {out}"
        );
        let again = server
            .client(&["promise", "complete", promise, "--data", "twice"])?
            .success()?;
        assert_eq!(again.stdout, "already completed\n", "{worker}");
    }
    let listed = run(
        &[
            "promise",
            "list",
            "--status",
            "pending",
            "--server",
            &server.url,
        ],
        QUICK,
    )?
    .success()?;
    assert!(!listed.stdout.contains("/rust-"), "{}", listed.stdout);
    Ok(())
}

/// `vow serve` on a data directory it cannot use: the exit status and the
/// one-line message.
fn serve_fails(data: &std::path::Path) -> anyhow::Result<String> {
    let done = run(
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            &data.display().to_string(),
        ],
        QUICK,
    )?
    .code(1)?;
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    assert_eq!(done.stdout, "", "nothing is served");
    Ok(done.stderr)
}

#[test]
fn a_data_directory_that_cannot_be_used_is_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A damaged database file.
    let corrupted = dir.path().join("corrupted");
    std::fs::create_dir(&corrupted)?;
    std::fs::write(
        corrupted.join(vow_runtime::DATABASE_FILE),
        "this is not a database, it is a text file that is long enough to matter",
    )?;
    let stderr = serve_fails(&corrupted)?;
    assert!(
        stderr.contains(&format!(
            "cannot open the data directory {}",
            corrupted.display()
        )) && stderr.contains("vow.sqlite"),
        "{stderr}"
    );
    // A data directory that cannot be created (a file is in the way; this
    // holds even for root, unlike permission bits).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "")?;
    let stderr = serve_fails(&file.join("data"))?;
    assert!(
        stderr.contains("creating the data directory") && stderr.contains("a-file"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_worker_is_interrupted_resumed_and_its_oplog_printed() -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let server = Server::start(&[harness.as_path()])?;
    let cid = server.component_id("harness")?;
    server
        .client(&["worker", "start", &cid, "paused"])?
        .success()?;
    let call = server.spawn_client(&["worker", "invoke", &cid, "paused", "create-and-await"])?;
    let promise = server.awaited_promise(&cid, "paused")?;

    let out = server
        .client(&["worker", "interrupt", &cid, "paused"])?
        .success()?;
    assert!(
        out.stdout
            .contains(&format!("vow worker resume {cid} paused")),
        "{out:?}"
    );
    server.wait_status(&cid, "paused", "interrupted")?;
    server
        .client(&["promise", "complete", &promise, "--data", "resumed"])?
        .success()?;
    server
        .client(&["worker", "resume", &cid, "paused"])?
        .success()?;
    let mut call = call;
    let answer = call.finish(QUICK)?.success()?;
    // `list<u8>` printed as JSON: the bytes of "resumed".
    assert_eq!(answer.stdout.trim(), "[114,101,115,117,109,101,100]");

    let again = server
        .client(&["worker", "resume", &cid, "paused"])?
        .code(1)?;
    assert!(
        again.stderr.contains("is not interrupted (it is idle)"),
        "{again:?}"
    );

    let log = server
        .client(&["worker", "oplog", &cid, "paused"])?
        .success()?
        .stdout;
    let kinds: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        kinds,
        [
            "create",
            "invocation-started",
            "create-promise",
            "await-promise",
            "invocation-finished"
        ],
        "{log}"
    );
    let one = server
        .client(&[
            "worker", "oplog", &cid, "paused", "--from", "3", "--count", "1", "--json",
        ])?
        .success()?
        .stdout;
    let entry: serde_json::Value = serde_json::from_str(one.trim())?;
    assert_eq!(entry["index"], 3, "{one}");
    assert_eq!(entry["entry"]["kind"], "create-promise", "{one}");
    assert_eq!(one.lines().count(), 1, "{one}");
    Ok(())
}
