//! The human-in-the-loop flow, promise listings and completion errors.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{App, guest_bytes, invoke_uri};

const PAYLOAD: &[u8] = b"approved by ana";
const EXPECTED: &str = "\"deploy\": approved by ana";

#[tokio::test]
async fn approval_flow_through_the_router() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("approval").await?;
    app.create_worker(&cid, "approver").await?;

    let call = {
        let app = app.clone();
        let cid = cid.clone();
        tokio::spawn(async move {
            app.invoke(&cid, "approver", "request-approval", json!(["deploy"]))
                .await
        })
    };
    let idx = app.awaited_promise(&cid, "approver").await?;
    let promise_id = format!("{cid}/approver/{idx}");

    // While parked, the worker is suspended and the promise is listed
    // everywhere it should be.
    let (_, meta) = app
        .get(&format!("/v1/components/{cid}/workers/approver"))
        .await?;
    assert_eq!(meta["status"], "Suspended");
    let (status, listed) = app
        .get(&format!("/v1/components/{cid}/workers/approver/promises"))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let promise = &listed["promises"][0];
    assert_eq!(promise["promiseId"], json!(promise_id));
    assert_eq!(promise["componentId"], json!(cid));
    assert_eq!(promise["workerName"], "approver");
    assert_eq!(promise["oplogIdx"], json!(idx));
    assert_eq!(promise["status"], "pending");
    assert_eq!(promise["completedAt"], json!(null));
    assert_eq!(promise["awaited"], json!(true));
    let (_, logs) = app
        .get(&format!("/v1/components/{cid}/workers/approver/logs"))
        .await?;
    assert_eq!(
        logs["stdout"],
        json!(format!(
            "approval needed for \"deploy\": complete promise {promise_id}\n"
        ))
    );

    let complete = format!("/v1/components/{cid}/workers/approver/complete");
    let body = json!({ "oplogIdx": idx, "data": PAYLOAD });
    assert_eq!(
        app.post(&complete, &body).await?,
        (StatusCode::OK, json!(true))
    );
    let (status, result) = tokio::time::timeout(Duration::from_secs(20), call).await???;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result, json!({ "result": EXPECTED }));

    // First writer wins.
    let late = json!({ "oplogIdx": idx, "data": b"rejected" });
    assert_eq!(
        app.post(&complete, &late).await?,
        (StatusCode::OK, json!(false))
    );

    let (_, pending) = app.get("/v1/promises?status=pending").await?;
    assert_eq!(pending, json!({ "promises": [] }));
    let (_, completed) = app
        .get(&format!("/v1/promises?status=completed&component={cid}"))
        .await?;
    assert_eq!(completed["promises"][0]["promiseId"], json!(promise_id));
    assert_eq!(completed["promises"][0]["status"], "completed");
    assert_eq!(completed["promises"][0]["awaited"], json!(false));
    assert!(
        completed["promises"][0]["completedAt"].is_string(),
        "{completed}"
    );
    Ok(())
}

#[tokio::test]
async fn approval_flow_over_a_real_socket() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = App::new()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(vow_server::serve(listener, app.router, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let uploaded: Value = client
        .post(format!("{base}/v1/components?name=approval"))
        .header("content-type", "application/wasm")
        .body(guest_bytes("approval")?)
        .send()
        .await?
        .json()
        .await?;
    let cid = uploaded["componentId"]
        .as_str()
        .context("no component id")?
        .to_owned();
    let created = client
        .post(format!("{base}/v1/components/{cid}/workers"))
        .json(&json!({ "name": "approver" }))
        .send()
        .await?;
    assert_eq!(created.status(), reqwest::StatusCode::OK);

    let call = tokio::spawn(
        client
            .post(format!(
                "{base}{}",
                invoke_uri(&cid, "approver", "request-approval")
            ))
            .json(&json!({ "params_json": ["deploy"] }))
            .send(),
    );

    let idx = loop {
        let pending: Value = client
            .get(format!("{base}/v1/promises?status=pending"))
            .send()
            .await?
            .json()
            .await?;
        let awaited = pending["promises"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["awaited"] == json!(true) && p["workerName"] == "approver");
        if let Some(p) = awaited {
            break p["oplogIdx"].as_u64().context("no oplogIdx")?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    let complete = format!("{base}/v1/components/{cid}/workers/approver/complete");
    let first = client
        .post(&complete)
        .json(&json!({ "oplogIdx": idx, "data": PAYLOAD }))
        .send()
        .await?;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    assert_eq!(first.json::<Value>().await?, json!(true));

    let response = tokio::time::timeout(Duration::from_secs(20), call).await???;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await?,
        json!({ "result": EXPECTED })
    );

    let second = client
        .post(&complete)
        .json(&json!({ "oplogIdx": idx, "data": b"no" }))
        .send()
        .await?;
    assert_eq!(second.json::<Value>().await?, json!(false));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    ensure!(
        client
            .get(format!("{base}/v1/components"))
            .send()
            .await
            .is_err(),
        "still serving"
    );
    Ok(())
}

#[tokio::test]
async fn completing_unknown_promises_and_workers_is_404() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let body = json!({ "oplogIdx": 999, "data": [1] });

    let (status, reply) = app
        .post(
            &format!("/v1/components/{cid}/workers/ghost/complete"),
            &body,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply,
        json!({ "error": format!("worker {cid}/ghost not found") })
    );

    let (status, reply) = app
        .post(&format!("/v1/components/{cid}/workers/w/complete"), &body)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply,
        json!({ "error": format!("promise {cid}/w/999 not found") })
    );

    let (status, reply) = app
        .get(&format!("/v1/components/{cid}/workers/ghost/promises"))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply,
        json!({ "error": format!("worker {cid}/ghost not found") })
    );
    Ok(())
}

#[tokio::test]
async fn listings_filter_and_refuse_bad_filters() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "a").await?;
    app.create_worker(&cid, "b").await?;
    // One completed promise on `a`, one pending on `b`.
    let (status, made) = app.invoke(&cid, "a", "new-promise", json!([])).await?;
    assert_eq!(status, StatusCode::OK);
    let a_idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    assert_eq!(made["result"]["worker-id"]["worker-name"], "a");
    let complete = format!("/v1/components/{cid}/workers/a/complete");
    assert_eq!(
        app.post(&complete, &json!({ "oplogIdx": a_idx, "data": [] }))
            .await?,
        (StatusCode::OK, json!(true))
    );
    let (_, made) = app.invoke(&cid, "b", "new-promise", json!([])).await?;
    let b_idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;

    let ids = |body: &Value| -> Vec<String> {
        body["promises"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["promiseId"].as_str().map(str::to_owned))
            .collect()
    };
    let a = format!("{cid}/a/{a_idx}");
    let b = format!("{cid}/b/{b_idx}");
    let (_, all) = app.get("/v1/promises").await?;
    assert_eq!(ids(&all), vec![a.clone(), b.clone()]);
    let (_, pending) = app.get("/v1/promises?status=pending").await?;
    assert_eq!(ids(&pending), vec![b.clone()]);
    assert_eq!(pending["promises"][0]["awaited"], json!(false));
    let (_, completed) = app.get("/v1/promises?status=completed").await?;
    assert_eq!(ids(&completed), vec![a.clone()]);
    let (_, of_b) = app
        .get(&format!("/v1/promises?component={cid}&worker=b"))
        .await?;
    assert_eq!(ids(&of_b), vec![b.clone()]);
    let (_, of_a) = app
        .get(&format!("/v1/components/{cid}/workers/a/promises"))
        .await?;
    assert_eq!(ids(&of_a), vec![a]);
    let other = "00000000-0000-0000-0000-000000000003";
    let (_, none) = app.get(&format!("/v1/promises?component={other}")).await?;
    assert_eq!(none, json!({ "promises": [] }));

    // `worker=` alone: the workers of that name in every component.
    let (_, named_b) = app.get("/v1/promises?worker=b").await?;
    assert_eq!(ids(&named_b), vec![b.clone()]);
    let (_, named_c) = app.get("/v1/promises?worker=c").await?;
    assert_eq!(named_c, json!({ "promises": [] }));

    let (status, body) = app.get("/v1/promises?status=done&worker=b").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": [
            "status must be \"pending\", \"completed\" (or \"fulfilled\"), \"rejected\" or \"timed-out\", got \"done\"",
        ] })
    );
    let (status, body) = app.get("/v1/promises?component=xyz").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(
        message.starts_with("invalid component id \"xyz\": "),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_promise_is_rejected_read_and_listed_by_status() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let options = json!({ "timeout-ms": null, "retention-ms": 60000 });
    let (_, made) = app
        .invoke(&cid, "w", "vow-create", json!([options]))
        .await?;
    let idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    let (_, made) = app.invoke(&cid, "w", "new-promise", json!([])).await?;
    let done = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    let worker = format!("/v1/components/{cid}/workers/w");

    let reject = json!({ "oplogIdx": idx, "error": "no budget left", "data": [1, 2] });
    assert_eq!(
        app.post(&format!("{worker}/reject"), &reject).await?,
        (StatusCode::OK, json!(true))
    );
    assert_eq!(
        app.post(&format!("{worker}/reject"), &reject).await?,
        (StatusCode::OK, json!(false)),
        "a settled promise is not rejected again"
    );
    assert_eq!(
        app.post(
            &format!("{worker}/complete"),
            &json!({ "oplogIdx": idx, "data": [9] })
        )
        .await?,
        (StatusCode::OK, json!(false)),
        "nor completed"
    );
    assert_eq!(
        app.post(
            &format!("{worker}/complete"),
            &json!({ "oplogIdx": done, "data": [4, 2] })
        )
        .await?,
        (StatusCode::OK, json!(true))
    );

    let (status, rejected) = app.get(&format!("{worker}/promises/{idx}")).await?;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(
        rejected["error"],
        json!({ "kind": "rejected", "message": "no budget left", "data": [1, 2] })
    );
    assert_eq!(rejected["retentionMs"], 60000);
    assert!(rejected["completedAt"].is_string(), "{rejected}");
    assert_eq!(
        rejected.get("data"),
        None,
        "a rejected promise has no payload"
    );
    let (_, completed) = app.get(&format!("{worker}/promises/{done}")).await?;
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["data"], json!([4, 2]));
    assert_eq!(completed.get("error"), None);

    let ids = |body: &Value| -> Vec<u64> {
        body["promises"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["oplogIdx"].as_u64())
            .collect()
    };
    let (_, listed) = app.get("/v1/promises?status=rejected").await?;
    assert_eq!(ids(&listed), vec![idx]);
    let (_, listed) = app.get("/v1/promises?status=fulfilled").await?;
    assert_eq!(ids(&listed), vec![done]);
    let (_, listed) = app.get("/v1/promises?status=timed-out").await?;
    assert_eq!(ids(&listed), Vec::<u64>::new());

    // Bad requests and unknown promises.
    let (status, body) = app
        .post(&format!("{worker}/reject"), &json!({ "oplogIdx": idx }))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .is_some_and(|m| m.contains("missing field `error`")),
        "{body}"
    );
    let (status, body) = app
        .post(
            &format!("{worker}/reject"),
            &json!({ "oplogIdx": 999, "error": "x" }),
        )
        .await?;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({ "error": format!("promise {cid}/w/999 not found") })
        )
    );
    let (status, body) = app.get(&format!("{worker}/promises/999")).await?;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({ "error": format!("promise {cid}/w/999 not found") })
        )
    );
    let (status, body) = app.get(&format!("{worker}/promises/abc")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["invalid promise index \"abc\": expected the oplog index of its creation, a number"] })
    );
    let (status, _) = app
        .get(&format!("/v1/components/{cid}/workers/ghost/promises/1"))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn a_timed_out_promise_is_listed_with_its_error() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let options = json!({ "timeout-ms": 50, "retention-ms": null });
    let (_, made) = app
        .invoke(&cid, "w", "vow-create", json!([options]))
        .await?;
    let idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    let (_, pending) = app
        .get(&format!("/v1/components/{cid}/workers/w/promises/{idx}"))
        .await?;
    assert!(
        pending["deadline"].is_string(),
        "a pending promise with a timeout shows its deadline: {pending}"
    );
    let (status, waited) = app
        .invoke(&cid, "w", "vow-wait", json!([made["result"]]))
        .await?;
    assert_eq!(status, StatusCode::OK, "{waited}");
    assert_eq!(waited["result"]["err"]["kind"], "timed-out");
    let (_, listed) = app.get("/v1/promises?status=timed-out").await?;
    assert_eq!(listed["promises"][0]["oplogIdx"], idx);
    assert_eq!(listed["promises"][0]["status"], "timed-out");
    assert_eq!(listed["promises"][0]["error"]["kind"], "timed-out");
    assert_eq!(listed["promises"][0].get("deadline"), None);
    Ok(())
}

#[tokio::test]
async fn a_typed_promise_is_completed_with_a_checked_value() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let options = json!({ "timeout-ms": null, "retention-ms": null,
        "payload-type": "record { approved: bool, note: option<string> }" });
    let (_, made) = app
        .invoke(&cid, "w", "vow-create", json!([options]))
        .await?;
    let idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    let worker = format!("/v1/components/{cid}/workers/w");

    let (_, listed) = app.get("/v1/promises?status=pending").await?;
    assert_eq!(
        listed["promises"][0]["payloadType"],
        "record { approved: bool, note: option<string> }"
    );
    assert_eq!(
        listed["promises"][0]["payloadSchema"],
        json!({ "type": "Record", "fields": [
            { "name": "approved", "typ": { "type": "Bool" } },
            { "name": "note", "typ": { "type": "Option", "inner": { "type": "Str" } } },
        ] })
    );

    let complete = format!("{worker}/complete");
    let (status, body) = app
        .post(
            &complete,
            &json!({ "oplogIdx": idx, "value": { "approved": "yes" } }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": [format!(
            "the payload of promise {cid}/w/{idx} is not a record {{ approved: bool, note: option<string> }}: approved: expected bool, got string"
        )] })
    );
    let (status, body) = app.post(&complete, &json!({ "oplogIdx": idx })).await?;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({ "errors": ["missing field `data` (the payload's bytes) or `value` (a JSON value)"] })
        )
    );
    let (status, body) = app
        .post(
            &complete,
            &json!({ "oplogIdx": idx, "data": [], "value": 1 }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        app.post(
            &complete,
            &json!({ "oplogIdx": idx, "value": { "approved": true } })
        )
        .await?,
        (StatusCode::OK, json!(true))
    );
    let (_, settled) = app.get(&format!("{worker}/promises/{idx}")).await?;
    let data: Vec<u8> = serde_json::from_value(settled["data"].clone())?;
    assert_eq!(
        String::from_utf8(data)?,
        r#"{"approved":true,"note":null}"#,
        "kept in canonical form"
    );
    Ok(())
}

/// Polls one promise until it settles.
async fn settled_promise(app: &App, uri: &str) -> Result<Value> {
    for _ in 0..3000 {
        let (status, promise) = app.get(uri).await?;
        if status == StatusCode::OK && promise["status"] != "pending" {
            return Ok(promise);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    anyhow::bail!("{uri} never settled")
}

#[tokio::test]
async fn a_chain_is_started_from_outside_with_when_and_then() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let (status, made) = app
        .post(
            &format!("/v1/components/{cid}/when"),
            &json!({ "function": "double", "input": [97, 98] }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{made}");
    assert_eq!(
        made["oplogIdx"], 1,
        "the promise is its worker's first entry"
    );
    assert_eq!(made["composed"], true);
    let worker = made["workerName"].as_str().context("no worker")?.to_owned();
    assert!(worker.starts_with("when-"), "{worker}");
    let source = made["promiseId"].as_str().context("no id")?.to_owned();

    let (status, then) = app
        .post(
            &format!("/v1/components/{cid}/then"),
            &json!({ "source": source, "function": "recover", "timeoutMs": 60000 }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{then}");
    let then_worker = then["workerName"].as_str().context("no worker")?.to_owned();
    assert!(then_worker.starts_with("then-"), "{then_worker}");

    let doubled = settled_promise(
        &app,
        &format!("/v1/components/{cid}/workers/{worker}/promises/1"),
    )
    .await?;
    assert_eq!(doubled["data"], json!(b"abab"));
    let upper = settled_promise(
        &app,
        &format!("/v1/components/{cid}/workers/{then_worker}/promises/1"),
    )
    .await?;
    assert_eq!(upper["status"], "completed", "{upper}");
    assert_eq!(upper["data"], json!(b"ABAB"));

    // A JSON input, and a rejection flowing to a handler of settlements.
    let (_, refused) = app
        .post(
            &format!("/v1/components/{cid}/when"),
            &json!({ "function": "refuse", "inputJson": "no" }),
        )
        .await?;
    let (_, handled) = app
        .post(
            &format!("/v1/components/{cid}/then"),
            &json!({ "source": refused["promiseId"], "function": "recover" }),
        )
        .await?;
    let handled = settled_promise(
        &app,
        &format!(
            "/v1/components/{cid}/workers/{}/promises/1",
            handled["workerName"].as_str().unwrap_or_default()
        ),
    )
    .await?;
    assert_eq!(handled["data"], json!(br#"handled rejected: refused "no""#));

    // Errors.
    let (status, body) = app
        .post(
            &format!("/v1/components/{cid}/when"),
            &json!({ "function": "unfit" }),
        )
        .await?;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({ "errors": [format!(
                "unfit of component {cid} cannot settle a promise: it must take one parameter, list<u8> (the input)"
            )] })
        )
    );
    let (status, body) = app
        .post(
            &format!("/v1/components/{cid}/then"),
            &json!({ "source": "not an id", "function": "recover" }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let other = "00000000-0000-0000-0000-000000000009";
    let (status, _) = app
        .post(
            &format!("/v1/components/{other}/when"),
            &json!({ "function": "double" }),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}
