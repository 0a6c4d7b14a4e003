//! `GET .../oplog` in Golem 1.1's shape: typed entries, paging by cursor,
//! search.

use anyhow::Result;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{App, invoke_uri, json_request};

fn types(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["entry"]["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn indices(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["oplogIndex"].as_u64().unwrap_or_default())
        .collect()
}

/// A worker that pings (with an idempotency key), completes and awaits its
/// own promise, changes its retry policy and fails.
async fn worker_with_history(app: &App) -> Result<String> {
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let mut ping = json_request(
        Method::POST,
        &invoke_uri(&cid, "w", "ping"),
        &json!({ "params_json": [7] }),
    )?;
    ping.headers_mut()
        .insert("idempotency-key", "ping-key-1".parse()?);
    let (status, body) = app.send(ping).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .invoke(&cid, "w", "complete-then-await", json!([[1, 2]]))
        .await?;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!([1, 2])));
    let policy = json!({"max-attempts": 3, "min-delay": 1_500_000_000u64,
        "max-delay": 60_000_000_000u64, "multiplier": 2.0, "max-jitter-factor": null});
    let (status, body) = app
        .invoke(&cid, "w", "retry-policy-roundtrip", json!([policy]))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.invoke(&cid, "w", "fail", json!(["boom"])).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    Ok(cid)
}

#[tokio::test]
async fn the_oplog_speaks_golems_public_entries() -> Result<()> {
    let app = App::new()?;
    let cid = worker_with_history(&app).await?;
    let oplog = format!("/v1/components/{cid}/workers/w/oplog");
    let (status, page) = app.get(&format!("{oplog}?count=100")).await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        types(&page),
        [
            "Create",
            "ExportedFunctionInvoked",
            "ExportedFunctionCompleted",
            "ExportedFunctionInvoked",
            "ImportedFunctionInvoked",
            "ImportedFunctionInvoked",
            "ImportedFunctionInvoked",
            "ExportedFunctionCompleted",
            "ExportedFunctionInvoked",
            "ChangeRetryPolicy",
            "ExportedFunctionCompleted",
            "ExportedFunctionInvoked",
            "Error",
        ],
        "{page:#}"
    );
    assert_eq!(indices(&page), (1..=13).collect::<Vec<_>>());
    assert_eq!(page["firstIndexInChunk"], 1);
    assert_eq!(page["lastIndex"], 13);
    assert_eq!(
        page["next"],
        json!({ "next_oplog_index": 14, "current_component_version": 0 })
    );
    let entry = |i: usize| page["entries"][i - 1]["entry"].clone();

    let create = entry(1);
    assert_eq!(
        create["worker_id"],
        json!({ "componentId": cid, "workerName": "w" })
    );
    assert_eq!(create["args"], json!([]));
    assert_eq!(create["account_id"], "-1");
    assert!(create["component_size"].as_u64() > Some(1000), "{create}");
    assert!(
        create["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{create}"
    );

    assert_eq!(entry(2)["function_name"], "ping");
    assert_eq!(
        entry(2)["request"],
        json!([{ "typ": { "type": "U32" }, "value": 7 }])
    );
    assert_eq!(entry(2)["idempotency_key"], "ping-key-1");
    assert_eq!(
        entry(3)["response"],
        json!({ "typ": { "type": "Tuple", "items": [{ "type": "U32" }] }, "value": [8] })
    );
    assert_eq!(entry(3)["consumed_fuel"], 0);

    // The promise calls: created at index 5, which its id says.
    let created = entry(5);
    assert_eq!(created["function_name"], "golem::api::create_promise");
    assert_eq!(created["response"]["value"]["oplog-idx"], 5);
    assert_eq!(
        created["response"]["value"]["worker-id"]["worker-name"],
        "w"
    );
    assert_eq!(
        created["wrapped_function_type"],
        json!({ "type": "WriteLocal" })
    );
    let completed = entry(6);
    assert_eq!(completed["function_name"], "golem::api::complete_promise");
    assert_eq!(
        completed["response"],
        json!({ "typ": { "type": "Bool" }, "value": true })
    );
    let awaited = entry(7);
    assert_eq!(awaited["function_name"], "golem::api::await_promise");
    assert_eq!(awaited["request"]["value"]["oplog-idx"], 5);
    assert_eq!(awaited["response"]["value"], json!([1, 2]));
    assert_eq!(
        entry(8)["response"]["value"],
        json!([[1, 2]]),
        "complete-then-await returned the payload"
    );

    assert_eq!(
        entry(10)["new_policy"],
        json!({ "max_attempts": 3, "min_delay": "1s 500ms", "max_delay": "1m",
            "multiplier": 2.0, "max_jitter_factor": null })
    );
    let failed = entry(13);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invocation of fail on worker") && e.contains("trapped")),
        "{failed}"
    );
    Ok(())
}

#[tokio::test]
async fn the_oplog_pages_by_cursor_and_searches() -> Result<()> {
    let app = App::new()?;
    let cid = worker_with_history(&app).await?;
    let oplog = format!("/v1/components/{cid}/workers/w/oplog");

    // Pages of 5 by cursor cover the log once, in order; then an empty page
    // without `next`.
    let mut seen = Vec::new();
    let mut url = format!("{oplog}?count=5");
    loop {
        let (status, page) = app.get(&url).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["lastIndex"], 13);
        if page["entries"].as_array().is_none_or(Vec::is_empty) {
            assert_eq!(page.get("next"), None, "{page}");
            break;
        }
        let first = indices(&page)[0];
        assert_eq!(page["firstIndexInChunk"], first);
        seen.extend(indices(&page));
        let next = &page["next"];
        url = format!(
            "{oplog}?count=5&cursor={}-{}",
            next["next_oplog_index"], next["current_component_version"]
        );
    }
    assert_eq!(seen, (1..=13).collect::<Vec<_>>());
    let (_, page) = app.get(&format!("{oplog}?count=2&from=12")).await?;
    assert_eq!(indices(&page), [12, 13]);
    // More than 100 asked: 100 at most (the whole log here).
    let (_, page) = app.get(&format!("{oplog}?count=1000")).await?;
    assert_eq!(indices(&page).len(), 13);

    // Search: the real indices of the matching entries, paged the same way.
    let search = |q: &str, extra: &str| format!("{oplog}?count=10&query={q}{extra}");
    let (status, found) = app.get(&search("complete_promise", "")).await?;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(indices(&found), [6]);
    let (_, found) = app.get(&search("boom", "")).await?;
    assert_eq!(types(&found), ["ExportedFunctionInvoked"]);
    assert_eq!(indices(&found), [12]);
    let (_, found) = app
        .get(&search(
            "%22of%20fail%22%20AND%20NOT%20exported-function",
            "",
        ))
        .await?;
    assert_eq!(types(&found), ["Error"]);
    assert_eq!(indices(&found), [13]);
    let (_, found) = app.get(&search("exported-function", "")).await?;
    assert_eq!(indices(&found), [2, 3, 4, 8, 9, 11, 12]);
    let (_, found) = app
        .get(&format!("{oplog}?count=2&query=exported-function"))
        .await?;
    assert_eq!(indices(&found), [2, 3]);
    assert_eq!(found["next"]["next_oplog_index"], 4);
    let (_, found) = app.get(&search("exported-function", "&cursor=4-0")).await?;
    assert_eq!(indices(&found), [4, 8, 9, 11, 12]);
    let (_, found) = app
        .get(&search("oplog-idx%3A5%20AND%20imported-function", ""))
        .await?;
    assert_eq!(indices(&found), [5, 6, 7], "{found:#}");
    let (_, found) = app.get(&search("nothing-like-this", "")).await?;
    assert_eq!(indices(&found), Vec::<u64>::new());
    assert_eq!(found.get("next"), None, "{found}");
    Ok(())
}

#[tokio::test]
async fn bad_oplog_requests_are_400_and_unknown_workers_404() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let oplog = format!("/v1/components/{cid}/workers/w/oplog");
    for (query, message) in [
        (
            "",
            "the query parameter `count` is required (at most 100 entries are answered)",
        ),
        (
            "?count=5&from=1&query=x",
            "Cannot specify both the 'from' and the 'query' parameters",
        ),
        (
            "?count=5&cursor=12",
            "invalid oplog cursor \"12\": no `-` (expected <next-oplog-index>-<component-version>, such as 12-0)",
        ),
        (
            "?count=5&cursor=a-0",
            "invalid oplog cursor \"a-0\": the index is not a number (expected <next-oplog-index>-<component-version>, such as 12-0)",
        ),
        (
            "?count=5&query=(open",
            "invalid oplog query: a `(` is not closed",
        ),
    ] {
        let (status, body) = app.get(&format!("{oplog}{query}")).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body, json!({ "errors": [message] }), "{query}");
    }
    let (status, body) = app
        .get(&format!(
            "/v1/components/{cid}/workers/nobody/oplog?count=5"
        ))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].is_string(), "{body}");
    Ok(())
}
