//! `GET /metrics`: read back with a parser of Prometheus' text format, and
//! checked to move as the tests drive work.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use prom_text_format_parser::{Metric, Scrape, ValueType};
use serde_json::json;
use vow_runtime::Executor;
use vow_server::ServerConfig;

use crate::support::{self, App};

/// `GET /metrics` (with `token`, if given), parsed.
async fn scrape_with(app: &App, token: Option<&str>) -> Result<(StatusCode, Vec<Metric>)> {
    let mut request = Request::get("/metrics");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let (status, headers, bytes) = app.send_raw(request.body(Body::empty())?).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = String::from_utf8(bytes.to_vec())?;
    if status != StatusCode::OK {
        return Ok((status, Vec::new()));
    }
    ensure!(
        content_type == "text/plain; version=0.0.4; charset=utf-8",
        "content type {content_type:?}"
    );
    let scrape = Scrape::parse(&text).map_err(|e| anyhow!("not Prometheus text: {e:?}\n{text}"))?;
    Ok((status, scrape.metrics))
}

async fn scrape(app: &App) -> Result<Vec<Metric>> {
    let (status, metrics) = scrape_with(app, None).await?;
    ensure!(status == StatusCode::OK, "GET /metrics: {status}");
    Ok(metrics)
}

/// The value of the one sample of metric `name` whose labels include
/// `labels` (for a histogram: `kind` says which of its samples).
fn sample(metrics: &[Metric], name: &str, kind: ValueType, labels: &[(&str, &str)]) -> Result<f64> {
    let metric = metrics
        .iter()
        .find(|m| m.name == name)
        .with_context(|| format!("no metric {name}"))?;
    let mut found = metric.samples.iter().filter(|s| {
        s.value.value_type == kind
            && labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
    });
    let one = found
        .next()
        .with_context(|| format!("no sample of {name} with {labels:?}"))?;
    ensure!(
        found.next().is_none(),
        "more than one sample of {name} with {labels:?}"
    );
    Ok(one.value.value.as_f64())
}

fn value(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    sample(metrics, name, ValueType::Sample, labels)
}

/// How many observations a histogram holds.
fn observed(metrics: &[Metric], name: &str) -> Result<f64> {
    sample(metrics, name, ValueType::Count, &[])
}

#[tokio::test]
async fn counters_move_as_work_is_done_and_the_text_parses() -> Result<()> {
    // A data directory, so that the store commits.
    let dir = tempfile::tempdir()?;
    let executor = Executor::builder()
        .cache_dir(support::cache_dir())
        .data_dir(dir.path())
        .open()
        .await?;
    let app = App {
        router: vow_server::router(executor, ServerConfig::default()),
    };
    let cid = app.upload("harness").await?;
    for worker in ["parker", "pinger", "crasher"] {
        app.create_worker(&cid, worker).await?;
    }

    // One invocation parks on a promise, which is completed twice.
    let parked = {
        let app = app.clone();
        let cid = cid.clone();
        tokio::spawn(async move {
            app.invoke(&cid, "parker", "create-and-await", json!([]))
                .await
        })
    };
    let idx = app.awaited_promise(&cid, "parker").await?;
    let complete = format!("/v1/components/{cid}/workers/parker/complete");
    for expected in [true, false] {
        let (status, body) = app
            .post(&complete, &json!({ "oplogIdx": idx, "data": [7] }))
            .await?;
        assert_eq!((status, body), (StatusCode::OK, json!(expected)));
    }
    let (status, body) = parked.await??;
    assert_eq!(status, StatusCode::OK, "{body}");
    // One returns, one traps.
    let (status, body) = app.invoke(&cid, "pinger", "ping", json!([1])).await?;
    assert_eq!((status, body["result"].clone()), (StatusCode::OK, json!(2)));
    let (status, _) = app.invoke(&cid, "crasher", "crash", json!([[1]])).await?;
    assert_ne!(status, StatusCode::OK);

    let metrics = scrape(&app).await?;
    let invocations = "vow_invocations_total";
    assert_eq!(value(&metrics, invocations, &[("outcome", "ok")])?, 2.0);
    assert_eq!(
        value(&metrics, invocations, &[("outcome", "trapped")])?,
        1.0
    );
    assert_eq!(
        value(&metrics, invocations, &[("outcome", "timed_out")])?,
        0.0
    );
    assert_eq!(observed(&metrics, "vow_invocation_duration_seconds")?, 3.0);
    let completions = "vow_completions_total";
    assert_eq!(
        value(&metrics, completions, &[("outcome", "completed")])?,
        1.0
    );
    assert_eq!(
        value(&metrics, completions, &[("outcome", "already_settled")])?,
        1.0
    );
    assert_eq!(
        value(&metrics, completions, &[("outcome", "rejected")])?,
        0.0
    );
    // The parked guest was in memory: resumed once, with no replay.
    assert_eq!(observed(&metrics, "vow_completion_resume_seconds")?, 1.0);
    assert_eq!(observed(&metrics, "vow_replay_duration_seconds")?, 0.0);
    assert_eq!(
        value(&metrics, "vow_promises", &[("status", "completed")])?,
        1.0
    );
    assert_eq!(
        value(&metrics, "vow_promises", &[("status", "pending")])?,
        0.0
    );
    let workers = |status, memory| {
        value(
            &metrics,
            "vow_workers",
            &[("status", status), ("memory", memory)],
        )
    };
    assert_eq!(workers("idle", "live")?, 2.0);
    // A trapped instance is dropped with the worker's failure.
    assert_eq!(workers("failed", "evicted")?, 1.0);
    assert_eq!(workers("suspended", "live")?, 0.0);
    // Every write went through the store's group commit.
    let commits = observed(&metrics, "vow_store_commit_duration_seconds")?;
    assert!(commits >= 1.0, "{commits} commits");
    let batches = sample(&metrics, "vow_store_commit_batches", ValueType::Sum, &[])?;
    assert!(batches >= commits, "{batches} batches in {commits} commits");

    let requests = "vow_http_requests_total";
    let completes = [
        ("method", "POST"),
        ("route", "/v1/components/{cid}/workers/{name}/complete"),
        ("status", "200"),
    ];
    assert_eq!(value(&metrics, requests, &completes)?, 2.0);
    let uploads = [("route", "/v1/components"), ("status", "201")];
    assert_eq!(value(&metrics, requests, &uploads)?, 1.0);
    // A scrape is counted once it is answered: the next one sees it.
    let metrics = scrape(&app).await?;
    let scrapes = [("method", "GET"), ("route", "/metrics"), ("status", "200")];
    assert_eq!(value(&metrics, requests, &scrapes)?, 1.0);
    let (status, _) = app.get("/no/such/route").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = scrape(&app).await?;
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(value(&metrics, requests, &unmatched)?, 1.0);
    Ok(())
}

#[tokio::test]
async fn a_worker_out_of_memory_is_counted_leaving_and_coming_back() -> Result<()> {
    let app = App::with_executor(Executor::builder().evict_after(Some(Duration::ZERO)))?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "sleeper").await?;
    let parked = {
        let app = app.clone();
        let cid = cid.clone();
        tokio::spawn(async move {
            app.invoke(&cid, "sleeper", "create-and-await", json!([]))
                .await
        })
    };
    let idx = app.awaited_promise(&cid, "sleeper").await?;
    // Parked with no delay allowed: it leaves memory.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = scrape(&app).await?;
        let out = value(
            &metrics,
            "vow_workers",
            &[("status", "suspended"), ("memory", "evicted")],
        )?;
        if out == 1.0 {
            assert_eq!(
                value(&metrics, "vow_evictions_total", &[("reason", "parked")])?,
                1.0
            );
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the worker never left memory"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let complete = format!("/v1/components/{cid}/workers/sleeper/complete");
    let (status, body) = app
        .post(&complete, &json!({ "oplogIdx": idx, "data": [1] }))
        .await?;
    assert_eq!((status, body), (StatusCode::OK, json!(true)));
    let (status, body) = parked.await??;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = scrape(&app).await?;
    // Brought back by replay to resume: the resume time includes it.
    assert_eq!(
        value(&metrics, "vow_replays_total", &[("outcome", "ok")])?,
        1.0
    );
    assert_eq!(observed(&metrics, "vow_replay_duration_seconds")?, 1.0);
    assert_eq!(observed(&metrics, "vow_completion_resume_seconds")?, 1.0);
    assert_eq!(
        value(&metrics, "vow_invocations_total", &[("outcome", "ok")])?,
        1.0
    );
    Ok(())
}

#[tokio::test]
async fn metrics_need_the_token_and_can_be_turned_off() -> Result<()> {
    let app = App::with_config(ServerConfig {
        auth_token: Some("s3cret".to_owned()),
        ..ServerConfig::default()
    })?;
    let (status, _) = scrape_with(&app, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, metrics) = scrape_with(&app, Some("s3cret")).await?;
    assert_eq!(status, StatusCode::OK);
    let refused = [("route", "/metrics"), ("status", "401")];
    assert_eq!(value(&metrics, "vow_http_requests_total", &refused)?, 1.0);

    let off = App::with_executor(Executor::builder().metrics(false))?;
    let (status, body) = off.get("/metrics").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    Ok(())
}
