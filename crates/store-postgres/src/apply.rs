//! One [`Write`] as SQL, inside the transaction and the batch's savepoint
//! the writer opened.

use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;
use vow_store::{
    Error, InvocationRecord, InvocationState, OplogRecord, Outcome, PromiseKey, Result, WorkerKey,
    WorkerRecord, WorkerState, Write,
};

use crate::error::runtime;

/// A u64 as PostgreSQL's bigint; Vow's values stay below 2^63.
pub(crate) fn int(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::Backend(format!("{what} {value} is too large")))
}

/// A worker's environment as a flat array of keys and values.
pub(crate) fn flat_env(env: &[(String, String)]) -> Vec<&str> {
    env.iter()
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .collect()
}

/// Applies the writes of one batch in order; stops at the first error.
pub(crate) async fn apply_batch(
    tx: &Transaction<'_>,
    location: &str,
    batch: &[Write],
) -> Result<Vec<Outcome>> {
    let apply = Apply { tx, location };
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        outcomes.push(apply.write(write).await?);
    }
    Ok(outcomes)
}

struct Apply<'a> {
    tx: &'a Transaction<'a>,
    location: &'a str,
}

impl Apply<'_> {
    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.tx
            .execute(sql, params)
            .await
            .map_err(|e| runtime(self.location, &e))
    }

    async fn write(&self, write: &Write) -> Result<Outcome> {
        match write {
            Write::PutComponent(c) => {
                let added = self
                    .exec(
                        "INSERT INTO components (id, name, sha256, bytes, created_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        &[
                            &c.id,
                            &c.name,
                            &c.sha256,
                            &&c.bytes[..],
                            &int("a creation time", c.created_at)?,
                        ],
                    )
                    .await?;
                if added == 0 {
                    return Err(Error::Conflict(format!(
                        "component {} already exists",
                        c.id
                    )));
                }
            }
            Write::CreateWorker(w) => self.create_worker(w).await?,
            Write::UpdateWorker { worker, state } => self.update_worker(worker, state).await?,
            Write::DeleteWorker(key) => {
                for table in ["workers", "oplog", "promises", "invocations", "snapshots"] {
                    self.exec(
                        &format!("DELETE FROM {table} WHERE component = $1 AND name = $2"),
                        &[&key.component, &key.name],
                    )
                    .await?;
                }
            }
            Write::AppendOplog { worker, records } => self.append(worker, records).await?,
            Write::TruncateOplog { worker, after } => {
                let after = i64::try_from(*after).unwrap_or(i64::MAX);
                for table in ["oplog", "snapshots"] {
                    self.exec(
                        &format!(
                            "DELETE FROM {table} WHERE component = $1 AND name = $2 AND idx > $3"
                        ),
                        &[&worker.component, &worker.name, &after],
                    )
                    .await?;
                }
            }
            Write::CreatePromise { key, at } => {
                self.exec(
                    "INSERT INTO promises (component, name, idx, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[
                        &key.worker.component,
                        &key.worker.name,
                        &int("a promise index", key.index)?,
                        &int("a creation time", *at)?,
                    ],
                )
                .await?;
            }
            Write::CompletePromise { key, data, at } => {
                return self.complete_promise(key, data, *at).await;
            }
            Write::DeletePromise(key) => {
                self.exec(
                    "DELETE FROM promises WHERE component = $1 AND name = $2 AND idx = $3",
                    &[
                        &key.worker.component,
                        &key.worker.name,
                        &i64::try_from(key.index).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
            }
            Write::Enqueue(inv) => self.enqueue(inv).await?,
            Write::SetInvocationState { worker, seq, state } => {
                let (state, result) = state_columns(state);
                self.exec(
                    "UPDATE invocations SET state = $4, result = $5
                     WHERE component = $1 AND name = $2 AND seq = $3",
                    &[
                        &worker.component,
                        &worker.name,
                        &i64::try_from(*seq).unwrap_or(i64::MAX),
                        &state,
                        &result,
                    ],
                )
                .await?;
            }
            Write::PutSnapshot(snapshot) => {
                self.exec(
                    "INSERT INTO snapshots (component, name, idx, at, data)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (component, name) DO UPDATE
                     SET idx = excluded.idx, at = excluded.at, data = excluded.data",
                    &[
                        &snapshot.worker.component,
                        &snapshot.worker.name,
                        &int("a snapshot index", snapshot.index)?,
                        &int("a snapshot time", snapshot.at)?,
                        &&snapshot.data[..],
                    ],
                )
                .await?;
            }
            // `Write` is non-exhaustive: a kind added to vow-store without
            // support here is refused instead of being dropped silently.
            other => {
                return Err(Error::Backend(format!(
                    "{}: this version of vow-store-postgres cannot apply {other:?}",
                    self.location
                )));
            }
        }
        Ok(Outcome::Done)
    }

    async fn create_worker(&self, w: &WorkerRecord) -> Result<()> {
        let (awaiting_component, awaiting_name, awaiting_index) = awaiting(&w.state)?;
        let added = self
            .exec(
                "INSERT INTO workers (component, name, args, env, created_at, status, last_error,
                    awaiting_component, awaiting_name, awaiting_index)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                &[
                    &w.key.component,
                    &w.key.name,
                    &w.args,
                    &flat_env(&w.env),
                    &int("a creation time", w.created_at)?,
                    &w.state.status,
                    &w.state.last_error,
                    &awaiting_component,
                    &awaiting_name,
                    &awaiting_index,
                ],
            )
            .await?;
        if added == 0 {
            return Err(Error::Conflict(format!("worker {} already exists", w.key)));
        }
        Ok(())
    }

    async fn update_worker(&self, worker: &WorkerKey, state: &WorkerState) -> Result<()> {
        let (awaiting_component, awaiting_name, awaiting_index) = awaiting(state)?;
        self.exec(
            "UPDATE workers SET status = $3, last_error = $4, awaiting_component = $5,
                awaiting_name = $6, awaiting_index = $7
             WHERE component = $1 AND name = $2",
            &[
                &worker.component,
                &worker.name,
                &state.status,
                &state.last_error,
                &awaiting_component,
                &awaiting_name,
                &awaiting_index,
            ],
        )
        .await?;
        Ok(())
    }

    /// Checks that the records continue the log, then inserts them.
    async fn append(&self, worker: &WorkerKey, records: &[OplogRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let last: Option<i64> = self
            .tx
            .query_one(
                "SELECT max(idx) FROM oplog WHERE component = $1 AND name = $2",
                &[&worker.component, &worker.name],
            )
            .await
            .map_err(|e| runtime(self.location, &e))?
            .get(0);
        let next = last.map_or(1, |l| l as u64 + 1);
        for (expected, record) in (next..).zip(records) {
            if record.index != expected {
                return Err(Error::Conflict(format!(
                    "oplog of worker {worker}: appending index {} where {expected} is next",
                    record.index
                )));
            }
        }
        for record in records {
            self.exec(
                "INSERT INTO oplog (component, name, idx, at, entry) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &worker.component,
                    &worker.name,
                    &int("an oplog index", record.index)?,
                    &int("a time", record.at)?,
                    &&record.entry[..],
                ],
            )
            .await?;
        }
        Ok(())
    }

    async fn complete_promise(&self, key: &PromiseKey, data: &[u8], at: u64) -> Result<Outcome> {
        let index = i64::try_from(key.index).unwrap_or(i64::MAX);
        let completed = self
            .exec(
                "UPDATE promises SET data = $4, completed_at = $5
                 WHERE component = $1 AND name = $2 AND idx = $3 AND completed_at IS NULL",
                &[
                    &key.worker.component,
                    &key.worker.name,
                    &index,
                    &data,
                    &int("a completion time", at)?,
                ],
            )
            .await?;
        if completed == 1 {
            return Ok(Outcome::Completed(true));
        }
        let exists = self
            .tx
            .query_opt(
                "SELECT 1 FROM promises WHERE component = $1 AND name = $2 AND idx = $3",
                &[&key.worker.component, &key.worker.name, &index],
            )
            .await
            .map_err(|e| runtime(self.location, &e))?
            .is_some();
        Ok(if exists {
            Outcome::Completed(false)
        } else {
            Outcome::NotFound
        })
    }

    async fn enqueue(&self, inv: &InvocationRecord) -> Result<()> {
        let (state, result) = state_columns(&inv.state);
        // Either unique constraint (the sequence number, or the idempotency
        // key) makes this a no-op, reported as a conflict.
        let added = self
            .exec(
                "INSERT INTO invocations (component, name, seq, idempotency_key, request, state,
                    result, accepted_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                &[
                    &inv.worker.component,
                    &inv.worker.name,
                    &int("a sequence number", inv.seq)?,
                    &inv.idempotency_key,
                    &&inv.request[..],
                    &state,
                    &result,
                    &int("an acceptance time", inv.accepted_at)?,
                ],
            )
            .await?;
        if added == 0 {
            return Err(Error::Conflict(format!(
                "worker {} already has invocation {} or its idempotency key",
                inv.worker, inv.seq
            )));
        }
        Ok(())
    }
}

/// The state and result columns of an invocation.
pub(crate) fn state_columns(state: &InvocationState) -> (&'static str, Option<&[u8]>) {
    match state {
        InvocationState::Queued => ("queued", None),
        InvocationState::Running => ("running", None),
        InvocationState::Finished(result) => ("finished", Some(&result[..])),
    }
}

type Awaiting<'a> = (Option<uuid::Uuid>, Option<&'a str>, Option<i64>);

/// The awaited-promise columns of a worker state.
fn awaiting(state: &WorkerState) -> Result<Awaiting<'_>> {
    Ok(match &state.awaiting {
        Some(p) => (
            Some(p.worker.component),
            Some(p.worker.name.as_str()),
            Some(int("a promise index", p.index)?),
        ),
        None => (None, None, None),
    })
}
