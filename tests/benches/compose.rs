//! Composable promises: one guest waiting on 200 promises, the overhead of
//! a `then` continuation, and a fan-out of 1,000 `when`s joined by `all`
//! and finished by a `then`. Each on a durable store (SQLite in a data
//! directory, fsync on, as `vow serve` runs by default) and on the
//! in-memory store (the runtime's own cost, without the disk). Prints a
//! table and writes `benchmarks/compose.md`.
//!
//! Run with `cargo bench -p vow-tests --bench compose`.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use vow_runtime::{
    ComponentId, Executor, ExecutorBuilder, Invocation, PromiseFilter, PromiseId, Val,
    WorkerConfig, WorkerId, WorkerStatus,
};

/// Rounds of the 200-promise wait.
const GATHERS: usize = 20;
/// Promises one guest waits on.
const GATHERED: u32 = 200;
/// `then` continuations timed.
const THENS: usize = 300;
/// Rounds of the fan-out.
const FAN_OUTS: usize = 5;
/// `when`s per fan-out.
const FANNED: u32 = 1_000;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

struct Results {
    gather: Stats,
    then: Stats,
    fan_out: Stats,
}

async fn run() -> Result<()> {
    let harness = vow_tests::guest("harness")?;
    let cache = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let durable = measure(
        Executor::builder()
            .cache_dir(cache.path())
            .data_dir(data.path()),
        &harness,
        "durable (SQLite, fsync on)",
    )
    .await?;
    let memory = measure(
        Executor::builder().cache_dir(cache.path()),
        &harness,
        "in-memory store",
    )
    .await?;

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    let mut rows = Vec::new();
    for (store, r) in [("durable", &durable), ("in-memory", &memory)] {
        rows.push(Row::new(
            &format!("one guest awaiting {GATHERED} promises: first completion sent -> guest returned, median ({store})"),
            ms(r.gather.median),
            "<= 20 ms".to_owned(),
            r.gather.median <= Duration::from_millis(20),
        ));
        rows.push(Row::info("  same, worst", ms(r.gather.max)));
        rows.push(Row::new(
            &format!("then continuation: source settled -> continuation running, p50 ({store})"),
            us(r.then.median),
            "<= 200 µs".to_owned(),
            r.then.median <= Duration::from_micros(200),
        ));
        rows.push(Row::info("  same, p99", us(r.then.p99)));
        rows.push(Row::new(
            &format!("fan-out {FANNED} when + all + then: start -> final result, median ({store})"),
            ms(r.fan_out.median),
            "<= 1 s".to_owned(),
            r.fan_out.median <= Duration::from_secs(1),
        ));
        rows.push(Row::info("  same, worst", ms(r.fan_out.max)));
    }
    let report = render(&rows);
    println!("{report}");
    let path = vow_tests::workspace_root().join("benchmarks/compose.md");
    std::fs::write(&path, report)?;
    println!("written to {}", path.display());
    Ok(())
}

async fn measure(
    builder: ExecutorBuilder,
    harness: &std::path::Path,
    what: &str,
) -> Result<Results> {
    let executor = builder.open().await?;
    let component = executor.add_component_file(harness).await?;
    println!("{what}:");
    let gather = Stats::of(gathers(&executor, component).await?);
    println!("  gather median {:?}", gather.median);
    let then = Stats::of(thens(&executor, component).await?);
    println!("  then p50 {:?}", then.median);
    let fan_out = Stats::of(fan_outs(&executor, component).await?);
    println!("  fan-out median {:?}", fan_out.median);
    Ok(Results {
        gather,
        then,
        fan_out,
    })
}

async fn start(executor: &Executor, component: ComponentId, name: &str) -> Result<WorkerId> {
    Ok(executor
        .start_worker(component, name, WorkerConfig::default())
        .await?)
}

/// Waits (polling) until `probe` yields; gives up after a minute.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// A guest waits on 200 promises with `wait-all`; every completion is sent
/// at once from outside; timed from the first completion sent to the
/// invocation's return.
async fn gathers(executor: &Executor, component: ComponentId) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(GATHERS);
    for round in 0..GATHERS {
        let worker = start(executor, component, &format!("gather-{round}")).await?;
        let call = executor
            .submit(
                &worker,
                Invocation::new("gather", vec![Val::U32(GATHERED), Val::Option(None)]),
            )
            .await?;
        let pending: Vec<PromiseId> = until("the guest to wait", || async {
            let mine = executor
                .promises(PromiseFilter {
                    worker: Some(worker.clone()),
                    ..PromiseFilter::pending()
                })
                .await
                .ok()?;
            (mine.len() == GATHERED as usize
                && executor.worker_status(&worker).ok()? == WorkerStatus::Suspended)
                .then(|| mine.into_iter().map(|p| p.id).collect())
        })
        .await?;
        let started = Instant::now();
        let completions = pending
            .iter()
            .map(|id| executor.complete_promise(id, b"x".to_vec()));
        for done in futures::future::join_all(completions).await {
            if !done? {
                bail!("a completion was not the first");
            }
        }
        call.result().await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// A `then` of `stamp` on a fresh promise; the promise is completed from
/// outside and the continuation reports the wall clock when it started.
async fn thens(executor: &Executor, component: ComponentId) -> Result<Vec<Duration>> {
    let caller = start(executor, component, "then-caller").await?;
    let options = Val::Record(vec![
        ("timeout-ms".to_owned(), Val::Option(None)),
        ("retention-ms".to_owned(), Val::Option(None)),
        ("payload-type".to_owned(), Val::Option(None)),
    ]);
    let mut samples = Vec::with_capacity(THENS);
    for _ in 0..THENS + 20 {
        let source = promise_of(
            executor
                .invoke(&caller, "vow-create", vec![options.clone()])
                .await?,
        )?;
        let made = executor
            .invoke(
                &caller,
                "start-then",
                vec![
                    promise_val(&source),
                    Val::String("stamp".into()),
                    options.clone(),
                ],
            )
            .await?;
        let target = match made.into_iter().next() {
            Some(Val::Result(Ok(Some(id)))) => promise_of(vec![*id])?,
            other => bail!("start-then answered {other:?}"),
        };
        // Settled once the completion is durable and answered.
        executor.complete_promise(&source, b"go".to_vec()).await?;
        let settled = SystemTime::now();
        let stamp = until("the continuation", || async {
            executor.promise(&target).await.ok()?.1
        })
        .await?
        .map_err(|e| anyhow!("the continuation failed: {e}"))?;
        let nanos = u64::from_le_bytes(stamp[..8].try_into().context("stamp")?);
        let began = UNIX_EPOCH + Duration::from_nanos(nanos);
        // The continuation may begin before the completion's caller hears
        // the answer: that counts as no delay.
        samples.push(began.duration_since(settled).unwrap_or_default());
    }
    // The first ones warm the compilation and allocation caches.
    Ok(samples.split_off(20))
}

/// `fan-out(1000)`: 1,000 `when`s of `double`, their `all`, a `then` of
/// `count`, and a wait on it, all from one guest invocation.
async fn fan_outs(executor: &Executor, component: ComponentId) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(FAN_OUTS);
    for round in 0..FAN_OUTS {
        let worker = start(executor, component, &format!("fan-{round}")).await?;
        let started = Instant::now();
        let out = executor
            .invoke(&worker, "fan-out", vec![Val::U32(FANNED)])
            .await?;
        samples.push(started.elapsed());
        let expected = format!("{FANNED} payloads, {} bytes", FANNED * 2);
        let Some(Val::Result(Ok(Some(payload)))) = out.first() else {
            bail!("fan-out answered {out:?}");
        };
        let Val::List(bytes) = payload.as_ref() else {
            bail!("fan-out's payload is not bytes");
        };
        let text: Vec<u8> = bytes
            .iter()
            .filter_map(|b| match b {
                Val::U8(b) => Some(*b),
                _ => None,
            })
            .collect();
        if text != expected.as_bytes() {
            bail!("fan-out reported {:?}", String::from_utf8_lossy(&text));
        }
    }
    Ok(samples)
}

fn field<'a>(val: &'a Val, name: &str) -> Result<&'a Val> {
    match val {
        Val::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .with_context(|| format!("no field {name}")),
        other => bail!("expected a record, got {other:?}"),
    }
}

fn promise_of(results: Vec<Val>) -> Result<PromiseId> {
    let id = results.into_iter().next().context("no result")?;
    let worker = field(&id, "worker-id")?;
    let uuid = field(field(worker, "component-id")?, "uuid")?;
    let (Val::U64(high), Val::U64(low)) = (field(uuid, "high-bits")?, field(uuid, "low-bits")?)
    else {
        bail!("odd uuid");
    };
    let (Val::String(name), Val::U64(idx)) =
        (field(worker, "worker-name")?, field(&id, "oplog-idx")?)
    else {
        bail!("odd promise id");
    };
    Ok(PromiseId {
        worker_id: WorkerId::new(ComponentId::from_u64_pair(*high, *low), name.clone()),
        oplog_idx: *idx,
    })
}

fn promise_val(id: &PromiseId) -> Val {
    let (high, low) = id.worker_id.component_id.as_u64_pair();
    let record = |fields: Vec<(&str, Val)>| {
        Val::Record(fields.into_iter().map(|(n, v)| (n.to_owned(), v)).collect())
    };
    record(vec![
        (
            "worker-id",
            record(vec![
                (
                    "component-id",
                    record(vec![(
                        "uuid",
                        record(vec![
                            ("high-bits", Val::U64(high)),
                            ("low-bits", Val::U64(low)),
                        ]),
                    )]),
                ),
                ("worker-name", Val::String(id.worker_id.worker_name.clone())),
            ]),
        ),
        ("oplog-idx", Val::U64(id.oplog_idx)),
    ])
}

struct Stats {
    median: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Self {
            median: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
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

fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Composable promises benchmark\n");
    let _ = writeln!(
        out,
        "Command: `cargo bench -p vow-tests --bench compose` (release build, tokio with 2 worker threads).  "
    );
    let _ = writeln!(
        out,
        "Machine: {} cores, {}.  ",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        vow_tests::cpu_model()
    );
    let _ = writeln!(
        out,
        "Samples: {GATHERS} rounds of one guest waiting on {GATHERED} promises (`wait-all`; all completions sent at once from the embedding API), {THENS} `then` continuations (after 20 warm-up; the continuation reports the wall clock when it starts; settled = the completion answered, so on the durable store the fsync of the completion is not counted and the continuation's own store write is), {FAN_OUTS} fan-outs of {FANNED} `when`s (each in a new worker) joined by `all` and finished by a `then`, from one guest invocation. Durable: SQLite in a data directory with fsync on, as `vow serve` runs by default.\n"
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
