//! REST benchmark: how fast a completion sent over HTTP reaches a parked
//! guest and comes back as the answer of its `invoke-and-await`.
//!
//! Run with `cargo bench -p vow-server --bench rest`. The server runs in
//! this process on 127.0.0.1:0, on a tokio runtime of its own; the clients
//! run on another, as if they were a second process. Each of `WORKERS`
//! harness workers is parked in `create-and-await` by an `invoke-and-await`
//! request that stays open on a keep-alive connection of its own; then
//!
//! - latency: completions are sent one at a time, each timed from sending
//!   `POST .../complete` until the parked request's response has arrived;
//! - throughput: every worker is parked again and `CLIENTS` concurrent
//!   keep-alive clients complete them all; the rate counts from the first
//!   completion sent until the last parked response has arrived.
//!
//! Both are measured with two clients (see `conn`), because client and
//! server share the machine's cores. Reference rows say where the time
//! goes: the same completion through the embedding API (no HTTP), and
//! completions that find their promise already completed (HTTP and routing
//! without a resume), one at a time and from the throughput clients. The
//! table is printed and written to `benchmarks/rest.md`.
//!
//! With `-- --durable` the executor keeps its state in a SQLite data
//! directory (fsync at every commit), and the table goes to
//! `benchmarks/rest-durable.md`.
//!
//! `REST_BENCH_CLIENTS=N` changes the number of throughput clients;
//! `REST_BENCH_PERF_FIFO` lets `perf record` profile the throughput rounds
//! only (see `report::Profiler`).

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

mod conn;
mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use vow_runtime::{Executor, Invocation, PromiseFilter, PromiseId, WorkerConfig, WorkerId};

use crate::conn::{Conn, Kind, RawConn};
use crate::report::{Measured, Profiler, Run, Stats, cpu_time};

/// Workers parked at once.
const WORKERS: usize = 1000;
/// Sequential latency samples: this many rounds over every worker.
const LATENCY_ROUNDS: usize = 2;
/// Throughput rounds, each completing every worker.
const THROUGHPUT_ROUNDS: usize = 7;
/// Concurrent completing clients in the throughput rounds (override with
/// `REST_BENCH_CLIENTS`).
const CLIENTS: usize = 8;

fn clients() -> usize {
    std::env::var("REST_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(CLIENTS)
}
/// Samples of the reference measurements.
const REFERENCE_SAMPLES: usize = 2000;

/// The server under test.
struct Bench {
    addr: String,
    cid: String,
    names: Vec<String>,
    /// Shared by every reqwest handle; each open request gets a connection.
    pool: reqwest::Client,
}

/// A parked request: resolves with the instant its response arrived and
/// the connection, for the next round.
type Parked = oneshot::Receiver<Result<(Instant, Conn)>>;

impl Bench {
    fn path(&self, name: &str, rest: &str) -> String {
        format!("/v1/components/{}/workers/{name}{rest}", self.cid)
    }

    /// Sends `invoke-and-await create-and-await` in the background.
    fn park(&self, name: &str, mut conn: Conn) -> Parked {
        let (tx, rx) = oneshot::channel();
        let path = self.path(name, "/invoke-and-await?function=create-and-await");
        tokio::spawn(async move {
            let outcome = async {
                let (status, body) = conn.post(&path, b"{\"params\":[]}").await?;
                let arrived = Instant::now();
                ensure!(
                    status == 200,
                    "{status}: {}",
                    String::from_utf8_lossy(&body)
                );
                Ok((arrived, conn))
            };
            let _ = tx.send(outcome.await);
        });
        rx
    }

    /// Parks every worker and waits until each awaits its promise.
    async fn park_all(&self, conns: Vec<Conn>) -> Result<(Vec<Parked>, HashMap<String, u64>)> {
        let parked: Vec<Parked> = self
            .names
            .iter()
            .zip(conns)
            .map(|(name, conn)| self.park(name, conn))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let uri = format!(
                "http://{}/v1/promises?status=pending&component={}",
                self.addr, self.cid
            );
            let listed: Value = self.pool.get(uri).send().await?.json().await?;
            let awaited: HashMap<String, u64> = listed["promises"]
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
            if awaited.len() == self.names.len() {
                return Ok((parked, awaited));
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} workers parked",
                    awaited.len(),
                    self.names.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST .../complete`; whether it completed the promise.
    async fn complete(&self, conn: &mut Conn, name: &str, idx: u64) -> Result<bool> {
        let body = format!("{{\"oplogIdx\":{idx},\"data\":[1,2,3]}}");
        let (status, answer) = conn
            .post(&self.path(name, "/complete"), body.as_bytes())
            .await?;
        match (status, answer.as_slice()) {
            (200, b"true") => Ok(true),
            (200, b"false") => Ok(false),
            (status, body) => bail!("complete: {status} {}", String::from_utf8_lossy(body)),
        }
    }

    async fn open(&self, kind: Kind, count: usize) -> Result<Vec<Conn>> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            conns.push(Conn::open(kind, &self.addr, &self.pool).await?);
        }
        Ok(conns)
    }

    /// Latency and throughput rounds with one kind of client.
    async fn measure(self: &Arc<Self>, kind: Kind, profiler: &Profiler) -> Result<Run> {
        let mut parkers = self.open(kind, WORKERS).await?;
        let mut completer = Conn::open(kind, &self.addr, &self.pool).await?;

        let mut to_resume = Vec::with_capacity(WORKERS * LATENCY_ROUNDS);
        let mut to_answer = Vec::with_capacity(WORKERS * LATENCY_ROUNDS);
        for _ in 0..LATENCY_ROUNDS {
            let (parked, idx) = self.park_all(parkers).await?;
            parkers = Vec::with_capacity(WORKERS);
            for (name, parked) in self.names.iter().zip(parked) {
                let sent = Instant::now();
                ensure!(
                    self.complete(&mut completer, name, idx[name]).await?,
                    "{name}: not completed"
                );
                to_answer.push(sent.elapsed());
                let (arrived, conn) = parked.await??;
                to_resume.push(arrived.saturating_duration_since(sent));
                parkers.push(conn);
            }
        }

        let mut rates = Vec::with_capacity(THROUGHPUT_ROUNDS);
        let (mut cpu, mut wall) = (Duration::ZERO, Duration::ZERO);
        let mut completers = self.open(kind, clients()).await?;
        for _ in 0..THROUGHPUT_ROUNDS {
            let (parked, idx) = self.park_all(parkers).await?;
            profiler.enable();
            let cpu_before = cpu_time();
            let started = Instant::now();
            let mut tasks = JoinSet::new();
            // Clients take the next worker from a shared counter, so none
            // idles while others still have work.
            let next = Arc::new(AtomicUsize::new(0));
            let order: Arc<Vec<(String, u64)>> =
                Arc::new(self.names.iter().map(|n| (n.clone(), idx[n])).collect());
            for mut conn in completers.drain(..) {
                let (bench, next, order) =
                    (Arc::clone(self), Arc::clone(&next), Arc::clone(&order));
                tasks.spawn(async move {
                    while let Some((name, idx)) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        ensure!(
                            bench.complete(&mut conn, name, *idx).await?,
                            "{name}: not completed"
                        );
                    }
                    Ok(conn)
                });
            }
            parkers = Vec::with_capacity(WORKERS);
            for parked in parked {
                parkers.push(parked.await??.1);
            }
            let elapsed = started.elapsed();
            cpu += cpu_time().saturating_sub(cpu_before);
            profiler.disable();
            while let Some(done) = tasks.join_next().await {
                completers.push(done??);
            }
            wall += elapsed;
            rates.push(WORKERS as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);

        // A completion that finds its promise completed: HTTP and routing
        // without a resume.
        let (name, idx) = (&self.names[0], latest_index_of(self, &self.names[0]).await?);
        let mut http_only = Vec::with_capacity(REFERENCE_SAMPLES);
        for _ in 0..REFERENCE_SAMPLES {
            let sent = Instant::now();
            ensure!(
                !self.complete(&mut completer, name, idx).await?,
                "completed twice"
            );
            http_only.push(sent.elapsed());
        }

        // The same clients, completing an already completed promise: the
        // HTTP stack's own ceiling on this machine.
        let total = WORKERS * THROUGHPUT_ROUNDS;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for mut conn in completers.drain(..) {
            let (bench, next, name) = (Arc::clone(self), Arc::clone(&next), name.clone());
            tasks.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    ensure!(
                        !bench.complete(&mut conn, &name, idx).await?,
                        "completed twice"
                    );
                }
                Ok(conn)
            });
        }
        while let Some(done) = tasks.join_next().await {
            completers.push(done??);
        }
        let http_rate = total as f64 / started.elapsed().as_secs_f64();

        Ok(Run {
            http_rate,
            kind,
            to_resume: Stats::of(&mut to_resume),
            to_answer: Stats::of(&mut to_answer),
            rate: rates[rates.len() / 2],
            rates,
            cpu_per_completion: cpu / (WORKERS * THROUGHPUT_ROUNDS) as u32,
            busy_cores: cpu.as_secs_f64() / wall.as_secs_f64(),
            http_only: Stats::of(&mut http_only),
        })
    }
}

/// The index of the newest promise of a worker, over HTTP.
async fn latest_index_of(bench: &Bench, name: &str) -> Result<u64> {
    let uri = format!(
        "http://{}/v1/promises?component={}&worker={name}",
        bench.addr, bench.cid
    );
    let listed: Value = bench.pool.get(uri).send().await?.json().await?;
    listed["promises"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["oplogIdx"].as_u64())
        .context("no promise")
}

fn main() -> Result<()> {
    // The server and the clients get a runtime each, as if they were two
    // processes: neither can delay the other's tasks, only share the cores.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("client")
        .enable_all()
        .build()?;
    let wasm = vow_tests::guest("harness")?;
    let durable = std::env::args().any(|a| a == "--durable");
    let data = tempfile::tempdir()?;
    let (executor, addr, stop, server) = server_rt.block_on(async {
        // Parked workers stay in memory: this measures the resume path, not
        // eviction (the durability benches measure that).
        let builder = Executor::builder().evict_after(None);
        let executor = if durable {
            builder.data_dir(data.path()).open().await?
        } else {
            builder.build()?
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let router = vow_server::router(executor.clone(), vow_server::ServerConfig::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(vow_server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        anyhow::Ok((executor, addr, stop, server))
    })?;

    let (bench, runs) = client_rt.block_on(clients_run(addr, &wasm))?;
    let direct = server_rt.block_on(direct_latency(&executor, &bench.cid))?;
    let _ = stop.send(());
    server_rt.block_on(server)??;

    let mut report = report::render(&Measured {
        target_p50: if durable {
            report::TARGET_P50_DURABLE
        } else {
            report::TARGET_P50
        },
        workers: WORKERS,
        clients: clients(),
        runs,
        direct,
    });
    if durable {
        report = report.replacen(
            "\n",
            "\n\nDurable: `cargo bench -p vow-server --bench rest -- --durable`; state in a SQLite data directory with an fsync at every commit. Every completion is on disk before it answers, and every result before it is returned.\n",
            1,
        );
    }
    println!("{report}");
    let path = vow_tests::workspace_root()
        .join("benchmarks")
        .join(if durable {
            "rest-durable.md"
        } else {
            "rest.md"
        });
    std::fs::create_dir_all(path.parent().context("no parent")?)?;
    std::fs::write(&path, &report)?;
    println!("written to {}", path.display());
    Ok(())
}

/// Uploads the guest, starts the workers and measures with both clients.
async fn clients_run(addr: String, wasm: &std::path::Path) -> Result<(Arc<Bench>, Vec<Run>)> {
    let pool = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let uploaded: Value = pool
        .post(format!("http://{addr}/v1/components?name=harness"))
        .body(std::fs::read(wasm)?)
        .send()
        .await?
        .json()
        .await?;
    let cid = uploaded["componentId"]
        .as_str()
        .context("upload failed")?
        .to_owned();
    let names: Vec<String> = (0..WORKERS).map(|i| format!("w{i}")).collect();
    let bench = Arc::new(Bench {
        addr,
        cid,
        names,
        pool,
    });

    let started = Instant::now();
    let mut creator = RawConn::connect(&bench.addr).await?;
    for name in &bench.names {
        let body = serde_json::to_vec(&json!({ "name": name }))?;
        let (status, _) = creator
            .post(&format!("/v1/components/{}/workers", bench.cid), &body)
            .await?;
        ensure!(status == 200, "creating {name}: {status}");
    }
    println!("started {WORKERS} workers in {:?}", started.elapsed());

    let profiler = Profiler::from_env()?;
    let raw = bench.measure(Kind::Raw, &profiler).await?;
    println!("measured with the {}", raw.kind.label());
    let reqwest = bench.measure(Kind::Reqwest, &Profiler::off()).await?;
    println!("measured with the {}", reqwest.kind.label());
    Ok((bench, vec![raw, reqwest]))
}

/// Completion to result through `Executor` alone, on a worker of its own.
async fn direct_latency(executor: &Executor, cid: &str) -> Result<Stats> {
    let worker: WorkerId = executor
        .start_worker(cid.parse()?, "direct", WorkerConfig::default())
        .await?;
    let filter = PromiseFilter {
        worker: Some(worker.clone()),
        ..PromiseFilter::pending()
    };
    let mut samples = Vec::with_capacity(REFERENCE_SAMPLES);
    for _ in 0..REFERENCE_SAMPLES {
        let call = executor
            .submit(&worker, Invocation::new("create-and-await", vec![]))
            .await?;
        let id: PromiseId = loop {
            let pending = executor.promises(filter.clone()).await?;
            if let Some(p) = pending.into_iter().find(|p| p.awaited) {
                break p.id;
            }
            tokio::task::yield_now().await;
        };
        let sent = Instant::now();
        ensure!(
            executor.complete_promise(&id, vec![1, 2, 3]).await?,
            "not completed"
        );
        call.result().await?;
        samples.push(sent.elapsed());
    }
    Ok(Stats::of(&mut samples))
}
