//! Cluster benchmark: several `vow serve --node-id` processes on one
//! PostgreSQL database (`docs/cluster.md`). Measures what the forwarding
//! hop of a standby costs a completion, how long after a `kill -9` of the
//! active node its parked workers can be completed and answer on the
//! survivors, and the throughput of three nodes against one. Prints the
//! tables and writes `benchmarks/cluster.md`.
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

/// Timed completions per path (to the active node, to a standby).
const FORWARD_SAMPLES: usize = 300;
/// Untimed completions per path first (connections, caches).
const FORWARD_WARMUP: usize = 20;
/// The lease of the forwarding measurement's cluster, in seconds.
const FORWARD_LEASE: &str = "5";
/// Workers parked on the active node when it is killed.
const KILL_PARKED: usize = 1_000;
/// The leases tried for the kill (seconds; 10 is the default).
const KILL_LEASES: [u64; 2] = [10, 2];
/// Kills per lease: the takeover depends on where in its renewal period
/// the active node dies. The first run of each lease kills it right after
/// a renewal (the lease then has all of its time left: the worst case),
/// the others at a random moment.
const KILL_RUNS: usize = 4;
/// Requests in flight while parking workers, and while completing them
/// after the kill.
const CONCURRENCY: usize = 64;
/// Workers completed and resumed in the throughput measurement.
const THROUGHPUT_WORKERS: usize = 3_000;
/// Rounds of the throughput measurement (the median is reported).
const THROUGHPUT_ROUNDS: usize = 3;
/// Concurrent clients of the throughput measurement.
const THROUGHPUT_CLIENTS: usize = 32;
/// How long anything may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(120);

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

    println!("1. completions sent to the active node and to a standby...");
    let forward = forwarding(&setup).await?;
    let mut kills = Vec::new();
    for lease in KILL_LEASES {
        for run in 1..=KILL_RUNS {
            let when = if run == 1 {
                When::AfterRenewal
            } else {
                When::Random
            };
            println!("2. kill -9 of the active node, lease {lease} s, run {run} ({when:?})...");
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
    /// active: once this returns, b and c forward to a. b and c start at
    /// random moments of a standby's tick (500 ms), so that where their
    /// ticks fall against a's renewals differs from run to run, as with
    /// nodes started apart.
    async fn cluster(&self, database: &str, lease: &str, extra: &[&str]) -> Result<Vec<Node>> {
        let a = Node::start(self, database, Some(("a", lease)), extra).await?;
        a.wait_log("node a is active", PATIENCE).await?;
        tokio::time::sleep(random_below(Duration::from_millis(500))).await;
        let b = Node::start(self, database, Some(("b", lease)), extra).await?;
        tokio::time::sleep(random_below(Duration::from_millis(500))).await;
        let c = Node::start(self, database, Some(("c", lease)), extra).await?;
        b.wait_log("requests go to the active node a", PATIENCE)
            .await?;
        c.wait_log("requests go to the active node a", PATIENCE)
            .await?;
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
    /// 503 answers retried (no node active yet, or a standby that still
    /// forwards to the killed node).
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

    /// Waits until `count` workers wait on a pending promise: their names
    /// and the promises' oplog indexes.
    async fn all_awaited(&self, node: &str, count: usize) -> Result<Vec<(String, u64)>> {
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
    /// `request-approval("job-{i}")` on each (key `key-{i}`), all through
    /// `node`; returns once they all wait on their promise.
    async fn park(&self, node: &str, prefix: &str, count: usize) -> Result<Vec<(String, u64)>> {
        bounded((0..count).collect(), CONCURRENCY, |i| async move {
            let name = format!("{prefix}{i}");
            self.start(node, &name).await?;
            self.invoke(node, &name, &format!("job-{i}"), &format!("key-{i}"))
                .await
        })
        .await?;
        self.all_awaited(node, count).await
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
    active: Vec<Duration>,
    standby: Vec<Duration>,
}

/// Three nodes; one worker parks again and again in `request-approval`
/// with an `invoke-and-await` sent to the active node. Its completion goes
/// alternately to the active node and to a standby (b and c in turn):
/// `POST complete` sent -> the `invoke-and-await` answered.
async fn forwarding(setup: &Setup) -> Result<Forwarding> {
    let database = setup.database()?;
    let nodes = setup.cluster(&database, FORWARD_LEASE, &[]).await?;
    let active = nodes[0].url.clone();
    let standbys = [nodes[1].url.clone(), nodes[2].url.clone()];
    let api = Api::new(&setup.http, &active).await?;
    api.start(&active, "forwarded").await?;
    let mut times = Forwarding {
        active: Vec::new(),
        standby: Vec::new(),
    };
    for i in 0..2 * (FORWARD_WARMUP + FORWARD_SAMPLES) {
        let through_standby = i % 2 == 1;
        let to = if through_standby {
            &standbys[(i / 2) % 2]
        } else {
            &active
        };
        let (job, key, payload) = (format!("job-{i}"), format!("key-{i}"), format!("ok-{i}"));
        let parked = {
            let (api, active) = (api.clone(), active.clone());
            let (job, key, payload) = (job.clone(), key.clone(), payload.clone());
            tokio::spawn(async move {
                api.result(&active, "forwarded", &job, &key, &payload)
                    .await?;
                anyhow::Ok(Instant::now())
            })
        };
        let index = api.awaited(&active, "forwarded").await?;
        let sent = Instant::now();
        api.complete(to, "forwarded", index, &payload)
            .await
            .with_context(|| nodes[1].stderr())?;
        let answered = parked.await??;
        if i >= 2 * FORWARD_WARMUP {
            let took = answered - sent;
            if through_standby {
                times.standby.push(took);
            } else {
                times.active.push(took);
            }
        }
    }
    Ok(times)
}

/// When in the active node's renewal period it is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// Right after a renewal: the lease has all its time left.
    AfterRenewal,
    /// At a random moment.
    Random,
}

/// Measurement 2, one run.
struct Kill {
    lease: u64,
    when: When,
    /// What the lease had left when the active node was killed.
    left: Duration,
    /// kill -9 -> a survivor answers 200 on a worker route.
    takeover: Duration,
    /// kill -9 -> the other survivor answers 200 there too.
    both: Duration,
    /// What the new active node printed: workers it serves, ms from taking
    /// the lease to serving.
    ready: String,
    /// Those milliseconds.
    recovery: Duration,
    /// kill -9 -> the last completion answered `true`.
    completed: Duration,
    /// kill -9 -> the last `invoke-and-await` answered.
    answered: Duration,
    /// 503s retried.
    retried: usize,
}

/// Three nodes with lease `lease`; [`KILL_PARKED`] workers parked on the
/// active node; kill -9 of it. Then, once a survivor answers 200 on a
/// worker route, each worker's promise is completed through one survivor
/// and its invocation awaited (`invoke-and-await` with the same key)
/// through the other, [`CONCURRENCY`] workers at a time.
async fn kill(setup: &Setup, lease: u64, when: When) -> Result<Kill> {
    let database = setup.database()?;
    let mut nodes = setup.cluster(&database, &lease.to_string(), &[]).await?;
    let active = nodes[0].url.clone();
    let survivors = [nodes[1].url.clone(), nodes[2].url.clone()];
    let api = Api::new(&setup.http, &active).await?;
    let parked = api.park(&active, "w", KILL_PARKED).await?;
    ensure!(parked.len() == KILL_PARKED, "{} parked", parked.len());

    // How long the lease had left at the kill, by the database's clock.
    let (client, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let lease_left = || async {
        let left: f64 = client
            .query_one(
                "SELECT extract(epoch FROM expires_at - clock_timestamp())::float8 \
                 FROM vow_lease WHERE id = 1",
                &[],
            )
            .await?
            .get(0);
        anyhow::Ok(left)
    };
    let left = match when {
        When::AfterRenewal => {
            // A renewal makes what is left jump up.
            let deadline = Instant::now() + PATIENCE;
            let mut previous = lease_left().await?;
            loop {
                ensure!(Instant::now() < deadline, "the active node never renewed");
                tokio::time::sleep(Duration::from_millis(2)).await;
                let left = lease_left().await?;
                if left > previous + 0.05 {
                    break left;
                }
                previous = left;
            }
        }
        When::Random => {
            tokio::time::sleep(random_below(Duration::from_secs(lease) / 4)).await;
            lease_left().await?
        }
    };
    drop(client);
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
    let ready = nodes[1..]
        .iter()
        .find_map(|n| {
            n.stderr()
                .lines()
                .find(|l| l.contains(" is active "))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let both = answers
        .recv()
        .await
        .context("the other survivor never answered")?;
    let recovery = ready
        .split("ready ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .with_context(|| format!("no recovery time in {ready:?}"))?;
    Ok(Kill {
        lease,
        when,
        recovery,
        left: Duration::from_secs_f64(left.max(0.0)),
        takeover,
        both,
        ready: ready
            .split_once("): ")
            .map_or(ready.clone(), |(_, rest)| rest.to_owned()),
        completed: resumed.iter().map(|r| r.0).max().unwrap_or_default(),
        answered: resumed.iter().map(|r| r.1).max().unwrap_or_default(),
        retried: api.retried.load(Ordering::Relaxed),
    })
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
        "three nodes, requests round-robin over a, b and c (two in three forwarded)",
        "three nodes, every request to the active node a (reference: no forwarding)",
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
            .push(completions_and_resumes(setup, &alone.url, only).await?);
        drop(alone);

        let database = setup.database()?;
        let nodes = setup.cluster(&database, "10", &extra).await?;
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        rates[1]
            .rates
            .push(completions_and_resumes(setup, &urls[0], &urls).await?);
        drop(nodes);

        let database = setup.database()?;
        let nodes = setup.cluster(&database, "10", &extra).await?;
        let only = std::slice::from_ref(&nodes[0].url);
        rates[2]
            .rates
            .push(completions_and_resumes(setup, &nodes[0].url, only).await?);
        drop(nodes);
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

/// Parks [`THROUGHPUT_WORKERS`] workers through `parking` (untimed), then
/// [`THROUGHPUT_CLIENTS`] clients each complete a worker's promise and
/// await its invocation (`invoke-and-await`, same key), worker after
/// worker; request `n` goes to `targets[n % len]`. Workers resumed per
/// second, first completion sent -> last answer.
async fn completions_and_resumes(setup: &Setup, parking: &str, targets: &[String]) -> Result<f64> {
    let api = Api::new(&setup.http, parking).await?;
    let parked = Arc::new(api.park(parking, "t", THROUGHPUT_WORKERS).await?);
    let targets = Arc::new(targets.to_vec());
    let started = Instant::now();
    let clients: Vec<_> = (0..THROUGHPUT_CLIENTS)
        .map(|client| {
            let (api, parked, targets) = (api.clone(), Arc::clone(&parked), Arc::clone(&targets));
            tokio::spawn(async move {
                for (name, index) in parked.iter().skip(client).step_by(THROUGHPUT_CLIENTS) {
                    let i = number(name)?;
                    let payload = format!("ok-{i}");
                    let n = targets.len();
                    api.complete(&targets[(2 * i) % n], name, *index, &payload)
                        .await?;
                    api.result(
                        &targets[(2 * i + 1) % n],
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

/// The worst case for a kill with `lease` from what `runs` measured: the
/// lease has all its time left (a kill right after a renewal), the first
/// standby to try comes a full tick after it expired, the new node's
/// recovery is the slowest seen (and the probe's 10 ms); then the slowest
/// completion phase (takeover -> last answer). Takeover, last answer.
fn bounds(lease: u64, runs: &[&Kill]) -> (Duration, Duration) {
    let lease = Duration::from_secs(lease);
    let tick = (lease / 4).min(Duration::from_millis(500));
    let recovery = runs.iter().map(|k| k.recovery).max().unwrap_or_default();
    let takeover = lease + tick + recovery + Duration::from_millis(10);
    let phase = runs
        .iter()
        .map(|k| k.answered.saturating_sub(k.takeover))
        .max()
        .unwrap_or_default();
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
         Nodes run with `--node-id a|b|c --lease-ttl SECONDS`; a is started first and is active, b and c are standbys that forward to it (docs/cluster.md). \
         The guest is `guest-examples/rust/approval`: `request-approval(job)` creates a promise, waits on it, and answers `\"job\": payload`. \
         This is a shared virtual machine whose speed varies from run to run (by up to 2x between runs while this benchmark was written): \
         compare rows of one run with each other rather than with other reports.\n",
        vow_tests::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        vow_server::time::rfc3339(std::time::SystemTime::now()),
        commit(),
    );

    let forward = &results.forward;
    let (p50_active, p50_standby) = (
        percentile(&forward.active, 50),
        percentile(&forward.standby, 50),
    );
    let extra = p50_standby.saturating_sub(p50_active);
    let extra_text = if p50_standby >= p50_active {
        us(extra)
    } else {
        format!("-{}", us(p50_active - p50_standby))
    };
    let _ = writeln!(out, "## Summary: the targets of issue 11\n");
    let _ = writeln!(out, "| measure | target | result |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| completion sent to a non-active node -> invocation answered, p50, extra over sending it to the active node | ≤ 2 ms extra | {extra_text} ({} against {}): {} |",
        us(p50_standby),
        us(p50_active),
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
                "a survivor answers 200 for the workers (all recovered on the new active node: resumable)",
                worst(|k| k.takeover),
            ),
            (
                "every completion sent to the survivors accepted (`true`)",
                worst(|k| k.completed),
            ),
            (
                "every invocation answered with its own payload",
                worst(|k| k.answered),
            ),
        ] {
            let _ = writeln!(
                out,
                "| active node killed with {KILL_PARKED} parked workers (lease {lease} s{default}) -> {what} | ≤ {} s after the kill | {} (worst of {} runs): {} |",
                lease + 1,
                secs(took),
                runs.len(),
                against(took, target, secs),
            );
        }
        let (bound_takeover, bound_answered) = bounds(lease, &runs);
        let _ = writeln!(
            out,
            "| the same, worst case from the parts (lease + a full standby tick + the slowest recovery; + the slowest completion phase) | ≤ {} s after the kill | takeover {}: {}; every invocation answered {}: {} |",
            lease + 1,
            secs(bound_takeover),
            against(bound_takeover, target, secs),
            secs(bound_answered),
            against(bound_answered, target, secs),
        );
    }
    if let [alone, spread, ..] = results.throughput.as_slice() {
        let (alone, spread) = (alone.median(), spread.median());
        let _ = writeln!(
            out,
            "| throughput, three nodes (requests spread over them) against one, {THROUGHPUT_CLIENTS} clients, 2 cores | none | {spread:.0}/s against {alone:.0}/s ({:.2}x), medians of {THROUGHPUT_ROUNDS} rounds |",
            spread / alone
        );
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "## 1. A completion sent to a standby: the forwarding hop\n\n\
         Three nodes, lease {FORWARD_LEASE} s. One worker parks in `request-approval` again and again, an `invoke-and-await` in flight to the active node a; \
         its completion goes alternately to a and to a standby (b and c in turn), {FORWARD_SAMPLES} timed samples per path after {FORWARD_WARMUP} untimed ones. \
         Time: `POST complete` sent -> the `invoke-and-await` answered. The completion answers `true` once it is durable on the active node, \
         whichever node it was sent to; a standby forwards it over a pooled keep-alive connection, streamed both ways.\n"
    );
    let mut rows = Vec::new();
    for (label, times) in [
        ("sent to the active node", &forward.active),
        ("sent to a standby (forwarded)", &forward.standby),
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
        "extra through a standby, difference of the p50s (target ≤ 2 ms)",
        extra_text,
    ));
    let p90_extra = percentile(&forward.standby, 90).as_secs_f64()
        - percentile(&forward.active, 90).as_secs_f64();
    rows.push(row(
        "  same, difference of the p90s",
        format!("{:.0} µs", p90_extra * 1e6),
    ));
    table(&mut out, &rows);

    let _ = writeln!(
        out,
        "## 2. kill -9 of the active node with {KILL_PARKED} parked workers\n\n\
         Three nodes. {KILL_PARKED} workers are started on a and each parks in `request-approval` (an `invoke` with an `Idempotency-Key`, {CONCURRENCY} requests in flight). \
         Then a gets SIGKILL, and the clock starts: in the first run of each lease right after one of a's renewals \
         (found by reading the lease row every 2 ms: the lease has all of its time left, the worst case), in the others at a random moment. \
         \"left\" is what the lease had left at the kill, by the database's clock. \"takeover\": until b or c answers 200 on a worker route (each polled every 10 ms); \
         the other survivor answers 200 once it forwards to the new active node. \
         From the takeover on, {CONCURRENCY} workers at a time, each worker's promise is completed through one survivor and its invocation awaited through the other \
         (`invoke-and-await` with the same key: it answers with the parked invocation's result). A 503 (the other survivor still forwarding to the dead node: it looks again \
         as soon as a forward fails, at most every 50 ms, else at its next tick: see \"the other survivor answers 200\") is retried after 20 ms, and counted; \
         while it lags, the completions sent to it wait. b and c are started at random moments of a 500 ms tick, one after the other. \"completions accepted\": until the last completion answered `true`; \
         \"invocations answered\": until the last `invoke-and-await` answered with its own payload. \
         Target: all resumable within the lease time + 1 s. The lease expires between 3/4 of the lease time and the lease time after the kill \
         (the active node renews every quarter of it), and a standby tries to take it every min(lease / 4, 500 ms): \
         a takeover is expected between 3/4 of the lease time and the lease time + 0.5 s, plus the new node's recovery; \
         what is left of the target's 1 s goes to completing and resuming the {KILL_PARKED} workers. \
         \"takeover - left\" is the wait for a standby's tick plus the recovery; the completion phase is takeover -> last answer. \
         The new active node recovers the parked workers without bringing them into memory: each completion brings its worker back by replay.\n"
    );
    let _ = writeln!(
        out,
        "| lease | killed | left | takeover: a survivor answers 200 | takeover - left | the other survivor answers 200 | the new active node's log | every completion accepted | every invocation answered | completion phase | 503s retried |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for k in &results.kills {
        let _ = writeln!(
            out,
            "| {} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            k.lease,
            match k.when {
                When::AfterRenewal => "right after a renewal",
                When::Random => "at a random moment",
            },
            secs(k.left),
            secs(k.takeover),
            secs(k.takeover.saturating_sub(k.left)),
            secs(k.both),
            k.ready,
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
         {THROUGHPUT_WORKERS} workers parked (untimed, through the active node), then {THROUGHPUT_CLIENTS} concurrent clients each take a worker, complete its promise, \
         and await its invocation (`invoke-and-await`, same key), worker after worker: workers completed and resumed per second, \
         first completion sent -> last answer. The three setups run in turn, {THROUGHPUT_ROUNDS} rounds, each on fresh processes and a fresh database; \
         the median is shown, then each round's rate. Every worker stays in memory (`--evict-after 3600 --max-resident {}`). \
         Round-robin: request n of the run goes to node n mod 3, so two requests in three are forwarded. No target.\n",
        THROUGHPUT_WORKERS * 2
    );
    let rows: Vec<Row> = results
        .throughput
        .iter()
        .map(|t| row(t.what.clone(), t.shown()))
        .collect();
    table(&mut out, &rows);
    let _ = writeln!(
        out,
        "Three nodes do not do more than one here, and are not meant to in this step: the cluster is active/standby. \
         The active node runs every worker and writes every completion; b and c run no worker and only forward. \
         So extra nodes add availability (a standby takes over when the active node dies, section 2), not capacity, \
         and a request sent to a standby costs a hop (section 1) and CPU of its own: on one 2-core machine the standbys' forwarding \
         competes with the active node and with PostgreSQL for the same cores. \
         Showing the cluster scale would need per-worker ownership (each node running its own share of the workers, \
         docs/design/cluster.md; not built) and nodes on more machines than one."
    );
    out
}
