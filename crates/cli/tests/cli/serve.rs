//! `vow serve` in the background, driven by the client commands.

use anyhow::Context as _;

use crate::run::is_uuid;
use crate::support::{QUICK, Server, run};

#[test]
fn a_promise_is_completed_over_rest() -> anyhow::Result<()> {
    let approval = vow_tests::guest("approval")?;
    let server = Server::start(&[&approval])?;
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let cid = server.component_id("approval")?;
    assert!(is_uuid(&cid), "{cid}");
    assert!(
        server
            .banner
            .contains("  request-approval: func(subject: string) -> string\n"),
        "{}",
        server.banner
    );

    let listed = server.client(&["component", "list", "--json"])?.success()?;
    let json: serde_json::Value = serde_json::from_str(&listed.stdout)?;
    assert_eq!(json["components"][0]["componentId"], cid.as_str());
    assert_eq!(json["components"][0]["name"], "approval");

    let started = server.client(&["worker", "start", &cid, "w1"])?.success()?;
    assert_eq!(started.stdout, format!("started worker {cid}/w1\n"));

    let queued = server
        .client(&[
            "worker",
            "invoke",
            &cid,
            "w1",
            "request-approval",
            "\"deploy\"",
            "--no-wait",
        ])?
        .success()?;
    assert_eq!(
        queued.stdout,
        format!("queued request-approval on worker {cid}/w1\n")
    );

    let id = server.awaited_promise(&cid, "w1")?;
    assert_eq!(id, format!("{cid}/w1/3"));
    let table = server
        .client(&["promise", "list", "--status", "pending"])?
        .success()?;
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .with_context(|| format!("{id} not listed: {}", table.stdout))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], [id.as_str(), "pending", "yes"], "{row}");
    server.wait_status(&cid, "w1", "suspended")?;

    let completed = server
        .client(&["promise", "complete", &id, "--data", "approved"])?
        .success()?;
    assert_eq!(completed.stdout, "completed\n");
    server.wait_status(&cid, "w1", "idle")?;
    let logs = server.client(&["worker", "logs", &cid, "w1"])?.success()?;
    assert_eq!(
        logs.stdout,
        format!("approval needed for \"deploy\": complete promise {id}\n")
    );

    let again = server
        .client(&["promise", "complete", &id, "--data", "denied"])?
        .success()?;
    assert_eq!(again.stdout, "already completed\n");

    // A waiting invoke prints the result; completed with a JSON payload.
    let mut waiting = server.spawn_client(&[
        "worker",
        "invoke",
        &cid,
        "w1",
        "request-approval",
        "\"rollback\"",
    ])?;
    let second = server.awaited_promise(&cid, "w1")?;
    assert_ne!(second, id);
    let completed = server
        .client(&["promise", "complete", &second, "--json", "{\"ok\": true}"])?
        .success()?;
    assert_eq!(completed.stdout, "completed\n");
    let result = waiting.finish(QUICK)?.success()?;
    assert_eq!(result.stdout, "\"\\\"rollback\\\": {\\\"ok\\\":true}\"\n");

    let unknown = format!("{cid}/w1/999");
    let missing = server
        .client(&["promise", "complete", &unknown, "--data", "x"])?
        .code(1)?;
    assert_eq!(
        missing.stderr,
        format!("error: promise {unknown} not found\n")
    );

    let listed = server.client(&["worker", "list", &cid])?.success()?;
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("w1 "))
        .with_context(|| listed.stdout.clone())?;
    assert_eq!(row.split_whitespace().nth(1), Some("idle"), "{row}");

    let deleted = server
        .client(&["worker", "delete", &cid, "w1"])?
        .success()?;
    assert_eq!(deleted.stdout, format!("deleted worker {cid}/w1\n"));
    let gone = server.client(&["worker", "get", &cid, "w1"])?.code(1)?;
    assert_eq!(gone.stderr, format!("error: worker {cid}/w1 not found\n"));
    Ok(())
}

#[test]
fn server_errors_are_shown_as_their_message() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let bad = server
        .client(&["worker", "start", "not-a-uuid", "w1"])?
        .code(1)?;
    assert!(
        bad.stderr.starts_with("error: ") && bad.stderr.lines().count() == 1,
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("not-a-uuid"), "{}", bad.stderr);

    let invalid = server
        .client(&["promise", "complete", "nonsense", "--data", "x"])?
        .code(1)?;
    assert_eq!(
        invalid.stderr,
        "error: invalid promise id \"nonsense\": \
         expected {component-id}/{worker-name}/{oplog-index}\n"
    );
    Ok(())
}

#[test]
fn an_unreachable_server_is_a_one_line_error() -> anyhow::Result<()> {
    // Port 9 (discard) on loopback is closed on any sane test machine.
    let done = run(
        &["component", "list", "--server", "http://127.0.0.1:9"],
        QUICK,
    )?
    .code(1)?;
    assert!(
        done.stderr
            .starts_with("error: cannot reach the vow server at http://127.0.0.1:9/: ")
            && done.stderr.lines().count() == 1,
        "{}",
        done.stderr
    );
    Ok(())
}

#[test]
fn the_demo_parks_a_worker_and_prints_the_command_that_resumes_it() -> anyhow::Result<()> {
    use crate::support::{COMPILING, Running, cache_dir};

    let approval = vow_tests::guest("approval")?;
    let cache = cache_dir().display().to_string();
    let approval = approval.display().to_string();
    let data = tempfile::tempdir()?;
    let data = data.path().display().to_string();
    let args = [
        "serve",
        "--demo",
        "--addr",
        "127.0.0.1:0",
        "--cache-dir",
        &cache,
        "--component",
        &approval,
        "--data-dir",
        &data,
    ];
    // The demo survives kill -9: the worker is back, still waiting on the
    // same promise, and the restarted server says so.
    let mut first = Running::spawn(&args)?;
    let before = first.wait_stdout("--data approved", COMPILING)?;
    first.kill()?;
    let server = Running::spawn(&args)?;
    let out = server.wait_stdout("--data approved", COMPILING)?;
    assert!(
        out.contains("demo: worker approver is back from the data directory\n"),
        "{out}"
    );
    let waiting = |text: &str| {
        text.split_once("is waiting on promise ")
            .and_then(|(_, rest)| rest.lines().next())
            .map(str::to_owned)
    };
    assert_eq!(waiting(&before), waiting(&out), "{before}\n{out}");
    let url = out
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.lines().next())
        .context("no address printed")?
        .to_owned();
    let id = out
        .split_once("is waiting on promise ")
        .and_then(|(_, rest)| rest.lines().next())
        .context("no promise id printed")?
        .to_owned();
    assert!(id.ends_with("/approver/3"), "{id}");
    assert!(
        out.contains(&format!(
            "demo: worker approver called request-approval(\"deploy to production\") \
             and is waiting on promise {id}\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "demo: complete it in a browser: open {url}/ and press Complete\n"
        )),
        "{out}"
    );
    let command =
        format!("  cargo run -p vow-cli -- promise complete {id} --data approved --server {url}\n");
    assert!(out.contains(&command), "{out}");

    let completed = run(
        &[
            "promise", "complete", &id, "--data", "approved", "--server", &url,
        ],
        QUICK,
    )?
    .success()?;
    assert_eq!(completed.stdout, "completed\n");
    server.wait_stdout(
        "demo: worker approver resumed and returned \"\\\"deploy to production\\\": approved\"\n",
        QUICK,
    )?;
    Ok(())
}

#[test]
fn a_promise_is_rejected_and_shown() -> anyhow::Result<()> {
    let approval = vow_tests::guest("approval")?;
    let server = Server::start(&[&approval])?;
    let cid = server.component_id("approval")?;
    server.client(&["worker", "start", &cid, "w2"])?.success()?;
    server
        .client(&[
            "worker",
            "invoke",
            &cid,
            "w2",
            "request-approval",
            "\"deploy\"",
            "--no-wait",
        ])?
        .success()?;
    let id = server.awaited_promise(&cid, "w2")?;
    let shown = server.client(&["promise", "show", &id])?.success()?;
    assert!(
        shown
            .stdout
            .starts_with(&format!("promise:   {id}\nstatus:    pending\n")),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("awaited:   yes\n"),
        "{}",
        shown.stdout
    );

    let rejected = server
        .client(&["promise", "reject", &id, "--error", "not today"])?
        .success()?;
    assert_eq!(rejected.stdout, "rejected\n");
    let again = server
        .client(&["promise", "reject", &id, "--error", "still no"])?
        .success()?;
    assert_eq!(again.stdout, "already settled\n");
    // The approval guest awaits with Golem's await-promise, which cannot
    // return an error: its invocation fails, naming the rejection.
    server.wait_status(&cid, "w2", "failed")?;

    let shown = server.client(&["promise", "show", &id])?.success()?;
    assert!(
        shown.stdout.contains("status:    rejected\n"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.ends_with("error:     rejected: not today\n"),
        "{}",
        shown.stdout
    );
    let listed = server
        .client(&["promise", "list", "--status", "rejected", "--json"])?
        .success()?;
    let json: serde_json::Value = serde_json::from_str(&listed.stdout)?;
    assert_eq!(json["promises"][0]["promiseId"], id.as_str());
    assert_eq!(json["promises"][0]["error"]["message"], "not today");
    let detail = server
        .client(&["promise", "show", &id, "--json"])?
        .success()?;
    let json: serde_json::Value = serde_json::from_str(&detail.stdout)?;
    assert_eq!(json["status"], "rejected");
    Ok(())
}

#[test]
fn a_chain_is_started_from_the_command_line() -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let server = Server::start(&[&harness])?;
    let cid = server.component_id("harness")?;
    let made = server
        .client(&["promise", "when", &cid, "double", "--input", "ab"])?
        .success()?;
    let first = made.stdout.trim().to_owned();
    assert!(
        first.starts_with(&format!("{cid}/when-")) && first.ends_with("/1"),
        "{first}"
    );
    let then = server
        .client(&[
            "promise",
            "then",
            &first,
            &cid,
            "recover",
            "--timeout-ms",
            "60000",
        ])?
        .success()?;
    let second = then.stdout.trim().to_owned();
    assert!(second.starts_with(&format!("{cid}/then-")), "{second}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = server.client(&["promise", "show", &second])?.success()?;
        if shown.stdout.contains("status:    completed") {
            assert!(
                shown.stdout.contains("payload:   \"ABAB\""),
                "{}",
                shown.stdout
            );
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{}", shown.stdout);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let refused = server
        .client(&["promise", "when", &cid, "unfit"])?
        .code(1)?;
    assert!(
        refused.stderr.contains("unfit of component")
            && refused.stderr.contains("cannot settle a promise"),
        "{}",
        refused.stderr
    );
    Ok(())
}

#[test]
fn an_api_token_guards_every_route_and_is_needed_off_loopback() -> anyhow::Result<()> {
    let harness = vow_tests::guest("harness")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&harness], &["--auth-token", "t0k3n"])?;
    let refused = server.client(&["component", "list"])?.code(1)?;
    assert!(
        refused
            .stderr
            .contains("this server needs an API token: send Authorization: Bearer <token>"),
        "{}",
        refused.stderr
    );
    let wrong = server
        .client(&["component", "list", "--token", "guess"])?
        .code(1)?;
    assert!(wrong.stderr.contains("wrong API token"), "{}", wrong.stderr);
    let listed = server
        .client(&["component", "list", "--json", "--token", "t0k3n"])?
        .success()?;
    assert!(listed.stdout.contains("\"harness\""), "{}", listed.stdout);

    let open = run(&["serve", "--addr", "0.0.0.0:0", "--in-memory"], QUICK)?.code(1)?;
    assert!(
        open.stderr
            .contains("refusing to serve the API without a token on 0.0.0.0:0")
            && open.stderr.contains("--auth-token TOKEN or VOW_AUTH_TOKEN"),
        "{}",
        open.stderr
    );
    Ok(())
}

/// One `vow serve` per store: a second one on the same data directory, or
/// on the same PostgreSQL database, waits for the first to let go, then
/// stops and names the process that holds the store; once the first is
/// killed with SIGKILL, a new one starts.
#[test]
fn a_second_server_on_the_same_store_is_refused_and_names_the_holder() -> anyhow::Result<()> {
    use crate::support::Backend;

    let approval = vow_tests::guest("approval")?;
    let data = tempfile::tempdir()?;
    let mut backends = vec![Backend::DataDir(data.path().to_owned())];
    if let Some(url) = vow_tests::fresh_postgres_database()? {
        backends.push(Backend::Database(url));
    }
    for backend in &backends {
        let first = Server::start_on(backend, &[&approval], &[])?;
        let refused = match Server::start_or_exit(backend, &[&approval], &[])? {
            Ok(second) => {
                anyhow::bail!("a second server started on {backend:?}: {}", second.banner)
            }
            Err(finished) => finished.code(1)?,
        };
        let holder = match backend {
            Backend::DataDir(_) => format!(
                "another Vow process uses this store: process {} holds",
                first.pid()
            ),
            Backend::Database(_) => {
                "another Vow node writes to this database: \"vow writer ".to_owned()
            }
        };
        assert!(refused.stderr.contains(&holder), "{}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!("pid {}", first.pid()))
                || matches!(backend, Backend::DataDir(_)),
            "{}",
            refused.stderr
        );
        // SIGKILL: the lock goes with the process, so a new server starts
        // (it would be refused, as above, if the lock had stayed).
        drop(first);
        let again = Server::start_on(backend, &[&approval], &[])?;
        drop(again);
    }
    Ok(())
}

/// A node whose PostgreSQL connection was cut while another node took the
/// database stops at its next write: it writes nothing, says who took over
/// and exits with an error, so that whatever supervises it sees it go.
#[test]
fn a_node_whose_database_was_taken_over_stops() -> anyhow::Result<()> {
    use crate::support::Backend;

    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let approval = vow_tests::guest("approval")?;
    let backend = Backend::Database(url.clone());
    let first = Server::start_on(&backend, &[&approval], &[])?;
    let cid = first.component_id("approval")?;
    vow_tests::cut_vow_writers(&url)?;
    let second = Server::start_on(&backend, &[&approval], &[])?;

    // The first node's next writes: the one that meets the cut connection
    // fails as any would, the next finds the database taken.
    for _ in 0..2 {
        let refused = first.client(&["worker", "start", &cid, "late"])?;
        assert!(!refused.status.success(), "{refused:?}");
    }
    let stopped = first.wait_exit(QUICK)?.code(1)?;
    assert!(
        stopped
            .stderr
            .contains("another node took the database over (\"vow writer "),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("error: stopped: the database was taken over by \"vow writer "),
        "{}",
        stopped.stderr
    );
    // The node that holds the database works, and the late worker was
    // never made.
    second.client(&["worker", "start", &cid, "w1"])?.success()?;
    let listed = second.client(&["worker", "list", &cid])?.success()?;
    assert!(!listed.stdout.contains("late"), "{}", listed.stdout);
    Ok(())
}
