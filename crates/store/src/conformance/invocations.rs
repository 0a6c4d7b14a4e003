//! The invocation queue, and deleting a worker with everything it owns.

use bytes::Bytes;

use super::{
    T0, append, assert_conflict, fresh_worker, log_indices, read, worker_record, write_err,
    write_ok,
};
use crate::{InvocationRecord, InvocationState, Outcome, PromiseKey, Storage, WorkerKey, Write};

fn invocation(worker: &WorkerKey, seq: u64, key: Option<&str>) -> InvocationRecord {
    InvocationRecord {
        worker: worker.clone(),
        seq,
        idempotency_key: key.map(str::to_owned),
        request: Bytes::from(format!("call {seq}")),
        state: InvocationState::Queued,
        accepted_at: T0 + seq,
    }
}

fn set_state(worker: &WorkerKey, seq: u64, state: InvocationState) -> Write {
    Write::SetInvocationState {
        worker: worker.clone(),
        seq,
        state,
    }
}

async fn unfinished(store: &dyn Storage, worker: &WorkerKey) -> Vec<InvocationRecord> {
    read(
        store,
        "unfinished invocations",
        store.unfinished_invocations(worker).await,
    )
}

async fn unfinished_seqs(store: &dyn Storage, worker: &WorkerKey) -> Vec<u64> {
    unfinished(store, worker)
        .await
        .iter()
        .map(|i| i.seq)
        .collect()
}

async fn by_key(store: &dyn Storage, worker: &WorkerKey, key: &str) -> Option<InvocationRecord> {
    read(
        store,
        "an invocation by key",
        store.invocation_by_key(worker, key).await,
    )
}

async fn between(
    store: &dyn Storage,
    worker: &WorkerKey,
    first: u64,
    last: u64,
) -> Vec<(u64, InvocationState)> {
    read(
        store,
        "invocations between",
        store.invocations_between(worker, first, last).await,
    )
    .into_iter()
    .map(|i| (i.seq, i.state))
    .collect()
}

async fn last_seq(store: &dyn Storage, worker: &WorkerKey) -> u64 {
    read(
        store,
        "the last invocation seq",
        store.last_invocation_seq(worker).await,
    )
}

/// Enqueued invocations round-trip; `unfinished_invocations` lists the queued
/// and running ones in sequence order; states change; duplicate sequence
/// numbers and idempotency keys are conflicts (per worker); invocations
/// without a key never conflict on it; `last_invocation_seq` is the highest
/// sequence number, finished or not.
pub async fn invocations(store: &dyn Storage) {
    let worker = fresh_worker("queue");
    let other = fresh_worker("queue-other");
    assert_eq!(last_seq(store, &worker).await, 0, "{}", store.location());
    assert_eq!(
        by_key(store, &worker, "k1").await,
        None,
        "{}",
        store.location()
    );

    let first = invocation(&worker, 1, Some("k1"));
    let outcomes = write_ok(
        store,
        vec![
            Write::Enqueue(first.clone()),
            Write::Enqueue(invocation(&worker, 3, Some("k3"))),
            Write::Enqueue(invocation(&worker, 2, None)),
        ],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Done; 3], "{}", store.location());
    let queued = unfinished(store, &worker).await;
    assert_eq!(
        queued,
        vec![
            first.clone(),
            invocation(&worker, 2, None),
            invocation(&worker, 3, Some("k3"))
        ],
        "{}: unfinished invocations round-trip in sequence order",
        store.location()
    );
    assert_eq!(last_seq(store, &worker).await, 3, "{}", store.location());
    assert_eq!(
        by_key(store, &worker, "k1").await,
        Some(first.clone()),
        "{}",
        store.location()
    );
    assert_eq!(
        by_key(store, &worker, "k2").await,
        None,
        "{}",
        store.location()
    );
    assert_eq!(last_seq(store, &other).await, 0, "{}", store.location());

    // Running, then finished.
    write_ok(store, vec![set_state(&worker, 1, InvocationState::Running)]).await;
    let queued = unfinished(store, &worker).await;
    assert_eq!(
        queued.first().map(|i| &i.state),
        Some(&InvocationState::Running),
        "{}",
        store.location()
    );
    let result = Bytes::from_static(b"\x00the result\xff");
    write_ok(
        store,
        vec![set_state(
            &worker,
            1,
            InvocationState::Finished(result.clone()),
        )],
    )
    .await;
    assert_eq!(
        unfinished_seqs(store, &worker).await,
        vec![2, 3],
        "{}",
        store.location()
    );
    assert_eq!(
        by_key(store, &worker, "k1").await.map(|i| i.state),
        Some(InvocationState::Finished(result)),
        "{}: a finished invocation is still found by its key, with its result",
        store.location()
    );
    assert_eq!(last_seq(store, &worker).await, 3, "{}", store.location());

    // Conflicts: a taken seq, a taken key (even of a finished invocation).
    let error = write_err(
        store,
        vec![Write::Enqueue(invocation(&worker, 2, Some("new")))],
    )
    .await;
    assert_conflict(store, &error, &worker.name);
    let error = write_err(
        store,
        vec![Write::Enqueue(invocation(&worker, 4, Some("k1")))],
    )
    .await;
    assert_conflict(store, &error, &worker.name);
    assert_eq!(last_seq(store, &worker).await, 3, "{}", store.location());
    assert_eq!(
        by_key(store, &worker, "new").await,
        None,
        "{}",
        store.location()
    );

    // No key never conflicts; keys are per worker; order is by seq, not by
    // arrival; a finished invocation can go back to the queue.
    write_ok(
        store,
        vec![
            Write::Enqueue(invocation(&worker, 10, None)),
            Write::Enqueue(invocation(&worker, 7, None)),
            Write::Enqueue(invocation(&other, 1, Some("k1"))),
            set_state(&worker, 3, InvocationState::Finished(Bytes::new())),
            set_state(&worker, 1, InvocationState::Queued),
        ],
    )
    .await;
    assert_eq!(
        unfinished_seqs(store, &worker).await,
        vec![1, 2, 7, 10],
        "{}",
        store.location()
    );
    assert_eq!(last_seq(store, &worker).await, 10, "{}", store.location());
    assert_eq!(last_seq(store, &other).await, 1, "{}", store.location());
    assert_eq!(
        by_key(store, &other, "k1").await.map(|i| i.seq),
        Some(1),
        "{}",
        store.location()
    );
    // A range by sequence number: finished and unfinished alike, in order,
    // only this worker's, empty when the range is.
    assert_eq!(
        between(store, &worker, 2, 8).await,
        vec![
            (2, InvocationState::Queued),
            (3, InvocationState::Finished(Bytes::new())),
            (7, InvocationState::Queued),
        ],
        "{}",
        store.location()
    );
    assert_eq!(
        between(store, &worker, 11, 20).await,
        vec![],
        "{}",
        store.location()
    );
    assert_eq!(
        between(store, &worker, 5, 4).await,
        vec![],
        "{}",
        store.location()
    );
    assert_eq!(
        between(store, &worker, 0, u64::MAX).await.len(),
        5,
        "{}: the whole range holds the worker's five invocations",
        store.location()
    );
    // Setting the state of an invocation that does not exist changes nothing.
    write_ok(
        store,
        vec![set_state(&worker, 99, InvocationState::Running)],
    )
    .await;
    assert_eq!(last_seq(store, &worker).await, 10, "{}", store.location());
}

/// `DeleteWorker` removes the worker's record, log, promises and invocations,
/// and nothing of another worker, even one of the same component; the key can
/// be used again afterwards.
pub async fn delete_worker(store: &dyn Storage) {
    let doomed = fresh_worker("doomed");
    let sibling = WorkerKey {
        component: doomed.component,
        name: "sibling".to_owned(),
    };
    for worker in [&doomed, &sibling] {
        write_ok(
            store,
            vec![
                Write::CreateWorker(worker_record(worker)),
                append(worker, 1..=3),
                Write::CreatePromise {
                    key: PromiseKey {
                        worker: worker.clone(),
                        index: 2,
                    },
                    at: T0,
                    spec: Default::default(),
                },
                Write::Enqueue(invocation(worker, 1, Some("key"))),
                Write::Enqueue(invocation(worker, 2, None)),
            ],
        )
        .await;
    }

    let outcomes = write_ok(store, vec![Write::DeleteWorker(doomed.clone())]).await;
    assert_eq!(outcomes, vec![Outcome::Done], "{}", store.location());

    let workers = read(store, "workers", store.workers().await);
    assert!(
        !workers.iter().any(|w| w.key == doomed),
        "{}: the deleted worker is gone",
        store.location()
    );
    assert!(
        workers.iter().any(|w| w.key == sibling),
        "{}: its sibling stays",
        store.location()
    );
    assert_eq!(log_indices(store, &doomed).await, Vec::<u64>::new());
    assert_eq!(log_indices(store, &sibling).await, vec![1, 2, 3]);
    let promises = read(store, "promises", store.promises().await);
    assert!(
        !promises.iter().any(|p| p.key.worker == doomed),
        "{}: the deleted worker's promises are gone",
        store.location()
    );
    assert!(
        promises.iter().any(|p| p.key.worker == sibling),
        "{}: its sibling's promises stay",
        store.location()
    );
    assert_eq!(
        unfinished(store, &doomed).await,
        vec![],
        "{}",
        store.location()
    );
    assert_eq!(
        by_key(store, &doomed, "key").await,
        None,
        "{}",
        store.location()
    );
    assert_eq!(last_seq(store, &doomed).await, 0, "{}", store.location());
    assert_eq!(unfinished_seqs(store, &sibling).await, vec![1, 2]);
    assert_eq!(last_seq(store, &sibling).await, 2, "{}", store.location());

    // The key is free again, with a fresh log and queue.
    write_ok(
        store,
        vec![
            Write::CreateWorker(worker_record(&doomed)),
            append(&doomed, [1]),
            Write::Enqueue(invocation(&doomed, 1, Some("key"))),
        ],
    )
    .await;
    assert_eq!(log_indices(store, &doomed).await, vec![1]);

    // Deleting a worker that does not exist is not an error.
    write_ok(store, vec![Write::DeleteWorker(fresh_worker("never"))]).await;
    // Conflicting keys of a sibling were never involved.
    let error = write_err(
        store,
        vec![Write::Enqueue(invocation(&sibling, 3, Some("key")))],
    )
    .await;
    assert_conflict(store, &error, &sibling.name);
}

/// `workers_with_unfinished_invocations` lists each worker with a queued
/// or running invocation once, in key order, and no worker whose
/// invocations all finished.
pub async fn all_unfinished(store: &dyn Storage) {
    let first = fresh_worker("unfinished-a");
    let key = |name: &str| WorkerKey {
        component: first.component,
        name: name.to_owned(),
    };
    let (second, done) = (key("unfinished-b"), key("unfinished-c"));
    write_ok(
        store,
        vec![
            Write::Enqueue(invocation(&second, 2, None)),
            Write::Enqueue(invocation(&first, 5, Some("x"))),
            Write::Enqueue(invocation(&done, 1, None)),
            Write::Enqueue(invocation(&first, 4, None)),
            set_state(&first, 4, InvocationState::Running),
            set_state(&done, 1, InvocationState::Finished(Bytes::new())),
        ],
    )
    .await;
    let all = read(
        store,
        "the workers with unfinished invocations",
        store.workers_with_unfinished_invocations().await,
    );
    // The store may hold other checks' workers: keep these.
    let ours: Vec<&WorkerKey> = all
        .iter()
        .filter(|k| k.component == first.component)
        .collect();
    assert_eq!(ours, vec![&first, &second], "{}", store.location());
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        all,
        sorted,
        "{}: once each, ordered by key",
        store.location()
    );
}
