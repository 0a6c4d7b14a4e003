//! Cluster benchmark: several `vow serve --node-id` processes on one
//! PostgreSQL database (`docs/cluster.md`), each owning the workers
//! created through it. Measures what the forwarding hop costs a
//! completion sent to a node that does not own the worker, how long after
//! a `kill -9` of a node the survivors take its parked workers over and
//! they can be completed and answer there, and the throughput of three
//! nodes against one. Prints the tables and writes
//! `benchmarks/cluster.md`.
//!
//! Run with `bash scripts/with-postgres.sh cargo bench -p vow-cli --bench
//! cluster` (a throwaway PostgreSQL), or with `VOW_TEST_DATABASE_URL`
//! naming a server. Every measurement gets a fresh database and fresh
//! processes; every node and PostgreSQL run on this one machine.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Timed completions per path (to the worker's owner, to a node that
/// does not own it).
const FORWARD_SAMPLES: usize = 300;
/// Untimed completions per path first (connections, caches).
const FORWARD_WARMUP: usize = 20;
/// The lease of the forwarding measurement's cluster, in seconds.
const FORWARD_LEASE: &str = "5";
/// Workers parked on node a, which owns them (they were started through
/// it), when it is killed.
const KILL_PARKED: usize = 1_000;
/// The leases tried for the kill (seconds; 10 is the default).
const KILL_LEASES: [u64; 2] = [10, 2];
/// Kills per lease: the takeover depends on where in its renewal period
/// node a dies. The first run of each lease kills it right after a
/// renewal (its membership then has all of its time left: the worst
/// case), the others at a random moment.
const KILL_RUNS: usize = 4;
/// Requests in flight while parking workers, and while completing them
/// after the kill.
const CONCURRENCY: usize = 64;
/// Workers completed and resumed in the throughput measurement (spread
/// over the nodes when there are three).
const THROUGHPUT_WORKERS: usize = 3_000;
/// Rounds of the throughput measurement (the median is reported).
const THROUGHPUT_ROUNDS: usize = 3;
/// Concurrent clients of the throughput measurement.
const THROUGHPUT_CLIENTS: usize = 32;
/// How long anything may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(120);
/// A node renews its membership, and looks at the others', this often
/// at most (`min(lease / 4, 500 ms)`, docs/cluster.md).
const MAX_TICK: Duration = Duration::from_millis(500);

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// One line of a table.
struct Row {
    what: String,
    value: String,
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
    }
}

/// What the run measured, for the summary and the tables.
struct Results {
    forward: Forwarding,
    kills: Vec<Kill>,
    throughput: Vec<Throughput>,
}

async fn run() -> Result<()> {
    let approval = vow_tests::guest("approval")?;
    let cache = vow_tests::guest_target_dir().join("bench-compile-cache");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    let postgres = postgres_settings().await?;
    let setup = Setup {
        approval: approval.clone(),
        cache,
        http,
    };

    println!("1. completions sent to the worker's owner and to the other nodes...");
    let forward = forwarding(&setup).await?;
    let mut kills = Vec::new();
    for lease in KILL_LEASES {
        for run in 1..=KILL_RUNS {
            let when = if run == 1 {
                When::AfterRenewal
            } else {
                When::Random
            };
            println!(
                "2. kill -9 of a node owning parked workers, lease {lease} s, run {run} ({when:?})..."
            );
            kills.push(kill(&setup, lease, when).await?);
        }
    }
    let throughput = throughput(&setup).await?;

    let results = Results {
        forward,
        kills,
        throughput,
    };
    let text = render(&results, &postgres);
    println!("{text}");
    let out = vow_tests::workspace_root()
        .join("benchmarks")
        .join("cluster.md");
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

/// What every measurement starts from.
struct Setup {
    approval: PathBuf,
    cache: PathBuf,
    http: reqwest::Client,
}

impl Setup {
    /// A fresh database on the run's PostgreSQL server.
    fn database(&self) -> Result<String> {
        vow_tests::fresh_postgres_database()?
            .ok_or_else(|| anyhow!("this benchmark needs PostgreSQL (VOW_SKIP_POSTGRES is set)"))
    }

    /// Nodes a, b and c with lease `lease` (seconds) on `database`, a
    /// first: once this returns, all three serve. b and c start at random
    /// moments of a tick (500 ms), so that where their ticks fall against
    /// a's renewals differs from run to run, as with nodes started apart.
    async fn cluster(&self, database: &str, lease: &str, extra: &[&str]) -> Result<Vec<Node>> {
        let a = Node::start(self, database, Some(("a", lease)), extra).await?;
        a.wait_log("node a serves (epoch", PATIENCE).await?;
        tokio::time::sleep(random_below(MAX_TICK)).await;
        let b = Node::start(self, database, Some(("b", lease)), extra).await?;
        tokio::time::sleep(random_below(MAX_TICK)).await;
        let c = Node::start(self, database, Some(("c", lease)), extra).await?;
        b.wait_log("node b serves (epoch", PATIENCE).await?;
        c.wait_log("node c serves (epoch", PATIENCE).await?;
        Ok(vec![a, b, c])
    }
}

/// A `vow serve` child process, killed with SIGKILL on drop.
struct Node {
    child: Child,
    /// `http://ADDR`, as printed.
    url: String,
    /// Its stderr.
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Node {
    /// Starts `vow serve` on `database` with the approval component, as
    /// node `(id, lease)` of a cluster or as one node alone, and waits
    /// until it prints the address it listens on.
    async fn start(
        setup: &Setup,
        database: &str,
        cluster: Option<(&str, &str)>,
        extra: &[&str],
    ) -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "vow-bench-cluster-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_vow"));
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--cache-dir"])
            .arg(&setup.cache)
            .args(["--database-url", database]);
        if let Some((id, lease)) = cluster {
            command.args(["--node-id", id, "--lease-ttl", lease]);
        }
        command
            .args(extra)
            .arg("--component")
            .arg(&setup.approval)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting vow serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next_line().await? else {
                bail!(
                    "vow serve exited before listening: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep reading, so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, url, log })
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first line of its stderr that contains `needle`, once there is
    /// one.
    async fn wait_log(&self, needle: &str, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.stderr().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            ensure!(
                Instant::now() < deadline,
                "{} never printed {needle:?}:\n{}",
                self.url,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then wait until the process is gone.
    async fn kill_9(&mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// The REST calls of the benchmark, on the approval component; each takes
/// the base URL of the node to send it to.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    component: String,
    /// 503 answers retried (a node still starting, a worker whose owner
    /// cannot be reached, or one that moved while a request was
    /// forwarded).
    retried: Arc<AtomicUsize>,
}

impl Api {
    /// The client of the component named `approval`, as `node` lists it.
    async fn new(http: &reqwest::Client, node: &str) -> Result<Self> {
        let mut api = Self {
            http: http.clone(),
            component: String::new(),
            retried: Arc::new(AtomicUsize::new(0)),
        };
        let listed = api
            .ok(Method::GET, format!("{node}/v1/components"), None, None)
            .await?;
        api.component = listed["components"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "approval")
            .and_then(|c| c["componentId"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no component approval: {listed}"))?;
        Ok(api)
    }

    fn worker(&self, node: &str, name: &str, rest: &str) -> String {
        format!(
            "{node}/v1/components/{}/workers/{name}{rest}",
            self.component
        )
    }

    /// The status and the body of one request.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<(StatusCode, String)> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let answer = request.send().await.with_context(|| url.to_owned())?;
        let status = answer.status();
        Ok((status, answer.text().await?))
    }

    /// A request that must answer 200, sent again after a 503 (what a
    /// client does with `Retry-After`): its body.
    async fn ok(
        &self,
        method: Method,
        url: String,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Result<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, text) = self.send(method.clone(), &url, body.as_ref(), key).await?;
            if status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
                self.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            ensure!(status.is_success(), "{method} {url}: {status} {text}");
            return Ok(serde_json::from_str(&text)?);
        }
    }

    async fn start(&self, node: &str, name: &str) -> Result<()> {
        let url = format!("{node}/v1/components/{}/workers", self.component);
        self.ok(Method::POST, url, Some(json!({ "name": name })), None)
            .await
            .map(drop)
    }

    /// Queues `request-approval(job)` on the worker, keyed by `key`.
    async fn invoke(&self, node: &str, name: &str, job: &str, key: &str) -> Result<()> {
        let url = self.worker(node, name, "/invoke?function=request-approval");
        self.ok(
            Method::POST,
            url,
            Some(json!({ "params_json": [job] })),
            Some(key),
        )
        .await
        .map(drop)
    }

    /// `invoke-and-await request-approval(job)` keyed by `key`: checks
    /// that it answers with `payload`.
    async fn result(
        &self,
        node: &str,
        name: &str,
        job: &str,
        key: &str,
        payload: &str,
    ) -> Result<()> {
        let url = self.worker(node, name, "/invoke-and-await?function=request-approval");
        let body = self
            .ok(
                Method::POST,
                url,
                Some(json!({ "params_json": [job] })),
                Some(key),
            )
            .await?;
        let expected = format!("\"{job}\": {payload}");
        ensure!(
            body["result"] == json!(expected),
            "{name} answered {body}, not {expected:?}"
        );
        Ok(())
    }

    /// Completes the worker's promise at `index` with `payload`: checks
    /// that this completion settled it (`true`).
    async fn complete(&self, node: &str, name: &str, index: u64, payload: &str) -> Result<()> {
        let settled = self
            .ok(
                Method::POST,
                self.worker(node, name, "/complete"),
                Some(json!({ "oplogIdx": index, "data": payload.as_bytes() })),
                None,
            )
            .await?;
        ensure!(
            settled == json!(true),
            "completing {name}/{index} through {node} answered {settled}"
        );
        Ok(())
    }

    /// The worker's pending awaited promise, once there is one.
    async fn awaited(&self, node: &str, name: &str) -> Result<u64> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let listed = self
                .ok(
                    Method::GET,
                    self.worker(node, name, "/promises"),
                    None,
                    None,
                )
                .await?;
            let found = listed["promises"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["awaited"] == json!(true) && p["status"] == json!("pending"))
                .and_then(|p| p["oplogIdx"].as_u64());
            if let Some(index) = found {
                return Ok(index);
            }
            ensure!(
                Instant::now() < deadline,
                "worker {name} never awaited: {listed}"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Waits until `count` of the workers that `mine` accepts (by name)
    /// wait on a pending promise, as `node` lists them: their names and
    /// the promises' oplog indexes.
    async fn all_awaited(
        &self,
        node: &str,
        count: usize,
        mine: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, u64)>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let listed = self
                .ok(
                    Method::GET,
                    format!(
                        "{node}/v1/promises?status=pending&component={}",
                        self.component
                    ),
                    None,
                    None,
                )
                .await?;
            let awaited: Vec<(String, u64)> = listed["promises"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["awaited"] == json!(true))
                .filter_map(|p| {
                    Some((
                        p["workerName"].as_str()?.to_owned(),
                        p["oplogIdx"].as_u64()?,
                    ))
                })
                .filter(|(name, _)| mine(name))
                .collect();
            if awaited.len() >= count {
                return Ok(awaited);
            }
            ensure!(
                Instant::now() < deadline,
                "only {} of {count} workers parked",
                awaited.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts workers `{prefix}{i}` for every `i < count` and queues
    /// `request-approval("job-{i}")` on each (key `key-{i}`), worker `i`
    /// through `nodes[i % nodes.len()]`, which owns it; returns once they
    /// all wait on their promise.
    async fn park(
        &self,
        nodes: &[String],
        prefix: &str,
        count: usize,
    ) -> Result<Vec<(String, u64)>> {
        bounded((0..count).collect(), CONCURRENCY, |i| async move {
            let (node, name) = (&nodes[i % nodes.len()], format!("{prefix}{i}"));
            self.start(node, &name).await?;
            self.invoke(node, &name, &format!("job-{i}"), &format!("key-{i}"))
                .await
        })
        .await?;
        // Each node is asked about the workers it owns, which it runs.
        let mut parked = Vec::with_capacity(count);
        for (k, node) in nodes.iter().enumerate() {
            let owned = (k..count).step_by(nodes.len()).count();
            let mine = |name: &str| number(name).is_ok_and(|i| i % nodes.len() == k);
            parked.extend(self.all_awaited(node, owned, mine).await?);
        }
        ensure!(parked.len() == count, "{} of {count} parked", parked.len());
        Ok(parked)
    }
}

/// A random duration below `limit`.
fn random_below(limit: Duration) -> Duration {
    let micros = uuid::Uuid::new_v4().as_u128() % limit.as_micros().max(1);
    Duration::from_micros(u64::try_from(micros).unwrap_or_default())
}

/// The number in a worker's name (`{prefix}{i}`).
fn number(name: &str) -> Result<usize> {
    name.trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .with_context(|| format!("no number in {name}"))
}

/// Runs `work` on `items`, at most `limit` at a time: the outputs, in the
/// order they finished.
async fn bounded<T, R, F, Fut>(items: Vec<T>, limit: usize, work: F) -> Result<Vec<R>>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    use futures::StreamExt as _;
    let mut results = futures::stream::iter(items.into_iter().map(work)).buffer_unordered(limit);
    let mut out = Vec::new();
    while let Some(result) = results.next().await {
        out.push(result?);
    }
    Ok(out)
}

/// Measurement 1's two distributions.
struct Forwarding {
    /// Completions sent to the worker's owner.
    owner: Vec<Duration>,
    /// Completions sent to a node that does not own it (forwarded).
    other: Vec<Duration>,
}

/// Three nodes; one worker, started through a (a owns it), parks again
/// and again in `request-approval` with an `invoke-and-await` sent to a.
/// Its completion goes alternately to a and to a node that does not own
/// the worker (b and c in turn): `POST complete` sent -> the
/// `invoke-and-await` answered.
async fn forwarding(setup: &Setup) -> Result<Forwarding> {
    let database = setup.database()?;
    let nodes = setup.cluster(&database, FORWARD_LEASE, &[]).await?;
    let owner = nodes[0].url.clone();
    let others = [nodes[1].url.clone(), nodes[2].url.clone()];
    let api = Api::new(&setup.http, &owner).await?;
    api.start(&owner, "forwarded").await?;
    let mut times = Forwarding {
        owner: Vec::new(),
        other: Vec::new(),
    };
    for i in 0..2 * (FORWARD_WARMUP + FORWARD_SAMPLES) {
        let forwarded = i % 2 == 1;
        let (to, node) = if forwarded {
            (&others[(i / 2) % 2], &nodes[1 + (i / 2) % 2])
        } else {
            (&owner, &nodes[0])
        };
        let (job, key, payload) = (format!("job-{i}"), format!("key-{i}"), format!("ok-{i}"));
        let parked = {
            let (api, owner) = (api.clone(), owner.clone());
            let (job, key, payload) = (job.clone(), key.clone(), payload.clone());
            tokio::spawn(async move {
                api.result(&owner, "forwarded", &job, &key, &payload)
                    .await?;
                anyhow::Ok(Instant::now())
            })
        };
        let index = api.awaited(&owner, "forwarded").await?;
        let sent = Instant::now();
        api.complete(to, "forwarded", index, &payload)
            .await
            .with_context(|| node.stderr())?;
        let answered = parked.await??;
        if i >= 2 * FORWARD_WARMUP {
            let took = answered - sent;
            if forwarded {
                times.other.push(took);
            } else {
                times.owner.push(took);
            }
        }
    }
    Ok(times)
}

/// When in its renewal period node a is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// Right after a renewal: its membership has all its time left.
    AfterRenewal,
    /// At a random moment.
    Random,
}

/// Measurement 2, one run.
struct Kill {
    lease: u64,
    when: When,
    /// What a's membership had left when it was killed.
    left: Duration,
    /// kill -9 -> a survivor answers 200 on a worker route of one of a's
    /// workers.
    takeover: Duration,
    /// kill -9 -> the other survivor answers 200 there too.
    both: Duration,
    /// kill -9 -> a is listed gone: its run is over, and every one of its
    /// workers is free, taken by the first survivor a request about it
    /// reaches (what the survivors owned then: none of the parked ones
    /// has work to do by itself).
    /// workers (`GET /v1/nodes`).
    owned: Duration,
    /// What the survivors' sweeps printed: `b: took over N free workers in
    /// T ms`, each line; the workers they did not print were taken by the
    /// requests about them.
    took_over: String,
    /// kill -9 -> the last completion answered `true`.
    completed: Duration,
    /// kill -9 -> the last `invoke-and-await` answered.
    answered: Duration,
    /// 503s retried after the kill.
    retried: usize,
}

/// Three nodes with lease `lease`; [`KILL_PARKED`] workers started and
/// parked through a, which owns them; kill -9 of a. Then, once a survivor
/// answers 200 on a worker route of one of them, each worker's promise is
/// completed through one survivor and its invocation awaited
/// (`invoke-and-await` with the same key) through the other,
/// [`CONCURRENCY`] workers at a time.
async fn kill(setup: &Setup, lease: u64, when: When) -> Result<Kill> {
    let database = setup.database()?;
    let mut nodes = setup.cluster(&database, &lease.to_string(), &[]).await?;
    let doomed = nodes[0].url.clone();
    let survivors = [nodes[1].url.clone(), nodes[2].url.clone()];
    let api = Api::new(&setup.http, &doomed).await?;
    let parked = api
        .park(std::slice::from_ref(&doomed), "w", KILL_PARKED)
        .await?;

    // How long a's membership had left at the kill, by the database's
    // clock.
    let (client, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let membership_left = || async {
        let left: f64 = client
            .query_one(
                "SELECT extract(epoch FROM expires_at - clock_timestamp())::float8 \
                 FROM vow_nodes WHERE node_id = 'a'",
                &[],
            )
            .await?
            .get(0);
        anyhow::Ok(left)
    };
    let renewals = (Duration::from_secs(lease) / 4).min(MAX_TICK);
    let left = match when {
        When::AfterRenewal => {
            // A renewal makes what is left jump up.
            let deadline = Instant::now() + PATIENCE;
            let mut previous = membership_left().await?;
            loop {
                ensure!(Instant::now() < deadline, "node a never renewed");
                tokio::time::sleep(Duration::from_millis(2)).await;
                let left = membership_left().await?;
                if left > previous + 0.05 {
                    break left;
                }
                previous = left;
            }
        }
        When::Random => {
            tokio::time::sleep(random_below(renewals)).await;
            membership_left().await?
        }
    };
    drop(client);
    api.retried.store(0, Ordering::Relaxed);
    let killed = Instant::now();
    nodes[0].kill_9().await?;
    // Each survivor polled on its own: when it first answers 200.
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for survivor in &survivors {
        let (api, url, answers) = (
            api.clone(),
            api.worker(survivor, "w0", ""),
            answers_tx.clone(),
        );
        tokio::spawn(async move {
            while killed.elapsed() < PATIENCE {
                if let Ok((StatusCode::OK, _)) = api.send(Method::GET, &url, None, None).await {
                    let _ = answers.send(killed.elapsed());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    drop(answers_tx);
    // When a is listed gone (its workers are free for the survivors), as
    // one of them lists the nodes.
    let owned = {
        let (api, url) = (api.clone(), format!("{}/v1/nodes", survivors[0]));
        tokio::spawn(async move {
            while killed.elapsed() < PATIENCE {
                if let Ok((StatusCode::OK, text)) = api.send(Method::GET, &url, None, None).await {
                    let listed: Value = serde_json::from_str(&text)?;
                    let nodes = listed["nodes"].as_array().cloned().unwrap_or_default();
                    if nodes
                        .iter()
                        .any(|n| n["nodeId"] == json!("a") && n["role"] == json!("gone"))
                    {
                        return anyhow::Ok(killed.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bail!("node a was never listed gone")
        })
    };
    let takeover = answers.recv().await.context("no node took over")?;
    let resumed = bounded(parked, CONCURRENCY, |(name, index)| {
        let (api, survivors) = (&api, &survivors);
        async move {
            let i = number(&name)?;
            let payload = format!("ok-{i}");
            api.complete(&survivors[i % 2], &name, index, &payload)
                .await?;
            let completed = killed.elapsed();
            api.result(
                &survivors[(i + 1) % 2],
                &name,
                &format!("job-{i}"),
                &format!("key-{i}"),
                &payload,
            )
            .await?;
            anyhow::Ok((completed, killed.elapsed()))
        }
    })
    .await
    .map_err(|e| anyhow!("{e:#}\n{}\n{}", nodes[1].stderr(), nodes[2].stderr()))?;
    let retried = api.retried.load(Ordering::Relaxed);
    let both = answers
        .recv()
        .await
        .context("the other survivor never answered")?;
    let owned = owned.await??;
    let took_over: Vec<String> = nodes[1..]
        .iter()
        .flat_map(|n| {
            n.stderr()
                .lines()
                .filter(|l| l.contains(" free workers with work to do in "))
                .filter_map(|l| l.strip_prefix("node ").map(|l| l.replacen(' ', ": ", 1)))
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Kill {
        lease,
        when,
        left: Duration::from_secs_f64(left.max(0.0)),
        takeover,
        both,
        owned,
        took_over: if took_over.is_empty() {
            "none (no parked worker has work to do by itself): the requests took every worker"
                .to_owned()
        } else {
            took_over.join("; ")
        },
        completed: resumed.iter().map(|r| r.0).max().unwrap_or_default(),
        answered: resumed.iter().map(|r| r.1).max().unwrap_or_default(),
        retried,
    })
}

/// Where measurement 3 sends the two requests about worker `i`, which was
/// started through node `i % len` (its owner).
#[derive(Clone, Copy)]
enum Route {
    /// Request `n` of the run (worker `i`'s completion is `2i`, its
    /// `invoke-and-await` `2i + 1`) to node `n % len`.
    RoundRobin,
    /// Both to the worker's owner.
    Owner,
}

impl Route {
    /// The node (an index into `len` nodes) that gets request `request`
    /// (0: the completion, 1: the `invoke-and-await`) about worker `i`.
    fn node(self, i: usize, request: usize, len: usize) -> usize {
        match self {
            Self::RoundRobin => (2 * i + request) % len,
            Self::Owner => i % len,
        }
    }
}

/// Measurement 3: completions and resumes per second from
/// [`THROUGHPUT_CLIENTS`] clients, with one node alone and with three.
async fn throughput(setup: &Setup) -> Result<Vec<Throughput>> {
    // Every parked worker stays in memory (no eviction, no replay) in
    // every setup.
    let resident = (THROUGHPUT_WORKERS * 2).to_string();
    let extra = ["--evict-after", "3600", "--max-resident", resident.as_str()];
    let mut rates = [
        "one node alone (`vow serve --database-url`, no `--node-id`)",
        "three nodes, requests round-robin over a, b and c (two in three forwarded to the owner)",
        "three nodes, every request to the worker's owner (reference: no forwarding)",
    ]
    .map(|what| Throughput {
        what: what.to_owned(),
        rates: Vec::new(),
    });
    // The setups in turn, round after round: a slow moment of the machine
    // does not fall on one setup only.
    for round in 1..=THROUGHPUT_ROUNDS {
        println!("3. throughput, round {round}...");
        let database = setup.database()?;
        let alone = Node::start(setup, &database, None, &extra).await?;
        let only = std::slice::from_ref(&alone.url);
        rates[0]
            .rates
            .push(completions_and_resumes(setup, only, Route::Owner).await?);
        drop(alone);

        for (setup_rates, route) in rates[1..].iter_mut().zip([Route::RoundRobin, Route::Owner]) {
            let database = setup.database()?;
            let nodes = setup.cluster(&database, "10", &extra).await?;
            let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
            setup_rates
                .rates
                .push(completions_and_resumes(setup, &urls, route).await?);
            drop(nodes);
        }
    }
    Ok(rates.into())
}

/// One setup of measurement 3: workers completed and resumed per second,
/// one rate a round.
struct Throughput {
    what: String,
    rates: Vec<f64>,
}

impl Throughput {
    fn median(&self) -> f64 {
        let mut sorted = self.rates.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    /// The median, and every round's rate.
    fn shown(&self) -> String {
        let each: Vec<String> = self.rates.iter().map(|r| format!("{r:.0}")).collect();
        format!("{:.0}/s (rounds: {})", self.median(), each.join(", "))
    }
}

/// Parks [`THROUGHPUT_WORKERS`] workers (untimed), worker `i` started
/// through `nodes[i % len]`, which owns it; then [`THROUGHPUT_CLIENTS`]
/// clients each complete a worker's promise and await its invocation
/// (`invoke-and-await`, same key), worker after worker, each request sent
/// where `route` says. Workers resumed per second, first completion sent
/// -> last answer.
async fn completions_and_resumes(setup: &Setup, nodes: &[String], route: Route) -> Result<f64> {
    let api = Api::new(&setup.http, &nodes[0]).await?;
    let parked = Arc::new(api.park(nodes, "t", THROUGHPUT_WORKERS).await?);
    let nodes = Arc::new(nodes.to_vec());
    let started = Instant::now();
    let clients: Vec<_> = (0..THROUGHPUT_CLIENTS)
        .map(|client| {
            let (api, parked, nodes) = (api.clone(), Arc::clone(&parked), Arc::clone(&nodes));
            tokio::spawn(async move {
                for (name, index) in parked.iter().skip(client).step_by(THROUGHPUT_CLIENTS) {
                    let i = number(name)?;
                    let payload = format!("ok-{i}");
                    let to = |request| &nodes[route.node(i, request, nodes.len())];
                    api.complete(to(0), name, *index, &payload).await?;
                    api.result(
                        to(1),
                        name,
                        &format!("job-{i}"),
                        &format!("key-{i}"),
                        &payload,
                    )
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(THROUGHPUT_WORKERS as f64 / started.elapsed().as_secs_f64())
}

/// The PostgreSQL server's version and durability settings, for the
/// report.
async fn postgres_settings() -> Result<String> {
    let url = vow_tests::postgres_server()?
        .ok_or_else(|| anyhow!("this benchmark needs PostgreSQL (VOW_SKIP_POSTGRES is set)"))?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut shown = Vec::new();
    for setting in ["server_version", "fsync", "synchronous_commit"] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await?
            .get(0);
        shown.push(format!("{setting} {value}"));
    }
    Ok(shown.join(", "))
}

/// The commit measured, marked when the work tree has changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(vow_tests::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["status", "--porcelain"]),
    ) {
        (Some(head), Some(status)) if !status.is_empty() => {
            format!("commit {head} with uncommitted changes")
        }
        (Some(head), _) => format!("commit {head}"),
        (None, _) => "commit unknown".to_owned(),
    }
}

fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The worst case for a kill with `lease` from what `runs` measured: a's
/// membership has all its time left (a kill right after a renewal), then
/// the slowest takeover once it expired (takeover - left: a survivor's
/// poll, its claim or sweep of the worker and loading it); then the slowest
/// completion phase (takeover -> last answer). Takeover, last answer.
fn bounds(lease: u64, runs: &[&Kill]) -> (Duration, Duration) {
    let slowest = |of: fn(&Kill) -> Duration| runs.iter().map(|k| of(k)).max().unwrap_or_default();
    let takeover = Duration::from_secs(lease) + slowest(|k| k.takeover.saturating_sub(k.left));
    let phase = slowest(|k| k.answered.saturating_sub(k.takeover));
    (takeover, takeover + phase)
}

/// `took` against a target of `target`: met, or by how much it missed,
/// shown with `unit`.
fn against(took: Duration, target: Duration, unit: fn(Duration) -> String) -> String {
    if took <= target {
        format!("met ({} to spare)", unit(target - took))
    } else {
        format!("missed by {}", unit(took - target))
    }
}

/// `rate` against `base`, in words: within 5 % is "about as much as".
fn compared(rate: f64, base: f64) -> &'static str {
    if (rate - base).abs() < base * 0.05 {
        "about as much as"
    } else if rate > base {
        "more than"
    } else {
        "less than"
    }
}

fn table(out: &mut String, rows: &[Row]) {
    let _ = writeln!(out, "| measure | result |\n|---|---|");
    for r in rows {
        let _ = writeln!(out, "| {} | {} |", r.what, r.value);
    }
    out.push('\n');
}

fn render(results: &Results, postgres: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Cluster benchmark\n");
    let _ = writeln!(
        out,
        "`bash scripts/with-postgres.sh cargo bench -p vow-cli --bench cluster`: release build, one run, {} on {} cores, {}, {}. \
         PostgreSQL: {postgres} (scripts/with-postgres.sh runs its throwaway server without fsync unless `VOW_PG_FSYNC=on`). \
         Every `vow serve` process, the clients and PostgreSQL share this one machine and talk over loopback. \
         Each measurement starts fresh processes on a fresh database; the nodes share a warm compile cache. \
         Nodes run with `--node-id a|b|c --lease-ttl SECONDS`, all equal: each owns and runs the workers created through it, \
         a request about a worker sent to another node is forwarded to its owner, and when a node dies the survivors take its workers over \
         once its membership expires (docs/cluster.md). \
         The guest is `guest-examples/rust/approval`: `request-approval(job)` creates a promise, waits on it, and answers `\"job\": payload`. \
         This is a shared virtual machine whose speed varies from run to run (by up to 2x between runs while this benchmark was written): \
         compare rows of one run with each other rather than with other reports.\n",
        vow_tests::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        vow_server::time::rfc3339(std::time::SystemTime::now()),
        commit(),
    );

    let forward = &results.forward;
    let (p50_owner, p50_other) = (
        percentile(&forward.owner, 50),
        percentile(&forward.other, 50),
    );
    let extra = p50_other.saturating_sub(p50_owner);
    let extra_text = if p50_other >= p50_owner {
        us(extra)
    } else {
        format!("-{}", us(p50_owner - p50_other))
    };
    let _ = writeln!(out, "## Summary: the targets of issue 11\n");
    let _ = writeln!(out, "| measure | target | result |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| completion sent to a node that does not own the worker -> invocation answered, p50, extra over sending it to the owner | ≤ 2 ms extra | {extra_text} ({} against {}): {} |",
        us(p50_other),
        us(p50_owner),
        against(extra, Duration::from_millis(2), us),
    );
    for lease in KILL_LEASES {
        let runs: Vec<&Kill> = results.kills.iter().filter(|k| k.lease == lease).collect();
        let worst =
            |of: fn(&Kill) -> Duration| runs.iter().map(|k| of(k)).max().unwrap_or_default();
        let target = Duration::from_secs(lease + 1);
        let default = if lease == 10 { ", the default" } else { "" };
        for (what, took) in [
            (
                "a survivor answers 200 on a worker route of one of them (taken over: resumable)"
                    .to_owned(),
                worst(|k| k.takeover),
            ),
            (
                format!(
                    "a listed gone: its {KILL_PARKED} workers free, each taken by the first survivor a request reaches (`GET /v1/nodes`)"
                ),
                worst(|k| k.owned),
            ),
            (
                "every completion sent to the survivors accepted (`true`)".to_owned(),
                worst(|k| k.completed),
            ),
            (
                "every invocation answered with its own payload".to_owned(),
                worst(|k| k.answered),
            ),
        ] {
            let _ = writeln!(
                out,
                "| node killed with {KILL_PARKED} parked workers it owns (lease {lease} s{default}) -> {what} | ≤ {} s after the kill | {} (worst of {} runs): {} |",
                lease + 1,
                secs(took),
                runs.len(),
                against(took, target, secs),
            );
        }
        let (bound_takeover, bound_answered) = bounds(lease, &runs);
        let _ = writeln!(
            out,
            "| the same, worst case from the parts (the node's membership with all its time left + the slowest takeover - left; + the slowest completion phase) | ≤ {} s after the kill | takeover {}: {}; every invocation answered {}: {} |",
            lease + 1,
            secs(bound_takeover),
            against(bound_takeover, target, secs),
            secs(bound_answered),
            against(bound_answered, target, secs),
        );
    }
    let medians = results
        .throughput
        .iter()
        .map(Throughput::median)
        .collect::<Vec<_>>();
    if let [alone, spread, owner, ..] = medians[..] {
        let _ = writeln!(
            out,
            "| throughput, three nodes (workers spread over them, requests round-robin) against one, {THROUGHPUT_CLIENTS} clients, 2 cores | none | {spread:.0}/s against {alone:.0}/s ({:.2}x); every request to the worker's owner: {owner:.0}/s ({:.2}x); medians of {THROUGHPUT_ROUNDS} rounds |",
            spread / alone,
            owner / alone,
        );
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "## 1. A completion sent to a node that does not own the worker: the forwarding hop\n\n\
         Three nodes, lease {FORWARD_LEASE} s. One worker, started through a (so a owns it), parks in `request-approval` again and again, \
         an `invoke-and-await` in flight to a; its completion goes alternately to the owner a and to a node that does not own the worker \
         (b and c in turn), {FORWARD_SAMPLES} timed samples per path after {FORWARD_WARMUP} untimed ones. \
         Time: `POST complete` sent -> the `invoke-and-await` answered. The completion answers `true` once it is durable on the owner, \
         whichever node it was sent to; b or c knows the worker's owner (read once from the database, `vow_owners`, and remembered while the owner's run lasts) and forwards the request to it \
         over a pooled keep-alive connection, streamed both ways.\n"
    );
    let mut rows = Vec::new();
    for (label, times) in [
        ("sent to the owner a", &forward.owner),
        ("sent to b or c (forwarded to a)", &forward.other),
    ] {
        rows.push(row(
            format!("completion {label} -> invocation answered, p50 / p90 / p99"),
            format!(
                "{} / {} / {}",
                us(percentile(times, 50)),
                us(percentile(times, 90)),
                us(percentile(times, 99))
            ),
        ));
    }
    rows.push(row(
        "extra through a node that does not own the worker, difference of the p50s (target ≤ 2 ms)",
        extra_text,
    ));
    let p90_extra =
        percentile(&forward.other, 90).as_secs_f64() - percentile(&forward.owner, 90).as_secs_f64();
    rows.push(row(
        "  same, difference of the p90s",
        format!("{:.0} µs", p90_extra * 1e6),
    ));
    table(&mut out, &rows);

    let _ = writeln!(
        out,
        "## 2. kill -9 of a node owning {KILL_PARKED} parked workers\n\n\
         Three nodes. {KILL_PARKED} workers are started through a (so a owns them) and each parks in `request-approval` \
         (an `invoke` with an `Idempotency-Key`, {CONCURRENCY} requests in flight). \
         Then a gets SIGKILL, and the clock starts: in the first run of each lease right after one of a's renewals \
         (found by reading a's row in `vow_nodes` every 2 ms: its membership has all of its time left, the worst case), \
         in the others at a random moment of its renewal period. \
         \"left\" is what a's membership had left at the kill (`expires_at`), by the database's clock. \
         \"takeover\": until b or c answers 200 on a worker route of one of a's workers (`GET .../workers/w0`, each survivor polled every 10 ms). \
         Until a's membership expires they answer 503 (a cannot be reached); after that, the first survivor that gets a request about a free worker, \
         or sweeps it, takes it over, and the other survivor then forwards to that node (\"the other survivor answers 200\"). \
         \"a gone\": until `GET /v1/nodes` through b (polled every 20 ms) lists a as gone: its run is over, so every one of its workers is free \
         (no node runs it, and no node's memory holds it), and the first survivor a request about it reaches takes it and loads it from the store. \
         Besides the requests, each survivor sweeps the free workers that have work to do by themselves (a queued or running invocation, \
         a settled promise they wait on, a timer, a continuation), sharing them with the other: at its tick (every 500 ms at most, \
         and right after the next node's run expires) when it sees the membership changed, and within 50 ms after a forward to a failed. \
         A worker parked on a pending promise has none: \"the survivors' log\" shows their `took over N free workers with work to do in T ms` lines. \
         From the takeover on, {CONCURRENCY} workers at a time, each worker's promise is completed through one survivor and its invocation awaited through the other \
         (`invoke-and-await` with the same key: it answers with the parked invocation's result). A 503 is retried after 20 ms, and counted \
         from the kill on (the pollers' answers are not counted). b and c are started at random moments of a 500 ms tick, one after the other. \
         \"completions accepted\": until the last completion answered `true`; \
         \"invocations answered\": until the last `invoke-and-await` answered with its own payload. \
         Target: all resumable within the lease time + 1 s. a renews its membership every min(lease / 4, 500 ms), 500 ms with both leases here, \
         so it expires between the lease time - 0.5 s and the lease time after the kill, and the next request about one of a's workers (or a sweep) takes it over; \
         what is left of the target's 1 s goes to taking over, completing and resuming the {KILL_PARKED} workers. \
         \"takeover - left\" is the wait for the next poll plus the survivor's claim (or sweep) and load of the worker; the completion phase is takeover -> last answer. \
         A survivor loads each worker it takes over as after a restart: a parked worker stays parked, and resumes by replay when its promise is completed.\n"
    );
    let _ = writeln!(
        out,
        "| lease | killed | left | takeover: a survivor answers 200 | takeover - left | the other survivor answers 200 | a gone: all free | the survivors' log | every completion accepted | every invocation answered | completion phase | 503s retried |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for k in &results.kills {
        let _ = writeln!(
            out,
            "| {} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            k.lease,
            match k.when {
                When::AfterRenewal => "right after a renewal",
                When::Random => "at a random moment",
            },
            secs(k.left),
            secs(k.takeover),
            secs(k.takeover.saturating_sub(k.left)),
            secs(k.both),
            secs(k.owned),
            k.took_over,
            secs(k.completed),
            secs(k.answered),
            secs(k.answered.saturating_sub(k.takeover)),
            k.retried,
        );
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "## 3. Throughput: three nodes against one, on these 2 cores\n\n\
         {THROUGHPUT_WORKERS} workers parked (untimed; with three nodes, worker i is started and invoked through node i mod 3, so each node owns a third of them), \
         then {THROUGHPUT_CLIENTS} concurrent clients each take a worker, complete its promise, \
         and await its invocation (`invoke-and-await`, same key), worker after worker: workers completed and resumed per second, \
         first completion sent -> last answer. The three setups run in turn, {THROUGHPUT_ROUNDS} rounds, each on fresh processes and a fresh database; \
         the median is shown, then each round's rate. Every worker stays in memory (`--evict-after 3600 --max-resident {}`). \
         Round-robin: request n of the run goes to node n mod 3, so two requests in three reach a node that does not own the worker and are forwarded to its owner; \
         the reference sends every request to the worker's owner. No target.\n",
        THROUGHPUT_WORKERS * 2
    );
    let rows: Vec<Row> = results
        .throughput
        .iter()
        .map(|t| row(t.what.clone(), t.shown()))
        .collect();
    table(&mut out, &rows);
    if let [alone, spread, owner, ..] = medians[..] {
        let _ = writeln!(
            out,
            "With requests round-robin, three nodes completed and resumed {} one node alone ({:.2}x); \
             with every request sent to the worker's owner, {} one node alone ({:.2}x). \
             Round-robin, which forwards two requests in three, did {:.2}x the rate of sending every request to the owner. \
             Each node runs its own third of the workers and writes their completions itself, so the three nodes share the work that one node alone does all of. \
             But on this one 2-core machine the three processes compete for the same two cores and the same PostgreSQL, \
             and the cluster adds work of its own: each change a node writes is read again by the two others (a notification, then a batched read of the records), \
             and a forwarded request costs CPU on two nodes (section 1). \
             So these numbers show what running three nodes costs on a fixed budget of 2 cores, not how the cluster scales. \
             Scaling would need the nodes on separate machines, each with cores of its own (and PostgreSQL on its own), \
             where the one shared database becomes the limit; this benchmark does not measure that.",
            compared(spread, alone),
            spread / alone,
            compared(owner, alone),
            owner / alone,
            spread / owner,
        );
    }
    out
}
