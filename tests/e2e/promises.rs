//! Promise semantics: create, await, complete (from the host and from other
//! workers), first-writer-wins, delete, unknown ids, and the oplog index.

use anyhow::Result;
use vow_runtime::{
    Error, Invocation, OplogEntry, PromiseFilter, PromiseId, PromiseStatus, Val, WorkerStatus,
};

use crate::support::*;

#[tokio::test]
async fn promises_example_round_trips_inside_one_worker() -> Result<()> {
    let (executor, component) = executor_with(builder(), "promises").await?;
    let worker = start(&executor, component, "example").await?;
    let out = single(executor.invoke(&worker, "run", vec![]).await?)?;
    let Val::String(text) = out else {
        anyhow::bail!("expected a string, got {out:?}");
    };
    assert_eq!(
        text,
        format!(
            "promise {component}/example/3: first completion true, second completion false, \
             awaited \"hello world\", deleted"
        )
    );
    Ok(())
}

#[tokio::test]
async fn external_completion_resumes_the_right_worker_with_the_exact_payload() -> Result<()> {
    let (executor, component) = harness().await?;
    let a = start(&executor, component, "a").await?;
    let b = start(&executor, component, "b").await?;
    let call_a = executor
        .submit(&a, Invocation::new("create-and-await", vec![]))
        .await?;
    let call_b = executor
        .submit(&b, Invocation::new("create-and-await", vec![]))
        .await?;
    let pa = parked_on(&executor, &a).await?;
    let pb = parked_on(&executor, &b).await?;
    assert_eq!(executor.worker_status(&a)?, WorkerStatus::Suspended);
    assert_eq!(executor.worker_status(&b)?, WorkerStatus::Suspended);

    let payload = vec![0u8, 1, 2, 254, 255];
    assert!(executor.complete_promise(&pb.id, payload.clone()).await?);
    assert_eq!(bytes_of(&single(call_b.result().await?)?)?, payload);
    // A is still parked: only B's promise was completed.
    assert_eq!(executor.worker_status(&a)?, WorkerStatus::Suspended);
    assert_eq!(executor.worker_status(&b)?, WorkerStatus::Idle);

    assert!(executor.complete_promise(&pa.id, b"for a".to_vec()).await?);
    assert_eq!(bytes_of(&single(call_a.result().await?)?)?, b"for a");
    // The guest printed the id it was waiting on, in the same text form.
    let stdout = String::from_utf8(executor.worker_output(&a)?.stdout)?;
    assert_eq!(stdout, format!("waiting on {}\n", pa.id));
    Ok(())
}

#[tokio::test]
async fn another_worker_completes_the_promise() -> Result<()> {
    let (executor, component) = harness().await?;
    let owner = start(&executor, component, "owner").await?;
    let other = start(&executor, component, "other").await?;
    let id = single(executor.invoke(&owner, "new-promise", vec![]).await?)?;
    let call = executor
        .submit(&owner, Invocation::new("await-payload", vec![id.clone()]))
        .await?;
    parked_on(&executor, &owner).await?;
    let completed = executor
        .invoke(&other, "complete", vec![id, bytes_val(b"from other")])
        .await?;
    assert_eq!(completed, vec![Val::Bool(true)]);
    assert_eq!(bytes_of(&single(call.result().await?)?)?, b"from other");
    Ok(())
}

#[tokio::test]
async fn completion_before_await_returns_at_once() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "early").await?;
    let out = executor
        .invoke(
            &worker,
            "complete-then-await",
            vec![bytes_val(b"early bird")],
        )
        .await?;
    assert_eq!(bytes_of(&single(out)?)?, b"early bird");

    // The same from the host: complete first, await afterwards.
    let id = promise_from_val(&single(
        executor.invoke(&worker, "new-promise", vec![]).await?,
    )?)?;
    assert!(
        executor
            .complete_promise(&id, b"host first".to_vec())
            .await?
    );
    let out = executor
        .invoke(&worker, "await-payload", vec![promise_val(&id)])
        .await?;
    assert_eq!(bytes_of(&single(out)?)?, b"host first");
    Ok(())
}

#[tokio::test]
async fn first_completion_wins() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "twice").await?;
    let out = executor
        .invoke(
            &worker,
            "double-complete",
            vec![bytes_val(b"one"), bytes_val(b"two")],
        )
        .await?;
    assert_eq!(
        out,
        vec![Val::Tuple(vec![
            Val::Bool(true),
            Val::Bool(false),
            bytes_val(b"one")
        ])]
    );

    let call = executor
        .submit(&worker, Invocation::new("create-and-await", vec![]))
        .await?;
    let parked = parked_on(&executor, &worker).await?;
    assert!(
        executor
            .complete_promise(&parked.id, b"first".to_vec())
            .await?
    );
    assert!(
        !executor
            .complete_promise(&parked.id, b"second".to_vec())
            .await?
    );
    assert_eq!(bytes_of(&single(call.result().await?)?)?, b"first");
    let completed = executor
        .promises(PromiseFilter {
            status: Some(PromiseStatus::Completed),
            worker: Some(worker.clone()),
            ..PromiseFilter::default()
        })
        .await?;
    assert!(
        completed
            .iter()
            .any(|p| p.id == parked.id && p.completed_at.is_some())
    );
    Ok(())
}

#[tokio::test]
async fn awaiting_a_deleted_promise_traps_instead_of_hanging() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "deleter").await?;
    let err = executor
        .invoke(&worker, "delete-then-await", vec![])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("trapped"), "{err}");
    assert!(
        err.contains(&format!(
            "await-promise: promise {component}/deleter/3 not found"
        )),
        "{err}"
    );
    assert_eq!(executor.worker_status(&worker)?, WorkerStatus::Failed);
    Ok(())
}

#[tokio::test]
async fn deleting_a_promise_someone_awaits_fails_that_await() -> Result<()> {
    let (executor, component) = harness().await?;
    let waiter = start(&executor, component, "waiter").await?;
    let deleter = start(&executor, component, "deleter").await?;
    let call = executor
        .submit(&waiter, Invocation::new("create-and-await", vec![]))
        .await?;
    let parked = parked_on(&executor, &waiter).await?;
    executor
        .invoke(&deleter, "delete", vec![promise_val(&parked.id)])
        .await?;
    let err = call
        .result()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(&format!("promise {} was deleted while awaited", parked.id)),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_promises_are_errors_for_the_host_and_traps_for_guests() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "w").await?;
    let unknown: PromiseId = format!("{component}/w/999").parse()?;
    match executor.complete_promise(&unknown, b"x".to_vec()).await {
        Err(Error::PromiseNotFound(id)) => assert_eq!(id, unknown),
        other => anyhow::bail!("expected PromiseNotFound, got {other:?}"),
    }
    let err = executor
        .invoke(
            &worker,
            "complete",
            vec![promise_val(&unknown), bytes_val(b"x")],
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(&format!("complete-promise: promise {unknown} not found")),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn promise_ids_carry_the_oplog_index_of_their_creation() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "indexed").await?;
    let first = promise_from_val(&single(
        executor.invoke(&worker, "new-promise", vec![]).await?,
    )?)?;
    // 1: worker created, 2: invocation started, 3: create-promise.
    assert_eq!(first.oplog_idx, 3);
    assert_eq!(first.worker_id, worker);
    let second = promise_from_val(&single(
        executor.invoke(&worker, "new-promise", vec![]).await?,
    )?)?;
    // 4: invocation finished, 5: started, 6: create-promise.
    assert_eq!(second.oplog_idx, 6);
    let log = executor.worker_oplog(&worker, 1, 100_000).await?;
    for idx in [first.oplog_idx, second.oplog_idx] {
        let record = &log[(idx - 1) as usize];
        assert_eq!(record.index, idx);
        assert_eq!(record.entry, OplogEntry::CreatePromise);
    }
    Ok(())
}
