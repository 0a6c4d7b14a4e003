//! `vow serve --node-id ID`: one node of a cluster on a shared PostgreSQL
//! database (`docs/cluster.md`).
//!
//! The node joins (a row in `vow_nodes` with a new epoch), starts serving
//! at once, and then:
//!
//! - as a **standby**, renews its row, tries to take the lease every
//!   `min(ttl / 4, 500 ms)` (and sooner, at most every 50 ms, while the
//!   node it forwards to cannot be reached), and forwards every request to
//!   the node that holds it;
//! - once it takes the lease, it becomes **active**: it opens the store
//!   fenced by the lease's epoch, recovers every worker as after a restart,
//!   answers requests itself and renews the lease every `ttl / 4` with its
//!   load. When it cannot renew for `3 * ttl / 4`, or finds the lease
//!   taken, it stops serving and exits 1 before (or as soon as) another
//!   node may take over; its writes are refused by the database anyway.
//!
//! The first SIGINT/SIGTERM drains: the active node stops taking requests
//! (503 with `Retry-After`), finishes writing what it has, and gives the
//! lease up, so that a standby takes over within one of its ticks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use vow_runtime::{Executor, ExecutorBuilder, WorkerStatus};
use vow_server::ServerConfig;
use vow_server::cluster::{NodeInfo, NodeLoadInfo, NodeRole, Target, millis_rfc3339};
use vow_store_postgres::cluster::{Cluster, ClusterOptions, Lease, NodeLoad, Renewal};

use crate::{ServeArgs, local, output};

/// The shortest lease accepted: renewals every quarter of it must fit.
const MIN_LEASE: Duration = Duration::from_millis(500);

/// The longest a standby waits between two attempts to take the lease.
const MAX_TICK: Duration = Duration::from_millis(500);

/// The shortest: when forwarding fails, a standby looks again sooner than
/// its tick, but not sooner than this.
const MIN_TICK: Duration = Duration::from_millis(50);

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
        "node {node_id:?} has just joined the cluster and does not know the active node yet: retry"
    )));
    let unreachable = Arc::new(tokio::sync::Notify::new());
    let front = vow_server::cluster::front(
        &node_id,
        &config,
        Arc::new(Directory(Arc::clone(&cluster))),
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
    };
    let run = tokio::spawn({
        let node_id = node_id.clone();
        async move {
            if let Err(why) = node.run(builder, drain_rx).await {
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
    // node, and standbys must reach this node itself.
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
                    role: match (n.lease, n.alive) {
                        (Some(_), _) => NodeRole::Active,
                        (None, true) => NodeRole::Standby,
                        (None, false) => NodeRole::Gone,
                    },
                    epoch: n.epoch,
                    advertise_url: n.advertise_url,
                    started_at: millis_rfc3339(n.started_at),
                    expires_at: millis_rfc3339(n.expires_at),
                    lease_epoch: n.lease.map(|(epoch, _)| epoch),
                    lease_expires_at: n.lease.map(|(_, until)| millis_rfc3339(until)),
                    load: n.load.filter(|_| n.lease.is_some()).map(|l| NodeLoadInfo {
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

/// What the node's task works with.
struct Node {
    cluster: Arc<Cluster>,
    target: watch::Sender<Target>,
    config: ServerConfig,
    components: Vec<std::path::PathBuf>,
    /// Told when the active node cannot be reached: a standby then looks
    /// again before its next tick.
    unreachable: Arc<tokio::sync::Notify>,
}

impl Node {
    fn id(&self) -> &str {
        self.cluster.node_id()
    }

    /// Stands by until this node takes the lease, then runs the workers
    /// until it drains (`Ok`) or loses the lease (`Err`, why).
    async fn run(
        self,
        builder: ExecutorBuilder,
        mut drain: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let ttl = self.cluster.lease_ttl();
        let tick = (ttl / 4).min(MAX_TICK);
        let mut forwarding_to: Option<String> = None;
        loop {
            if *drain.borrow() {
                self.leave().await;
                return Ok(());
            }
            match bounded(ttl / 4, self.cluster.renew(None, None)).await {
                Ok(Renewal::Renewed) => {}
                Ok(Renewal::Lost(why)) => {
                    self.unavailable(format!("node {:?} left the cluster", self.id()));
                    return Err(why);
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew this node's membership"),
            }
            let asked = Instant::now();
            match bounded(ttl / 4, self.cluster.try_lead()).await {
                Ok(Some(lease)) => return self.active(builder, lease, asked, drain).await,
                Ok(None) => self.follow(&mut forwarding_to).await,
                Err(e) => tracing::warn!(error = %e, "cannot read the lease"),
            }
            let looked = Instant::now();
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = drain.changed() => {}
                () = self.unreachable.notified() => {
                    // Not more often than this, however many requests fail.
                    tokio::time::sleep(MIN_TICK.saturating_sub(looked.elapsed())).await;
                }
            }
        }
    }

    /// Points the front at the node that holds the lease.
    async fn follow(&self, forwarding_to: &mut Option<String>) {
        let target = match bounded(self.cluster.lease_ttl() / 4, self.cluster.active()).await {
            // Taken by an attempt this node gave up waiting for, which the
            // database committed all the same: nobody runs the workers
            // under it, so it is given back at once.
            Ok(Some(active)) if active.node_id == self.id() => {
                let lease = Lease {
                    epoch: active.epoch,
                };
                if let Err(e) =
                    bounded(self.cluster.lease_ttl() / 4, self.cluster.release(lease)).await
                {
                    tracing::warn!(error = %e, "cannot give back a lease this node did not know it took");
                }
                Target::Unavailable("no node is active now: retry".to_owned())
            }
            Ok(Some(active)) => match active.advertise_url {
                Some(url) => Target::Forward {
                    node_id: active.node_id,
                    url,
                },
                None => Target::Unavailable(format!(
                    "node {:?} is active but has no address: retry",
                    active.node_id
                )),
            },
            // Taken between the two reads, and gone again: try again soon.
            Ok(None) => Target::Unavailable("no node is active now: retry".to_owned()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read which node is active");
                return;
            }
        };
        if let Target::Forward { node_id, url } = &target
            && forwarding_to.as_deref() != Some(node_id.as_str())
        {
            output::error_line(&format!(
                "node {} is a standby: requests go to the active node {node_id} at {url}",
                self.id()
            ));
            *forwarding_to = Some(node_id.clone());
        }
        self.target.send_replace(target);
    }

    /// Runs the workers under `lease` (taken at `taken`) until the node
    /// drains or loses it. The lease is renewed from the moment it is
    /// taken, by a task of its own, while the workers are recovered
    /// (compiling stored components may take longer than a lease).
    async fn active(
        self,
        builder: ExecutorBuilder,
        lease: Lease,
        taken: Instant,
        mut drain: watch::Receiver<bool>,
    ) -> Result<(), String> {
        output::error_line(&format!(
            "node {} took the lease (epoch {}): recovering the workers",
            self.id(),
            lease.epoch
        ));
        self.unavailable(format!(
            "node {:?} is taking over from the former active node: retry",
            self.id()
        ));
        let (load_tx, load_rx) = watch::channel(None);
        let mut renewing = tokio::spawn(renew(Arc::clone(&self.cluster), lease, taken, load_rx));
        let opened = tokio::select! {
            opened = self.open(builder, lease) => opened,
            why = &mut renewing => {
                self.unavailable(format!("node {:?} lost its lease", self.id()));
                return Err(why.unwrap_or_else(|e| format!("its renewals stopped: {e}")));
            }
            _ = drain.changed() => {
                renewing.abort();
                self.give_up(lease).await;
                self.leave().await;
                return Ok(());
            }
        };
        let (store, executor) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                renewing.abort();
                // Let another node try at once rather than after expiry.
                self.give_up(lease).await;
                self.unavailable(format!("node {:?} could not take over", self.id()));
                return Err(format!("cannot run the workers: {e:#}"));
            }
        };
        let _ = load_tx.send(Some(executor.clone()));
        let router = vow_server::router(executor.clone(), self.config.clone());
        self.target.send_replace(Target::Local(router));
        output::error_line(&format!(
            "node {} is active (lease epoch {}): serving {} workers, ready {} ms after taking the lease",
            self.id(),
            lease.epoch,
            executor.workers(None).len(),
            taken.elapsed().as_millis()
        ));
        drop(executor);
        tokio::select! {
            why = &mut renewing => {
                self.stop(&store).await;
                Err(why.unwrap_or_else(|e| format!("its renewals stopped: {e}")))
            }
            holder = store.taken_over() => {
                renewing.abort();
                self.stop(&store).await;
                Err(format!("its writes are refused: {holder}"))
            }
            _ = drain.changed() => {
                renewing.abort();
                self.hand_over(&store, lease).await;
                Ok(())
            }
        }
    }

    /// The store fenced by `lease` and the executor over it, with the
    /// components given on the command line.
    async fn open(
        &self,
        builder: ExecutorBuilder,
        lease: Lease,
    ) -> anyhow::Result<(Arc<vow_store_postgres::PostgresStorage>, Executor)> {
        let store = self
            .cluster
            .open_store(lease, Default::default())
            .await
            .context("cannot open the database")?;
        let store = Arc::new(store);
        let executor = builder
            .storage(Arc::clone(&store) as vow_runtime::vow_store::SharedStorage)
            .open()
            .await
            .context("cannot open the database")?;
        for path in &self.components {
            local::load(&executor, path).await?;
        }
        Ok((store, executor))
    }

    /// Stops serving after the lease was lost: nothing more is written.
    /// The writer may be stuck on a database it cannot reach: the close is
    /// not waited for long (what it would still write is refused anyway).
    async fn stop(&self, store: &vow_store_postgres::PostgresStorage) {
        self.unavailable(format!(
            "node {:?} lost its lease: retry, another node takes over",
            self.id()
        ));
        let _ = tokio::time::timeout(Duration::from_millis(200), store.close()).await;
    }

    /// A drain: stops taking requests, writes what is in flight, and gives
    /// the lease up so that a standby takes over at once.
    async fn hand_over(&self, store: &vow_store_postgres::PostgresStorage, lease: Lease) {
        self.unavailable(format!(
            "node {:?} is handing its workers over to another node: retry",
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
        self.give_up(lease).await;
        self.leave().await;
    }

    /// Gives the lease up so that a standby takes over at once.
    async fn give_up(&self, lease: Lease) {
        match bounded(self.cluster.lease_ttl(), self.cluster.release(lease)).await {
            Ok(()) => output::error_line(&format!(
                "node {} gave its lease up: a standby takes over",
                self.id()
            )),
            Err(e) => output::error_line(&format!(
                "node {} could not give its lease up ({e}): another node takes over once it expires",
                self.id()
            )),
        }
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

/// Renews `lease` (taken at `taken`) every quarter of the lease time, with
/// the load of the executor once there is one, until it cannot: why. It
/// gives up when the lease is lost, or when no renewal went through for
/// 3/4 of the lease time (by this node's clock, counted from before the
/// last renewal that worked was sent), before the lease may expire.
async fn renew(
    cluster: Arc<Cluster>,
    lease: Lease,
    taken: Instant,
    executor: watch::Receiver<Option<Executor>>,
) -> String {
    let ttl = cluster.lease_ttl();
    let every = ttl / 4;
    let stop_after = ttl * 3 / 4;
    let mut renewed = taken;
    let overdue = |renewed: Instant| {
        format!(
            "it could not renew its lease for {:.1} s (the lease lasts {:.1} s), so it stops: \
             another node takes over once the lease expires",
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
        let load = executor.borrow().as_ref().map(load);
        let sent = Instant::now();
        tokio::select! {
            renewal = bounded(every, cluster.renew(Some(lease), load)) => match renewal {
                Ok(Renewal::Renewed) => renewed = sent,
                Ok(Renewal::Lost(why)) => return why,
                Err(e) => tracing::warn!(error = %e, "cannot renew the lease"),
            },
            () = tokio::time::sleep_until(deadline) => return overdue(renewed),
        }
    }
}

/// What an active node reports with each renewal.
fn load(executor: &Executor) -> NodeLoad {
    let workers = executor.workers(None);
    NodeLoad {
        workers: workers.len() as u64,
        resident: executor.resident_workers() as u64,
        running: workers
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
