//! `vow:host/promises`: rejection, timeouts, retention, `poll`, and one
//! guest waiting on many promises, through real guests; and Golem's
//! `await-promise` on a rejected promise.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use rand::seq::SliceRandom as _;
use vow_runtime::{
    ErrorKind, Invocation, PromiseFilter, PromiseId, PromiseStatus, Val, WorkerStatus,
};

use crate::support::*;

fn options(timeout_ms: Option<u64>, retention_ms: Option<u64>) -> Val {
    typed_options(timeout_ms, retention_ms, None)
}

fn typed_options(
    timeout_ms: Option<u64>,
    retention_ms: Option<u64>,
    payload_type: Option<&str>,
) -> Val {
    let opt = |v: Option<u64>| Val::Option(v.map(|n| Box::new(Val::U64(n))));
    Val::Record(vec![
        ("timeout-ms".to_owned(), opt(timeout_ms)),
        ("retention-ms".to_owned(), opt(retention_ms)),
        (
            "payload-type".to_owned(),
            Val::Option(payload_type.map(|t| Box::new(Val::String(t.to_owned())))),
        ),
    ])
}

/// A settlement as the guest returned it: the payload, or (kind, message,
/// data).
type Seen = std::result::Result<Vec<u8>, (String, String, Vec<u8>)>;

fn settlement_of(val: &Val) -> Result<Seen> {
    match val {
        Val::Result(Ok(Some(payload))) => Ok(Ok(bytes_of(payload)?)),
        Val::Result(Err(Some(error))) => {
            let Val::Enum(kind) = field(error, "kind")? else {
                bail!("kind is not an enum: {error:?}");
            };
            let Val::String(message) = field(error, "message")? else {
                bail!("message is not a string: {error:?}");
            };
            Ok(Err((
                kind.clone(),
                message.clone(),
                bytes_of(field(error, "data")?)?,
            )))
        }
        other => Err(anyhow!("expected a settlement, got {other:?}")),
    }
}

async fn create(
    executor: &vow_runtime::Executor,
    worker: &vow_runtime::WorkerId,
    timeout_ms: Option<u64>,
    retention_ms: Option<u64>,
) -> Result<PromiseId> {
    let id = single(
        executor
            .invoke(
                worker,
                "vow-create",
                vec![options(timeout_ms, retention_ms)],
            )
            .await?,
    )?;
    promise_from_val(&id)
}

#[tokio::test]
async fn a_rejection_reaches_wait_and_fails_golems_await() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "rejected").await?;
    let id = create(&executor, &worker, None, None).await?;
    let call = executor
        .submit(&worker, Invocation::new("vow-wait", vec![promise_val(&id)]))
        .await?;
    parked_on(&executor, &worker).await?;
    assert!(
        executor
            .reject_promise(&id, "the approver said no", vec![7])
            .await?
    );
    assert!(!executor.complete_promise(&id, b"late".to_vec()).await?);
    let seen = settlement_of(&single(call.result().await?)?)?;
    assert_eq!(
        seen,
        Err((
            "rejected".to_owned(),
            "the approver said no".to_owned(),
            vec![7]
        ))
    );
    // Golem's await-promise cannot return an error: the invocation fails,
    // naming the promise and the error.
    let error = executor
        .invoke(&worker, "await-payload", vec![promise_val(&id)])
        .await
        .err()
        .ok_or_else(|| anyhow!("await-promise on a rejected promise returned"))?;
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "await-promise: promise {id} was rejected: the approver said no"
        )),
        "{text}"
    );
    assert_eq!(executor.worker_status(&worker)?, WorkerStatus::Failed);
    Ok(())
}

#[tokio::test]
async fn a_guest_rejects_and_the_first_settlement_wins() -> Result<()> {
    let (executor, component) = harness().await?;
    let owner = start(&executor, component, "owner").await?;
    let other = start(&executor, component, "other").await?;
    let id = create(&executor, &owner, None, None).await?;
    let reject = |message: &str| {
        vec![
            promise_val(&id),
            Val::String(message.to_owned()),
            bytes_val(b"why"),
        ]
    };
    assert_eq!(
        executor.invoke(&other, "vow-reject", reject("no")).await?,
        vec![Val::Bool(true)]
    );
    assert_eq!(
        executor
            .invoke(&other, "vow-reject", reject("again"))
            .await?,
        vec![Val::Bool(false)]
    );
    assert_eq!(
        executor
            .invoke(&owner, "complete", vec![promise_val(&id), bytes_val(b"x")])
            .await?,
        vec![Val::Bool(false)]
    );
    let polled = single(
        executor
            .invoke(&owner, "vow-poll", vec![promise_val(&id)])
            .await?,
    )?;
    let Val::Option(Some(settled)) = polled else {
        bail!("poll of a rejected promise answered {polled:?}");
    };
    assert_eq!(
        settlement_of(&settled)?,
        Err(("rejected".to_owned(), "no".to_owned(), b"why".to_vec()))
    );
    let (info, settlement) = executor.promise(&id).await?;
    assert_eq!(info.status, PromiseStatus::Rejected);
    assert_eq!(
        settlement.and_then(|s| s.err()).map(|e| e.kind),
        Some(ErrorKind::Rejected)
    );
    Ok(())
}

#[tokio::test]
async fn a_timeout_rejects_the_promise_and_wakes_its_waiter() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "timer").await?;
    let id = create(&executor, &worker, Some(300), None).await?;
    let polled = single(
        executor
            .invoke(&worker, "vow-poll", vec![promise_val(&id)])
            .await?,
    )?;
    assert_eq!(polled, Val::Option(None), "pending until the timeout");
    let seen = settlement_of(&single(
        executor
            .invoke(&worker, "vow-wait", vec![promise_val(&id)])
            .await?,
    )?)?;
    assert_eq!(
        seen,
        Err((
            "timed-out".to_owned(),
            format!("promise {id} was not settled within its timeout of 300ms"),
            vec![]
        ))
    );
    let timed_out = executor
        .promises(PromiseFilter {
            status: Some(PromiseStatus::TimedOut),
            worker: Some(worker.clone()),
            ..PromiseFilter::default()
        })
        .await?;
    assert_eq!(timed_out.len(), 1);
    assert!(!executor.complete_promise(&id, b"late".to_vec()).await?);
    Ok(())
}

#[tokio::test]
async fn a_settled_promise_goes_away_after_its_retention() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "keeper").await?;
    let kept = create(&executor, &worker, None, Some(200)).await?;
    let forever = create(&executor, &worker, None, None).await?;
    assert!(executor.complete_promise(&kept, b"x".to_vec()).await?);
    assert!(executor.complete_promise(&forever, b"y".to_vec()).await?);
    eventually("the retained promise to go", || async {
        executor.promise(&kept).await.is_err().then_some(())
    })
    .await?;
    let error = executor
        .invoke(&worker, "vow-wait", vec![promise_val(&kept)])
        .await
        .err()
        .ok_or_else(|| anyhow!("waiting on a deleted promise returned"))?;
    assert!(
        error
            .to_string()
            .contains(&format!("wait: promise {kept} not found")),
        "{error}"
    );
    assert_eq!(
        executor.promise(&forever).await?.0.status,
        PromiseStatus::Completed
    );
    Ok(())
}

#[tokio::test]
async fn wait_any_answers_the_first_settlement_or_the_timeout() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "any").await?;
    let call = executor
        .submit(
            &worker,
            Invocation::new("first-of", vec![Val::U32(5), Val::Option(None)]),
        )
        .await?;
    let pending = suspended_with_pending(&executor, &worker, 5).await?;
    assert!(
        executor
            .complete_promise(&pending[3].id, b"fourth".to_vec())
            .await?
    );
    let answer = single(call.result().await?)?;
    let Val::Option(Some(pair)) = answer else {
        bail!("wait-any answered {answer:?}");
    };
    let Val::Tuple(pair) = *pair else {
        bail!("expected a tuple");
    };
    assert_eq!(pair[0], Val::U32(3));
    assert_eq!(settlement_of(&pair[1])?, Ok(b"fourth".to_vec()));

    let answer = single(
        executor
            .invoke(
                &worker,
                "first-of",
                vec![Val::U32(2), Val::Option(Some(Box::new(Val::U64(100))))],
            )
            .await?,
    )?;
    assert_eq!(answer, Val::Option(None), "nothing settled within 100 ms");
    Ok(())
}

#[tokio::test]
async fn one_guest_waits_for_200_promises_completed_in_random_order() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "gatherer").await?;
    let call = executor
        .submit(
            &worker,
            Invocation::new("gather", vec![Val::U32(200), Val::Option(None)]),
        )
        .await?;
    let mut pending = suspended_with_pending(&executor, &worker, 200).await?;
    pending.shuffle(&mut rand::rng());
    for promise in &pending {
        let payload = promise.id.oplog_idx.to_le_bytes().to_vec();
        assert!(executor.complete_promise(&promise.id, payload).await?);
    }
    let answer = single(call.result().await?)?;
    let Val::Option(Some(all)) = answer else {
        bail!("wait-all answered {answer:?}");
    };
    let Val::List(all) = *all else {
        bail!("expected a list");
    };
    assert_eq!(all.len(), 200);
    // In the order the guest created them: its promises' indices ascend.
    let mut indices: Vec<u64> = pending.iter().map(|p| p.id.oplog_idx).collect();
    indices.sort_unstable();
    for (settled, index) in all.iter().zip(indices) {
        assert_eq!(settlement_of(settled)?, Ok(index.to_le_bytes().to_vec()));
    }
    Ok(())
}

#[tokio::test]
async fn wait_all_times_out_with_none() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "patient").await?;
    let started = std::time::Instant::now();
    let answer = single(
        executor
            .invoke(
                &worker,
                "gather",
                vec![Val::U32(3), Val::Option(Some(Box::new(Val::U64(150))))],
            )
            .await?,
    )?;
    assert_eq!(answer, Val::Option(None));
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "wait-all returned before its timeout"
    );
    Ok(())
}

#[tokio::test]
async fn timers_and_waits_survive_a_restart_on_sqlite() -> Result<()> {
    timers_and_waits_survive_a_restart(&Backend::sqlite()?).await
}

#[tokio::test]
async fn timers_and_waits_survive_a_restart_on_postgres() -> Result<()> {
    match Backend::postgres()? {
        Some(backend) => timers_and_waits_survive_a_restart(&backend).await,
        None => Ok(()),
    }
}

/// A timeout that falls due while the runtime is down fires once after the
/// restart and reaches the worker that waited; a worker waiting on several
/// promises, some settled before the restart, gets every settlement; a
/// `wait-any` deadline is the one fixed before the restart.
async fn timers_and_waits_survive_a_restart(backend: &Backend) -> Result<()> {
    let (timed, gatherer, racer, timer_promise, deadline_before);
    {
        let executor = backend.open().await?;
        let component = harness_in(&executor).await?;
        timed = start(&executor, component, "timed").await?;
        timer_promise = create(&executor, &timed, Some(400), None).await?;
        let waiting = executor
            .submit(
                &timed,
                Invocation::new("vow-wait", vec![promise_val(&timer_promise)])
                    .with_idempotency_key("timed-wait"),
            )
            .await?;
        parked_on(&executor, &timed).await?;
        drop(waiting);

        gatherer = start(&executor, component, "gatherer").await?;
        let gathering = executor
            .submit(
                &gatherer,
                Invocation::new("gather", vec![Val::U32(3), Val::Option(None)])
                    .with_idempotency_key("gather"),
            )
            .await?;
        let pending = suspended_with_pending(&executor, &gatherer, 3).await?;
        assert!(
            executor
                .complete_promise(&pending[1].id, b"one".to_vec())
                .await?
        );
        drop(gathering);

        racer = start(&executor, component, "racer").await?;
        let racing = executor
            .submit(
                &racer,
                Invocation::new(
                    "first-of",
                    vec![Val::U32(2), Val::Option(Some(Box::new(Val::U64(1500))))],
                )
                .with_idempotency_key("race"),
            )
            .await?;
        deadline_before = eventually("the wait-any deadline", || async {
            wait_deadlines(&executor, &racer)
                .await
                .ok()?
                .first()
                .copied()
        })
        .await?;
        drop(racing);
    }
    // Down for longer than the 400 ms timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let executor = backend.open().await?;
    let again = executor
        .submit(
            &timed,
            Invocation::new("vow-wait", vec![promise_val(&timer_promise)])
                .with_idempotency_key("timed-wait"),
        )
        .await?;
    assert!(!again.fresh);
    let seen = settlement_of(&single(again.result().await?)?)?;
    assert!(
        matches!(&seen, Err((kind, _, _)) if kind == "timed-out"),
        "{seen:?}"
    );
    let (info, _) = executor.promise(&timer_promise).await?;
    assert_eq!(info.status, PromiseStatus::TimedOut);

    let pending = executor
        .promises(PromiseFilter {
            worker: Some(gatherer.clone()),
            ..PromiseFilter::pending()
        })
        .await?;
    assert_eq!(pending.len(), 2, "the completion before the restart stays");
    for (i, promise) in pending.iter().enumerate() {
        assert!(
            executor
                .complete_promise(&promise.id, vec![i as u8])
                .await?
        );
    }
    let gathered = executor
        .submit(
            &gatherer,
            Invocation::new("gather", vec![Val::U32(3), Val::Option(None)])
                .with_idempotency_key("gather"),
        )
        .await?;
    let Val::Option(Some(all)) = single(gathered.result().await?)? else {
        bail!("gather timed out");
    };
    let Val::List(all) = *all else {
        bail!("expected a list");
    };
    let seen: Vec<Seen> = all.iter().map(settlement_of).collect::<Result<_>>()?;
    assert_eq!(seen, vec![Ok(vec![0]), Ok(b"one".to_vec()), Ok(vec![1])]);

    let raced = executor
        .submit(
            &racer,
            Invocation::new(
                "first-of",
                vec![Val::U32(2), Val::Option(Some(Box::new(Val::U64(1500))))],
            )
            .with_idempotency_key("race"),
        )
        .await?;
    assert_eq!(single(raced.result().await?)?, Val::Option(None));
    assert_eq!(
        wait_deadlines(&executor, &racer).await?,
        vec![deadline_before],
        "replay kept the deadline fixed before the restart"
    );
    Ok(())
}

/// The `wait-deadline` entries of a worker's log.
async fn wait_deadlines(
    executor: &vow_runtime::Executor,
    worker: &vow_runtime::WorkerId,
) -> Result<Vec<u64>> {
    Ok(executor
        .worker_oplog(worker, 1, 10_000)
        .await?
        .into_iter()
        .filter_map(|r| match r.entry {
            vow_runtime::OplogEntry::WaitDeadline { at } => Some(at),
            _ => None,
        })
        .collect())
}

#[tokio::test]
async fn a_declared_payload_type_checks_completions() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "typed").await?;
    let ty = "record { approved: bool, note: option<string> }";
    let id = promise_from_val(&single(
        executor
            .invoke(
                &worker,
                "vow-create",
                vec![typed_options(None, None, Some(ty))],
            )
            .await?,
    )?)?;
    let info = executor.promise(&id).await?.0;
    assert_eq!(
        info.payload_type.map(|t| t.to_string()).as_deref(),
        Some(ty)
    );

    let wrong = executor
        .complete_promise(&id, br#"{"approved": "yes"}"#.to_vec())
        .await;
    let Err(vow_runtime::Error::InvalidPayload { reason, .. }) = &wrong else {
        bail!("a mistyped completion was taken: {wrong:?}");
    };
    assert_eq!(reason, "approved: expected bool, got string");
    // A guest completing it wrongly traps, naming the place.
    let other = start(&executor, component, "completer").await?;
    let error = executor
        .invoke(
            &other,
            "complete",
            vec![promise_val(&id), bytes_val(b"[1]")],
        )
        .await
        .err()
        .ok_or_else(|| anyhow!("a guest's mistyped completion was taken"))?;
    assert!(
        error.to_string().contains(&format!(
            "complete-promise: the payload of promise {id} is not a {ty}: expected record"
        )),
        "{error}"
    );
    // A right one is kept in canonical form: the missing option is null.
    assert!(
        executor
            .complete_promise(&id, br#"{"approved":true}"#.to_vec())
            .await?
    );
    let seen = settlement_of(&single(
        executor
            .invoke(&worker, "vow-wait", vec![promise_val(&id)])
            .await?,
    )?)?;
    assert_eq!(seen, Ok(br#"{"approved":true,"note":null}"#.to_vec()));

    // A type that is not one traps the creating call, saying where.
    let error = executor
        .invoke(
            &worker,
            "vow-create",
            vec![typed_options(None, None, Some("list<"))],
        )
        .await
        .err()
        .ok_or_else(|| anyhow!("a bad payload type was taken"))?;
    assert!(
        error
            .to_string()
            .contains("create: payload-type \"list<\" is not a WIT type: at 5: "),
        "{error}"
    );
    Ok(())
}

fn promise_list(ids: &[PromiseId]) -> Val {
    Val::List(ids.iter().map(promise_val).collect())
}

fn positions(val: &Val) -> Result<Vec<u32>> {
    match val {
        Val::List(items) => items
            .iter()
            .map(|v| match v {
                Val::U32(n) => Ok(*n),
                other => Err(anyhow!("expected u32, got {other:?}")),
            })
            .collect(),
        other => Err(anyhow!("expected a list, got {other:?}")),
    }
}

#[tokio::test]
async fn a_promise_pollable_composes_with_wasi_poll() -> Result<()> {
    let (executor, component) = harness().await?;
    let worker = start(&executor, component, "poller").await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&executor, &worker, None, None).await?);
    }
    let call = executor
        .submit(
            &worker,
            Invocation::new("poll-sum", vec![promise_list(&ids), Val::U64(600_000)]),
        )
        .await?;
    eventually("the guest to poll", || async {
        let entries = executor.worker_oplog(&worker, 1, 1000).await.ok()?;
        let started = entries
            .iter()
            .filter(|r| matches!(r.entry, vow_runtime::OplogEntry::InvocationStarted { .. }))
            .count();
        (started == 4 && executor.worker_status(&worker).ok()? == WorkerStatus::Running)
            .then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(executor.complete_promise(&ids[1], b"x".to_vec()).await?);
    assert_eq!(positions(&single(call.result().await?)?)?, vec![1]);
    // The timer: nothing else is ready within 100 ms.
    let pending = create(&executor, &worker, None, None).await?;
    let ready = single(
        executor
            .invoke(
                &worker,
                "poll-sum",
                vec![promise_list(std::slice::from_ref(&pending)), Val::U64(100)],
            )
            .await?,
    )?;
    assert_eq!(positions(&ready)?, vec![1], "the timer's position");
    Ok(())
}

#[tokio::test]
async fn replay_sees_the_same_pollables_ready() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let open = || builder().data_dir(dir.path()).open();
    let (worker, pending);
    {
        let executor = open().await?;
        let component = harness_in(&executor).await?;
        worker = start(&executor, component, "poller").await?;
        pending = create(&executor, &worker, None, None).await?;
        // Live, only the timer (position 1) is ready: the counter gets 2.
        let ready = single(
            executor
                .invoke(
                    &worker,
                    "poll-sum",
                    vec![promise_list(std::slice::from_ref(&pending)), Val::U64(50)],
                )
                .await?,
        )?;
        assert_eq!(positions(&ready)?, vec![1]);
        // Now the promise is ready too; a live poll would see it first.
        assert!(executor.complete_promise(&pending, b"x".to_vec()).await?);
    }
    let executor = open().await?;
    // Rebuilt by replay: the recorded poll answers, so the counter is 2
    // again and increment makes it 3 (a live poll would have given 1).
    assert_eq!(
        single(executor.invoke(&worker, "increment", vec![]).await?)?,
        Val::U64(3)
    );
    let polls = executor
        .worker_oplog(&worker, 1, 1000)
        .await?
        .into_iter()
        .filter(|r| matches!(r.entry, vow_runtime::OplogEntry::WasiPoll { .. }))
        .count();
    assert_eq!(polls, 1, "replay appended no second poll");
    Ok(())
}

/// The worker's pending promises once it has `count` and is suspended.
async fn suspended_with_pending(
    executor: &vow_runtime::Executor,
    worker: &vow_runtime::WorkerId,
    count: usize,
) -> Result<Vec<vow_runtime::PromiseInfo>> {
    eventually(&format!("{count} pending promises"), || async {
        let mine = executor
            .promises(PromiseFilter {
                worker: Some(worker.clone()),
                ..PromiseFilter::pending()
            })
            .await
            .ok()?;
        (mine.len() == count && executor.worker_status(worker).ok()? == WorkerStatus::Suspended)
            .then_some(mine)
    })
    .await
}
