//! # vow-store-sqlite
//!
//! The SQLite backend of the Vow storage interface: [`SqliteStorage`]
//! implements [`vow_store::Storage`] on one database file in WAL mode.
//!
//! ## How to embed
//!
//! 1. Pick a path and [`SqliteOptions`] (the defaults fsync every commit).
//! 2. [`SqliteStorage::open`] creates or migrates the file, synchronously.
//! 3. Share it as a [`vow_store::SharedStorage`] and use only the trait.
//! 4. Drop it to close: queued writes are committed first.
//!
//! ```
//! use std::sync::Arc;
//! use vow_store::{SharedStorage, WorkerKey, Write};
//! use vow_store_sqlite::{SqliteOptions, SqliteStorage};
//!
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let store: SharedStorage =
//!     Arc::new(SqliteStorage::open(&dir.path().join("vow.db"), SqliteOptions::default())?);
//! let worker = WorkerKey { component: uuid::Uuid::new_v4(), name: "w".to_owned() };
//! futures::executor::block_on(async {
//!     store
//!         .write(vec![Write::CreatePromise {
//!             key: vow_store::PromiseKey { worker, index: 1 },
//!             at: vow_store::now_millis(),
//!             spec: Default::default(),
//!         }])
//!         .await?;
//!     assert_eq!(store.promises().await?.len(), 1);
//!     anyhow::Ok(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Why it is built this way
//!
//! - **rusqlite with bundled SQLite.** The `bundled` feature compiles SQLite
//!   into the binary, so Vow runs on a fresh machine with no system library
//!   and always with the same, recent SQLite (WAL, `WITHOUT ROWID`, upserts).
//! - **One writer thread.** One writer at a time is SQLite's model: rather
//!   than have every task contend for the write lock, one dedicated thread
//!   owns the writing connection. [`Storage::write`] sends the batch to it
//!   over a channel at the moment of the call, which gives the write order
//!   the trait promises, and returns a future that resolves once the batch is
//!   committed.
//! - **Group commit.** The thread takes every batch that queued up while the
//!   previous commit ran and commits them in one transaction, with a
//!   savepoint per batch so a failing batch is undone alone and gets its own
//!   error. One fsync then serves the whole group, which is what lets
//!   thousands of durable writes a second through a disk that fsyncs a few
//!   thousand times a second at best. [`SqliteStorage::stats`] counts commits
//!   and batches.
//! - **Readers beside the writer.** Reads run on a small pool of read-only
//!   connections on tokio's blocking threads (no async task blocks); in WAL
//!   mode they see the last commit and never wait for the writer.
//!
//! ## What a commit survives
//!
//! Set by [`SqliteOptions::synchronous`]:
//!
//! - [`Synchronous::Full`] (the default): the WAL is fsynced before any batch
//!   of the commit is acknowledged. An acknowledged write survives the death
//!   of the process, a kernel crash and a power loss.
//! - [`Synchronous::Normal`]: the commit is in the operating system's cache
//!   when acknowledged and fsynced at the next checkpoint. It survives the
//!   death of the process (`kill -9`), but a kernel crash or power loss can
//!   lose the latest commits, never more than a suffix of them: the file
//!   stays consistent and in write order.
//!
//! Vow defaults to `Full` because an acknowledged promise completion or
//! invocation result is a promise to the caller; group commit keeps its
//! cost to one fsync per group.
//!
//! ## One process per store
//!
//! Opening takes an exclusive lock on `FILE.lock` next to the database
//! file (the operating system's, so it dies with the process) and holds it
//! until the store is dropped. A second process opening the same store
//! waits up to [`SqliteOptions::busy_timeout`] and then gets
//! [`Error::Open`] naming the process that holds it: two processes running
//! one store's workers would run them twice.
//!
//! ## Errors
//!
//! A path that cannot be opened or created is [`Error::Open`] with the reason;
//! a file that is not a SQLite database or is damaged is [`Error::Corrupt`]
//! (detected when SQLite reads it, at open or later, or by
//! [`SqliteOptions::quick_check`]); a store written by a newer Vow is
//! [`Error::NewerSchema`]; a full disk (or [`SqliteOptions::max_size`]) is
//! [`Error::Full`]. The schema version is `PRAGMA user_version`.
//!
//! [`Storage::write`]: vow_store::Storage::write
//! [`Error::Open`]: vow_store::Error::Open
//! [`Error::Corrupt`]: vow_store::Error::Corrupt
//! [`Error::NewerSchema`]: vow_store::Error::NewerSchema
//! [`Error::Full`]: vow_store::Error::Full

mod apply;
mod codec;
mod error;
mod lock;
mod options;
mod read;
mod schema;
mod writer;

pub use options::{SqliteOptions, Synchronous};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use futures::FutureExt as _;
use futures::future::{BoxFuture, ready};
use rusqlite::Connection;
use tokio::sync::oneshot;
use uuid::Uuid;
use vow_store::{
    ComponentRecord, Error, InvocationRecord, OplogRecord, Outcome, PromiseKey, PromiseRecord,
    ReactionRecord, Result, SnapshotRecord, Storage, WorkerKey, WorkerRecord, Write,
};

use crate::read::Readers;
use crate::writer::{Counters, Job};

/// The schema version this build of the crate writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = schema::LATEST;

/// A Vow store in one SQLite file: see the crate docs.
pub struct SqliteStorage {
    location: String,
    readers: Arc<Readers>,
    /// `None` once dropping: closing the channel stops the writer.
    sender: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// One process per store (see `lock`); last, so it is let go after
    /// the writer has stopped.
    _lock: lock::StoreLock,
}

/// What the writer has done since the store was opened, from
/// [`SqliteStorage::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Transactions committed, each holding a group of batches (a group
    /// whose batches all failed commits nothing and is not counted).
    pub commits: u64,
    /// Batches committed.
    pub batches: u64,
    /// Batches refused (a conflict, a full disk, ...).
    pub failed_batches: u64,
}

impl SqliteStorage {
    /// Opens the store at `path`, creating the file if it does not exist
    /// (its directory must), and migrating an older schema.
    ///
    /// Synchronous: it reads and may write the file. Fails with
    /// [`Error::Open`], [`Error::Corrupt`], [`Error::NewerSchema`] or
    /// [`Error::Full`], each naming `path`.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self> {
        let location = path.display().to_string();
        // The writer's connection first: it says best what is wrong with a
        // path (read-only, not a database, newer schema); SQLite's own
        // locks keep its migration safe. Nothing is written before the
        // lock is taken.
        let conn = schema::open_writer(path, &options)?;
        let lock = lock::take(path, options.busy_timeout)?;
        let readers = Arc::new(Readers::new(
            path.to_path_buf(),
            location.clone(),
            options.clone(),
        ));
        // Open one reader now, so a store that cannot be read fails here
        // rather than at the first read.
        readers.with(|_, _| Ok(()))?;
        let counters = Arc::new(Counters::default());
        let (sender, writer) = writer::spawn(
            conn,
            location.clone(),
            options.max_group,
            Arc::clone(&counters),
        )?;
        tracing::debug!(store = %location, version = SCHEMA_VERSION, synchronous = ?options.synchronous, "opened the store");
        Ok(Self {
            location,
            readers,
            sender: Some(sender),
            writer: Some(writer),
            counters,
            _lock: lock,
        })
    }

    /// What the writer has done so far: commits against batches shows how
    /// well group commit groups.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::SeqCst),
            batches: self.counters.batches.load(Ordering::SeqCst),
            failed_batches: self.counters.failed_batches.load(Ordering::SeqCst),
        }
    }

    /// Runs `read` on a pooled reader connection, on tokio's blocking pool
    /// when called inside a tokio runtime (in place otherwise).
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection, &str) -> Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let readers = Arc::clone(&self.readers);
        async move {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let pool = Arc::clone(&readers);
                    runtime
                        .spawn_blocking(move || pool.with(read))
                        .await
                        .unwrap_or_else(|e| {
                            Err(Error::Backend(format!(
                                "{}: a read did not finish: {e}",
                                readers.location()
                            )))
                        })
                }
                Err(_) => readers.with(read),
            }
        }
        .boxed()
    }
}

impl fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("location", &self.location)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteStorage {
    /// Closes the store: the writer commits what is queued, answers its
    /// waiters and stops; this waits for it (for as long as one last group
    /// commit takes).
    fn drop(&mut self) {
        self.readers.close_idle();
        drop(self.sender.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(store = %self.location, "the store's writer thread panicked");
        }
    }
}

impl Storage for SqliteStorage {
    fn write(&self, batch: Vec<Write>) -> BoxFuture<'static, Result<Vec<Outcome>>> {
        let (reply, answer) = oneshot::channel();
        let sent = match &self.sender {
            Some(sender) => sender.send(Job { batch, reply }).is_ok(),
            None => false,
        };
        if !sent {
            return ready(Err(Error::Closed)).boxed();
        }
        // A writer that stopped without answering (it panicked) closes the
        // channel: the batch may not have been applied.
        answer
            .map(|answer| answer.unwrap_or(Err(Error::Closed)))
            .boxed()
    }

    fn components(&self) -> BoxFuture<'_, Result<Vec<ComponentRecord>>> {
        self.read(read::components)
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerRecord>>> {
        self.read(read::workers)
    }

    fn oplog<'a>(
        &'a self,
        worker: &'a WorkerKey,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<OplogRecord>>> {
        let worker = worker.clone();
        self.read(move |conn, location| read::oplog(conn, location, &worker, from, limit))
    }

    fn last_oplog_index<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        let worker = worker.clone();
        self.read(move |conn, location| read::last_oplog_index(conn, location, &worker))
    }

    fn promises(&self) -> BoxFuture<'_, Result<Vec<PromiseRecord>>> {
        self.read(read::promises)
    }

    fn reactions(&self) -> BoxFuture<'_, Result<Vec<ReactionRecord>>> {
        self.read(read::reactions)
    }

    fn component(&self, id: Uuid) -> BoxFuture<'_, Result<Option<ComponentRecord>>> {
        self.read(move |conn, location| read::component(conn, location, id))
    }

    fn worker<'a>(&'a self, key: &'a WorkerKey) -> BoxFuture<'a, Result<Option<WorkerRecord>>> {
        let key = key.clone();
        self.read(move |conn, location| read::worker(conn, location, &key))
    }

    fn promise<'a>(&'a self, key: &'a PromiseKey) -> BoxFuture<'a, Result<Option<PromiseRecord>>> {
        let key = key.clone();
        self.read(move |conn, location| read::promise(conn, location, &key))
    }

    fn reaction<'a>(
        &'a self,
        target: &'a PromiseKey,
    ) -> BoxFuture<'a, Result<Option<ReactionRecord>>> {
        let target = target.clone();
        self.read(move |conn, location| read::reaction(conn, location, &target))
    }

    fn unfinished_invocations<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        let worker = worker.clone();
        self.read(move |conn, location| read::unfinished_invocations(conn, location, &worker))
    }

    fn workers_with_unfinished_invocations(&self) -> BoxFuture<'_, Result<Vec<WorkerKey>>> {
        self.read(read::workers_with_unfinished_invocations)
    }

    fn snapshot<'a>(
        &'a self,
        worker: &'a WorkerKey,
    ) -> BoxFuture<'a, Result<Option<SnapshotRecord>>> {
        let worker = worker.clone();
        self.read(move |conn, location| read::snapshot(conn, location, &worker))
    }

    fn invocation_by_key<'a>(
        &'a self,
        worker: &'a WorkerKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvocationRecord>>> {
        let worker = worker.clone();
        let key = key.to_owned();
        self.read(move |conn, location| read::invocation_by_key(conn, location, &worker, &key))
    }

    fn invocations_between<'a>(
        &'a self,
        worker: &'a WorkerKey,
        first: u64,
        last: u64,
    ) -> BoxFuture<'a, Result<Vec<InvocationRecord>>> {
        let worker = worker.clone();
        self.read(move |conn, location| {
            read::invocations_between(conn, location, &worker, first, last)
        })
    }

    fn last_invocation_seq<'a>(&'a self, worker: &'a WorkerKey) -> BoxFuture<'a, Result<u64>> {
        let worker = worker.clone();
        self.read(move |conn, location| read::last_invocation_seq(conn, location, &worker))
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn observe_commits(&self, observer: Arc<dyn vow_store::CommitObserver>) {
        self.counters.hook.set(observer);
    }
}
