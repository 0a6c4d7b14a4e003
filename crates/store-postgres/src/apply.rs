//! Each [`Write`] as statements the writer can pipeline: every statement's
//! parameters are known before any of them runs, and every check a write
//! needs (the log continues, the promise exists) is done by the statement
//! itself, so a whole group of batches goes to the server at once.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::coalesce;
use vow_store::{
    Error, InvocationRecord, InvocationState, OplogRecord, Outcome, PromiseKey, Result, WorkerKey,
    WorkerRecord, WorkerState, Write,
};

/// A statement parameter, owned or borrowed from the batch.
pub(crate) type Param<'a> = Box<dyn ToSql + Send + Sync + 'a>;

/// The writer's statements, prepared once per connection.
pub(crate) struct Statements {
    pub(crate) begin: Statement,
    pub(crate) commit: Statement,
    pub(crate) rollback: Statement,
    pub(crate) savepoint: Statement,
    pub(crate) release: Statement,
    pub(crate) rollback_to: Statement,
    put_component: Statement,
    create_worker: Statement,
    update_worker: Statement,
    delete_worker: [Statement; 6],
    append: Statement,
    truncate: [Statement; 2],
    create_promise: Statement,
    complete_promise: Statement,
    delete_promise: [Statement; 2],
    put_reaction: Statement,
    delete_reaction: Statement,
    enqueue: Statement,
    set_invocation_state: Statement,
    put_snapshot: Statement,
    pub(crate) append_check: Statement,
    pub(crate) append_many: Statement,
    pub(crate) update_workers: Statement,
    pub(crate) set_invocation_states: Statement,
    pub(crate) complete_many: Statement,
}

const DELETE_WORKER: [&str; 6] = [
    "DELETE FROM workers WHERE component = $1 AND name = $2",
    "DELETE FROM oplog WHERE component = $1 AND name = $2",
    "DELETE FROM promises WHERE component = $1 AND name = $2",
    "DELETE FROM reactions WHERE component = $1 AND name = $2",
    "DELETE FROM invocations WHERE component = $1 AND name = $2",
    "DELETE FROM snapshots WHERE component = $1 AND name = $2",
];

const TRUNCATE: [&str; 2] = [
    "DELETE FROM oplog WHERE component = $1 AND name = $2 AND idx > $3",
    "DELETE FROM snapshots WHERE component = $1 AND name = $2 AND idx > $3",
];

/// Appends only when the log's last index is `$6`; answers that last index
/// and how many rows went in, in one round trip.
const APPEND: &str = "
WITH last AS (
    SELECT coalesce(max(idx), 0) AS idx FROM oplog WHERE component = $1 AND name = $2
), added AS (
    INSERT INTO oplog (component, name, idx, at, entry)
    SELECT $1, $2, r.idx, r.at, r.entry
    FROM unnest($3::bigint[], $4::bigint[], $5::bytea[]) AS r(idx, at, entry), last
    WHERE last.idx = $6
    RETURNING 1
)
SELECT (SELECT idx FROM last), (SELECT count(*) FROM added)";

const DELETE_PROMISE: [&str; 2] = [
    "DELETE FROM promises WHERE component = $1 AND name = $2 AND idx = $3",
    "DELETE FROM reactions WHERE component = $1 AND name = $2 AND idx = $3",
];

/// Settles a pending promise (`$6`: rejected, `$4` is then the error);
/// answers whether it did and whether the promise exists.
const COMPLETE_PROMISE: &str = "
WITH done AS (
    UPDATE promises SET data = $4, completed_at = $5, rejected = $6
    WHERE component = $1 AND name = $2 AND idx = $3 AND completed_at IS NULL
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM done),
       EXISTS (SELECT 1 FROM promises WHERE component = $1 AND name = $2 AND idx = $3)";

impl Statements {
    /// Prepares every statement on `client`, all requests pipelined.
    pub(crate) async fn prepare(
        client: &tokio_postgres::Client,
    ) -> std::result::Result<Self, tokio_postgres::Error> {
        let p = |sql: &'static str| client.prepare(sql);
        // `try_join!` polls in argument order, so the requests leave
        // together, in this order, and the answers come back in one trip.
        let (begin, commit, rollback, savepoint, release, rollback_to) = futures::try_join!(
            p("BEGIN"),
            p("COMMIT"),
            p("ROLLBACK"),
            p("SAVEPOINT batch"),
            p("RELEASE SAVEPOINT batch"),
            p("ROLLBACK TO SAVEPOINT batch"),
        )?;
        let (put_component, create_worker, update_worker, create_promise, complete_promise) = futures::try_join!(
            p(
                "INSERT INTO components (id, name, sha256, bytes, created_at)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
            ),
            p(
                "INSERT INTO workers (component, name, args, env, created_at, status,
                       last_error, awaiting_component, awaiting_name, awaiting_index)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
            ),
            p(
                "UPDATE workers SET status = $3, last_error = $4, awaiting_component = $5,
                       awaiting_name = $6, awaiting_index = $7
                   WHERE component = $1 AND name = $2"
            ),
            p(
                "INSERT INTO promises (component, name, idx, created_at, deadline, retention,
                       options)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
            ),
            p(COMPLETE_PROMISE),
        )?;
        let (put_reaction, delete_reaction, enqueue, set_invocation_state, put_snapshot, append) =
            futures::try_join!(
            p("INSERT INTO reactions (component, name, idx, sources, spec, created_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"),
            p("DELETE FROM reactions WHERE component = $1 AND name = $2 AND idx = $3"),
            // Either unique constraint (the sequence number, or the
            // idempotency key) makes this a no-op, reported as a conflict.
            p("INSERT INTO invocations (component, name, seq, idempotency_key, request, state,
                   result, accepted_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"),
            p("UPDATE invocations SET state = $4, result = $5
               WHERE component = $1 AND name = $2 AND seq = $3"),
            p("INSERT INTO snapshots (component, name, idx, at, data)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (component, name) DO UPDATE
               SET idx = excluded.idx, at = excluded.at, data = excluded.data"),
            p(APPEND),
        )?;
        let delete_worker = futures::try_join!(
            p(DELETE_WORKER[0]),
            p(DELETE_WORKER[1]),
            p(DELETE_WORKER[2]),
            p(DELETE_WORKER[3]),
            p(DELETE_WORKER[4]),
            p(DELETE_WORKER[5]),
        )?;
        let delete_promise = futures::try_join!(p(DELETE_PROMISE[0]), p(DELETE_PROMISE[1]))?;
        let truncate = futures::try_join!(p(TRUNCATE[0]), p(TRUNCATE[1]))?;
        let (append_check, append_many, update_workers, set_invocation_states, complete_many) = futures::try_join!(
            p(coalesce::APPEND_CHECK),
            p(coalesce::APPEND_MANY),
            p(coalesce::UPDATE_WORKERS),
            p(coalesce::SET_INVOCATION_STATES),
            p(coalesce::COMPLETE_MANY),
        )?;
        Ok(Self {
            begin,
            commit,
            rollback,
            savepoint,
            release,
            rollback_to,
            put_component,
            create_worker,
            update_worker,
            delete_worker: delete_worker.into(),
            append,
            truncate: truncate.into(),
            create_promise,
            complete_promise,
            delete_promise: delete_promise.into(),
            put_reaction,
            delete_reaction,
            enqueue,
            set_invocation_state,
            put_snapshot,
            append_check,
            append_many,
            update_workers,
            set_invocation_states,
            complete_many,
        })
    }
}

/// One statement of a planned write, with what its answer must show.
pub(crate) struct Op<'a> {
    pub(crate) statement: &'a Statement,
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) check: Check<'a>,
}

/// What a statement's answer must show for its batch to stand.
pub(crate) enum Check<'a> {
    /// Nothing: any answer is fine.
    None,
    /// A row went in; otherwise the batch conflicts with this record.
    Added(Exists<'a>),
    /// The log's last index was the one before `first`.
    Appended { worker: &'a WorkerKey, first: u64 },
    /// The write's outcome: completed, already completed, or no promise.
    Completion,
    /// Rows that the caller reads.
    Rows,
    /// No row: any row answered fails the group.
    NoRows,
}

/// What already existed when an insert changed nothing.
pub(crate) enum Exists<'a> {
    Component(uuid::Uuid),
    Worker(&'a WorkerKey),
    Invocation(&'a WorkerKey, u64),
}

impl Check<'_> {
    /// Whether the statement answers rows (else a count of changed rows).
    pub(crate) fn wants_rows(&self) -> bool {
        matches!(
            self,
            Self::Appended { .. } | Self::Completion | Self::Rows | Self::NoRows
        )
    }
}

/// A statement's answer.
pub(crate) enum Answer {
    Count(u64),
    Rows(Vec<Row>),
}

impl Op<'_> {
    /// Judges the answer: `Ok(Some(outcome))` for the op that decides its
    /// write's outcome, `Ok(None)` for the others, or the batch's error.
    pub(crate) fn judge(&self, answer: &Answer, location: &str) -> Result<Option<Outcome>> {
        let corrupt = || Error::Corrupt {
            location: location.to_owned(),
            reason: "unexpected answer to a write".to_owned(),
        };
        match (&self.check, answer) {
            (Check::None | Check::Rows, _) => Ok(None),
            (Check::NoRows, Answer::Rows(rows)) if rows.is_empty() => Ok(None),
            (Check::NoRows, Answer::Rows(_)) => Err(Error::Conflict(
                "an append does not follow its stored log".to_owned(),
            )),
            (Check::Added(_), Answer::Count(n)) if *n > 0 => Ok(None),
            (Check::Added(exists), Answer::Count(_)) => Err(Error::Conflict(match exists {
                Exists::Component(id) => format!("component {id} already exists"),
                Exists::Worker(key) => format!("worker {key} already exists"),
                Exists::Invocation(key, seq) => {
                    format!("worker {key} already has invocation {seq} or its idempotency key")
                }
            })),
            (Check::Appended { worker, first }, Answer::Rows(rows)) => {
                let row = rows.first().ok_or_else(corrupt)?;
                let last: i64 = row.try_get(0).map_err(|_| corrupt())?;
                let added: i64 = row.try_get(1).map_err(|_| corrupt())?;
                if added > 0 {
                    Ok(None)
                } else {
                    Err(Error::Conflict(format!(
                        "oplog of worker {worker}: appending index {first} where {} is next",
                        last.saturating_add(1)
                    )))
                }
            }
            (Check::Completion, Answer::Rows(rows)) => {
                let row = rows.first().ok_or_else(corrupt)?;
                let completed: bool = row.try_get(0).map_err(|_| corrupt())?;
                let exists: bool = row.try_get(1).map_err(|_| corrupt())?;
                Ok(Some(match (completed, exists) {
                    (true, _) => Outcome::Completed(true),
                    (false, true) => Outcome::Completed(false),
                    (false, false) => Outcome::NotFound,
                }))
            }
            _ => Err(corrupt()),
        }
    }
}

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

/// The statements of one batch, in order, and for each write the number of
/// statements it took.
pub(crate) struct Plan<'a> {
    pub(crate) ops: Vec<Op<'a>>,
    pub(crate) per_write: Vec<usize>,
}

/// Plans `batch`; fails (before anything is sent) on a value the schema
/// cannot hold or a kind of write this crate does not know.
pub(crate) fn plan<'a>(
    statements: &'a Statements,
    location: &str,
    batch: &'a [Write],
) -> Result<Plan<'a>> {
    let mut plan = Plan {
        ops: Vec::with_capacity(batch.len()),
        per_write: Vec::with_capacity(batch.len()),
    };
    for write in batch {
        let before = plan.ops.len();
        plan_write(statements, location, write, &mut plan.ops)?;
        plan.per_write.push(plan.ops.len() - before);
    }
    Ok(plan)
}

fn op<'a>(statement: &'a Statement, params: Vec<Param<'a>>) -> Op<'a> {
    Op {
        statement,
        params,
        check: Check::None,
    }
}

fn plan_write<'a>(
    s: &'a Statements,
    location: &str,
    write: &'a Write,
    ops: &mut Vec<Op<'a>>,
) -> Result<()> {
    match write {
        Write::PutComponent(c) => ops.push(Op {
            statement: &s.put_component,
            params: vec![
                Box::new(c.id),
                Box::new(c.name.as_str()),
                Box::new(c.sha256.as_str()),
                Box::new(&c.bytes[..]),
                Box::new(int("a creation time", c.created_at)?),
            ],
            check: Check::Added(Exists::Component(c.id)),
        }),
        Write::CreateWorker(w) => ops.push(create_worker(s, w)?),
        Write::UpdateWorker { worker, state } => ops.push(update_worker(s, worker, state)?),
        Write::DeleteWorker(key) => {
            for statement in &s.delete_worker {
                ops.push(op(
                    statement,
                    vec![Box::new(key.component), Box::new(key.name.as_str())],
                ));
            }
        }
        Write::AppendOplog { worker, records } => {
            if let Some(append) = append(s, worker, records)? {
                ops.push(append);
            }
        }
        Write::TruncateOplog { worker, after } => {
            let after = i64::try_from(*after).unwrap_or(i64::MAX);
            for statement in &s.truncate {
                ops.push(op(
                    statement,
                    vec![
                        Box::new(worker.component),
                        Box::new(worker.name.as_str()),
                        Box::new(after),
                    ],
                ));
            }
        }
        Write::CreatePromise { key, at, spec } => {
            let optional = |what: &str, v: Option<u64>| v.map(|v| int(what, v)).transpose();
            ops.push(op(
                &s.create_promise,
                vec![
                    Box::new(key.worker.component),
                    Box::new(key.worker.name.as_str()),
                    Box::new(int("a promise index", key.index)?),
                    Box::new(int("a creation time", *at)?),
                    Box::new(optional("a deadline", spec.deadline)?),
                    Box::new(optional("a retention", spec.retention)?),
                    Box::new((!spec.options.is_empty()).then_some(&spec.options[..])),
                ],
            ));
        }
        Write::CompletePromise { key, data, at } => {
            ops.push(settle_promise(s, key, data, false, *at)?);
        }
        Write::RejectPromise { key, error, at } => {
            ops.push(settle_promise(s, key, error, true, *at)?);
        }
        Write::DeletePromise(key) => {
            for statement in &s.delete_promise {
                ops.push(op(
                    statement,
                    vec![
                        Box::new(key.worker.component),
                        Box::new(key.worker.name.as_str()),
                        Box::new(i64::try_from(key.index).unwrap_or(i64::MAX)),
                    ],
                ));
            }
        }
        Write::PutReaction(reaction) => ops.push(op(
            &s.put_reaction,
            vec![
                Box::new(reaction.target.worker.component),
                Box::new(reaction.target.worker.name.as_str()),
                Box::new(int("a promise index", reaction.target.index)?),
                Box::new(vow_store::encode_promise_keys(&reaction.sources)),
                Box::new(&reaction.spec[..]),
                Box::new(int("a creation time", reaction.created_at)?),
            ],
        )),
        Write::DeleteReaction(key) => ops.push(op(
            &s.delete_reaction,
            vec![
                Box::new(key.worker.component),
                Box::new(key.worker.name.as_str()),
                Box::new(i64::try_from(key.index).unwrap_or(i64::MAX)),
            ],
        )),
        Write::Enqueue(inv) => ops.push(enqueue(s, inv)?),
        Write::SetInvocationState { worker, seq, state } => {
            let (state, result) = state_columns(state);
            ops.push(op(
                &s.set_invocation_state,
                vec![
                    Box::new(worker.component),
                    Box::new(worker.name.as_str()),
                    Box::new(i64::try_from(*seq).unwrap_or(i64::MAX)),
                    Box::new(state),
                    Box::new(result),
                ],
            ));
        }
        Write::PutSnapshot(snapshot) => ops.push(op(
            &s.put_snapshot,
            vec![
                Box::new(snapshot.worker.component),
                Box::new(snapshot.worker.name.as_str()),
                Box::new(int("a snapshot index", snapshot.index)?),
                Box::new(int("a snapshot time", snapshot.at)?),
                Box::new(&snapshot.data[..]),
            ],
        )),
        // `Write` is non-exhaustive: a kind added to vow-store without
        // support here is refused instead of being dropped silently.
        other => {
            return Err(Error::Backend(format!(
                "{location}: this version of vow-store-postgres cannot apply {other:?}"
            )));
        }
    }
    Ok(())
}

fn create_worker<'a>(s: &'a Statements, w: &'a WorkerRecord) -> Result<Op<'a>> {
    let (awaiting_component, awaiting_name, awaiting_index) = awaiting(&w.state)?;
    Ok(Op {
        statement: &s.create_worker,
        params: vec![
            Box::new(w.key.component),
            Box::new(w.key.name.as_str()),
            Box::new(&w.args[..]),
            Box::new(flat_env(&w.env)),
            Box::new(int("a creation time", w.created_at)?),
            Box::new(w.state.status.as_str()),
            Box::new(w.state.last_error.as_deref()),
            Box::new(awaiting_component),
            Box::new(awaiting_name),
            Box::new(awaiting_index),
        ],
        check: Check::Added(Exists::Worker(&w.key)),
    })
}

fn update_worker<'a>(
    s: &'a Statements,
    worker: &'a WorkerKey,
    state: &'a WorkerState,
) -> Result<Op<'a>> {
    let (awaiting_component, awaiting_name, awaiting_index) = awaiting(state)?;
    Ok(op(
        &s.update_worker,
        vec![
            Box::new(worker.component),
            Box::new(worker.name.as_str()),
            Box::new(state.status.as_str()),
            Box::new(state.last_error.as_deref()),
            Box::new(awaiting_component),
            Box::new(awaiting_name),
            Box::new(awaiting_index),
        ],
    ))
}

/// Checks that the records follow one another; the statement checks that
/// the first follows the stored log.
fn append<'a>(
    s: &'a Statements,
    worker: &'a WorkerKey,
    records: &'a [OplogRecord],
) -> Result<Option<Op<'a>>> {
    let Some(first) = records.first() else {
        return Ok(None);
    };
    for (expected, record) in (first.index..).zip(records) {
        if record.index != expected {
            return Err(Error::Conflict(format!(
                "oplog of worker {worker}: appending index {} where {expected} is next",
                record.index
            )));
        }
    }
    let indices = records
        .iter()
        .map(|r| int("an oplog index", r.index))
        .collect::<Result<Vec<_>>>()?;
    let times = records
        .iter()
        .map(|r| int("a time", r.at))
        .collect::<Result<Vec<_>>>()?;
    let entries: Vec<&[u8]> = records.iter().map(|r| &r.entry[..]).collect();
    let previous = int("an oplog index", first.index)? - 1;
    Ok(Some(Op {
        statement: &s.append,
        params: vec![
            Box::new(worker.component),
            Box::new(worker.name.as_str()),
            Box::new(indices),
            Box::new(times),
            Box::new(entries),
            Box::new(previous),
        ],
        check: Check::Appended {
            worker,
            first: first.index,
        },
    }))
}

fn settle_promise<'a>(
    s: &'a Statements,
    key: &'a PromiseKey,
    data: &'a [u8],
    rejected: bool,
    at: u64,
) -> Result<Op<'a>> {
    Ok(Op {
        statement: &s.complete_promise,
        params: vec![
            Box::new(key.worker.component),
            Box::new(key.worker.name.as_str()),
            Box::new(i64::try_from(key.index).unwrap_or(i64::MAX)),
            Box::new(data),
            Box::new(int("a completion time", at)?),
            Box::new(rejected),
        ],
        check: Check::Completion,
    })
}

fn enqueue<'a>(s: &'a Statements, inv: &'a InvocationRecord) -> Result<Op<'a>> {
    let (state, result) = state_columns(&inv.state);
    Ok(Op {
        statement: &s.enqueue,
        params: vec![
            Box::new(inv.worker.component),
            Box::new(inv.worker.name.as_str()),
            Box::new(int("a sequence number", inv.seq)?),
            Box::new(inv.idempotency_key.as_deref()),
            Box::new(&inv.request[..]),
            Box::new(state),
            Box::new(result),
            Box::new(int("an acceptance time", inv.accepted_at)?),
        ],
        check: Check::Added(Exists::Invocation(&inv.worker, inv.seq)),
    })
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
