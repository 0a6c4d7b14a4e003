//! Opening connections, and the versioned schema.
//!
//! The schema version is SQLite's `PRAGMA user_version` (an integer in the
//! database header, changed in the same transaction as the migration that
//! reaches it, so a crash never leaves a half-migrated store). Migrations are
//! the list [`MIGRATIONS`]: entry `i` brings a store from version `i` to
//! `i + 1`. They are only ever appended to; a released entry never changes.
//!
//! `PRAGMA application_id` marks the file as a Vow store, so Vow refuses to
//! add its tables to another program's SQLite database.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use vow_store::{Error, Result};

use crate::error::{at_open, read_only, runtime};
use crate::options::SqliteOptions;

/// "Vow!" in ASCII: `PRAGMA application_id` of every Vow store.
const APPLICATION_ID: i32 = 0x566F_7721;

/// The migrations, oldest first.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes and understands.
pub(crate) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Version 1.
///
/// Keys: a component id is its 16 UUID bytes, a worker is (component, name).
/// The oplog and the workers are `WITHOUT ROWID` tables clustered on their
/// key: appends and range reads touch one b-tree, and the rows are small.
/// Component bytes, promise payloads and invocation requests and results
/// can be large, so they live in ordinary rowid tables, where a big row
/// does not bloat the b-tree's interior pages.
const V1: &str = "
CREATE TABLE components (
    id         BLOB    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    bytes      BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- args and env: see codec.rs. The awaited promise is three columns, all
-- NULL unless the worker is parked on one.
CREATE TABLE workers (
    component          BLOB    NOT NULL,
    name               TEXT    NOT NULL,
    args               BLOB    NOT NULL,
    env                BLOB    NOT NULL,
    created_at         INTEGER NOT NULL,
    status             TEXT    NOT NULL,
    last_error         TEXT,
    awaiting_component BLOB,
    awaiting_name      TEXT,
    awaiting_index     INTEGER,
    PRIMARY KEY (component, name)
) WITHOUT ROWID;

CREATE TABLE oplog (
    component BLOB    NOT NULL,
    name      TEXT    NOT NULL,
    idx       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    entry     BLOB    NOT NULL,
    PRIMARY KEY (component, name, idx)
) WITHOUT ROWID;

-- Pending while completed_at is NULL; data is the first completion's payload.
CREATE TABLE promises (
    component    BLOB    NOT NULL,
    name         TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    data         BLOB,
    completed_at INTEGER,
    PRIMARY KEY (component, name, idx),
    CHECK ((data IS NULL) = (completed_at IS NULL))
);

-- result is set exactly when state is 'finished'.
CREATE TABLE invocations (
    component       BLOB    NOT NULL,
    name            TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    idempotency_key TEXT,
    request         BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'finished')),
    result          BLOB,
    accepted_at     INTEGER NOT NULL,
    PRIMARY KEY (component, name, seq),
    CHECK ((result IS NOT NULL) = (state = 'finished'))
);

CREATE UNIQUE INDEX invocations_by_key
    ON invocations (component, name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The queue a worker works through: small, whatever its history.
CREATE INDEX invocations_unfinished
    ON invocations (component, name, seq)
    WHERE state <> 'finished';
";

/// Version 2: worker snapshots, one per worker (the latest replaces the
/// one before). A rowid table: snapshots can be large.
const V2: &str = "
CREATE TABLE snapshots (
    component BLOB    NOT NULL,
    name      TEXT    NOT NULL,
    idx       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    PRIMARY KEY (component, name)
);
";

/// Opens the writer's connection: creates the file if needed, switches to
/// WAL, migrates the schema, and applies `options`.
/// Rejection, timeouts, retention and options of promises, and the
/// reactions (continuations, all / any) that settle promises.
const V3: &str = "
-- rejected = 1: the promise was rejected and data holds the error.
ALTER TABLE promises ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE promises ADD COLUMN deadline INTEGER;
ALTER TABLE promises ADD COLUMN retention INTEGER;
ALTER TABLE promises ADD COLUMN options BLOB;

-- One per promise it settles; sources: see vow_store::encode_promise_keys.
CREATE TABLE reactions (
    component  BLOB    NOT NULL,
    name       TEXT    NOT NULL,
    idx        INTEGER NOT NULL,
    sources    BLOB    NOT NULL,
    spec       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (component, name, idx)
) WITHOUT ROWID;
";

pub(crate) fn open_writer(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| at_open(path, &e))?;
    let fail = |e: rusqlite::Error| at_open(path, &e);
    // SQLite quietly opens a file it cannot write read-only instead (on a
    // read-only file system, say): the store must write, so that is an open
    // error. Without this check a WAL left behind by a crash let the store
    // open, serve reads and fail every write, while a cleanly closed one
    // failed to open.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
        return Err(read_only(path));
    }
    conn.busy_timeout(options.busy_timeout).map_err(fail)?;

    // The first statement that reads the file: a file that is not a database
    // fails here with SQLITE_NOTADB.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Open {
            location: path.display().to_string(),
            reason: format!(
                "cannot switch the database to WAL mode (it stays in {mode} mode): is it on a file system without shared memory?"
            ),
        });
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())
        .map_err(fail)?;
    if let Some(max_size) = options.max_size {
        let page_size: i64 = conn.pragma_query_one(None, "page_size").map_err(fail)?;
        let pages = i64::try_from(max_size).unwrap_or(i64::MAX) / page_size.max(1);
        conn.pragma_update(None, "max_page_count", pages.max(1))
            .map_err(fail)?;
    }
    migrate(&mut conn, path)?;
    if options.quick_check {
        quick_check(&conn, path)?;
    }
    // Room for every statement the writer prepares.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Brings the schema to [`LATEST`] in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let location = path.display().to_string();
    let fail = |e: rusqlite::Error| at_open(path, &e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let application_id: i32 = tx.pragma_query_one(None, "application_id").map_err(fail)?;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(Error::Open {
            location,
            reason: format!(
                "it is the SQLite database of another program (application_id {application_id:#x}), not a vow store"
            ),
        });
    }
    let found: i64 = tx.pragma_query_one(None, "user_version").map_err(fail)?;
    let found = u32::try_from(found).map_err(|_| Error::Corrupt {
        location: location.clone(),
        reason: format!("invalid schema version {found}"),
    })?;
    if found > LATEST {
        return Err(Error::NewerSchema {
            location,
            found,
            supported: LATEST,
        });
    }
    if found == LATEST {
        return Ok(());
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(store = %location, from = version, to = version + 1, "migrating the store's schema");
        tx.execute_batch(sql).map_err(|e| Error::Open {
            location: location.clone(),
            reason: format!("migrating the schema to version {}: {e}", version + 1),
        })?;
    }
    tx.pragma_update(None, "user_version", LATEST)
        .map_err(fail)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// `PRAGMA quick_check`: fails with [`Error::Corrupt`] and SQLite's first
/// findings unless it reports "ok".
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let location = path.display().to_string();
    let mut findings = Vec::new();
    conn.pragma_query(None, "quick_check", |row| {
        findings.push(row.get::<_, String>(0)?);
        Ok(())
    })
    .map_err(|e| runtime(&location, &e))?;
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    findings.truncate(5);
    Err(Error::Corrupt {
        location,
        reason: format!("quick_check found: {}", findings.join("; ")),
    })
}

/// Opens a read-only connection to a store the writer has opened.
pub(crate) fn open_reader(
    path: &Path,
    location: &str,
    options: &SqliteOptions,
) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| runtime(location, &e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| runtime(location, &e))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}
