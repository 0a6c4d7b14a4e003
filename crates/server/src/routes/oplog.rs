//! A worker's operation log: `GET .../oplog` in Golem 1.1's shape
//! (`GetOplogResponse`, see [`crate::oplog`]) and `GET .../oplog/raw`, a
//! Vow extension with Vow's own entries as stored.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, WorkerParams, WorkerPath};
use crate::integral;
use crate::openapi::responses::{E400, E404};
use crate::oplog::query::Query;
use crate::oplog::{Context, PublicOplogEntry, finished_seqs, invoked_functions};

/// Most entries one Golem page holds, as Golem caps `count`.
const MAX_GOLEM_PAGE: u64 = 100;

/// How many entries a search reads from the store at a time.
const SEARCH_CHUNK: usize = 500;

/// `?count=N&from=I&cursor=C&query=Q`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GolemQuery {
    /// First oplog index to return (default 1); not with `query` (a 400)
    #[param(inline, value_type = Option<integral::Uint64>)]
    from: Option<u64>,
    /// Most entries to return (at most 100 are answered)
    #[param(inline, value_type = integral::Uint64)]
    count: Option<u64>,
    /// `<next_oplog_index>-<component_version>` from the previous page's
    /// `next`; overrides `from`
    #[param(pattern = "^[0-9]{1,19}-[0-9]{1,19}$")]
    cursor: Option<String>,
    /// Search: Golem's Lucene-like query (terms, "phrases", /regex/,
    /// field:term, AND, OR, NOT, parentheses); answers the next `count`
    /// matching entries. Not with `from`; a query that does not parse (an
    /// unclosed group or phrase, a lone operator, a bad regular expression)
    /// is a 400 saying why
    query: Option<String>,
}

/// Golem's `OplogCursor`.
#[derive(Serialize, ToSchema)]
#[schema(as = OplogCursor)]
struct Cursor {
    current_component_version: u64,
    next_oplog_index: u64,
}

/// Golem's `GetOplogResponse`: a page of a worker's oplog.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GetOplogResponse)]
pub(crate) struct GolemPage {
    #[schema(inline)]
    entries: Vec<GolemEntry>,
    first_index_in_chunk: u64,
    /// Index of the worker's last entry
    last_index: u64,
    /// Where the next page starts: present whenever `entries` is not
    /// empty, as Golem answers (a client pages until it gets an empty
    /// page), left out otherwise (Golem's document has no `null` here)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<Cursor>,
}

/// One entry of a page, with its index.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GolemEntry {
    oplog_index: u64,
    #[schema(value_type = PublicOplogEntry)]
    entry: Value,
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
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/{name}/oplog",
    operation_id = "get_oplog",
    summary = "A page of the worker's operation log in Golem's public form, or a search of it",
    params(WorkerParams, GolemQuery),
    responses(
        (status = 200, description = "success", body = GolemPage),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
)]
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
                entries.push(GolemEntry {
                    oplog_index: record.index,
                    entry,
                });
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

/// `?from=N&count=M`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RawQuery {
    /// First oplog index to return (default 1)
    #[param(inline, value_type = Option<integral::Uint64>)]
    from: Option<u64>,
    /// Most entries to return (default and maximum 1000)
    #[param(minimum = 1, maximum = 1000)]
    count: Option<usize>,
}

/// One entry of the raw log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OplogEntryBody {
    index: u64,
    /// Milliseconds since the Unix epoch
    at: u64,
    #[schema(inline, value_type = RawEntry)]
    entry: vow_runtime::OplogEntry,
}

/// The schema of an entry in Vow's own form.
struct RawEntry;

impl PartialSchema for RawEntry {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("The entry; `kind` names it (`create`, `invocation-started`, `create-promise`, `await-promise`, `wall-clock`, ...)"))
            .property("kind", ObjectBuilder::new().schema_type(Type::String))
            .required("kind")
            .into()
    }
}

impl ToSchema for RawEntry {}

/// A page of a worker's oplog in Vow's own form.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OplogPage {
    #[schema(inline)]
    entries: Vec<OplogEntryBody>,
    /// The `from` of the next page; absent on the last page
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<u64>,
}

/// `GET /v1/components/{cid}/workers/{name}/oplog/raw?from=N&count=M`: a
/// page of the worker's operation log in Vow's own form, from the store.
#[utoipa::path(
    get,
    path = "/v1/components/{cid}/workers/{name}/oplog/raw",
    operation_id = "getRawOplog",
    summary = "A page of the worker's operation log in Vow's own form, as stored",
    params(WorkerParams, RawQuery),
    responses(
        (status = 200, description = "success", body = OplogPage),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
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
