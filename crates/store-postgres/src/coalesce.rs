//! A group of batches as few statements as possible.
//!
//! Each statement costs the server a fixed amount of work (a bind, an
//! execution, an answer) on top of its rows, and the writer's connection is
//! served by one server process: with one statement per write, that
//! process, not the disk, bounds how many completions a second go through.
//! So the writes that make up the busy paths (log appends, worker states,
//! invocation states, completions) are gathered across the whole group into
//! one multi-row statement per kind, with `unnest` over arrays.
//!
//! Gathering reorders writes, which is only allowed where the result is the
//! same as applying them one after another:
//! - the four kinds touch different tables and check nothing of each other,
//!   so they commute;
//! - within a kind: the last state written for a worker (or an invocation)
//!   is the one that stays; appends to one log are joined in order (each must
//!   follow the one before); of several completions of one promise the first
//!   decides, and the others answer as they would have after it;
//! - any other write is sent as it is, in its place, after the gathered
//!   writes before it were flushed: nothing moves across it.
//!
//! This is only the way for a group in which every batch succeeds; when one
//! fails, the writer rolls the group back and applies it batch by batch.

use std::collections::HashMap;

use tokio_postgres::Statement;
use vow_store::{OplogRecord, Outcome, Result, Write};

use crate::apply::{Answer, Check, Op, Param, Plan, Statements, int, state_columns};

/// Checks the first index of each gathered append against the stored log:
/// answers the positions (1-based) that do not follow.
pub(crate) const APPEND_CHECK: &str = "
SELECT f.i FROM unnest($1::uuid[], $2::text[], $3::bigint[]) WITH ORDINALITY
    AS f(component, name, previous, i)
WHERE (SELECT coalesce(max(o.idx), 0) FROM oplog o
       WHERE o.component = f.component AND o.name = f.name) <> f.previous";

pub(crate) const APPEND_MANY: &str = "
INSERT INTO oplog (component, name, idx, at, entry)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])";

pub(crate) const UPDATE_WORKERS: &str = "
UPDATE workers w SET status = u.status, last_error = u.last_error,
    awaiting_component = u.awaiting_component, awaiting_name = u.awaiting_name,
    awaiting_index = u.awaiting_index
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::bigint[])
    AS u(component, name, status, last_error, awaiting_component, awaiting_name, awaiting_index)
WHERE w.component = u.component AND w.name = u.name";

pub(crate) const SET_INVOCATION_STATES: &str = "
UPDATE invocations i SET state = u.state, result = u.result
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::bytea[])
    AS u(component, name, seq, state, result)
WHERE i.component = u.component AND i.name = u.name AND i.seq = u.seq";

/// Completes every listed promise that is pending; answers, per position
/// (1-based), whether it completed it and whether the promise exists.
pub(crate) const COMPLETE_MANY: &str = "
WITH u AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bytea[], $5::bigint[])
        WITH ORDINALITY AS u(component, name, idx, data, at, i)
), done AS (
    UPDATE promises p SET data = u.data, completed_at = u.at FROM u
    WHERE p.component = u.component AND p.name = u.name AND p.idx = u.idx
      AND p.completed_at IS NULL
    RETURNING u.i
)
SELECT u.i, d.i IS NOT NULL, p.idx IS NOT NULL
FROM u
LEFT JOIN done d ON d.i = u.i
LEFT JOIN promises p ON p.component = u.component AND p.name = u.name AND p.idx = u.idx";

/// Where a write's outcome goes: (job, write within the job's batch).
type Slot = (usize, usize);

/// One statement of a gathered group, and how to read its answer.
pub(crate) struct GroupOp<'a> {
    pub(crate) op: Op<'a>,
    pub(crate) read: Read,
}

/// How a gathered statement's answer maps to outcomes.
pub(crate) enum Read {
    /// A write sent as it is: its decisive answer goes to this slot.
    Single(Slot),
    /// Gathered writes with no answer of their own (or a check that fails
    /// the group when it answers any row).
    Nothing,
    /// Gathered completions: row `i` (1-based) answers `slots[i - 1]`, and
    /// `repeats[i - 1]` are later completions of the same promise.
    Completions {
        slots: Vec<Slot>,
        repeats: Vec<Vec<Slot>>,
    },
}

/// The writes of one kind gathered so far.
#[derive(Default)]
struct Pending<'a> {
    /// Per log, in order of first append: its records and the index the
    /// first of them must follow.
    appends: Vec<(&'a vow_store::WorkerKey, u64, Vec<&'a OplogRecord>)>,
    append_at: HashMap<&'a vow_store::WorkerKey, usize>,
    /// Worker states, last one wins.
    states: Vec<(&'a vow_store::WorkerKey, &'a vow_store::WorkerState)>,
    state_at: HashMap<&'a vow_store::WorkerKey, usize>,
    /// Invocation states, last one wins.
    invocations: Vec<(
        &'a vow_store::WorkerKey,
        u64,
        &'a vow_store::InvocationState,
    )>,
    invocation_at: HashMap<(&'a vow_store::WorkerKey, u64), usize>,
    /// Completions: the first of each promise, and the later ones.
    completions: Vec<(&'a vow_store::PromiseKey, &'a [u8], u64, Slot)>,
    repeats: Vec<Vec<Slot>>,
    completion_at: HashMap<&'a vow_store::PromiseKey, usize>,
    /// Per kind (appends, worker states, invocation states, completions):
    /// how many writes were gathered, and the first one's own statement,
    /// sent instead of the multi-row one when it is alone.
    lone: [Lone<'a>; 4],
}

/// The writes of one kind gathered so far, and the first one as planned.
#[derive(Default)]
struct Lone<'a> {
    writes: usize,
    first: Option<(Op<'a>, Slot)>,
}

impl<'a> Lone<'a> {
    fn add(&mut self, planned: Vec<Op<'a>>, slot: Slot) {
        self.writes += 1;
        if self.first.is_none() {
            self.first = planned.into_iter().next().map(|op| (op, slot));
        }
    }

    /// The first write's own statement, when it is the only one.
    fn alone(&mut self) -> Option<GroupOp<'a>> {
        if self.writes != 1 {
            return None;
        }
        self.first.take().map(|(op, slot)| GroupOp {
            op,
            read: Read::Single(slot),
        })
    }
}

const APPENDS: usize = 0;
const STATES: usize = 1;
const INVOCATIONS: usize = 2;
const COMPLETIONS: usize = 3;

/// Why a group cannot be gathered: it is applied statement by statement.
pub(crate) struct NotGathered;

/// Gathers the writes of `jobs` (whose plans all succeeded) into statements.
pub(crate) fn gather<'a>(
    s: &'a Statements,
    batches: &[&'a [Write]],
    plans: Vec<Plan<'a>>,
) -> std::result::Result<Vec<GroupOp<'a>>, NotGathered> {
    let mut out = Vec::new();
    let mut pending = Pending::default();
    for (job, (batch, plan)) in batches.iter().zip(plans).enumerate() {
        let mut ops = plan.ops.into_iter();
        for (index, (write, &count)) in batch.iter().zip(&plan.per_write).enumerate() {
            let slot = (job, index);
            let planned: Vec<Op<'a>> = ops.by_ref().take(count).collect();
            match write {
                Write::AppendOplog { worker, records } => {
                    let Some(first) = records.first() else {
                        continue;
                    };
                    pending.lone[APPENDS].add(planned, slot);
                    match pending.append_at.get(worker) {
                        Some(&at) => {
                            let (_, _, joined) = &mut pending.appends[at];
                            let follows = joined
                                .last()
                                .is_some_and(|last| last.index + 1 == first.index);
                            if !follows {
                                return Err(NotGathered);
                            }
                            joined.extend(records.iter());
                        }
                        None => {
                            pending.append_at.insert(worker, pending.appends.len());
                            pending.appends.push((
                                worker,
                                first.index.saturating_sub(1),
                                records.iter().collect(),
                            ));
                        }
                    }
                }
                Write::UpdateWorker { worker, state } => {
                    pending.lone[STATES].add(planned, slot);
                    match pending.state_at.get(worker) {
                        Some(&at) => pending.states[at].1 = state,
                        None => {
                            pending.state_at.insert(worker, pending.states.len());
                            pending.states.push((worker, state));
                        }
                    }
                }
                Write::SetInvocationState { worker, seq, state } => {
                    pending.lone[INVOCATIONS].add(planned, slot);
                    match pending.invocation_at.get(&(worker, *seq)) {
                        Some(&at) => pending.invocations[at].2 = state,
                        None => {
                            pending
                                .invocation_at
                                .insert((worker, *seq), pending.invocations.len());
                            pending.invocations.push((worker, *seq, state));
                        }
                    }
                }
                Write::CompletePromise { key, data, at } => match pending.completion_at.get(key) {
                    Some(&first) => pending.repeats[first].push(slot),
                    None => {
                        pending.completion_at.insert(key, pending.completions.len());
                        pending.completions.push((key, &data[..], *at, slot));
                        pending.repeats.push(Vec::new());
                    }
                },
                _ => {
                    flush(s, &mut pending, &mut out).map_err(|_| NotGathered)?;
                    for op in planned {
                        out.push(GroupOp {
                            op,
                            read: Read::Single(slot),
                        });
                    }
                }
            }
        }
    }
    flush(s, &mut pending, &mut out).map_err(|_| NotGathered)?;
    Ok(out)
}

/// Emits the statements for what was gathered, and starts over.
fn flush<'a>(
    s: &'a Statements,
    pending: &mut Pending<'a>,
    out: &mut Vec<GroupOp<'a>>,
) -> Result<()> {
    let mut p = std::mem::take(pending);
    if let Some(alone) = p.lone[APPENDS].alone() {
        out.push(alone);
    } else if !p.appends.is_empty() {
        let (mut components, mut names, mut previous) = (Vec::new(), Vec::new(), Vec::new());
        let (mut rc, mut rn, mut ri, mut ra, mut re) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (worker, before, records) in &p.appends {
            components.push(worker.component);
            names.push(worker.name.as_str());
            previous.push(int("an oplog index", *before)?);
            for record in records {
                rc.push(worker.component);
                rn.push(worker.name.as_str());
                ri.push(int("an oplog index", record.index)?);
                ra.push(int("a time", record.at)?);
                re.push(&record.entry[..]);
            }
        }
        out.push(gathered(
            &s.append_check,
            vec![Box::new(components), Box::new(names), Box::new(previous)],
            Check::NoRows,
        ));
        out.push(gathered(
            &s.append_many,
            vec![
                Box::new(rc),
                Box::new(rn),
                Box::new(ri),
                Box::new(ra),
                Box::new(re),
            ],
            Check::None,
        ));
    }
    if let Some(alone) = p.lone[STATES].alone() {
        out.push(alone);
    } else if !p.states.is_empty() {
        let mut columns: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) =
            Default::default();
        for (worker, state) in &p.states {
            let awaiting = state.awaiting.as_ref();
            columns.0.push(worker.component);
            columns.1.push(worker.name.as_str());
            columns.2.push(state.status.as_str());
            columns.3.push(state.last_error.as_deref());
            columns.4.push(awaiting.map(|a| a.worker.component));
            columns.5.push(awaiting.map(|a| a.worker.name.as_str()));
            columns.6.push(match awaiting {
                Some(a) => Some(int("a promise index", a.index)?),
                None => None,
            });
        }
        let params: Vec<Param<'a>> = vec![
            Box::new(columns.0),
            Box::new(columns.1),
            Box::new(columns.2),
            Box::new(columns.3),
            Box::new(columns.4),
            Box::new(columns.5),
            Box::new(columns.6),
        ];
        out.push(gathered(&s.update_workers, params, Check::None));
    }
    if let Some(alone) = p.lone[INVOCATIONS].alone() {
        out.push(alone);
    } else if !p.invocations.is_empty() {
        let mut columns: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) = Default::default();
        for (worker, seq, state) in &p.invocations {
            let (state, result) = state_columns(state);
            columns.0.push(worker.component);
            columns.1.push(worker.name.as_str());
            columns.2.push(int("a sequence number", *seq)?);
            columns.3.push(state);
            columns.4.push(result);
        }
        let params: Vec<Param<'a>> = vec![
            Box::new(columns.0),
            Box::new(columns.1),
            Box::new(columns.2),
            Box::new(columns.3),
            Box::new(columns.4),
        ];
        out.push(gathered(&s.set_invocation_states, params, Check::None));
    }
    if let Some(alone) = p.lone[COMPLETIONS].alone() {
        out.push(alone);
    } else if !p.completions.is_empty() {
        let mut columns: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) = Default::default();
        let mut slots = Vec::with_capacity(p.completions.len());
        for (key, data, at, slot) in &p.completions {
            columns.0.push(key.worker.component);
            columns.1.push(key.worker.name.as_str());
            columns.2.push(int("a promise index", key.index)?);
            columns.3.push(*data);
            columns.4.push(int("a completion time", *at)?);
            slots.push(*slot);
        }
        let params: Vec<Param<'a>> = vec![
            Box::new(columns.0),
            Box::new(columns.1),
            Box::new(columns.2),
            Box::new(columns.3),
            Box::new(columns.4),
        ];
        out.push(GroupOp {
            op: Op {
                statement: &s.complete_many,
                params,
                check: Check::Rows,
            },
            read: Read::Completions {
                slots,
                repeats: p.repeats,
            },
        });
    }
    Ok(())
}

fn gathered<'a>(statement: &'a Statement, params: Vec<Param<'a>>, check: Check<'a>) -> GroupOp<'a> {
    GroupOp {
        op: Op {
            statement,
            params,
            check,
        },
        read: Read::Nothing,
    }
}

/// The outcomes of every job from the answers of a gathered group, or
/// `None` when a check failed (the group is to be applied batch by batch).
pub(crate) fn outcomes(
    ops: &[GroupOp<'_>],
    answers: &[Result<Answer>],
    per_job: &[usize],
    location: &str,
) -> Option<Vec<Vec<Outcome>>> {
    if answers.len() != ops.len() {
        return None;
    }
    let mut outcomes: Vec<Vec<Outcome>> = per_job.iter().map(|&n| vec![Outcome::Done; n]).collect();
    for (op, answer) in ops.iter().zip(answers) {
        let answer = answer.as_ref().ok()?;
        match &op.read {
            Read::Single((job, write)) => {
                if let Some(decided) = op.op.judge(answer, location).ok()? {
                    *outcomes.get_mut(*job)?.get_mut(*write)? = decided;
                }
            }
            Read::Nothing => {
                op.op.judge(answer, location).ok()?;
            }
            Read::Completions { slots, repeats } => {
                let Answer::Rows(rows) = answer else {
                    return None;
                };
                for row in rows {
                    let i: i64 = row.try_get(0).ok()?;
                    let completed: bool = row.try_get(1).ok()?;
                    let exists: bool = row.try_get(2).ok()?;
                    let at = usize::try_from(i).ok()?.checked_sub(1)?;
                    let (job, write) = *slots.get(at)?;
                    let (first, later) = match (completed, exists) {
                        (true, _) => (Outcome::Completed(true), Outcome::Completed(false)),
                        (false, true) => (Outcome::Completed(false), Outcome::Completed(false)),
                        (false, false) => (Outcome::NotFound, Outcome::NotFound),
                    };
                    *outcomes.get_mut(job)?.get_mut(write)? = first;
                    for &(job, write) in repeats.get(at)? {
                        *outcomes.get_mut(job)?.get_mut(write)? = later.clone();
                    }
                }
            }
        }
    }
    Some(outcomes)
}
