//! Group commit: concurrent batches share transactions, and a failing batch
//! in a group does not take the others down.

use std::sync::Arc;

use futures::future::join_all;
use uuid::Uuid;
use vow_store::{Error, PromiseKey, Storage as _, WorkerKey, Write};

use crate::{open, temp_store_path};

fn promise(worker: &WorkerKey, index: u64) -> Write {
    Write::CreatePromise {
        key: PromiseKey {
            worker: worker.clone(),
            index,
        },
        at: index,
        spec: Default::default(),
    }
}

/// 1000 batches written at once from 8 tasks take far fewer commits than
/// batches, and all of them are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_share_commits() -> anyhow::Result<()> {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 125;
    let (_dir, path) = temp_store_path()?;
    let store = Arc::new(open(&path)?);
    let before = store.stats();

    let tasks = (0..TASKS).map(|task| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let worker = WorkerKey {
                component: Uuid::new_v4(),
                name: format!("task-{task}"),
            };
            // Enqueue every batch first, then wait for all of them.
            let writes: Vec<_> = (1..=PER_TASK)
                .map(|index| store.write(vec![promise(&worker, index)]))
                .collect();
            join_all(writes).await
        })
    });
    for task in join_all(tasks).await {
        for result in task? {
            result?;
        }
    }

    let stats = store.stats();
    let batches = stats.batches - before.batches;
    let commits = stats.commits - before.commits;
    assert_eq!(batches, TASKS * PER_TASK, "{stats:?}");
    assert!(
        commits < batches,
        "{batches} batches took {commits} commits: group commit did not group"
    );
    assert_eq!(stats.failed_batches, before.failed_batches);
    assert_eq!(store.promises().await?.len() as u64, TASKS * PER_TASK);
    Ok(())
}

/// Batches enqueued together land in one group; the conflicting ones fail
/// alone and every other batch of the group commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_batches_in_a_group_fail_alone() -> anyhow::Result<()> {
    let (_dir, path) = temp_store_path()?;
    let store = open(&path)?;
    let worker = WorkerKey {
        component: Uuid::new_v4(),
        name: "group".to_owned(),
    };
    store
        .write(vec![Write::AppendOplog {
            worker: worker.clone(),
            records: vec![vow_store::OplogRecord {
                index: 1,
                at: 1,
                entry: bytes::Bytes::new(),
            }],
        }])
        .await?;
    let before = store.stats();

    // Every third batch repeats oplog index 1 after a promise it created.
    let writes: Vec<_> = (1..=300)
        .map(|i| {
            let mut batch = vec![promise(&worker, i)];
            if i % 3 == 0 {
                batch.push(Write::AppendOplog {
                    worker: worker.clone(),
                    records: vec![vow_store::OplogRecord {
                        index: 1,
                        at: 1,
                        entry: bytes::Bytes::new(),
                    }],
                });
            }
            store.write(batch)
        })
        .collect();
    let results = join_all(writes).await;

    for (i, result) in (1u64..).zip(&results) {
        if i % 3 == 0 {
            assert!(
                matches!(result, Err(Error::Conflict(_))),
                "batch {i}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "batch {i}: {result:?}");
        }
    }
    let indices: Vec<u64> = store
        .promises()
        .await?
        .iter()
        .map(|p| p.key.index)
        .collect();
    let expected: Vec<u64> = (1..=300).filter(|i| i % 3 != 0).collect();
    assert_eq!(indices, expected);
    let stats = store.stats();
    assert_eq!(stats.batches - before.batches, 200, "{stats:?}");
    assert_eq!(
        stats.failed_batches - before.failed_batches,
        100,
        "{stats:?}"
    );
    assert!(stats.commits - before.commits < 300, "{stats:?}");
    Ok(())
}
