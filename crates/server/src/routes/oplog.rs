//! A worker's operation log: `GET .../oplog` in Golem 1.1's shape
//! (`GetOplogResponse`, see [`crate::oplog`]) and `GET .../oplog/raw`, a
//! Vow extension with Vow's own entries as stored.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, WorkerPath};
use crate::oplog::query::Query;
use crate::oplog::{Context, finished_seqs, invoked_functions};

/// Most entries one Golem page holds, as Golem caps `count`.
const MAX_GOLEM_PAGE: u64 = 100;

/// How many entries a search reads from the store at a time.
const SEARCH_CHUNK: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GolemQuery {
    /// First index to return.
    from: Option<u64>,
    /// Most entries to return (required, as in Golem; capped at 100).
    count: Option<u64>,
    /// `<next_oplog_index>-<component_version>`, from a previous page.
    cursor: Option<String>,
    /// A search query: see [`crate::oplog::query`].
    query: Option<String>,
}

/// Golem's `OplogCursor`.
#[derive(Serialize)]
struct Cursor {
    current_component_version: u64,
    next_oplog_index: u64,
}

/// Golem's `GetOplogResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GolemPage {
    entries: Vec<Value>,
    first_index_in_chunk: u64,
    last_index: u64,
    /// Present whenever `entries` is not empty, as Golem answers: a client
    /// pages until it gets an empty page. Left out otherwise: Golem's
    /// document has no `null` here.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Cursor>,
}

/// Reads Golem's cursor form `12-0`.
fn parse_cursor(text: &str) -> Result<u64, ApiError> {
    let invalid = |what: &str| {
        ApiError::invalid(format!(
            "invalid oplog cursor {text:?}: {what} (expected <next-oplog-index>-<component-version>, such as 12-0)"
        ))
    };
    let (index, version) = text.split_once('-').ok_or_else(|| invalid("no `-`"))?;
    let index: u64 = index
        .parse()
        .map_err(|_| invalid("the index is not a number"))?;
    let _version: u64 = version
        .parse()
        .map_err(|_| invalid("the component version is not a number"))?;
    Ok(index)
}

/// `GET /v1/components/{cid}/workers/{name}/oplog?count=N[&from=I|&cursor=C][&query=Q]`:
/// a page of the worker's log in Golem 1.1's public form, or with `query`
/// the next `count` entries that match it.
pub(crate) async fn golem(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(params): ApiQuery<GolemQuery>,
) -> Result<Json<GolemPage>, ApiError> {
    let Some(count) = params.count else {
        return Err(ApiError::invalid(
            "the query parameter `count` is required (at most 100 entries are answered)",
        ));
    };
    if params.from.is_some() && params.query.is_some() {
        return Err(ApiError::invalid(
            "Cannot specify both the 'from' and the 'query' parameters",
        ));
    }
    let query = params
        .query
        .as_deref()
        .map(Query::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(format!("invalid oplog query: {e}")))?;
    let start = match &params.cursor {
        Some(cursor) => parse_cursor(cursor)?,
        None => params.from.unwrap_or(1),
    }
    .max(1);
    let count = count.min(MAX_GOLEM_PAGE) as usize;
    let executor = &state.executor;
    let last_index = executor.worker_last_oplog_index(&worker).await?;
    let meta = executor.worker_metadata(&worker)?;
    let mut context = Context {
        component_size: executor.component(worker.component_id)?.size as u64,
        linear_memory: meta.linear_memory,
        worker: worker.clone(),
        finished: HashMap::new(),
        functions: HashMap::new(),
    };

    let mut entries = Vec::new();
    let mut next_index = start;
    while entries.len() < count && next_index <= last_index {
        let chunk = if query.is_some() {
            SEARCH_CHUNK
        } else {
            count - entries.len()
        };
        let records = executor.worker_oplog(&worker, next_index, chunk).await?;
        let Some(last) = records.last() else { break };
        let last = last.index;
        for function in invoked_functions(&records) {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                context.functions.entry(function)
                && let Ok(ty) = executor.function_type(worker.component_id, slot.key())
            {
                slot.insert(ty);
            }
        }
        if let Some((first, last)) = finished_seqs(&records) {
            for finished in executor.finished_invocations(&worker, first..=last).await? {
                context.finished.insert(finished.seq, finished);
            }
        }
        for record in &records {
            let entry = context.render(record);
            if query.as_ref().is_none_or(|q| q.matches(&entry)) {
                entries.push(json!({ "oplogIndex": record.index, "entry": entry }));
                next_index = record.index + 1;
                if entries.len() == count {
                    break;
                }
            }
        }
        if entries.len() < count {
            next_index = last + 1;
        }
    }
    let next = (!entries.is_empty()).then_some(Cursor {
        current_component_version: meta.component_version,
        next_oplog_index: next_index,
    });
    Ok(Json(GolemPage {
        entries,
        first_index_in_chunk: start,
        last_index,
        next,
    }))
}

/// Most oplog entries one page may hold.
const MAX_RAW_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuery {
    /// First index to return (default 1).
    from: Option<u64>,
    /// Most entries to return (default and maximum 1000).
    count: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OplogEntryBody {
    index: u64,
    /// Milliseconds since the Unix epoch.
    at: u64,
    entry: vow_runtime::OplogEntry,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OplogPage {
    entries: Vec<OplogEntryBody>,
    /// The `from` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// `GET /v1/components/{cid}/workers/{name}/oplog/raw?from=N&count=M`: a
/// page of the worker's operation log in Vow's own form, from the store.
pub(crate) async fn raw(
    State(state): State<AppState>,
    WorkerPath(worker): WorkerPath,
    ApiQuery(query): ApiQuery<RawQuery>,
) -> Result<Json<OplogPage>, ApiError> {
    let from = query.from.unwrap_or(1).max(1);
    let count = query.count.unwrap_or(MAX_RAW_PAGE).clamp(1, MAX_RAW_PAGE);
    // One more than asked tells whether another page follows.
    let mut records = state
        .executor
        .worker_oplog(&worker, from, count + 1)
        .await?;
    let next = (records.len() > count).then(|| {
        records.truncate(count);
        from + count as u64
    });
    let entries = records
        .into_iter()
        .map(|r| OplogEntryBody {
            index: r.index,
            at: r
                .at
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            entry: r.entry,
        })
        .collect();
    Ok(Json(OplogPage { entries, next }))
}
