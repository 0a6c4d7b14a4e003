//! The writer thread: the one owner of the connection that writes.
//!
//! SQLite lets one connection write at a time, so every batch goes to this
//! thread over a channel, in the order `write` was called. The thread blocks
//! for a batch, then takes every batch already waiting (up to `max_group`),
//! and commits them in one transaction:
//!
//! ```text
//! BEGIN IMMEDIATE
//!   SAVEPOINT batch; <writes of batch 1>; RELEASE batch
//!   SAVEPOINT batch; <writes of batch 2 fail>; ROLLBACK TO batch; RELEASE batch
//!   SAVEPOINT batch; <writes of batch 3>; RELEASE batch
//! COMMIT                                   -- one fsync for the whole group
//! ```
//!
//! and only then answers each batch's waiter: batches 1 and 3 with their
//! outcomes, batch 2 with its own error. (If the failure made SQLite roll
//! back the whole transaction, as a full disk can, batch 1 is applied again
//! in a new transaction with batch 3.) While a group commits, the next
//! batches queue up in the channel and form the next group, so the number of
//! fsyncs a second stays bounded by the disk, not by the number of writers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;
use vow_store::{Error, Outcome, Result, Write};

use crate::apply::apply_batch;
use crate::error::runtime;

/// A batch on its way to the writer, with the waiter to answer.
pub(crate) struct Job {
    pub(crate) batch: Vec<Write>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Outcome>>>,
}

/// Counts kept by the writer, read by [`SqliteStorage::stats`].
///
/// [`SqliteStorage::stats`]: crate::SqliteStorage::stats
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    /// Told of each commit (see [`vow_store::Storage::observe_commits`]).
    pub(crate) hook: vow_store::CommitHook,
}

/// Starts the writer thread on `conn`; it stops once every sender is
/// dropped and the batches already sent are committed.
pub(crate) fn spawn(
    conn: Connection,
    location: String,
    max_group: usize,
    counters: Arc<Counters>,
) -> Result<(Sender<Job>, JoinHandle<()>)> {
    let (sender, receiver) = channel();
    let writer = Writer {
        conn,
        location,
        max_group: max_group.max(1),
        counters,
    };
    let location = writer.location.clone();
    let thread = std::thread::Builder::new()
        .name("vow-store-writer".to_owned())
        .spawn(move || writer.run(&receiver))
        .map_err(|e| Error::Open {
            location,
            reason: format!("cannot start the writer thread: {e}"),
        })?;
    Ok((sender, thread))
}

struct Writer {
    conn: Connection,
    location: String,
    max_group: usize,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(self, receiver: &Receiver<Job>) {
        // `recv` fails only once the channel is empty and every sender is
        // gone: what was queued before the store was dropped is committed.
        while let Ok(first) = receiver.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match receiver.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        tracing::debug!(store = %self.location, "store writer stopped");
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([]))
            .map(drop)
            .map_err(|e| runtime(&self.location, &e))
    }

    /// Applies every batch of `group` in one transaction and answers them.
    fn commit_group(&self, group: Vec<Job>) {
        let started = std::time::Instant::now();
        let mut results: Vec<Option<Result<Vec<Outcome>>>> = vec![None; group.len()];
        let mut pending: VecDeque<usize> = (0..group.len()).collect();
        let mut retried = vec![false; group.len()];
        while !pending.is_empty() {
            self.transaction(&group, &mut pending, &mut retried, &mut results);
        }

        let results: Vec<Result<Vec<Outcome>>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Backend("the writer lost a batch".to_owned()))))
            .collect();
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        if ok > 0 {
            self.counters.hook.committed(ok as usize, started.elapsed());
        }
        self.counters.batches.fetch_add(ok, Ordering::SeqCst);
        self.counters
            .failed_batches
            .fetch_add(results.len() as u64 - ok, Ordering::SeqCst);
        tracing::trace!(store = %self.location, batches = results.len(), committed = ok, "group written");
        for (job, result) in group.into_iter().zip(results) {
            if let Err(e) = &result
                && !matches!(e, Error::Conflict(_))
            {
                tracing::warn!(store = %self.location, error = %e, "a batch failed");
            }
            // The waiter may have dropped its future: nothing to tell then.
            let _ = job.reply.send(result);
        }
    }

    /// One transaction over the `pending` batches of `group`, in order,
    /// each in a savepoint, recording what each did in `results`.
    ///
    /// If a failing batch makes SQLite roll back the whole transaction (it
    /// does on a full disk and some I/O errors), the batches applied before
    /// it in that transaction are lost with it: they go back to the front of
    /// `pending` to run again, once, in a new transaction, so one batch that
    /// does not fit does not take the others down. Returns with the
    /// transaction committed or rolled back.
    fn transaction(
        &self,
        group: &[Job],
        pending: &mut VecDeque<usize>,
        retried: &mut [bool],
        results: &mut [Option<Result<Vec<Outcome>>>],
    ) {
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            for batch in pending.drain(..) {
                results[batch] = Some(Err(e.clone()));
            }
            return;
        }
        let mut applied: Vec<usize> = Vec::new();
        while let Some(batch) = pending.pop_front() {
            let result = self.apply_in_savepoint(&group[batch].batch);
            let lost = result.is_err() && self.conn.is_autocommit();
            if let (true, Err(e)) = (lost, &result) {
                for &earlier in applied.iter().rev() {
                    if retried[earlier] {
                        results[earlier] = Some(Err(e.clone()));
                    } else {
                        retried[earlier] = true;
                        pending.push_front(earlier);
                    }
                }
                results[batch] = Some(result);
                return;
            }
            if result.is_ok() {
                applied.push(batch);
            }
            results[batch] = Some(result);
        }
        if applied.is_empty() {
            // Every batch failed: nothing to make durable.
            let _ = self.exec("ROLLBACK");
            return;
        }
        match self.exec("COMMIT") {
            Ok(()) => {
                self.counters.commits.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(store = %self.location, error = %e, batches = applied.len(), "commit failed");
                if !self.conn.is_autocommit() {
                    let _ = self.exec("ROLLBACK");
                }
                for batch in applied {
                    results[batch] = Some(Err(e.clone()));
                }
            }
        }
    }

    /// Applies one batch inside a savepoint, undoing it alone if it fails.
    fn apply_in_savepoint(&self, batch: &[Write]) -> Result<Vec<Outcome>> {
        self.exec("SAVEPOINT batch")?;
        let result = apply_batch(&self.conn, &self.location, batch).and_then(|outcomes| {
            self.exec("RELEASE batch")?;
            Ok(outcomes)
        });
        if result.is_err()
            && !self.conn.is_autocommit()
            && self
                .exec("ROLLBACK TO batch")
                .and_then(|()| self.exec("RELEASE batch"))
                .is_err()
        {
            // The batch cannot be undone alone: undo the transaction, which
            // the caller sees (`is_autocommit`) and reports to the others.
            let _ = self.exec("ROLLBACK");
        }
        result
    }
}
