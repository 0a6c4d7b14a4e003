//! How many workers can wait on promises at once, and what a restart with
//! that many costs. Parks `N` workers of the harness guest on a durable
//! store (SQLite, fsync on) with eviction on, so each leaves memory as soon
//! as it parks; reports the process's resident memory and the disk use per
//! waiting worker, then restarts the executor on the same data directory
//! and times start -> accepting work and completion -> answered.
//!
//! `cargo bench -p vow-tests --bench waiting` parks 1,000,000 workers (a few
//! minutes); `cargo bench -p vow-tests --bench waiting -- 100000` parks
//! another count. The executor runs as `vow serve` runs it, with wasmtime's
//! on-demand allocator; `-- --pooling` uses a pool sized from the resident
//! cap instead (`vow serve --allocator pooling`). Writes
//! `benchmarks/waiting-<N>[-pooling].md`.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use vow_runtime::{ComponentId, Executor, ExecutorBuilder, Invocation, WorkerConfig, WorkerId};

/// Workers started and parked at once.
const CONCURRENCY: usize = 256;
/// Waiting workers completed after the restart, one at a time.
const SAMPLES: usize = 200;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pooling = args.iter().any(|a| a == "--pooling");
    // The restart runs in a process of its own, as after a kill -9.
    if let [flag, dir, count, ..] = &args[..]
        && flag == "--recover"
    {
        return runtime.block_on(recover(Path::new(dir), count.parse()?, pooling));
    }
    let count = match args.iter().find(|a| !a.starts_with('-')) {
        Some(n) => n
            .replace('_', "")
            .parse()
            .with_context(|| format!("the worker count {n:?} is not a number"))?,
        None => 1_000_000,
    };
    runtime.block_on(run(count, pooling))
}

fn builder(dir: &Path, cache: &Path, pooling: bool) -> ExecutorBuilder {
    let builder = Executor::builder()
        .cache_dir(cache)
        .evict_after(Some(Duration::ZERO))
        // A million workers of one component: past both default limits.
        .max_workers(usize::MAX)
        .max_workers_per_component(usize::MAX)
        .data_dir(dir);
    if pooling {
        builder.pooling_sized_for_resident()
    } else {
        builder
    }
}

fn name(i: usize) -> String {
    format!("waiting-{i}")
}

async fn run(count: usize, pooling: bool) -> Result<()> {
    let harness = vow_tests::guest("harness")?;
    let cache = vow_tests::guest_target_dir().join("bench-compile-cache");
    let dir = tempfile::tempdir()?;
    let mut rows: Vec<(String, String)> = Vec::new();

    let rss_before = rss_bytes()?;
    let executor = builder(dir.path(), &cache, pooling).open().await?;
    let component = executor.ensure_component_file(&harness).await?;
    let started = Instant::now();
    park(&executor, component, count).await?;
    let parking = started.elapsed();
    let rss = rss_bytes()?;
    let disk = dir_size(dir.path())?;
    rows.push((
        format!("{count} workers started and parked (fire and forget, {CONCURRENCY} at once)"),
        format!(
            "{:.0} s, {:.0} workers/s",
            parking.as_secs_f64(),
            count as f64 / parking.as_secs_f64()
        ),
    ));
    rows.push((
        "workers still in memory (Store and instance)".to_owned(),
        executor.resident_workers().to_string(),
    ));
    rows.push((
        "process RSS with all of them waiting".to_owned(),
        format!("{:.0} MiB", rss as f64 / (1 << 20) as f64),
    ));
    rows.push((
        "  growth per waiting worker (over the process before opening)".to_owned(),
        format!(
            "{:.0} bytes",
            rss.saturating_sub(rss_before) as f64 / count as f64
        ),
    ));
    rows.push((
        "disk use per waiting worker (database + WAL)".to_owned(),
        format!("{:.2} KiB", disk as f64 / count as f64 / 1024.0),
    ));
    drop(executor);

    // The restart, in a new process: everything written was acknowledged
    // as durable, so the store holds what a kill -9 here would leave.
    let mut restart = std::process::Command::new(std::env::current_exe()?);
    restart
        .arg("--recover")
        .arg(dir.path())
        .arg(count.to_string());
    if pooling {
        restart.arg("--pooling");
    }
    let output = restart
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the restart process")?;
    if !output.status.success() {
        return Err(anyhow!("the restart process failed: {}", output.status));
    }
    for line in String::from_utf8(output.stdout)?.lines() {
        if let Some((what, value)) = line.split_once('\t') {
            rows.push((what.to_owned(), value.to_owned()));
        }
    }

    let table = render(count, pooling, &rows);
    println!("{table}");
    let suffix = if pooling { "-pooling" } else { "" };
    let out = vow_tests::workspace_root()
        .join("benchmarks")
        .join(format!("waiting-{count}{suffix}.md"));
    std::fs::write(&out, table).with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

/// The restart process: opens the store, reports start -> accepting work and
/// its memory, then completes a sample of the waiting workers, one at a
/// time, timing completion -> answered. Prints `what<TAB>value` lines.
async fn recover(dir: &Path, count: usize, pooling: bool) -> Result<()> {
    let cache = vow_tests::guest_target_dir().join("bench-compile-cache");
    let rss_before = rss_bytes()?;
    let started = Instant::now();
    let executor = builder(dir, &cache, pooling).open().await?;
    let open_time = started.elapsed();
    let rss = rss_bytes()?;
    let component = executor
        .components()
        .first()
        .map(|c| c.id)
        .ok_or_else(|| anyhow!("the store holds no component"))?;
    println!(
        "restart with {count} waiting, new process: open -> accepting work\t{:.2} s",
        open_time.as_secs_f64()
    );
    println!(
        "  process RSS once open\t{:.0} MiB ({:.0} bytes per waiting worker over the process before opening)",
        rss as f64 / (1 << 20) as f64,
        rss.saturating_sub(rss_before) as f64 / count as f64
    );
    let mut times = Vec::with_capacity(SAMPLES);
    let step = (count / SAMPLES).max(1);
    for i in (0..count).step_by(step).take(SAMPLES) {
        times.push(complete_one(&executor, component, i).await?);
    }
    times.sort();
    println!(
        "  then: completion -> its invocation answered (worker replayed), p50 of {}\t{:.0} µs",
        times.len(),
        percentile(&times, 50).as_secs_f64() * 1e6
    );
    println!(
        "  same, p99\t{:.0} µs",
        percentile(&times, 99).as_secs_f64() * 1e6
    );
    Ok(())
}

/// Starts `count` workers and leaves each parked in `create-and-await`.
async fn park(executor: &Executor, component: ComponentId, count: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let executor = executor.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let worker = executor
                    .start_worker(component, &name(i), WorkerConfig::default())
                    .await?;
                // The handle is dropped: the invocation runs anyway, and the
                // idempotency key finds it again after the restart.
                drop(
                    executor
                        .submit(&worker, waiting_call(i))
                        .await
                        .with_context(|| format!("submitting to worker {i}"))?,
                );
                if i.is_multiple_of(100_000) && i > 0 {
                    println!("{i} started");
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    // A started worker is in memory until it parks and leaves.
    while executor.resident_workers() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn waiting_call(i: usize) -> Invocation {
    Invocation::new("create-and-await", vec![]).with_idempotency_key(name(i))
}

/// Completes worker `i`'s promise and times until its invocation answers.
async fn complete_one(executor: &Executor, component: ComponentId, i: usize) -> Result<Duration> {
    let worker = WorkerId::new(component, name(i));
    let call = executor.submit(&worker, waiting_call(i)).await?;
    if call.fresh {
        return Err(anyhow!("worker {i} lost its waiting invocation"));
    }
    // The harness's `create-and-await` is the worker's first invocation:
    // entry 1 is the creation, 2 the invocation's start, 3 its promise.
    let promise = vow_runtime::PromiseId {
        worker_id: worker,
        oplog_idx: 3,
    };
    let started = Instant::now();
    executor
        .complete_promise(&promise, name(i).into_bytes())
        .await?;
    let results = call.result().await?;
    let elapsed = started.elapsed();
    let expected = vow_runtime::Val::List(name(i).bytes().map(vow_runtime::Val::U8).collect());
    if results != vec![expected] {
        return Err(anyhow!("worker {i} answered {results:?}"));
    }
    Ok(elapsed)
}

fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn render(count: usize, pooling: bool, rows: &[(String, String)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Waiting workers: {count}\n");
    let (flag, allocator) = if pooling {
        (
            " --pooling",
            "a pooling allocator sized from the resident cap (`vow serve --allocator pooling`)",
        )
    } else {
        (
            "",
            "wasmtime's on-demand allocator, as `vow serve` runs by default",
        )
    };
    let _ = writeln!(
        out,
        "`cargo bench -p vow-tests --bench waiting -- {count}{flag}`: release build, in-process, one run, {} on 2 cores. SQLite with fsync on every commit; eviction as soon as a worker parks; default resident cap; {allocator}.\n",
        vow_tests::cpu_model()
    );
    let _ = writeln!(out, "| measure | result |\n|---|---|");
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    out
}
