//! Runtime benchmark: promise round trip against its floor, memory per parked
//! worker, worker start time. Prints a table and writes
//! `benchmarks/runtime.md`.
//!
//! Run with `cargo bench -p vow-tests --bench runtime`.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot};
use vow_runtime::{
    ComponentId, Executor, Invocation, PoolingAllocationConfig, PromiseFilter, Val, WorkerConfig,
    WorkerId, WorkerStatus,
};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

const ROUND_TRIPS: usize = 5_000;
const PARKED: usize = 10_000;
const STARTS: usize = 2_000;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let harness = std::fs::read(vow_tests::guest("harness")?)?;
    let floor = std::fs::read(vow_tests::guest("floor")?)?;
    let mut rows = Vec::new();

    let (executor, component) = executor(Executor::builder(), &harness).await?;
    let (vow, floor_times) = round_trips(&executor, component, &floor).await?;
    let vow = Stats::of(vow);
    let floor_stats = Stats::of(floor_times);
    rows.push(Row::new(
        "promise round trip (host completes -> guest resumes -> invocation returns), median",
        fmt_us(vow.median),
        format!("<= 3x floor ({})", fmt_us(floor_stats.median * 3)),
        vow.median <= floor_stats.median * 3,
    ));
    rows.push(Row::info("  same, p99", fmt_us(vow.p99)));
    rows.push(Row::info(
        "  floor: bare async host import awaiting a oneshot, same engine, median",
        fmt_us(floor_stats.median),
    ));
    rows.push(Row::info("  floor, p99", fmt_us(floor_stats.p99)));
    rows.push(Row::info(
        "  ratio (median / floor median)",
        format!(
            "{:.2}x",
            vow.median.as_secs_f64() / floor_stats.median.as_secs_f64()
        ),
    ));
    drop(executor);

    let starts = Stats::of(worker_starts(Executor::builder(), &harness).await?);
    rows.push(Row::new(
        "worker start (on-demand allocator, InstancePre), median",
        fmt_us(starts.median),
        "<= 50 µs".into(),
        starts.median <= Duration::from_micros(50),
    ));
    rows.push(Row::info("  same, mean", fmt_us(starts.mean)));
    let pooling = Executor::builder().pooling(PoolingAllocationConfig::default());
    let pooled = Stats::of(worker_starts(pooling, &harness).await?);
    rows.push(Row::new(
        "worker start (pooling allocator), median",
        fmt_us(pooled.median),
        "<= 50 µs".into(),
        pooled.median <= Duration::from_micros(50),
    ));

    let map_count = ensure_map_count(PARKED as u64 * 8);
    let (per_worker, total) = parked_memory(&harness).await?;
    rows.push(Row::new(
        &format!("resident memory per parked worker ({PARKED} parked)"),
        format!("{:.1} KiB", per_worker / 1024.0),
        "<= 64 KiB".into(),
        per_worker <= 64.0 * 1024.0,
    ));
    rows.push(Row::info(
        "  total growth of the process RSS",
        format!("{:.1} MiB", total / (1024.0 * 1024.0)),
    ));

    let report = render(&rows, map_count);
    print!("{report}");
    let path = vow_tests::workspace_root().join("benchmarks/runtime.md");
    std::fs::create_dir_all(path.parent().context("benchmarks dir")?)?;
    std::fs::write(&path, report)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

async fn executor(
    builder: vow_runtime::ExecutorBuilder,
    harness: &[u8],
) -> Result<(Executor, ComponentId)> {
    let executor = builder.build()?;
    let component = executor.add_component("harness", harness.to_vec()).await?;
    Ok((executor, component))
}

/// Alternates Vow round trips and floor round trips so both see the same
/// machine conditions.
async fn round_trips(
    executor: &Executor,
    component: ComponentId,
    floor_wasm: &[u8],
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let worker = executor
        .start_worker(component, "bench", WorkerConfig::default())
        .await?;
    let floor = Floor::start(executor, floor_wasm).await?;
    let mut vow = Vec::with_capacity(ROUND_TRIPS);
    let mut base = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 200 {
        let v = vow_round_trip(executor, &worker).await?;
        let f = floor.round_trip().await?;
        // The first iterations warm caches and the allocator.
        if i >= 200 {
            vow.push(v);
            base.push(f);
        }
    }
    Ok((vow, base))
}

async fn vow_round_trip(executor: &Executor, worker: &WorkerId) -> Result<Duration> {
    let id = executor.invoke(worker, "new-promise", vec![]).await?;
    let id_val = id
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("no promise id"))?;
    let promise = vals::promise_from_val(&id_val)?;
    let call = executor
        .submit(worker, Invocation::new("await-payload", vec![id_val]))
        .await?;
    while executor.worker_status(worker)? != WorkerStatus::Suspended {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    executor.complete_promise(&promise, vec![1u8, 2, 3]).await?;
    let out = call.result().await?;
    let elapsed = start.elapsed();
    if out != vec![Val::List(vec![Val::U8(1), Val::U8(2), Val::U8(3)])] {
        bail!("unexpected payload {out:?}");
    }
    Ok(elapsed)
}

/// The floor: a guest whose only import is an async host function that
/// awaits a oneshot, run the way Vow runs workers (one task owning the Store,
/// jobs over a channel, results over a oneshot).
struct Floor {
    jobs: mpsc::UnboundedSender<FloorJob>,
}

struct FloorJob {
    wake: oneshot::Receiver<u32>,
    parked: oneshot::Sender<()>,
    reply: oneshot::Sender<Result<u32>>,
}

#[derive(Default)]
struct FloorState {
    wake: Option<oneshot::Receiver<u32>>,
    parked: Option<oneshot::Sender<()>>,
}

impl Floor {
    async fn start(executor: &Executor, wasm: &[u8]) -> Result<Self> {
        let engine = executor.engine().clone();
        let component = Component::from_binary(&engine, wasm).map_err(|e| anyhow!("{e}"))?;
        let mut linker: Linker<FloorState> = Linker::new(&engine);
        linker
            .instance("vow-bench:floor/waiter")
            .map_err(|e| anyhow!("{e}"))?
            .func_wrap_async("wait", |mut store, (): ()| {
                let wake = store.data_mut().wake.take();
                let parked = store.data_mut().parked.take();
                Box::new(async move {
                    if let Some(parked) = parked {
                        let _ = parked.send(());
                    }
                    let value = match wake {
                        Some(wake) => wake.await.unwrap_or(0),
                        None => 0,
                    };
                    Ok((value,))
                })
            })
            .map_err(|e| anyhow!("{e}"))?;
        let mut store = Store::new(&engine, FloorState::default());
        store.epoch_deadline_async_yield_and_update(1);
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let func = instance
            .get_func(&mut store, "wait-once")
            .ok_or_else(|| anyhow!("floor guest exports no wait-once"))?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<FloorJob>();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                store.data_mut().wake = Some(job.wake);
                store.data_mut().parked = Some(job.parked);
                let mut results = [Val::U32(0)];
                let outcome = func
                    .call_async(&mut store, &[], &mut results)
                    .await
                    .map_err(|e| anyhow!("{e}"))
                    .and_then(|()| match results[0] {
                        Val::U32(v) => Ok(v),
                        ref other => Err(anyhow!("unexpected result {other:?}")),
                    });
                let _ = job.reply.send(outcome);
            }
        });
        Ok(Self { jobs })
    }

    async fn round_trip(&self) -> Result<Duration> {
        let (wake_tx, wake) = oneshot::channel();
        let (parked, parked_rx) = oneshot::channel();
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(FloorJob {
                wake,
                parked,
                reply,
            })
            .map_err(|_| anyhow!("floor task ended"))?;
        parked_rx.await?;
        let start = Instant::now();
        let _ = wake_tx.send(7);
        let value = result.await??;
        let elapsed = start.elapsed();
        if value != 7 {
            bail!("floor returned {value}");
        }
        Ok(elapsed)
    }
}

async fn worker_starts(
    builder: vow_runtime::ExecutorBuilder,
    harness: &[u8],
) -> Result<Vec<Duration>> {
    let (executor, component) = executor(builder, harness).await?;
    let mut times = Vec::with_capacity(STARTS);
    // The pooling allocator's default limits allow 1,000 instances: delete as
    // we go so both allocators measure steady-state starts.
    for i in 0..STARTS {
        let start = Instant::now();
        let worker = executor
            .start_worker(component, &format!("w{i}"), WorkerConfig::default())
            .await?;
        times.push(start.elapsed());
        executor.delete_worker(&worker)?;
        // Let the aborted worker task release its Store before the next start.
        tokio::task::yield_now().await;
    }
    Ok(times)
}

/// Parks `PARKED` workers in `create-and-await` and reports the growth of the
/// process's resident memory per worker, then resumes them all.
async fn parked_memory(harness: &[u8]) -> Result<(f64, f64)> {
    // Every parked worker stays in memory: this measures what one costs
    // there (eviction is measured by the durability and waiting benches).
    let builder = Executor::builder()
        .evict_after(None)
        .max_resident(usize::MAX);
    let (executor, component) = executor(builder, harness).await?;
    // One worker first, so one-time costs (code, caches) are not counted.
    let warm = executor
        .start_worker(component, "warm", WorkerConfig::default())
        .await?;
    executor.invoke(&warm, "ping", vec![Val::U32(1)]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes()?;
    let mut calls = Vec::with_capacity(PARKED);
    for i in 0..PARKED {
        let worker = executor
            .start_worker(component, &format!("p{i}"), WorkerConfig::default())
            .await?;
        calls.push(
            executor
                .submit(&worker, Invocation::new("create-and-await", vec![]))
                .await?,
        );
    }
    let pending = loop {
        let pending = executor.promises(PromiseFilter::pending()).await?;
        if pending.iter().filter(|p| p.awaited).count() == PARKED {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_bytes()?;
    for p in &pending {
        executor.complete_promise(&p.id, b"done".to_vec()).await?;
    }
    for call in calls {
        call.result().await?;
    }
    let growth = after.saturating_sub(before) as f64;
    Ok((growth / PARKED as f64, growth))
}

fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("unexpected /proc/self/statm"))?
        .parse()?;
    Ok(resident * 4096)
}

/// On-demand allocation uses about seven memory mappings per worker; the
/// kernel's default cap (65,530) stops near 9,000 workers. Raise it when
/// allowed (root), and report the value used.
fn ensure_map_count(needed: u64) -> String {
    let path = "/proc/sys/vm/max_map_count";
    let current: u64 = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if current >= needed {
        return current.to_string();
    }
    match std::fs::write(path, needed.to_string()) {
        Ok(()) => format!("{needed} (raised from {current})"),
        Err(e) => format!("{current} (could not raise: {e})"),
    }
}

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
        Self {
            median: at(0.5),
            p99: at(0.99),
            mean,
        }
    }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

struct Row {
    what: String,
    measured: String,
    target: String,
    verdict: &'static str,
}

impl Row {
    fn new(what: &str, measured: String, target: String, met: bool) -> Self {
        Self {
            what: what.into(),
            measured,
            target,
            verdict: if met { "met" } else { "MISSED" },
        }
    }

    fn info(what: &str, measured: String) -> Self {
        Self {
            what: what.into(),
            measured,
            target: String::new(),
            verdict: "",
        }
    }
}

fn render(rows: &[Row], map_count: String) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Runtime benchmark\n");
    let _ = writeln!(
        out,
        "Command: `cargo bench -p vow-tests --bench runtime` (release build, tokio with 2 worker threads).  "
    );
    let _ = writeln!(
        out,
        "Machine: {} cores, {}.  ",
        cores(),
        vow_tests::cpu_model()
    );
    let _ = writeln!(
        out,
        "Samples: {ROUND_TRIPS} round trips each (after 200 warm-up), {STARTS} worker starts per allocator, {PARKED} parked workers; vm.max_map_count {map_count}.\n"
    );
    let _ = writeln!(out, "| measurement | result | target | |");
    let _ = writeln!(out, "|---|---|---|---|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.what, row.measured, row.target, row.verdict
        );
    }
    out
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[path = "../common/vals.rs"]
mod vals;
