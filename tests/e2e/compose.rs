//! `when`, `then`, `all` and `any` (`vow:host/promises`) through the
//! harness guest: work in new workers settles promises, rejections flow
//! down chains, the host combines settlements, and reactions whose source
//! settled before a restart fire once after it.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use vow_runtime::vow_store::{self, Storage as _};
use vow_runtime::{
    ErrorKind, Executor, OplogEntry, PromiseError, PromiseId, PromiseStatus, Settlement, Val,
    WorkerId, WorkerStatus,
};

use crate::support::*;

fn options(timeout_ms: Option<u64>) -> Val {
    Val::Record(vec![
        (
            "timeout-ms".to_owned(),
            Val::Option(timeout_ms.map(|n| Box::new(Val::U64(n)))),
        ),
        ("retention-ms".to_owned(), Val::Option(None)),
        ("payload-type".to_owned(), Val::Option(None)),
    ])
}

fn none() -> Val {
    options(None)
}

/// The promise a `start-*` export made, or its error.
fn made(results: Vec<Val>) -> Result<std::result::Result<PromiseId, String>> {
    match single(results)? {
        Val::Result(Ok(Some(id))) => Ok(Ok(promise_from_val(&id)?)),
        Val::Result(Err(Some(error))) => match *error {
            Val::String(message) => Ok(Err(message)),
            other => bail!("expected an error message, got {other:?}"),
        },
        other => bail!("expected result<promise-id, string>, got {other:?}"),
    }
}

async fn start_when(
    executor: &Executor,
    worker: &WorkerId,
    function: &str,
    input: &[u8],
    timeout_ms: Option<u64>,
) -> Result<PromiseId> {
    let args = vec![
        Val::String(function.to_owned()),
        bytes_val(input),
        options(timeout_ms),
    ];
    made(executor.invoke(worker, "start-when", args).await?)?.map_err(|e| anyhow!(e))
}

async fn start_then(
    executor: &Executor,
    worker: &WorkerId,
    source: &PromiseId,
    function: &str,
) -> Result<PromiseId> {
    let args = vec![
        promise_val(source),
        Val::String(function.to_owned()),
        none(),
    ];
    made(executor.invoke(worker, "start-then", args).await?)?.map_err(|e| anyhow!(e))
}

async fn combine(
    executor: &Executor,
    worker: &WorkerId,
    which: &str,
    ids: &[PromiseId],
) -> Result<std::result::Result<PromiseId, String>> {
    let ids = Val::List(ids.iter().map(promise_val).collect());
    made(executor.invoke(worker, which, vec![ids, none()]).await?)
}

/// Waits until the promise settles; its settlement.
async fn settled(executor: &Executor, id: &PromiseId) -> Result<Settlement> {
    eventually(&format!("{id} to settle"), || async {
        executor.promise(id).await.ok()?.1
    })
    .await
}

fn payload(bytes: &[u8]) -> Settlement {
    Ok(bytes.to_vec().into())
}

#[tokio::test]
async fn when_runs_an_export_in_a_new_worker_and_settles_by_its_result() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let doubled = start_when(&executor, &caller, "double", b"ab", None).await?;
    assert_eq!(doubled.worker_id, caller, "the caller owns the promise");
    assert_eq!(settled(&executor, &doubled).await?, payload(b"abab"));

    let refused = start_when(&executor, &caller, "refuse", b"xy", None).await?;
    assert_eq!(
        settled(&executor, &refused).await?,
        Err(PromiseError::rejected("refused xy"))
    );
    let crashed = start_when(&executor, &caller, "crash", b"", None).await?;
    let Err(error) = settled(&executor, &crashed).await? else {
        bail!("a trap fulfilled the promise");
    };
    assert_eq!(error.kind, ErrorKind::Failed);
    assert!(
        error.message.starts_with("invocation of crash on worker ")
            && error.message.contains("trapped"),
        "{}",
        error.message
    );
    // The work ran in workers of their own, named after the promise; the
    // crash failed only its own.
    let workers = executor.workers(Some(component));
    let spawned: Vec<_> = workers
        .iter()
        .filter(|w| w.id.worker_name.starts_with("when-"))
        .collect();
    assert_eq!(spawned.len(), 3, "{workers:?}");
    assert_eq!(
        spawned
            .iter()
            .filter(|w| w.status == WorkerStatus::Failed)
            .count(),
        1
    );
    assert_eq!(executor.worker_status(&caller)?, WorkerStatus::Idle);
    Ok(())
}

#[tokio::test]
async fn when_refuses_what_cannot_settle_a_promise() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let error = |function: &str| {
        let executor = &executor;
        let caller = &caller;
        let function = function.to_owned();
        async move {
            let args = vec![Val::String(function), bytes_val(b""), none()];
            made(executor.invoke(caller, "start-when", args).await?)
        }
    };
    assert_eq!(
        error("nope").await?,
        Err(format!(
            "component {component} has no export named \"nope\""
        ))
    );
    assert_eq!(
        error("unfit").await?,
        Err(format!(
            "unfit of component {component} cannot settle a promise: it must take one parameter, list<u8> (the input)"
        ))
    );
    assert_eq!(
        error("recover").await?,
        Err(format!(
            "recover of component {component} cannot settle a promise: it must take one parameter, list<u8> (the input)"
        )),
        "a settlement handler is for then, not when"
    );
    let elsewhere = vow_runtime::ComponentId::from_u64_pair(1, 2);
    let args = vec![
        component_val(elsewhere),
        Val::String("double".into()),
        bytes_val(b""),
    ];
    assert_eq!(
        made(executor.invoke(&caller, "start-when-in", args).await?)?,
        Err(format!("component {elsewhere} not found"))
    );
    // The same component named explicitly works.
    let args = vec![
        component_val(component),
        Val::String("double".into()),
        bytes_val(b"z"),
    ];
    let id =
        made(executor.invoke(&caller, "start-when-in", args).await?)?.map_err(|e| anyhow!(e))?;
    assert_eq!(settled(&executor, &id).await?, payload(b"zz"));
    // A failed call made no promise, and replay answers it the same.
    let entries = executor.worker_oplog(&caller, 1, 1000).await?;
    let failed = entries
        .iter()
        .filter(|r| matches!(&r.entry, OplogEntry::Compose { error: Some(_), .. }))
        .count();
    assert_eq!(failed, 4);
    Ok(())
}

#[tokio::test]
async fn rejections_flow_down_a_chain_to_a_handler_of_settlements() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let refused = start_when(&executor, &caller, "refuse", b"x", None).await?;
    let skipped = start_then(&executor, &caller, &refused, "inc").await?;
    let handled = start_then(&executor, &caller, &skipped, "recover").await?;
    assert_eq!(
        settled(&executor, &handled).await?,
        payload(b"handled rejected: refused x")
    );
    assert_eq!(
        settled(&executor, &skipped).await?,
        Err(PromiseError::rejected("refused x")),
        "a handler of payloads is passed over; the rejection goes on"
    );
    let then_workers = executor
        .workers(Some(component))
        .into_iter()
        .filter(|w| w.id.worker_name.starts_with("then-"))
        .count();
    assert_eq!(then_workers, 1, "only recover ran");

    // Fulfilled: each handler gets the payload.
    let start = start_when(&executor, &caller, "double", b"a", None).await?;
    let upper = start_then(&executor, &caller, &start, "recover").await?;
    assert_eq!(settled(&executor, &upper).await?, payload(b"AA"));
    Ok(())
}

#[tokio::test]
async fn a_timeout_reaches_the_successors() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let deferred = start_when(&executor, &caller, "defer", b"", Some(200)).await?;
    let handled = start_then(&executor, &caller, &deferred, "recover").await?;
    let expected = format!(
        "handled timed-out: promise {deferred} was not settled within its timeout of 200ms"
    );
    assert_eq!(
        settled(&executor, &handled).await?,
        payload(expected.as_bytes())
    );
    Ok(())
}

#[tokio::test]
async fn a_function_may_leave_its_promise_to_be_settled_later() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let deferred = start_when(&executor, &caller, "defer", b"", None).await?;
    let worker = eventually("the when worker to finish", || async {
        executor
            .workers(Some(component))
            .into_iter()
            .find(|w| w.id.worker_name.starts_with("when-") && w.status == WorkerStatus::Idle)
    })
    .await?;
    let printed = String::from_utf8(executor.worker_output(&worker.id)?.stdout)?;
    assert_eq!(
        printed,
        format!("deferred {deferred}\n"),
        "current names the promise"
    );
    assert_eq!(
        executor.promise(&deferred).await?.0.status,
        PromiseStatus::Pending
    );
    assert!(
        executor
            .complete_promise(&deferred, b"later".to_vec())
            .await?
    );
    assert_eq!(settled(&executor, &deferred).await?, payload(b"later"));
    Ok(())
}

#[tokio::test]
async fn all_and_any_are_evaluated_by_the_host() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let a = start_when(&executor, &caller, "double", b"a", None).await?;
    let b = start_when(&executor, &caller, "double", b"", None).await?;
    let no = start_when(&executor, &caller, "refuse", b"n", None).await?;

    let all = combine(&executor, &caller, "start-all", &[a.clone(), b.clone()]).await?;
    let all = all.map_err(|e| anyhow!(e))?;
    assert_eq!(
        settled(&executor, &all).await?,
        payload(b"\x02\x00\x00\x00aa\x00\x00\x00\x00")
    );
    let failing = combine(&executor, &caller, "start-all", &[a.clone(), no.clone()]).await?;
    assert_eq!(
        settled(&executor, &failing.map_err(|e| anyhow!(e))?).await?,
        Err(PromiseError::rejected("refused n"))
    );
    let empty = combine(&executor, &caller, "start-all", &[]).await?;
    assert_eq!(
        settled(&executor, &empty.map_err(|e| anyhow!(e))?).await?,
        payload(b"")
    );

    let any = combine(&executor, &caller, "start-any", &[no.clone(), a.clone()]).await?;
    assert_eq!(
        settled(&executor, &any.map_err(|e| anyhow!(e))?).await?,
        payload(b"aa")
    );
    let none_ok = combine(&executor, &caller, "start-any", &[no.clone(), no.clone()]).await?;
    assert_eq!(
        settled(&executor, &none_ok.map_err(|e| anyhow!(e))?).await?,
        Err(PromiseError::rejected(
            "all 2 promises were rejected; the first: refused n"
        ))
    );
    assert_eq!(
        combine(&executor, &caller, "start-any", &[]).await?,
        Err("any needs at least one promise".to_owned())
    );
    // A source that does not exist rejects the combination.
    let ghost = PromiseId {
        worker_id: caller.clone(),
        oplog_idx: 9_999,
    };
    let missing = combine(
        &executor,
        &caller,
        "start-all",
        std::slice::from_ref(&ghost),
    )
    .await?;
    let Err(error) = settled(&executor, &missing.map_err(|e| anyhow!(e))?).await? else {
        bail!("all over a missing promise was fulfilled");
    };
    assert_eq!(
        error.message,
        format!("promise {ghost} does not exist (never created, or deleted)")
    );
    Ok(())
}

#[tokio::test]
async fn a_chain_of_100_thens_and_a_fan_out_of_1000_whens() -> Result<()> {
    let (executor, component) = harness().await?;
    let caller = start(&executor, component, "caller").await?;
    let chained = single(
        executor
            .invoke(&caller, "chain", vec![Val::U32(100)])
            .await?,
    )?;
    assert_eq!(chained, Val::Result(Ok(Some(Box::new(bytes_val(&[101]))))));
    let fanned = single(
        executor
            .invoke(&caller, "fan-out", vec![Val::U32(1000)])
            .await?,
    )?;
    assert_eq!(
        fanned,
        Val::Result(Ok(Some(Box::new(bytes_val(b"1000 payloads, 2000 bytes")))))
    );
    Ok(())
}

#[tokio::test]
async fn a_then_whose_source_settled_before_a_crash_runs_once_after_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let open = || builder().data_dir(dir.path()).open();
    let (source, target);
    {
        let executor = open().await?;
        let component = harness_in(&executor).await?;
        let caller = start(&executor, component, "caller").await?;
        source = promise_from_val(&single(
            executor.invoke(&caller, "vow-create", vec![none()]).await?,
        )?)?;
        target = start_then(&executor, &caller, &source, "recover").await?;
    }
    // The source settles in the store, as if the crash came between its
    // settlement and the continuation's start.
    {
        // Off the async thread, as opening blocks: it waits for the
        // executor's tasks, aborted as it was dropped, to let go of the
        // store (which needs this thread on a current-thread runtime).
        let path = dir.path().join(vow_runtime::DATABASE_FILE);
        let storage = tokio::task::spawn_blocking(move || {
            vow_store_sqlite::SqliteStorage::open(&path, vow_store_sqlite::SqliteOptions::default())
        })
        .await??;
        let outcome = storage
            .write(vec![vow_store::Write::CompletePromise {
                key: vow_store::PromiseKey {
                    worker: vow_store::WorkerKey {
                        component: source.worker_id.component_id.0,
                        name: source.worker_id.worker_name.clone(),
                    },
                    index: source.oplog_idx,
                },
                data: b"late".to_vec().into(),
                at: vow_store::now_millis(),
            }])
            .await?;
        assert_eq!(outcome, vec![vow_store::Outcome::Completed(true)]);
        assert_eq!(storage.reactions().await?.len(), 1);
    }
    for round in 0..2 {
        let executor = open().await?;
        assert_eq!(
            settled(&executor, &target).await?,
            payload(b"LATE"),
            "round {round}"
        );
        let continuations: Vec<_> = executor
            .workers(None)
            .into_iter()
            .filter(|w| w.id.worker_name.starts_with("then-"))
            .collect();
        assert_eq!(continuations.len(), 1, "round {round}: {continuations:?}");
        let started = executor
            .worker_oplog(&continuations[0].id, 1, 100)
            .await?
            .into_iter()
            .filter(|r| matches!(r.entry, OplogEntry::InvocationStarted { .. }))
            .count();
        assert_eq!(started, 1, "round {round}: the continuation ran once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn the_wordcount_example_maps_counts_and_reports_with_a_timed_out_line() -> Result<()> {
    let (executor, component) = executor_with(builder(), "wordcount").await?;
    let worker = start(&executor, component, "counter").await?;
    let text = "the quick brown fox\njumps over\n!stall this line\nthe lazy dog";
    let report = single(
        executor
            .invoke(
                &worker,
                "run",
                vec![Val::String(text.to_owned()), Val::U64(300)],
            )
            .await?,
    )?;
    let Val::Result(Ok(Some(report))) = report else {
        bail!("run failed: {report:?}");
    };
    let Val::String(report) = *report else {
        bail!("the report is not a string");
    };
    // The stalled line's promise is the third `when` of the first
    // invocation: its index is that call's in the worker's log.
    let stalled = executor
        .promises(vow_runtime::PromiseFilter {
            status: Some(PromiseStatus::TimedOut),
            worker: Some(worker.clone()),
            ..vow_runtime::PromiseFilter::default()
        })
        .await?;
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(
        report,
        format!(
            "3 of 4 lines counted, 9 words; line 3: timed out: promise {} was not settled within its timeout of 300ms",
            stalled[0].id
        )
    );
    Ok(())
}
