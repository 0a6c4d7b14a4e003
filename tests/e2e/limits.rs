//! Limits: a guest that floods stdout, creates promises in a loop, recurses
//! until its stack runs out or never returns fails alone, with the reason;
//! starting workers past the executor's or a component's limit is refused
//! with a message naming the limit.

use std::time::Duration;

use anyhow::{Result, bail};
use vow_runtime::{Error, Invocation, PromiseOptions, Val, WorkerStatus};

use crate::support::*;

/// The message of a trap, or a failure naming what came instead.
fn trap_message(outcome: vow_runtime::Result<Vec<Val>>) -> Result<String> {
    match outcome {
        Err(Error::Trap { message, .. }) => Ok(message),
        other => bail!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn a_flood_of_stdout_keeps_the_newest_bytes_and_harms_no_one() -> Result<()> {
    let limit = 64 << 10;
    let (executor, component) = executor_with(builder().output_limit(limit), "harness").await?;
    let flooder = start(&executor, component, "flooder").await?;
    let other = start(&executor, component, "other").await?;
    let written = executor
        .invoke(
            &flooder,
            "flood",
            vec![Val::U32(8), Val::String("the end".into())],
        )
        .await?;
    let [Val::U64(written)] = written[..] else {
        bail!("expected the bytes written, got {written:?}");
    };
    assert!(written > 8 << 20, "{written}");
    let output = executor.worker_output(&flooder)?;
    assert_eq!(output.stdout.len(), limit);
    assert!(output.stdout.ends_with(b"x\nthe end\n"));
    assert_eq!(output.stdout_dropped, written - limit as u64);
    // The worker is fine, and so is everyone else.
    assert_eq!(executor.worker_status(&flooder)?, WorkerStatus::Idle);
    assert_eq!(
        executor.invoke(&flooder, "ping", vec![Val::U32(1)]).await?,
        vec![Val::U32(2)]
    );
    assert_eq!(
        executor.invoke(&other, "ping", vec![Val::U32(7)]).await?,
        vec![Val::U32(8)]
    );
    assert!(executor.worker_output(&other)?.stdout.is_empty());
    Ok(())
}

#[tokio::test]
async fn creating_promises_in_a_loop_traps_at_the_limit() -> Result<()> {
    let (executor, component) = executor_with(builder().max_open_promises(100), "harness").await?;
    let hoarder = start(&executor, component, "hoarder").await?;
    let other = start(&executor, component, "other").await?;
    let message = trap_message(
        executor
            .invoke(&hoarder, "hoard", vec![Val::U32(1_000)])
            .await,
    )?;
    assert!(
        message.contains(&format!(
            "worker {hoarder} holds 100 pending promises, the limit (--max-open-promises)"
        )),
        "{message}"
    );
    let meta = executor.worker_metadata(&hoarder)?;
    assert_eq!(meta.status, WorkerStatus::Failed);
    assert!(
        meta.last_error
            .is_some_and(|e| e.contains("--max-open-promises"))
    );
    // Up to the limit is fine, one more is not: each worker has its own.
    assert_eq!(
        executor
            .invoke(&other, "hoard", vec![Val::U32(100)])
            .await?,
        vec![Val::U32(100)]
    );
    let message = trap_message(executor.invoke(&other, "hoard", vec![Val::U32(1)]).await)?;
    assert!(message.contains("holds 100 pending promises"), "{message}");
    Ok(())
}

#[tokio::test]
async fn settled_and_deleted_promises_are_no_longer_held() -> Result<()> {
    let (executor, component) = executor_with(builder().max_open_promises(10), "harness").await?;
    let worker = start(&executor, component, "busy").await?;
    for i in 0..30u8 {
        // Created, completed by the guest itself, awaited.
        assert_eq!(
            executor
                .invoke(&worker, "complete-then-await", vec![bytes_val(&[i])])
                .await?,
            vec![bytes_val(&[i])]
        );
        // Created and deleted.
        let promise = single(executor.invoke(&worker, "new-promise", vec![]).await?)?;
        executor.invoke(&worker, "delete", vec![promise]).await?;
    }
    // Completed from outside.
    for _ in 0..30 {
        let promise = single(executor.invoke(&worker, "new-promise", vec![]).await?)?;
        assert!(
            executor
                .complete_promise(&promise_from_val(&promise)?, b"done".to_vec())
                .await?
        );
    }
    assert_eq!(
        executor
            .invoke(&worker, "hoard", vec![Val::U32(10)])
            .await?,
        vec![Val::U32(10)]
    );
    Ok(())
}

#[tokio::test]
async fn recursing_until_the_stack_runs_out_fails_that_worker_only() -> Result<()> {
    let (executor, component) = harness().await?;
    let deep = start(&executor, component, "deep").await?;
    let other = start(&executor, component, "other").await?;
    // A shallow recursion is fine.
    executor
        .invoke(&deep, "recurse", vec![Val::U64(100)])
        .await?;
    let message = trap_message(
        executor
            .invoke(&deep, "recurse", vec![Val::U64(u64::MAX)])
            .await,
    )?;
    assert!(message.contains("stack"), "{message}");
    assert_eq!(executor.worker_status(&deep)?, WorkerStatus::Failed);
    assert_eq!(
        executor.invoke(&other, "ping", vec![Val::U32(1)]).await?,
        vec![Val::U32(2)]
    );
    Ok(())
}

/// On one thread, so that the other worker's answers show the busy guest
/// yields while it runs.
#[tokio::test(flavor = "current_thread")]
async fn a_guest_that_never_returns_fails_alone_with_the_reason() -> Result<()> {
    let builder = builder().max_run_time(Some(Duration::from_secs(1)));
    let (executor, component) = executor_with(builder, "harness").await?;
    let spinner = start(&executor, component, "spinner").await?;
    let other = start(&executor, component, "other").await?;
    let spin = executor
        .submit(&spinner, Invocation::new("spin", vec![]))
        .await?;
    eventually("the spinner to run", || async {
        (executor.worker_status(&spinner).ok()? == WorkerStatus::Running).then_some(())
    })
    .await?;
    // Another worker keeps answering while the spinner runs.
    let mut answered = 0;
    while executor.worker_status(&spinner)? == WorkerStatus::Running {
        assert_eq!(
            executor
                .invoke(&other, "ping", vec![Val::U32(answered)])
                .await?,
            vec![Val::U32(answered + 1)]
        );
        answered += 1;
    }
    assert!(answered > 0);
    let message = trap_message(spin.result().await)?;
    assert!(
        message.contains("ran for more than 1 s without finishing (--max-run-time)"),
        "{message}"
    );
    let meta = executor.worker_metadata(&spinner)?;
    assert_eq!(meta.status, WorkerStatus::Failed);
    assert!(
        meta.last_error
            .is_some_and(|e| e.contains("--max-run-time"))
    );
    assert_eq!(
        executor.invoke(&other, "ping", vec![Val::U32(9)]).await?,
        vec![Val::U32(10)]
    );
    Ok(())
}

/// Time parked on a promise is not running time: a worker waits longer
/// than the limit, in memory, and still finishes.
#[tokio::test]
async fn waiting_on_a_promise_does_not_count_as_running() -> Result<()> {
    let builder = builder()
        .max_run_time(Some(Duration::from_millis(200)))
        .evict_after(None);
    let (executor, component) = executor_with(builder, "harness").await?;
    let waiter = start(&executor, component, "waiter").await?;
    let call = executor
        .submit(&waiter, Invocation::new("create-and-await", vec![]))
        .await?;
    let promise = parked_on(&executor, &waiter).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(executor.worker_status(&waiter)?, WorkerStatus::Suspended);
    assert!(
        executor
            .complete_promise(&promise.id, b"late".to_vec())
            .await?
    );
    assert_eq!(call.result().await?, vec![bytes_val(b"late")]);
    // Each invocation has the whole limit.
    assert_eq!(
        executor
            .invoke(&waiter, "spin-for", vec![Val::U64(1_000)])
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn starting_workers_past_a_limit_is_refused_with_the_limit() -> Result<()> {
    let builder = builder().max_workers(3).max_workers_per_component(2);
    let (executor, first) = executor_with(builder, "harness").await?;
    let second = executor
        .add_component_file(vow_tests::guest("harness")?)
        .await?;
    let a = start(&executor, first, "a").await?;
    start(&executor, first, "b").await?;
    match start(&executor, first, "c").await {
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains(&format!(
                    "component {first} has 2 workers, the limit (--max-workers-per-component)"
                )),
                "{message}"
            );
            assert!(matches!(
                error.downcast_ref::<Error>(),
                Some(Error::TooManyWorkers {
                    component: Some(c),
                    limit: 2,
                    ..
                }) if *c == first
            ));
        }
        Ok(id) => bail!("{id} started past the per-component limit"),
    }
    start(&executor, second, "d").await?;
    match start(&executor, second, "e").await {
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("there are 3 workers, the limit (--max-workers)"),
                "{message}"
            );
        }
        Ok(id) => bail!("{id} started past the executor's limit"),
    }
    // A `when` from outside needs a worker too.
    match executor
        .when(second, "double", b"x".to_vec(), PromiseOptions::default())
        .await
    {
        Err(Error::TooManyWorkers {
            component: None,
            limit: 3,
            ..
        }) => {}
        other => bail!("expected TooManyWorkers, got {other:?}"),
    }
    // A refused start leaves nothing behind, and deleting makes room.
    assert_eq!(executor.workers(None).len(), 3);
    executor.delete_worker(&a)?;
    start(&executor, first, "c").await?;
    Ok(())
}

/// Workers out of memory count: the limit bounds the entries every worker
/// keeps, not the instances.
#[tokio::test]
async fn evicted_workers_count_against_the_limit() -> Result<()> {
    let builder = builder().max_workers(2).evict_after(Some(Duration::ZERO));
    let (executor, component) = executor_with(builder, "harness").await?;
    for name in ["parked-1", "parked-2"] {
        let worker = start(&executor, component, name).await?;
        executor
            .enqueue(&worker, Invocation::new("create-and-await", vec![]))
            .await?;
        parked_on(&executor, &worker).await?;
    }
    eventually("the parked workers to leave memory", || async {
        (executor.resident_workers() == 0).then_some(())
    })
    .await?;
    match start(&executor, component, "third").await {
        Err(error) => assert!(error.to_string().contains("(--max-workers)"), "{error}"),
        Ok(id) => bail!("{id} started past the limit"),
    }
    Ok(())
}

#[tokio::test]
async fn payloads_past_the_limit_settle_nothing_and_say_why() -> Result<()> {
    let limit = 1024;
    let (executor, component) = executor_with(builder().max_payload(limit), "harness").await?;
    let waiter = start(&executor, component, "waiter").await?;
    let id = promise_from_val(&single(
        executor.invoke(&waiter, "new-promise", vec![]).await?,
    )?)?;
    let call = executor
        .submit(
            &waiter,
            Invocation::new("await-payload", vec![promise_val(&id)]),
        )
        .await?;
    parked_on(&executor, &waiter).await?;

    // From the host: refused with the sizes, and the promise still waits.
    match executor.complete_promise(&id, vec![1; limit + 1]).await {
        Err(Error::PayloadTooLarge { size, limit: l, .. }) => {
            assert_eq!((size, l), (limit + 1, limit))
        }
        other => bail!("expected PayloadTooLarge, got {other:?}"),
    }
    let error = executor
        .reject_promise(&id, "no", vec![0; limit])
        .await
        .expect_err("a rejection's message and data count");
    assert!(error.to_string().contains("(--max-payload)"), "{error}");

    // From a guest: its invocation traps with the reason; the promise
    // still waits, and the awaiting worker is unharmed.
    let completer = start(&executor, component, "completer").await?;
    let message = trap_message(
        executor
            .invoke(
                &completer,
                "complete",
                vec![promise_val(&id), bytes_val(&vec![2; limit + 1])],
            )
            .await,
    )?;
    assert!(
        message.contains(&format!(
            "is {} bytes, more than the limit of {limit} (--max-payload)",
            limit + 1
        )),
        "{message}"
    );
    assert_eq!(executor.worker_status(&waiter)?, WorkerStatus::Suspended);

    // Exactly the limit is a payload like any other.
    assert!(executor.complete_promise(&id, vec![3; limit]).await?);
    assert_eq!(bytes_of(&single(call.result().await?)?)?, vec![3; limit]);

    // A function run for a promise whose result is too large rejects it.
    let doubled = executor
        .when(
            component,
            "double",
            vec![4; limit / 2 + 1],
            PromiseOptions::default(),
        )
        .await?;
    let (info, settlement) = eventually("the when promise to settle", || async {
        let (info, settlement) = executor.promise(&doubled).await.ok()?;
        settlement.map(|s| (info, s))
    })
    .await?;
    let failure = settlement.expect_err("a result past the limit rejects the promise");
    assert_eq!(failure.kind, vow_runtime::ErrorKind::Failed);
    assert_eq!(
        failure.message,
        format!(
            "the result is {} bytes, more than the limit of {limit} (--max-payload)",
            limit + 2
        )
    );
    assert_eq!(info.status, vow_runtime::PromiseStatus::Rejected);
    Ok(())
}

#[tokio::test]
async fn a_continuation_that_fires_past_the_limit_rejects_its_promise() -> Result<()> {
    let (executor, component) = executor_with(builder().max_workers(2), "harness").await?;
    let owner = start(&executor, component, "owner").await?;
    let source = promise_from_val(&single(
        executor.invoke(&owner, "new-promise", vec![]).await?,
    )?)?;
    // Accepted while there is room: its worker is made when `source`
    // settles, and by then the last place is taken.
    let continued = executor
        .then(&source, component, "double", PromiseOptions::default())
        .await?;
    start(&executor, component, "last-place").await?;
    assert!(executor.complete_promise(&source, b"ab".to_vec()).await?);
    let settlement = eventually("the continuation's promise to settle", || async {
        executor.promise(&continued).await.ok()?.1
    })
    .await?;
    let failure = settlement.expect_err("a continuation that cannot start rejects");
    assert_eq!(failure.kind, vow_runtime::ErrorKind::Failed);
    assert!(
        failure
            .message
            .starts_with("the continuation could not start: cannot start worker"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("(--max-workers)"),
        "{}",
        failure.message
    );
    Ok(())
}
