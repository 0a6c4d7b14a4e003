//! Starting, describing, listing and deleting workers, and their output.

use anyhow::Result;
use axum::http::StatusCode;
use serde_json::json;

use crate::support::App;

#[tokio::test]
async fn a_worker_is_created_described_listed_and_deleted() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let workers = format!("/v1/components/{cid}/workers");
    let (status, body) = app
        .post(
            &workers,
            &json!({ "name": "w1", "args": ["--fast"], "env": { "COLOR": "blue", "A": "1" } }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "workerId": { "componentId": cid, "workerName": "w1" }, "componentVersion": 0 })
    );

    let (status, meta) = app.get(&format!("{workers}/w1")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        meta["workerId"],
        json!({ "componentId": cid, "workerName": "w1" })
    );
    assert_eq!(meta["args"], json!(["--fast"]));
    assert_eq!(meta["env"], json!({ "A": "1", "COLOR": "blue" }));
    assert_eq!(meta["status"], "Idle");
    assert_eq!(meta["componentVersion"], 0);
    assert_eq!(meta["retryCount"], 0);
    assert!(meta.get("lastError").is_none(), "{meta}");
    assert_eq!(meta["pendingInvocationCount"], 0);
    let created = meta["createdAt"].as_str().unwrap_or_default();
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    // Golem's fields that Vow has nothing for, and the component's size.
    assert_eq!(meta["updates"], json!([]));
    assert_eq!(meta["activePlugins"], json!([]));
    assert_eq!(meta["ownedResources"], json!({}));
    let (_, component) = app.get(&format!("/v1/components/{cid}")).await?;
    assert_eq!(meta["componentSize"], component["size"]);

    // The guest sees what the request gave it.
    let (status, env) = app.invoke(&cid, "w1", "get-env", json!([])).await?;
    assert_eq!(status, StatusCode::OK);
    let env = env["result"].as_array().cloned().unwrap_or_default();
    assert!(env.contains(&json!(["COLOR", "blue"])), "{env:?}");
    let (_, args) = app.invoke(&cid, "w1", "get-args", json!([])).await?;
    assert!(
        args["result"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("--fast"))),
        "{args}"
    );
    let (_, meta) = app.get(&format!("{workers}/w1")).await?;
    let memory = meta["totalLinearMemorySize"].as_u64().unwrap_or_default();
    assert!(
        memory >= 65_536 && memory % 65_536 == 0,
        "whole wasm pages: {meta}"
    );

    app.create_worker(&cid, "w0").await?;
    let (status, list) = app.get(&workers).await?;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = list["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["workerId"]["workerName"].clone())
        .collect();
    assert_eq!(names, vec![json!("w0"), json!("w1")]);

    let (status, body) = app.delete(&format!("{workers}/w1")).await?;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let gone = json!({ "error": format!("worker {cid}/w1 not found") });
    let (status, body) = app.get(&format!("{workers}/w1")).await?;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, gone.clone()));
    let (status, body) = app.delete(&format!("{workers}/w1")).await?;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, gone.clone()));
    let (status, body) = app.invoke(&cid, "w1", "ping", json!([1])).await?;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, gone));
    let (_, list) = app.get(&workers).await?;
    assert_eq!(list["workers"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn taken_and_invalid_names_are_refused() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let workers = format!("/v1/components/{cid}/workers");
    app.create_worker(&cid, "dup").await?;
    let (status, body) = app.post(&workers, &json!({ "name": "dup" })).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "error": format!("worker {cid}/dup already exists") })
    );

    let (status, body) = app.post(&workers, &json!({ "name": "a/b" })).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["invalid worker name \"a/b\": it contains '/'"] })
    );
    let (status, body) = app.post(&workers, &json!({ "name": "" })).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["invalid worker name \"\": it is empty"] })
    );

    let unknown = "00000000-0000-0000-0000-000000000002";
    let (status, body) = app
        .post(
            &format!("/v1/components/{unknown}/workers"),
            &json!({ "name": "x" }),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": format!("component {unknown} not found") })
    );
    Ok(())
}

#[tokio::test]
async fn logs_return_what_the_guest_printed() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "printer").await?;
    let (status, body) = app
        .invoke(
            &cid,
            "printer",
            "print",
            json!(["hello\nworld ✓\n", "oops"]),
        )
        .await?;
    assert_eq!((status, body), (StatusCode::OK, json!({ "result": null })));
    let (status, logs) = app
        .get(&format!("/v1/components/{cid}/workers/printer/logs"))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        logs,
        json!({ "stdout": "hello\nworld ✓\n", "stderr": "oops", "stdoutDropped": 0, "stderrDropped": 0 })
    );
    let (status, body) = app
        .get(&format!("/v1/components/{cid}/workers/nobody/logs"))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": format!("worker {cid}/nobody not found") })
    );
    Ok(())
}

#[tokio::test]
async fn the_oplog_is_read_in_pages() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "logged").await?;
    // 1 create, then per invocation: started, create-promise, finished.
    for _ in 0..2 {
        let (status, _) = app.invoke(&cid, "logged", "new-promise", json!([])).await?;
        assert_eq!(status, StatusCode::OK);
    }
    let oplog = format!("/v1/components/{cid}/workers/logged/oplog/raw");
    let (status, first) = app.get(&format!("{oplog}?count=4")).await?;
    assert_eq!(status, StatusCode::OK);
    let kinds = |page: &serde_json::Value| -> Vec<String> {
        page["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["entry"]["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(&first),
        [
            "create",
            "invocation-started",
            "create-promise",
            "invocation-finished"
        ]
    );
    assert_eq!(first["entries"][2]["index"], 3);
    assert_eq!(first["next"], 5);
    let (_, rest) = app.get(&format!("{oplog}?from=5&count=4")).await?;
    assert_eq!(
        kinds(&rest),
        [
            "invocation-started",
            "create-promise",
            "invocation-finished"
        ]
    );
    assert_eq!(rest.get("next"), None, "{rest}");

    let (status, error) = app.get(&format!("{oplog}?from=abc")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = app
        .get(&format!("/v1/components/{cid}/workers/nobody/oplog/raw"))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn an_interrupted_worker_waits_for_resume_and_then_answers_its_caller() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "paused").await?;
    let worker = format!("/v1/components/{cid}/workers/paused");

    let (status, body) = app.post(&format!("{worker}/resume"), &json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("is not interrupted (it is idle)")),
        "{body}"
    );

    let call = {
        let app = app.clone();
        let cid = cid.clone();
        tokio::spawn(async move {
            app.invoke(&cid, "paused", "create-and-await", json!([]))
                .await
        })
    };
    let idx = app.awaited_promise(&cid, "paused").await?;
    let (status, body) = app.post(&format!("{worker}/interrupt"), &json!({})).await?;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (_, meta) = app.get(&worker).await?;
    assert_eq!(meta["status"], "Interrupted");

    // A completion while interrupted is kept; the worker does not go on.
    let (status, body) = app
        .post(
            &format!("{worker}/complete"),
            &json!({ "oplogIdx": idx, "data": b"while paused" }),
        )
        .await?;
    assert_eq!((status, body), (StatusCode::OK, json!(true)));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!call.is_finished(), "an interrupted worker ran");
    let (_, meta) = app.get(&worker).await?;
    assert_eq!(meta["status"], "Interrupted");

    let (status, _) = app.post(&format!("{worker}/resume"), &json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(20), call).await???;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], json!(b"while paused"));
    let (_, meta) = app.get(&worker).await?;
    assert_eq!(meta["status"], "Idle");

    // Interrupting with immediate recovery is a simulated crash: the
    // worker goes on by itself, with its memory rebuilt by replay.
    app.invoke(&cid, "paused", "increment", json!([])).await?;
    let (status, _) = app
        .post(
            &format!("{worker}/interrupt?recovery-immediately=true"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app.invoke(&cid, "paused", "increment", json!([])).await?;
    assert_eq!(body["result"], json!(2));

    let (status, _) = app
        .post(
            &format!("/v1/components/{cid}/workers/nobody/interrupt"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post(
            &format!("{worker}/interrupt?recovery-immediately=maybe"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    Ok(())
}

/// Golem's listing: `filter=` strings, `cursor`/`count` pages, and
/// `workers/find` with a filter tree.
#[tokio::test]
async fn workers_are_listed_filtered_and_paged_as_golem_does() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let workers = format!("/v1/components/{cid}/workers");
    for (name, color) in [
        ("a1", "red"),
        ("a2", "blue"),
        ("b1", "red"),
        ("find", "blue"),
    ] {
        let (status, body) = app
            .post(
                &workers,
                &json!({ "name": name, "args": [], "env": { "COLOR": color } }),
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["workerId"]["workerName"].as_str().map(str::to_owned))
            .collect()
    };

    let (status, list) = app.get(&format!("{workers}?count=2")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&list), ["a1", "a2"]);
    assert_eq!(list["cursor"], json!({ "cursor": 2, "layer": 0 }));
    let (_, list) = app.get(&format!("{workers}?count=2&cursor=0/2")).await?;
    assert_eq!(names(&list), ["b1", "find"]);
    assert!(list.get("cursor").is_none(), "{list}");

    let (_, list) = app
        .get(&format!(
            "{workers}?filter=name%20like%20a&filter=env.color%20%3D%3D%20red"
        ))
        .await?;
    assert_eq!(names(&list), ["a1"]);
    let (_, list) = app
        .get(&format!("{workers}?filter=status%20%3D%3D%20idle"))
        .await?;
    assert_eq!(names(&list).len(), 4);

    let (status, body) = app.get(&format!("{workers}?filter=name%20~%20a")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["Unknown String Filter Comparator: ~"] })
    );
    let (status, body) = app.get(&format!("{workers}?cursor=7")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["Invalid cursor, must have 'layer/cursor' format"] })
    );

    let find = |body: serde_json::Value| {
        let app = app.clone();
        let uri = format!("{workers}/find");
        async move { app.post(&uri, &body).await }
    };
    let (status, list) = find(json!({
        "filter": { "type": "Or", "filters": [
            { "type": "Name", "comparator": "Equal", "value": "b1" },
            { "type": "Not", "filter": { "type": "Env", "name": "COLOR", "comparator": "Equal", "value": "red" } },
        ] },
        "count": 10,
        "precise": true,
    }))
    .await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["a2", "b1", "find"]);
    let (_, list) = find(json!({
        "filter": { "type": "Status", "comparator": "Equal", "value": "Idle" },
        "cursor": { "cursor": 3, "layer": 0 },
    }))
    .await?;
    assert_eq!(names(&list), ["find"]);
    let (status, _) =
        find(json!({ "filter": { "type": "Status", "comparator": "Equal", "value": "idle" } }))
            .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // `workers/find` is also the path of the worker named "find".
    let (status, meta) = app.get(&format!("{workers}/find")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["workerId"]["workerName"], "find");
    let (status, _) = app.delete(&format!("{workers}/find")).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get(&format!("{workers}/find")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}
