//! What is written stays written: across close and reopen, through a drop
//! with writes still queued, and up to a full disk.

use bytes::Bytes;
use uuid::Uuid;
use vow_store::{
    ComponentRecord, Error, InvocationRecord, InvocationState, OplogRecord, Outcome, PromiseKey,
    Storage, WorkerKey, WorkerRecord, WorkerState, Write,
};
use vow_store_sqlite::{SqliteOptions, SqliteStorage};

use crate::{open, temp_store_path};

fn worker_key(name: &str) -> WorkerKey {
    WorkerKey {
        component: Uuid::new_v4(),
        name: name.to_owned(),
    }
}

fn entry(index: u64) -> OplogRecord {
    OplogRecord {
        index,
        at: 1000 + index,
        entry: Bytes::from(vec![index as u8; 100]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_close_and_reopen() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let worker = worker_key("survivor");
    let component = ComponentRecord {
        id: worker.component,
        name: "survivor".to_owned(),
        sha256: "ab".repeat(32),
        bytes: Bytes::from(vec![7u8; 300_000]),
        created_at: 5,
    };
    let record = WorkerRecord {
        key: worker.clone(),
        args: vec!["a".to_owned()],
        env: vec![("K".to_owned(), "V".to_owned())],
        created_at: 6,
        state: WorkerState {
            status: "suspended".to_owned(),
            last_error: None,
            awaiting: Some(PromiseKey {
                worker: worker.clone(),
                index: 2,
            }),
        },
    };
    let invocation = InvocationRecord {
        worker: worker.clone(),
        seq: 1,
        idempotency_key: Some("once".to_owned()),
        request: Bytes::from_static(b"request"),
        state: InvocationState::Running,
        accepted_at: 7,
    };
    {
        let store = open(&path)?;
        store
            .write(vec![
                Write::PutComponent(component.clone()),
                Write::CreateWorker(record.clone()),
                Write::AppendOplog {
                    worker: worker.clone(),
                    records: (1..=3).map(entry).collect(),
                },
                Write::CreatePromise {
                    key: PromiseKey {
                        worker: worker.clone(),
                        index: 2,
                    },
                    at: 8,
                    spec: Default::default(),
                },
                Write::Enqueue(invocation.clone()),
            ])
            .await?;
    }

    let store = open(&path)?;
    assert_eq!(store.components().await?, vec![component]);
    assert_eq!(store.workers().await?, vec![record]);
    assert_eq!(
        store.oplog(&worker, 1, 10).await?,
        (1..=3).map(entry).collect::<Vec<_>>()
    );
    assert_eq!(store.promises().await?.len(), 1);
    assert_eq!(
        store.unfinished_invocations(&worker).await?,
        vec![invocation]
    );
    assert_eq!(store.last_invocation_seq(&worker).await?, 1);

    // The reopened store takes writes that continue the old data.
    let outcomes = store
        .write(vec![
            Write::AppendOplog {
                worker: worker.clone(),
                records: vec![entry(4)],
            },
            Write::CompletePromise {
                key: PromiseKey {
                    worker: worker.clone(),
                    index: 2,
                },
                data: Bytes::from_static(b"done"),
                at: 9,
            },
        ])
        .await?;
    assert_eq!(outcomes, vec![Outcome::Done, Outcome::Completed(true)]);
    Ok(())
}

/// Dropping the store commits the batches already queued, even those whose
/// futures nobody kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_commits_queued_writes() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let worker = worker_key("queued");
    let answered = {
        let store = open(&path)?;
        for index in 1..=200 {
            drop(store.write(vec![Write::AppendOplog {
                worker: worker.clone(),
                records: vec![entry(index)],
            }]));
        }
        // A future kept past the drop is answered too.
        store.write(vec![Write::AppendOplog {
            worker: worker.clone(),
            records: vec![entry(201)],
        }])
    };
    assert_eq!(answered.await?, vec![Outcome::Done]);
    let store = open(&path)?;
    assert_eq!(store.oplog(&worker, 1, 1000).await?.len(), 201);
    Ok(())
}

/// A write that does not fit is refused with `Error::Full`, alone: batches
/// around it commit, and the store goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_the_batch_that_does_not_fit() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = SqliteStorage::open(&path, SqliteOptions::default().max_size(Some(256 * 1024)))?;
    let small = |name: &str| Write::CreatePromise {
        key: PromiseKey {
            worker: worker_key(name),
            index: 1,
        },
        at: 1,
        spec: Default::default(),
    };
    let huge = Write::PutComponent(ComponentRecord {
        id: Uuid::new_v4(),
        name: "huge".to_owned(),
        sha256: String::new(),
        bytes: Bytes::from(vec![1u8; 1024 * 1024]),
        created_at: 1,
    });
    let before = store.write(vec![small("before")]);
    let too_big = store.write(vec![huge.clone()]);
    let after = store.write(vec![small("after")]);
    let (before, too_big, after) = futures::join!(before, too_big, after);

    match too_big {
        Err(Error::Full { location, .. }) => assert_eq!(location, path.display().to_string()),
        other => anyhow::bail!("expected Error::Full, got {other:?}"),
    }
    // The batches before and after it commit, even though they share its
    // transaction and SQLite rolls a transaction back on SQLITE_FULL.
    assert!(before.is_ok(), "the batch before a full one: {before:?}");
    assert!(after.is_ok(), "the batch after a full one: {after:?}");
    let promises = store.promises().await?;
    let mut names: Vec<&str> = promises
        .iter()
        .map(|p| p.key.worker.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["after", "before"]);
    assert!(store.components().await?.is_empty());

    // Still usable, and still full for what does not fit.
    store.write(vec![small("later")]).await?;
    assert!(matches!(
        store.write(vec![huge]).await,
        Err(Error::Full { .. })
    ));
    let stats = store.stats();
    assert!(stats.failed_batches >= 2, "{stats:?}");
    Ok(())
}

/// Numbers past SQLite's signed integers are refused, not wrapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_too_large_are_refused() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = open(&path)?;
    let worker = worker_key("big");
    let result = store
        .write(vec![Write::CreatePromise {
            key: PromiseKey {
                worker: worker.clone(),
                index: u64::MAX,
            },
            at: 1,
            spec: Default::default(),
        }])
        .await;
    assert!(
        matches!(&result, Err(Error::Backend(m)) if m.contains("out of range")),
        "{result:?}"
    );
    assert!(store.promises().await?.is_empty());
    Ok(())
}
