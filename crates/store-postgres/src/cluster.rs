//! Several nodes on one database: who is in the cluster, and which node
//! runs each worker.
//!
//! Each node has a row in `vow_nodes`, renewed every few seconds: its id,
//! the epoch of this run (a new one at every join), the address other
//! nodes reach it at, until when it counts as alive, and its load. Each
//! worker has an owner in `vow_owners`: the node, and the epoch of the run,
//! that runs it. A node owns the workers it creates and the ones it takes;
//! it lets go of those that leave its memory with nothing to do
//! ([`Cluster::release`]). A worker whose owner's run is over (it expired,
//! left, or was replaced by a newer run of the same node id), or that has
//! no owner, is **free**, and the first node that needs it takes it: a
//! request about it ([`Cluster::claim`]), or, for a free worker with work
//! of its own (an invocation to run, a settled promise it waits for, a
//! timer, a continuation to fire), a node looking for such workers
//! ([`Cluster::sweep`]).
//!
//! # Fencing
//!
//! A node's writer checks, in every transaction, that its run is still the
//! current one and has not expired, by the database's clock, and holds the
//! node's row (`FOR KEY SHARE`) until it commits. So a node whose run is
//! over (a pause, a partition, a slow disk) can never write again: its
//! next transaction fails with [`Error::Fenced`]. Taking a worker from a
//! node whose run is over first locks that node's row (`FOR UPDATE`),
//! which waits for its transaction in flight, and updates it (so that a
//! transaction of that run waiting behind the lock checks the row again,
//! and finds the run over): the new owner reads everything the old one
//! committed. A node does this once per run that ended; its later
//! takeovers of that run's workers do not wait.
//!
//! Times are the database's (`now()`): the nodes' clocks may disagree.

use std::collections::HashSet;
use std::sync::Mutex;
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
    /// How long this run lasts at least without renewing, counted from
    /// when the question was sent (zero once it is over).
    pub expires_in: Duration,
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
        /// How long its run lasts at least, counted from when the question
        /// was sent (by the database's clock): until then it owns the
        /// worker, unless it lets go of it.
        for_at_least: Duration,
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
    /// Runs of other nodes that are over and whose last write in flight
    /// this node has waited for: they can never commit again.
    ended: Mutex<HashSet<(String, i64)>>,
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
            ended: Mutex::new(HashSet::new()),
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
        Ok(self.look(&client, worker).await?.0)
    }

    /// Who runs `worker`, and the run that owned it last (also when that
    /// run is over).
    async fn look(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        worker: &WorkerKey,
    ) -> Result<(Owner, Option<(String, i64)>)> {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM workers WHERE component = $1 AND name = $2),
                        o.node_id, o.epoch, n.advertise_url,
                        coalesce(n.epoch = o.epoch AND n.expires_at > now(), false),
                        coalesce(extract(epoch FROM n.expires_at - now())::float8, 0)
                 FROM (VALUES (1)) AS one (x)
                 LEFT JOIN vow_owners o ON o.component = $1 AND o.name = $2
                 LEFT JOIN vow_nodes n ON n.node_id = o.node_id",
                &[&worker.component, &worker.name],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if !row.get::<_, bool>(0) {
            return Ok((Owner::Missing, None));
        }
        let node: Option<String> = row.get(1);
        let epoch: Option<i64> = row.get(2);
        let url: Option<String> = row.get(3);
        let left: f64 = row.get(5);
        let former = node.clone().zip(epoch);
        let owner = match (node, row.get::<_, bool>(4)) {
            (Some(node), true) if node == self.node_id && epoch == Some(self.epoch) => Owner::Me,
            (Some(node_id), true) => Owner::Node {
                node_id,
                url: url.unwrap_or_default(),
                for_at_least: Duration::try_from_secs_f64(left).unwrap_or_default(),
            },
            _ => Owner::Free,
        };
        Ok((owner, former))
    }

    /// Waits, in `tx`, for the last write in flight of each run in
    /// `former` that is over and that this node has not waited for yet,
    /// and updates their rows so that none of them can commit again (see
    /// the module docs). The runs to remember once `tx` commits.
    async fn wait_for_ended(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        former: Vec<(String, i64)>,
    ) -> Result<Vec<(String, i64)>> {
        let waiting: Vec<(String, i64)> = {
            let ended = self
                .ended
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            former
                .into_iter()
                .filter(|run| !ended.contains(run))
                .collect()
        };
        if waiting.is_empty() {
            return Ok(waiting);
        }
        let nodes: Vec<&str> = waiting.iter().map(|(node, _)| node.as_str()).collect();
        let epochs: Vec<i64> = waiting.iter().map(|(_, epoch)| *epoch).collect();
        tx.execute(
            "SELECT 1 FROM vow_nodes WHERE node_id = ANY($1) FOR UPDATE",
            &[&nodes],
        )
        .await
        .map_err(|e| self.failed(&e))?;
        // A new version of each row of a run that is over: a write of that
        // run queued behind this lock checks the row again.
        tx.execute(
            "UPDATE vow_nodes n SET expires_at = n.expires_at
             FROM unnest($1::text[], $2::int8[]) AS r (node_id, epoch)
             WHERE n.node_id = r.node_id AND n.epoch = r.epoch AND n.expires_at <= now()",
            &[&nodes, &epochs],
        )
        .await
        .map_err(|e| self.failed(&e))?;
        Ok(waiting)
    }

    /// Remembers runs [`wait_for_ended`](Self::wait_for_ended) waited for,
    /// once that transaction committed.
    fn ended(&self, runs: Vec<(String, i64)>) {
        if runs.is_empty() {
            return;
        }
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Runs end rarely; a bound keeps a long-lived node's memory flat.
        if ended.len() > 10_000 {
            ended.clear();
        }
        ended.extend(runs);
    }

    /// Takes `worker` if it is free: [`Owner::Me`] if this node runs it
    /// now (the caller loads it), the live node that runs it otherwise, or
    /// [`Owner::Missing`]. Taking it from a node whose run is over waits
    /// for that node's write in flight.
    pub async fn claim(&self, worker: &WorkerKey) -> Result<Owner> {
        let mut client = self.reader().await?;
        let tx = client.transaction().await.map_err(|e| self.failed(&e))?;
        let (owner, former) = self.look(&tx, worker).await?;
        if owner != Owner::Free {
            return Ok(owner);
        }
        // Its former owner's last transaction, if one is in flight.
        let waited = self
            .wait_for_ended(&tx, former.into_iter().collect())
            .await?;
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
            match self.look(&tx, worker).await?.0 {
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
        self.ended(waited);
        Ok(owner)
    }

    /// Takes up to `limit` free workers that have something to do: an
    /// invocation queued or running (unless they are parked on a pending
    /// promise, which comes first), a settled promise they wait for, a
    /// pending promise with a timeout, a settled promise past its
    /// retention (to delete), a continuation that settles one of their
    /// promises, or, for a continuation whose worker is made only
    /// when it fires (a `then` made over REST), its first source's worker.
    /// Free workers with nothing to do stay free until a request needs
    /// them. Skips any another node is taking at the same moment; returns
    /// the ones taken, which the caller loads (an empty list when there
    /// are no more). Waits for the former owners' writes in flight.
    pub async fn sweep(&self, limit: usize) -> Result<Vec<WorkerKey>> {
        let mut client = self.reader().await?;
        let (mut components, mut names) = (Vec::new(), Vec::new());
        let unmade = client
            .query(
                "SELECT r.component, r.name, r.idx, r.sources, r.spec, r.created_at
                 FROM reactions r
                 WHERE NOT EXISTS (SELECT 1 FROM workers w
                                   WHERE w.component = r.component AND w.name = r.name)",
                &[],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        for row in &unmade {
            let reaction = crate::read::reaction(row, &self.location)?;
            if let Some(first) = reaction.sources.into_iter().next() {
                components.push(first.worker.component);
                names.push(first.worker.name);
            }
        }
        let tx = client.transaction().await.map_err(|e| self.failed(&e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "WITH needs (component, name) AS (
                     SELECT i.component, i.name FROM invocations i
                     JOIN workers w ON w.component = i.component AND w.name = i.name
                     WHERE i.state <> 'finished'
                       -- Parked on a pending promise: nothing to do before it settles.
                       AND NOT EXISTS (SELECT 1 FROM promises p
                                       WHERE p.component = w.awaiting_component
                                         AND p.name = w.awaiting_name
                                         AND p.idx = w.awaiting_index
                                         AND p.completed_at IS NULL)
                     UNION SELECT component, name FROM promises
                           WHERE completed_at IS NULL AND deadline IS NOT NULL
                     UNION SELECT component, name FROM reactions
                     -- Settled promises past their retention, to delete.
                     UNION SELECT component, name FROM promises
                           WHERE completed_at IS NOT NULL AND retention IS NOT NULL
                             AND completed_at + retention
                                 <= (extract(epoch FROM now()) * 1000)::bigint
                     UNION SELECT w.component, w.name FROM workers w
                           JOIN promises p ON p.component = w.awaiting_component
                                AND p.name = w.awaiting_name AND p.idx = w.awaiting_index
                           WHERE p.completed_at IS NOT NULL
                     UNION SELECT * FROM unnest($1::uuid[], $2::text[]))
                 SELECT w.component, w.name, o.node_id, o.epoch FROM needs
                 JOIN workers w ON w.component = needs.component AND w.name = needs.name
                 LEFT JOIN vow_owners o ON o.component = w.component AND o.name = w.name
                 LEFT JOIN vow_nodes n ON n.node_id = o.node_id AND n.epoch = o.epoch
                      AND n.expires_at > now()
                 WHERE n.node_id IS NULL
                 ORDER BY md5(w.name || $4), w.component
                 LIMIT $3",
                &[&components, &names, &limit, &self.node_id],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (mut components, mut names) = (Vec::new(), Vec::new());
        let mut former: Vec<(String, i64)> = Vec::new();
        for row in &rows {
            components.push(row.get::<_, uuid::Uuid>(0));
            names.push(row.get::<_, String>(1));
            let run: Option<(String, i64)> = row
                .get::<_, Option<String>>(2)
                .zip(row.get::<_, Option<i64>>(3));
            if let Some(run) = run
                && !former.contains(&run)
            {
                former.push(run);
            }
        }
        // The former owners' rows first, then the workers': a write of a
        // run that is over may hold one of those workers' rows.
        let waited = self.wait_for_ended(&tx, former).await?;
        let locked = tx
            .query(
                "SELECT w.component, w.name FROM workers w
                 JOIN unnest($1::uuid[], $2::text[]) AS k (component, name)
                      ON w.component = k.component AND w.name = k.name
                 FOR UPDATE OF w SKIP LOCKED",
                &[&components, &names],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        let components: Vec<uuid::Uuid> = locked.iter().map(|row| row.get(0)).collect();
        let names: Vec<String> = locked.iter().map(|row| row.get(1)).collect();
        let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
        let taken = tx
            .query(
                &format!("{TAKE} RETURNING component, name"),
                &[&components, &names_ref, &self.node_id, &self.epoch],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        tx.commit().await.map_err(|e| self.failed(&e))?;
        self.ended(waited);
        Ok(taken
            .iter()
            .map(|row| WorkerKey {
                component: row.get(0),
                name: row.get(1),
            })
            .collect())
    }

    /// Lets go of workers this run owns (they left its memory with
    /// nothing to do): they are free, and the first node that needs one
    /// takes it. Call it once everything the node wrote for them is
    /// stored. The ones let go (not those another node took meanwhile,
    /// after this run ended).
    pub async fn release(&self, workers: &[WorkerKey]) -> Result<Vec<WorkerKey>> {
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        let components: Vec<uuid::Uuid> = workers.iter().map(|w| w.component).collect();
        let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
        let client = self.reader().await?;
        let rows = client
            .query(
                "DELETE FROM vow_owners o USING unnest($1::uuid[], $2::text[]) AS k (component, name)
                 WHERE o.component = k.component AND o.name = k.name
                   AND o.node_id = $3 AND o.epoch = $4
                 RETURNING o.component, o.name",
                &[&components, &names, &self.node_id, &self.epoch],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(rows
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
                        n.workers, n.resident, n.running,
                        greatest(extract(epoch FROM n.expires_at - now())::float8, 0)
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
                    expires_in: Duration::try_from_secs_f64(row.get(10)).unwrap_or_default(),
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
