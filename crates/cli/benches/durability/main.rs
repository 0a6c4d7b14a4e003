//! Durability benchmark: what a durable store costs on the promise paths,
//! eviction and replay, and a restart after kill -9, on SQLite and on
//! PostgreSQL in the same run. Prints the tables and writes
//! `benchmarks/durability.md`.
//!
//! Run with `VOW_PG_FSYNC=on bash scripts/with-postgres.sh cargo bench -p
//! vow-cli --bench durability` (a throwaway PostgreSQL that fsyncs like a
//! production one), or with `VOW_TEST_DATABASE_URL` naming a server. With
//! `VOW_SKIP_POSTGRES=1` only SQLite is measured.
//!
//! The in-process rows use the executor's API (no HTTP) on a store that
//! times its calls, to show the database's share; the REST and restart rows
//! run the real `vow serve`. One run each.

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

mod served;
mod timed;

use timed::{Timed, Totals};

const ROUND_TRIPS: usize = 2_000;
const CONCURRENT: usize = 4_000;
const COMPLETERS: usize = 64;
const EVICTED: usize = 1_000;
const REPLAY_HISTORIES: [u64; 3] = [10, 100, 1_000];
/// Replays timed per history length (median reported).
const REPLAY_SAMPLES: usize = 5;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store for one measurement: a SQLite data directory, or a new
/// database on the PostgreSQL server of the run.
enum Store {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

/// An opened store: the timed handle the executor uses, and the writer's
/// commit and batch counts.
struct Opened {
    timed: Arc<Timed>,
    stats: Box<dyn Fn() -> (u64, u64) + Send + Sync>,
}

impl Store {
    fn fresh(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Sqlite => Ok(Self::Sqlite(tempfile::tempdir()?)),
            Backend::Postgres => match vow_tests::fresh_postgres_database()? {
                Some(url) => Ok(Self::Postgres(url)),
                None => Err(anyhow!("no PostgreSQL server (VOW_SKIP_POSTGRES is set)")),
            },
        }
    }

    /// Opens the store as `vow serve` would, behind a timing wrapper.
    async fn open(&self) -> Result<Opened> {
        Ok(match self {
            Self::Sqlite(dir) => {
                let store = Arc::new(vow_store_sqlite::SqliteStorage::open(
                    &dir.path().join("vow.db"),
                    vow_store_sqlite::SqliteOptions::default(),
                )?);
                let shared = Arc::clone(&store);
                Opened {
                    timed: Arc::new(Timed::new(store)),
                    stats: Box::new(move || {
                        let s = shared.stats();
                        (s.commits, s.batches)
                    }),
                }
            }
            Self::Postgres(url) => {
                let store = Arc::new(
                    vow_store_postgres::PostgresStorage::connect(
                        url,
                        vow_store_postgres::PostgresOptions::default(),
                    )
                    .await?,
                );
                let shared = Arc::clone(&store);
                Opened {
                    timed: Arc::new(Timed::new(store)),
                    stats: Box::new(move || {
                        let s = shared.stats();
                        (s.commits, s.batches)
                    }),
                }
            }
        })
    }

    /// Opens an executor on this store.
    async fn executor(&self, builder: ExecutorBuilder) -> Result<(Executor, Opened)> {
        let opened = self.open().await?;
        let executor = builder
            .storage(Arc::clone(&opened.timed) as Arc<dyn vow_store::Storage>)
            .open()
            .await?;
        Ok((executor, opened))
    }

    /// The flags that make `vow serve` use this store.
    fn serve_args(&self) -> Vec<String> {
        match self {
            Self::Sqlite(dir) => vec!["--data-dir".into(), dir.path().display().to_string()],
            Self::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
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

async fn run() -> Result<()> {
    let harness = vow_tests::guest("harness")?;
    let cache = vow_tests::guest_target_dir().join("bench-compile-cache");
    let mut backends = vec![Backend::Sqlite];
    if vow_tests::postgres_server()?.is_some() {
        backends.push(Backend::Postgres);
    }

    // The reference: the same round trip with state in memory.
    let memory = base(&cache).build()?;
    let memory_times = round_trips(&memory, &harness, None).await?.0;
    drop(memory);

    let mut tables = Vec::new();
    for backend in backends {
        println!("measuring {backend:?}...");
        let mut rows = in_process(backend, &harness, &cache, &memory_times).await?;
        rows.extend(served::measure(|| Store::fresh(backend), &harness, &cache).await?);
        tables.push((backend, rows));
    }

    let text = render(&tables, percentile(&memory_times, 50));
    println!("{text}");
    let out = vow_tests::workspace_root()
        .join("benchmarks")
        .join("durability.md");
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

/// As `vow serve` runs it by default (on-demand allocator).
fn base(cache: &Path) -> ExecutorBuilder {
    Executor::builder().cache_dir(cache).evict_after(None)
}

/// Mean time of each in store calls, with the calls per item.
fn store_share(totals: Totals, items: usize) -> String {
    let n = items.max(1) as f64;
    format!(
        "{:.0} µs per item in store calls: {:.1} writes ({:.0} µs), {:.1} reads ({:.0} µs)",
        (totals.write_time + totals.read_time).as_secs_f64() * 1e6 / n,
        totals.write_calls as f64 / n,
        totals.write_time.as_secs_f64() * 1e6 / n,
        totals.read_calls as f64 / n,
        totals.read_time.as_secs_f64() * 1e6 / n,
    )
}

async fn in_process(
    backend: Backend,
    harness: &Path,
    cache: &Path,
    memory_times: &[Duration],
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();

    // 1. Round trip, durable, against in memory.
    let store = Store::fresh(backend)?;
    let (durable, opened) = store.executor(base(cache)).await?;
    let (times, totals) = round_trips(&durable, harness, Some(&opened.timed)).await?;
    drop(durable);
    let (m, d) = (percentile(memory_times, 50), percentile(&times, 50));
    rows.push(row(
        "in process: host completes -> parked guest resumes -> invocation answered, p50",
        us(d),
    ));
    rows.push(row("  same, p99", us(percentile(&times, 99))));
    rows.push(row(
        "  against the same in memory (p50)",
        format!("{:.1}x", d.as_secs_f64() / m.as_secs_f64()),
    ));
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    rows.push(row(
        format!(
            "  the database's share: mean round trip {}, of which",
            us(mean)
        ),
        store_share(totals, times.len()),
    ));

    // 2. Durable completions that resume parked workers, all at once.
    // Every parked worker stays in memory (the resident cap is raised past
    // them): this measures durable resumes, not replay.
    let store = Store::fresh(backend)?;
    let (executor, opened) = store
        .executor(base(cache).max_resident(CONCURRENT * 2))
        .await?;
    let (rate, totals, (commits, batches)) =
        concurrent_completions(&executor, harness, &opened).await?;
    rows.push(row(
        format!(
            "in process: durable completions resuming {CONCURRENT} parked workers, {COMPLETERS} concurrent completers"
        ),
        format!("{rate:.0}/s"),
    ));
    rows.push(row(
        "  the database's share: per completion",
        format!(
            "{:.1} write calls, each waiting {:.0} µs on average for its group's commit; {:.1} batches per commit",
            totals.write_calls as f64 / CONCURRENT as f64,
            totals.write_time.as_secs_f64() * 1e6 / totals.write_calls.max(1) as f64,
            batches as f64 / commits.max(1) as f64
        ),
    ));
    drop(executor);

    // 3. Completion -> evicted worker replayed -> invocation answered.
    let store = Store::fresh(backend)?;
    let (executor, _) = store
        .executor(base(cache).evict_after(Some(Duration::ZERO)))
        .await?;
    let evicted = evicted_resumes(&executor, harness).await?;
    rows.push(row(
        "in process: completion -> evicted worker resumed by replay -> invocation answered, p50",
        us(percentile(&evicted, 50)),
    ));
    rows.push(row("  same, p99", us(percentile(&evicted, 99))));
    drop(executor);
    let store = Store::fresh(backend)?;
    let (executor, _) = store
        .executor(
            base(cache)
                .pooling_sized_for_resident()
                .evict_after(Some(Duration::ZERO)),
        )
        .await?;
    let evicted = evicted_resumes(&executor, harness).await?;
    rows.push(row(
        "  same with the pooling allocator (`vow serve --allocator pooling`), p50",
        us(percentile(&evicted, 50)),
    ));
    drop(executor);

    // 4. Replay time against history length, with and without snapshots.
    for snapshots in [None, Some(vow_runtime::DEFAULT_SNAPSHOT_EVERY)] {
        let store = Store::fresh(backend)?;
        let (executor, _) = store
            .executor(base(cache).snapshot_every(snapshots))
            .await?;
        let component = add(&executor, harness).await?;
        let mode = match snapshots {
            None => "no snapshots".to_owned(),
            Some(every) => format!("a snapshot every {every}"),
        };
        for history in REPLAY_HISTORIES {
            let took = replay_time(&executor, component, history).await?;
            rows.push(row(
                format!(
                    "in process: worker with {history} past invocations ({mode}) brought back into memory, next invocation answered"
                ),
                us(took),
            ));
        }
    }
    Ok(rows)
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

/// Times completion -> answer for one worker, again and again; with
/// `timed`, also the store calls made in the timed part.
async fn round_trips(
    executor: &Executor,
    harness: &Path,
    timed: Option<&Timed>,
) -> Result<(Vec<Duration>, Totals)> {
    let component = add(executor, harness).await?;
    let worker = executor
        .start_worker(component, "round-trip", WorkerConfig::default())
        .await?;
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    let mut totals = Totals::default();
    for _ in 0..ROUND_TRIPS {
        let call = executor
            .submit(&worker, Invocation::new("create-and-await", vec![]))
            .await?;
        let promise = parked_promise(executor, &worker).await?;
        let before = timed.map(Timed::take);
        let started = Instant::now();
        executor.complete_promise(&promise, b"x".to_vec()).await?;
        call.result().await?;
        times.push(started.elapsed());
        if let (Some(timed), Some(_)) = (timed, before) {
            totals.add(timed.take());
        }
    }
    Ok((times, totals))
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

/// Completions per second, the store calls made meanwhile, and the
/// writer's (commits, batches) meanwhile.
async fn concurrent_completions(
    executor: &Executor,
    harness: &Path,
    opened: &Opened,
) -> Result<(f64, Totals, (u64, u64))> {
    let component = add(executor, harness).await?;
    let parked = park_many(executor, component, "concurrent", CONCURRENT).await?;
    let (promises, calls): (Vec<_>, Vec<_>) = parked.into_iter().unzip();
    let promises = Arc::new(promises);
    opened.timed.take();
    let (commits, batches) = (opened.stats)();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..COMPLETERS {
        let executor = executor.clone();
        let promises = Arc::clone(&promises);
        tasks.push(tokio::spawn(async move {
            for promise in promises.iter().skip(client).step_by(COMPLETERS) {
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
    let rate = CONCURRENT as f64 / started.elapsed().as_secs_f64();
    let (c, b) = (opened.stats)();
    Ok((rate, opened.timed.take(), (c - commits, b - batches)))
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

fn render(tables: &[(Backend, Vec<Row>)], memory_p50: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Durability benchmark\n");
    let _ = writeln!(
        out,
        "`VOW_PG_FSYNC=on bash scripts/with-postgres.sh cargo bench -p vow-cli --bench durability`: release build, one run, {} on {} cores, {}. \
         One table per backend, same run, a fresh store for each measurement. \
         \"in process\" rows call the executor's API (no HTTP); \"REST\" and \"kill -9\" rows run the real `vow serve` and talk HTTP to it. \
         The database's share is the time the runtime waited for store calls (writes until durable, and reads), from a timing wrapper around the store.\n",
        vow_tests::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        vow_server::time::rfc3339(std::time::SystemTime::now()),
    );
    let _ = writeln!(
        out,
        "Reference: the in-process round trip with state in memory, p50: {}.\n",
        us(memory_p50)
    );
    for (backend, rows) in tables {
        let title = match backend {
            Backend::Sqlite => "SQLite (default; synchronous=FULL, an fsync at every commit)",
            Backend::Postgres => {
                "PostgreSQL 15 on loopback (fsync on, synchronous_commit on: the commit waits for the WAL on disk)"
            }
        };
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "| measure | result |\n|---|---|");
        for r in rows {
            let _ = writeln!(out, "| {} | {} |", r.what, r.value);
        }
        out.push('\n');
    }
    if !tables.iter().any(|(b, _)| *b == Backend::Postgres) {
        out.push_str("PostgreSQL was not measured: VOW_SKIP_POSTGRES was set.\n");
    }
    out
}
