//! Limits that keep one guest, or one client, from taking the host: how
//! many workers there may be, how many pending promises a worker may hold,
//! how large a promise's payload may be, and how long a guest may run
//! without returning.
//!
//! Running time is what the guest spends executing: the time spent inside
//! polls of its call's future. A guest parked on a promise, or yielding to
//! other workers at an epoch tick, is not running, so a worker that waits
//! for days on a promise never comes near the limit, while a guest in a
//! busy loop reaches it however often it yields. The check is made at each
//! epoch tick, in the epoch callback, which is also where a running guest
//! yields.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::{StoreContextMut, UpdateDeadline};

use crate::worker::WorkerState;

/// Workers an executor holds by default (see
/// [`ExecutorBuilder::max_workers`](crate::ExecutorBuilder::max_workers)).
/// Every worker keeps an entry in memory even while out of it (about 2 KB),
/// so this bounds that memory to a few hundred MB.
pub const DEFAULT_MAX_WORKERS: usize = 100_000;

/// Workers one component may have by default (see
/// [`ExecutorBuilder::max_workers_per_component`](crate::ExecutorBuilder::max_workers_per_component)):
/// half of [`DEFAULT_MAX_WORKERS`], so one component that starts workers in
/// a loop leaves room for the others.
pub const DEFAULT_MAX_WORKERS_PER_COMPONENT: usize = 50_000;

/// Pending promises one worker may hold by default (see
/// [`ExecutorBuilder::max_open_promises`](crate::ExecutorBuilder::max_open_promises)).
pub const DEFAULT_MAX_OPEN_PROMISES: usize = 10_000;

/// How long a guest may run in one invocation by default, waiting on
/// promises not counted (see
/// [`ExecutorBuilder::max_run_time`](crate::ExecutorBuilder::max_run_time)).
pub const DEFAULT_MAX_RUN_TIME: Duration = Duration::from_secs(300);

/// The largest promise settlement accepted by default, in bytes (see
/// [`ExecutorBuilder::max_payload`](crate::ExecutorBuilder::max_payload)):
/// 2 MiB, as Temporal limits one payload. A payload is stored in the
/// promise's row and copied into the memory of every guest that awaits
/// it, so it is bounded like the worker's other resources.
pub const DEFAULT_MAX_PAYLOAD: usize = 2 << 20;

/// The size a settlement counts against the payload limit: a completion's
/// payload, or a rejection's message and data.
pub(crate) fn settlement_size(settlement: &crate::Settlement) -> usize {
    match settlement {
        Ok(data) => data.len(),
        Err(error) => error.message.len() + error.data.len(),
    }
}

/// `settlement`, or, past `limit`, the rejection of a result too large:
/// for promises the runtime settles (`when`, `then`, `all`), which nobody
/// else would settle if the result were refused.
pub(crate) fn fit(settlement: crate::Settlement, limit: usize) -> crate::Settlement {
    let size = settlement_size(&settlement);
    if size <= limit {
        return settlement;
    }
    Err(crate::PromiseError {
        kind: crate::ErrorKind::Failed,
        message: format!(
            "the result is {size} bytes, more than the limit of {limit} (--max-payload)"
        ),
        data: Vec::new(),
    })
}

/// A duration as people write it: `5 min`, `2 s`, `300 ms`.
pub(crate) fn describe(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis >= 60_000 && millis.is_multiple_of(60_000) {
        format!("{} min", millis / 60_000)
    } else if millis >= 1_000 && millis.is_multiple_of(1_000) {
        format!("{} s", millis / 1_000)
    } else {
        format!("{millis} ms")
    }
}

/// The trap message of a guest that ran past `limit`.
pub(crate) fn ran_too_long(limit: Duration) -> String {
    format!(
        "ran for more than {} without finishing (--max-run-time)",
        describe(limit)
    )
}

/// The running time of a worker's current invocation. Shared between the
/// future that polls the guest ([`Timed`]) and the epoch callback
/// ([`on_epoch`]), which cannot both borrow the Store.
#[derive(Debug)]
pub(crate) struct RunClock {
    /// The limit; `None` for none.
    limit: Option<Duration>,
    /// When the clock's times are counted from.
    origin: Instant,
    /// Nanoseconds spent in finished polls.
    spent: AtomicU64,
    /// When the poll in progress began, in nanoseconds after `origin`
    /// plus one; 0 when no timed poll is in progress (snapshots and
    /// replay of finished invocations are not timed).
    polling_since: AtomicU64,
}

impl RunClock {
    pub(crate) fn new(limit: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            origin: Instant::now(),
            spent: AtomicU64::new(0),
            polling_since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts counting a new invocation from nothing.
    pub(crate) fn reset(&self) {
        self.spent.store(0, Ordering::Relaxed);
        self.polling_since.store(0, Ordering::Relaxed);
    }

    /// The running time so far, the poll in progress included.
    fn running(&self) -> Duration {
        let since = self.polling_since.load(Ordering::Relaxed);
        let current = if since == 0 {
            0
        } else {
            self.now().saturating_sub(since - 1)
        };
        Duration::from_nanos(self.spent.load(Ordering::Relaxed).saturating_add(current))
    }

    /// The trap of a guest past its limit, if it is.
    fn exceeded(&self) -> Option<String> {
        let limit = self.limit?;
        (self.polling_since.load(Ordering::Relaxed) != 0 && self.running() > limit)
            .then(|| ran_too_long(limit))
    }
}

/// Wraps the future of a guest call so that the time spent polling it is
/// the worker's running time.
pub(crate) struct Timed<F> {
    inner: F,
    clock: Arc<RunClock>,
}

impl<F> Timed<F> {
    pub(crate) fn new(inner: F, clock: Arc<RunClock>) -> Self {
        Self { inner, clock }
    }
}

impl<F: Future + Unpin> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let clock = Arc::clone(&self.clock);
        let start = clock.now();
        clock
            .polling_since
            .store(start.saturating_add(1), Ordering::Relaxed);
        let poll = Pin::new(&mut self.inner).poll(cx);
        clock.polling_since.store(0, Ordering::Relaxed);
        clock
            .spent
            .fetch_add(clock.now().saturating_sub(start), Ordering::Relaxed);
        poll
    }
}

/// The epoch callback of every worker's Store: traps a guest past its
/// running-time limit, and otherwise yields to the other workers until the
/// next tick.
pub(crate) fn on_epoch(
    store: StoreContextMut<'_, WorkerState>,
) -> wasmtime::Result<UpdateDeadline> {
    if let Some(message) = store.data().run_clock.exceeded() {
        return Err(wasmtime::Error::msg(message));
    }
    Ok(UpdateDeadline::Yield(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(describe(Duration::from_secs(300)), "5 min");
        assert_eq!(describe(Duration::from_secs(2)), "2 s");
        assert_eq!(describe(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(describe(Duration::from_secs(90)), "90 s");
    }

    #[test]
    fn only_time_inside_polls_counts() {
        let clock = RunClock::new(Some(Duration::from_millis(50)));
        // Not polling: nothing is exceeded, whatever the time.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(clock.exceeded(), None);
        clock
            .polling_since
            .store(clock.now().saturating_add(1), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            clock.exceeded().as_deref(),
            Some("ran for more than 50 ms without finishing (--max-run-time)")
        );
        clock.reset();
        assert_eq!(clock.exceeded(), None);
    }
}
