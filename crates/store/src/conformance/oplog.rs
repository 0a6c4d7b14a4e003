//! The operation log: continuity, paging, truncation.

use super::{
    append, assert_conflict, fresh_worker, log_indices, oplog_record, read, write_err, write_ok,
};
use crate::{Outcome, Storage, Write};

/// Appends must continue the log (from 1, no gaps, no repeats, also within
/// one write); a refused append keeps nothing of itself; reads page by
/// `from` and `limit` in index order; logs of different workers are apart.
pub async fn oplog_append_and_page(store: &dyn Storage) {
    let worker = fresh_worker("oplog");
    let other = fresh_worker("oplog-other");

    assert_eq!(log_indices(store, &worker).await, Vec::<u64>::new());
    let error = write_err(store, vec![append(&worker, [2])]).await;
    assert_conflict(store, &error, &worker.name);

    let outcomes = write_ok(store, vec![append(&worker, 1..=4)]).await;
    assert_eq!(outcomes, vec![Outcome::Done], "{}", store.location());
    write_ok(store, vec![append(&worker, 5..=6), append(&worker, 7..=10)]).await;
    write_ok(store, vec![append(&other, 1..=3)]).await;

    let all = read(store, "the oplog", store.oplog(&worker, 1, 100).await);
    assert_eq!(
        all,
        (1..=10).map(oplog_record).collect::<Vec<_>>(),
        "{}: entries round-trip in order",
        store.location()
    );
    let key = &worker;
    let page = move |from, limit| async move {
        read(store, "the oplog", store.oplog(key, from, limit).await)
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(4, 3).await, vec![4, 5, 6], "{}", store.location());
    assert_eq!(page(0, 2).await, vec![1, 2], "{}", store.location());
    assert_eq!(page(9, 100).await, vec![9, 10], "{}", store.location());
    assert_eq!(
        page(11, 100).await,
        Vec::<u64>::new(),
        "{}",
        store.location()
    );
    assert_eq!(page(1, 0).await, Vec::<u64>::new(), "{}", store.location());
    assert_eq!(
        page(u64::MAX, usize::MAX).await,
        Vec::<u64>::new(),
        "{}",
        store.location()
    );
    assert_eq!(log_indices(store, &other).await, vec![1, 2, 3]);

    // A gap, a repeat, and a gap inside one write: each refused whole.
    for bad in [vec![12], vec![10], vec![11, 13], vec![11, 12, 12]] {
        let error = write_err(store, vec![append(&worker, bad.clone())]).await;
        assert_conflict(store, &error, &worker.name);
        assert_eq!(
            log_indices(store, &worker).await,
            (1..=10).collect::<Vec<_>>(),
            "{}: appending {bad:?} must keep nothing of it",
            store.location()
        );
    }
    write_ok(store, vec![append(&worker, 11..=12)]).await;
    assert_eq!(
        log_indices(store, &worker).await,
        (1..=12).collect::<Vec<_>>()
    );
    // An empty append is a no-op.
    write_ok(store, vec![append(&worker, [])]).await;
    assert_eq!(log_indices(store, &worker).await.len(), 12);
}

/// Truncation drops the entries after `after` and the log continues from
/// there; truncating past the end changes nothing.
pub async fn oplog_truncate(store: &dyn Storage) {
    let worker = fresh_worker("truncate");
    let other = fresh_worker("truncate-other");
    write_ok(store, vec![append(&worker, 1..=5), append(&other, 1..=5)]).await;

    let truncate = |after| Write::TruncateOplog {
        worker: worker.clone(),
        after,
    };
    let outcomes = write_ok(store, vec![truncate(3)]).await;
    assert_eq!(outcomes, vec![Outcome::Done], "{}", store.location());
    assert_eq!(log_indices(store, &worker).await, vec![1, 2, 3]);
    assert_eq!(log_indices(store, &other).await, vec![1, 2, 3, 4, 5]);

    // The log continues after the kept entry, with new contents.
    let error = write_err(store, vec![append(&worker, [5])]).await;
    assert_conflict(store, &error, &worker.name);
    write_ok(store, vec![append(&worker, 4..=6)]).await;
    assert_eq!(log_indices(store, &worker).await, vec![1, 2, 3, 4, 5, 6]);

    write_ok(store, vec![truncate(100)]).await;
    assert_eq!(log_indices(store, &worker).await.len(), 6);

    // Truncate and re-append in one batch (re-running an atomic region).
    write_ok(store, vec![truncate(2), append(&worker, 3..=4)]).await;
    assert_eq!(log_indices(store, &worker).await, vec![1, 2, 3, 4]);

    write_ok(store, vec![truncate(0)]).await;
    assert_eq!(log_indices(store, &worker).await, Vec::<u64>::new());
    write_ok(store, vec![append(&worker, [1])]).await;
    assert_eq!(log_indices(store, &worker).await, vec![1]);

    // Truncating a log that does not exist is not an error.
    write_ok(
        store,
        vec![Write::TruncateOplog {
            worker: fresh_worker("no-log"),
            after: 0,
        }],
    )
    .await;
}
