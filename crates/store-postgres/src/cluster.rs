//! Several nodes on one database: who is in the cluster, and which node
//! runs the workers.
//!
//! Each node has a row in `vow_nodes`, renewed every few seconds: its id,
//! the epoch of this run (a new one at every join), the address other
//! nodes reach it at, until when it counts as alive, and its load. One
//! row of `vow_lease` says which node is **active**: it alone opens the
//! store ([`Cluster::open_store`]) and runs workers; the others are
//! standbys that forward requests to it and take the lease over when it
//! expires.
//!
//! # Fencing
//!
//! Taking the lease gives it a new epoch. The active node's writer checks,
//! in every transaction, that the lease still has that epoch and has not
//! expired, by the database's clock, and holds the row (`FOR KEY SHARE`)
//! until it commits. So a node that lost its lease (a pause, a partition, a
//! slow disk) can never write again: its next transaction finds another
//! epoch or an expired lease and fails with [`Error::Fenced`]. A takeover
//! waits for a transaction that holds the row, so the new node reads
//! everything the old one committed.
//!
//! Times are the database's (`now()`): the nodes' clocks may disagree.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use vow_store::{Error, Result};

use crate::error::{at_open, message};
use crate::{PostgresOptions, PostgresStorage, location_of, schema};

/// How a node joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// This node's id, unique in the cluster (`vow serve --node-id`).
    pub node_id: String,
    /// The base URL other nodes forward requests to
    /// (`vow serve --advertise-url`).
    pub advertise_url: String,
    /// How long a lease or a membership lasts without renewal (default
    /// 10 s): a node that dies is replaced after at most this long.
    pub lease_ttl: Duration,
    /// Longest wait for a connection, and for a former run of this node id
    /// to expire at join (default 10 s, plus the lease time).
    pub connect_timeout: Duration,
}

impl ClusterOptions {
    /// Options for node `node_id` reached at `advertise_url`, with the
    /// default lease time.
    pub fn new(node_id: impl Into<String>, advertise_url: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            advertise_url: advertise_url.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The lease time when none is given.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The lease of the active node, from [`Cluster::try_lead`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its epoch: every write of the store opened with it is checked
    /// against it.
    pub epoch: i64,
}

/// The node that holds the lease, from [`Cluster::active`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveNode {
    /// Its id.
    pub node_id: String,
    /// Where it is reached (`None` if its membership row is gone).
    pub advertise_url: Option<String>,
    /// The lease's epoch.
    pub epoch: i64,
}

/// A node as `vow_nodes` and `vow_lease` show it, from [`Cluster::nodes`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeRecord {
    /// Its id.
    pub node_id: String,
    /// The epoch of its current (or last) run.
    pub epoch: i64,
    /// Where it is reached.
    pub advertise_url: String,
    /// When this run joined, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// Until when it counts as alive without renewing, in milliseconds.
    pub expires_at: i64,
    /// Whether it renewed in time (by the database's clock).
    pub alive: bool,
    /// The lease, when this node holds it and it has not expired: its
    /// epoch and expiry (milliseconds).
    pub lease: Option<(i64, i64)>,
    /// Workers in the store, in memory, and running, as the active node
    /// last reported them (`None` for standbys).
    pub load: Option<NodeLoad>,
}

/// What an active node reports with each renewal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeLoad {
    /// Workers it holds, in memory or not.
    pub workers: u64,
    /// Workers in memory.
    pub resident: u64,
    /// Workers running an invocation.
    pub running: u64,
}

/// What a renewal found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed.
    Renewed,
    /// The lease (or this run's membership) is no longer this node's:
    /// why, for people. The node must stop: its writes are refused.
    Lost(String),
}

/// This node's membership in the cluster of one database.
pub struct Cluster {
    url: String,
    location: String,
    /// For the lease and the membership: never queued behind reads.
    pool: Pool,
    /// For `GET /v1/nodes` and a standby's look at the active node.
    reads: Pool,
    node_id: String,
    epoch: i64,
    ttl: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("location", &self.location)
            .field("node_id", &self.node_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Milliseconds of a duration, for SQL intervals.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `$n * interval '1 millisecond'`, in a statement.
const TTL: &str = "($2::float8 * interval '1 millisecond')";

/// How often a node whose id is still held by its former run looks again.
const JOIN_RETRY: Duration = Duration::from_millis(200);

impl Cluster {
    /// Joins the cluster on the database at `url`: creates or migrates
    /// Vow's tables, refuses when a node outside any cluster holds the
    /// database, and registers this run of the node with a new epoch. A
    /// former run of the same node id that has not expired yet (a quick
    /// restart) is waited for; a live node with the same id is refused.
    pub async fn join(url: &str, options: ClusterOptions) -> Result<Self> {
        if options.node_id.is_empty() || options.node_id.len() > 63 {
            return Err(Error::Open {
                location: "postgres".to_owned(),
                reason: "a node id is 1 to 63 characters".to_owned(),
            });
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| Error::Open {
            location: "postgres".to_owned(),
            reason: format!("invalid database URL: {}", message(&e)),
        })?;
        config.connect_timeout(options.connect_timeout);
        config.application_name(format!("vow node {}", options.node_id));
        let location = location_of(&config);
        let mut client = crate::writer::connect(&config, &location)
            .await
            .map_err(|e| at_open(&location, &e))?;
        schema::migrate(&mut client, &location).await?;
        // A node outside the cluster holds the node lock, exclusively,
        // while it runs (the active node of a cluster holds it shared).
        crate::claim::share_or_refuse(&client, &location).await?;
        client
            .execute(
                "SELECT pg_advisory_unlock_shared($1)",
                &[&crate::claim::NODE_LOCK],
            )
            .await
            .map_err(|e| at_open(&location, &e))?;
        drop(client);
        // The lease's statements are bounded on the server too: taking it
        // waits for the active node's transaction that holds it, and a
        // frozen one must not hold a standby's tick up; nor may a
        // statement the node gave up on commit much later.
        let bound = (options.lease_ttl / 4).as_millis().max(1);
        crate::add_option(&mut config, &format!("lock_timeout={bound}"));
        crate::add_option(&mut config, &format!("statement_timeout={bound}"));
        let pool = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .wait_timeout(Some(options.connect_timeout))
                .create_timeout(Some(options.connect_timeout))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| Error::Open {
                    location: location.clone(),
                    reason: e.to_string(),
                })
        };
        let (reads, pool) = (pool(2)?, pool(1)?);
        let deadline = tokio::time::Instant::now() + options.lease_ttl + options.connect_timeout;
        let mut told = false;
        let epoch = loop {
            let client = pool.get().await.map_err(|e| Error::Open {
                location: location.clone(),
                reason: e.to_string(),
            })?;
            let row = client
                .query_opt(
                    &format!(
                        "INSERT INTO vow_nodes (node_id, epoch, advertise_url, started_at, expires_at)
                         VALUES ($1, nextval('vow_epochs'), $3, now(), now() + {TTL})
                         ON CONFLICT (node_id) DO UPDATE SET
                             epoch = excluded.epoch, advertise_url = excluded.advertise_url,
                             started_at = excluded.started_at, expires_at = excluded.expires_at,
                             workers = NULL, resident = NULL, running = NULL
                         WHERE vow_nodes.expires_at <= now()
                         RETURNING epoch"
                    ),
                    &[&options.node_id, &millis(options.lease_ttl), &options.advertise_url],
                )
                .await
                .map_err(|e| at_open(&location, &e))?;
            if let Some(row) = row {
                break row.get::<_, i64>(0);
            }
            let held: Option<(String, f64)> = client
                .query_opt(
                    "SELECT advertise_url, extract(epoch FROM expires_at - now())::float8
                     FROM vow_nodes WHERE node_id = $1",
                    &[&options.node_id],
                )
                .await
                .map_err(|e| at_open(&location, &e))?
                .map(|row| (row.get(0), row.get(1)));
            let (address, left) = held.unwrap_or_default();
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Open {
                    location,
                    reason: format!(
                        "node id {:?} is taken by a live node at {address} (it renewed {:.1} s \
                         ago): give this node another --node-id",
                        options.node_id,
                        (options.lease_ttl.as_secs_f64() - left).max(0.0)
                    ),
                });
            }
            if !told {
                tracing::info!(node = %options.node_id, %address, left_s = left, "waiting for this node id's former run to expire");
                told = true;
            }
            tokio::time::sleep(JOIN_RETRY).await;
        };
        Ok(Self {
            url: url.to_owned(),
            location,
            pool,
            reads,
            node_id: options.node_id,
            epoch,
            ttl: options.lease_ttl,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The epoch of this run of the node.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The lease time.
    pub fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    /// The database, without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        Self::get(&self.pool, &self.location).await
    }

    async fn reader(&self) -> Result<deadpool_postgres::Client> {
        Self::get(&self.reads, &self.location).await
    }

    async fn get(pool: &Pool, location: &str) -> Result<deadpool_postgres::Client> {
        pool.get()
            .await
            .map_err(|e| Error::Backend(format!("{location}: no connection: {e}")))
    }

    fn failed(&self, e: &tokio_postgres::Error) -> Error {
        crate::error::runtime(&self.location, e)
    }

    /// Takes the lease if nobody holds it or its holder's has expired: the
    /// lease, with a new epoch, or `None` when another node holds it.
    pub async fn try_lead(&self) -> Result<Option<Lease>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.failed(&e))?;
        // FOR UPDATE waits for the active node's write transaction, which
        // holds the row FOR KEY SHARE (see `writer::FENCE`): a takeover
        // reads everything the old node committed. Its renewals, which
        // update no key, do not wait for its writes.
        let free = tx
            .query_opt(
                "SELECT 1 FROM vow_lease WHERE id = 1 AND expires_at <= now() FOR UPDATE",
                &[],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if free.is_none() {
            return Ok(None);
        }
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE vow_lease SET node_id = $1, epoch = nextval('vow_epochs'),
                         acquired_at = now(), expires_at = now() + {TTL}
                     WHERE id = 1 AND expires_at <= now()
                     RETURNING epoch"
                ),
                &[&self.node_id, &millis(self.ttl)],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        tx.commit().await.map_err(|e| self.failed(&e))?;
        Ok(row.map(|row| Lease { epoch: row.get(0) }))
    }

    /// The node that holds an unexpired lease, if one does.
    pub async fn active(&self) -> Result<Option<ActiveNode>> {
        let client = self.reader().await?;
        let row = client
            .query_opt(
                "SELECT l.node_id, n.advertise_url, l.epoch
                 FROM vow_lease l LEFT JOIN vow_nodes n ON n.node_id = l.node_id
                 WHERE l.id = 1 AND l.expires_at > now()",
                &[],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(row.map(|row| ActiveNode {
            node_id: row.get(0),
            advertise_url: row.get(1),
            epoch: row.get(2),
        }))
    }

    /// Renews this run's membership (with `load`, for an active node) and,
    /// with `lease`, the lease: both must still be this node's and the
    /// lease unexpired.
    pub async fn renew(&self, lease: Option<Lease>, load: Option<NodeLoad>) -> Result<Renewal> {
        let client = self.client().await?;
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (workers, resident, running) = match load {
            Some(l) => (
                Some(as_i64(l.workers)),
                Some(as_i64(l.resident)),
                Some(as_i64(l.running)),
            ),
            None => (None, None, None),
        };
        let member = client
            .execute(
                &format!(
                    "UPDATE vow_nodes SET expires_at = now() + {TTL},
                         workers = $4, resident = $5, running = $6
                     WHERE node_id = $1 AND epoch = $3"
                ),
                &[
                    &self.node_id,
                    &millis(self.ttl),
                    &self.epoch,
                    &workers,
                    &resident,
                    &running,
                ],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if member == 0 {
            return Ok(Renewal::Lost(format!(
                "this run of node {:?} (epoch {}) was replaced by a newer one",
                self.node_id, self.epoch
            )));
        }
        if let Some(lease) = lease {
            let renewed = client
                .execute(
                    &format!(
                        "UPDATE vow_lease SET expires_at = now() + {TTL}
                         WHERE id = 1 AND node_id = $1 AND epoch = $3 AND expires_at > now()"
                    ),
                    &[&self.node_id, &millis(self.ttl), &lease.epoch],
                )
                .await
                .map_err(|e| self.failed(&e))?;
            if renewed == 0 {
                let holder = match self.active().await {
                    Ok(Some(active)) => {
                        format!(
                            "node {:?} holds it (epoch {})",
                            active.node_id, active.epoch
                        )
                    }
                    Ok(None) => "nobody holds it".to_owned(),
                    Err(e) => e.to_string(),
                };
                return Ok(Renewal::Lost(format!(
                    "the lease of epoch {} expired before this node renewed it; {holder}",
                    lease.epoch
                )));
            }
            // Rows of nodes gone for an hour are of no more use.
            let _ = client
                .execute(
                    "DELETE FROM vow_nodes WHERE expires_at < now() - interval '1 hour'",
                    &[],
                )
                .await;
        }
        Ok(Renewal::Renewed)
    }

    /// Gives the lease up at once (a drain), so that a standby takes over
    /// without waiting for it to expire. Call it after the store opened
    /// with it was closed ([`PostgresStorage::close`]).
    pub async fn release(&self, lease: Lease) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE vow_lease SET expires_at = now() - interval '1 millisecond'
                 WHERE id = 1 AND epoch = $1",
                &[&lease.epoch],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(())
    }

    /// Leaves the cluster: this run's row is marked expired now (it stays
    /// listed, as gone, for an hour).
    pub async fn leave(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE vow_nodes SET expires_at = now() - interval '1 millisecond',
                     workers = NULL, resident = NULL, running = NULL
                 WHERE node_id = $1 AND epoch = $2",
                &[&self.node_id, &self.epoch],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(())
    }

    /// Every node with a row, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let client = self.reader().await?;
        let rows = client
            .query(
                "SELECT n.node_id, n.epoch, n.advertise_url,
                        (extract(epoch FROM n.started_at) * 1000)::bigint,
                        (extract(epoch FROM n.expires_at) * 1000)::bigint,
                        n.expires_at > now(),
                        CASE WHEN l.node_id = n.node_id AND l.expires_at > now()
                             THEN l.epoch END,
                        CASE WHEN isfinite(l.expires_at)
                             THEN (extract(epoch FROM l.expires_at) * 1000)::bigint END,
                        n.workers, n.resident, n.running
                 FROM vow_nodes n LEFT JOIN vow_lease l ON l.id = 1
                 ORDER BY n.node_id",
                &[],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        let count = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|row| {
                let lease_epoch: Option<i64> = row.get(6);
                let lease_expiry: Option<i64> = row.get(7);
                let workers: Option<i64> = row.get(8);
                NodeRecord {
                    node_id: row.get(0),
                    epoch: row.get(1),
                    advertise_url: row.get(2),
                    started_at: row.get(3),
                    expires_at: row.get(4),
                    alive: row.get(5),
                    lease: lease_epoch.zip(lease_expiry),
                    load: workers.map(|w| NodeLoad {
                        workers: count(Some(w)),
                        resident: count(row.get(9)),
                        running: count(row.get(10)),
                    }),
                }
            })
            .collect())
    }

    /// Opens the store for the active node: every write is checked against
    /// `lease` in its own transaction, and fails with [`Error::Fenced`]
    /// once the lease is no longer this node's (see the module docs).
    pub async fn open_store(
        &self,
        lease: Lease,
        options: PostgresOptions,
    ) -> Result<PostgresStorage> {
        PostgresStorage::open(
            &self.url,
            options,
            crate::Mode::Leased(lease.epoch, self.ttl),
        )
        .await
    }
}
