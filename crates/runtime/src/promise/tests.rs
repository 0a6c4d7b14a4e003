use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::persist;

/// The payload limit of these tests' tables.
const LIMIT: usize = 64;

fn spawn_on(storage: SharedStorage) -> Promises {
    let (promises, _task) = Promises::spawn(
        storage,
        Stored {
            promises: Vec::new(),
            reactions: Vec::new(),
        },
        Spawner::new().0,
        LIMIT,
        Meter::default(),
        Default::default(),
        None,
    );
    promises
}

fn spawn() -> (Promises, SharedStorage) {
    let storage: SharedStorage = std::sync::Arc::new(vow_store::MemoryStorage::new());
    (spawn_on(storage.clone()), storage)
}

/// Creates a promise the way a host call does: in the store and the table.
async fn create_with(
    promises: &Promises,
    storage: &SharedStorage,
    id: PromiseId,
    options: PromiseOptions,
) -> Result<()> {
    let now = vow_store::now_millis();
    let spec = options.spec(now, false);
    storage
        .write(vec![Write::CreatePromise {
            key: persist::promise_key(&id),
            at: now,
            spec: spec.clone(),
        }])
        .await?;
    promises.create(id, now, spec)
}

async fn create(promises: &Promises, storage: &SharedStorage, id: PromiseId) -> Result<()> {
    create_with(promises, storage, id, PromiseOptions::default()).await
}

fn id(worker: &str, idx: u64) -> PromiseId {
    PromiseId {
        worker_id: WorkerId::new(ComponentId::from_u64_pair(7, 7), worker),
        oplog_idx: idx,
    }
}

fn payload(bytes: &'static [u8]) -> Settlement {
    Ok(Bytes::from_static(bytes))
}

#[tokio::test]
async fn first_completion_wins_and_waiters_see_it() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    create(&promises, &storage, id("a", 3)).await?;
    let waiter = promises.subscribe(id("a", 3))?;
    assert!(promises.settle(id("a", 3), payload(b"one")).await?);
    assert!(!promises.settle(id("a", 3), payload(b"two")).await?);
    assert_eq!(waiter.await?, Ok(payload(b"one")));
    let late = promises.subscribe(id("a", 3))?;
    assert_eq!(late.await?, Ok(payload(b"one")));
    Ok(())
}

#[tokio::test]
async fn a_rejection_settles_like_a_completion_and_is_stored() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    create(&promises, &storage, id("a", 1)).await?;
    let waiter = promises.subscribe(id("a", 1))?;
    let error = PromiseError {
        kind: ErrorKind::Rejected,
        message: "the approver said no".to_owned(),
        data: vec![1, 2],
    };
    assert!(promises.settle(id("a", 1), Err(error.clone())).await?);
    assert!(!promises.settle(id("a", 1), payload(b"late")).await?);
    assert_eq!(waiter.await?, Ok(Err(error.clone())));
    let listed = promises.list(PromiseFilter::default()).await?;
    assert_eq!(listed[0].status, PromiseStatus::Rejected);
    assert_eq!(listed[0].error.as_ref(), Some(&error));
    assert!(listed[0].completed_at.is_some());
    assert_eq!(error.to_string(), "rejected: the approver said no");

    // A fresh dispatcher on the same store knows it is rejected.
    let stored = storage.promises().await?;
    let (again, _task) = Promises::spawn(
        storage.clone(),
        Stored {
            promises: stored,
            reactions: Vec::new(),
        },
        Spawner::new().0,
        LIMIT,
        Meter::default(),
        Default::default(),
        None,
    );
    assert_eq!(again.subscribe(id("a", 1))?.await?, Ok(Err(error)));
    Ok(())
}

#[tokio::test]
async fn settlements_queued_behind_a_write_store_what_came_with_them() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    create(&promises, &storage, id("a", 1)).await?;
    let worker = vow_store::WorkerKey {
        component: uuid::Uuid::new_v4(),
        name: "w".to_owned(),
    };
    let also = |index: u64| {
        vec![Write::AppendOplog {
            worker: worker.clone(),
            records: vec![vow_store::OplogRecord {
                index,
                at: 0,
                entry: Bytes::from_static(b"x"),
            }],
        }]
    };
    let (first, second) = tokio::join!(
        promises.settle_with(id("a", 1), payload(b"one"), also(1)),
        promises.settle_with(id("a", 1), payload(b"two"), also(2)),
    );
    assert_eq!((first?, second?), (true, false));
    let err = promises
        .settle_with(id("a", 9), payload(b"nobody"), also(3))
        .await;
    assert!(matches!(err, Err(Error::PromiseNotFound(_))), "{err:?}");
    let log = storage.oplog(&worker, 1, 10).await?;
    assert_eq!(
        log.iter().map(|r| r.index).collect::<Vec<_>>(),
        [1, 2, 3],
        "the losing and the unknown settlement's writes are stored too"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_and_deleted_promises_are_reported() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    let err = promises.settle(id("a", 9), payload(b"")).await;
    assert!(matches!(err, Err(Error::PromiseNotFound(p)) if p == id("a", 9)));
    create(&promises, &storage, id("a", 3)).await?;
    let waiter = promises.subscribe(id("a", 3))?;
    promises.delete(id("a", 3))?;
    assert_eq!(waiter.await?, Err(AwaitError::Deleted));
    assert_eq!(
        promises.subscribe(id("a", 3))?.await?,
        Err(AwaitError::NotFound)
    );
    Ok(())
}

#[tokio::test]
async fn listing_filters_and_reports_waiters() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    create(&promises, &storage, id("a", 3)).await?;
    create(&promises, &storage, id("b", 4)).await?;
    let _waiter = promises.subscribe(id("b", 4))?;
    promises.settle(id("a", 3), payload(b"")).await?;
    let pending = promises.list(PromiseFilter::pending()).await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, id("b", 4));
    assert!(pending[0].awaited);
    let all = promises.list(PromiseFilter::default()).await?;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].status, PromiseStatus::Completed);
    promises.delete_worker(id("b", 4).worker_id)?;
    assert_eq!(promises.list(PromiseFilter::default()).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_timeout_rejects_a_pending_promise_once() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    let timeout = PromiseOptions {
        timeout: Some(Duration::from_millis(150)),
        ..PromiseOptions::default()
    };
    create_with(&promises, &storage, id("a", 1), timeout.clone()).await?;
    create_with(&promises, &storage, id("a", 2), timeout).await?;
    let info = promises.get(id("a", 1)).await?.map(|(info, _)| info);
    assert!(info.and_then(|i| i.deadline).is_some());
    // One settles in time; the other times out.
    assert!(promises.settle(id("a", 2), payload(b"in time")).await?);
    let answer = promises.subscribe(id("a", 1))?.await?;
    let Ok(Err(error)) = answer else {
        anyhow::bail!("expected a timeout, got {answer:?}");
    };
    assert_eq!(error.kind, ErrorKind::TimedOut);
    assert_eq!(
        error.message,
        format!(
            "promise {} was not settled within its timeout of 150ms",
            id("a", 1)
        )
    );
    assert!(!promises.settle(id("a", 1), payload(b"late")).await?);
    let timed_out = PromiseFilter {
        status: Some(PromiseStatus::TimedOut),
        ..PromiseFilter::default()
    };
    let listed = promises.list(timed_out).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id("a", 1));
    assert_eq!(
        listed[0].deadline, None,
        "a settled promise has no deadline"
    );
    assert_eq!(
        promises.subscribe(id("a", 2))?.await?,
        Ok(payload(b"in time"))
    );
    Ok(())
}

#[tokio::test]
async fn a_deadline_that_passed_while_down_fires_at_start() -> anyhow::Result<()> {
    let storage: SharedStorage = std::sync::Arc::new(vow_store::MemoryStorage::new());
    let past = vow_store::PromiseSpec {
        deadline: Some(vow_store::now_millis().saturating_sub(1000)),
        ..vow_store::PromiseSpec::default()
    };
    storage
        .write(vec![Write::CreatePromise {
            key: persist::promise_key(&id("a", 1)),
            at: 0,
            spec: past,
        }])
        .await?;
    let (promises, _task) = Promises::spawn(
        storage.clone(),
        Stored {
            promises: storage.promises().await?,
            reactions: Vec::new(),
        },
        Spawner::new().0,
        LIMIT,
        Meter::default(),
        Default::default(),
        None,
    );
    let answer = promises.subscribe(id("a", 1))?.await?;
    assert!(
        matches!(&answer, Ok(Err(e)) if e.kind == ErrorKind::TimedOut),
        "{answer:?}"
    );
    let stored = storage.promises().await?;
    assert!(
        matches!(stored[0].state, vow_store::PromiseState::Rejected { .. }),
        "the timeout is stored: {:?}",
        stored[0].state
    );
    Ok(())
}

#[tokio::test]
async fn a_settled_promise_is_deleted_after_its_retention() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    let kept = PromiseOptions {
        retention: Some(Duration::from_millis(100)),
        ..PromiseOptions::default()
    };
    create_with(&promises, &storage, id("a", 1), kept).await?;
    create(&promises, &storage, id("a", 2)).await?;
    promises.settle(id("a", 1), payload(b"x")).await?;
    promises.settle(id("a", 2), payload(b"y")).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while promises.get(id("a", 1)).await?.is_some() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        promises.subscribe(id("a", 1))?.await?,
        Err(AwaitError::NotFound)
    );
    // The store forgets it too (the deletion is written right after).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = storage.promises().await?;
        if stored.len() == 1 {
            assert_eq!(stored[0].key, persist::promise_key(&id("a", 2)));
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{stored:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        promises.get(id("a", 2)).await?.is_some(),
        "kept until deleted"
    );
    Ok(())
}

#[test]
fn a_wait_longer_than_a_store_can_hold_is_stored_as_never() {
    let options = super::PromiseOptions {
        timeout: Some(Duration::MAX),
        retention: Some(Duration::from_millis(u64::MAX)),
        payload_type: None,
    };
    let spec = options.spec(1_000, false);
    let never = i64::MAX as u64;
    assert_eq!(spec.deadline, Some(never));
    assert_eq!(spec.retention, Some(never));
}

#[tokio::test]
async fn a_payload_past_the_limit_is_refused_and_settles_nothing() -> anyhow::Result<()> {
    let (promises, storage) = spawn();
    create(&promises, &storage, id("a", 1)).await?;
    let big = Ok(Bytes::from(vec![7; LIMIT + 1]));
    let refused = promises.settle(id("a", 1), big).await;
    match refused {
        Err(Error::PayloadTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (LIMIT + 1, LIMIT));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    // A rejection counts its message and data.
    let error = PromiseError {
        kind: ErrorKind::Rejected,
        message: "m".repeat(LIMIT / 2),
        data: vec![0; LIMIT / 2 + 1],
    };
    assert!(matches!(
        promises.settle(id("a", 1), Err(error)).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    // Still pending: exactly the limit is accepted.
    let listed = promises.list(PromiseFilter::default()).await?;
    assert_eq!(listed[0].status, PromiseStatus::Pending);
    let fits = Ok(Bytes::from(vec![7; LIMIT]));
    assert!(promises.settle(id("a", 1), fits).await?);
    Ok(())
}

#[tokio::test]
async fn the_table_counts_promises_by_status_and_settlements_by_outcome() -> anyhow::Result<()> {
    let storage: SharedStorage = std::sync::Arc::new(vow_store::MemoryStorage::new());
    let recorder = std::sync::Arc::new(crate::metrics::Recorder::new());
    let (promises, _task) = Promises::spawn(
        storage.clone(),
        Stored {
            promises: Vec::new(),
            reactions: Vec::new(),
        },
        Spawner::new().0,
        LIMIT,
        Meter::new(Some(recorder.clone())),
        Default::default(),
        None,
    );
    for idx in 1..=4 {
        create(&promises, &storage, id("a", idx)).await?;
    }
    let timeout = PromiseOptions {
        timeout: Some(Duration::from_millis(50)),
        ..PromiseOptions::default()
    };
    create_with(&promises, &storage, id("b", 1), timeout).await?;
    assert!(promises.settle(id("a", 1), payload(b"yes")).await?);
    assert!(!promises.settle(id("a", 1), payload(b"again")).await?);
    let no = PromiseError::rejected("no");
    assert!(promises.settle(id("a", 2), Err(no)).await?);
    assert!(matches!(
        promises.settle(id("a", 9), payload(b"?")).await,
        Err(Error::PromiseNotFound(_))
    ));
    let big = Ok(Bytes::from(vec![7; LIMIT + 1]));
    assert!(promises.settle(id("a", 3), big).await.is_err());
    let timed_out = promises.subscribe(id("b", 1))?.await?;
    assert!(matches!(timed_out, Ok(Err(ref e)) if e.kind == ErrorKind::TimedOut));
    promises.delete(id("a", 4))?;
    // Pending, completed, rejected, timed out: as the table lists them.
    promises.list(PromiseFilter::default()).await?;
    assert_eq!(recorder.promise_counts(), [1, 1, 1, 1]);
    assert_eq!(recorder.completion_counts(), [1, 1, 1, 1, 1, 1, 0]);
    promises.delete_worker(id("a", 1).worker_id)?;
    promises.list(PromiseFilter::default()).await?;
    assert_eq!(recorder.promise_counts(), [0, 0, 0, 1]);
    Ok(())
}
