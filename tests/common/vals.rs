//! Reading component values back: record fields, `u64`s and the promise
//! ids guests return. Shared by the end-to-end tests (`e2e/support.rs`)
//! and the benchmarks, which include this file with `#[path]`.

use anyhow::{Result, anyhow};
use vow_runtime::{ComponentId, PromiseId, Val, WorkerId};

/// The field `name` of a record.
pub fn field<'a>(val: &'a Val, name: &str) -> Result<&'a Val> {
    match val {
        Val::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow!("no field {name} in {val:?}")),
        other => Err(anyhow!("expected a record, got {other:?}")),
    }
}

/// A `u64`.
pub fn u64_of(val: &Val) -> Result<u64> {
    match val {
        Val::U64(v) => Ok(*v),
        other => Err(anyhow!("expected u64, got {other:?}")),
    }
}

/// A `promise-id` record, as `create-promise` returns it.
pub fn promise_from_val(val: &Val) -> Result<PromiseId> {
    let worker = field(val, "worker-id")?;
    let uuid = field(field(worker, "component-id")?, "uuid")?;
    let name = match field(worker, "worker-name")? {
        Val::String(s) => s.clone(),
        other => return Err(anyhow!("expected a string, got {other:?}")),
    };
    Ok(PromiseId {
        worker_id: WorkerId::new(
            ComponentId::from_u64_pair(
                u64_of(field(uuid, "high-bits")?)?,
                u64_of(field(uuid, "low-bits")?)?,
            ),
            name,
        ),
        oplog_idx: u64_of(field(val, "oplog-idx")?)?,
    })
}
