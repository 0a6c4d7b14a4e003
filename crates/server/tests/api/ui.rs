//! The web page's files, a completion link opened by a browser, and the
//! change stream the page follows (`GET /v1/events`).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use vow_server::ServerConfig;

use crate::support::App;

/// Sends a GET with these headers; the status, headers and body text.
async fn get(
    app: &App,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, HeaderMap, String)> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, headers, bytes) = app.send_raw(request.body(Body::empty())?).await?;
    Ok((status, headers, String::from_utf8(bytes.to_vec())?))
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_page_is_served_without_the_token_and_the_data_is_not() -> Result<()> {
    let app = App::with_config(ServerConfig {
        auth_token: Some("s3cret".to_owned()),
        ..ServerConfig::default()
    })?;
    let (status, headers, html) = get(&app, "/", &[]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert!(header(&headers, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    assert!(
        html.contains("<script type=\"module\" src=\"/ui/app.js\">"),
        "{html}"
    );
    // No external font, script or style: every URL in the page is its own.
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let url = &html[at + attribute.len()..];
            assert!(url.starts_with('/') || url.starts_with('#'), "{url}");
        }
    }
    let etag = header(&headers, header::ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let (status, _, _) = get(&app, "/", &[("if-none-match", &etag)]).await?;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    let (status, headers, js) = get(&app, "/ui/app.js", &[]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-cache");
    assert!(js.contains("/v1/events"));
    let (_, headers, _) = get(&app, "/ui/app.css", &[]).await?;
    assert_eq!(
        header(&headers, header::CONTENT_TYPE),
        "text/css; charset=utf-8"
    );

    for data in ["/v1/events", "/v1/components", "/ui/../v1/components"] {
        let (status, _, body) = get(&app, data, &[]).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{data}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn a_browser_opening_a_link_gets_the_page_and_a_client_the_json() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let (_, made) = app.invoke(&cid, "w", "new-promise", json!([])).await?;
    let idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    let (status, link) = app
        .post(
            &format!("/v1/components/{cid}/workers/w/promises/{idx}/link"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{link}");
    let path = link["url"].as_str().context("no url")?.to_owned();
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    let (status, headers, html) = get(&app, &path, &[("accept", browser)]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-store");
    assert_eq!(header(&headers, header::REFERRER_POLICY), "no-referrer");
    assert_eq!(header(&headers, header::VARY), "Accept");
    assert!(html.contains("class=\"link-mode\""), "{html}");
    assert!(!html.contains(&cid), "the page holds no data");

    for accept in [None, Some("application/json"), Some("*/*")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let (status, _, body) = get(&app, &path, &headers).await?;
        assert_eq!(status, StatusCode::OK, "{accept:?}");
        let view: Value = serde_json::from_str(&body)?;
        assert_eq!(view["status"], "pending", "{accept:?}");
        assert_eq!(view["action"], "complete");
    }
    // A browser gets the page for a bad token too: it shows the JSON's error.
    let (status, _, _) = get(&app, "/v1/links/nonsense", &[("accept", browser)]).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&app, "/v1/links/nonsense", &[]).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// Reads server-sent events from `body` until one named `event` whose data
/// satisfies `wanted`; answers its data.
async fn next_event(
    body: &mut Body,
    buffer: &mut String,
    event: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(name), Some(data)) = (name, data) {
                let data: Value = serde_json::from_str(data)?;
                if name == event && wanted(&data) {
                    return Ok(data);
                }
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .with_context(|| format!("no {event} event in time; the rest: {buffer:?}"))?;
        match frame {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    buffer.push_str(std::str::from_utf8(&data)?);
                }
            }
            None => bail!("the stream ended before a {event} event"),
        }
    }
}

#[tokio::test]
async fn the_event_stream_tells_of_a_new_wait_and_its_settlement() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let response = app
        .router
        .clone()
        .oneshot(Request::get("/v1/events").body(Body::empty())?)
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), header::CONTENT_TYPE),
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut buffer = String::new();
    let hello = next_event(&mut body, &mut buffer, "hello", |_| true).await?;
    assert_eq!(hello["intervalMs"], 10);

    app.create_worker(&cid, "w").await?;
    let worker = next_event(&mut body, &mut buffer, "worker", |w| {
        w["workerId"]["workerName"] == "w"
    })
    .await?;
    assert_eq!(worker["workerId"]["componentId"], cid.as_str());
    let options = json!({ "timeout-ms": null, "retention-ms": null, "payload-type": "bool" });
    let (_, made) = app
        .invoke(&cid, "w", "vow-create", json!([options]))
        .await?;
    let idx = made["result"]["oplog-idx"]
        .as_u64()
        .context("no oplog-idx")?;
    let id = format!("{cid}/w/{idx}");
    let created = next_event(&mut body, &mut buffer, "promise", |p| {
        p["promiseId"] == id.as_str()
    })
    .await?;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["payloadType"], "bool");

    let (status, first) = app
        .post(
            &format!("/v1/components/{cid}/workers/w/complete"),
            &json!({ "oplogIdx": idx, "value": true }),
        )
        .await?;
    assert_eq!((status, first), (StatusCode::OK, json!(true)));
    let settled = next_event(&mut body, &mut buffer, "promise", |p| {
        p["promiseId"] == id.as_str() && p["status"] != "pending"
    })
    .await?;
    assert_eq!(settled["status"], "completed");
    assert!(settled["completedAt"].is_string(), "{settled}");

    app.delete(&format!("/v1/components/{cid}/workers/w"))
        .await?;
    let deleted = next_event(&mut body, &mut buffer, "worker-deleted", |_| true).await?;
    assert_eq!(deleted["workerId"]["workerName"], "w");
    Ok(())
}

#[tokio::test]
async fn an_open_event_stream_ends_at_shutdown_and_does_not_hold_it() -> Result<()> {
    let app = App::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vow_server::serve_with_grace(
        listener,
        app.router.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(30),
    ));
    let mut stream = reqwest::get(format!("{base}/v1/events")).await?;
    let first = stream.chunk().await?.context("no first event")?;
    assert!(first.starts_with(b"event: hello"), "{first:?}");

    let started = std::time::Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream held the shutdown for {:?}",
        started.elapsed()
    );
    // The stream ended cleanly: the client reads its end.
    while stream.chunk().await?.is_some() {}
    Ok(())
}
