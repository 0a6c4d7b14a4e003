//! Reads: a small pool of read-only connections, and the queries.
//!
//! In WAL mode a reader sees the last commit made before its statement
//! started and never waits for the writer, so reads run beside the writer
//! thread on connections of their own. Each read is one statement, hence one
//! consistent snapshot; the writer answers a batch only after its commit, so
//! a read started after a write's future resolved sees that write.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use rusqlite::{Connection, Row, params};
use uuid::Uuid;
use vow_store::{
    ComponentRecord, Error, InvocationRecord, InvocationState, OplogRecord, PromiseKey,
    PromiseRecord, PromiseSpec, PromiseState, ReactionRecord, Result, SnapshotRecord, WorkerKey,
    WorkerRecord, WorkerState,
};

use crate::codec::{decode_env, decode_strings};
use crate::error::runtime;
use crate::options::SqliteOptions;
use crate::schema::open_reader;

/// Read-only connections, opened on demand up to `options.readers`.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    location: String,
    options: SqliteOptions,
    pool: Mutex<Pool>,
    /// Signalled when a connection goes back to the pool or is closed.
    returned: Condvar,
}

#[derive(Debug, Default)]
struct Pool {
    idle: Vec<Connection>,
    /// Connections open, idle or in use.
    open: usize,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, location: String, options: SqliteOptions) -> Self {
        Self {
            path,
            location,
            options,
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
        }
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `read` on a pooled connection. Blocks: call it from a blocking
    /// thread.
    pub(crate) fn with<T>(&self, read: impl FnOnce(&Connection, &str) -> Result<T>) -> Result<T> {
        let mut lease = Lease {
            readers: self,
            conn: Some(self.take()?),
            keep: false,
        };
        let out = match &lease.conn {
            Some(conn) => read(conn, &self.location),
            None => Err(Error::Closed),
        };
        // A connection whose read failed may be in a bad state: it is closed
        // and the next read opens a fresh one.
        lease.keep = out.is_ok();
        out
    }

    fn take(&self) -> Result<Connection> {
        let mut pool = self.pool();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < self.options.readers.max(1) {
                pool.open += 1;
                drop(pool);
                let opened = open_reader(&self.path, &self.location, &self.options);
                if opened.is_err() {
                    self.pool().open -= 1;
                    self.returned.notify_one();
                }
                return opened;
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Closes the idle connections; one in use goes back to the pool when
    /// its read ends, and closes with the pool.
    pub(crate) fn close_idle(&self) {
        let mut pool = self.pool();
        let closed = pool.idle.len();
        pool.idle.clear();
        pool.open -= closed;
    }
}

/// A connection taken from the pool. Dropping it gives it back (or closes
/// it), also when the read panicked, so the pool never shrinks for good.
struct Lease<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
    keep: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut pool = self.readers.pool();
        match self.conn.take() {
            Some(conn) if self.keep => pool.idle.push(conn),
            _ => pool.open -= 1,
        }
        drop(pool);
        self.readers.returned.notify_one();
    }
}

fn sql(location: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| runtime(location, &e)
}

fn corrupt(location: &str, reason: String) -> Error {
    Error::Corrupt {
        location: location.to_owned(),
        reason,
    }
}

/// Runs a cached query and converts each row with `convert`.
fn query<T>(
    conn: &Connection,
    location: &str,
    statement: &str,
    params: impl rusqlite::Params,
    convert: impl Fn(&Row<'_>, &str) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(statement).map_err(sql(location))?;
    let mut rows = stmt.query(params).map_err(sql(location))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql(location))? {
        out.push(convert(row, location)?);
    }
    Ok(out)
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, index: usize, location: &str) -> Result<T> {
    row.get(index).map_err(sql(location))
}

fn unsigned(row: &Row<'_>, index: usize, location: &str) -> Result<u64> {
    let value: i64 = get(row, index, location)?;
    u64::try_from(value).map_err(|_| {
        corrupt(
            location,
            format!("negative number {value} in column {index}"),
        )
    })
}

fn uuid(row: &Row<'_>, index: usize, location: &str) -> Result<Uuid> {
    get::<[u8; 16]>(row, index, location).map(Uuid::from_bytes)
}

fn bytes(row: &Row<'_>, index: usize, location: &str) -> Result<Bytes> {
    get::<Vec<u8>>(row, index, location).map(Bytes::from)
}

/// Converts a row of `SELECT id, name, sha256, bytes, created_at FROM
/// components`.
fn component_row(row: &Row<'_>, loc: &str) -> Result<ComponentRecord> {
    Ok(ComponentRecord {
        id: uuid(row, 0, loc)?,
        name: get(row, 1, loc)?,
        sha256: get(row, 2, loc)?,
        bytes: bytes(row, 3, loc)?,
        created_at: unsigned(row, 4, loc)?,
    })
}

pub(crate) fn components(conn: &Connection, location: &str) -> Result<Vec<ComponentRecord>> {
    query(
        conn,
        location,
        "SELECT id, name, sha256, bytes, created_at FROM components ORDER BY id",
        [],
        component_row,
    )
}

pub(crate) fn component(
    conn: &Connection,
    location: &str,
    id: Uuid,
) -> Result<Option<ComponentRecord>> {
    let found = query(
        conn,
        location,
        "SELECT id, name, sha256, bytes, created_at FROM components WHERE id = ?1",
        params![id.as_bytes()],
        component_row,
    )?;
    Ok(found.into_iter().next())
}

/// Converts a row of `SELECT component, name, args, env, created_at,
/// status, last_error, awaiting_component, awaiting_name, awaiting_index
/// FROM workers`.
fn worker_row(row: &Row<'_>, loc: &str) -> Result<WorkerRecord> {
    let key = WorkerKey {
        component: uuid(row, 0, loc)?,
        name: get(row, 1, loc)?,
    };
    let args: Vec<u8> = get(row, 2, loc)?;
    let env: Vec<u8> = get(row, 3, loc)?;
    let malformed = |what| corrupt(loc, format!("malformed {what} of worker {key}"));
    let awaiting = match get::<Option<[u8; 16]>>(row, 7, loc)? {
        None => None,
        Some(component) => Some(PromiseKey {
            worker: WorkerKey {
                component: Uuid::from_bytes(component),
                name: get(row, 8, loc)?,
            },
            index: unsigned(row, 9, loc)?,
        }),
    };
    Ok(WorkerRecord {
        args: decode_strings(&args).ok_or_else(|| malformed("arguments"))?,
        env: decode_env(&env).ok_or_else(|| malformed("environment"))?,
        created_at: unsigned(row, 4, loc)?,
        state: WorkerState {
            status: get(row, 5, loc)?,
            last_error: get(row, 6, loc)?,
            awaiting,
        },
        key,
    })
}

pub(crate) fn workers(conn: &Connection, location: &str) -> Result<Vec<WorkerRecord>> {
    query(
        conn,
        location,
        "SELECT component, name, args, env, created_at, status, last_error,
                awaiting_component, awaiting_name, awaiting_index
         FROM workers ORDER BY component, name",
        [],
        worker_row,
    )
}

pub(crate) fn worker(
    conn: &Connection,
    location: &str,
    key: &WorkerKey,
) -> Result<Option<WorkerRecord>> {
    let found = query(
        conn,
        location,
        "SELECT component, name, args, env, created_at, status, last_error,
                awaiting_component, awaiting_name, awaiting_index
         FROM workers WHERE component = ?1 AND name = ?2",
        params![key.component.as_bytes(), key.name],
        worker_row,
    )?;
    Ok(found.into_iter().next())
}

pub(crate) fn oplog(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
    from: u64,
    limit: usize,
) -> Result<Vec<OplogRecord>> {
    query(
        conn,
        location,
        "SELECT idx, at, entry FROM oplog
         WHERE component = ?1 AND name = ?2 AND idx >= ?3 ORDER BY idx LIMIT ?4",
        params![
            worker.component.as_bytes(),
            worker.name,
            crate::codec::int_saturating(from),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |row, loc| {
            Ok(OplogRecord {
                index: unsigned(row, 0, loc)?,
                at: unsigned(row, 1, loc)?,
                entry: bytes(row, 2, loc)?,
            })
        },
    )
}

/// Converts a row of `SELECT component, name, idx, created_at, data,
/// completed_at, rejected, deadline, retention, options FROM promises`.
fn promise_row(row: &Row<'_>, loc: &str) -> Result<PromiseRecord> {
    let state = match get::<Option<i64>>(row, 5, loc)? {
        None => PromiseState::Pending,
        Some(_) if get::<bool>(row, 6, loc)? => PromiseState::Rejected {
            error: bytes(row, 4, loc)?,
            at: unsigned(row, 5, loc)?,
        },
        Some(_) => PromiseState::Completed {
            data: bytes(row, 4, loc)?,
            at: unsigned(row, 5, loc)?,
        },
    };
    let optional = |i: usize| -> Result<Option<u64>> {
        match get::<Option<i64>>(row, i, loc)? {
            None => Ok(None),
            Some(_) => unsigned(row, i, loc).map(Some),
        }
    };
    Ok(PromiseRecord {
        key: PromiseKey {
            worker: WorkerKey {
                component: uuid(row, 0, loc)?,
                name: get(row, 1, loc)?,
            },
            index: unsigned(row, 2, loc)?,
        },
        created_at: unsigned(row, 3, loc)?,
        state,
        spec: PromiseSpec {
            deadline: optional(7)?,
            retention: optional(8)?,
            options: match get::<Option<Vec<u8>>>(row, 9, loc)? {
                Some(options) => options.into(),
                None => Bytes::new(),
            },
        },
    })
}

pub(crate) fn promises(conn: &Connection, location: &str) -> Result<Vec<PromiseRecord>> {
    query(
        conn,
        location,
        "SELECT component, name, idx, created_at, data, completed_at, rejected,
                deadline, retention, options
         FROM promises ORDER BY component, name, idx",
        [],
        promise_row,
    )
}

pub(crate) fn promise(
    conn: &Connection,
    location: &str,
    key: &PromiseKey,
) -> Result<Option<PromiseRecord>> {
    // An index past the largest storable one names no promise.
    let Ok(index) = i64::try_from(key.index) else {
        return Ok(None);
    };
    let found = query(
        conn,
        location,
        "SELECT component, name, idx, created_at, data, completed_at, rejected,
                deadline, retention, options
         FROM promises WHERE component = ?1 AND name = ?2 AND idx = ?3",
        params![key.worker.component.as_bytes(), key.worker.name, index],
        promise_row,
    )?;
    Ok(found.into_iter().next())
}

/// Converts a row of `SELECT component, name, idx, sources, spec,
/// created_at FROM reactions`.
fn reaction_row(row: &Row<'_>, loc: &str) -> Result<ReactionRecord> {
    let sources: Vec<u8> = get(row, 3, loc)?;
    Ok(ReactionRecord {
        target: PromiseKey {
            worker: WorkerKey {
                component: uuid(row, 0, loc)?,
                name: get(row, 1, loc)?,
            },
            index: unsigned(row, 2, loc)?,
        },
        sources: vow_store::decode_promise_keys(&sources)
            .ok_or_else(|| corrupt(loc, "a reaction's sources cannot be read".to_owned()))?,
        spec: bytes(row, 4, loc)?,
        created_at: unsigned(row, 5, loc)?,
    })
}

pub(crate) fn reactions(conn: &Connection, location: &str) -> Result<Vec<ReactionRecord>> {
    query(
        conn,
        location,
        "SELECT component, name, idx, sources, spec, created_at
         FROM reactions ORDER BY component, name, idx",
        [],
        reaction_row,
    )
}

pub(crate) fn reaction(
    conn: &Connection,
    location: &str,
    target: &PromiseKey,
) -> Result<Option<ReactionRecord>> {
    // An index past the largest storable one names no promise.
    let Ok(index) = i64::try_from(target.index) else {
        return Ok(None);
    };
    let found = query(
        conn,
        location,
        "SELECT component, name, idx, sources, spec, created_at
         FROM reactions WHERE component = ?1 AND name = ?2 AND idx = ?3",
        params![
            target.worker.component.as_bytes(),
            target.worker.name,
            index
        ],
        reaction_row,
    )?;
    Ok(found.into_iter().next())
}

/// Converts a row of `SELECT seq, idempotency_key, request, state, result,
/// accepted_at FROM invocations`.
fn invocation(worker: &WorkerKey) -> impl Fn(&Row<'_>, &str) -> Result<InvocationRecord> + '_ {
    move |row, loc| {
        let state = match get::<String>(row, 3, loc)?.as_str() {
            "queued" => InvocationState::Queued,
            "running" => InvocationState::Running,
            "finished" => InvocationState::Finished(bytes(row, 4, loc)?),
            other => return Err(corrupt(loc, format!("unknown invocation state {other:?}"))),
        };
        Ok(InvocationRecord {
            worker: worker.clone(),
            seq: unsigned(row, 0, loc)?,
            idempotency_key: get(row, 1, loc)?,
            request: bytes(row, 2, loc)?,
            state,
            accepted_at: unsigned(row, 5, loc)?,
        })
    }
}

pub(crate) fn unfinished_invocations(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
) -> Result<Vec<InvocationRecord>> {
    query(
        conn,
        location,
        "SELECT seq, idempotency_key, request, state, result, accepted_at FROM invocations
         WHERE component = ?1 AND name = ?2 AND state <> 'finished' ORDER BY seq",
        params![worker.component.as_bytes(), worker.name],
        invocation(worker),
    )
}

/// The workers with unfinished invocations, by key.
pub(crate) fn workers_with_unfinished_invocations(
    conn: &Connection,
    location: &str,
) -> Result<Vec<WorkerKey>> {
    query(
        conn,
        location,
        "SELECT DISTINCT component, name FROM invocations
         WHERE state <> 'finished' ORDER BY component, name",
        [],
        |row, loc| {
            Ok(WorkerKey {
                component: uuid(row, 0, loc)?,
                name: get(row, 1, loc)?,
            })
        },
    )
}

pub(crate) fn snapshot(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
) -> Result<Option<SnapshotRecord>> {
    let found = query(
        conn,
        location,
        "SELECT idx, at, data FROM snapshots WHERE component = ?1 AND name = ?2",
        params![worker.component.as_bytes(), worker.name],
        |row, loc| {
            Ok(SnapshotRecord {
                worker: worker.clone(),
                index: unsigned(row, 0, loc)?,
                at: unsigned(row, 1, loc)?,
                data: bytes(row, 2, loc)?,
            })
        },
    )?;
    Ok(found.into_iter().next())
}

pub(crate) fn invocation_by_key(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
    key: &str,
) -> Result<Option<InvocationRecord>> {
    let found = query(
        conn,
        location,
        "SELECT seq, idempotency_key, request, state, result, accepted_at FROM invocations
         WHERE component = ?1 AND name = ?2 AND idempotency_key = ?3",
        params![worker.component.as_bytes(), worker.name, key],
        invocation(worker),
    )?;
    Ok(found.into_iter().next())
}

pub(crate) fn invocations_between(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
    first: u64,
    last: u64,
) -> Result<Vec<InvocationRecord>> {
    query(
        conn,
        location,
        "SELECT seq, idempotency_key, request, state, result, accepted_at FROM invocations
         WHERE component = ?1 AND name = ?2 AND seq BETWEEN ?3 AND ?4 ORDER BY seq",
        params![
            worker.component.as_bytes(),
            worker.name,
            crate::codec::int_saturating(first),
            crate::codec::int_saturating(last)
        ],
        invocation(worker),
    )
}

pub(crate) fn last_oplog_index(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
) -> Result<u64> {
    let last = query(
        conn,
        location,
        "SELECT max(idx) FROM oplog WHERE component = ?1 AND name = ?2",
        params![worker.component.as_bytes(), worker.name],
        |row, loc| match get::<Option<i64>>(row, 0, loc)? {
            None => Ok(0),
            Some(_) => unsigned(row, 0, loc),
        },
    )?;
    Ok(last.into_iter().next().unwrap_or(0))
}

pub(crate) fn last_invocation_seq(
    conn: &Connection,
    location: &str,
    worker: &WorkerKey,
) -> Result<u64> {
    let last = query(
        conn,
        location,
        "SELECT max(seq) FROM invocations WHERE component = ?1 AND name = ?2",
        params![worker.component.as_bytes(), worker.name],
        |row, loc| match get::<Option<i64>>(row, 0, loc)? {
            None => Ok(0),
            Some(_) => unsigned(row, 0, loc),
        },
    )?;
    Ok(last.into_iter().next().unwrap_or(0))
}
