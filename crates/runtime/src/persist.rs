//! How runtime values become store records: ids as store keys, invocation
//! requests and results as JSON with arguments in WAVE text.

use serde::{Deserialize, Serialize};
use vow_store::{PromiseKey, WorkerKey};
use wasmtime::component::Val;
use wasmtime::component::types::Type;
use wasmtime::component::wasm_wave;

use crate::error::{Error, Result};
use crate::ids::{ComponentId, PromiseId, WorkerId};

pub(crate) fn worker_key(id: &WorkerId) -> WorkerKey {
    WorkerKey {
        component: id.component_id.0,
        name: id.worker_name.clone(),
    }
}

pub(crate) fn worker_id(key: &WorkerKey) -> WorkerId {
    WorkerId::new(ComponentId(key.component), key.name.clone())
}

pub(crate) fn promise_key(id: &PromiseId) -> PromiseKey {
    PromiseKey {
        worker: worker_key(&id.worker_id),
        index: id.oplog_idx,
    }
}

pub(crate) fn promise_id(key: &PromiseKey) -> PromiseId {
    PromiseId {
        worker_id: worker_id(&key.worker),
        oplog_idx: key.index,
    }
}

/// A stored invocation request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) function: String,
    /// Arguments in WAVE text.
    pub(crate) params: Vec<String>,
    /// The promise its outcome settles (`when`, `then`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) settles: Option<PromiseId>,
    /// The caller's `traceparent`, so that the invocation joins its trace
    /// even when it is read back from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trace_parent: Option<String>,
}

/// A stored invocation outcome.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// Results in WAVE text.
    Ok(Vec<String>),
    /// The error's message.
    Err(String),
}

/// Values in WAVE text.
pub(crate) fn to_wave(values: &[Val]) -> Result<Vec<String>> {
    values
        .iter()
        .map(|v| {
            wasm_wave::to_string(v)
                .map_err(|e| Error::Storage(format!("cannot encode a value: {e}")))
        })
        .collect()
}

/// Values from WAVE text, typed by `types`.
pub(crate) fn from_wave(texts: &[String], types: &[Type]) -> Result<Vec<Val>> {
    if texts.len() != types.len() {
        return Err(Error::Storage(format!(
            "stored values do not match the function: {} values for {} types",
            texts.len(),
            types.len()
        )));
    }
    texts
        .iter()
        .zip(types)
        .map(|(text, ty)| {
            wasm_wave::from_str::<Val>(ty, text)
                .map_err(|e| Error::Storage(format!("cannot read stored value {text:?}: {e}")))
        })
        .collect()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    serde_json::to_vec(value).unwrap_or_default().into()
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Storage(format!("cannot read {what}: {e}")))
}
