//! The Python examples (`guest-examples/python`), built with componentize-py.

use crate::support::{COMPILING, QUICK, Server, cache_dir, run};

#[test]
fn the_seed_code_runs_unchanged() -> anyhow::Result<()> {
    let seed = vow_tests::python_guest("seed")?;
    let done = run(
        &[
            "run",
            &seed.display().to_string(),
            "--cache-dir",
            &cache_dir().display().to_string(),
            "--invoke",
            "run()",
        ],
        COMPILING,
    )?
    .success()?;
    assert_eq!(done.stdout, "\"hello world\"\n");
    assert_eq!(done.stderr, "");
    Ok(())
}

#[test]
fn the_first_completion_wins() -> anyhow::Result<()> {
    let component = vow_tests::python_guest("self-complete")?;
    let done = run(
        &[
            "run",
            &component.display().to_string(),
            "--cache-dir",
            &cache_dir().display().to_string(),
            "--invoke",
            "run(\"first\", \"second\")",
        ],
        COMPILING,
    )?
    .success()?;
    // WAVE escapes the quotes of Python's repr inside the string.
    assert_eq!(
        done.stdout,
        "\"first completion True, second completion False, awaited \\'first\\'\"\n"
    );
    Ok(())
}

#[test]
fn a_python_worker_waits_for_a_rest_completion() -> anyhow::Result<()> {
    let approval = vow_tests::python_guest("approval")?;
    let server = Server::start(&[&approval])?;
    let cid = server.component_id("approval")?;
    server.client(&["worker", "start", &cid, "py"])?.success()?;
    let mut waiting = server.spawn_client(&[
        "worker",
        "invoke",
        &cid,
        "py",
        "request-approval",
        "\"deploy\"",
    ])?;
    let id = server.awaited_promise(&cid, "py")?;
    // The guest formats the id itself, from the UUID's two 64-bit halves.
    let logs = server.client(&["worker", "logs", &cid, "py"])?.success()?;
    assert_eq!(
        logs.stdout,
        format!("approval needed for \"deploy\": complete promise {id}\n")
    );
    let completed = server
        .client(&["promise", "complete", &id, "--data", "approved"])?
        .success()?;
    assert_eq!(completed.stdout, "completed\n");
    let result = waiting.finish(QUICK)?.success()?;
    assert_eq!(result.stdout, "\"\\\"deploy\\\": approved\"\n");
    Ok(())
}
