//! `vow serve --node-id ID`: one node of a cluster on a shared PostgreSQL
//! database (`docs/cluster.md`).
//!
//! The node joins (a row in `vow_nodes` with a new epoch), opens its store
//! (every write fenced by this run of the node) and an executor over it
//! that knows every promise of the cluster but runs only the workers this
//! node owns, and serves. Then, every `min(ttl / 4, 500 ms)`:
//!
//! - a task of its own renews the node's row, with its load. When it could
//!   not renew for `3 * ttl / 4`, or finds this run replaced, the node
//!   stops serving and exits 1 before (or as soon as) the other nodes may
//!   take its workers; its writes are refused by the database anyway;
//! - the node looks at the membership, and when it changed (a node died,
//!   left or joined; it looks again as the next node's run expires) or
//!   every few seconds, takes the **free** workers (those of nodes whose
//!   run is over, and those nobody owns) that have something to do, as
//!   after a restart: queued invocations run, running ones run again by
//!   replay, parked ones whose promise settled resume, timers and
//!   continuations fire;
//! - it lets go of the workers that have been out of memory with nothing
//!   to do for a while (idle, or parked on a pending promise): they are
//!   free, and the node that needs one next takes it.
//!
//! A request about a worker goes to its owner (see
//! `vow_server::cluster`); a free worker is taken by the node that gets
//! the request, and one parked on a promise this node settled is taken by
//! this node. The first SIGINT/SIGTERM drains: the node stops taking
//! requests (503 with `Retry-After`), finishes writing what it has, and
//! leaves, so that the other nodes take its workers over within one of
//! their ticks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use vow_runtime::vow_store::WorkerKey;
use vow_runtime::{ComponentId, Executor, ExecutorBuilder, WorkerId, WorkerStatus};
use vow_server::ServerConfig;
use vow_server::cluster::{
    Located, NodeInfo, NodeLoadInfo, NodeRole, Placement, Target, millis_rfc3339,
};
use vow_store_postgres::cluster::{Cluster, ClusterOptions, NodeLoad, Owner, Renewal};

use crate::{ServeArgs, local, output};

/// The shortest lease accepted: renewals every quarter of it must fit.
const MIN_LEASE: Duration = Duration::from_millis(500);

/// The longest a node waits between two looks at the membership.
const MAX_TICK: Duration = Duration::from_millis(500);

/// The shortest: when an owner cannot be reached, a node looks again
/// sooner than its tick, but not sooner than this.
const MIN_TICK: Duration = Duration::from_millis(50);

/// Workers taken over per transaction.
const SWEEP_BATCH: usize = 200;

/// Workers taken over that are loaded at once (the store's read pool
/// holds 8 connections).
const LOADING: usize = 8;

/// Free workers with something to do are looked for at least this often,
/// whatever the membership does (a timer of a free worker falls due, a
/// node that lost its run came back within one tick, a worker was let go
/// of as the promise it waits on settled elsewhere).
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// A worker out of memory with nothing to do for this long is let go of.
const RELEASE_QUIET: Duration = Duration::from_secs(2);

/// How often the node looks for workers to let go of.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Workers let go of per look at most.
const RELEASE_BATCH: usize = 1000;

/// Owners remembered by the front at most (then it starts again).
const OWNERS_CACHED: usize = 100_000;

pub(super) async fn serve(
    args: &ServeArgs,
    config: ServerConfig,
    options: vow_server::ServeOptions,
    listener: TcpListener,
    base: &str,
    public_url: &str,
) -> anyhow::Result<()> {
    let node_id = args.cluster.node_id.clone().unwrap_or_default();
    let url = args.database_url.clone().context(
        "--node-id needs --database-url: the nodes of a cluster share one PostgreSQL database",
    )?;
    let ttl = local::seconds("--lease-ttl", args.cluster.lease_ttl)?
        .filter(|ttl| *ttl >= MIN_LEASE)
        .context("--lease-ttl must be at least 0.5 seconds")?;
    let advertise_url = advertise_url(args, &listener, base)?;
    let builder = super::builder(args, public_url)?;
    let joined = Instant::now();
    let cluster = Cluster::join(
        &url,
        ClusterOptions {
            lease_ttl: ttl,
            ..ClusterOptions::new(&node_id, &advertise_url)
        },
    )
    .await?;
    let cluster = Arc::new(cluster);
    output::error_line(&format!(
        "node {node_id} joined the cluster on {} (epoch {}, lease {} s), reached at {advertise_url}",
        cluster.location(),
        cluster.epoch(),
        ttl.as_secs_f64()
    ));
    let (target_tx, target_rx) = watch::channel(Target::Unavailable(format!(
        "node {node_id:?} is starting: retry"
    )));
    let unreachable = Arc::new(tokio::sync::Notify::new());
    let owners = Arc::new(Owners::new(Arc::clone(&cluster)));
    let front = vow_server::cluster::front(
        &node_id,
        &config,
        Arc::new(Directory(Arc::clone(&cluster))),
        Arc::clone(&owners) as Arc<dyn Placement>,
        target_rx,
        Arc::clone(&unreachable),
        args.cluster.cluster_ca_cert.as_deref(),
    )
    .context("cannot read --cluster-ca-cert")?;
    output::line(&format!("listening on {base}"))?;
    let (drain_tx, drain_rx) = watch::channel(false);
    let node = Node {
        cluster,
        target: target_tx,
        config,
        components: args.components.clone(),
        unreachable,
        owners,
    };
    let run = tokio::spawn({
        let node_id = node_id.clone();
        async move {
            if let Err(why) = node.run(builder, joined, drain_rx).await {
                // Fail-stop: requests in flight (some wait on promises)
                // are not waited for, and nothing more is written.
                output::error_line(&format!("error: node {node_id} stopped: {why}"));
                std::process::exit(1);
            }
        }
    });
    let stop = {
        let drain_tx = drain_tx.clone();
        async move {
            super::shutdown().await;
            let _ = drain_tx.send(true);
        }
    };
    let served = vow_server::serve_with(listener, front, stop, options).await;
    let _ = drain_tx.send(true);
    run.await.context("the node's task failed")?;
    served.context("serving failed")?;
    output::error_line("stopped");
    Ok(())
}

/// The URL other nodes reach this one at.
fn advertise_url(args: &ServeArgs, listener: &TcpListener, base: &str) -> anyhow::Result<String> {
    // Not --public-url: that may be a load balancer in front of every
    // node, and the other nodes must reach this node itself.
    let url = match &args.cluster.advertise_url {
        Some(url) => url.clone(),
        None => {
            let addr = listener.local_addr()?;
            if addr.ip().is_unspecified() {
                bail!(
                    "--node-id on {addr} needs --advertise-url URL: the address other nodes reach \
                     this one at (this node listens on every interface, so it cannot tell which)"
                );
            }
            base.to_owned()
        }
    };
    let parsed = reqwest::Url::parse(&url)
        .with_context(|| format!("--advertise-url {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        bail!("--advertise-url {url:?} must be an http:// or https:// URL with a host");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `GET /v1/nodes` from the database.
struct Directory(Arc<Cluster>);

impl vow_server::cluster::Nodes for Directory {
    fn list(&self) -> vow_server::cluster::NodesFuture<'_> {
        Box::pin(async move {
            let records = self.0.nodes().await.map_err(|e| e.to_string())?;
            Ok(records
                .into_iter()
                .map(|n| NodeInfo {
                    role: if n.alive {
                        NodeRole::Alive
                    } else {
                        NodeRole::Gone
                    },
                    epoch: n.epoch,
                    advertise_url: n.advertise_url,
                    started_at: millis_rfc3339(n.started_at),
                    expires_at: millis_rfc3339(n.expires_at),
                    owned: n.owned,
                    load: n.load.filter(|_| n.alive).map(|l| NodeLoadInfo {
                        workers: l.workers,
                        resident: l.resident,
                        running: l.running,
                    }),
                    node_id: n.node_id,
                })
                .collect())
        })
    }
}

/// Which node runs a worker, for the front.
struct Owners {
    cluster: Arc<Cluster>,
    /// Set once the store is open.
    executor: OnceLock<Executor>,
    /// The other nodes' workers looked up lately: which node runs each,
    /// and until when that node's run lasts at least. A node keeps its
    /// workers until its run ends, unless it lets go of one: then the
    /// request forwarded to it makes it take the worker back, or answers
    /// that it moved (and this node forgets it).
    cache: Mutex<HashMap<WorkerKey, Cached>>,
    /// Held (shared) while a request takes a worker over, and
    /// (exclusively) while the node lets go of workers, so that it never
    /// lets go of a worker it is taking.
    gate: tokio::sync::RwLock<()>,
}

#[derive(Clone)]
struct Cached {
    node_id: String,
    url: String,
    until: Instant,
}

impl Owners {
    fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            executor: OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    fn cached(&self, key: &WorkerKey) -> Option<Cached> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).filter(|c| c.until > Instant::now()).cloned()
    }

    fn remember(&self, key: WorkerKey, cached: Cached) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= OWNERS_CACHED {
            cache.clear();
        }
        cache.insert(key, cached);
    }

    /// Takes `id` (if it is free) and loads it: where it runs now.
    async fn take(&self, executor: &Executor, id: &WorkerId) -> Located {
        let key = key_of(id);
        let limit = self.cluster.lease_ttl() / 4;
        let _taking = self.gate.read().await;
        if executor.runs_worker(id) {
            return Located::Here;
        }
        let sent = Instant::now();
        let owner = match bounded(limit, self.cluster.owner(&key)).await {
            Ok(Owner::Free) => bounded(limit, self.cluster.claim(&key)).await,
            other => other,
        };
        match owner {
            Ok(Owner::Me) => match executor.adopt(id).await {
                Ok(_) => Located::Here,
                Err(e) => Located::Unavailable(format!(
                    "node {:?} could not load worker {id}, which it took over: {e}",
                    self.cluster.node_id()
                )),
            },
            Ok(Owner::Node {
                node_id,
                url,
                for_at_least,
            }) => {
                self.remember(
                    key,
                    Cached {
                        node_id: node_id.clone(),
                        url: url.clone(),
                        until: sent + for_at_least,
                    },
                );
                Located::There { node_id, url }
            }
            // This node's routes say it does not exist (or make it).
            Ok(Owner::Missing | Owner::Free) => Located::Here,
            Err(e) => Located::Unavailable(format!(
                "node {:?} cannot tell which node runs worker {id}: {e}",
                self.cluster.node_id()
            )),
        }
    }
}

impl Placement for Owners {
    fn locate<'a>(
        &'a self,
        component: uuid::Uuid,
        name: &'a str,
    ) -> vow_server::cluster::LocateFuture<'a> {
        Box::pin(async move {
            let Some(executor) = self.executor.get() else {
                return Located::Unavailable(format!(
                    "node {:?} is starting: retry",
                    self.cluster.node_id()
                ));
            };
            let id = WorkerId::new(ComponentId(component), name);
            if executor.runs_worker(&id) {
                return Located::Here;
            }
            let key = WorkerKey {
                component,
                name: name.to_owned(),
            };
            if let Some(Cached { node_id, url, .. }) = self.cached(&key) {
                return Located::There { node_id, url };
            }
            self.take(executor, &id).await
        })
    }

    fn forget(&self, component: uuid::Uuid, name: &str) {
        let key = WorkerKey {
            component,
            name: name.to_owned(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(&key);
    }
}

/// What the node's task works with.
struct Node {
    cluster: Arc<Cluster>,
    target: watch::Sender<Target>,
    config: ServerConfig,
    components: Vec<std::path::PathBuf>,
    /// Told when a worker's owner cannot be reached: the node then looks
    /// at the membership again before its next tick.
    unreachable: Arc<tokio::sync::Notify>,
    owners: Arc<Owners>,
}

impl Node {
    fn id(&self) -> &str {
        self.cluster.node_id()
    }

    /// Runs until the node drains (`Ok`) or its run is over (`Err`, why).
    /// Its row is renewed from the moment it joined (at `joined`), by a
    /// task of its own, while the store opens (compiling stored components
    /// may take longer than a lease).
    async fn run(
        self,
        builder: ExecutorBuilder,
        joined: Instant,
        mut drain: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let (load_tx, load_rx) = watch::channel(None);
        let mut renewing = tokio::spawn(renew(Arc::clone(&self.cluster), joined, load_rx));
        let opened = tokio::select! {
            opened = self.open(builder) => opened,
            why = &mut renewing => {
                return Err(why.unwrap_or_else(|e| format!("its renewals stopped: {e}")));
            }
            _ = drain.changed() => {
                renewing.abort();
                self.leave().await;
                return Ok(());
            }
        };
        let (store, executor) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                renewing.abort();
                self.leave().await;
                return Err(format!("cannot open the store: {e:#}"));
            }
        };
        let _ = load_tx.send(Some(executor.clone()));
        let _ = self.owners.executor.set(executor.clone());
        let router = vow_server::router(executor.clone(), self.config.clone());
        self.target.send_replace(Target::Local(router));
        output::error_line(&format!(
            "node {} serves (epoch {}): {} workers in the cluster, ready {} ms after joining",
            self.id(),
            self.cluster.epoch(),
            executor.workers(None).len(),
            joined.elapsed().as_millis()
        ));
        let ttl = self.cluster.lease_ttl();
        let tick = (ttl / 4).min(MAX_TICK);
        let mut sweeps = Sweeps::default();
        let mut unfinished = Vec::new();
        let needed = executor.needed_workers().map(|needed| {
            tokio::spawn(take_needed(
                Arc::clone(&self.owners),
                executor.clone(),
                needed,
            ))
        });
        let _stop_taking = needed.map(|task| AbortOnDrop(task.abort_handle()));
        loop {
            let looked = Instant::now();
            let next_expiry = self.sweep(&executor, &mut sweeps).await;
            if sweeps
                .released
                .is_none_or(|at| at.elapsed() >= RELEASE_EVERY)
            {
                sweeps.released = Some(Instant::now());
                self.release(&store, &executor, &mut unfinished).await;
            }
            // As the next node's run expires, its workers are free: look
            // right after, not at the next tick.
            let wait = tick
                .saturating_sub(looked.elapsed())
                .min(next_expiry.map_or(tick, |left| left + MIN_TICK / 5));
            tokio::select! {
                why = &mut renewing => {
                    self.stop(&store).await;
                    return Err(why.unwrap_or_else(|e| format!("its renewals stopped: {e}")));
                }
                holder = store.taken_over() => {
                    renewing.abort();
                    self.stop(&store).await;
                    return Err(format!("its writes are refused: {holder}"));
                }
                _ = drain.changed() => {
                    renewing.abort();
                    self.hand_over(&store).await;
                    return Ok(());
                }
                () = tokio::time::sleep(wait) => {}
                () = self.unreachable.notified() => {
                    // Not more often than this, however many requests fail.
                    tokio::time::sleep(MIN_TICK.saturating_sub(looked.elapsed())).await;
                    sweeps.due = true;
                }
            }
        }
    }

    /// The store of this run of the node and the executor over it, with
    /// the components given on the command line.
    async fn open(
        &self,
        builder: ExecutorBuilder,
    ) -> anyhow::Result<(Arc<vow_store_postgres::PostgresStorage>, Executor)> {
        let store = self
            .cluster
            .open_store(Default::default())
            .await
            .context("cannot open the database")?;
        let store = Arc::new(store);
        let executor = builder
            .storage(Arc::clone(&store) as vow_runtime::vow_store::SharedStorage)
            .shared_store(true)
            .open()
            .await
            .context("cannot open the database")?;
        // Nodes started together with the same files add each once.
        let components = self.components.clone();
        let loading = executor.clone();
        self.cluster
            .one_at_a_time(async move {
                for path in &components {
                    local::load(&loading, path).await?;
                }
                anyhow::Ok(())
            })
            .await??;
        Ok((store, executor))
    }

    /// Takes the free workers that have something to do when the
    /// membership changed, an owner could not be reached, or a while
    /// passed. How long until the next other node's run expires, if one
    /// is alive.
    async fn sweep(&self, executor: &Executor, sweeps: &mut Sweeps) -> Option<Duration> {
        let limit = self.cluster.lease_ttl() / 4;
        let asked = Instant::now();
        let nodes = match bounded(limit, self.cluster.nodes()).await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's nodes");
                return None;
            }
        };
        let members: Vec<(String, i64)> = nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| (n.node_id.clone(), n.epoch))
            .collect();
        let next_expiry = nodes
            .iter()
            .filter(|n| n.alive && n.node_id != self.id())
            .map(|n| n.expires_in.saturating_sub(asked.elapsed()))
            .min();
        let changed = sweeps.members.as_ref() != Some(&members);
        if !(changed || sweeps.due || sweeps.last.is_none_or(|at| at.elapsed() >= SWEEP_EVERY)) {
            return next_expiry;
        }
        sweeps.members = Some(members);
        sweeps.last = Some(Instant::now());
        sweeps.due = false;
        let started = Instant::now();
        let mut taken = 0;
        loop {
            let batch = match bounded(limit, self.cluster.sweep(SWEEP_BATCH)).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take free workers over");
                    sweeps.due = true;
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            // Loaded several at a time: each load reads the store.
            let mut loading = tokio::task::JoinSet::new();
            let room = Arc::new(tokio::sync::Semaphore::new(LOADING));
            for key in &batch {
                let Ok(permit) = Arc::clone(&room).acquire_owned().await else {
                    break;
                };
                let id = WorkerId::new(ComponentId(key.component), &key.name);
                let executor = executor.clone();
                loading.spawn(async move {
                    if let Err(e) = executor.adopt(&id).await {
                        tracing::error!(worker = %id, error = %e, "cannot load a worker this node took over");
                    }
                    drop(permit);
                });
            }
            while loading.join_next().await.is_some() {}
            taken += batch.len();
        }
        if taken > 0 {
            output::error_line(&format!(
                "node {} took over {taken} free workers with work to do in {} ms",
                self.id(),
                started.elapsed().as_millis()
            ));
        }
        next_expiry
    }

    /// Lets go of the workers that have been out of memory with nothing
    /// to do for a while: once what this node wrote for them is stored,
    /// they are free in the store.
    /// `unfinished` holds the workers let go of here whose rows could not
    /// be deleted yet (the database did not answer in time): they are
    /// tried again first, unless this node took one back meanwhile.
    async fn release(
        &self,
        store: &vow_store_postgres::PostgresStorage,
        executor: &Executor,
        unfinished: &mut Vec<WorkerId>,
    ) {
        use vow_runtime::vow_store::Storage as _;
        let limit = self.cluster.lease_ttl() / 4;
        let _releasing = self.owners.gate.write().await;
        unfinished.retain(|id| !executor.runs_worker(id));
        match executor.release_quiet(RELEASE_QUIET, RELEASE_BATCH).await {
            Ok(released) => unfinished.extend(released),
            Err(e) => tracing::warn!(error = %e, "cannot let go of quiet workers"),
        }
        if unfinished.is_empty() {
            return;
        }
        // Everything written for them before is stored (the writer keeps
        // the order of its batches) before another node may take them.
        let keys: Vec<WorkerKey> = unfinished.iter().map(key_of).collect();
        let freed = match bounded(limit, store.write(Vec::new())).await {
            Ok(_) => bounded(limit, self.cluster.release(&keys)).await,
            Err(e) => Err(e),
        };
        match freed {
            Ok(freed) => {
                tracing::debug!(workers = freed.len(), "let go of quiet workers");
                let released = std::mem::take(unfinished);
                executor.released(&released).await;
            }
            // Still this node's in the store: tried again at the next
            // look; a request about one of them meanwhile finds this node,
            // which takes it back.
            Err(e) => tracing::warn!(
                error = %e,
                workers = unfinished.len(),
                "cannot let go of quiet workers in the store yet"
            ),
        }
    }

    /// Stops serving after this run of the node ended: nothing more is
    /// written. The writer may be stuck on a database it cannot reach: the
    /// close is not waited for long (what it would still write is refused
    /// anyway).
    async fn stop(&self, store: &vow_store_postgres::PostgresStorage) {
        self.unavailable(format!(
            "node {:?} stopped: retry, another node takes its workers over",
            self.id()
        ));
        let _ = tokio::time::timeout(Duration::from_millis(200), store.close()).await;
    }

    /// A drain: stops taking requests, writes what is in flight, and
    /// leaves so that the other nodes take its workers over at once.
    async fn hand_over(&self, store: &vow_store_postgres::PostgresStorage) {
        self.unavailable(format!(
            "node {:?} is handing its workers over to the other nodes: retry",
            self.id()
        ));
        // Past the lease, nothing it writes counts anyway.
        let ttl = self.cluster.lease_ttl();
        if tokio::time::timeout(ttl, store.close()).await.is_err() {
            output::error_line(&format!(
                "node {} could not finish writing within the lease time; what is left is refused",
                self.id()
            ));
        }
        self.leave().await;
        output::error_line(&format!(
            "node {} left the cluster: the other nodes take its workers over",
            self.id()
        ));
    }

    async fn leave(&self) {
        if let Err(e) = bounded(self.cluster.lease_ttl(), self.cluster.leave()).await {
            tracing::warn!(error = %e, "cannot mark this node as gone");
        }
    }

    fn unavailable(&self, why: String) {
        self.target.send_replace(Target::Unavailable(why));
    }
}

/// Takes the workers the executor says need a node (parked, out of every
/// node's memory, on a promise that settled) if they are free.
async fn take_needed(
    owners: Arc<Owners>,
    executor: Executor,
    mut needed: tokio::sync::mpsc::UnboundedReceiver<WorkerId>,
) {
    while let Some(id) = needed.recv().await {
        let key = key_of(&id);
        // Another live node runs it, and wakes it itself.
        if executor.runs_worker(&id) || owners.cached(&key).is_some() {
            continue;
        }
        if let Located::Unavailable(why) = owners.take(&executor, &id).await {
            tracing::warn!(worker = %id, %why, "cannot take a worker whose promise settled");
        }
    }
}

/// A worker's key in the store.
fn key_of(id: &WorkerId) -> WorkerKey {
    WorkerKey {
        component: id.component_id.0,
        name: id.worker_name.clone(),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When the node last looked for free workers, and what it saw.
#[derive(Default)]
struct Sweeps {
    /// The live nodes and their epochs at the last look.
    members: Option<Vec<(String, i64)>>,
    last: Option<Instant>,
    /// Look at the next tick, whatever the membership does.
    due: bool,
    /// When the node last looked for workers to let go of.
    released: Option<Instant>,
}

/// Renews this run of the node (joined at `joined`) every quarter of the
/// lease time, with the load of the executor once there is one, until it
/// cannot: why. It gives up when the run is over, or when no renewal went
/// through for 3/4 of the lease time (by this node's clock, counted from
/// before the last renewal that worked was sent), before the other nodes
/// may take its workers.
async fn renew(
    cluster: Arc<Cluster>,
    joined: Instant,
    executor: watch::Receiver<Option<Executor>>,
) -> String {
    let ttl = cluster.lease_ttl();
    let every = (ttl / 4).min(MAX_TICK);
    let stop_after = ttl * 3 / 4;
    let mut renewed = joined;
    let overdue = |renewed: Instant| {
        format!(
            "it could not renew its membership for {:.1} s (a run lasts {:.1} s without \
             renewal), so it stops: the other nodes take its workers over once it expires",
            renewed.elapsed().as_secs_f64(),
            ttl.as_secs_f64()
        )
    };
    loop {
        let deadline = tokio::time::Instant::from_std(renewed + stop_after);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = tokio::time::sleep_until(deadline) => return overdue(renewed),
        }
        let load = executor.borrow().as_ref().map(load).unwrap_or_default();
        let sent = Instant::now();
        tokio::select! {
            renewal = bounded(ttl / 4, cluster.renew(load)) => match renewal {
                Ok(Renewal::Renewed) => renewed = sent,
                Ok(Renewal::Lost(why)) => return why,
                Err(e) => tracing::warn!(error = %e, "cannot renew this node's membership"),
            },
            () = tokio::time::sleep_until(deadline) => return overdue(renewed),
        }
    }
}

/// What a node reports with each renewal: the workers it runs.
fn load(executor: &Executor) -> NodeLoad {
    let mine: Vec<_> = executor
        .workers(None)
        .into_iter()
        .filter(|w| executor.runs_worker(&w.id))
        .collect();
    NodeLoad {
        workers: mine.len() as u64,
        resident: executor.resident_workers() as u64,
        running: mine
            .iter()
            .filter(|w| w.status == WorkerStatus::Running)
            .count() as u64,
    }
}

/// `future`, or an error once `limit` has passed: a database that stopped
/// answering (a partition) must not hold a renewal past the lease.
async fn bounded<T>(
    limit: Duration,
    future: impl std::future::Future<Output = vow_runtime::vow_store::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the database did not answer within {:.1} s",
            limit.as_secs_f64()
        )),
    }
}
