//! What can be tuned when opening a store.

use std::time::Duration;

/// When a commit reaches the disk, which decides what it survives.
///
/// The store runs in WAL mode: a commit appends the changed pages to the
/// `-wal` file beside the database, and a checkpoint copies them into the
/// database file later. This setting is SQLite's `PRAGMA synchronous` for
/// the writer connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous=FULL`: the WAL is fsynced at every commit, before any
    /// write of the commit is acknowledged. An acknowledged write survives
    /// the death of the process, a kernel crash and a power loss (provided
    /// the disk honours flushes). Group commit shares that one fsync among
    /// every batch that arrived while the previous commit ran.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit is written to the WAL (into the
    /// operating system's page cache) but fsynced only at checkpoints. An
    /// acknowledged write survives the death of the process (`kill -9`, a
    /// panic, an OOM kill), but a kernel crash or power loss can lose the
    /// most recent commits. What is lost is always a suffix: the store stays
    /// consistent and keeps the write order (if a batch survived, every batch
    /// written before it did too). Faster when fsync is slow.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Options of [`SqliteStorage::open`](crate::SqliteStorage::open).
///
/// Built from [`SqliteOptions::default`] and adjusted field by field or with
/// the builder methods:
///
/// ```
/// use std::time::Duration;
/// use vow_store_sqlite::{SqliteOptions, Synchronous};
///
/// let options = SqliteOptions::default()
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(1));
/// assert_eq!(options.readers, 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// When commits reach the disk (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// How long a statement waits for a lock held by another connection
    /// (another process using the same file, or a checkpoint) before failing
    /// with "database is locked" (default 5 s). Also how long opening
    /// waits for another process that has the store open to let go of it:
    /// one process at a time opens a store (its lock file, `vow.sqlite.lock`
    /// next to `vow.sqlite`, says which).
    pub busy_timeout: Duration,
    /// How many read-only connections reads may use at once (default 4,
    /// at least 1). Reads beyond that wait for a free connection.
    pub readers: usize,
    /// The most batches committed in one transaction (default 512, at
    /// least 1). A bigger group shares one fsync among more batches, but
    /// every waiter of the group waits for the whole group.
    pub max_group: usize,
    /// Whether to run `PRAGMA quick_check` at open (default `false`). It
    /// reads the whole file, which takes seconds for a store of gigabytes,
    /// so it is off by default: damage is reported as [`Error::Corrupt`]
    /// when SQLite meets it at open or on a later read or write.
    ///
    /// [`Error::Corrupt`]: vow_store::Error::Corrupt
    pub quick_check: bool,
    /// The largest size the database file may grow to, in bytes (default
    /// none). Writes that would grow it further fail with
    /// [`Error::Full`](vow_store::Error::Full), as on a full disk. Rounded
    /// down to whole pages.
    pub max_size: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
            max_group: 512,
            quick_check: false,
            max_size: None,
        }
    }
}

impl SqliteOptions {
    /// Sets [`SqliteOptions::synchronous`].
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`SqliteOptions::busy_timeout`].
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`SqliteOptions::readers`].
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Sets [`SqliteOptions::max_group`].
    #[must_use]
    pub fn max_group(mut self, batches: usize) -> Self {
        self.max_group = batches;
        self
    }

    /// Sets [`SqliteOptions::quick_check`].
    #[must_use]
    pub fn quick_check(mut self, check: bool) -> Self {
        self.quick_check = check;
        self
    }

    /// Sets [`SqliteOptions::max_size`].
    #[must_use]
    pub fn max_size(mut self, bytes: Option<u64>) -> Self {
        self.max_size = bytes;
        self
    }
}
