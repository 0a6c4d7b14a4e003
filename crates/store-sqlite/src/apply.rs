//! One [`Write`] as SQL, on the writer's connection, inside the transaction
//! (and the batch's savepoint) the writer opened. Statements are prepared
//! once and cached on the connection.

use rusqlite::{Connection, OptionalExtension as _, params};
use vow_store::{
    Error, InvocationRecord, InvocationState, OplogRecord, Outcome, PromiseKey, Result, WorkerKey,
    WorkerRecord, WorkerState, Write,
};

use crate::codec::{encode_env, encode_strings, int};
use crate::error::runtime;

/// Applies the writes of one batch in order; stops at the first error.
pub(crate) fn apply_batch(
    conn: &Connection,
    location: &str,
    batch: &[Write],
) -> Result<Vec<Outcome>> {
    let apply = Apply { conn, location };
    batch.iter().map(|write| apply.write(write)).collect()
}

struct Apply<'a> {
    conn: &'a Connection,
    location: &'a str,
}

impl Apply<'_> {
    fn sql(&self, e: rusqlite::Error) -> Error {
        runtime(self.location, &e)
    }

    /// Runs a cached statement; the number of rows it changed.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(|e| self.sql(e))
    }

    fn write(&self, write: &Write) -> Result<Outcome> {
        match write {
            Write::PutComponent(c) => {
                let added = self.exec(
                    "INSERT INTO components (id, name, sha256, bytes, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![
                        c.id.as_bytes(),
                        c.name,
                        c.sha256,
                        &c.bytes[..],
                        int("a creation time", c.created_at)?
                    ],
                )?;
                if added == 0 {
                    return Err(Error::Conflict(format!(
                        "component {} already exists",
                        c.id
                    )));
                }
            }
            Write::CreateWorker(w) => self.create_worker(w)?,
            Write::UpdateWorker { worker, state } => self.update_worker(worker, state)?,
            Write::DeleteWorker(key) => {
                for sql in [
                    "DELETE FROM workers WHERE component = ?1 AND name = ?2",
                    "DELETE FROM oplog WHERE component = ?1 AND name = ?2",
                    "DELETE FROM promises WHERE component = ?1 AND name = ?2",
                    "DELETE FROM reactions WHERE component = ?1 AND name = ?2",
                    "DELETE FROM invocations WHERE component = ?1 AND name = ?2",
                    "DELETE FROM snapshots WHERE component = ?1 AND name = ?2",
                ] {
                    self.exec(sql, params![key.component.as_bytes(), key.name])?;
                }
            }
            Write::AppendOplog { worker, records } => self.append(worker, records)?,
            Write::TruncateOplog { worker, after } => {
                for sql in [
                    "DELETE FROM oplog WHERE component = ?1 AND name = ?2 AND idx > ?3",
                    "DELETE FROM snapshots WHERE component = ?1 AND name = ?2 AND idx > ?3",
                ] {
                    self.exec(
                        sql,
                        params![
                            worker.component.as_bytes(),
                            worker.name,
                            crate::codec::int_saturating(*after)
                        ],
                    )?;
                }
            }
            Write::PutSnapshot(snapshot) => {
                self.exec(
                    "INSERT INTO snapshots (component, name, idx, at, data)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (component, name) DO UPDATE
                     SET idx = excluded.idx, at = excluded.at, data = excluded.data",
                    params![
                        snapshot.worker.component.as_bytes(),
                        snapshot.worker.name,
                        int("a snapshot index", snapshot.index)?,
                        int("a snapshot time", snapshot.at)?,
                        &snapshot.data[..]
                    ],
                )?;
            }
            Write::CreatePromise { key, at, spec } => {
                let optional = |what: &str, v: Option<u64>| v.map(|v| int(what, v)).transpose();
                self.exec(
                    "INSERT INTO promises
                         (component, name, idx, created_at, deadline, retention, options)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    params![
                        key.worker.component.as_bytes(),
                        key.worker.name,
                        int("a promise index", key.index)?,
                        int("a creation time", *at)?,
                        optional("a deadline", spec.deadline)?,
                        optional("a retention", spec.retention)?,
                        (!spec.options.is_empty()).then_some(&spec.options[..])
                    ],
                )?;
            }
            Write::CompletePromise { key, data, at } => {
                return self.settle_promise(key, data, false, *at);
            }
            Write::RejectPromise { key, error, at } => {
                return self.settle_promise(key, error, true, *at);
            }
            Write::DeletePromise(key) => {
                for sql in [
                    "DELETE FROM promises WHERE component = ?1 AND name = ?2 AND idx = ?3",
                    "DELETE FROM reactions WHERE component = ?1 AND name = ?2 AND idx = ?3",
                ] {
                    self.exec(
                        sql,
                        params![
                            key.worker.component.as_bytes(),
                            key.worker.name,
                            crate::codec::int_saturating(key.index)
                        ],
                    )?;
                }
            }
            Write::PutReaction(reaction) => {
                let target = &reaction.target;
                self.exec(
                    "INSERT INTO reactions (component, name, idx, sources, spec, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    params![
                        target.worker.component.as_bytes(),
                        target.worker.name,
                        int("a promise index", target.index)?,
                        vow_store::encode_promise_keys(&reaction.sources),
                        &reaction.spec[..],
                        int("a creation time", reaction.created_at)?
                    ],
                )?;
            }
            Write::DeleteReaction(key) => {
                self.exec(
                    "DELETE FROM reactions WHERE component = ?1 AND name = ?2 AND idx = ?3",
                    params![
                        key.worker.component.as_bytes(),
                        key.worker.name,
                        crate::codec::int_saturating(key.index)
                    ],
                )?;
            }
            Write::Enqueue(inv) => self.enqueue(inv)?,
            Write::SetInvocationState { worker, seq, state } => {
                let (state, result) = state_columns(state);
                self.exec(
                    "UPDATE invocations SET state = ?4, result = ?5
                     WHERE component = ?1 AND name = ?2 AND seq = ?3",
                    params![
                        worker.component.as_bytes(),
                        worker.name,
                        crate::codec::int_saturating(*seq),
                        state,
                        result
                    ],
                )?;
            }
            // `Write` is non-exhaustive: a kind added to vow-store without
            // support here is refused instead of being dropped silently.
            other => {
                return Err(Error::Backend(format!(
                    "{}: this version of vow-store-sqlite cannot apply {other:?}",
                    self.location
                )));
            }
        }
        Ok(Outcome::Done)
    }

    fn create_worker(&self, w: &WorkerRecord) -> Result<()> {
        let added = self.exec(
            "INSERT INTO workers (component, name, args, env, created_at, status, last_error,
                                  awaiting_component, awaiting_name, awaiting_index)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
            params![
                w.key.component.as_bytes(),
                w.key.name,
                encode_strings(w.args.iter().map(String::as_str))?,
                encode_env(&w.env)?,
                int("a creation time", w.created_at)?,
                w.state.status,
                w.state.last_error,
                w.state
                    .awaiting
                    .as_ref()
                    .map(|p| p.worker.component.as_bytes()),
                w.state.awaiting.as_ref().map(|p| &p.worker.name),
                awaiting_index(&w.state)?,
            ],
        )?;
        if added == 0 {
            return Err(Error::Conflict(format!("worker {} already exists", w.key)));
        }
        Ok(())
    }

    fn update_worker(&self, worker: &WorkerKey, state: &WorkerState) -> Result<()> {
        self.exec(
            "UPDATE workers SET status = ?3, last_error = ?4, awaiting_component = ?5,
                                awaiting_name = ?6, awaiting_index = ?7
             WHERE component = ?1 AND name = ?2",
            params![
                worker.component.as_bytes(),
                worker.name,
                state.status,
                state.last_error,
                state
                    .awaiting
                    .as_ref()
                    .map(|p| p.worker.component.as_bytes()),
                state.awaiting.as_ref().map(|p| &p.worker.name),
                awaiting_index(state)?,
            ],
        )?;
        Ok(())
    }

    /// Appends entries after checking that their indices continue the log.
    fn append(&self, worker: &WorkerKey, records: &[OplogRecord]) -> Result<()> {
        let last: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT idx FROM oplog WHERE component = ?1 AND name = ?2
                 ORDER BY idx DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![worker.component.as_bytes(), worker.name], |row| {
                    row.get(0)
                })
                .optional()
            })
            .map_err(|e| self.sql(e))?;
        let next = last.map_or(1, |last| last.saturating_add(1));
        for (expected, record) in (next..).zip(records) {
            if int("an oplog index", record.index)? != expected {
                return Err(Error::Conflict(format!(
                    "oplog of worker {worker}: appending index {} where {expected} is next",
                    record.index
                )));
            }
            self.exec(
                "INSERT INTO oplog (component, name, idx, at, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    worker.component.as_bytes(),
                    worker.name,
                    expected,
                    int("a time", record.at)?,
                    &record.entry[..]
                ],
            )?;
        }
        Ok(())
    }

    /// First writer wins: only a pending promise settles. `data` is the
    /// payload, or the error when `rejected`.
    fn settle_promise(
        &self,
        key: &PromiseKey,
        data: &[u8],
        rejected: bool,
        at: u64,
    ) -> Result<Outcome> {
        let index = crate::codec::int_saturating(key.index);
        let completed = self.exec(
            "UPDATE promises SET data = ?4, completed_at = ?5, rejected = ?6
             WHERE component = ?1 AND name = ?2 AND idx = ?3 AND completed_at IS NULL",
            params![
                key.worker.component.as_bytes(),
                key.worker.name,
                index,
                data,
                int("a completion time", at)?,
                rejected
            ],
        )?;
        if completed > 0 {
            return Ok(Outcome::Completed(true));
        }
        let exists = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM promises WHERE component = ?1 AND name = ?2 AND idx = ?3",
            )
            .and_then(|mut stmt| {
                stmt.exists(params![
                    key.worker.component.as_bytes(),
                    key.worker.name,
                    index
                ])
            })
            .map_err(|e| self.sql(e))?;
        Ok(if exists {
            Outcome::Completed(false)
        } else {
            Outcome::NotFound
        })
    }

    fn enqueue(&self, inv: &InvocationRecord) -> Result<()> {
        let (state, result) = state_columns(&inv.state);
        let worker = &inv.worker;
        let added = self.exec(
            "INSERT INTO invocations (component, name, seq, idempotency_key, request, state,
                                      result, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            params![
                worker.component.as_bytes(),
                worker.name,
                int("an invocation sequence number", inv.seq)?,
                inv.idempotency_key,
                &inv.request[..],
                state,
                result,
                int("an acceptance time", inv.accepted_at)?
            ],
        )?;
        if added > 0 {
            return Ok(());
        }
        let seq_taken = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM invocations WHERE component = ?1 AND name = ?2 AND seq = ?3",
            )
            .and_then(|mut stmt| {
                stmt.exists(params![
                    worker.component.as_bytes(),
                    worker.name,
                    crate::codec::int_saturating(inv.seq)
                ])
            })
            .map_err(|e| self.sql(e))?;
        Err(Error::Conflict(match (&inv.idempotency_key, seq_taken) {
            (Some(key), false) => {
                format!("worker {worker} already has an invocation with idempotency key {key:?}")
            }
            _ => format!("worker {worker} already has invocation {}", inv.seq),
        }))
    }
}

/// The `state` and `result` columns of an invocation state.
fn state_columns(state: &InvocationState) -> (&'static str, Option<&[u8]>) {
    match state {
        InvocationState::Queued => ("queued", None),
        InvocationState::Running => ("running", None),
        InvocationState::Finished(result) => ("finished", Some(&result[..])),
    }
}

fn awaiting_index(state: &WorkerState) -> Result<Option<i64>> {
    state
        .awaiting
        .as_ref()
        .map(|p| int("a promise index", p.index))
        .transpose()
}
