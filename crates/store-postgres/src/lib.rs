//! The PostgreSQL backend of [`vow_store::Storage`].
//!
//! # Why tokio-postgres
//!
//! `tokio-postgres` with `deadpool-postgres` for the pool: it is the async
//! client most of the ecosystem builds on, needs no TLS library for a
//! loopback or private-network database, builds in about half the time of
//! `sqlx` here, and pipelines queries on one connection. Vow's SQL is a
//! fixed set of statements, so `sqlx`'s compile-time checking would buy
//! little.
//!
//! # Writes
//!
//! One writer connection applies batches in the order [`Storage::write`]
//! was called. Whatever arrived while the previous commit ran goes into one
//! transaction, and one commit makes it all durable: group commit, as in
//! the SQLite backend. The group is gathered into few statements (the log
//! appends, worker and invocation states and completions of the whole group
//! each become one multi-row statement) and pipelined, so a group costs two
//! round trips and a handful of statements whatever its size: with one
//! statement per write, the one server process behind the writer's
//! connection, not the disk, bounded the rate. A batch that fails (a
//! conflict) sends its group back through one savepoint per batch, so that
//! it alone is rolled back and answered with its error. PostgreSQL's
//! `synchronous_commit` decides what "durable" means; its default (`on`)
//! waits for the commit record to reach disk.
//!
//! # One node per database
//!
//! The writer's connection holds a PostgreSQL advisory lock for as long as
//! it lives, so a second node on the same database waits at open (up to
//! [`PostgresOptions::connect_timeout`]) and then refuses with who holds
//! it; a node whose connection dropped while another took the lock gets
//! [`Error::Fenced`] for every write after that. PostgreSQL releases the
//! lock the moment the holding process or connection ends.
//!
//! # Reads
//!
//! A pool of connections; reads see every write whose future resolved.

mod apply;
mod claim;
pub mod cluster;
mod coalesce;
mod error;
mod listen;
mod read;
mod schema;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::future::{BoxFuture, ready};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use vow_store::{
    ComponentRecord, Error, InvocationRecord, OplogRecord, Outcome, PromiseRecord, ReactionRecord,
    Result, SnapshotRecord, Storage, WorkerKey, WorkerRecord, Write,
};

use crate::error::{at_open, message, runtime};
use crate::writer::{Job, Writer};

/// The schema version this build of the crate writes.
pub const SCHEMA_VERSION: u32 = schema::LATEST;

/// Settings of a [`PostgresStorage`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections for reads (default 8).
    pub pool_size: usize,
    /// Longest wait for a connection (default 10 s); at open, also the
    /// longest wait for another node to let go of the database (one node
    /// writes to a database at a time: the crate docs say how).
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the writer has done since the store was opened, from
/// [`PostgresStorage::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Transactions committed, each holding a group of batches.
    pub commits: u64,
    /// Batches committed.
    pub batches: u64,
    /// Batches refused (a conflict, a lost connection, ...).
    pub failed_batches: u64,
}

/// How the writer keeps other nodes out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One node alone: the node lock (`claim`).
    Single,
    /// A node of a cluster: every transaction checks that this run of the
    /// node is still current (`cluster`); a run lasts this long without
    /// renewal.
    Member(writer::Member, Duration),
}

/// A Vow store in a PostgreSQL database.
pub struct PostgresStorage {
    location: String,
    pool: Pool,
    writer: mpsc::UnboundedSender<Job>,
    counters: Arc<writer::Counters>,
    /// A cluster node's: what the other nodes change, until taken.
    changes: std::sync::Mutex<Option<futures::stream::BoxStream<'static, vow_store::Change>>>,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Adds `-c setting` to the server options a connection starts with.
pub(crate) fn add_option(config: &mut tokio_postgres::Config, setting: &str) {
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} -c {setting}"),
        _ => format!("-c {setting}"),
    };
    config.options(&options);
}

/// The URL without its password, for messages.
fn location_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// creates or migrates Vow's tables, and starts the writer.
    ///
    /// This is one node alone on the database (see "One node per database"
    /// above); nodes of a cluster open theirs with
    /// [`cluster::Cluster::open_store`].
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self> {
        Self::open(url, options, Mode::Single).await
    }

    pub(crate) async fn open(url: &str, options: PostgresOptions, mode: Mode) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| Error::Open {
            location: "postgres".to_owned(),
            reason: format!("invalid database URL: {}", message(&e)),
        })?;
        config.connect_timeout(options.connect_timeout);
        let location = location_of(&config);
        // The writer's connection names this node, for a node that finds
        // the database taken (see `claim`).
        let mut writer_config = config.clone();
        let name = claim::application_name();
        writer_config.application_name(&name);
        if let Mode::Member(_, ttl) = &mode {
            // A writer frozen inside a transaction (a stopped process)
            // holds the node's row, which a takeover waits for: the
            // server ends such a session after a lease time.
            add_option(
                &mut writer_config,
                &format!(
                    "idle_in_transaction_session_timeout={}",
                    ttl.as_millis().max(1)
                ),
            );
        }
        let mut client = writer::connect(&writer_config, &location)
            .await
            .map_err(|e| at_open(&location, &e))?;
        schema::migrate(&mut client, &location).await?;
        if let Mode::Member(..) = mode {
            claim::share_or_refuse(&client, &location).await?;
        }
        if mode == Mode::Single {
            // A cluster's nodes are named first: the node lock they share
            // would only say that someone holds it.
            let active: Option<String> = client
                .query_opt(
                    "SELECT node_id FROM vow_nodes WHERE expires_at > now() LIMIT 1",
                    &[],
                )
                .await
                .map_err(|e| at_open(&location, &e))?
                .map(|row| row.get(0));
            if let Some(node) = active {
                return Err(Error::Open {
                    location,
                    reason: format!(
                        "a Vow cluster runs on this database (node {node:?} is in it): \
                         start this node with --node-id to join it"
                    ),
                });
            }
            match claim::take(&client, &name, options.connect_timeout).await {
                Ok(()) => {}
                Err(claim::Refused::Failed(e)) => return Err(at_open(&location, &e)),
                Err(claim::Refused::Held(holder)) => {
                    return Err(Error::Open {
                        location,
                        reason: format!(
                            "another Vow node writes to this database: {holder} holds it \
                             (waited {:?}). One node per database: stop that node, or give \
                             this one a database of its own",
                            options.connect_timeout
                        ),
                    });
                }
            }
        }
        let counters = Arc::new(writer::Counters::default());
        let fence = match &mode {
            Mode::Single => None,
            Mode::Member(member, _) => Some(member.clone()),
        };
        let writer = Writer::new(client, &location, Arc::clone(&counters), fence)
            .await
            .map_err(|e| at_open(&location, &e))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| Error::Open {
                location: location.clone(),
                reason: e.to_string(),
            })?;
        // Listening starts before anything is read, so that nothing
        // changed between the reads and the first notification is missed.
        let changes = match &mode {
            Mode::Single => None,
            Mode::Member(member, _) => Some(
                listen::start(config.clone(), location.clone(), member.tag())
                    .await?
                    .boxed(),
            ),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer.run(writer_config, rx));
        tracing::debug!(store = %location, version = SCHEMA_VERSION, "opened the store");
        Ok(Self {
            location,
            pool,
            writer: tx,
            counters,
            changes: std::sync::Mutex::new(changes),
        })
    }

    /// Resolves once another node has taken the database over (see "One
    /// node per database" above), with who holds it: from then on every
    /// write fails with [`Error::Fenced`]. A server should stop then, so
    /// that whatever supervises it sees the node go; `vow serve` does.
    /// Never resolves while this node holds the database.
    pub async fn taken_over(&self) -> String {
        let mut holder = self.counters.taken_over.subscribe();
        loop {
            if let Some(holder) = holder.borrow_and_update().clone() {
                return holder;
            }
            if holder.changed().await.is_err() {
                // The writer is gone with the store: nothing is taken over.
                return std::future::pending().await;
            }
        }
    }

    /// Stops writing: resolves once every batch sent before it is written
    /// (or failed); every write after it fails with [`Error::Closed`]. A
    /// node of a cluster closes its store before it gives its lease up, so
    /// that nothing it wrote is still in flight when another node reads.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            batch: Vec::new(),
            reply,
            close: true,
        };
        if self.writer.send(job).is_ok() {
            let _ = answer.await;
        }
    }

    /// What the writer has done so far: commits against batches shows how
    /// well group commit groups.
    pub fn stats(&self) -> WriterStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            commits: load(&self.counters.commits),
            batches: load(&self.counters.batches),
            failed_batches: load(&self.counters.failed_batches),
        }
    }

    /// Runs a query on a pooled connection and converts its rows.
    fn query<'a, T: Send + 'a>(
        &'a self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync + 'a>>,
        convert: fn(&tokio_postgres::Row, &str) -> Result<T>,
    ) -> BoxFuture<'a, Result<Vec<T>>> {
        async move {
            let client =
                self.pool.get().await.map_err(|e| {
                    Error::Backend(format!("{}: no connection: {e}", self.location))
                })?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| runtime(&self.location, &e))?;
            let rows = client
                .query(&statement, &refs)
                .await
                .map_err(|e| runtime(&self.location, &e))?;
            rows.iter()
                .map(|row| convert(row, &self.location))
                .collect()
        }
        .boxed()
    }
}

use crate::apply::Param;

/// The columns of promise keys, for `unnest`; an index past `i64::MAX`
/// (which cannot be stored) becomes -1, which matches nothing.
fn promise_keys(keys: &[vow_store::PromiseKey]) -> (Vec<uuid::Uuid>, Vec<String>, Vec<i64>) {
    (
        keys.iter().map(|k| k.worker.component).collect(),
        keys.iter().map(|k| k.worker.name.clone()).collect(),
        keys.iter()
            .map(|k| i64::try_from(k.index).unwrap_or(-1))
            .collect(),
    )
}

impl Storage for PostgresStorage {
    fn write(&self, batch: Vec<Write>) -> BoxFuture<'static, Result<Vec<Outcome>>> {
        let (reply, answer) = oneshot::channel();
        if self
            .writer
            .send(Job {
                batch,
                reply,
                close: false,
            })
            .is_err()
        {
            return ready(Err(Error::Closed)).boxed();
        }
        answer
            .map(|answer| answer.unwrap_or(Err(Error::Closed)))
            .boxed()
    }

    fn components(&self) -> BoxFuture<'_, Result<Vec<ComponentRecord>>> {
        self.query(
            "SELECT id, name, sha256, bytes, created_at FROM components ORDER BY id",
            Vec::new(),
            read::component,
        )
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerRecord>>> {
        self.query(
            "SELECT component, name, args, env, created_at, status, last_error,
                awaiting_component, awaiting_name, awaiting_index
             FROM workers ORDER BY component, name",
            Vec::new(),
            read::worker,
        )
    }

    fn oplog<'a>(
        &'a self,
        worker: &'a WorkerKey,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<OplogRecord>>> {
        let params: Vec<Param<'a>> = vec![
            Box::new(worker.component),
            Box::new(worker.name.clone()),
            Box::new(i64::try_from(from).unwrap_or(i64::MAX)),
            Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        self.query(
            "SELECT idx, at, entry FROM oplog WHERE component = $1 AND name = $2 AND idx >= $3
             ORDER BY idx LIMIT $4",
            params,
            read::oplog,
        )
    }

    fn last_oplog_index<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        let params: Vec<Param<'a>> =
            vec![Box::new(worker.component), Box::new(worker.name.clone())];
        self.query(
            "SELECT coalesce(max(idx), 0) FROM oplog WHERE component = $1 AND name = $2",
            params,
            |row, location| {
                let last: i64 = row.get(0);
                u64::try_from(last).map_err(|_| Error::Corrupt {
                    location: location.to_owned(),
                    reason: format!("negative oplog index {last}"),
                })
            },
        )
        .map(|rows| rows.map(|r| r.into_iter().next().unwrap_or(0)))
        .boxed()
    }

    fn promises(&self) -> BoxFuture<'_, Result<Vec<PromiseRecord>>> {
        self.query(
            "SELECT component, name, idx, created_at, data, completed_at, rejected, deadline,
                    retention, options
             FROM promises ORDER BY component, name, idx",
            Vec::new(),
            read::promise,
        )
    }

    fn reactions(&self) -> BoxFuture<'_, Result<Vec<ReactionRecord>>> {
        self.query(
            "SELECT component, name, idx, sources, spec, created_at FROM reactions
             ORDER BY component, name, idx",
            Vec::new(),
            read::reaction,
        )
    }

    fn unfinished_invocations<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        let params: Vec<Param<'a>> =
            vec![Box::new(worker.component), Box::new(worker.name.clone())];
        self.query(
            "SELECT component, name, seq, idempotency_key, request, state, result, accepted_at
             FROM invocations WHERE component = $1 AND name = $2 AND state <> 'finished'
             ORDER BY seq",
            params,
            read::invocation,
        )
    }

    fn workers_with_unfinished_invocations(&self) -> BoxFuture<'_, Result<Vec<WorkerKey>>> {
        self.query(
            "SELECT DISTINCT component, name FROM invocations WHERE state <> 'finished'
             ORDER BY component, name",
            Vec::new(),
            |row, _| {
                Ok(WorkerKey {
                    component: row.get(0),
                    name: row.get(1),
                })
            },
        )
    }

    fn snapshot<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Option<SnapshotRecord>>> {
        let params: Vec<Param<'a>> =
            vec![Box::new(worker.component), Box::new(worker.name.clone())];
        self.query(
            "SELECT component, name, idx, at, data FROM snapshots
             WHERE component = $1 AND name = $2",
            params,
            read::snapshot,
        )
        .map(|rows| rows.map(|r| r.into_iter().next()))
        .boxed()
    }

    fn invocation_by_key<'a>(
        &'a self,
        worker: &'a WorkerKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvocationRecord>>> {
        let params: Vec<Param<'a>> = vec![
            Box::new(worker.component),
            Box::new(worker.name.clone()),
            Box::new(key.to_owned()),
        ];
        self.query(
            "SELECT component, name, seq, idempotency_key, request, state, result, accepted_at
             FROM invocations WHERE component = $1 AND name = $2 AND idempotency_key = $3",
            params,
            read::invocation,
        )
        .map(|rows| rows.map(|r| r.into_iter().next()))
        .boxed()
    }

    fn invocations_between<'a>(
        &'a self,
        worker: &'a WorkerKey,
        first: u64,
        last: u64,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        // Sequence numbers past i64::MAX cannot exist in the table.
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let params: Vec<Param<'a>> = vec![
            Box::new(worker.component),
            Box::new(worker.name.clone()),
            Box::new(clamp(first)),
            Box::new(clamp(last)),
        ];
        self.query(
            "SELECT component, name, seq, idempotency_key, request, state, result, accepted_at
             FROM invocations WHERE component = $1 AND name = $2 AND seq BETWEEN $3 AND $4
             ORDER BY seq",
            params,
            read::invocation,
        )
        .boxed()
    }

    fn last_invocation_seq<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        let params: Vec<Param<'a>> =
            vec![Box::new(worker.component), Box::new(worker.name.clone())];
        self.query(
            "SELECT coalesce(max(seq), 0) FROM invocations WHERE component = $1 AND name = $2",
            params,
            |row, location| {
                let last: i64 = row.get(0);
                u64::try_from(last).map_err(|_| Error::Corrupt {
                    location: location.to_owned(),
                    reason: format!("negative sequence number {last}"),
                })
            },
        )
        .map(|rows| rows.map(|r| r.into_iter().next().unwrap_or(0)))
        .boxed()
    }

    fn component(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<ComponentRecord>>> {
        self.query(
            "SELECT id, name, sha256, bytes, created_at FROM components WHERE id = $1",
            vec![Box::new(id)],
            read::component,
        )
        .map(|rows| rows.map(|r| r.into_iter().next()))
        .boxed()
    }

    fn worker<'a>(&'a self, key: &'a WorkerKey) -> BoxFuture<'a, Result<Option<WorkerRecord>>> {
        let params: Vec<Param<'a>> = vec![Box::new(key.component), Box::new(key.name.clone())];
        self.query(
            "SELECT component, name, args, env, created_at, status, last_error,
                awaiting_component, awaiting_name, awaiting_index
             FROM workers WHERE component = $1 AND name = $2",
            params,
            read::worker,
        )
        .map(|rows| rows.map(|r| r.into_iter().next()))
        .boxed()
    }

    fn promise<'a>(
        &'a self,
        key: &'a vow_store::PromiseKey,
    ) -> BoxFuture<'a, Result<Option<PromiseRecord>>> {
        // An index past i64::MAX cannot exist in the table.
        let Ok(index) = i64::try_from(key.index) else {
            return ready(Ok(None)).boxed();
        };
        let params: Vec<Param<'a>> = vec![
            Box::new(key.worker.component),
            Box::new(key.worker.name.clone()),
            Box::new(index),
        ];
        self.query(
            "SELECT component, name, idx, created_at, data, completed_at, rejected, deadline,
                    retention, options
             FROM promises WHERE component = $1 AND name = $2 AND idx = $3",
            params,
            read::promise,
        )
        .map(|rows| rows.map(|r| r.into_iter().next()))
        .boxed()
    }

    fn reaction<'a>(
        &'a self,
        target: &'a vow_store::PromiseKey,
    ) -> BoxFuture<'a, Result<Option<ReactionRecord>>> {
        // An index past i64::MAX cannot exist in the table.
        let Ok(index) = i64::try_from(target.index) else {
            return ready(Ok(None)).boxed();
        };
        let params: Vec<Param<'a>> = vec![
            Box::new(target.worker.component),
            Box::new(target.worker.name.clone()),
            Box::new(index),
        ];
        self.query(
            "SELECT component, name, idx, sources, spec, created_at FROM reactions
             WHERE component = $1 AND name = $2 AND idx = $3",
            params,
            read::reaction,
        )
        .map(|rows| rows.map(|r| r.into_iter().next()))
        .boxed()
    }

    fn workers_named<'a>(
        &'a self,
        keys: &'a [WorkerKey],
    ) -> BoxFuture<'a, Result<Vec<WorkerRecord>>> {
        let components: Vec<uuid::Uuid> = keys.iter().map(|k| k.component).collect();
        let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
        self.query(
            "SELECT w.component, w.name, w.args, w.env, w.created_at, w.status, w.last_error,
                    w.awaiting_component, w.awaiting_name, w.awaiting_index
             FROM workers w JOIN unnest($1::uuid[], $2::text[]) AS k (component, name)
                  ON w.component = k.component AND w.name = k.name",
            vec![Box::new(components), Box::new(names)],
            read::worker,
        )
    }

    fn promises_named<'a>(
        &'a self,
        keys: &'a [vow_store::PromiseKey],
    ) -> BoxFuture<'a, Result<Vec<PromiseRecord>>> {
        let (components, names, indexes) = promise_keys(keys);
        self.query(
            "SELECT p.component, p.name, p.idx, p.created_at, p.data, p.completed_at, p.rejected,
                    p.deadline, p.retention, p.options
             FROM promises p
             JOIN unnest($1::uuid[], $2::text[], $3::int8[]) AS k (component, name, idx)
                  ON p.component = k.component AND p.name = k.name AND p.idx = k.idx",
            vec![Box::new(components), Box::new(names), Box::new(indexes)],
            read::promise,
        )
    }

    fn reactions_named<'a>(
        &'a self,
        targets: &'a [vow_store::PromiseKey],
    ) -> BoxFuture<'a, Result<Vec<ReactionRecord>>> {
        let (components, names, indexes) = promise_keys(targets);
        self.query(
            "SELECT r.component, r.name, r.idx, r.sources, r.spec, r.created_at
             FROM reactions r
             JOIN unnest($1::uuid[], $2::text[], $3::int8[]) AS k (component, name, idx)
                  ON r.component = k.component AND r.name = k.name AND r.idx = k.idx",
            vec![Box::new(components), Box::new(names), Box::new(indexes)],
            read::reaction,
        )
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn observe_commits(&self, observer: Arc<dyn vow_store::CommitObserver>) {
        self.counters.hook.set(observer);
    }

    fn remote_changes(&self) -> Option<futures::stream::BoxStream<'static, vow_store::Change>> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
