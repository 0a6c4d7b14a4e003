//! A misbehaving guest fails only its own invocation: traps, busy loops,
//! memory hogs and timeouts.

use std::time::Duration;

use anyhow::Result;
use vow_runtime::{Error, Invocation, Val, WorkerStatus};

use crate::support::*;

#[tokio::test]
async fn a_trap_fails_that_worker_only() -> Result<()> {
    let (executor, component) = harness().await?;
    let bad = start(&executor, component, "bad").await?;
    let good = start(&executor, component, "good").await?;
    let err = executor
        .invoke(&bad, "fail", vec![Val::String("boom at step 3".into())])
        .await;
    match err {
        Err(Error::Trap {
            worker, function, ..
        }) => {
            assert_eq!(worker, bad);
            assert_eq!(function, "fail");
        }
        other => anyhow::bail!("expected a trap, got {other:?}"),
    }
    // The panic message reached the worker's own stderr, not the host's.
    let stderr = String::from_utf8(executor.worker_output(&bad)?.stderr)?;
    assert!(stderr.contains("boom at step 3"), "{stderr}");
    let meta = executor.worker_metadata(&bad)?;
    assert_eq!(meta.status, WorkerStatus::Failed);
    assert!(meta.last_error.is_some_and(|e| e.contains("trapped")));
    match executor.invoke(&bad, "ping", vec![Val::U32(1)]).await {
        Err(Error::WorkerFailed { worker, .. }) => assert_eq!(worker, bad),
        other => anyhow::bail!("expected WorkerFailed, got {other:?}"),
    }
    assert_eq!(
        executor.invoke(&good, "ping", vec![Val::U32(41)]).await?,
        vec![Val::U32(42)]
    );
    assert_eq!(executor.worker_status(&good)?, WorkerStatus::Idle);
    Ok(())
}

/// On a single-threaded runtime a guest that never yields would block every
/// other task; epoch preemption makes it yield.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_loop_does_not_starve_other_workers() -> Result<()> {
    let (executor, component) = harness().await?;
    let spinner = start(&executor, component, "spinner").await?;
    let other = start(&executor, component, "other").await?;
    let spin = executor
        .submit(&spinner, Invocation::new("spin", vec![]))
        .await?;
    eventually("the spinner to run", || async {
        (executor.worker_status(&spinner).ok()? == WorkerStatus::Running).then_some(())
    })
    .await?;
    for n in 0..5u32 {
        assert_eq!(
            executor.invoke(&other, "ping", vec![Val::U32(n)]).await?,
            vec![Val::U32(n + 1)]
        );
    }
    assert_eq!(executor.worker_status(&spinner)?, WorkerStatus::Running);
    executor.delete_worker(&spinner)?;
    match spin.result().await {
        Err(Error::WorkerDeleted(id)) => assert_eq!(id, spinner),
        other => anyhow::bail!("expected WorkerDeleted, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn growing_past_the_memory_limit_traps_that_worker() -> Result<()> {
    let (executor, component) = executor_with(builder().memory_limit(32 << 20), "harness").await?;
    let hog = start(&executor, component, "hog").await?;
    let modest = start(&executor, component, "modest").await?;
    let err = executor.invoke(&hog, "allocate", vec![Val::U32(64)]).await;
    assert!(matches!(err, Err(Error::Trap { .. })), "{err:?}");
    assert_eq!(
        executor
            .invoke(&modest, "allocate", vec![Val::U32(4)])
            .await?,
        vec![Val::U32(4)]
    );
    Ok(())
}

#[tokio::test]
async fn an_invocation_past_its_timeout_fails_with_a_timeout() -> Result<()> {
    let builder = builder().invocation_timeout(Some(Duration::from_millis(300)));
    let (executor, component) = executor_with(builder, "harness").await?;
    let worker = start(&executor, component, "slow").await?;
    match executor.invoke(&worker, "spin", vec![]).await {
        Err(Error::Timeout {
            worker: w, timeout, ..
        }) => {
            assert_eq!(w, worker);
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => anyhow::bail!("expected a timeout, got {other:?}"),
    }
    assert_eq!(executor.worker_status(&worker)?, WorkerStatus::Failed);
    Ok(())
}
