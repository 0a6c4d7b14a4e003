//! `vow promise list --watch` against a real server: what starts waiting
//! shows up in the next list, and leaves it once completed.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::support::{QUICK, Running, Server};

/// The title line of each list.
const TITLE: &str = "Every 200ms: vow promise list --status pending";

/// The last complete list `watch` printed: the text between the last two
/// title lines, without the rest of the first one (its time).
fn last_list(output: &str) -> Option<&str> {
    let lists: Vec<&str> = output.split(TITLE).collect();
    // The list after the last title may still be arriving.
    let list = lists.len().checked_sub(2).map(|i| lists[i])?;
    list.split_once('\n').map(|(_, list)| list)
}

/// Waits until the last complete list satisfies `check`.
fn wait_list(watch: &Running, what: &str, check: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + QUICK;
    loop {
        let output = watch.wait_stdout(TITLE, QUICK)?;
        if last_list(&output).is_some_and(&check) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no list {what}: {output}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_watched_list_follows_what_waits() -> anyhow::Result<()> {
    let approval = vow_tests::guest("approval")?;
    let server = Server::start(&[&approval])?;
    let cid = server.component_id("approval")?;
    let mut watch = server.spawn_client(&[
        "promise",
        "list",
        "--status",
        "pending",
        "--watch",
        "--interval",
        "0.2",
    ])?;
    wait_list(&watch, "without promises", |list| {
        list.trim() == "PROMISE ID  STATUS  AWAITED  CREATED  COMPLETED"
    })?;

    server.client(&["worker", "start", &cid, "w1"])?.success()?;
    server
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
    let id = server.awaited_promise(&cid, "w1")?;
    wait_list(&watch, "with the parked worker's promise", |list| {
        list.lines().any(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            cells.get(..3) == Some(&[id.as_str(), "pending", "yes"][..])
        })
    })?;

    server
        .client(&["promise", "complete", &id, "--data", "approved"])?
        .success()?;
    wait_list(&watch, "without the completed promise", |list| {
        !list.contains(&id)
    })?;

    // Still going until stopped; a pipe gets no escape codes.
    watch.kill()?;
    let output = watch.finish(QUICK)?.stdout;
    assert!(!output.contains('\x1b'), "{output:?}");
    Ok(())
}
