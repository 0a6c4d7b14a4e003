//! A store that times its calls: how long the runtime waits for the
//! database, so that a table can show the database's share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use vow_store::{
    ComponentRecord, InvocationRecord, OplogRecord, Outcome, PromiseRecord, Result, SnapshotRecord,
    Storage, WorkerKey, WorkerRecord, Write,
};

/// Totals since creation (or the last [`Timed::take`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    /// `write` calls and the time from each call to its answer.
    pub write_calls: u64,
    pub write_time: Duration,
    /// Writes in those calls.
    pub writes: u64,
    /// Read calls and their time.
    pub read_calls: u64,
    pub read_time: Duration,
}

impl Totals {
    pub fn add(&mut self, other: Totals) {
        self.write_calls += other.write_calls;
        self.write_time += other.write_time;
        self.writes += other.writes;
        self.read_calls += other.read_calls;
        self.read_time += other.read_time;
    }
}

#[derive(Default)]
struct Counters {
    write_calls: AtomicU64,
    write_nanos: AtomicU64,
    writes: AtomicU64,
    read_calls: AtomicU64,
    read_nanos: AtomicU64,
}

/// Wraps a store and adds up the time its callers wait for it.
pub(crate) struct Timed {
    inner: Arc<dyn Storage>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Timed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timed").field("inner", &self.inner).finish()
    }
}

impl Timed {
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            counters: Arc::default(),
        }
    }

    /// The totals so far, and zero from here on.
    pub fn take(&self) -> Totals {
        let c = &self.counters;
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        Totals {
            write_calls: take(&c.write_calls),
            write_time: Duration::from_nanos(take(&c.write_nanos)),
            writes: take(&c.writes),
            read_calls: take(&c.read_calls),
            read_time: Duration::from_nanos(take(&c.read_nanos)),
        }
    }

    fn read<'a, T: Send + 'a>(
        &'a self,
        future: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let started = Instant::now();
        let counters = Arc::clone(&self.counters);
        future
            .inspect(move |_| {
                counters.read_calls.fetch_add(1, Ordering::Relaxed);
                counters
                    .read_nanos
                    .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
            })
            .boxed()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Storage for Timed {
    fn write(&self, batch: Vec<Write>) -> BoxFuture<'static, Result<Vec<Outcome>>> {
        let started = Instant::now();
        let counters = Arc::clone(&self.counters);
        let writes = batch.len() as u64;
        self.inner
            .write(batch)
            .inspect(move |_| {
                counters.write_calls.fetch_add(1, Ordering::Relaxed);
                counters.writes.fetch_add(writes, Ordering::Relaxed);
                counters
                    .write_nanos
                    .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
            })
            .boxed()
    }

    fn components(&self) -> BoxFuture<'_, Result<Vec<ComponentRecord>>> {
        self.read(self.inner.components())
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerRecord>>> {
        self.read(self.inner.workers())
    }

    fn oplog<'a>(
        &'a self,
        worker: &'a WorkerKey,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<OplogRecord>>> {
        self.read(self.inner.oplog(worker, from, limit))
    }

    fn last_oplog_index<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        self.read(self.inner.last_oplog_index(worker))
    }

    fn reactions(&self) -> BoxFuture<'_, Result<Vec<vow_store::ReactionRecord>>> {
        self.read(self.inner.reactions())
    }

    fn promises(&self) -> BoxFuture<'_, Result<Vec<PromiseRecord>>> {
        self.read(self.inner.promises())
    }

    fn unfinished_invocations<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        self.read(self.inner.unfinished_invocations(worker))
    }

    fn workers_with_unfinished_invocations(&self) -> BoxFuture<'_, Result<Vec<WorkerKey>>> {
        self.read(self.inner.workers_with_unfinished_invocations())
    }

    fn snapshot<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Option<SnapshotRecord>>> {
        self.read(self.inner.snapshot(worker))
    }

    fn invocation_by_key<'a>(
        &'a self,
        worker: &'a WorkerKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvocationRecord>>> {
        self.read(self.inner.invocation_by_key(worker, key))
    }

    fn invocations_between<'a>(
        &'a self,
        worker: &'a WorkerKey,
        first: u64,
        last: u64,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        self.read(self.inner.invocations_between(worker, first, last))
    }

    fn last_invocation_seq<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        self.read(self.inner.last_invocation_seq(worker))
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}
