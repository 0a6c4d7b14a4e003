//! The measurements through a real `vow serve` process: REST round trips,
//! completions from concurrent clients, and a restart after kill -9.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::{Row, Store, percentile, row, us};

/// Samples of the one-at-a-time REST round trip.
const REST_ROUND_TRIPS: usize = 1_000;
/// Workers completed by the concurrent clients.
const REST_PARKED: usize = 2_000;
/// Concurrent completing clients, one round each: a completion answers once
/// it is durable, so the rate grows with the requests in flight (larger
/// groups per commit).
const REST_CLIENTS: [usize; 3] = [32, 64, 128];
/// Workers waiting when the server is killed.
const RESTART_WAITING: usize = 10_000;
/// Requests in flight while parking workers.
const PARKING_CONCURRENCY: usize = 64;

/// A `vow serve` child process, killed with SIGKILL on drop.
struct Served {
    child: Child,
    base: String,
    component: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Served {
    /// Starts `vow serve` on `store` with the harness preloaded and waits
    /// until it prints the address it listens on.
    async fn start(store: &Store, harness: &Path, cache: &Path, extra: &[&str]) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("vow-bench-{}.log", uuid::Uuid::new_v4()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_vow"));
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--cache-dir"])
            .arg(cache)
            .args(store.serve_args())
            .args(extra)
            .arg("--component")
            .arg(harness)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting vow serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut component = None;
        let base = loop {
            let Some(line) = lines.next_line().await? else {
                bail!(
                    "vow serve exited before listening: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(rest) = line.strip_prefix("component harness ") {
                component = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep reading, so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            base,
            component: component.context("no `component harness` line in the banner")?,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .build()?,
            log,
        })
    }

    fn worker_url(&self, name: &str, rest: &str) -> String {
        format!(
            "{}/v1/components/{}/workers/{name}{rest}",
            self.base, self.component
        )
    }

    async fn post(&self, url: String, body: Value) -> Result<Value> {
        let answer = self.http.post(&url).json(&body).send().await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status.is_success(), "POST {url}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    async fn get(&self, url: String) -> Result<Value> {
        let answer = self.http.get(&url).send().await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status.is_success(), "GET {url}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    async fn create_worker(&self, name: &str) -> Result<()> {
        self.post(
            format!("{}/v1/components/{}/workers", self.base, self.component),
            json!({ "name": name }),
        )
        .await
        .map(drop)
    }

    /// `POST .../{endpoint}?function=create-and-await`, keyed by the
    /// worker's name; the answer's body.
    async fn create_and_await(&self, name: &str, endpoint: &str) -> Result<Value> {
        let url = self.worker_url(name, &format!("/{endpoint}?function=create-and-await"));
        let answer = self
            .http
            .post(&url)
            .header("Idempotency-Key", name)
            .json(&json!({ "params": [] }))
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status.is_success(), "POST {url}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// `invoke-and-await create-and-await`: answers once the promise is
    /// completed.
    async fn park_and_await(&self, name: &str) -> Result<Value> {
        self.create_and_await(name, "invoke-and-await").await
    }

    /// `invoke create-and-await`: queued, not awaited.
    async fn park(&self, name: &str) -> Result<()> {
        self.create_and_await(name, "invoke").await.map(drop)
    }

    /// The awaited pending promise of `name`, once there is one.
    async fn awaited(&self, name: &str) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = self.get(self.worker_url(name, "/promises")).await?;
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

    /// Every pending awaited promise of the component, by worker name.
    async fn all_awaited(&self) -> Result<Vec<(String, u64)>> {
        let listed = self
            .get(format!(
                "{}/v1/promises?status=pending&component={}",
                self.base, self.component
            ))
            .await?;
        Ok(listed["promises"]
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
            .collect())
    }

    async fn complete(&self, name: &str, index: u64) -> Result<()> {
        let done = self
            .post(
                self.worker_url(name, "/complete"),
                json!({ "oplogIdx": index, "data": [1, 2, 3] }),
            )
            .await?;
        ensure!(done == json!(true), "complete {name}/{index}: {done}");
        Ok(())
    }

    /// SIGKILL, then wait until the process is gone.
    async fn kill_9(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }
}

/// Runs `work` on `items`, at most `limit` at a time.
async fn bounded<T, F, Fut>(items: Vec<T>, limit: usize, work: F) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::StreamExt as _;
    let mut results = futures::stream::iter(items.into_iter().map(work)).buffer_unordered(limit);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// The REST rows for `store`.
pub(crate) async fn measure(
    fresh: impl Fn() -> Result<Store>,
    harness: &Path,
    cache: &Path,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();

    // Every parked worker stays in memory: this measures durable resumes,
    // not replay. A fresh store and server for each measurement.
    let resident = (REST_PARKED * 2).to_string();
    let flags = ["--max-resident", resident.as_str()];
    let store = fresh()?;
    let served = Arc::new(Served::start(&store, harness, cache, &flags).await?);
    let times = rest_round_trips(&served)
        .await
        .map_err(|e| anyhow!("{e:#}\nserver log:\n{}", served.log_tail()))?;
    rows.push(row(
        "REST: `POST complete` sent -> parked `invoke-and-await` answered, p50",
        us(percentile(&times, 50)),
    ));
    rows.push(row("  same, p99", us(percentile(&times, 99))));
    drop(served);
    for clients in REST_CLIENTS {
        let store = fresh()?;
        let served = Arc::new(Served::start(&store, harness, cache, &flags).await?);
        let rate = rest_concurrent(&served, clients)
            .await
            .map_err(|e| anyhow!("{e:#}\nserver log:\n{}", served.log_tail()))?;
        rows.push(row(
            format!(
                "REST: durable completions resuming {REST_PARKED} parked workers, {clients} concurrent clients"
            ),
            format!("{rate:.0}/s"),
        ));
    }

    let store = fresh()?;
    let (accepting, first, size) = restart(&store, harness, cache).await?;
    rows.push(row(
        format!("kill -9 of `vow serve` with {RESTART_WAITING} waiting workers, restart -> accepting requests"),
        format!("{:.2} s", accepting.as_secs_f64()),
    ));
    rows.push(row(
        "  then: completion sent -> that worker's `invoke-and-await` answered (first after restart)",
        us(first),
    ));
    rows.push(row(
        "  store size per waiting worker (files of the data directory, or the database)",
        format!("{:.1} KiB", size as f64 / RESTART_WAITING as f64 / 1024.0),
    ));
    Ok(rows)
}

/// One worker, again and again: park it, complete its promise, time the
/// answer.
async fn rest_round_trips(served: &Arc<Served>) -> Result<Vec<Duration>> {
    served.create_worker("round-trip").await?;
    let mut times = Vec::with_capacity(REST_ROUND_TRIPS);
    for _ in 0..REST_ROUND_TRIPS {
        let parked = {
            let served = Arc::clone(served);
            tokio::spawn(async move {
                let url =
                    served.worker_url("round-trip", "/invoke-and-await?function=create-and-await");
                let answer = served
                    .http
                    .post(&url)
                    .json(&json!({ "params": [] }))
                    .send()
                    .await?;
                let status = answer.status();
                let body = answer.bytes().await?;
                let arrived = Instant::now();
                ensure!(
                    status.is_success(),
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                );
                anyhow::Ok(arrived)
            })
        };
        let index = served.awaited("round-trip").await?;
        let sent = Instant::now();
        served.complete("round-trip", index).await?;
        let arrived = parked.await??;
        times.push(arrived - sent);
    }
    Ok(times)
}

/// Parks many workers with `invoke-and-await`, then completes them all
/// from concurrent clients: first completion sent -> last answer arrived.
async fn rest_concurrent(served: &Arc<Served>, clients: usize) -> Result<f64> {
    let names: Vec<String> = (0..REST_PARKED)
        .map(|i| format!("parked-{clients}-{i}"))
        .collect();
    bounded(names.clone(), PARKING_CONCURRENCY, |name| async move {
        served.create_worker(&name).await
    })
    .await?;
    let answers: Vec<_> = names
        .iter()
        .map(|name| {
            let served = Arc::clone(served);
            let name = name.clone();
            tokio::spawn(async move { served.park_and_await(&name).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let awaited = loop {
        let awaited = served.all_awaited().await?;
        if awaited.len() == REST_PARKED {
            break awaited;
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {REST_PARKED} workers parked",
            awaited.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let awaited = Arc::new(awaited);
    let started = Instant::now();
    let completers: Vec<_> = (0..clients)
        .map(|client| {
            let served = Arc::clone(served);
            let awaited = Arc::clone(&awaited);
            tokio::spawn(async move {
                for (name, index) in awaited.iter().skip(client).step_by(clients) {
                    served.complete(name, *index).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for completer in completers {
        completer.await??;
    }
    for answer in answers {
        answer.await??;
    }
    Ok(REST_PARKED as f64 / started.elapsed().as_secs_f64())
}

/// Parks [`RESTART_WAITING`] workers, kills the server with SIGKILL and
/// starts it again: spawn -> first request answered, then one completion
/// -> its parked invocation's answer, and the store's size.
async fn restart(store: &Store, harness: &Path, cache: &Path) -> Result<(Duration, Duration, u64)> {
    let served = Arc::new(Served::start(store, harness, cache, &[]).await?);
    let names: Vec<String> = (0..RESTART_WAITING)
        .map(|i| format!("waiting-{i}"))
        .collect();
    let parking = bounded(names.clone(), PARKING_CONCURRENCY, |name| {
        let served = Arc::clone(&served);
        async move {
            served.create_worker(&name).await?;
            served.park(&name).await
        }
    })
    .await;
    if let Err(e) = parking {
        bail!("{e:#}\nserver log:\n{}", served.log_tail());
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while served.all_awaited().await?.len() < RESTART_WAITING {
        ensure!(Instant::now() < deadline, "the workers never all parked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = names.last().cloned().ok_or_else(|| anyhow!("no workers"))?;
    let index = served.awaited(&last).await?;
    Arc::try_unwrap(served)
        .map_err(|_| anyhow!("the server is still shared"))?
        .kill_9()
        .await?;
    let size = store.size().await?;

    let started = Instant::now();
    let served = Served::start(store, harness, cache, &[]).await?;
    served
        .get(format!("{}/v1/components", served.base))
        .await
        .with_context(|| served.log_tail())?;
    let accepting = started.elapsed();

    let served = Arc::new(served);
    let parked = {
        let served = Arc::clone(&served);
        let last = last.clone();
        tokio::spawn(async move { served.park_and_await(&last).await })
    };
    // The repeated key attaches to the invocation parked before the kill.
    served.awaited(&last).await?;
    let sent = Instant::now();
    served.complete(&last, index).await?;
    parked.await??;
    let first = sent.elapsed();
    Ok((accepting, first, size))
}
