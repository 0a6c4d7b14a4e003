//! What the invocation and host-call spans cost: an in-process invoke round
//! trip (invoke `new-promise`, submit `await-payload` on it, complete the
//! promise, await the result: two invocations and their host calls) with
//! the subscriber `vow serve` installs, its filter turning the spans off,
//! or on at INFO (the invocation spans), DEBUG (host-call spans and the
//! runtime's debug events) and TRACE (also wasmtime's bindings' spans),
//! logging to a sink, so that no I/O is measured. Each setting runs in a
//! process of its own (a subscriber is set once per process), the
//! settings taking turns. Prints a table and writes `benchmarks/spans.md`.
//!
//! Run with `cargo bench -p vow-tests --bench spans`.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};
use vow_runtime::{Executor, Invocation, Val, WorkerConfig, WorkerId, WorkerStatus};

/// Rounds of one process per setting, each timing [`BATCH`] round trips
/// after [`WARM_UP`].
const ROUNDS: usize = 8;
const BATCH: usize = 500;
const WARM_UP: usize = 200;

/// The settings compared: a name, JSON lines or not, the filter.
const SETTINGS: [(&str, bool, &str); 5] = [
    (
        "spans off (filter `warn`, vow serve's default)",
        false,
        "warn",
    ),
    (
        "invocation spans (`vow_runtime=info`)",
        false,
        "warn,vow_runtime=info",
    ),
    (
        "+ host-call spans and debug events (`vow_runtime=debug`)",
        false,
        "warn,vow_runtime=debug",
    ),
    ("same, --log-format json", true, "warn,vow_runtime=debug"),
    (
        "+ wasmtime bindings' spans (`vow_runtime=trace`)",
        false,
        "warn,vow_runtime=trace",
    ),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, setting, ..] = &args[..]
        && flag == "--setting"
    {
        return measure(setting.parse()?);
    }
    let load_before = load_average();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); SETTINGS.len()];
    for round in 0..ROUNDS {
        for (i, (name, _, _)) in SETTINGS.iter().enumerate() {
            println!("round {}/{ROUNDS}: {name}", round + 1);
            let output = Command::new(std::env::current_exe()?)
                .args(["--setting", &i.to_string()])
                .output()?;
            if !output.status.success() {
                bail!(
                    "setting {i} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            for line in String::from_utf8(output.stdout)?.lines() {
                samples[i].push(Duration::from_nanos(line.parse()?));
            }
        }
    }
    report(
        samples,
        &format!("{load_before} before, {} after", load_average()),
    )
}

/// The 1-minute load average, which says whether other work shared the
/// machine (`?` where /proc does not tell).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// One setting, in this process: prints each round trip's nanoseconds.
fn measure(setting: usize) -> Result<()> {
    let (_, json, filter) = SETTINGS.get(setting).context("no such setting")?;
    // As `vow serve` sets it up (crates/cli/src/telemetry.rs), writing to
    // a sink.
    let logs = if *json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::sink)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(vec![logs.with_filter(EnvFilter::new(filter)).boxed()])
        .try_init()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let harness = std::fs::read(vow_tests::guest("harness")?)?;
        let cache = vow_tests::workspace_root().join("target/vow-bench-cache");
        let executor = Executor::builder().cache_dir(cache).build()?;
        let component = executor.add_component("harness", harness).await?;
        let worker = executor
            .start_worker(component, "bench", WorkerConfig::default())
            .await?;
        for _ in 0..WARM_UP {
            round_trip(&executor, &worker).await?;
        }
        let mut out = String::new();
        for _ in 0..BATCH {
            writeln!(out, "{}", round_trip(&executor, &worker).await?.as_nanos())?;
        }
        print!("{out}");
        Ok(())
    })
}

fn report(samples: Vec<Vec<Duration>>, load: &str) -> Result<()> {
    let stats: Vec<Stats> = samples.into_iter().map(Stats::of).collect();
    let base = stats[0].median.as_secs_f64();
    let mut report = String::new();
    writeln!(report, "# Span cost")?;
    writeln!(report)?;
    writeln!(
        report,
        "Command: `cargo bench -p vow-tests --bench spans` (release build, tokio with 2 worker threads)."
    )?;
    writeln!(
        report,
        "Each sample: one in-process invoke round trip (invoke `new-promise`, submit `await-payload`, \
         complete the promise, await the result), with the subscriber `vow serve` installs, logging \
         to a sink. {} samples per setting: {ROUNDS} processes each, the settings taking turns, \
         {BATCH} round trips per process after {WARM_UP} to warm up.",
        ROUNDS * BATCH
    )?;
    writeln!(
        report,
        "Machine: 2 cores; load average {load} (above 0 when other work shared the cores: \
         the p99 column shows it first)."
    )?;
    writeln!(report)?;
    writeln!(report, "| setting | median | p99 | median vs off |")?;
    writeln!(report, "|---|---|---|---|")?;
    for ((name, _, _), stats) in SETTINGS.iter().zip(&stats) {
        writeln!(
            report,
            "| {name} | {} | {} | {:+.1}% |",
            fmt_us(stats.median),
            fmt_us(stats.p99),
            (stats.median.as_secs_f64() / base - 1.0) * 100.0
        )?;
    }
    print!("{report}");
    let path = vow_tests::workspace_root().join("benchmarks/spans.md");
    std::fs::create_dir_all(path.parent().context("benchmarks dir")?)?;
    std::fs::write(&path, report)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// One invoke round trip, start to result.
async fn round_trip(executor: &Executor, worker: &WorkerId) -> Result<Duration> {
    let start = Instant::now();
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
    executor.complete_promise(&promise, vec![1u8, 2, 3]).await?;
    let out = call.result().await?;
    let elapsed = start.elapsed();
    if out != vec![Val::List(vec![Val::U8(1), Val::U8(2), Val::U8(3)])] {
        bail!("unexpected payload {out:?}");
    }
    Ok(elapsed)
}

struct Stats {
    median: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[path = "../common/vals.rs"]
mod vals;
