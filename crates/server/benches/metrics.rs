//! Metrics benchmark: what keeping metrics costs on the in-process round
//! trips, with metrics on and off in the same run.
//!
//! Run with `cargo bench -p vow-server --bench metrics`. Two in-memory
//! executors run in this process on one tokio runtime (2 worker threads),
//! one built with metrics and one with `ExecutorBuilder::metrics(false)`,
//! each with a router (so with metrics on, requests are counted by the
//! HTTP middleware too) and a harness worker that never leaves memory.
//! Every sample is taken on both, one right after the other (in turn
//! first), so that both see the same machine, however busy it is:
//!
//! - promise round trip: the worker parks in `create-and-await`; timed from
//!   `Executor::complete_promise` until the invocation's result is back;
//! - HTTP completion: the same, with the invocation an in-process `POST
//!   .../invoke-and-await` and the completion `POST .../complete`, both
//!   through the router (`tower::ServiceExt::oneshot`, no socket); timed
//!   from sending the completion until the parked request's answer;
//! - HTTP invocation: `POST .../invoke-and-await?function=ping`, one
//!   request timed from send to answer.
//!
//! Then the time `GET /metrics` takes with `SCRAPE_WORKERS` workers. The
//! table is printed and written to `benchmarks/metrics.md`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use vow_runtime::{
    ComponentId, Executor, Invocation, PromiseFilter, WorkerConfig, WorkerId, WorkerStatus,
};
use vow_server::ServerConfig;

/// Samples per setting and measurement.
const SAMPLES: usize = 5_000;
/// Samples per setting and measurement thrown away first.
const WARM_UP: usize = 300;
/// Workers present while `GET /metrics` is timed.
const SCRAPE_WORKERS: usize = 2_000;
const SCRAPES: usize = 50;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run())?;
    println!("{report}");
    let path = vow_tests::workspace_root()
        .join("benchmarks")
        .join("metrics.md");
    std::fs::write(&path, report)?;
    println!("written to {}", path.display());
    Ok(())
}

/// One executor, its router and its worker.
struct Setup {
    executor: Executor,
    router: Router,
    component: ComponentId,
    worker: WorkerId,
}

impl Setup {
    async fn new(metrics: bool, wasm: &[u8]) -> Result<Self> {
        let executor = Executor::builder()
            .metrics(metrics)
            .evict_after(None)
            .build()?;
        let component = executor.add_component("harness", wasm.to_vec()).await?;
        let worker = executor
            .start_worker(component, "bench", WorkerConfig::default())
            .await?;
        let router = vow_server::router(executor.clone(), ServerConfig::default());
        Ok(Self {
            executor,
            router,
            component,
            worker,
        })
    }

    fn uri(&self, tail: &str) -> String {
        format!("/v1/components/{}/workers/bench/{tail}", self.component)
    }

    /// Sends a JSON request through the router; the status and body.
    async fn send(&self, uri: &str, body: &Value) -> Result<(StatusCode, Value)> {
        send(&self.router, uri, body).await
    }

    /// Waits until the worker is parked; the promise it waits on.
    async fn parked(&self) -> Result<vow_runtime::PromiseId> {
        while self.executor.worker_status(&self.worker)? != WorkerStatus::Suspended {
            tokio::task::yield_now().await;
        }
        let filter = PromiseFilter {
            worker: Some(self.worker.clone()),
            ..PromiseFilter::pending()
        };
        let pending = self.executor.promises(filter).await?;
        pending
            .into_iter()
            .find(|p| p.awaited)
            .map(|p| p.id)
            .context("the parked worker waits on nothing")
    }

    /// `Executor::complete_promise` until the parked invocation returns.
    async fn promise_round_trip(&self) -> Result<Duration> {
        let call = self
            .executor
            .submit(&self.worker, Invocation::new("create-and-await", vec![]))
            .await?;
        let promise = self.parked().await?;
        let started = Instant::now();
        ensure!(self.executor.complete_promise(&promise, vec![1u8]).await?);
        call.result().await?;
        Ok(started.elapsed())
    }

    /// `POST .../complete` until the parked `invoke-and-await` answers.
    async fn http_completion(&self) -> Result<Duration> {
        let router = self.router.clone();
        let uri = self.uri("invoke-and-await?function=create-and-await");
        let call = tokio::spawn(async move { send(&router, &uri, &json!({ "params": [] })).await });
        let promise = self.parked().await?;
        let body = json!({ "oplogIdx": promise.oplog_idx, "data": [1] });
        let started = Instant::now();
        let (status, answer) = self.send(&self.uri("complete"), &body).await?;
        ensure!(
            status == StatusCode::OK && answer == json!(true),
            "{status} {answer}"
        );
        let (status, answer) = call.await??;
        let elapsed = started.elapsed();
        ensure!(status == StatusCode::OK, "{status} {answer}");
        Ok(elapsed)
    }

    /// One `POST .../invoke-and-await?function=ping`.
    async fn http_invocation(&self) -> Result<Duration> {
        let uri = self.uri("invoke-and-await?function=ping");
        let started = Instant::now();
        let (status, answer) = self.send(&uri, &json!({ "params_json": [1] })).await?;
        let elapsed = started.elapsed();
        ensure!(status == StatusCode::OK, "{status} {answer}");
        Ok(elapsed)
    }
}

async fn send(router: &Router, uri: &str, body: &Value) -> Result<(StatusCode, Value)> {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body)?))?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}

/// The three measurements' samples for one setting.
#[derive(Default)]
struct Samples {
    promise: Vec<Duration>,
    completion: Vec<Duration>,
    invocation: Vec<Duration>,
}

impl Samples {
    /// One sample of each measurement on `setup`.
    async fn take(&mut self, setup: &Setup) -> Result<()> {
        self.promise.push(setup.promise_round_trip().await?);
        self.completion.push(setup.http_completion().await?);
        self.invocation.push(setup.http_invocation().await?);
        Ok(())
    }

    fn drop_first(&mut self, count: usize) {
        for samples in [
            &mut self.promise,
            &mut self.completion,
            &mut self.invocation,
        ] {
            samples.drain(..count.min(samples.len()));
        }
    }
}

async fn run() -> Result<String> {
    let load = load_average();
    let wasm = std::fs::read(vow_tests::guest("harness")?)?;
    let on = Setup::new(true, &wasm).await?;
    let off = Setup::new(false, &wasm).await?;
    let (mut with, mut without) = (Samples::default(), Samples::default());
    for i in 0..WARM_UP + SAMPLES {
        // Who goes first alternates.
        if i % 2 == 0 {
            without.take(&off).await?;
            with.take(&on).await?;
        } else {
            with.take(&on).await?;
            without.take(&off).await?;
        }
    }
    with.drop_first(WARM_UP);
    without.drop_first(WARM_UP);
    let scrape = scrape_times(&on, &wasm).await?;
    Ok(render(&without, &with, &scrape, &load))
}

/// The machine's load averages as the kernel reports them, for the report:
/// other work on the machine shows in the p99s.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `GET /metrics` with `SCRAPE_WORKERS` workers on the executor.
async fn scrape_times(setup: &Setup, wasm: &[u8]) -> Result<Vec<Duration>> {
    let component = setup.executor.add_component("many", wasm.to_vec()).await?;
    for i in 0..SCRAPE_WORKERS {
        setup
            .executor
            .start_worker(component, &format!("w{i}"), WorkerConfig::default())
            .await?;
    }
    let mut times = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let response = setup
            .router
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty())?)
            .await?;
        ensure!(response.status() == StatusCode::OK, "{}", response.status());
        let text = response.into_body().collect().await?.to_bytes();
        times.push(started.elapsed());
        ensure!(!text.is_empty());
    }
    Ok(times)
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The median of the differences between samples taken one after the
/// other, on and off: less sensitive to a busy machine than the
/// difference of the medians.
fn paired_difference(off: &[Duration], on: &[Duration]) -> f64 {
    let mut differences: Vec<f64> = off
        .iter()
        .zip(on)
        .map(|(off, on)| micros(*on) - micros(*off))
        .collect();
    differences.sort_by(f64::total_cmp);
    differences
        .get(differences.len() / 2)
        .copied()
        .unwrap_or_default()
}

fn row(what: &str, off: &[Duration], on: &[Duration]) -> String {
    let (off50, on50) = (percentile(off, 0.5), percentile(on, 0.5));
    let (off99, on99) = (percentile(off, 0.99), percentile(on, 0.99));
    let paired = paired_difference(off, on);
    format!(
        "| {what} | {:.1} µs | {:.1} µs | {paired:+.1} µs ({:+.1} %) | {:.1} µs | {:.1} µs |\n",
        micros(off50),
        micros(on50),
        paired / micros(off50) * 100.0,
        micros(off99),
        micros(on99),
    )
}

fn render(off: &Samples, on: &Samples, scrape: &[Duration], load: &str) -> String {
    let mut out = format!(
        "# Metrics benchmark\n\n\
         `cargo bench -p vow-server --bench metrics` on this project's 2-core machine: two \
         in-memory executors in one process (tokio, 2 worker threads), one with metrics and one \
         with `ExecutorBuilder::metrics(false)`, each with its router and a harness worker kept \
         in memory. {SAMPLES} samples per setting (after {WARM_UP} warm-up samples), each \
         taken on both settings one right after the other, in turn first; requests go through \
         the router in process (`tower::ServiceExt::oneshot`, no socket). The cost column is \
         the median of the paired differences (on − off), relative to the p50 with metrics \
         off. Load average (1, 5, 15 min) when the run started: {load}.\n\n\
         | round trip | metrics off, p50 | metrics on, p50 | cost: on − off (paired median) | off, p99 | on, p99 |\n\
         |---|---|---|---|---|---|\n"
    );
    out.push_str(&row(
        "promise: `complete_promise` → parked invocation returns",
        &off.promise,
        &on.promise,
    ));
    out.push_str(&row(
        "HTTP: `POST .../complete` → parked `invoke-and-await` answers",
        &off.completion,
        &on.completion,
    ));
    out.push_str(&row(
        "HTTP: `POST .../invoke-and-await?function=ping`",
        &off.invocation,
        &on.invocation,
    ));
    out.push_str(&format!(
        "\nWhat metrics add on these paths: a completion counter and the resume histogram \
         (with one `Instant::now()` when the settlement is sent), an invocation counter and \
         the duration histogram, the promise gauges, and per request the counting layer: \
         one more layer of the router (axum clones the services below a layer for every \
         request), a boxed future, and one counter of the HTTP family (a read lock and a \
         hash of method, route template and status). A run with metrics off on both \
         executors (an A/A run) measured the cost column at ±0.1 µs.\n\n\
         `GET /metrics` with {} workers: p50 {:.0} µs, p99 {:.0} µs ({SCRAPES} scrapes; the \
         worker gauges are counted at each scrape, one pass over the worker table).\n",
        SCRAPE_WORKERS + 1,
        micros(percentile(scrape, 0.5)),
        micros(percentile(scrape, 0.99)),
    ));
    out
}
