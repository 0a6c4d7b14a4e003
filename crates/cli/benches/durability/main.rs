//! Durability benchmark: the cost of a durable store (SQLite, synchronous
//! FULL) on the promise paths, eviction and replay, and recovery after a
//! restart. Prints a table and writes `benchmarks/durability.md`.
//!
//! Run with `cargo bench -p vow-tests --bench durability` (SQLite), or with
//! `-- --postgres` on the server of `VOW_TEST_DATABASE_URL` (writes
//! `benchmarks/durability-postgres.md`; run it through
//! `VOW_PG_FSYNC=on bash scripts/with-postgres.sh` for a throwaway server
//! that fsyncs like a production one). Every figure is
//! in-process (the executor's API, no HTTP); one run each.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use vow_runtime::{
    ComponentId, Executor, ExecutorBuilder, Invocation, PromiseFilter, PromiseId, WorkerConfig,
    WorkerId,
};

const ROUND_TRIPS: usize = 2_000;
const CONCURRENT: usize = 4_000;
const EVICTED: usize = 1_000;
const RESTART_WAITING: usize = 10_000;
const REPLAY_HISTORIES: [u64; 3] = [10, 100, 1_000];
/// Replays timed per history length (median reported).
const REPLAY_SAMPLES: usize = 5;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let postgres = std::env::args().any(|a| a == "--postgres");
    runtime.block_on(run(postgres))
}

struct Row {
    what: String,
    value: String,
}

/// A durable store for one measurement: a fresh SQLite data directory, or
/// a fresh database on the PostgreSQL server of `VOW_TEST_DATABASE_URL`.
enum Durable {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Durable {
    fn new(postgres: bool) -> Result<Self> {
        if !postgres {
            return Ok(Self::Sqlite(tempfile::tempdir()?));
        }
        match vow_tests::fresh_postgres_database()? {
            Some(url) => Ok(Self::Postgres(url)),
            None => Err(anyhow!(
                "--postgres needs a server; VOW_SKIP_POSTGRES is set"
            )),
        }
    }

    /// Opens an executor on this store.
    async fn open(&self, builder: ExecutorBuilder) -> Result<Executor> {
        Ok(match self {
            Self::Sqlite(dir) => builder.data_dir(dir.path()).open().await?,
            Self::Postgres(url) => {
                let store = vow_store_postgres::PostgresStorage::connect(
                    url,
                    vow_store_postgres::PostgresOptions::default(),
                )
                .await?;
                builder.storage(Arc::new(store)).open().await?
            }
        })
    }

    /// Bytes the store takes: the data directory's files, or the database.
    async fn size(&self) -> Result<u64> {
        match self {
            Self::Sqlite(dir) => Ok(std::fs::read_dir(dir.path())?
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()),
            Self::Postgres(url) => {
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                let size: i64 = client
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .await?
                    .get(0);
                Ok(u64::try_from(size).unwrap_or(0))
            }
        }
    }
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
    }
}

async fn run(postgres: bool) -> Result<()> {
    let harness = vow_tests::guest("harness")?;
    let cache = vow_tests::guest_target_dir().join("bench-compile-cache");
    // As `vow serve` runs it by default (on-demand allocator).
    let base = || Executor::builder().cache_dir(&cache).evict_after(None);
    let mut rows = Vec::new();

    // 1. Round trip, in memory vs durable, same run.
    let memory = base().build()?;
    let memory_times = round_trips(&memory, &harness).await?;
    drop(memory);
    let store = Durable::new(postgres)?;
    let durable = store.open(base()).await?;
    let durable_times = round_trips(&durable, &harness).await?;
    drop(durable);
    let (m, d) = (
        percentile(&memory_times, 50),
        percentile(&durable_times, 50),
    );
    rows.push(row(
        "round trip: host completes -> parked guest resumes -> invocation answered, in memory, p50",
        us(m),
    ));
    rows.push(row("  same, durable (the store named above), p50", us(d)));
    rows.push(row(
        "  same, durable, p99",
        us(percentile(&durable_times, 99)),
    ));
    rows.push(row(
        "  ratio durable / in memory (p50)",
        format!("{:.1}x", d.as_secs_f64() / m.as_secs_f64()),
    ));

    // 2. Durable completions that resume parked workers, all at once.
    // Every parked worker stays in memory (the resident cap is raised past
    // them): this measures durable resumes, not replay.
    let store = Durable::new(postgres)?;
    let executor = store.open(base().max_resident(CONCURRENT * 2)).await?;
    let rate = concurrent_completions(&executor, &harness).await?;
    rows.push(row(
        format!(
            "durable completions resuming {CONCURRENT} parked workers, 64 concurrent completers"
        ),
        format!("{rate:.0}/s"),
    ));
    drop(executor);

    // 3. Completion -> evicted worker replayed -> invocation answered.
    let store = Durable::new(postgres)?;
    let executor = store.open(base().evict_after(Some(Duration::ZERO))).await?;
    let evicted = evicted_resumes(&executor, &harness).await?;
    rows.push(row(
        "completion -> evicted worker resumed by replay -> invocation answered, p50",
        us(percentile(&evicted, 50)),
    ));
    rows.push(row("  same, p99", us(percentile(&evicted, 99))));
    drop(executor);
    let store = Durable::new(postgres)?;
    let executor = store
        .open(
            base()
                .pooling_sized_for_resident()
                .evict_after(Some(Duration::ZERO)),
        )
        .await?;
    let evicted = evicted_resumes(&executor, &harness).await?;
    rows.push(row(
        "  same with the pooling allocator (`vow serve --allocator pooling`), p50",
        us(percentile(&evicted, 50)),
    ));
    drop(executor);

    // 4. Restart with many waiting workers.
    let store = Durable::new(postgres)?;
    let (open_time, first, disk) = restart(&store, &harness, &cache).await?;
    rows.push(row(
        format!("restart with {RESTART_WAITING} waiting workers: open -> accepting work"),
        format!("{:.2} s", open_time.as_secs_f64()),
    ));
    rows.push(row(
        "  then: completion sent -> its invocation answered (first after restart)",
        us(first),
    ));
    rows.push(row(
        "  store size per waiting worker (files of the data directory, or the database)",
        format!("{:.1} KiB", disk as f64 / RESTART_WAITING as f64 / 1024.0),
    ));

    // 5. Replay time against history length, with and without snapshots.
    for snapshots in [None, Some(vow_runtime::DEFAULT_SNAPSHOT_EVERY)] {
        let store = Durable::new(postgres)?;
        let executor = store.open(base().snapshot_every(snapshots)).await?;
        let component = add(&executor, &harness).await?;
        let mode = match snapshots {
            None => "no snapshots".to_owned(),
            Some(every) => format!("a snapshot every {every}"),
        };
        for history in REPLAY_HISTORIES {
            let took = replay_time(&executor, component, history).await?;
            rows.push(row(
                format!(
                    "worker with {history} past invocations ({mode}): brought back into memory and its next invocation answered"
                ),
                us(took),
            ));
        }
    }

    let table = render(&rows, postgres);
    println!("{table}");
    let out = vow_tests::workspace_root()
        .join("benchmarks")
        .join(if postgres {
            "durability-postgres.md"
        } else {
            "durability.md"
        });
    std::fs::write(&out, table).with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

async fn add(executor: &Executor, harness: &Path) -> Result<ComponentId> {
    Ok(executor.ensure_component_file(harness).await?)
}

async fn parked_promise(executor: &Executor, worker: &WorkerId) -> Result<PromiseId> {
    let filter = PromiseFilter {
        worker: Some(worker.clone()),
        ..PromiseFilter::pending()
    };
    loop {
        if let Some(p) = executor
            .promises(filter.clone())
            .await?
            .into_iter()
            .find(|p| p.awaited)
        {
            return Ok(p.id);
        }
        tokio::task::yield_now().await;
    }
}

/// Times completion -> answer for one worker, again and again.
async fn round_trips(executor: &Executor, harness: &Path) -> Result<Vec<Duration>> {
    let component = add(executor, harness).await?;
    let worker = executor
        .start_worker(component, "round-trip", WorkerConfig::default())
        .await?;
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let call = executor
            .submit(&worker, Invocation::new("create-and-await", vec![]))
            .await?;
        let promise = parked_promise(executor, &worker).await?;
        let started = Instant::now();
        executor.complete_promise(&promise, b"x".to_vec()).await?;
        call.result().await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

async fn park_many(
    executor: &Executor,
    component: ComponentId,
    prefix: &str,
    count: usize,
) -> Result<Vec<(PromiseId, vow_runtime::InvocationHandle)>> {
    let mut calls = Vec::with_capacity(count);
    for i in 0..count {
        let worker = executor
            .start_worker(component, &format!("{prefix}-{i}"), WorkerConfig::default())
            .await?;
        calls.push((
            worker.clone(),
            executor
                .submit(
                    &worker,
                    Invocation::new("create-and-await", vec![])
                        .with_idempotency_key(worker.worker_name.clone()),
                )
                .await?,
        ));
    }
    let mut out = Vec::with_capacity(count);
    for (worker, call) in calls {
        out.push((parked_promise(executor, &worker).await?, call));
    }
    Ok(out)
}

async fn concurrent_completions(executor: &Executor, harness: &Path) -> Result<f64> {
    let component = add(executor, harness).await?;
    let parked = park_many(executor, component, "concurrent", CONCURRENT).await?;
    let (promises, calls): (Vec<_>, Vec<_>) = parked.into_iter().unzip();
    let promises = Arc::new(promises);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..64 {
        let executor = executor.clone();
        let promises = Arc::clone(&promises);
        tasks.push(tokio::spawn(async move {
            for promise in promises.iter().skip(client).step_by(64) {
                executor.complete_promise(promise, b"x".to_vec()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    for call in calls {
        call.result().await?;
    }
    Ok(CONCURRENT as f64 / started.elapsed().as_secs_f64())
}

async fn evicted_resumes(executor: &Executor, harness: &Path) -> Result<Vec<Duration>> {
    let component = add(executor, harness).await?;
    let parked = park_many(executor, component, "evicted", EVICTED).await?;
    while executor.resident_workers() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut times = Vec::with_capacity(EVICTED);
    for (promise, call) in parked {
        let started = Instant::now();
        executor.complete_promise(&promise, b"x".to_vec()).await?;
        call.result().await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

async fn restart(
    store: &Durable,
    harness: &Path,
    cache: &Path,
) -> Result<(Duration, Duration, u64)> {
    let builder = || -> ExecutorBuilder {
        Executor::builder()
            .cache_dir(cache)
            .evict_after(Some(Duration::ZERO))
    };
    let promise = {
        let executor = store.open(builder()).await?;
        let component = add(&executor, harness).await?;
        let mut parked = park_many(&executor, component, "waiting", RESTART_WAITING).await?;
        let (promise, _) = parked.pop().ok_or_else(|| anyhow!("nothing parked"))?;
        promise
    };
    let disk = store.size().await?;
    let started = Instant::now();
    let executor = store.open(builder()).await?;
    let open_time = started.elapsed();
    // The invocation parked before the restart, found by its key.
    let call = executor
        .submit(
            &promise.worker_id,
            Invocation::new("create-and-await", vec![])
                .with_idempotency_key(promise.worker_id.worker_name.clone()),
        )
        .await?;
    let started = Instant::now();
    executor.complete_promise(&promise, b"x".to_vec()).await?;
    call.result().await?;
    let first = started.elapsed();
    Ok((open_time, first, disk))
}

/// A worker with `history` past invocations of `increment`: the median time
/// of dropping its instance (an interrupt with immediate recovery) and
/// answering its next invocation, which brings it back by replay.
async fn replay_time(
    executor: &Executor,
    component: ComponentId,
    history: u64,
) -> Result<Duration> {
    let worker = executor
        .start_worker(
            component,
            &format!("history-{history}"),
            WorkerConfig::default(),
        )
        .await?;
    for _ in 0..history {
        executor.invoke(&worker, "increment", vec![]).await?;
    }
    let mut times = Vec::with_capacity(REPLAY_SAMPLES);
    for _ in 0..REPLAY_SAMPLES {
        let resident = executor.resident_workers();
        executor.interrupt_worker(&worker, true)?;
        while executor.resident_workers() >= resident {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        executor
            .invoke(&worker, "ping", vec![vow_runtime::Val::U32(1)])
            .await?;
        times.push(started.elapsed());
    }
    Ok(percentile(&times, 50))
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

fn render(rows: &[Row], postgres: bool) -> String {
    let mut out = String::new();
    let (title, command, store) = if postgres {
        (
            "PostgreSQL",
            " -- --postgres",
            "PostgreSQL 15 on loopback, a fresh database per measurement, the server with fsync on (`VOW_PG_FSYNC=on bash scripts/with-postgres.sh ...`)",
        )
    } else {
        (
            "SQLite",
            "",
            "SQLite with synchronous=FULL (an fsync at every commit)",
        )
    };
    let _ = writeln!(out, "# Durability benchmark: {title}\n");
    let _ = writeln!(
        out,
        "`cargo bench -p vow-tests --bench durability{command}`: release build, in-process (no HTTP), one run, {} on {} cores; {store}.\n",
        vow_tests::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(out, "| measure | result |\n|---|---|");
    for r in rows {
        let _ = writeln!(out, "| {} | {} |", r.what, r.value);
    }
    out
}
