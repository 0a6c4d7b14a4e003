//! Nodes of a cluster on one database: the lease, its fencing of writes,
//! membership, and what keeps a cluster and a lone node apart.
//!
//! Needs `VOW_TEST_DATABASE_URL`, as `postgres.rs` does.

use std::time::{Duration, Instant};

use vow_store::{ComponentRecord, Error, Storage as _, Write};
use vow_store_postgres::cluster::{Cluster, ClusterOptions, NodeLoad, Renewal};
use vow_store_postgres::{PostgresOptions, PostgresStorage};

const TTL: Duration = Duration::from_millis(800);

fn options(node: &str) -> ClusterOptions {
    ClusterOptions {
        lease_ttl: TTL,
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

/// Waits until `node` takes the lease (it has to expire first).
async fn lead(node: &Cluster) -> anyhow::Result<vow_store_postgres::cluster::Lease> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(lease) = node.try_lead().await? {
            return Ok(lease);
        }
        anyhow::ensure!(Instant::now() < deadline, "the lease was never free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lease goes to one node at a time; once it expires another takes
/// it with a new epoch, and from then on every write of the first node's
/// store is refused as fenced (and says who holds the lease), while the
/// new holder's writes go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_can_never_write_again() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a")).await?;
    let b = Cluster::join(&url, options("b")).await?;
    assert_ne!(a.epoch(), b.epoch());

    let lease_a = a.try_lead().await?.expect("a free lease is taken");
    assert_eq!(b.try_lead().await?, None, "a held lease is not taken");
    let active = b.active().await?.expect("a node is active");
    assert_eq!(active.node_id, "a");
    assert_eq!(
        active.advertise_url.as_deref(),
        Some("http://a.example:9881")
    );

    let store_a = a.open_store(lease_a, PostgresOptions::default()).await?;
    store_a.write(vec![component("before")]).await?;
    assert_eq!(
        a.renew(Some(lease_a), Some(NodeLoad::default())).await?,
        Renewal::Renewed
    );

    // a stops renewing (a pause, a partition): its lease expires and b
    // takes it.
    let lease_b = lead(&b).await?;
    assert!(lease_b.epoch > lease_a.epoch);
    match store_a.write(vec![component("after")]).await {
        Err(Error::Fenced { holder, .. }) => {
            assert!(holder.contains("node \"b\" holds the lease"), "{holder}");
        }
        other => anyhow::bail!("a write under a lost lease was not fenced: {other:?}"),
    }
    // Once fenced, always fenced, and the server is told.
    assert!(matches!(
        store_a.write(vec![component("later")]).await,
        Err(Error::Fenced { .. })
    ));
    tokio::time::timeout(Duration::from_secs(5), store_a.taken_over()).await?;
    match a.renew(Some(lease_a), None).await? {
        Renewal::Lost(why) => assert!(why.contains("expired"), "{why}"),
        Renewal::Renewed => anyhow::bail!("a lost lease was renewed"),
    }

    let store_b = b.open_store(lease_b, PostgresOptions::default()).await?;
    store_b.write(vec![component("by b")]).await?;
    let names: Vec<String> = store_b
        .components()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["before", "by b"], "{names:?}");

    // b lists both nodes, itself active.
    let nodes = b.nodes().await?;
    let ids: Vec<(&str, bool)> = nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.lease.is_some()))
        .collect();
    assert_eq!(ids, [("a", false), ("b", true)]);
    Ok(())
}

/// A drain: the store is closed (what was sent before is written, what
/// comes after is refused) and the lease given up, so that another node
/// takes it at once rather than after it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_at_once() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a")).await?;
    let b = Cluster::join(&url, options("b")).await?;
    let lease = a.try_lead().await?.expect("a free lease is taken");
    let store = a.open_store(lease, PostgresOptions::default()).await?;
    let written = store.write(vec![component("in flight")]);
    store.close().await;
    written.await?;
    assert!(matches!(
        store.write(vec![component("after close")]).await,
        Err(Error::Closed)
    ));
    a.release(lease).await?;
    a.leave().await?;
    assert!(
        b.try_lead().await?.is_some(),
        "the released lease was not free"
    );
    let gone = b.nodes().await?;
    assert!(!gone[0].alive, "a left but is listed alive: {gone:?}");
    Ok(())
}

/// Node ids are unique among live nodes; a lone node (no cluster) and a
/// cluster never share a database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_id_a_lone_node_and_a_cluster_exclude_each_other() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a")).await?;
    // Kept alive while a second "a" tries to join.
    let renewing = tokio::spawn(async move {
        loop {
            let _ = a.renew(None, None).await;
            tokio::time::sleep(TTL / 4).await;
        }
    });
    let again = Cluster::join(
        &url,
        ClusterOptions {
            connect_timeout: Duration::from_millis(200),
            ..options("a")
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
    // Once it stops renewing, a new run of "a" joins with a new epoch.
    renewing.abort();
    let rejoined = Cluster::join(&url, options("a")).await?;
    let lease = rejoined.try_lead().await?.expect("a free lease is taken");

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
    rejoined.release(lease).await?;
    rejoined.leave().await?;

    // Now the database is free for a lone node, which keeps a cluster out.
    let lone = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    match Cluster::join(&url, options("c")).await {
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
