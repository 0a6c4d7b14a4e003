//! Nodes of a cluster on one database: membership, owners of workers, the
//! fencing of a node whose run is over, the news of other nodes' changes,
//! and what keeps a cluster and a lone node apart.
//!
//! Needs `VOW_TEST_DATABASE_URL`, as `postgres.rs` does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use vow_store::{
    Change, ComponentRecord, Error, InvocationRecord, InvocationState, PromiseKey, Storage as _,
    WorkerKey, WorkerRecord, Write,
};
use vow_store_postgres::cluster::{Cluster, ClusterOptions, NodeLoad, Owner, Renewal};
use vow_store_postgres::{PostgresOptions, PostgresStorage};

/// A run that expires while a test waits.
const SHORT: Duration = Duration::from_secs(1);
/// A run that does not expire during a test, however slow the machine.
const LONG: Duration = Duration::from_secs(120);

fn options(node: &str, lease_ttl: Duration) -> ClusterOptions {
    ClusterOptions {
        lease_ttl,
        connect_timeout: Duration::from_secs(5),
        ..ClusterOptions::new(node, format!("http://{node}.example:9881"))
    }
}

fn component(name: &str) -> Write {
    Write::PutComponent(ComponentRecord {
        id: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        sha256: "00".repeat(32),
        bytes: bytes::Bytes::from_static(b"\0asm"),
        created_at: 1,
    })
}

fn key(name: &str) -> WorkerKey {
    WorkerKey {
        component: uuid::Uuid::nil(),
        name: name.to_owned(),
    }
}

fn worker(name: &str) -> Write {
    Write::CreateWorker(WorkerRecord {
        key: key(name),
        args: Vec::new(),
        env: Vec::new(),
        created_at: 1,
        state: Default::default(),
    })
}

/// An invocation queued on worker `name`: work to do.
fn queued(name: &str) -> Write {
    Write::Enqueue(InvocationRecord {
        worker: key(name),
        seq: 1,
        idempotency_key: None,
        request: bytes::Bytes::from_static(b"{}"),
        state: InvocationState::Queued,
        accepted_at: 1,
    })
}

fn me(owner: &Owner) -> bool {
    *owner == Owner::Me
}

/// A node owns the workers it creates; once its run expires, every write
/// of its store is refused as fenced, its renewals say so, and another
/// node takes its workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_run_expired_can_never_write_again() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    // Long enough for a to open its store and write before it expires.
    let ttl = Duration::from_secs(3);
    let a = Cluster::join(&url, options("a", ttl)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
    assert_ne!(a.epoch(), b.epoch());

    let store_a = a.open_store(PostgresOptions::default()).await?;
    store_a
        .write(vec![component("before"), worker("w")])
        .await?;
    assert_eq!(a.renew(NodeLoad::default()).await?, Renewal::Renewed);
    assert_eq!(a.owner(&key("w")).await?, Owner::Me);
    match b.owner(&key("w")).await? {
        Owner::Node {
            node_id,
            url,
            for_at_least,
        } => {
            assert_eq!(
                (node_id.as_str(), url.as_str()),
                ("a", "http://a.example:9881")
            );
            assert!(
                for_at_least <= ttl && for_at_least > ttl / 2,
                "{for_at_least:?}"
            );
        }
        other => anyhow::bail!("a's worker is not a's: {other:?}"),
    }
    // Taken by nobody else while a lives.
    assert!(!me(&b.claim(&key("w")).await?));
    assert_eq!(b.claim(&key("none")).await?, Owner::Missing);

    // a stops renewing (a pause, a partition): its run expires.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    match store_a.write(vec![component("after")]).await {
        Err(Error::Fenced { holder, .. }) => {
            assert!(holder.contains("expired before it renewed"), "{holder}");
        }
        other => anyhow::bail!("a write of an expired run was not fenced: {other:?}"),
    }
    // Once fenced, always fenced, and the server is told.
    assert!(matches!(
        store_a.write(vec![component("later")]).await,
        Err(Error::Fenced { .. })
    ));
    tokio::time::timeout(Duration::from_secs(5), store_a.taken_over()).await?;
    match a.renew(NodeLoad::default()).await? {
        Renewal::Lost(why) => assert!(why.contains("expired"), "{why}"),
        Renewal::Renewed => anyhow::bail!("an expired run was renewed"),
    }

    // b keeps itself alive and takes a's worker.
    assert_eq!(b.renew(NodeLoad::default()).await?, Renewal::Renewed);
    assert_eq!(b.owner(&key("w")).await?, Owner::Free);
    assert_eq!(b.claim(&key("w")).await?, Owner::Me);
    let store_b = b.open_store(PostgresOptions::default()).await?;
    store_b.write(vec![component("by b")]).await?;
    let mut names: Vec<String> = store_b
        .components()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    names.sort();
    assert_eq!(names, ["before", "by b"]);

    let nodes = b.nodes().await?;
    let seen: Vec<(&str, bool, u64)> = nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.alive, n.owned))
        .collect();
    assert_eq!(seen, [("a", false, 0), ("b", true, 1)]);
    Ok(())
}

/// A drain: the store is closed (what was sent before is written, what
/// comes after is refused) and the node leaves, so that its workers are
/// free at once rather than after its run expires; sweeps by two nodes at
/// the same moment share out those with work to do, each taken once, and
/// leave the others free until a node needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_left_frees_its_workers_at_once() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", LONG)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
    let c = Cluster::join(&url, options("c", LONG)).await?;
    let store = a.open_store(PostgresOptions::default()).await?;
    let names: Vec<String> = (0..300).map(|i| format!("w{i:03}")).collect();
    let mut writes: Vec<Write> = names.iter().map(|n| worker(n)).collect();
    writes.extend(names.iter().map(|n| queued(n)));
    writes.extend((0..20).map(|i| worker(&format!("idle{i:02}"))));
    let written = store.write(writes);
    store.close().await;
    written.await?;
    assert!(matches!(
        store.write(vec![component("after close")]).await,
        Err(Error::Closed)
    ));
    assert!(
        b.sweep(10).await?.is_empty(),
        "a live node's workers were taken"
    );
    a.leave().await?;
    // Long before a's run could have expired.
    let (by_b, by_c) = tokio::join!(
        async {
            let mut all = Vec::new();
            loop {
                let batch = b.sweep(50).await?;
                if batch.is_empty() {
                    return anyhow::Ok(all);
                }
                all.extend(batch);
            }
        },
        async {
            let mut all = Vec::new();
            loop {
                let batch = c.sweep(50).await?;
                if batch.is_empty() {
                    return anyhow::Ok(all);
                }
                all.extend(batch);
            }
        }
    );
    let (by_b, by_c) = (by_b?, by_c?);
    let b_set: BTreeSet<String> = by_b.iter().map(|k| k.name.clone()).collect();
    let c_set: BTreeSet<String> = by_c.iter().map(|k| k.name.clone()).collect();
    assert_eq!(b_set.len() + c_set.len(), names.len(), "taken twice");
    assert!(b_set.is_disjoint(&c_set));
    let all: BTreeSet<String> = b_set.union(&c_set).cloned().collect();
    assert_eq!(all, names.iter().cloned().collect::<BTreeSet<_>>());
    let gone = b.nodes().await?;
    assert!(!gone[0].alive, "a left but is listed alive: {gone:?}");
    // Workers with nothing to do stay free; a request takes one.
    assert_eq!(b.owner(&key("idle07")).await?, Owner::Free);
    assert_eq!(c.claim(&key("idle07")).await?, Owner::Me);
    assert!(b.sweep(50).await?.is_empty());
    Ok(())
}

/// A node lets go of a worker: it is free, taken by the first node that
/// needs it, and the node that let go of it has no say any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_let_go_of_is_free_for_the_next_node() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", LONG)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
    let store = a.open_store(PostgresOptions::default()).await?;
    store.write(vec![worker("w"), worker("v")]).await?;
    assert_eq!(b.release(&[key("w")]).await?, Vec::<WorkerKey>::new());
    assert_eq!(a.release(&[key("w"), key("none")]).await?, vec![key("w")]);
    assert_eq!(a.owner(&key("w")).await?, Owner::Free);
    assert!(me(&a.owner(&key("v")).await?), "v was let go of too");
    assert_eq!(b.claim(&key("w")).await?, Owner::Me);
    assert!(matches!(a.claim(&key("w")).await?, Owner::Node { node_id, .. } if node_id == "b"));
    assert_eq!(a.release(&[key("w")]).await?, Vec::<WorkerKey>::new());
    let owned: Vec<(String, u64)> = a
        .nodes()
        .await?
        .into_iter()
        .map(|n| (n.node_id, n.owned))
        .collect();
    assert_eq!(owned, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    Ok(())
}

/// A write of a node whose check of its run waited behind a takeover's
/// lock, begun before the run expired, is refused once the takeover
/// (after the expiry) let go: the check is made again, by the clock of
/// that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_behind_a_takeover_is_fenced() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", SHORT)).await?;
    let store = a.open_store(PostgresOptions::default()).await?;
    store.write(vec![worker("w")]).await?;
    assert_eq!(a.renew(NodeLoad::default()).await?, Renewal::Renewed);

    // A takeover holding a's row, as `claim` does.
    let (mut taker, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let tx = taker.transaction().await?;
    tx.execute(
        "SELECT 1 FROM vow_nodes WHERE node_id = 'a' FOR UPDATE",
        &[],
    )
    .await?;
    // a writes before its run expires; its check waits for the lock.
    let write = tokio::spawn(store.write(vec![component("late")]));
    tokio::time::sleep(SHORT + Duration::from_millis(300)).await;
    assert!(
        !write.is_finished(),
        "the write did not wait for the takeover"
    );
    tx.execute(
        "UPDATE vow_nodes SET expires_at = expires_at WHERE node_id = 'a'",
        &[],
    )
    .await?;
    tx.commit().await?;
    match tokio::time::timeout(Duration::from_secs(5), write).await?? {
        Err(Error::Fenced { .. }) => {}
        other => anyhow::bail!("a write queued behind a takeover was not fenced: {other:?}"),
    }
    let names: Vec<String> = store_names(&url).await?;
    assert!(!names.contains(&"late".to_owned()), "{names:?}");
    Ok(())
}

/// The components' names, read by a connection of the test's own.
async fn store_names(url: &str) -> anyhow::Result<Vec<String>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client
        .query("SELECT name FROM components", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Node ids are unique among live nodes; a lone node (no cluster) and a
/// cluster never share a database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_id_a_lone_node_and_a_cluster_exclude_each_other() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", SHORT)).await?;
    // Kept alive while a second "a" tries to join.
    let renewing = tokio::spawn(async move {
        loop {
            let _ = a.renew(NodeLoad::default()).await;
            tokio::time::sleep(SHORT / 4).await;
        }
    });
    let again = Cluster::join(
        &url,
        ClusterOptions {
            connect_timeout: Duration::from_millis(200),
            ..options("a", SHORT)
        },
    )
    .await;
    match again {
        Err(Error::Open { reason, .. }) => {
            assert!(
                reason.contains("node id \"a\" is taken by a live node"),
                "{reason}"
            );
        }
        other => anyhow::bail!("a second live node a joined: {other:?}"),
    }
    match Cluster::join(&url, options("a b", LONG)).await {
        Err(Error::Open { reason, .. }) => {
            assert!(reason.contains("invalid node id \"a b\""), "{reason}");
        }
        other => anyhow::bail!("a node id with a space was taken: {other:?}"),
    }
    // Once it stops renewing, a new run of "a" joins with a new epoch.
    renewing.abort();
    let rejoined = Cluster::join(&url, options("a", LONG)).await?;
    let store = rejoined.open_store(PostgresOptions::default()).await?;

    let lone = PostgresStorage::connect(
        &url,
        PostgresOptions {
            connect_timeout: Duration::from_millis(200),
            ..PostgresOptions::default()
        },
    )
    .await;
    match lone {
        Err(Error::Open { reason, .. }) => {
            assert!(
                reason.contains("a Vow cluster runs on this database"),
                "{reason}"
            );
        }
        other => anyhow::bail!("a lone node opened a cluster's database: {other:?}"),
    }
    store.close().await;
    drop(store);
    rejoined.leave().await?;

    // Now the database is free for a lone node, which keeps a cluster out.
    let lone = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    match Cluster::join(&url, options("c", LONG)).await {
        Err(Error::Open { reason, .. }) => {
            assert!(
                reason.contains("not in a cluster writes to this database"),
                "{reason}"
            );
        }
        other => anyhow::bail!("a node joined a lone node's database: {other:?}"),
    }
    drop(lone);
    Ok(())
}

/// Taking a worker from a node whose run expired waits for that node's
/// write transaction (which holds the node's row until it ends), so the
/// new owner reads everything the old one committed; the old node's
/// renewals do not wait for its own writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_the_old_nodes_write_in_flight() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", SHORT)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
    let store = a.open_store(PostgresOptions::default()).await?;
    store.write(vec![worker("w")]).await?;

    // a's writer in the middle of a transaction, as the writer's fence
    // check leaves it.
    let (mut writer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let open = writer.transaction().await?;
    let held = open
        .execute(
            "SELECT 1 FROM vow_nodes WHERE node_id = $1 AND epoch = $2 AND expires_at > now()
             FOR KEY SHARE",
            &[&"a", &a.epoch()],
        )
        .await?;
    assert_eq!(held, 1);
    let renewed = Instant::now();
    assert_eq!(a.renew(NodeLoad::default()).await?, Renewal::Renewed);
    assert!(
        renewed.elapsed() < SHORT / 4,
        "a renewal waited for the node's own write: {:?}",
        renewed.elapsed()
    );

    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    // Expired, but the transaction still holds the row: b waits (and its
    // lock_timeout gives up) rather than take the worker.
    match b.claim(&key("w")).await {
        Err(_) => {}
        Ok(owner) => anyhow::bail!("taken during the old node's write: {owner:?}"),
    }
    open.commit().await?;
    assert_eq!(b.claim(&key("w")).await?, Owner::Me);
    Ok(())
}

/// Next change on `stream`, or `None` after a second.
async fn next(stream: &mut futures::stream::BoxStream<'static, Change>) -> Option<Change> {
    tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .ok()
        .flatten()
}

/// What a node's writer commits reaches the other nodes as news, in
/// commit order; a node does not hear of its own writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_hears_what_the_others_commit() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", LONG)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
    let store_a = a.open_store(PostgresOptions::default()).await?;
    let store_b = b.open_store(PostgresOptions::default()).await?;
    let mut news_a = store_a.remote_changes().expect("a cluster store reports");
    let mut news_b = store_b.remote_changes().expect("a cluster store reports");
    assert!(store_b.remote_changes().is_none(), "handed out twice");

    let promise = PromiseKey {
        worker: key("w"),
        index: 3,
    };
    let put = component("c");
    let Write::PutComponent(record) = &put else {
        unreachable!()
    };
    let id = record.id;
    store_a
        .write(vec![
            put.clone(),
            worker("w"),
            Write::CreatePromise {
                key: promise.clone(),
                at: 1,
                spec: Default::default(),
            },
        ])
        .await?;
    store_a
        .write(vec![Write::CompletePromise {
            key: promise.clone(),
            data: bytes::Bytes::from_static(b"ok"),
            at: 2,
        }])
        .await?;
    assert_eq!(next(&mut news_b).await, Some(Change::Component(id)));
    assert_eq!(next(&mut news_b).await, Some(Change::Worker(key("w"))));
    assert_eq!(
        next(&mut news_b).await,
        Some(Change::Promise(promise.clone()))
    );
    assert_eq!(
        next(&mut news_b).await,
        Some(Change::Promise(promise.clone()))
    );
    // A settlement that loses changes nothing, and tells nobody.
    store_b
        .write(vec![Write::CompletePromise {
            key: promise.clone(),
            data: bytes::Bytes::from_static(b"late"),
            at: 3,
        }])
        .await?;
    store_b
        .write(vec![Write::DeletePromise(promise.clone())])
        .await?;
    assert_eq!(next(&mut news_a).await, Some(Change::Promise(promise)));
    assert_eq!(next(&mut news_b).await, None, "b heard of its own write");
    Ok(())
}

/// What a sweep counts as work to do for a free worker: an invocation to
/// run (not while the worker is parked on a pending promise), a settled
/// promise it is parked on, a pending timeout, a settled promise past its
/// retention, a continuation; nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_takes_the_free_workers_with_work_to_do() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", LONG)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
    let store = a.open_store(PostgresOptions::default()).await?;
    let promise = |worker: &str, index| PromiseKey {
        worker: key(worker),
        index,
    };
    let create = |worker: &str, index, deadline, retention| Write::CreatePromise {
        key: promise(worker, index),
        at: 1,
        spec: vow_store::PromiseSpec {
            deadline,
            retention,
            options: bytes::Bytes::new(),
        },
    };
    let complete = |worker: &str, index| Write::CompletePromise {
        key: promise(worker, index),
        data: bytes::Bytes::from_static(b"done"),
        at: 2,
    };
    let parked_on = |worker: &str, index| Write::UpdateWorker {
        worker: key(worker),
        state: vow_store::WorkerState {
            status: "suspended".to_owned(),
            last_error: None,
            awaiting: Some(promise(worker, index)),
        },
    };
    let names = [
        "idle",
        "queued",
        "parked",
        "resumable",
        "timer",
        "expired",
        "kept",
        "reacting",
    ];
    let mut writes: Vec<Write> = names.iter().map(|n| worker(n)).collect();
    writes.extend([
        queued("queued"),
        // Parked in its running invocation, on a pending promise.
        queued("parked"),
        create("parked", 1, None, None),
        parked_on("parked", 1),
        // Parked on a promise that settled while it had no owner.
        queued("resumable"),
        create("resumable", 1, None, None),
        parked_on("resumable", 1),
        complete("resumable", 1),
        create("timer", 1, Some(u64::MAX / 2), None),
        // Settled long ago, kept for 1 ms: due to be deleted.
        create("expired", 1, None, Some(1)),
        complete("expired", 1),
        // Kept for a long while yet.
        create("kept", 1, None, Some(u64::MAX / 4)),
        complete("kept", 1),
        create("reacting", 1, None, None),
        Write::PutReaction(vow_store::ReactionRecord {
            target: promise("reacting", 1),
            sources: vec![promise("timer", 1)],
            spec: bytes::Bytes::new(),
            created_at: 1,
        }),
    ]);
    store.write(writes).await?;
    store.close().await;
    a.leave().await?;

    let mut taken: Vec<String> = b.sweep(100).await?.into_iter().map(|k| k.name).collect();
    taken.sort();
    assert_eq!(
        taken,
        ["expired", "queued", "reacting", "resumable", "timer"],
        "the workers with work to do"
    );
    assert!(b.sweep(100).await?.is_empty());
    for name in ["idle", "parked", "kept"] {
        assert_eq!(b.owner(&key(name)).await?, Owner::Free, "{name}");
    }
    Ok(())
}
