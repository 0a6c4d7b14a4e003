//! Invoking exports: argument encodings, result encoding, errors,
//! idempotency keys and traps.

use anyhow::Result;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{App, invoke_uri, json_request};

async fn harness_worker(name: &str) -> Result<(App, String)> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, name).await?;
    Ok((app, cid))
}

async fn invoke_wave(
    app: &App,
    cid: &str,
    worker: &str,
    function: &str,
    texts: &[&str],
) -> Result<(StatusCode, Value)> {
    app.post(
        &invoke_uri(cid, worker, function),
        &json!({ "params_wave": texts }),
    )
    .await
}

#[tokio::test]
async fn json_and_wave_arguments_give_json_results() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let ok = |result: Value| (StatusCode::OK, json!({ "result": result }));

    assert_eq!(
        app.invoke(&cid, "w", "ping", json!([41])).await?,
        ok(json!(42))
    );
    assert_eq!(
        invoke_wave(&app, &cid, "w", "ping", &["41"]).await?,
        ok(json!(42))
    );

    // A record: u64 from a decimal string, an option field left out.
    let policy = json!({ "max-attempts": 5, "min-delay": "1000000000", "max-delay": 60_000_000_000u64, "multiplier": 1.5 });
    assert_eq!(
        app.invoke(&cid, "w", "retry-policy-roundtrip", json!([policy]))
            .await?,
        ok(json!({
            "max-attempts": 5, "min-delay": 1_000_000_000u64, "max-delay": 60_000_000_000u64,
            "multiplier": 1.5, "max-jitter-factor": null,
        }))
    );
    let wave = "{max-attempts: 2, min-delay: 10, max-delay: 20, multiplier: 2.0, max-jitter-factor: some(0.25)}";
    assert_eq!(
        invoke_wave(&app, &cid, "w", "retry-policy-roundtrip", &[wave]).await?,
        ok(json!({
            "max-attempts": 2, "min-delay": 10, "max-delay": 20,
            "multiplier": 2.0, "max-jitter-factor": 0.25,
        }))
    );

    // Variants without payload: as a string or as {"case": null}.
    for given in [json!("persist-nothing"), json!({ "persist-nothing": null })] {
        assert_eq!(
            app.invoke(&cid, "w", "persistence-roundtrip", json!([given]))
                .await?,
            ok(json!({ "persist-nothing": null }))
        );
    }
    assert_eq!(
        invoke_wave(&app, &cid, "w", "persistence-roundtrip", &["smart"]).await?,
        ok(json!({ "smart": null }))
    );

    // Tuples and lists.
    assert_eq!(
        app.invoke(&cid, "w", "double-complete", json!([[1, 2], [3]]))
            .await?,
        ok(json!([true, false, [1, 2]]))
    );
    let (status, body) = app
        .invoke(&cid, "w", "idempotence-roundtrip", json!([false]))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["result"][0].is_boolean() && body["result"][1] == json!(false),
        "{body}"
    );

    // Nested records and enums in a result.
    let (status, body) = app.invoke(&cid, "w", "self-metadata", json!([])).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["worker-id"]["worker-name"], "w");
    assert_eq!(body["result"]["status"], "running");
    assert_eq!(body["result"]["args"], json!([]));
    // A function without results answers null; an empty body object means
    // no parameters.
    let (status, body) = app
        .post(
            &invoke_uri(&cid, "w", "commit"),
            &json!({ "params_json": [1] }),
        )
        .await?;
    assert_eq!((status, body), ok(json!(null)));
    // No arguments at all: Golem's form, whose answer is type-annotated.
    let (status, body) = app
        .post(&invoke_uri(&cid, "w", "oplog-index"), &json!({}))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["result"]["typ"],
        json!({ "type": "Tuple", "items": [{ "type": "U64" }] })
    );
    assert!(body["result"]["value"][0].is_u64(), "{body}");
    Ok(())
}

#[tokio::test]
async fn wrong_arguments_are_named() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    let bad = |errors: Value| (StatusCode::BAD_REQUEST, json!({ "errors": errors }));

    assert_eq!(
        app.invoke(&cid, "w", "ping", json!(["x"])).await?,
        bad(json!(["params[0]: expected u32, got string"]))
    );
    assert_eq!(
        app.invoke(&cid, "w", "ping", json!([4_294_967_296u64]))
            .await?,
        bad(json!(["params[0]: expected u32, got 4294967296"]))
    );
    let policy = json!({ "max-attempts": true, "min-delay": 1, "max-delay": 2, "multiplier": 1.0 });
    assert_eq!(
        app.invoke(&cid, "w", "retry-policy-roundtrip", json!([policy]))
            .await?,
        bad(json!(["params[0].max-attempts: expected u32, got bool"]))
    );
    // One message per wrong argument.
    assert_eq!(
        app.invoke(&cid, "w", "double-complete", json!([["a"], [300]]))
            .await?,
        bad(json!([
            "params[0][0]: expected u8, got string",
            "params[1][0]: expected u8, got 300",
        ]))
    );
    assert_eq!(
        app.invoke(&cid, "w", "persistence-roundtrip", json!(["everything"]))
            .await?,
        bad(json!([
            "params[0]: unknown case \"everything\" (expected one of persist-nothing, persist-remote-side-effects, smart)"
        ]))
    );
    assert_eq!(
        app.invoke(&cid, "w", "ping", json!([])).await?,
        bad(json!(["ping takes 1 parameter(s) (n: u32), got 0"]))
    );
    assert_eq!(
        app.post(
            &invoke_uri(&cid, "w", "ping"),
            &json!({ "params": [1], "params_wave": ["1"] })
        )
        .await?,
        bad(json!(["give one of params, params_json and params_wave"]))
    );
    let (status, body) = invoke_wave(&app, &cid, "w", "ping", &["\"x\""]).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(message.starts_with("params_wave[0]: "), "{body}");

    let (status, body) = app.invoke(&cid, "w", "nope", json!([])).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": format!("component {cid} exports no function \"nope\"") })
    );
    // Nothing ran: the worker is still fine.
    let (status, meta) = app.get(&format!("/v1/components/{cid}/workers/w")).await?;
    assert_eq!(
        (status, meta["status"].clone()),
        (StatusCode::OK, json!("Idle"))
    );
    Ok(())
}

fn invoke_with_key(
    cid: &str,
    worker: &str,
    function: &str,
    key: &str,
    params: Value,
) -> Result<Request<Body>> {
    let uri = format!("/v1/components/{cid}/workers/{worker}/{function}");
    let mut request = json_request(Method::POST, &uri, &json!({ "params_json": params }))?;
    request
        .headers_mut()
        .insert("idempotency-key", key.parse()?);
    Ok(request)
}

#[tokio::test]
async fn a_repeated_idempotency_key_runs_nothing_again() -> Result<()> {
    let (app, cid) = harness_worker("w").await?;
    for _ in 0..2 {
        let request = invoke_with_key(
            &cid,
            "w",
            "invoke?function=print",
            "key-1",
            json!(["once\n", ""]),
        )?;
        assert_eq!(app.send(request).await?, (StatusCode::OK, json!({})));
    }
    for _ in 0..2 {
        let request = invoke_with_key(
            &cid,
            "w",
            "invoke-and-await?function=print",
            "key-2",
            json!(["twice?\n", ""]),
        )?;
        assert_eq!(
            app.send(request).await?,
            (StatusCode::OK, json!({ "result": null }))
        );
    }
    // Without a key, every request runs.
    for _ in 0..2 {
        let uri = format!("/v1/components/{cid}/workers/w/invoke?function=print");
        let reply = app.post(&uri, &json!({ "params_json": ["x", ""] })).await?;
        assert_eq!(reply, (StatusCode::OK, json!({})));
    }
    // Invocations run in order, so this one runs after all of the above.
    app.invoke(&cid, "w", "ping", json!([0])).await?;
    let (_, logs) = app
        .get(&format!("/v1/components/{cid}/workers/w/logs"))
        .await?;
    assert_eq!(logs["stdout"], "once\ntwice?\nxx");

    let mut request = invoke_with_key(&cid, "w", "invoke?function=ping", "k", json!([1]))?;
    request.headers_mut().insert(
        "idempotency-key",
        header::HeaderValue::from_bytes(b"caf\xe9")?,
    );
    let (status, body) = app.send(request).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["the Idempotency-Key header is not visible ASCII"] })
    );
    Ok(())
}

#[tokio::test]
async fn a_trap_fails_the_worker_and_only_that_worker() -> Result<()> {
    let (app, cid) = harness_worker("bad").await?;
    app.create_worker(&cid, "good").await?;

    // Golem's body for a trap: a 500 with `RuntimeError`.
    let (status, body) = app.invoke(&cid, "bad", "fail", json!(["boom"])).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["golemError"]["type"], "RuntimeError", "{body}");
    let message = body["golemError"]["details"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with(&format!("invocation of fail on worker {cid}/bad trapped: ")),
        "{body}"
    );
    // The guest's panic message went to its stderr.
    let (_, logs) = app
        .get(&format!("/v1/components/{cid}/workers/bad/logs"))
        .await?;
    assert!(
        logs["stderr"].as_str().is_some_and(|e| e.contains("boom")),
        "{logs}"
    );

    let (status, meta) = app
        .get(&format!("/v1/components/{cid}/workers/bad"))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["status"], "Failed");
    assert_eq!(meta["lastError"], json!(message));

    let (status, body) = app.invoke(&cid, "bad", "ping", json!([1])).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["golemError"]["type"], "PreviousInvocationFailed",
        "{body}"
    );
    let refused = body["golemError"]["details"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with(&format!(
            "worker {cid}/bad has failed and takes no more invocations: "
        )),
        "{body}"
    );
    let uri = format!("/v1/components/{cid}/workers/bad/invoke?function=ping");
    let (status, _) = app.post(&uri, &json!({ "params_json": [1] })).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    assert_eq!(
        app.invoke(&cid, "good", "ping", json!([7])).await?,
        (StatusCode::OK, json!({ "result": 8 }))
    );
    let (_, meta) = app
        .get(&format!("/v1/components/{cid}/workers/good"))
        .await?;
    assert_eq!(meta["status"], "Idle");
    Ok(())
}

/// Golem's invocation without a worker name runs on a worker of its own,
/// which is gone once the invocation has finished.
#[tokio::test]
async fn invocations_without_a_worker_name_run_on_a_worker_of_their_own() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let workers = |app: App, cid: String| async move {
        let (_, list) = app.get(&format!("/v1/components/{cid}/workers")).await?;
        anyhow::Ok(list["workers"].as_array().map_or(0, Vec::len))
    };

    let (status, body) = app
        .post(
            &format!("/v1/components/{cid}/invoke-and-await?function=ping"),
            &json!({ "params": [{ "typ": { "type": "U32" }, "value": 1 }] }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["value"], json!([2]));
    assert_eq!(workers(app.clone(), cid.clone()).await?, 0);

    let (status, body) = app
        .post(
            &format!("/v1/components/{cid}/invoke?function=increment"),
            &json!({ "params": [] }),
        )
        .await?;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while workers(app.clone(), cid.clone()).await? != 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the worker of the invocation was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // An unknown function makes no worker.
    let (status, body) = app
        .post(
            &format!("/v1/components/{cid}/invoke-and-await?function=nope"),
            &json!({ "params": [] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(workers(app.clone(), cid.clone()).await?, 0);
    Ok(())
}
