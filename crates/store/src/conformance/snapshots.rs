//! Snapshots: one per worker, replaced by the next, dropped with the log
//! entries they cover and with their worker.

use bytes::Bytes;

use super::{T0, append, fresh_worker, read, worker_record, write_ok};
use crate::{SnapshotRecord, Storage, WorkerKey, Write};

fn snapshot(worker: &WorkerKey, index: u64, data: &'static [u8]) -> SnapshotRecord {
    SnapshotRecord {
        worker: worker.clone(),
        index,
        data: Bytes::from_static(data),
        at: T0 + index,
    }
}

async fn stored(store: &dyn Storage, worker: &WorkerKey) -> Option<SnapshotRecord> {
    read(store, "a snapshot", store.snapshot(worker).await)
}

/// A snapshot round-trips; a later one replaces it; truncating the log
/// below its index drops it, truncating above keeps it; deleting the
/// worker drops it; workers' snapshots are apart.
pub async fn snapshots(store: &dyn Storage) {
    let worker = fresh_worker("snapshot");
    let other = fresh_worker("snapshot-other");
    assert_eq!(stored(store, &worker).await, None, "{}", store.location());
    write_ok(
        store,
        vec![
            Write::CreateWorker(worker_record(&worker)),
            append(&worker, 1..=10),
            Write::PutSnapshot(snapshot(&worker, 4, b"\x00four\xff")),
            Write::PutSnapshot(snapshot(&other, 2, b"other")),
        ],
    )
    .await;
    assert_eq!(
        stored(store, &worker).await,
        Some(snapshot(&worker, 4, b"\x00four\xff")),
        "{}: a snapshot round-trips",
        store.location()
    );
    write_ok(
        store,
        vec![Write::PutSnapshot(snapshot(&worker, 8, b"eight"))],
    )
    .await;
    assert_eq!(
        stored(store, &worker).await,
        Some(snapshot(&worker, 8, b"eight")),
        "{}: a later snapshot replaces the earlier",
        store.location()
    );
    let truncate = |after| Write::TruncateOplog {
        worker: worker.clone(),
        after,
    };
    write_ok(store, vec![truncate(9)]).await;
    assert_eq!(
        stored(store, &worker).await.map(|s| s.index),
        Some(8),
        "{}: truncating after the snapshot keeps it",
        store.location()
    );
    write_ok(store, vec![truncate(7)]).await;
    assert_eq!(
        stored(store, &worker).await,
        None,
        "{}: truncating entries a snapshot covers drops it",
        store.location()
    );
    write_ok(
        store,
        vec![Write::PutSnapshot(snapshot(&worker, 6, b"six"))],
    )
    .await;
    write_ok(store, vec![Write::DeleteWorker(worker.clone())]).await;
    assert_eq!(
        stored(store, &worker).await,
        None,
        "{}: deleting the worker drops its snapshot",
        store.location()
    );
    assert_eq!(
        stored(store, &other).await.map(|s| s.data),
        Some(Bytes::from_static(b"other")),
        "{}: other workers keep theirs",
        store.location()
    );
}
