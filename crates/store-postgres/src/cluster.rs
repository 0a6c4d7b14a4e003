//! Several nodes on one database: who is in the cluster, and which node
//! runs each worker.
//!
//! Each node has a row in `vow_nodes`, renewed every few seconds: its id,
//! the epoch of this run (a new one at every join), the address other
//! nodes reach it at, until when it counts as alive, and its load. Each
//! worker has an owner in `vow_owners`: the node, and the epoch of the run,
//! that runs it. A node owns the workers it creates; a worker whose
//! owner's run is over (it expired, left, or was replaced by a newer run
//! of the same node id), or that has no owner, is **free**, and the first
//! node that needs it takes it ([`Cluster::claim`], [`Cluster::sweep`]).
//!
//! # Fencing
//!
//! A node's writer checks, in every transaction, that its run is still the
//! current one and has not expired, by the database's clock, and holds the
//! node's row (`FOR KEY SHARE`) until it commits. So a node whose run is
//! over (a pause, a partition, a slow disk) can never write again: its
//! next transaction fails with [`Error::Fenced`]. Taking a worker from a
//! node whose run is over first locks that node's row (`FOR UPDATE`),
//! which waits for its transaction in flight: the new owner reads
//! everything the old one committed.
//!
//! Times are the database's (`now()`): the nodes' clocks may disagree.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use vow_store::{Error, Result, WorkerKey};

use crate::error::{at_open, message};
use crate::{PostgresOptions, PostgresStorage, location_of, schema};

/// How a node joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// This node's id, unique in the cluster (`vow serve --node-id`).
    pub node_id: String,
    /// The base URL other nodes forward requests for its workers to
    /// (`vow serve --advertise-url`).
    pub advertise_url: String,
    /// How long a run of the node lasts without renewal (default 10 s):
    /// the workers of a node that dies are taken over after at most this
    /// long.
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

/// A node as `vow_nodes` shows it, from [`Cluster::nodes`].
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
    /// Workers this run owns, as `vow_owners` says now.
    pub owned: u64,
    /// Workers in memory and running, as the node last reported them
    /// (`None` before its first report, and once it left).
    pub load: Option<NodeLoad>,
}

/// Who runs a worker, from [`Cluster::owner`] and [`Cluster::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// No such worker in the store.
    Missing,
    /// This run of this node.
    Me,
    /// Another live node, reached at this address.
    Node {
        /// Its id.
        node_id: String,
        /// Its `advertise_url`.
        url: String,
    },
    /// Nobody: the worker is free (only from [`Cluster::owner`]; a claim
    /// takes it).
    Free,
}

/// What a node reports with each renewal.
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
    /// This run of the node is over (it expired, or a newer run of the
    /// same node id replaced it): why, for people. The node must stop:
    /// its writes are refused, and its workers are free.
    Lost(String),
}

/// This node's membership in the cluster of one database.
pub struct Cluster {
    url: String,
    location: String,
    /// For the membership: never queued behind the rest.
    pool: Pool,
    /// For claims, owners and `GET /v1/nodes`.
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

/// Makes node `$3` (run `$4`) the owner of the workers `($1[i], $2[i])`
/// that are free now, if that run is current: a worker another node took
/// first (its owner is alive by the time the row is locked) is left alone.
const TAKE: &str = "INSERT INTO vow_owners (component, name, node_id, epoch)
     SELECT k.component, k.name, $3, $4 FROM unnest($1::uuid[], $2::text[]) AS k (component, name)
     WHERE EXISTS (SELECT 1 FROM vow_nodes WHERE node_id = $3 AND epoch = $4 AND expires_at > now())
     ON CONFLICT (component, name) DO UPDATE SET node_id = excluded.node_id, epoch = excluded.epoch
     WHERE NOT EXISTS (SELECT 1 FROM vow_nodes n WHERE n.node_id = vow_owners.node_id
                           AND n.epoch = vow_owners.epoch AND n.expires_at > now())";

/// The advisory lock of [`Cluster::one_at_a_time`] ("VowC" in ASCII).
const COMPONENTS_LOCK: i64 = 0x566F_7743;

/// How often a node whose id is still held by its former run looks again.
const JOIN_RETRY: Duration = Duration::from_millis(200);

impl Cluster {
    /// Joins the cluster on the database at `url`: creates or migrates
    /// Vow's tables, refuses when a node outside any cluster holds the
    /// database, and registers this run of the node with a new epoch. A
    /// former run of the same node id that has not expired yet (a quick
    /// restart) is waited for; a live node with the same id is refused.
    pub async fn join(url: &str, options: ClusterOptions) -> Result<Self> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if options.node_id.is_empty()
            || options.node_id.len() > 63
            || !options.node_id.chars().all(allowed)
        {
            return Err(Error::Open {
                location: "postgres".to_owned(),
                reason: format!(
                    "invalid node id {:?}: a node id is 1 to 63 ASCII letters, digits, '.', '_' \
                     or '-'",
                    options.node_id
                ),
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
        // while it runs (the nodes of a cluster hold it shared).
        crate::claim::share_or_refuse(&client, &location).await?;
        client
            .execute(
                "SELECT pg_advisory_unlock_shared($1)",
                &[&crate::claim::NODE_LOCK],
            )
            .await
            .map_err(|e| at_open(&location, &e))?;
        drop(client);
        // The cluster's statements are bounded on the server too: taking a
        // worker waits for its former owner's transaction, and a frozen
        // one must not hold this node's tick up; nor may a statement the
        // node gave up on commit much later.
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

    /// Renews this run's membership, with its load.
    pub async fn renew(&self, load: NodeLoad) -> Result<Renewal> {
        let client = self.client().await?;
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let renewed = client
            .execute(
                &format!(
                    "UPDATE vow_nodes SET expires_at = now() + {TTL},
                         workers = $4, resident = $5, running = $6
                     WHERE node_id = $1 AND epoch = $3 AND expires_at > now()"
                ),
                &[
                    &self.node_id,
                    &millis(self.ttl),
                    &self.epoch,
                    &as_i64(load.workers),
                    &as_i64(load.resident),
                    &as_i64(load.running),
                ],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if renewed == 0 {
            let epoch: Option<i64> = client
                .query_opt(
                    "SELECT epoch FROM vow_nodes WHERE node_id = $1",
                    &[&self.node_id],
                )
                .await
                .map_err(|e| self.failed(&e))?
                .map(|row| row.get(0));
            return Ok(Renewal::Lost(match epoch {
                Some(epoch) if epoch != self.epoch => format!(
                    "this run of node {:?} (epoch {}) was replaced by a newer one (epoch {epoch})",
                    self.node_id, self.epoch
                ),
                _ => format!(
                    "this run of node {:?} (epoch {}) expired before it renewed: the other \
                     nodes take its workers over",
                    self.node_id, self.epoch
                ),
            }));
        }
        // Rows of nodes gone for an hour are of no more use.
        let _ = client
            .execute(
                "DELETE FROM vow_nodes WHERE expires_at < now() - interval '1 hour'",
                &[],
            )
            .await;
        Ok(Renewal::Renewed)
    }

    /// Leaves the cluster: this run's row is marked expired now (it stays
    /// listed, as gone, for an hour), so its workers are free at once (a
    /// drain). Call it after the store was closed
    /// ([`PostgresStorage::close`]), so that nothing it wrote is still in
    /// flight when another node takes its workers.
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

    /// Who runs `worker` now.
    pub async fn owner(&self, worker: &WorkerKey) -> Result<Owner> {
        let client = self.reader().await?;
        self.look(&client, worker).await
    }

    async fn look(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        worker: &WorkerKey,
    ) -> Result<Owner> {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM workers WHERE component = $1 AND name = $2),
                        o.node_id, o.epoch, n.advertise_url,
                        coalesce(n.epoch = o.epoch AND n.expires_at > now(), false)
                 FROM (VALUES (1)) AS one (x)
                 LEFT JOIN vow_owners o ON o.component = $1 AND o.name = $2
                 LEFT JOIN vow_nodes n ON n.node_id = o.node_id",
                &[&worker.component, &worker.name],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if !row.get::<_, bool>(0) {
            return Ok(Owner::Missing);
        }
        let node: Option<String> = row.get(1);
        let epoch: Option<i64> = row.get(2);
        let url: Option<String> = row.get(3);
        Ok(match (node, row.get::<_, bool>(4)) {
            (Some(node), true) if node == self.node_id && epoch == Some(self.epoch) => Owner::Me,
            (Some(node_id), true) => Owner::Node {
                node_id,
                url: url.unwrap_or_default(),
            },
            _ => Owner::Free,
        })
    }

    /// Takes `worker` if it is free: [`Owner::Me`] if this node runs it
    /// now (the caller loads it), the live node that runs it otherwise, or
    /// [`Owner::Missing`]. Taking it from a node whose run is over waits
    /// for that node's write in flight.
    pub async fn claim(&self, worker: &WorkerKey) -> Result<Owner> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await.map_err(|e| self.failed(&e))?;
        let owner = self.look(&tx, worker).await?;
        if owner != Owner::Free {
            return Ok(owner);
        }
        // Its former owner's last transaction, if one is in flight.
        tx.execute(
            "SELECT 1 FROM vow_nodes n JOIN vow_owners o ON o.node_id = n.node_id
             WHERE o.component = $1 AND o.name = $2 FOR UPDATE OF n",
            &[&worker.component, &worker.name],
        )
        .await
        .map_err(|e| self.failed(&e))?;
        let taken = tx
            .execute(
                TAKE,
                &[
                    &vec![worker.component],
                    &vec![worker.name.as_str()],
                    &self.node_id,
                    &self.epoch,
                ],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        let owner = if taken > 0 {
            Owner::Me
        } else {
            // Taken by another node meanwhile, or this run is over.
            match self.look(&tx, worker).await? {
                Owner::Free => {
                    return Err(Error::Fenced {
                        location: self.location.clone(),
                        holder: format!(
                            "the other nodes: this run of node {:?} (epoch {}) expired",
                            self.node_id, self.epoch
                        ),
                    });
                }
                owner => owner,
            }
        };
        tx.commit().await.map_err(|e| self.failed(&e))?;
        Ok(owner)
    }

    /// Takes up to `limit` free workers (those of nodes whose run is over,
    /// and those nobody owns), skipping any another node is taking at the
    /// same moment; the ones taken, which the caller loads. Waits for the
    /// former owners' writes in flight.
    pub async fn sweep(&self, limit: usize) -> Result<Vec<WorkerKey>> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await.map_err(|e| self.failed(&e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "SELECT w.component, w.name, o.node_id FROM workers w
                 LEFT JOIN vow_owners o ON o.component = w.component AND o.name = w.name
                 LEFT JOIN vow_nodes n ON n.node_id = o.node_id AND n.epoch = o.epoch
                      AND n.expires_at > now()
                 WHERE n.node_id IS NULL
                 ORDER BY w.component, w.name
                 LIMIT $1
                 FOR UPDATE OF w SKIP LOCKED",
                &[&limit],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut components = Vec::with_capacity(rows.len());
        let mut names = Vec::with_capacity(rows.len());
        let mut former: Vec<String> = Vec::new();
        for row in &rows {
            components.push(row.get::<_, uuid::Uuid>(0));
            names.push(row.get::<_, String>(1));
            if let Some(node) = row.get::<_, Option<String>>(2)
                && !former.contains(&node)
            {
                former.push(node);
            }
        }
        tx.execute(
            "SELECT 1 FROM vow_nodes WHERE node_id = ANY($1) FOR UPDATE",
            &[&former],
        )
        .await
        .map_err(|e| self.failed(&e))?;
        let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
        let taken = tx
            .query(
                &format!("{TAKE} RETURNING component, name"),
                &[&components, &names_ref, &self.node_id, &self.epoch],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        tx.commit().await.map_err(|e| self.failed(&e))?;
        Ok(taken
            .iter()
            .map(|row| WorkerKey {
                component: row.get(0),
                name: row.get(1),
            })
            .collect())
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
                        (SELECT count(*) FROM vow_owners o
                         WHERE o.node_id = n.node_id AND o.epoch = n.epoch),
                        n.workers, n.resident, n.running
                 FROM vow_nodes n
                 ORDER BY n.node_id",
                &[],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        let count = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|row| {
                let alive: bool = row.get(5);
                let workers: Option<i64> = row.get(7);
                NodeRecord {
                    node_id: row.get(0),
                    epoch: row.get(1),
                    advertise_url: row.get(2),
                    started_at: row.get(3),
                    expires_at: row.get(4),
                    alive,
                    owned: if alive { count(row.get(6)) } else { 0 },
                    load: workers.map(|w| NodeLoad {
                        workers: count(Some(w)),
                        resident: count(row.get(8)),
                        running: count(row.get(9)),
                    }),
                }
            })
            .collect())
    }

    /// Runs `work` while this node holds the cluster's lock for adding
    /// components, so that nodes started together with the same component
    /// files add each of them once (the first adds it; the others find it).
    pub async fn one_at_a_time<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T> {
        let config: tokio_postgres::Config = self.url.parse().map_err(|e| Error::Open {
            location: self.location.clone(),
            reason: format!("invalid database URL: {}", message(&e)),
        })?;
        // A connection of its own: the lock is held for as long as the
        // work takes (compiling, perhaps), and goes with the connection.
        let client = crate::writer::connect(&config, &self.location)
            .await
            .map_err(|e| self.failed(&e))?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&COMPONENTS_LOCK])
            .await
            .map_err(|e| self.failed(&e))?;
        let done = work.await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&COMPONENTS_LOCK])
            .await;
        Ok(done)
    }

    /// Opens this node's store: every write is checked against this run
    /// of the node, and fails with [`Error::Fenced`] once the run is over
    /// (see the module docs); the workers it creates are recorded as its
    /// own; and what the other nodes change comes in on
    /// [`Storage::remote_changes`](vow_store::Storage::remote_changes).
    pub async fn open_store(&self, options: PostgresOptions) -> Result<PostgresStorage> {
        let member = crate::writer::Member {
            node_id: self.node_id.clone(),
            epoch: self.epoch,
        };
        PostgresStorage::open(&self.url, options, crate::Mode::Member(member, self.ttl)).await
    }
}
