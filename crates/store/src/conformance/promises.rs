//! Promises: idempotent creation, first-writer-wins completion, deletion.

use bytes::Bytes;

use super::{T0, fresh_worker, read, write_ok};
use crate::{Outcome, PromiseKey, PromiseRecord, PromiseState, Storage, Write};

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
