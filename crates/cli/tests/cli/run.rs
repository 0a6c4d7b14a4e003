//! `vow run`: one invocation in the `vow` process itself.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::support::{COMPILING, QUICK, Running, cache_dir, run};

fn rust_guest(name: &str) -> anyhow::Result<String> {
    let path: PathBuf = vow_tests::guest(name)?;
    Ok(path.display().to_string())
}

/// `vow run COMPONENT --cache-dir CACHE EXTRA...`.
fn run_args<'a>(component: &'a str, cache: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", component, "--cache-dir", cache];
    args.extend_from_slice(extra);
    args
}

/// Whether `text` is a UUID in canonical form.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

/// A worker that waits on promises the runtime settles (`when`, `all`,
/// `then`) is not asked for a payload: `vow run` waits for the work.
#[test]
fn composed_promises_are_left_to_their_work() -> anyhow::Result<()> {
    let component = rust_guest("wordcount")?;
    let cache = cache_dir().display().to_string();
    let done = run(
        &run_args(
            &component,
            &cache,
            &["--invoke", r#"run("a b\n!stall\nc", 300)"#],
        ),
        COMPILING,
    )?
    .success()?;
    assert_eq!(done.stderr, "", "nobody was asked for a payload");
    let line = done.stdout.strip_suffix('\n').context("no newline")?;
    let (head, tail) = line
        .split_once("promise ")
        .with_context(|| format!("unexpected output {line:?}"))?;
    assert_eq!(
        head,
        "ok(\"2 of 3 lines counted, 3 words; line 2: timed out: "
    );
    assert!(
        tail.ends_with("/main/5 was not settled within its timeout of 300ms\")"),
        "{line}"
    );
    Ok(())
}

#[test]
fn prints_the_result_as_wave() -> anyhow::Result<()> {
    let component = rust_guest("promises")?;
    let cache = cache_dir().display().to_string();
    let done = run(
        &run_args(&component, &cache, &["--invoke", "run()"]),
        COMPILING,
    )?
    .success()?;
    assert_eq!(done.stderr, "");
    // The promise id holds the random component id; everything else is fixed.
    let line = done.stdout.strip_suffix('\n').context("no newline")?;
    let (id, rest) = line
        .strip_prefix("\"promise ")
        .and_then(|l| l.split_once('/'))
        .with_context(|| format!("unexpected output {line:?}"))?;
    assert!(is_uuid(id), "{id:?} in {line:?}");
    assert_eq!(
        rest,
        "main/3: first completion true, second completion false, \
         awaited \\\"hello world\\\", deleted\""
    );
    Ok(())
}

#[test]
fn a_line_of_stdin_completes_the_awaited_promise() -> anyhow::Result<()> {
    let component = rust_guest("approval")?;
    let cache = cache_dir().display().to_string();
    let mut vow = Running::spawn(&run_args(
        &component,
        &cache,
        &[
            "--invoke",
            "request-approval(\"deploy\")",
            "--worker",
            "approver",
        ],
    ))?;
    let prompt = vow.wait_stderr("press Enter", COMPILING)?;
    let id = prompt
        .lines()
        .find_map(|l| l.strip_prefix("the worker is waiting for promise "))
        .with_context(|| format!("no promise id in {prompt:?}"))?
        .to_owned();
    assert!(id.ends_with("/approver/3"), "{id}");
    vow.write_stdin(b"yes\n")?;
    let done = vow.finish(QUICK)?.success()?;
    assert_eq!(
        done.stdout,
        format!(
            "approval needed for \"deploy\": complete promise {id}\n\
             \"\\\"deploy\\\": yes\"\n"
        )
    );
    assert_eq!(
        done.stderr,
        format!(
            "the worker is waiting for promise {id}\n\
             type the payload and press Enter to complete it (end of input gives up):\n"
        )
    );
    Ok(())
}

#[test]
fn end_of_input_before_completion_is_an_error() -> anyhow::Result<()> {
    let component = rust_guest("approval")?;
    let cache = cache_dir().display().to_string();
    let args = run_args(&component, &cache, &["--invoke", "request-approval(\"x\")"]);
    let done = run(&args, COMPILING)?.code(1)?;
    let last = done.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: stdin closed before promise ")
            && last.ends_with("/main/3 was completed"),
        "{}",
        done.stderr
    );
    Ok(())
}

#[test]
fn an_unknown_function_is_one_line_listing_the_exports() -> anyhow::Result<()> {
    let component = rust_guest("approval")?;
    let cache = cache_dir().display().to_string();
    let done = run(
        &run_args(&component, &cache, &["--invoke", "approve(\"x\")"]),
        COMPILING,
    )?
    .code(1)?;
    assert_eq!(done.stdout, "");
    assert_eq!(
        done.stderr,
        "error: approval exports no function \"approve\"; its exports: \
         request-approval: func(subject: string) -> string\n"
    );
    Ok(())
}

#[test]
fn arguments_are_checked_against_the_signature() -> anyhow::Result<()> {
    let component = rust_guest("approval")?;
    let cache = cache_dir().display().to_string();
    let done = run(
        &run_args(&component, &cache, &["--invoke", "request-approval(42)"]),
        COMPILING,
    )?
    .code(1)?;
    assert_eq!(
        done.stderr,
        "error: cannot parse the arguments of request-approval: invalid value type \
         at \"42\" (column 18); expected (subject: string)\n"
    );
    Ok(())
}

#[test]
fn list_prints_the_exports() -> anyhow::Result<()> {
    let component = rust_guest("approval")?;
    let cache = cache_dir().display().to_string();
    let done = run(&run_args(&component, &cache, &["--list"]), COMPILING)?.success()?;
    assert_eq!(
        done.stdout,
        "request-approval: func(subject: string) -> string\n"
    );
    let done = run(&run_args(&component, &cache, &["--list", "--json"]), QUICK)?.success()?;
    let json: serde_json::Value = serde_json::from_str(&done.stdout)?;
    assert_eq!(
        json,
        serde_json::json!([{
            "name": "request-approval",
            "params": [{"name": "subject", "type": "string"}],
            "results": ["string"]
        }])
    );
    Ok(())
}

#[test]
fn a_missing_file_is_a_one_line_error() -> anyhow::Result<()> {
    let done = run(
        &["run", "/nonexistent/x.wasm", "--list", "--no-cache"],
        QUICK,
    )?
    .code(1)?;
    assert_eq!(
        done.stderr,
        "error: cannot load /nonexistent/x.wasm: reading /nonexistent/x.wasm: \
         No such file or directory (os error 2)\n"
    );
    Ok(())
}
