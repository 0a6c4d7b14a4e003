//! Reads, on a pooled connection.

use bytes::Bytes;
use tokio_postgres::Row;
use vow_store::{
    ComponentRecord, Error, InvocationRecord, InvocationState, OplogRecord, PromiseKey,
    PromiseRecord, PromiseSpec, PromiseState, ReactionRecord, Result, SnapshotRecord, WorkerKey,
    WorkerRecord, WorkerState,
};

fn corrupt(location: &str, reason: String) -> Error {
    Error::Corrupt {
        location: location.to_owned(),
        reason,
    }
}

/// A bigint column as u64; negative values were never written.
fn unsigned(row: &Row, index: usize, location: &str) -> Result<u64> {
    let value: i64 = row.get(index);
    u64::try_from(value).map_err(|_| corrupt(location, format!("negative value {value}")))
}

fn bytes(row: &Row, index: usize) -> Bytes {
    Bytes::from(row.get::<_, Vec<u8>>(index))
}

pub(crate) fn component(row: &Row, location: &str) -> Result<ComponentRecord> {
    Ok(ComponentRecord {
        id: row.get(0),
        name: row.get(1),
        sha256: row.get(2),
        bytes: bytes(row, 3),
        created_at: unsigned(row, 4, location)?,
    })
}

/// A row of `SELECT component, name, args, env, created_at, status,
/// last_error, awaiting_component, awaiting_name, awaiting_index`.
pub(crate) fn worker(row: &Row, location: &str) -> Result<WorkerRecord> {
    let flat: Vec<String> = row.get(3);
    if !flat.len().is_multiple_of(2) {
        return Err(corrupt(location, "a worker's environment is uneven".into()));
    }
    let env = flat
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    let awaiting_component: Option<uuid::Uuid> = row.get(7);
    let awaiting_name: Option<String> = row.get(8);
    let awaiting_index: Option<i64> = row.get(9);
    let awaiting = match (awaiting_component, awaiting_name, awaiting_index) {
        (Some(component), Some(name), Some(index)) => Some(PromiseKey {
            worker: WorkerKey { component, name },
            index: u64::try_from(index)
                .map_err(|_| corrupt(location, format!("negative promise index {index}")))?,
        }),
        _ => None,
    };
    Ok(WorkerRecord {
        key: WorkerKey {
            component: row.get(0),
            name: row.get(1),
        },
        args: row.get(2),
        env,
        created_at: unsigned(row, 4, location)?,
        state: WorkerState {
            status: row.get(5),
            last_error: row.get(6),
            awaiting,
        },
    })
}

pub(crate) fn oplog(row: &Row, location: &str) -> Result<OplogRecord> {
    Ok(OplogRecord {
        index: unsigned(row, 0, location)?,
        at: unsigned(row, 1, location)?,
        entry: bytes(row, 2),
    })
}

/// A row of `SELECT component, name, idx, created_at, data, completed_at`.
pub(crate) fn promise(row: &Row, location: &str) -> Result<PromiseRecord> {
    let data: Option<Vec<u8>> = row.get(4);
    let completed_at: Option<i64> = row.get(5);
    let rejected: bool = row.get(6);
    let time =
        |at: i64| u64::try_from(at).map_err(|_| corrupt(location, format!("negative time {at}")));
    let state = match (data, completed_at) {
        (Some(error), Some(at)) if rejected => PromiseState::Rejected {
            error: error.into(),
            at: time(at)?,
        },
        (Some(data), Some(at)) => PromiseState::Completed {
            data: data.into(),
            at: time(at)?,
        },
        _ => PromiseState::Pending,
    };
    let deadline: Option<i64> = row.get(7);
    let retention: Option<i64> = row.get(8);
    let options: Option<Vec<u8>> = row.get(9);
    Ok(PromiseRecord {
        key: PromiseKey {
            worker: WorkerKey {
                component: row.get(0),
                name: row.get(1),
            },
            index: unsigned(row, 2, location)?,
        },
        created_at: unsigned(row, 3, location)?,
        state,
        spec: PromiseSpec {
            deadline: deadline.map(time).transpose()?,
            retention: retention.map(time).transpose()?,
            options: options.map(Into::into).unwrap_or_default(),
        },
    })
}

/// A row of `SELECT component, name, idx, sources, spec, created_at FROM
/// reactions`.
pub(crate) fn reaction(row: &Row, location: &str) -> Result<ReactionRecord> {
    let sources: Vec<u8> = row.get(3);
    let spec: Vec<u8> = row.get(4);
    Ok(ReactionRecord {
        target: PromiseKey {
            worker: WorkerKey {
                component: row.get(0),
                name: row.get(1),
            },
            index: unsigned(row, 2, location)?,
        },
        sources: vow_store::decode_promise_keys(&sources)
            .ok_or_else(|| corrupt(location, "a reaction's sources cannot be read".to_owned()))?,
        spec: spec.into(),
        created_at: unsigned(row, 5, location)?,
    })
}

/// A row of `SELECT component, name, seq, idempotency_key, request, state,
/// result, accepted_at`.
pub(crate) fn invocation(row: &Row, location: &str) -> Result<InvocationRecord> {
    let state: String = row.get(5);
    let state = match state.as_str() {
        "queued" => InvocationState::Queued,
        "running" => InvocationState::Running,
        "finished" => InvocationState::Finished(
            row.get::<_, Option<Vec<u8>>>(6)
                .map(Bytes::from)
                .ok_or_else(|| corrupt(location, "a finished invocation has no result".into()))?,
        ),
        other => {
            return Err(corrupt(
                location,
                format!("unknown invocation state {other:?}"),
            ));
        }
    };
    Ok(InvocationRecord {
        worker: WorkerKey {
            component: row.get(0),
            name: row.get(1),
        },
        seq: unsigned(row, 2, location)?,
        idempotency_key: row.get(3),
        request: bytes(row, 4),
        state,
        accepted_at: unsigned(row, 7, location)?,
    })
}

pub(crate) fn snapshot(row: &Row, location: &str) -> Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        worker: WorkerKey {
            component: row.get(0),
            name: row.get(1),
        },
        index: unsigned(row, 2, location)?,
        at: unsigned(row, 3, location)?,
        data: bytes(row, 4),
    })
}
