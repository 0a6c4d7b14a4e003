//! The write model: atomic batches, write order, concurrent writers.

use futures::future::join_all;
use uuid::Uuid;

use super::{
    T0, append, assert_conflict, component_record, fresh_worker, log_indices, read, worker_record,
    write_ok,
};
use crate::{Outcome, PromiseKey, Storage, Write};

/// An empty batch succeeds with no outcomes.
pub async fn empty_batch(store: &dyn Storage) {
    let outcomes = write_ok(store, Vec::new()).await;
    assert_eq!(outcomes, Vec::<Outcome>::new(), "{}", store.location());
}

/// A batch that fails in a later write keeps nothing of its earlier writes,
/// and batches enqueued at the same time (before it, after it) still commit.
pub async fn failing_batch_is_atomic(store: &dyn Storage) {
    let taken = Uuid::new_v4();
    write_ok(
        store,
        vec![Write::PutComponent(component_record(taken, "taken", b"x"))],
    )
    .await;

    let before = fresh_worker("before");
    let doomed = fresh_worker("doomed");
    let gap = fresh_worker("gap");
    let after = fresh_worker("after");
    // Enqueue all four before waiting for any, so a backend that groups
    // batches into one transaction gets them in one group.
    let first = store.write(vec![Write::CreateWorker(worker_record(&before))]);
    let conflicting = store.write(vec![
        Write::CreateWorker(worker_record(&doomed)),
        append(&doomed, 1..=2),
        Write::CreatePromise {
            key: PromiseKey {
                worker: doomed.clone(),
                index: 1,
            },
            at: T0,
            spec: Default::default(),
        },
        Write::PutComponent(component_record(taken, "again", b"y")),
    ]);
    let gapped = store.write(vec![
        Write::CreateWorker(worker_record(&gap)),
        append(&gap, [1]),
        append(&gap, [3]),
    ]);
    let last = store.write(vec![
        Write::CreateWorker(worker_record(&after)),
        append(&after, [1]),
    ]);
    let (first, conflicting, gapped, last) = futures::join!(first, conflicting, gapped, last);

    assert!(
        first.is_ok(),
        "{}: the batch before a failing one commits: {first:?}",
        store.location()
    );
    match conflicting {
        Ok(outcomes) => panic!(
            "{}: a batch putting a taken component id must fail, got {outcomes:?}",
            store.location()
        ),
        Err(e) => assert_conflict(store, &e, &taken.to_string()),
    }
    match gapped {
        Ok(outcomes) => panic!(
            "{}: a batch with an oplog gap must fail, got {outcomes:?}",
            store.location()
        ),
        Err(e) => assert_conflict(store, &e, &gap.name),
    }
    assert!(
        last.is_ok(),
        "{}: the batch after failing ones commits: {last:?}",
        store.location()
    );

    let workers = read(store, "workers", store.workers().await);
    let exists = |key| workers.iter().any(|w| &w.key == key);
    assert!(exists(&before) && exists(&after), "{}", store.location());
    assert!(
        !exists(&doomed) && !exists(&gap),
        "{}: a failed batch must keep none of its writes",
        store.location()
    );
    assert_eq!(log_indices(store, &doomed).await, Vec::<u64>::new());
    assert_eq!(log_indices(store, &gap).await, Vec::<u64>::new());
    assert_eq!(log_indices(store, &after).await, vec![1]);
    let promises = read(store, "promises", store.promises().await);
    assert!(
        !promises.iter().any(|p| p.key.worker == doomed),
        "{}: a failed batch must keep none of its writes",
        store.location()
    );
    let components = read(store, "components", store.components().await);
    assert_eq!(
        components
            .iter()
            .filter(|c| c.id == taken)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["taken"],
        "{}",
        store.location()
    );

    // The store goes on accepting writes.
    write_ok(store, vec![append(&doomed, [1])]).await;
}

/// Batches apply in the order `write` was called: once a later write's future
/// resolves, earlier writes whose futures were dropped unpolled are visible.
pub async fn write_order(store: &dyn Storage) {
    let worker = fresh_worker("ordered");
    for index in 1..=50 {
        drop(store.write(vec![append(&worker, [index])]));
    }
    // Dropped futures of a truncate and of a re-append, then an awaited write
    // of another kind: all of them must be applied, in order.
    drop(store.write(vec![Write::TruncateOplog {
        worker: worker.clone(),
        after: 40,
    }]));
    drop(store.write(vec![append(&worker, 41..=45)]));
    write_ok(store, vec![Write::CreateWorker(worker_record(&worker))]).await;
    assert_eq!(
        log_indices(store, &worker).await,
        (1..=45).collect::<Vec<_>>(),
        "{}: writes whose futures were dropped must be applied, in call order",
        store.location()
    );
}

/// 64 writers, each awaiting 50 writes one after another on its own worker
/// (and all of them on one shared component's promises), all succeed and
/// nothing is lost or reordered within a writer.
pub async fn concurrent_writers(store: &dyn Storage) {
    const WRITERS: u64 = 64;
    const WRITES: u64 = 50;
    let shared = fresh_worker("shared-promises");
    let workers: Vec<_> = (0..WRITERS)
        .map(|i| fresh_worker(&format!("writer-{i}")))
        .collect();
    let writers = workers.iter().enumerate().map(|(n, worker)| {
        let shared = &shared;
        async move {
            write_ok(store, vec![Write::CreateWorker(worker_record(worker))]).await;
            for index in 1..WRITES {
                let mut batch = vec![append(worker, [index])];
                if index == WRITES / 2 {
                    batch.push(Write::CreatePromise {
                        key: PromiseKey {
                            worker: shared.clone(),
                            index: n as u64,
                        },
                        at: T0,
                        spec: Default::default(),
                    });
                }
                write_ok(store, batch).await;
            }
        }
    });
    join_all(writers).await;

    for worker in &workers {
        assert_eq!(
            log_indices(store, worker).await,
            (1..WRITES).collect::<Vec<_>>(),
            "{}: the log of {worker} after concurrent writes",
            store.location()
        );
    }
    let promises = read(store, "promises", store.promises().await);
    assert_eq!(
        promises.iter().filter(|p| p.key.worker == shared).count() as u64,
        WRITERS,
        "{}",
        store.location()
    );
}

/// Batches sent together that touch the same records apply as if one after
/// another, whatever a backend does to group them: the last state of a
/// worker or an invocation stays, appends to one log join in order, the
/// first completion of a promise wins, and a completion sent before the
/// promise's creation finds nothing. (A group with a failing batch is
/// [`failing_batch_is_atomic`].)
pub async fn grouped_writes_on_the_same_records(store: &dyn Storage) {
    let worker = fresh_worker("grouped");
    let late = PromiseKey {
        worker: worker.clone(),
        index: 9,
    };
    let early = PromiseKey {
        worker: worker.clone(),
        index: 8,
    };
    let mut record = worker_record(&worker);
    record.state.status = "running".to_owned();
    let invocation = crate::InvocationRecord {
        worker: worker.clone(),
        seq: 1,
        idempotency_key: None,
        request: bytes::Bytes::from_static(b"call"),
        state: crate::InvocationState::Queued,
        accepted_at: T0,
    };
    write_ok(
        store,
        vec![
            Write::CreateWorker(record),
            Write::Enqueue(invocation),
            Write::CreatePromise {
                key: early.clone(),
                at: T0,
                spec: Default::default(),
            },
        ],
    )
    .await;
    let state = |status: &str, awaiting: Option<PromiseKey>| Write::UpdateWorker {
        worker: worker.clone(),
        state: crate::WorkerState {
            status: status.to_owned(),
            last_error: None,
            awaiting,
        },
    };
    let complete = |key: &PromiseKey, data: &'static [u8]| Write::CompletePromise {
        key: key.clone(),
        data: bytes::Bytes::from_static(data),
        at: T0 + 1,
    };
    let invocation_state = |state| Write::SetInvocationState {
        worker: worker.clone(),
        seq: 1,
        state,
    };
    // All enqueued before any is awaited, so that a grouping backend gets
    // them in one group.
    let writes = vec![
        store.write(vec![
            append(&worker, [1, 2]),
            state("suspended", Some(early.clone())),
        ]),
        store.write(vec![complete(&late, b"too early")]),
        store.write(vec![complete(&early, b"first")]),
        store.write(vec![append(&worker, [3]), state("running", None)]),
        store.write(vec![complete(&early, b"second")]),
        store.write(vec![Write::CreatePromise {
            key: late.clone(),
            at: T0,
            spec: Default::default(),
        }]),
        store.write(vec![invocation_state(crate::InvocationState::Running)]),
        store.write(vec![
            append(&worker, [4]),
            invocation_state(crate::InvocationState::Finished(bytes::Bytes::from_static(
                b"result",
            ))),
            state("idle", None),
        ]),
    ];
    let answers = join_all(writes).await;
    let outcome = |i: usize| match &answers[i] {
        Ok(outcomes) => outcomes.clone(),
        Err(e) => panic!("{}: batch {i} of the group failed: {e}", store.location()),
    };
    assert_eq!(outcome(1), vec![Outcome::NotFound], "{}", store.location());
    assert_eq!(
        outcome(2),
        vec![Outcome::Completed(true)],
        "{}",
        store.location()
    );
    assert_eq!(
        outcome(4),
        vec![Outcome::Completed(false)],
        "{}",
        store.location()
    );
    for i in [0, 3, 5, 6, 7] {
        outcome(i);
    }

    assert_eq!(log_indices(store, &worker).await, vec![1, 2, 3, 4]);
    let workers = read(store, "workers", store.workers().await);
    let stored = workers.iter().find(|w| w.key == worker);
    assert_eq!(
        stored.map(|w| (w.state.status.as_str(), w.state.awaiting.clone())),
        Some(("idle", None)),
        "{}: the last state written stays",
        store.location()
    );
    let promises = read(store, "promises", store.promises().await);
    let data = |key: &PromiseKey| {
        promises
            .iter()
            .find(|p| &p.key == key)
            .map(|p| match &p.state {
                crate::PromiseState::Pending => None,
                crate::PromiseState::Completed { data, .. }
                | crate::PromiseState::Rejected { error: data, .. } => Some(data.to_vec()),
            })
    };
    assert_eq!(
        data(&early),
        Some(Some(b"first".to_vec())),
        "{}",
        store.location()
    );
    assert_eq!(
        data(&late),
        Some(None),
        "{}: a completion sent before the creation finds nothing",
        store.location()
    );
    let unfinished = read(
        store,
        "unfinished invocations",
        store.unfinished_invocations(&worker).await,
    );
    assert!(
        unfinished.is_empty(),
        "{}: the last invocation state written stays: {unfinished:?}",
        store.location()
    );
}
