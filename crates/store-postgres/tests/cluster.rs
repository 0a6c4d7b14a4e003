//! Nodes of a cluster on one database: the lease, its fencing of writes,
//! membership, and what keeps a cluster and a lone node apart.
//!
//! Needs `VOW_TEST_DATABASE_URL`, as `postgres.rs` does.

use std::time::{Duration, Instant};

use vow_store::{ComponentRecord, Error, Storage as _, Write};
use vow_store_postgres::cluster::{Cluster, ClusterOptions, NodeLoad, Renewal};
use vow_store_postgres::{PostgresOptions, PostgresStorage};

/// A lease that expires while a test waits.
const SHORT: Duration = Duration::from_secs(1);
/// A lease that does not expire during a test, however slow the machine.
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
    // Long enough for a to open its store and write before it expires.
    let ttl = Duration::from_secs(3);
    let a = Cluster::join(&url, options("a", ttl)).await?;
    let b = Cluster::join(&url, options("b", ttl)).await?;
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
    let a = Cluster::join(&url, options("a", LONG)).await?;
    let b = Cluster::join(&url, options("b", LONG)).await?;
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
    // Long before the lease could have expired.
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
    let a = Cluster::join(&url, options("a", SHORT)).await?;
    // Kept alive while a second "a" tries to join.
    let renewing = tokio::spawn(async move {
        loop {
            let _ = a.renew(None, None).await;
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
    // Once it stops renewing, a new run of "a" joins with a new epoch.
    renewing.abort();
    let rejoined = Cluster::join(&url, options("a", LONG)).await?;
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

    // Now the database is free for a lone node, which keeps a cluster out:
    // a node that joined before it cannot open the store with a lease.
    let early = Cluster::join(&url, options("d", LONG)).await?;
    let lone = PostgresStorage::connect(&url, PostgresOptions::default()).await?;
    let lease = early.try_lead().await?.expect("a free lease is taken");
    match early.open_store(lease, PostgresOptions::default()).await {
        Err(Error::Open { reason, .. }) => {
            assert!(
                reason.contains("not in a cluster writes to this database"),
                "{reason}"
            );
        }
        other => anyhow::bail!("a cluster node opened a lone node's database: {other:?}"),
    }
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

/// A takeover waits for the write transaction of the node that held the
/// lease (which holds the lease row until it ends), so the new node reads
/// everything the old one committed; the old node's renewals do not wait
/// for its own writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_the_old_nodes_write_in_flight() -> anyhow::Result<()> {
    let Some(url) = vow_tests::fresh_postgres_database()? else {
        return Ok(());
    };
    let a = Cluster::join(&url, options("a", SHORT)).await?;
    let b = Cluster::join(&url, options("b", SHORT)).await?;
    let lease = a.try_lead().await?.expect("a free lease is taken");

    // a's writer in the middle of a transaction, as the writer's fence
    // check leaves it.
    let (mut writer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let open = writer.transaction().await?;
    let held = open
        .execute(
            "SELECT 1 FROM vow_lease WHERE id = 1 AND epoch = $1 AND expires_at > now() FOR KEY SHARE",
            &[&lease.epoch],
        )
        .await?;
    assert_eq!(held, 1);
    let renewed = Instant::now();
    assert_eq!(a.renew(Some(lease), None).await?, Renewal::Renewed);
    assert!(
        renewed.elapsed() < SHORT / 4,
        "a renewal waited for the node's own write: {:?}",
        renewed.elapsed()
    );

    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    // Expired, but the transaction still holds the row: b waits (and its
    // lock_timeout gives up) rather than take it.
    match b.try_lead().await {
        Err(_) | Ok(None) => {}
        Ok(Some(lease)) => anyhow::bail!("taken during the old node's write: {lease:?}"),
    }
    open.commit().await?;
    assert!(
        b.try_lead().await?.is_some(),
        "not taken after the write ended"
    );
    Ok(())
}
