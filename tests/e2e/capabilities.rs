//! What a guest is given (docs/guest-capabilities.md): its own arguments
//! and environment, no files, no network, a closed stdin, and clocks and
//! randomness that are journaled for replay.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use vow_runtime::{Val, WorkerConfig};

use crate::support::*;

/// The harness's `probe`: what each attempt answered.
async fn probe() -> Result<HashMap<String, String>> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "prober").await?;
    let results = single(executor.invoke(&worker, "probe", vec![]).await?)?;
    let Val::List(pairs) = results else {
        bail!("expected a list, got {results:?}");
    };
    let mut out = HashMap::new();
    for pair in pairs {
        match pair {
            Val::Tuple(items) => match &items[..] {
                [Val::String(name), Val::String(outcome)] => {
                    out.insert(name.clone(), outcome.clone());
                }
                other => bail!("unexpected probe {other:?}"),
            },
            other => bail!("unexpected probe {other:?}"),
        }
    }
    Ok(out)
}

fn outcome<'a>(probes: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    probes
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| anyhow::anyhow!("no probe {name:?} in {probes:?}"))
}

#[tokio::test]
async fn a_guest_sees_no_files() -> Result<()> {
    let probes = probe().await?;
    for name in [
        "read-dir /",
        "read-dir .",
        "open /etc/passwd",
        "create probe.txt",
    ] {
        let seen = outcome(&probes, name)?;
        assert!(seen.starts_with("err: "), "{name}: {seen}");
    }
    // No preopened directory: a path has nothing to resolve against.
    assert!(
        outcome(&probes, "open /etc/passwd")?.contains("No such file or directory"),
        "{probes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_guest_has_no_network() -> Result<()> {
    let probes = probe().await?;
    for name in [
        "tcp connect 127.0.0.1:9881",
        "tcp listen 127.0.0.1:0",
        "udp bind 127.0.0.1:0",
    ] {
        let seen = outcome(&probes, name)?;
        assert!(
            seen.starts_with("err: ") && seen.contains("ermission denied"),
            "{name}: {seen}"
        );
    }
    let lookup = outcome(&probes, "resolve localhost")?;
    assert!(lookup.starts_with("err: "), "{lookup}");
    Ok(())
}

#[tokio::test]
async fn stdin_is_closed_and_there_are_no_threads() -> Result<()> {
    let probes = probe().await?;
    assert_eq!(outcome(&probes, "read stdin")?, "ok: 0");
    assert!(outcome(&probes, "spawn thread")?.starts_with("err: "));
    Ok(())
}

#[tokio::test]
async fn a_guest_sees_its_own_arguments_and_environment_only() -> Result<()> {
    let (executor, component) = harness().await?;
    let config = WorkerConfig {
        args: vec!["first".into(), "--second".into()],
        env: vec![("GREETING".into(), "hello".into())],
    };
    let worker = executor
        .start_worker(component, "configured", config)
        .await?;
    // The host's environment (PATH, HOME, the test's own variables) does
    // not leak in.
    let env = single(executor.invoke(&worker, "get-env", vec![]).await?)?;
    assert_eq!(
        env,
        Val::List(vec![Val::Tuple(vec![
            Val::String("GREETING".into()),
            Val::String("hello".into()),
        ])])
    );
    let args = single(executor.invoke(&worker, "get-args", vec![]).await?)?;
    assert_eq!(
        args,
        Val::List(vec![
            Val::String("first".into()),
            Val::String("--second".into())
        ])
    );
    let bare = start(&executor, component, "bare").await?;
    assert_eq!(
        single(executor.invoke(&bare, "get-env", vec![]).await?)?,
        Val::List(vec![])
    );
    assert_eq!(
        single(executor.invoke(&bare, "get-args", vec![]).await?)?,
        Val::List(vec![])
    );
    Ok(())
}

#[tokio::test]
async fn clocks_and_randomness_are_real_and_journaled() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "sampler").await?;
    let mut samples = Vec::new();
    for _ in 0..2 {
        match single(executor.invoke(&worker, "sample", vec![]).await?)? {
            Val::Tuple(items) => match &items[..] {
                [Val::String(uuid), Val::U64(wall), Val::U64(monotonic)] => {
                    samples.push((uuid.clone(), *wall, *monotonic));
                }
                other => bail!("unexpected sample {other:?}"),
            },
            other => bail!("unexpected sample {other:?}"),
        }
    }
    let host_now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    for (uuid, wall, _) in &samples {
        assert_eq!(uuid::Uuid::parse_str(uuid)?.get_version_num(), 4);
        // The host's wall clock, not a fixed or shifted one.
        let skew = host_now.abs_diff(Duration::from_nanos(*wall));
        assert!(skew < Duration::from_secs(60), "{skew:?}");
    }
    assert_ne!(samples[0].0, samples[1].0);
    assert!(samples[1].2 >= samples[0].2);
    // Every read and draw is in the log, for replay to answer.
    let kinds: Vec<&str> = executor
        .worker_oplog(&worker, 1, 1_000)
        .await?
        .iter()
        .map(|r| r.entry.kind())
        .collect();
    for kind in ["wall-clock", "monotonic-clock", "random"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    Ok(())
}
