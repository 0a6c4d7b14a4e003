//! What an executor counts and measures, in Prometheus' data model.
//!
//! Counters and histograms are updated where the work happens: an
//! invocation's end, a settlement made durable, a worker coming back by
//! replay or leaving memory, a store commit. Each update is an atomic
//! increment (a histogram also takes its own short lock); the label sets
//! are fixed, so nothing is allocated per event. Gauges are counted when
//! the metrics are read: workers by status from the worker table, promises
//! by status from counts the promise table keeps as it changes (that table
//! belongs to a task of its own, which a scrape would otherwise have to
//! wait for). [`docs/metrics.md`] lists every metric.
//!
//! The metrics are built on `prometheus-client`, the Prometheus project's
//! Rust client: its metrics are typed, it keeps no global registry (each
//! executor owns its metrics, so two executors in one process count apart),
//! and it writes Prometheus' text format and OpenMetrics. It is re-exported
//! as [`crate::prometheus_client`] so an embedder's registry is of the same
//! version.
//!
//! ## How to embed
//!
//! 1. Build the executor with metrics on (the default;
//!    [`ExecutorBuilder::metrics`](crate::ExecutorBuilder::metrics)`(false)`
//!    turns them off, and [`Executor::metrics`](crate::Executor::metrics)
//!    is then `None`).
//! 2. Either encode them on their own with [`Metrics::encode`], or
//!    [`register`](Metrics::register) them in your own registry next to
//!    your metrics.
//!
//! ```no_run
//! use vow_runtime::metrics::Format;
//! use vow_runtime::prometheus_client::registry::Registry;
//!
//! # fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let executor = vow_runtime::Executor::builder().build()?;
//! let metrics = executor.metrics().ok_or("metrics are off")?;
//!
//! // Alone, as Prometheus reads them:
//! let text = metrics.encode(Format::Prometheus)?;
//! assert!(text.contains("vow_invocations_total"));
//!
//! // Or in your registry, with your own metrics:
//! let mut registry = Registry::default();
//! metrics.register(&mut registry);
//! let text = Format::OpenMetrics.encode(&registry)?;
//! # let _ = text;
//! # Ok(())
//! # }
//! ```
//!
//! [`docs/metrics.md`]: https://github.com/vow-runtime/vow/blob/main/docs/metrics.md

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use wasmtime::component::Val;

use crate::error::Error;
use crate::promise::{ErrorKind, PromiseStatus, Settlement};
use crate::worker::{self, WorkerStatus};

/// A text format the metrics are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Prometheus' text exposition format, version 0.0.4: what every
    /// scraper reads.
    Prometheus,
    /// OpenMetrics 1.0 text, which Prometheus asks for in its `Accept`
    /// header.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Writes every metric of `registry` in this format.
    pub fn encode(self, registry: &Registry) -> Result<String, fmt::Error> {
        let mut text = String::new();
        match self {
            Self::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
            }
            Self::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry)?,
        }
        Ok(text)
    }
}

/// An executor's metrics, from [`Executor::metrics`](crate::Executor::metrics).
/// Cheap to clone; every clone reads the same numbers. Once the executor is
/// dropped, the worker gauges read zero.
#[derive(Clone)]
pub struct Metrics {
    collector: Arc<ExecutorCollector>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(recorder: Arc<Recorder>, workers: Weak<worker::Registry>) -> Self {
        Self {
            collector: Arc::new(ExecutorCollector { recorder, workers }),
        }
    }

    /// Adds these metrics to `registry`; they are read each time the
    /// registry is encoded. Their names start with `vow_` (under the
    /// registry's prefix, if it has one).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Arc::clone(&self.collector)));
    }

    /// These metrics alone, written in `format`.
    pub fn encode(&self, format: Format) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        self.register(&mut registry);
        format.encode(&registry)
    }
}

/// Buckets of the latency histograms, in seconds: from 10 µs (a parked
/// guest resumed in memory) to 10 s.
const LATENCY_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the invocation duration, in seconds: waiting on promises
/// counts, so up to an hour.
const DURATION_BUCKETS: [f64; 21] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Buckets of the number of batches in one commit.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Counters of one label, one per value, all known in advance.
struct CounterSet<const N: usize> {
    label: &'static str,
    values: [&'static str; N],
    counters: [Counter; N],
}

impl<const N: usize> CounterSet<N> {
    fn new(label: &'static str, values: [&'static str; N]) -> Self {
        Self {
            label,
            values,
            counters: std::array::from_fn(|_| Counter::default()),
        }
    }

    fn inc(&self, at: usize) {
        if let Some(counter) = self.counters.get(at) {
            counter.inc();
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str) -> fmt::Result {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value, counter) in self.values.iter().zip(&self.counters) {
            let labels = [(self.label, *value)];
            counter.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

fn encode_histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    histogram: &Histogram,
) -> fmt::Result {
    histogram.encode(encoder.encode_descriptor(name, help, unit, MetricType::Histogram)?)
}

/// Why a worker left memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// It was parked on a promise for longer than `evict_after`.
    Parked = 0,
    /// More workers were in memory than `max_resident` allows, and it was
    /// the least recently used one that was idle or parked.
    ResidentCap = 1,
}

/// Promise statuses in the order of [`Recorder::promises`].
const PROMISE_STATUSES: [PromiseStatus; 4] = [
    PromiseStatus::Pending,
    PromiseStatus::Completed,
    PromiseStatus::Rejected,
    PromiseStatus::TimedOut,
];

/// Completion outcomes, as `vow_completions_total` labels them.
const COMPLETED: usize = 0;
const REJECTED: usize = 1;
const TIMED_OUT: usize = 2;
const ALREADY_SETTLED: usize = 3;
const NOT_FOUND: usize = 4;
const INVALID: usize = 5;
const FAILED: usize = 6;

/// Where the counters and histograms live; the hot paths reach it through
/// a [`Meter`].
pub(crate) struct Recorder {
    invocations: CounterSet<4>,
    invocation_duration: Histogram,
    completions: CounterSet<7>,
    resume: Histogram,
    replays: CounterSet<2>,
    replay_duration: Histogram,
    evictions: CounterSet<2>,
    commit_duration: Histogram,
    commit_batches: Histogram,
    /// Promises by status, kept by the promise table.
    promises: [Gauge; 4],
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self {
            invocations: CounterSet::new("outcome", ["ok", "trapped", "timed_out", "failed"]),
            invocation_duration: histogram(&DURATION_BUCKETS),
            completions: CounterSet::new(
                "outcome",
                [
                    "completed",
                    "rejected",
                    "timed_out",
                    "already_settled",
                    "not_found",
                    "invalid",
                    "failed",
                ],
            ),
            resume: histogram(&LATENCY_BUCKETS),
            replays: CounterSet::new("outcome", ["ok", "failed"]),
            replay_duration: histogram(&LATENCY_BUCKETS),
            evictions: CounterSet::new("reason", ["parked", "resident_cap"]),
            commit_duration: histogram(&LATENCY_BUCKETS),
            commit_batches: histogram(&BATCH_BUCKETS),
            promises: std::array::from_fn(|_| Gauge::default()),
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let seconds = Some(&Unit::Seconds);
        self.invocations.encode(
            encoder,
            "vow_invocations",
            "Invocations that ran to an end, by outcome.",
        )?;
        encode_histogram(
            encoder,
            "vow_invocation_duration",
            "Time from an invocation's start until its outcome was stored, waits on promises included.",
            seconds,
            &self.invocation_duration,
        )?;
        self.completions.encode(
            encoder,
            "vow_completions",
            "Requests to settle a promise (complete or reject, by guests, the API, timeouts, when, then, all and any), by outcome.",
        )?;
        encode_histogram(
            encoder,
            "vow_completion_resume",
            "Time from a settlement being durable until the worker parked on it resumed (replay included for a worker out of memory).",
            seconds,
            &self.resume,
        )?;
        self.replays.encode(
            encoder,
            "vow_replays",
            "Workers brought into memory by replaying their oplog, by outcome.",
        )?;
        encode_histogram(
            encoder,
            "vow_replay_duration",
            "Time to bring a worker into memory by replay.",
            seconds,
            &self.replay_duration,
        )?;
        self.evictions.encode(
            encoder,
            "vow_evictions",
            "Workers that left memory, by reason.",
        )?;
        encode_histogram(
            encoder,
            "vow_store_commit_duration",
            "Time one store commit (a group of batches in one transaction) took until durable.",
            seconds,
            &self.commit_duration,
        )?;
        encode_histogram(
            encoder,
            "vow_store_commit_batches",
            "Batches (oplog appends with what goes with them, settlements, ...) per store commit.",
            None,
            &self.commit_batches,
        )?;
        let mut promises = encoder.encode_descriptor(
            "vow_promises",
            "Promises by status.",
            None,
            MetricType::Gauge,
        )?;
        for (status, gauge) in PROMISE_STATUSES.iter().zip(&self.promises) {
            let labels = [("status", status_label(*status))];
            gauge.encode(promises.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Recorder {
    /// Promises by status, in the order of [`PROMISE_STATUSES`].
    pub(crate) fn promise_counts(&self) -> [i64; 4] {
        std::array::from_fn(|at| self.promises[at].get())
    }

    /// Completions by outcome: completed, rejected, timed out, already
    /// settled, not found, invalid, failed.
    pub(crate) fn completion_counts(&self) -> [u64; 7] {
        std::array::from_fn(|at| self.completions.counters[at].get())
    }
}

impl vow_store::CommitObserver for Recorder {
    fn committed(&self, batches: usize, elapsed: Duration) {
        self.commit_duration.observe(elapsed.as_secs_f64());
        self.commit_batches.observe(batches as f64);
    }
}

fn status_label(status: PromiseStatus) -> &'static str {
    match status {
        PromiseStatus::Pending => "pending",
        PromiseStatus::Completed => "completed",
        PromiseStatus::Rejected => "rejected",
        PromiseStatus::TimedOut => "timed_out",
    }
}

/// The executor's metrics as its parts see them: every method does nothing
/// when metrics are off.
#[derive(Clone, Default)]
pub(crate) struct Meter(Option<Arc<Recorder>>);

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Meter(on)"
        } else {
            "Meter(off)"
        })
    }
}

impl Meter {
    pub(crate) fn new(recorder: Option<Arc<Recorder>>) -> Self {
        Self(recorder)
    }

    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// An invocation ended with `outcome`, `took` after it started.
    pub(crate) fn invocation(&self, outcome: &crate::Result<Vec<Val>>, took: Duration) {
        let Some(recorder) = &self.0 else {
            return;
        };
        let at = match outcome {
            Ok(_) => 0,
            Err(Error::Trap { .. }) => 1,
            Err(Error::Timeout { .. }) => 2,
            Err(_) => 3,
        };
        recorder.invocations.inc(at);
        recorder.invocation_duration.observe(took.as_secs_f64());
    }

    /// A settlement became durable: the promise settled with it.
    pub(crate) fn settled(&self, settlement: &Settlement) {
        let Some(recorder) = &self.0 else {
            return;
        };
        recorder.completions.inc(match settlement {
            Ok(_) => COMPLETED,
            Err(error) if error.kind == ErrorKind::TimedOut => TIMED_OUT,
            Err(_) => REJECTED,
        });
    }

    /// A request to settle a promise was answered with `answer`; `true`
    /// answers were counted as [`settled`](Self::settled).
    pub(crate) fn settle_answered(&self, answer: &crate::Result<bool>) {
        let Some(recorder) = &self.0 else {
            return;
        };
        recorder.completions.inc(match answer {
            Ok(true) => return,
            Ok(false) => ALREADY_SETTLED,
            Err(Error::PromiseNotFound(_)) => NOT_FOUND,
            Err(Error::InvalidPayload { .. } | Error::PayloadTooLarge { .. }) => INVALID,
            Err(_) => FAILED,
        });
    }

    /// A worker's await returned: if the promise table stamped it when it
    /// told it of the settlement, that long ago is its resume latency.
    pub(crate) fn resumed(&self, stamp: &Stamp) {
        if let (Some(recorder), Some(after)) = (&self.0, stamp.take()) {
            recorder.resume.observe(after.as_secs_f64());
        }
    }

    /// A worker was brought into memory by replay (or failed to be).
    pub(crate) fn replayed(&self, ok: bool, took: Duration) {
        if let Some(recorder) = &self.0 {
            recorder.replays.inc(usize::from(!ok));
            recorder.replay_duration.observe(took.as_secs_f64());
        }
    }

    /// A worker left memory.
    pub(crate) fn evicted(&self, why: Eviction) {
        if let Some(recorder) = &self.0 {
            recorder.evictions.inc(why as usize);
        }
    }

    /// `delta` promises more (or fewer) have `status`.
    pub(crate) fn promises(&self, status: PromiseStatus, delta: i64) {
        let Some(recorder) = &self.0 else {
            return;
        };
        let at = PROMISE_STATUSES.iter().position(|s| *s == status);
        if let Some(gauge) = at.and_then(|at| recorder.promises.get(at)) {
            gauge.inc_by(delta);
        }
    }
}

/// The moment a parked worker was told its promise settled, for the
/// completion → resume latency; empty when there is none to measure.
#[derive(Debug, Default)]
pub(crate) struct Stamp(AtomicU64);

/// What stamps count from: the first stamp of the process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Stamp {
    /// Stamps now.
    pub(crate) fn set(&self) {
        let epoch = epoch();
        // Nanoseconds since the epoch, plus one: zero means "no stamp".
        let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        self.0.store(now, Ordering::Release);
    }

    /// Forgets the stamp.
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// How long ago the stamp was set, if it was; clears it.
    pub(crate) fn take(&self) -> Option<Duration> {
        let at = self.0.swap(0, Ordering::AcqRel);
        (at != 0).then(|| {
            epoch()
                .elapsed()
                .saturating_sub(Duration::from_nanos(at - 1))
        })
    }
}

/// Reads an executor's metrics when a registry is encoded: the recorded
/// ones as they stand, and the worker gauges counted now.
struct ExecutorCollector {
    recorder: Arc<Recorder>,
    /// Weak: the worker table's entries hold the recorder, and an
    /// embedder may keep the metrics after dropping the executor.
    workers: Weak<worker::Registry>,
}

impl fmt::Debug for ExecutorCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorCollector").finish_non_exhaustive()
    }
}

impl Collector for ExecutorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let census = self
            .workers
            .upgrade()
            .map(|workers| workers.census())
            .unwrap_or_default();
        let mut workers = encoder.encode_descriptor(
            "vow_workers",
            "Workers by status; memory=\"live\" for those with an instance in memory, \"evicted\" for the others.",
            None,
            MetricType::Gauge,
        )?;
        for status in WorkerStatus::ALL {
            for (memory, count) in [("live", census.live), ("evicted", census.evicted)] {
                let labels = [("status", status.as_str()), ("memory", memory)];
                let count = count[status as usize];
                workers.encode_family(&labels)?.encode_gauge(&count)?;
            }
        }
        self.recorder.encode(&mut encoder)
    }
}

/// How many workers have each status (indexed by `WorkerStatus as
/// usize`), in memory and out of it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Census {
    pub(crate) live: [u64; 7],
    pub(crate) evicted: [u64; 7],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_measured_once() {
        let stamp = Stamp::default();
        assert_eq!(stamp.take(), None);
        stamp.set();
        std::thread::sleep(Duration::from_millis(2));
        let after = stamp.take();
        assert!(
            after.is_some_and(|d| d >= Duration::from_millis(2)),
            "{after:?}"
        );
        assert_eq!(stamp.take(), None);
        stamp.set();
        stamp.clear();
        assert_eq!(stamp.take(), None);
    }

    #[test]
    fn every_metric_is_written_before_anything_happens() -> Result<(), fmt::Error> {
        let metrics = Metrics::new(Arc::new(Recorder::new()), Weak::new());
        let text = metrics.encode(Format::Prometheus)?;
        for line in [
            "vow_workers{status=\"suspended\",memory=\"evicted\"} 0",
            "vow_invocations_total{outcome=\"ok\"} 0",
            "vow_completions_total{outcome=\"already_settled\"} 0",
            "vow_promises{status=\"timed_out\"} 0",
            "vow_store_commit_duration_seconds_count 0",
            "vow_store_commit_batches_bucket{le=\"1\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        let open = metrics.encode(Format::OpenMetrics)?;
        assert!(open.ends_with("# EOF\n"), "{open}");
        Ok(())
    }
}
