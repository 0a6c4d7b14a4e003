//! Workers: names, mailbox order, idempotency, arguments, environment,
//! captured output, deletion and argument checking.

use anyhow::Result;
use vow_runtime::{Error, Invocation, OplogEntry, Val, WorkerConfig, WorkerStatus};

use crate::support::*;

#[tokio::test]
async fn worker_names_are_unique_and_checked() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "only-one").await?;
    match start(&executor, component, "only-one").await {
        Err(e) => assert_eq!(e.to_string(), format!("worker {worker} already exists")),
        Ok(_) => anyhow::bail!("duplicate name accepted"),
    }
    match start(&executor, component, "a/b").await {
        Err(e) => assert_eq!(
            e.to_string(),
            "invalid worker name \"a/b\": it contains '/'"
        ),
        Ok(_) => anyhow::bail!("name with '/' accepted"),
    }
    Ok(())
}

#[tokio::test]
async fn invocations_queue_behind_a_parked_one_and_run_in_order() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "queue").await?;
    let parked_call = executor
        .submit(&worker, Invocation::new("create-and-await", vec![]))
        .await?;
    let parked = parked_on(&executor, &worker).await?;
    let mut queued = Vec::new();
    for i in 0..3 {
        queued.push(
            executor
                .submit(
                    &worker,
                    Invocation::new(
                        "print",
                        vec![
                            Val::String(format!("job {i}\n")),
                            Val::String(String::new()),
                        ],
                    ),
                )
                .await?,
        );
    }
    let meta = executor.worker_metadata(&worker)?;
    assert_eq!(meta.status, WorkerStatus::Suspended);
    assert_eq!(meta.pending_invocations, 3);
    executor
        .complete_promise(&parked.id, b"go".to_vec())
        .await?;
    assert_eq!(bytes_of(&single(parked_call.result().await?)?)?, b"go");
    for call in queued {
        call.result().await?;
    }
    let stdout = String::from_utf8(executor.worker_output(&worker)?.stdout)?;
    assert_eq!(
        stdout,
        format!("waiting on {}\njob 0\njob 1\njob 2\n", parked.id)
    );
    assert_eq!(executor.worker_metadata(&worker)?.pending_invocations, 0);
    Ok(())
}

#[tokio::test]
async fn enqueued_invocations_run_without_anyone_waiting() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "fire").await?;
    let print = |text: &str| {
        Invocation::new(
            "print",
            vec![Val::String(text.into()), Val::String(String::new())],
        )
    };
    executor.enqueue(&worker, print("first\n")).await?;
    executor.enqueue(&worker, print("second\n")).await?;
    let stdout = eventually("both prints", || async {
        let out = executor.worker_output(&worker).ok()?.stdout;
        (out.len() == "first\nsecond\n".len()).then_some(out)
    })
    .await?;
    assert_eq!(stdout, b"first\nsecond\n");
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_runs_the_invocation_once() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "once").await?;
    let invocation = Invocation::new("ping", vec![Val::U32(7)]).with_idempotency_key("req-1");
    let first = executor.submit(&worker, invocation.clone()).await?;
    let second = executor.submit(&worker, invocation).await?;
    assert!(first.fresh);
    assert!(!second.fresh);
    assert_eq!(first.result().await?, vec![Val::U32(8)]);
    assert_eq!(second.result().await?, vec![Val::U32(8)]);
    let started = executor
        .worker_oplog(&worker, 1, 100_000)
        .await?
        .into_iter()
        .filter(|r| matches!(r.entry, OplogEntry::InvocationStarted { .. }))
        .count();
    assert_eq!(started, 1);
    Ok(())
}

#[tokio::test]
async fn args_env_and_output_belong_to_each_worker() -> Result<()> {
    let (executor, component) = harness().await?;
    let config = WorkerConfig {
        args: vec!["--mode".into(), "strict".into()],
        env: vec![
            ("REGION".into(), "eu".into()),
            ("TIER".into(), "gold".into()),
        ],
    };
    let configured = executor
        .start_worker(component, "configured", config)
        .await?;
    let plain = start(&executor, component, "plain").await?;
    assert_eq!(
        executor.invoke(&configured, "get-args", vec![]).await?,
        vec![Val::List(vec![
            Val::String("--mode".into()),
            Val::String("strict".into())
        ])]
    );
    let pair = |k: &str, v: &str| Val::Tuple(vec![Val::String(k.into()), Val::String(v.into())]);
    assert_eq!(
        executor.invoke(&configured, "get-env", vec![]).await?,
        vec![Val::List(vec![pair("REGION", "eu"), pair("TIER", "gold")])]
    );
    assert_eq!(
        executor.invoke(&plain, "get-env", vec![]).await?,
        vec![Val::List(vec![])]
    );
    let print = |out: &str, err: &str| vec![Val::String(out.into()), Val::String(err.into())];
    executor
        .invoke(&configured, "print", print("to out\n", "to err\n"))
        .await?;
    executor
        .invoke(&plain, "print", print("plain out\n", ""))
        .await?;
    let out = executor.worker_output(&configured)?;
    assert_eq!(out.stdout, b"to out\n");
    assert_eq!(out.stderr, b"to err\n");
    assert_eq!(executor.worker_output(&plain)?.stdout, b"plain out\n");
    Ok(())
}

#[tokio::test]
async fn deleting_a_parked_worker_fails_its_invocation_and_drops_its_promises() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "doomed").await?;
    let call = executor
        .submit(&worker, Invocation::new("create-and-await", vec![]))
        .await?;
    let parked = parked_on(&executor, &worker).await?;
    executor.delete_worker(&worker)?;
    assert!(matches!(call.result().await, Err(Error::WorkerDeleted(_))));
    assert!(matches!(
        executor
            .complete_promise(&parked.id, b"late".to_vec())
            .await,
        Err(Error::PromiseNotFound(_))
    ));
    assert!(matches!(
        executor.worker_status(&worker),
        Err(Error::WorkerNotFound(_))
    ));
    // The name is free again.
    start(&executor, component, "doomed").await?;
    Ok(())
}

#[tokio::test]
async fn wrong_functions_and_arguments_are_refused_before_running() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "strict").await?;
    let err = executor.invoke(&worker, "no-such", vec![]).await.err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some(format!(
            "component {component} exports no function \"no-such\""
        ))
    );
    let err = executor.invoke(&worker, "ping", vec![]).await.err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("invalid arguments for ping: expected 1 argument(s), got 0".into())
    );
    let err = executor
        .invoke(&worker, "ping", vec![Val::String("1".into())])
        .await
        .err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("invalid arguments for ping: n: expected u32, got string".into())
    );
    let mut bad_id = promise_val(&format!("{component}/strict/1").parse()?);
    if let Val::Record(fields) = &mut bad_id {
        fields[1].1 = Val::S64(1);
    }
    let err = executor
        .invoke(&worker, "await-payload", vec![bad_id])
        .await
        .err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("invalid arguments for await-payload: id.oplog-idx: expected u64, got s64".into())
    );
    // Nothing ran: the worker is still idle and usable.
    assert_eq!(executor.worker_status(&worker)?, WorkerStatus::Idle);
    assert_eq!(
        executor.invoke(&worker, "ping", vec![Val::U32(1)]).await?,
        vec![Val::U32(2)]
    );
    Ok(())
}

#[tokio::test]
async fn a_full_queue_refuses_more_and_stores_nothing() -> anyhow::Result<()> {
    let (executor, component) = executor_with(builder().max_queued(2), "harness").await?;
    let worker = start(&executor, component, "busy").await?;
    // One invocation parks; two more wait behind it, the limit.
    let parked = executor
        .submit(&worker, Invocation::new("create-and-await", vec![]))
        .await?;
    let promise = parked_on(&executor, &worker).await?;
    let mut queued = Vec::new();
    for n in 0..2 {
        queued.push(
            executor
                .submit(&worker, Invocation::new("ping", vec![Val::U32(n)]))
                .await?,
        );
    }
    let refused = executor
        .submit(&worker, Invocation::new("ping", vec![Val::U32(9)]))
        .await;
    match refused {
        Err(vow_runtime::Error::QueueFull { limit, .. }) => assert_eq!(limit, 2),
        other => anyhow::bail!("expected QueueFull, got {:?}", other.map(|_| ())),
    }
    assert!(
        executor
            .complete_promise(&promise.id, b"go".to_vec())
            .await?
    );
    parked.result().await?;
    for (n, call) in queued.into_iter().enumerate() {
        assert_eq!(call.result().await?, vec![Val::U32(n as u32 + 1)]);
    }
    // The refused one was never stored: the log holds three invocations.
    let started = executor
        .worker_oplog(&worker, 1, 1000)
        .await?
        .into_iter()
        .filter(|r| matches!(r.entry, vow_runtime::OplogEntry::InvocationStarted { .. }))
        .count();
    assert_eq!(started, 3);
    Ok(())
}
