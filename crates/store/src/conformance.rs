//! The behaviour every [`Storage`] backend must have, as a test suite.
//!
//! Each check is a `pub async fn` taking the backend under test and panicking
//! (with the backend's [`Storage::location`] in the message) at the first
//! expectation it violates. Checks create their own components and workers
//! under fresh random ids, so they can run one after another, or at once, on
//! one store that already holds other data; a check never assumes it is
//! alone, which also exercises "a write to one worker leaves the others
//! alone".
//!
//! A backend's tests call [`run_all`] on a fresh store:
//!
//! ```
//! # futures::executor::block_on(async {
//! let store = vow_store::MemoryStorage::new();
//! vow_store::conformance::run_all(&store).await;
//! # });
//! ```
//!
//! The checks need no particular async runtime: they use only the futures
//! the trait returns (a backend that reads on `tokio::task::spawn_blocking`
//! needs its tests to run inside a tokio runtime, as it would in Vow).
//!
//! Enabled by the `conformance` cargo feature; not part of the runtime's API.

mod batches;
mod invocations;
mod lookups;
mod oplog;
mod promises;
mod records;
mod snapshots;

pub use batches::{
    concurrent_writers, empty_batch, failing_batch_is_atomic, grouped_writes_on_the_same_records,
    write_order,
};
pub use invocations::{all_unfinished, delete_worker, invocations};
pub use lookups::lookups;
pub use oplog::{oplog_append_and_page, oplog_truncate};
pub use promises::{promise_settlement, promises, reactions};
pub use records::{components, workers};
pub use snapshots::snapshots;

use bytes::Bytes;
use uuid::Uuid;

use crate::{
    ComponentRecord, Error, Millis, OplogRecord, Outcome, Storage, WorkerKey, WorkerRecord,
    WorkerState, Write,
};

/// Runs every check of this module, one after another, on `store`.
pub async fn run_all(store: &dyn Storage) {
    empty_batch(store).await;
    components(store).await;
    workers(store).await;
    oplog_append_and_page(store).await;
    oplog_truncate(store).await;
    promises(store).await;
    promise_settlement(store).await;
    reactions(store).await;
    lookups(store).await;
    invocations(store).await;
    all_unfinished(store).await;
    snapshots(store).await;
    delete_worker(store).await;
    failing_batch_is_atomic(store).await;
    write_order(store).await;
    grouped_writes_on_the_same_records(store).await;
    concurrent_writers(store).await;
}

/// A fixed time, so records compare equal after a round trip.
const T0: Millis = 1_700_000_000_000;

/// A worker key under a fresh component id.
fn fresh_worker(name: &str) -> WorkerKey {
    WorkerKey {
        component: Uuid::new_v4(),
        name: name.to_owned(),
    }
}

fn component_record(id: Uuid, name: &str, bytes: &'static [u8]) -> ComponentRecord {
    ComponentRecord {
        id,
        name: name.to_owned(),
        sha256: format!("{:064x}", bytes.len()),
        bytes: Bytes::from_static(bytes),
        created_at: T0,
    }
}

fn worker_record(key: &WorkerKey) -> WorkerRecord {
    WorkerRecord {
        key: key.clone(),
        args: vec!["--flag".to_owned(), String::new(), "ünïcødé arg".to_owned()],
        env: vec![
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "x=y".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ],
        created_at: T0,
        state: WorkerState {
            status: "idle".to_owned(),
            last_error: None,
            awaiting: None,
        },
    }
}

fn oplog_record(index: u64) -> OplogRecord {
    OplogRecord {
        index,
        at: T0 + index,
        entry: Bytes::from(format!("entry {index}")),
    }
}

fn append(worker: &WorkerKey, indices: impl IntoIterator<Item = u64>) -> Write {
    Write::AppendOplog {
        worker: worker.clone(),
        records: indices.into_iter().map(oplog_record).collect(),
    }
}

/// Writes `batch` and expects it to succeed.
async fn write_ok(store: &dyn Storage, batch: Vec<Write>) -> Vec<Outcome> {
    let len = batch.len();
    let what = describe(&batch);
    match store.write(batch).await {
        Ok(outcomes) => {
            assert_eq!(
                outcomes.len(),
                len,
                "{}: one outcome per write of {what}",
                store.location()
            );
            outcomes
        }
        Err(e) => panic!("{}: {what} failed: {e}", store.location()),
    }
}

/// Writes `batch` and expects it to be refused.
async fn write_err(store: &dyn Storage, batch: Vec<Write>) -> Error {
    let what = describe(&batch);
    match store.write(batch).await {
        Ok(outcomes) => panic!(
            "{}: {what} should have been refused, got {outcomes:?}",
            store.location()
        ),
        Err(e) => e,
    }
}

/// Expects `error` to be a conflict whose message contains `needle`.
fn assert_conflict(store: &dyn Storage, error: &Error, needle: &str) {
    match error {
        Error::Conflict(message) => assert!(
            message.contains(needle),
            "{}: the conflict message {message:?} should name {needle:?}",
            store.location()
        ),
        other => panic!(
            "{}: expected a conflict naming {needle:?}, got {other:?}",
            store.location()
        ),
    }
}

/// A short description of a batch for messages (entries can be large).
fn describe(batch: &[Write]) -> String {
    let kinds: Vec<&str> = batch
        .iter()
        .map(|w| match w {
            Write::PutComponent(_) => "put-component",
            Write::CreateWorker(_) => "create-worker",
            Write::UpdateWorker { .. } => "update-worker",
            Write::DeleteWorker(_) => "delete-worker",
            Write::AppendOplog { .. } => "append-oplog",
            Write::TruncateOplog { .. } => "truncate-oplog",
            Write::CreatePromise { .. } => "create-promise",
            Write::CompletePromise { .. } => "complete-promise",
            Write::RejectPromise { .. } => "reject-promise",
            Write::PutReaction(_) => "put-reaction",
            Write::DeleteReaction(_) => "delete-reaction",
            Write::DeletePromise(_) => "delete-promise",
            Write::Enqueue(_) => "enqueue",
            Write::SetInvocationState { .. } => "set-invocation-state",
            Write::PutSnapshot(_) => "put-snapshot",
        })
        .collect();
    format!("batch [{}]", kinds.join(", "))
}

/// The indices of a worker's whole log.
/// The indices of a worker's whole log; also checks that
/// `last_oplog_index` agrees with it.
async fn log_indices(store: &dyn Storage, worker: &WorkerKey) -> Vec<u64> {
    let indices: Vec<u64> = match store.oplog(worker, 1, usize::MAX).await {
        Ok(records) => records.iter().map(|r| r.index).collect(),
        Err(e) => panic!("{}: reading the oplog of {worker}: {e}", store.location()),
    };
    let last = read(
        store,
        "the last oplog index",
        store.last_oplog_index(worker).await,
    );
    assert_eq!(
        last,
        indices.last().copied().unwrap_or(0),
        "{}: last_oplog_index of {worker} disagrees with its log {indices:?}",
        store.location()
    );
    indices
}

/// Unwraps a read, naming what was read on failure.
fn read<T>(store: &dyn Storage, what: &str, result: crate::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{}: reading {what}: {e}", store.location()),
    }
}
