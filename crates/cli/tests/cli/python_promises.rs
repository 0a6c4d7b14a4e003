//! The Python module `vow_promises` (`guest-examples/python/lib`) through
//! its examples: `wordcount` (map over lines with `when`, join with `all`,
//! report with `then`, one line timing out) and `closures` (lambdas and
//! closures run in other workers, rejections, `any`, a promise handed on).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::support::{COMPILING, QUICK, Server, cache_dir, run};

/// The text `wordcount` counts in these tests, as a WAVE string: its third
/// line stalls, so that line's promise times out.
const TEXT: &str = r#""the quick brown fox\njumps over\n!stall this line\nthe lazy dog""#;

/// `vow run` of a Python example's export; what it printed, without the
/// newline. Nobody is asked for a payload: every promise the guest waits
/// on is settled by work in other workers. (Stderr is not otherwise
/// empty in every case: `vow run` stops when the export returns, and work
/// still under way then, such as the losers of an `any`, is cut off with a
/// warning.)
fn invoke(example: &str, call: &str) -> anyhow::Result<String> {
    let component = vow_tests::python_guest(example)?;
    let done = run(
        &[
            "run",
            &component.display().to_string(),
            "--cache-dir",
            &cache_dir().display().to_string(),
            "--invoke",
            call,
        ],
        COMPILING,
    )?
    .success()?;
    assert!(
        !done.stderr.contains("waiting for promise"),
        "{call}: {}",
        done.stderr
    );
    done.stdout
        .strip_suffix('\n')
        .map(str::to_owned)
        .with_context(|| format!("no newline after {:?}", done.stdout))
}

/// The one promise of the component that timed out.
fn timed_out_promise(server: &Server, cid: &str) -> anyhow::Result<String> {
    let listed = server
        .client(&[
            "promise",
            "list",
            "--json",
            "--status",
            "timed-out",
            "--component",
            cid,
        ])?
        .success()?;
    let listed: Value = serde_json::from_str(&listed.stdout)?;
    let ids: Vec<&str> = listed["promises"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["promiseId"].as_str())
        .collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_owned()),
        _ => bail!("expected one timed-out promise: {listed}"),
    }
}

/// The statuses of the promises of the lines `wordcount`'s worker `counter`
/// counts: its first four, made by `when` in the order of the lines.
fn line_statuses(server: &Server, cid: &str) -> anyhow::Result<Vec<String>> {
    let listed = server
        .client(&[
            "promise",
            "list",
            "--json",
            "--component",
            cid,
            "--worker",
            "counter",
        ])?
        .success()?;
    let listed: Value = serde_json::from_str(&listed.stdout)?;
    let mut promises: Vec<(u64, String)> = listed["promises"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["oplogIdx"].as_u64()?, p["status"].as_str()?.to_owned())))
        .collect();
    promises.sort();
    Ok(promises
        .into_iter()
        .take(4)
        .map(|(_, status)| status)
        .collect())
}

/// How many workers of the component have names starting with `prefix`.
fn workers_named(server: &Server, cid: &str, prefix: &str) -> anyhow::Result<usize> {
    let listed = server
        .client(&["worker", "list", cid, "--json"])?
        .success()?;
    let listed: Value = serde_json::from_str(&listed.stdout)?;
    Ok(listed["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| {
            w["workerId"]["workerName"]
                .as_str()
                .is_some_and(|name| name.starts_with(prefix))
        })
        .count())
}

#[test]
fn the_python_wordcount_counts_each_line_in_a_worker_and_reports_the_timed_out_one()
-> anyhow::Result<()> {
    let wordcount = vow_tests::python_guest("wordcount")?;
    let server = Server::start(&[&wordcount])?;
    let cid = server.component_id("wordcount")?;
    server
        .client(&["worker", "start", &cid, "counter"])?
        .success()?;
    // Five seconds per line: ample for a line's worker to start and count
    // on a busy machine, and the time the stalled line takes to time out.
    let done = server
        .client(&["worker", "invoke", &cid, "counter", "run", TEXT, "5000"])?
        .success()?;
    let report: String = serde_json::from_str(&done.stdout)?;
    let stalled = timed_out_promise(&server, &cid)?;
    assert!(stalled.contains("/counter/"), "{stalled}");
    assert_eq!(
        report,
        format!(
            "3 of 4 lines counted, 9 words; line 3: timed out: promise {stalled} \
             was not settled within its timeout of 5s"
        )
    );
    // Every line was counted in a worker of its own; the `all` read each
    // line's settlement in a `then` worker, and the report's `then` took
    // two (one reads the `all`'s settlement, one runs `report`).
    assert_eq!(workers_named(&server, &cid, "when-")?, 4);
    assert_eq!(workers_named(&server, &cid, "then-")?, 4 + 2);
    Ok(())
}

#[test]
fn lambdas_and_closures_run_in_other_workers() -> anyhow::Result<()> {
    // A lambda closing over `factor` per number, and a lambda that sums.
    assert_eq!(invoke("closures", "scale-and-sum([1, 2, 3], 10)")?, "60");
    // Three `then`s, each a closure over its own step: 5 + 1 + 2 + 3.
    assert_eq!(invoke("closures", "count-up(5, 3)")?, "11");
    Ok(())
}

#[test]
fn a_rejection_is_raised_by_result_value() -> anyhow::Result<()> {
    assert_eq!(
        invoke("closures", "divide(7, 2)")?,
        r#""then: value 3.5; wait: value 3.5""#
    );
    // The exception in the other worker rejects the promise; the `then`
    // handler and `wait` both get it back from `Result.value`.
    assert_eq!(
        invoke("closures", "divide(7, 0)")?,
        r#""then: rejected: ZeroDivisionError: division by zero; wait: rejected: ZeroDivisionError: division by zero""#
    );
    Ok(())
}

#[test]
fn any_takes_the_first_value_or_says_why_there_is_none() -> anyhow::Result<()> {
    assert_eq!(
        invoke("closures", "first-quotient(12, [0, 4, 0])")?,
        r#""value 3""#
    );
    assert_eq!(
        invoke("closures", "first-quotient(12, [0, 0])")?,
        r#""rejected: all 2 promises were rejected; the first: ZeroDivisionError: division by zero""#
    );
    Ok(())
}

#[test]
fn a_function_hands_its_promise_on_or_resolves_it_itself() -> anyhow::Result<()> {
    // `relay` returns PENDING after handing its promise to another worker,
    // which resolves it with the text in capitals.
    assert_eq!(invoke("closures", r#"shout("hello")"#)?, r#""value HELLO""#);
    // With nothing to shout, `relay` rejects its own promise with
    // `resolve(Rejection(...))`; what it returns after that settles nothing.
    assert_eq!(
        invoke("closures", r#"shout("")"#)?,
        r#""rejected: nothing to shout""#
    );
    Ok(())
}

/// The fan-out, the join and the report's continuation are Vow's durable
/// promises: a `vow serve` killed while they are under way (the stalled
/// line's timeout falls due while it is down) finishes them after a
/// restart, and the report is the same.
#[test]
fn the_python_wordcount_finishes_after_kill_9() -> anyhow::Result<()> {
    let wordcount = vow_tests::python_guest("wordcount")?;
    let data = tempfile::tempdir()?;
    let server = Server::start_in(data.path(), &[&wordcount], &[])?;
    let cid = server.component_id("wordcount")?;
    server
        .client(&["worker", "start", &cid, "counter"])?
        .success()?;
    let key = uuid::Uuid::new_v4().to_string();
    let invoke = [
        "worker",
        "invoke",
        &cid,
        "counter",
        "run",
        TEXT,
        "5000",
        "--idempotency-key",
        &key,
    ];
    let _cut_off = server.spawn_client(&invoke)?;
    // `run` has fanned out and joined, and waits for the report; the
    // lines that can be counted have been, and the stalled one has not.
    server.awaited_promise(&cid, "counter")?;
    let deadline = Instant::now() + QUICK;
    let counted = loop {
        let statuses = line_statuses(&server, &cid)?;
        if [0, 1, 3]
            .iter()
            .all(|&line| statuses.get(line).is_some_and(|s| s != "pending"))
        {
            break statuses;
        }
        ensure!(
            Instant::now() < deadline,
            "the lines were never counted: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(counted, ["completed", "completed", "pending", "completed"]);
    server.kill()?;
    // Past the stalled line's timeout: it falls due while Vow is down.
    std::thread::sleep(Duration::from_secs(5));

    let server = Server::start_in(data.path(), &[], &[])?;
    // The same key answers with the outcome of the invocation started
    // before the kill, once it is done.
    let done = server.client(&invoke)?.success()?;
    let report: String = serde_json::from_str(&done.stdout)?;
    let stalled = timed_out_promise(&server, &cid)?;
    assert_eq!(
        report,
        format!(
            "3 of 4 lines counted, 9 words; line 3: timed out: promise {stalled} \
             was not settled within its timeout of 5s"
        )
    );
    assert_eq!(workers_named(&server, &cid, "when-")?, 4);
    Ok(())
}
