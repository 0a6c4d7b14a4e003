//! Durability: workers, promises and results survive a restart of the
//! executor on the same store; parked workers leave memory and come back by
//! replay; replay answers WASI's clocks and randomness from the log; a log
//! that no longer matches its guest fails that worker alone.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use vow_runtime::vow_store::{self, MemoryStorage, Storage as _, WorkerKey};
use vow_runtime::{Executor, Invocation, OplogEntry, Val, WorkerId, WorkerStatus};

use crate::support::{
    Backend, builder, bytes_of, bytes_val, eventually, harness_in, parked_on, promise_from_val,
    promise_val, single, start,
};

fn u64_result(results: Vec<Val>) -> Result<u64> {
    match single(results)? {
        Val::U64(n) => Ok(n),
        other => Err(anyhow!("expected u64, got {other:?}")),
    }
}

async fn invocations_started(executor: &Executor, worker: &WorkerId) -> Result<usize> {
    Ok(executor
        .worker_oplog(worker, 1, 100_000)
        .await?
        .into_iter()
        .filter(|r| matches!(r.entry, OplogEntry::InvocationStarted { .. }))
        .count())
}

#[tokio::test]
async fn state_parked_workers_and_results_survive_a_restart_on_sqlite() -> Result<()> {
    state_parked_workers_and_results_survive_a_restart(&Backend::sqlite()?).await
}

#[tokio::test]
async fn state_parked_workers_and_results_survive_a_restart_on_postgres() -> Result<()> {
    match Backend::postgres()? {
        Some(backend) => state_parked_workers_and_results_survive_a_restart(&backend).await,
        None => Ok(()),
    }
}

async fn state_parked_workers_and_results_survive_a_restart(backend: &Backend) -> Result<()> {
    let (counter, waiter, sampler, drawn, promise);
    {
        let executor = backend.open().await?;
        let component = harness_in(&executor).await?;
        counter = start(&executor, component, "counter").await?;
        for expected in 1..=5 {
            assert_eq!(
                u64_result(executor.invoke(&counter, "increment", vec![]).await?)?,
                expected
            );
        }
        sampler = start(&executor, component, "sampler").await?;
        drawn = single(executor.invoke(&sampler, "sample", vec![]).await?)?;
        waiter = start(&executor, component, "waiter").await?;
        let parked = executor
            .submit(
                &waiter,
                Invocation::new("create-and-await", vec![]).with_idempotency_key("wait-1"),
            )
            .await?;
        promise = parked_on(&executor, &waiter).await?.id;
        drop(parked);
    }

    let executor = backend.open().await?;
    let component = harness_in(&executor).await?;
    assert_eq!(
        component, counter.component_id,
        "the stored component is reused"
    );
    assert_eq!(executor.worker_status(&counter)?, WorkerStatus::Idle);
    assert_eq!(executor.worker_status(&waiter)?, WorkerStatus::Suspended);
    assert_eq!(
        executor.resident_workers(),
        0,
        "recovery instantiates nothing"
    );

    // Memory is rebuilt by replaying past invocations.
    assert_eq!(
        u64_result(executor.invoke(&counter, "increment", vec![]).await?)?,
        6
    );
    // The clocks and the random bytes of the replayed `sample` are the
    // recorded ones, so the guest's memory holds what it returned.
    assert_eq!(
        single(executor.invoke(&sampler, "last-sample", vec![]).await?)?,
        Val::Option(Some(Box::new(drawn)))
    );

    // The parked invocation is still pending; the same key finds it.
    let again = executor
        .submit(
            &waiter,
            Invocation::new("create-and-await", vec![]).with_idempotency_key("wait-1"),
        )
        .await?;
    assert!(!again.fresh);
    assert!(
        executor
            .complete_promise(&promise, b"after restart".to_vec())
            .await?
    );
    assert_eq!(bytes_of(&single(again.result().await?)?)?, b"after restart");
    assert_eq!(invocations_started(&executor, &waiter).await?, 1);
    assert_eq!(executor.worker_status(&waiter)?, WorkerStatus::Idle);
    drop(executor);

    // The finished result is stored: a third restart answers the key from it.
    let executor = backend.open().await?;
    let stored = executor
        .submit(
            &waiter,
            Invocation::new("create-and-await", vec![]).with_idempotency_key("wait-1"),
        )
        .await?;
    assert!(!stored.fresh);
    assert_eq!(
        bytes_of(&single(stored.result().await?)?)?,
        b"after restart"
    );
    assert!(
        !executor
            .complete_promise(&promise, b"late".to_vec())
            .await?,
        "a completed promise stays completed"
    );
    Ok(())
}

#[tokio::test]
async fn a_completion_made_before_a_restart_is_not_made_again_on_sqlite() -> Result<()> {
    a_completion_made_before_a_restart_is_not_made_again(&Backend::sqlite()?).await
}

#[tokio::test]
async fn a_completion_made_before_a_restart_is_not_made_again_on_postgres() -> Result<()> {
    match Backend::postgres()? {
        Some(backend) => a_completion_made_before_a_restart_is_not_made_again(&backend).await,
        None => Ok(()),
    }
}

async fn a_completion_made_before_a_restart_is_not_made_again(backend: &Backend) -> Result<()> {
    let (target, relay, relay_promise);
    {
        let executor = backend.open().await?;
        let component = harness_in(&executor).await?;
        target = start(&executor, component, "target").await?;
        relay = start(&executor, component, "relay").await?;
        let waiting = executor
            .submit(
                &target,
                Invocation::new("create-and-await", vec![]).with_idempotency_key("t"),
            )
            .await?;
        let target_promise = parked_on(&executor, &target).await?.id;
        drop(
            executor
                .submit(
                    &relay,
                    Invocation::new(
                        "relay",
                        vec![promise_val(&target_promise), bytes_val(b"relayed")],
                    )
                    .with_idempotency_key("r"),
                )
                .await?,
        );
        // The relay completed the target, which returned, and now waits on
        // its own promise: the process stops between its two steps.
        assert_eq!(bytes_of(&single(waiting.result().await?)?)?, b"relayed");
        relay_promise = parked_on(&executor, &relay).await?.id;
    }

    let executor = backend.open().await?;
    let resumed = executor
        .submit(
            &relay,
            Invocation::new("relay", vec![promise_val(&relay_promise), bytes_val(b"x")])
                .with_idempotency_key("r"),
        )
        .await?;
    assert!(!resumed.fresh);
    assert!(
        executor
            .complete_promise(&relay_promise, b"done".to_vec())
            .await?
    );
    assert_eq!(bytes_of(&single(resumed.result().await?)?)?, b"done");
    let completions: Vec<bool> = executor
        .worker_oplog(&relay, 1, 1000)
        .await?
        .into_iter()
        .filter_map(|r| match r.entry {
            OplogEntry::CompletePromise { completed, .. } => Some(completed),
            _ => None,
        })
        .collect();
    assert_eq!(completions, vec![true], "replay answered from the log");
    assert_eq!(invocations_started(&executor, &target).await?, 1);
    Ok(())
}

#[tokio::test]
async fn parked_workers_leave_memory_and_resume_with_their_own_payloads() -> Result<()> {
    let executor = builder()
        .evict_after(Some(std::time::Duration::ZERO))
        .build()?;
    let component = executor
        .add_component_file(vow_tests::guest("harness")?)
        .await?;
    // State from before the eviction must come back.
    let counter = start(&executor, component, "evicted-counter").await?;
    for _ in 0..3 {
        executor.invoke(&counter, "increment", vec![]).await?;
    }
    let drawn = single(executor.invoke(&counter, "sample", vec![]).await?)?;

    let mut workers = vec![counter.clone()];
    for i in 0..20 {
        workers.push(start(&executor, component, &format!("evicted-{i}")).await?);
    }
    let mut calls = Vec::new();
    for worker in &workers {
        calls.push(
            executor
                .submit(worker, Invocation::new("create-and-await", vec![]))
                .await?,
        );
    }
    let mut promises = Vec::new();
    for worker in &workers {
        promises.push(parked_on(&executor, worker).await?.id);
    }
    eventually("every parked worker to leave memory", || async {
        (executor.resident_workers() == 0).then_some(())
    })
    .await?;
    for (worker, promise) in workers.iter().zip(&promises) {
        assert_eq!(executor.worker_status(worker)?, WorkerStatus::Suspended);
        let payload = format!("payload of {}", worker.worker_name);
        assert!(
            executor
                .complete_promise(promise, payload.into_bytes())
                .await?
        );
    }
    for (worker, call) in workers.iter().zip(calls) {
        let payload = bytes_of(&single(call.result().await?)?)?;
        assert_eq!(
            payload,
            format!("payload of {}", worker.worker_name).into_bytes()
        );
    }
    assert_eq!(
        u64_result(executor.invoke(&counter, "increment", vec![]).await?)?,
        4
    );
    assert_eq!(
        single(executor.invoke(&counter, "last-sample", vec![]).await?)?,
        Val::Option(Some(Box::new(drawn)))
    );
    // Output printed before the eviction is kept once, not replayed again.
    let stdout = String::from_utf8(executor.worker_output(&counter)?.stdout)?;
    assert_eq!(stdout.matches("waiting on").count(), 1, "{stdout}");
    Ok(())
}

#[tokio::test]
async fn a_log_that_no_longer_matches_its_guest_fails_that_worker_only() -> Result<()> {
    let storage: Arc<MemoryStorage> = Arc::new(MemoryStorage::new());
    let (diverging, healthy);
    {
        let executor = builder().storage(storage.clone()).open().await?;
        let component = harness_in(&executor).await?;
        diverging = start(&executor, component, "diverging").await?;
        healthy = start(&executor, component, "healthy").await?;
        // 1 create, 2 invocation started, 3 create-promise, 4 finished.
        promise_from_val(&single(
            executor.invoke(&diverging, "new-promise", vec![]).await?,
        )?)?;
        executor.invoke(&healthy, "ping", vec![Val::U32(1)]).await?;
    }
    // Rewrite history: index 3 now claims the guest generated a key.
    let key = WorkerKey {
        component: diverging.component_id.0,
        name: diverging.worker_name.clone(),
    };
    let record = |index: u64, entry: OplogEntry| vow_store::OplogRecord {
        index,
        at: 0,
        entry: entry.encode().into(),
    };
    storage
        .write(vec![
            vow_store::Write::TruncateOplog {
                worker: key.clone(),
                after: 2,
            },
            vow_store::Write::AppendOplog {
                worker: key,
                records: vec![
                    record(3, OplogEntry::IdempotencyKey { key: (1, 2) }),
                    record(4, OplogEntry::InvocationFinished { ok: true, seq: 1 }),
                ],
            },
        ])
        .await?;

    let executor = builder().storage(storage).open().await?;
    let error = executor
        .invoke(&diverging, "ping", vec![Val::U32(1)])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(
            "diverged from its oplog at index 3: the log holds `generate-idempotency-key` but the guest called `create-promise`"
        ),
        "{error}"
    );
    assert_eq!(executor.worker_status(&diverging)?, WorkerStatus::Failed);
    assert_eq!(
        executor
            .invoke(&healthy, "ping", vec![Val::U32(41)])
            .await?,
        vec![Val::U32(42)]
    );
    Ok(())
}

fn snapshots_in(records: &[vow_runtime::OplogRecord]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r.entry, OplogEntry::Snapshot { .. }))
        .count()
}

#[tokio::test]
async fn snapshots_bound_replay_and_keep_state_and_settings() -> Result<()> {
    let storage: Arc<MemoryStorage> = Arc::new(MemoryStorage::new());
    let open = || {
        builder()
            .snapshot_every(Some(3))
            .storage(storage.clone())
            .open()
    };
    let policy = Val::Record(vec![
        ("max-attempts".to_owned(), Val::U32(7)),
        ("min-delay".to_owned(), Val::U64(1)),
        ("max-delay".to_owned(), Val::U64(2)),
        ("multiplier".to_owned(), Val::Float64(1.5)),
        ("max-jitter-factor".to_owned(), Val::Option(None)),
    ]);
    let (counter, drawn);
    {
        let executor = open().await?;
        let component = harness_in(&executor).await?;
        counter = start(&executor, component, "snapshotted").await?;
        executor
            .invoke(&counter, "retry-policy-roundtrip", vec![policy.clone()])
            .await?;
        for _ in 0..6 {
            executor.invoke(&counter, "increment", vec![]).await?;
        }
        drawn = single(executor.invoke(&counter, "sample", vec![]).await?)?;
        assert_eq!(
            single(executor.invoke(&counter, "snapshot-loads", vec![]).await?)?,
            Val::U32(0)
        );
        executor.invoke(&counter, "ping", vec![Val::U32(1)]).await?;
        // Ten invocations: snapshots after the third, sixth and ninth.
        let log = executor.worker_oplog(&counter, 1, 1000).await?;
        assert_eq!(snapshots_in(&log), 3, "{log:?}");
    }

    let executor = open().await?;
    // Loaded from the snapshot taken after the ninth invocation, then the
    // tenth replayed: the counter, the sample and the retry policy (set
    // before the snapshots, so never replayed) are all back.
    assert_eq!(
        u64_result(executor.invoke(&counter, "increment", vec![]).await?)?,
        7
    );
    assert_eq!(
        single(executor.invoke(&counter, "snapshot-loads", vec![]).await?)?,
        Val::U32(1)
    );
    assert_eq!(
        single(executor.invoke(&counter, "last-sample", vec![]).await?)?,
        Val::Option(Some(Box::new(drawn)))
    );
    assert_eq!(
        single(
            executor
                .invoke(&counter, "get-retry-policy", vec![])
                .await?
        )?,
        policy
    );
    Ok(())
}

#[tokio::test]
async fn a_snapshot_the_guest_refuses_is_passed_over_for_a_full_replay() -> Result<()> {
    let storage: Arc<MemoryStorage> = Arc::new(MemoryStorage::new());
    let open = || {
        builder()
            .snapshot_every(Some(2))
            .storage(storage.clone())
            .open()
    };
    let counter;
    {
        let executor = open().await?;
        let component = harness_in(&executor).await?;
        counter = start(&executor, component, "refused").await?;
        for _ in 0..5 {
            executor.invoke(&counter, "increment", vec![]).await?;
        }
    }
    let key = WorkerKey {
        component: counter.component_id.0,
        name: counter.worker_name.clone(),
    };
    let mut snapshot = storage
        .snapshot(&key)
        .await?
        .ok_or_else(|| anyhow!("no snapshot was stored"))?;
    snapshot.data = b"not a harness snapshot".to_vec().into();
    storage
        .write(vec![vow_store::Write::PutSnapshot(snapshot)])
        .await?;

    let executor = open().await?;
    assert_eq!(
        u64_result(executor.invoke(&counter, "increment", vec![]).await?)?,
        6
    );
    assert_eq!(
        single(executor.invoke(&counter, "snapshot-loads", vec![]).await?)?,
        Val::U32(0),
        "the whole log was replayed instead"
    );
    Ok(())
}

#[tokio::test]
async fn past_the_resident_cap_the_least_recently_used_workers_leave_memory() -> Result<()> {
    let executor = builder().max_resident(3).evict_after(None).build()?;
    let component = executor
        .add_component_file(vow_tests::guest("harness")?)
        .await?;
    let mut counters = Vec::new();
    for i in 0..6 {
        let worker = start(&executor, component, &format!("capped-{i}")).await?;
        for _ in 0..=i {
            executor.invoke(&worker, "increment", vec![]).await?;
        }
        counters.push(worker);
    }
    eventually("idle workers past the cap to leave memory", || async {
        (executor.resident_workers() <= 3).then_some(())
    })
    .await?;
    // Each comes back by replay with its own state, evicting another.
    for (i, worker) in counters.iter().enumerate() {
        assert_eq!(
            u64_result(executor.invoke(worker, "increment", vec![]).await?)?,
            i as u64 + 2
        );
    }
    // Parked workers leave too when the cap needs room, and resume.
    let mut calls = Vec::new();
    for worker in &counters {
        calls.push(
            executor
                .submit(worker, Invocation::new("create-and-await", vec![]))
                .await?,
        );
    }
    let mut promises = Vec::new();
    for worker in &counters {
        promises.push(parked_on(&executor, worker).await?.id);
    }
    eventually("parked workers past the cap to leave memory", || async {
        (executor.resident_workers() <= 3).then_some(())
    })
    .await?;
    for (worker, promise) in counters.iter().zip(&promises) {
        executor
            .complete_promise(promise, worker.worker_name.clone().into_bytes())
            .await?;
    }
    for (worker, call) in counters.iter().zip(calls) {
        assert_eq!(
            bytes_of(&single(call.result().await?)?)?,
            worker.worker_name.as_bytes()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_parked_invocation_nobody_waits_for_is_read_back_from_the_store() -> Result<()> {
    let executor = builder()
        .evict_after(Some(std::time::Duration::ZERO))
        .build()?;
    let component = executor
        .add_component_file(vow_tests::guest("harness")?)
        .await?;
    let keyed = start(&executor, component, "forgotten-keyed").await?;
    let plain = start(&executor, component, "forgotten-plain").await?;
    let call = || Invocation::new("create-and-await", vec![]);
    // Fire and forget: nobody keeps the handles.
    drop(
        executor
            .submit(&keyed, call().with_idempotency_key("k"))
            .await?,
    );
    drop(executor.submit(&plain, call()).await?);
    let keyed_promise = parked_on(&executor, &keyed).await?.id;
    let plain_promise = parked_on(&executor, &plain).await?.id;
    eventually("both workers to leave memory", || async {
        (executor.resident_workers() == 0).then_some(())
    })
    .await?;

    // A caller comes back with the key and gets the same invocation.
    let again = executor
        .submit(&keyed, call().with_idempotency_key("k"))
        .await?;
    assert!(!again.fresh);
    executor
        .complete_promise(&keyed_promise, b"keyed".to_vec())
        .await?;
    executor
        .complete_promise(&plain_promise, b"plain".to_vec())
        .await?;
    assert_eq!(bytes_of(&single(again.result().await?)?)?, b"keyed");
    // The other finishes with nobody listening: its log says so.
    let awaited = eventually("the plain invocation to finish", || async {
        let log = executor.worker_oplog(&plain, 1, 100).await.ok()?;
        log.iter().find_map(|r| match &r.entry {
            OplogEntry::AwaitPromise { payload, .. } => Some(payload.clone()),
            _ => None,
        })
    })
    .await?;
    assert_eq!(awaited, b"plain");
    eventually("the plain worker to be idle", || async {
        (executor.worker_status(&plain).ok()? == WorkerStatus::Idle).then_some(())
    })
    .await?;
    assert_eq!(invocations_started(&executor, &keyed).await?, 1);
    assert_eq!(invocations_started(&executor, &plain).await?, 1);
    Ok(())
}

#[tokio::test]
async fn set_oplog_index_goes_back_and_replays_the_same_after_a_restart() -> Result<()> {
    let storage: Arc<MemoryStorage> = Arc::new(MemoryStorage::new());
    let (jumper, promise, ends);
    {
        let executor = builder().storage(storage.clone()).open().await?;
        let component = harness_in(&executor).await?;
        let holder = start(&executor, component, "holder").await?;
        jumper = start(&executor, component, "jumper").await?;
        promise = promise_from_val(&single(
            executor.invoke(&holder, "new-promise", vec![]).await?,
        )?)?;
        // 1 create, 2 invocation started, 3 complete-promise (true), 4 jump
        // back to 2, then live again: 5 complete-promise (false).
        ends = single(
            executor
                .invoke(&jumper, "jump-back", vec![promise_val(&promise)])
                .await?,
        )?;
        assert_eq!(ends, Val::Tuple(vec![Val::U64(2), Val::U64(5)]));
        let entries: Vec<(u64, &'static str)> = executor
            .worker_oplog(&jumper, 1, 100)
            .await?
            .iter()
            .map(|r| (r.index, r.entry.kind()))
            .collect();
        assert_eq!(
            entries,
            vec![
                (1, "create"),
                (2, "invocation-started"),
                (3, "complete-promise"),
                (4, "jump"),
                (5, "complete-promise"),
                (6, "invocation-finished"),
            ]
        );
    }
    // Replay passes over what the jump went back over, so the worker comes
    // back without diverging.
    let executor = builder().storage(storage).open().await?;
    assert_eq!(
        executor.invoke(&jumper, "ping", vec![Val::U32(1)]).await?,
        vec![Val::U32(2)]
    );
    assert!(
        !executor
            .complete_promise(&promise, b"late".to_vec())
            .await?
    );
    Ok(())
}

/// The Python example `durable` (componentize-py): its memory, its UUIDs,
/// random numbers and clock readings come back the same by replay, after a
/// restart and after an eviction.
#[tokio::test]
async fn a_python_guest_replays_its_state_random_and_clocks() -> Result<()> {
    let wasm = vow_tests::python_guest("durable")?;
    let storage: Arc<MemoryStorage> = Arc::new(MemoryStorage::new());
    // One resident worker at a time: using one evicts the other.
    let open = || {
        builder()
            .max_resident(1)
            .evict_after(None)
            .storage(storage.clone())
            .open()
    };
    let text = |results: Vec<Val>| -> Result<String> {
        match single(results)? {
            Val::String(s) => Ok(s),
            Val::Option(Some(boxed)) => match *boxed {
                Val::String(s) => Ok(s),
                other => Err(anyhow!("expected a string, got {other:?}")),
            },
            other => Err(anyhow!("expected a string, got {other:?}")),
        }
    };
    let (worker, drawn);
    {
        let executor = open().await?;
        let component = executor.ensure_component_file(&wasm).await?;
        worker = start(&executor, component, "python-durable").await?;
        for expected in 1..=3 {
            assert_eq!(
                u64_result(executor.invoke(&worker, "increment", vec![]).await?)?,
                expected
            );
        }
        drawn = text(executor.invoke(&worker, "sample", vec![]).await?)?;
        assert_eq!(drawn.split(' ').count(), 4, "{drawn}");
    }

    let executor = open().await?;
    assert_eq!(
        text(executor.invoke(&worker, "last-sample", vec![]).await?)?,
        drawn,
        "after a restart"
    );
    // Another worker takes the one resident place; ours comes back by
    // replay again.
    let other = start(&executor, worker.component_id, "python-other").await?;
    executor.invoke(&other, "increment", vec![]).await?;
    eventually("the first worker to leave memory", || async {
        (executor.resident_workers() <= 1).then_some(())
    })
    .await?;
    assert_eq!(
        text(executor.invoke(&worker, "last-sample", vec![]).await?)?,
        drawn,
        "after an eviction"
    );
    assert_eq!(
        u64_result(executor.invoke(&worker, "increment", vec![]).await?)?,
        4
    );
    Ok(())
}
