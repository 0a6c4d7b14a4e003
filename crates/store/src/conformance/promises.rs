//! Promises: idempotent creation, first-writer-wins completion, deletion.

use bytes::Bytes;

use super::{T0, fresh_worker, read, write_ok};
use crate::{
    Outcome, PromiseKey, PromiseRecord, PromiseSpec, PromiseState, ReactionRecord, Storage,
    WorkerKey, Write,
};

/// Creating a promise twice keeps the first; the first completion wins
/// (`Completed(true)`, then `Completed(false)` without changing the payload);
/// completing an unknown or deleted promise is `NotFound`; `promises()` is
/// ordered by key.
pub async fn promises(store: &dyn Storage) {
    let worker = fresh_worker("promiser");
    let key = |index| PromiseKey {
        worker: worker.clone(),
        index,
    };
    let create = |index, at| Write::CreatePromise {
        key: key(index),
        at,
        spec: Default::default(),
    };
    let complete = |index, data: &'static str, at| Write::CompletePromise {
        key: key(index),
        data: Bytes::from_static(data.as_bytes()),
        at,
    };

    let outcomes = write_ok(store, vec![create(3, T0), create(3, T0 + 50)]).await;
    assert_eq!(outcomes, vec![Outcome::Done; 2], "{}", store.location());
    write_ok(store, vec![create(3, T0 + 99)]).await;
    let pending = PromiseRecord {
        key: key(3),
        created_at: T0,
        state: PromiseState::Pending,
        spec: Default::default(),
    };
    assert_eq!(
        find(store, &key(3)).await,
        Some(pending),
        "{}: creating twice keeps the first promise",
        store.location()
    );

    let outcomes = write_ok(store, vec![complete(3, "first", T0 + 1)]).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Completed(true)],
        "{}",
        store.location()
    );
    let outcomes = write_ok(store, vec![complete(3, "second", T0 + 2)]).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Completed(false)],
        "{}",
        store.location()
    );
    let completed = PromiseRecord {
        key: key(3),
        created_at: T0,
        state: PromiseState::Completed {
            data: Bytes::from_static(b"first"),
            at: T0 + 1,
        },
        spec: Default::default(),
    };
    assert_eq!(
        find(store, &key(3)).await,
        Some(completed.clone()),
        "{}: the first completion wins",
        store.location()
    );
    // Replay creates the promise again: it stays completed.
    write_ok(store, vec![create(3, T0 + 3)]).await;
    assert_eq!(
        find(store, &key(3)).await,
        Some(completed),
        "{}",
        store.location()
    );

    let outcomes = write_ok(store, vec![complete(4, "nobody", T0)]).await;
    assert_eq!(outcomes, vec![Outcome::NotFound], "{}", store.location());
    assert_eq!(find(store, &key(4)).await, None, "{}", store.location());

    // Create and complete in one batch; an empty payload is a payload.
    let outcomes = write_ok(store, vec![create(5, T0), complete(5, "", T0 + 5)]).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Done, Outcome::Completed(true)],
        "{}",
        store.location()
    );
    assert_eq!(
        find(store, &key(5)).await.map(|p| p.state),
        Some(PromiseState::Completed {
            data: Bytes::new(),
            at: T0 + 5
        }),
        "{}",
        store.location()
    );

    // Order by key: create out of order, under two workers.
    let other = fresh_worker("promiser-2");
    write_ok(
        store,
        vec![
            create(10, T0),
            create(1, T0),
            Write::CreatePromise {
                key: PromiseKey {
                    worker: other.clone(),
                    index: 2,
                },
                at: T0,
                spec: Default::default(),
            },
        ],
    )
    .await;
    let all = read(store, "promises", store.promises().await);
    let keys: Vec<&PromiseKey> = all.iter().map(|p| &p.key).collect();
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "{}: promises() must be ordered by key, got {keys:?}",
        store.location()
    );
    let mine: Vec<u64> = all
        .iter()
        .filter(|p| p.key.worker == worker)
        .map(|p| p.key.index)
        .collect();
    assert_eq!(mine, vec![1, 3, 5, 10], "{}", store.location());

    let outcomes = write_ok(store, vec![Write::DeletePromise(key(3))]).await;
    assert_eq!(outcomes, vec![Outcome::Done], "{}", store.location());
    assert_eq!(find(store, &key(3)).await, None, "{}", store.location());
    let outcomes = write_ok(store, vec![complete(3, "late", T0)]).await;
    assert_eq!(outcomes, vec![Outcome::NotFound], "{}", store.location());
    // Deleting what does not exist is not an error.
    write_ok(store, vec![Write::DeletePromise(key(3))]).await;
}

async fn find(store: &dyn Storage, key: &PromiseKey) -> Option<PromiseRecord> {
    read(store, "promises", store.promises().await)
        .into_iter()
        .find(|p| &p.key == key)
}

/// Rejection is a settlement like completion: the first of either wins,
/// later ones answer `Completed(false)`, an unknown promise is `NotFound`;
/// a promise's spec (deadline, retention, options) round-trips, and the
/// default spec reads back as the default.
pub async fn promise_settlement(store: &dyn Storage) {
    let worker = fresh_worker("settler");
    let key = |index| PromiseKey {
        worker: worker.clone(),
        index,
    };
    let spec = PromiseSpec {
        deadline: Some(T0 + 660_000),
        retention: Some(1_320_000),
        options: Bytes::from_static(b"\x00{\"type\":\"bool\"}\xff"),
    };
    let reject = |index, error: &'static str, at| Write::RejectPromise {
        key: key(index),
        error: Bytes::from_static(error.as_bytes()),
        at,
    };
    let complete = |index, at| Write::CompletePromise {
        key: key(index),
        data: Bytes::from_static(b"ok"),
        at,
    };
    write_ok(
        store,
        vec![
            Write::CreatePromise {
                key: key(1),
                at: T0,
                spec: spec.clone(),
            },
            Write::CreatePromise {
                key: key(2),
                at: T0,
                spec: PromiseSpec::default(),
            },
        ],
    )
    .await;
    let found = find(store, &key(1)).await;
    assert_eq!(
        found.as_ref().map(|p| &p.spec),
        Some(&spec),
        "{}: a promise's spec round-trips",
        store.location()
    );
    assert_eq!(
        find(store, &key(2)).await.map(|p| p.spec),
        Some(PromiseSpec::default()),
        "{}",
        store.location()
    );

    // Reject then complete, in one batch and across batches.
    let outcomes = write_ok(store, vec![reject(1, "no", T0 + 1), complete(1, T0 + 2)]).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Completed(true), Outcome::Completed(false)],
        "{}",
        store.location()
    );
    let outcomes = write_ok(store, vec![reject(1, "again", T0 + 3)]).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Completed(false)],
        "{}",
        store.location()
    );
    let rejected = find(store, &key(1)).await;
    assert_eq!(
        rejected.as_ref().map(|p| &p.state),
        Some(&PromiseState::Rejected {
            error: Bytes::from_static(b"no"),
            at: T0 + 1
        }),
        "{}: the first settlement, a rejection, wins",
        store.location()
    );
    assert_eq!(
        rejected.map(|p| p.spec),
        Some(spec),
        "{}: settling keeps the spec",
        store.location()
    );

    // Complete then reject.
    let outcomes = write_ok(store, vec![complete(2, T0 + 4), reject(2, "late", T0 + 5)]).await;
    assert_eq!(
        outcomes,
        vec![Outcome::Completed(true), Outcome::Completed(false)],
        "{}",
        store.location()
    );
    assert_eq!(
        find(store, &key(2)).await.map(|p| p.state),
        Some(PromiseState::Completed {
            data: Bytes::from_static(b"ok"),
            at: T0 + 4
        }),
        "{}",
        store.location()
    );
    let outcomes = write_ok(store, vec![reject(9, "nobody", T0)]).await;
    assert_eq!(outcomes, vec![Outcome::NotFound], "{}", store.location());
    assert_eq!(
        PromiseState::Rejected {
            error: Bytes::new(),
            at: 7
        }
        .settled_at(),
        Some(7)
    );
}

/// Reactions: a second put for the same target keeps the first; sources
/// round-trip in order (other workers' promises, any worker name);
/// `reactions()` is ordered by target; a reaction goes with its target
/// promise and with the target's worker, but not with a source's worker.
pub async fn reactions(store: &dyn Storage) {
    let worker = fresh_worker("reactor");
    let elsewhere = WorkerKey {
        component: uuid::Uuid::new_v4(),
        name: "source ✓ / with spaces".to_owned(),
    };
    let key = |worker: &WorkerKey, index| PromiseKey {
        worker: worker.clone(),
        index,
    };
    let reaction = |target, sources: Vec<PromiseKey>, spec: &'static str| ReactionRecord {
        target,
        sources,
        spec: Bytes::from_static(spec.as_bytes()),
        created_at: T0,
    };
    let all_of = reaction(
        key(&worker, 7),
        vec![
            key(&elsewhere, 3),
            key(&worker, 1),
            key(&elsewhere, u64::MAX >> 1),
        ],
        "all",
    );
    let then = reaction(key(&worker, 2), vec![key(&elsewhere, 3)], "then");
    let outcomes = write_ok(
        store,
        vec![
            Write::PutReaction(all_of.clone()),
            Write::PutReaction(then.clone()),
            Write::PutReaction(reaction(key(&worker, 7), vec![], "replayed")),
        ],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Done; 3], "{}", store.location());
    let mine = |all: Vec<ReactionRecord>| -> Vec<ReactionRecord> {
        all.into_iter()
            .filter(|r| r.target.worker == worker)
            .collect()
    };
    let stored = read(store, "reactions", store.reactions().await);
    let targets: Vec<&PromiseKey> = stored.iter().map(|r| &r.target).collect();
    assert!(
        targets.windows(2).all(|pair| pair[0] < pair[1]),
        "{}: reactions() must be ordered by target, got {targets:?}",
        store.location()
    );
    assert_eq!(
        mine(stored),
        vec![then.clone(), all_of.clone()],
        "{}: reactions round-trip, the first put for a target stays",
        store.location()
    );

    // Deleting the reaction, then its target promise, then its worker.
    write_ok(store, vec![Write::DeleteReaction(key(&worker, 2))]).await;
    assert_eq!(
        mine(read(store, "reactions", store.reactions().await)),
        vec![all_of.clone()],
        "{}",
        store.location()
    );
    write_ok(
        store,
        vec![
            Write::PutReaction(then.clone()),
            Write::DeletePromise(key(&worker, 2)),
        ],
    )
    .await;
    assert_eq!(
        mine(read(store, "reactions", store.reactions().await)),
        vec![all_of.clone()],
        "{}: deleting a promise deletes the reaction that settles it",
        store.location()
    );
    write_ok(store, vec![Write::DeleteWorker(elsewhere.clone())]).await;
    assert_eq!(
        mine(read(store, "reactions", store.reactions().await)),
        vec![all_of],
        "{}: a source's worker going away leaves the reaction",
        store.location()
    );
    write_ok(store, vec![Write::DeleteWorker(worker.clone())]).await;
    assert_eq!(
        mine(read(store, "reactions", store.reactions().await)),
        vec![],
        "{}: deleting the target's worker deletes its reactions",
        store.location()
    );
    // Deleting what does not exist is not an error.
    write_ok(store, vec![Write::DeleteReaction(key(&worker, 2))]).await;
}
