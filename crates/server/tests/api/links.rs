//! Completion links: a token that settles one promise and nothing else.

use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use vow_server::ServerConfig;

use crate::support::App;

const PAYLOAD: &[u8] = b"approved by ana";
const EXPECTED: &str = "\"deploy\": approved by ana";

/// A parked `request-approval` call; its worker is `approver`.
struct Parked {
    cid: String,
    idx: u64,
    call: tokio::task::JoinHandle<Result<(StatusCode, Value)>>,
}

async fn park(app: &App) -> Result<Parked> {
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
    Ok(Parked { cid, idx, call })
}

fn token_of(link: &Value) -> Result<String> {
    link["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the link")
}

/// The same token with one character changed.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn a_link_completes_its_promise_once_and_allows_nothing_else() -> Result<()> {
    let app = App::new()?;
    let Parked { cid, idx, call } = park(&app).await?;
    let mint = format!("/v1/components/{cid}/workers/approver/promises/{idx}/link");

    let (status, link) = app.post(&mint, &json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{link}");
    let token = token_of(&link)?;
    assert_eq!(link["action"], "complete");
    // Without a public URL the executor cannot make an absolute one.
    assert_eq!(link["url"], json!(format!("/v1/links/{token}")));
    let expires = link["expiresAt"].as_str().unwrap_or_default();
    assert!(expires.ends_with('Z') && expires.len() >= 20, "{expires}");

    // What the holder sees: the promise, without a payload.
    let (status, view) = app.get(&format!("/v1/links/{token}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["promiseId"], json!(format!("{cid}/approver/{idx}")));
    assert_eq!(view["workerName"], "approver");
    assert_eq!(view["status"], "pending");
    assert_eq!(view["awaited"], json!(true));
    assert_eq!(view["action"], "complete");
    assert_eq!(view["linkExpiresAt"], link["expiresAt"]);
    assert!(view.get("data").is_none());

    // A complete-only link cannot reject.
    let (status, body) = app
        .post(
            &format!("/v1/links/{token}/reject"),
            &json!({ "error": "no" }),
        )
        .await?;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            json!({ "error": "this completion link allows only to complete the promise" })
        )
    );
    // An altered token is refused and settles nothing.
    let (status, body) = app
        .post(
            &format!("/v1/links/{}/complete", tampered(&token)),
            &json!({ "data": b"forged" }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("completion link"),
        "{body}"
    );
    let (status, _) = app.get("/v1/links/not-a-token").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let complete = format!("/v1/links/{token}/complete");
    assert_eq!(
        app.post(&complete, &json!({ "data": PAYLOAD })).await?,
        (StatusCode::OK, json!(true))
    );
    let (status, result) = tokio::time::timeout(Duration::from_secs(20), call).await???;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result, json!({ "result": EXPECTED }));
    // Clicked twice: already completed.
    assert_eq!(
        app.post(&complete, &json!({ "data": b"again" })).await?,
        (StatusCode::OK, json!(false))
    );
    let (_, view) = app.get(&format!("/v1/links/{token}")).await?;
    assert_eq!(view["status"], "completed");
    // A settled promise gets no new link.
    let (status, body) = app.post(&mint, &json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"],
        json!(format!("promise {cid}/approver/{idx} is already settled"))
    );
    Ok(())
}

#[tokio::test]
async fn a_reject_link_rejects_and_bad_requests_are_refused() -> Result<()> {
    let app = App::new()?;
    let Parked { cid, idx, call } = park(&app).await?;
    let mint = format!("/v1/components/{cid}/workers/approver/promises/{idx}/link");
    for (body, expected) in [
        (
            json!({ "expiresInSecs": 0 }),
            "a link lives between 1 ms and 366 days, not 0ns",
        ),
        (
            json!({ "action": "approve" }),
            "unknown variant `approve`, expected one of `complete`, `reject`, `both`",
        ),
        (json!({ "expires": 5 }), "unknown field `expires`"),
    ] {
        let (status, reply) = app.post(&mint, &body).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        let message = reply["errors"][0].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let (status, _) = app
        .post(
            &format!("/v1/components/{cid}/workers/nobody/promises/{idx}/link"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/v1/components/{cid}/workers/approver/promises/999/link"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No body at all is the default link.
    let request = Request::post(&mint).body(Body::empty())?;
    let (status, link) = app.send(request).await?;
    assert_eq!(
        (status, &link["action"]),
        (StatusCode::OK, &json!("complete"))
    );

    let (_, link) = app
        .post(&mint, &json!({ "action": "both", "expiresInSecs": 3600 }))
        .await?;
    let token = token_of(&link)?;
    let reject = format!("/v1/links/{token}/reject");
    assert_eq!(
        app.post(&reject, &json!({ "error": "not today", "data": [1, 2] }))
            .await?,
        (StatusCode::OK, json!(true))
    );
    let (status, result) = tokio::time::timeout(Duration::from_secs(20), call).await???;
    // Golem's await-promise traps on a rejected promise, naming the error.
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{result}");
    assert!(result.to_string().contains("not today"), "{result}");
    let (_, view) = app.get(&format!("/v1/links/{token}")).await?;
    assert_eq!(view["status"], "rejected");
    assert_eq!(view["error"]["message"], "not today");
    Ok(())
}

#[tokio::test]
async fn an_expired_link_is_forbidden() -> Result<()> {
    let app = App::new()?;
    let Parked { cid, idx, call } = park(&app).await?;
    let mint = format!("/v1/components/{cid}/workers/approver/promises/{idx}/link");
    let (_, link) = app.post(&mint, &json!({ "expiresInSecs": 1 })).await?;
    let token = token_of(&link)?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app
        .post(
            &format!("/v1/links/{token}/complete"),
            &json!({ "data": PAYLOAD }),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("this completion link expired at "),
        "{body}"
    );
    // The promise is still pending: the worker still waits.
    let (_, promise) = app
        .get(&format!(
            "/v1/components/{cid}/workers/approver/promises/{idx}"
        ))
        .await?;
    assert_eq!(promise["status"], "pending");
    call.abort();
    Ok(())
}

#[tokio::test]
async fn link_routes_need_no_api_token_and_minting_does() -> Result<()> {
    let app = App::with_config(ServerConfig {
        auth_token: Some("s3cret".to_owned()),
        ..ServerConfig::default()
    })?;
    let authorized = |request: axum::http::request::Builder| {
        request
            .header("authorization", "Bearer s3cret")
            .header("content-type", "application/json")
    };
    let cid = {
        let request = authorized(Request::post("/v1/components?name=approval"))
            .header("content-type", "application/wasm")
            .body(Body::from(crate::support::guest_bytes("approval")?))?;
        let (status, body) = app.send(request).await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["componentId"].as_str().unwrap_or_default().to_owned()
    };
    let request = authorized(Request::post(format!("/v1/components/{cid}/workers")))
        .body(Body::from(json!({ "name": "approver" }).to_string()))?;
    assert_eq!(app.send(request).await?.0, StatusCode::OK);
    let invoke = authorized(Request::post(format!(
        "/v1/components/{cid}/workers/approver/invoke?function=request-approval"
    )))
    .body(Body::from(json!({ "params_json": ["deploy"] }).to_string()))?;
    assert_eq!(app.send(invoke).await?.0, StatusCode::OK);
    // The promise of the first call is at index 3 (after the worker's
    // creation and the invocation's start); wait until it is listed.
    let mut idx = None;
    for _ in 0..200 {
        let request = authorized(Request::get("/v1/promises?status=pending")).body(Body::empty())?;
        let (_, list) = app.send(request).await?;
        if let Some(found) = list["promises"][0]["oplogIdx"].as_u64() {
            idx = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let idx = idx.context("the worker never created its promise")?;
    let mint = format!("/v1/components/{cid}/workers/approver/promises/{idx}/link");
    let (status, _) = app.post(&mint, &json!({})).await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "minting needs the API token"
    );
    let request = authorized(Request::post(&mint)).body(Body::from("{}"))?;
    let (status, link) = app.send(request).await?;
    assert_eq!(status, StatusCode::OK, "{link}");
    let token = token_of(&link)?;
    // The holder has no API token, and needs none.
    let (status, view) = app.get(&format!("/v1/links/{token}")).await?;
    assert_eq!(
        (status, &view["status"]),
        (StatusCode::OK, &json!("pending"))
    );
    assert_eq!(
        app.post(
            &format!("/v1/links/{token}/complete"),
            &json!({ "data": PAYLOAD })
        )
        .await?,
        (StatusCode::OK, json!(true))
    );
    // The link opens nothing else.
    let (status, _) = app.get("/v1/promises").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn a_payload_past_the_limit_is_413_and_settles_nothing() -> Result<()> {
    let app = App::with_executor(vow_runtime::Executor::builder().max_payload(PAYLOAD.len()))?;
    let Parked { cid, idx, call } = park(&app).await?;
    let too_big = [PAYLOAD, b"!"].concat();
    let complete = format!("/v1/components/{cid}/workers/approver/complete");
    let (status, body) = app
        .post(&complete, &json!({ "oplogIdx": idx, "data": too_big }))
        .await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.ends_with(&format!(
            "is {} bytes, more than the limit of {} (--max-payload)",
            PAYLOAD.len() + 1,
            PAYLOAD.len()
        )),
        "{body}"
    );
    // The same through a completion link; then the promise still waits,
    // and a payload of the limit completes it.
    let mint = format!("/v1/components/{cid}/workers/approver/promises/{idx}/link");
    let token = token_of(&app.post(&mint, &json!({})).await?.1)?;
    let (status, body) = app
        .post(
            &format!("/v1/links/{token}/complete"),
            &json!({ "data": too_big }),
        )
        .await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (_, view) = app.get(&format!("/v1/links/{token}")).await?;
    assert_eq!(view["status"], "pending", "{view}");
    assert_eq!(
        app.post(&complete, &json!({ "oplogIdx": idx, "data": PAYLOAD }))
            .await?,
        (StatusCode::OK, json!(true))
    );
    let (status, result) = tokio::time::timeout(Duration::from_secs(20), call).await???;
    assert_eq!(
        (status, result),
        (StatusCode::OK, json!({ "result": EXPECTED }))
    );
    Ok(())
}
