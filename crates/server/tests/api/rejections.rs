//! Framework rejections answer in the contract's JSON error shape.

use anyhow::Result;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;
use vow_server::ServerConfig;

use crate::support::{App, json_request};

fn first_error(body: &serde_json::Value) -> String {
    body["errors"][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn malformed_json_bodies_are_400() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let uri = format!("/v1/components/{cid}/workers");
    let request = Request::post(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))?;
    let (status, body) = app.send(request).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        first_error(&body).starts_with("failed to parse the request body as JSON: "),
        "{body}"
    );

    let (status, body) = app.post(&uri, &json!({ "args": [] })).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        first_error(&body).contains("missing field `name`"),
        "{body}"
    );

    app.create_worker(&cid, "w").await?;
    let complete = format!("/v1/components/{cid}/workers/w/complete");
    let (status, body) = app
        .post(&complete, &json!({ "oplogIdx": 1, "data": [256] }))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(first_error(&body).contains("256"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_json_body_needs_the_json_content_type() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    let request = Request::post(format!("/v1/components/{cid}/workers"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{\"name\": \"w\"}"))?;
    let (status, body) = app.send(request).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["expected a request with `Content-Type: application/json`"] })
    );
    Ok(())
}

#[tokio::test]
async fn missing_queries_and_bad_paths_are_400() -> Result<()> {
    let app = App::new()?;
    let cid = app.upload("harness").await?;
    app.create_worker(&cid, "w").await?;
    let (status, body) = app
        .post(
            &format!("/v1/components/{cid}/workers/w/invoke-and-await"),
            &json!({ "params": [] }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "errors": ["failed to deserialize query string: missing field `function`"] })
    );
    let (status, body) = app.get("/v1/components/1234/workers/w").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        first_error(&body).starts_with("invalid component id \"1234\": "),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/v1/components/zzz/workers/w/complete",
            &json!({ "oplogIdx": 1, "data": [] }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        first_error(&body).starts_with("invalid component id \"zzz\": "),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() -> Result<()> {
    let app = App::with_config(ServerConfig {
        max_body_bytes: 1024,
        max_component_bytes: 4096,
        ..ServerConfig::default()
    })?;
    let request = Request::post("/v1/components?name=big").body(Body::from(vec![0u8; 5000]))?;
    let (status, body) = app.send(request).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        json!({ "error": "request body is larger than the limit of 4096 bytes" })
    );

    // A JSON body between the two limits: the JSON limit applies.
    let cid = "00000000-0000-0000-0000-000000000004";
    let big = json!({ "name": "w", "args": ["x".repeat(2000)] });
    let (status, body) = app
        .send(json_request(
            Method::POST,
            &format!("/v1/components/{cid}/workers"),
            &big,
        )?)
        .await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        json!({ "error": "request body is larger than the limit of 1024 bytes" })
    );
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() -> Result<()> {
    let app = App::new()?;
    let (status, body) = app.get("/v2/nothing").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({ "error": "no route for GET /v2/nothing" }));
    // A server that is not a node of a cluster says so.
    let (status, body) = app.get("/v1/nodes").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("this server is not a node of a cluster")),
        "{body}"
    );

    let response = tower::ServiceExt::oneshot(
        app.router.clone(),
        Request::put("/v1/components").body(Body::empty())?,
    )
    .await?;
    let allow = response.headers().get(header::ALLOW).cloned();
    assert_eq!(
        allow.as_ref().and_then(|v| v.to_str().ok()),
        Some("POST,GET,HEAD")
    );
    let (status, body) = app
        .send(Request::put("/v1/components").body(Body::empty())?)
        .await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        json!({ "error": "method PUT is not allowed on /v1/components" })
    );
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_is_served() -> Result<()> {
    let app = App::new()?;
    let (status, doc) = app.get("/openapi.json").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"]
        .as_object()
        .map(|p| p.len())
        .unwrap_or_default();
    assert_eq!(paths, 27, "{doc}");
    assert!(doc["paths"]["/v1/components/{cid}/workers/{name}/complete"]["post"].is_object());
    Ok(())
}

/// The route table documents what it routes by construction (a handler is
/// registered with the router and the document in one step); this checks
/// the other way: every operation of the document reaches a handler, not
/// the answers for unknown paths and methods.
#[tokio::test]
async fn every_documented_operation_is_routed() -> Result<()> {
    let app = App::new()?;
    let (_, doc) = app.get("/openapi.json").await?;
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert_eq!(paths.len(), 27, "{doc}");
    for (path, ops) in paths {
        if path == "/v1/events" {
            // An endless stream: its answer is never whole. Its route is
            // tested in ui.rs.
            continue;
        }
        let uri = path
            .replace("{cid}", "0b4d6c2e-1f3a-4c5b-8d7e-9f0a1b2c3d4e")
            .replace("{name}", "w1")
            .replace("{idx}", "1")
            .replace("{token}", "t");
        for method in ops.as_object().into_iter().flat_map(|o| o.keys()) {
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .body(Body::empty())?;
            let (status, body) = app.send(request).await?;
            let error = body["error"].as_str().unwrap_or_default();
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !error.starts_with("no route for"),
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn with_a_token_every_route_needs_it() -> Result<()> {
    let app = App::with_config(ServerConfig {
        auth_token: Some("s3cret".to_owned()),
        ..ServerConfig::default()
    })?;
    let with = |token: Option<&str>, uri: &str| -> Result<Request<Body>> {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Ok(request.body(Body::empty())?)
    };
    for uri in ["/v1/components", "/v1/promises", "/v1/nowhere"] {
        let (status, body) = app.send(with(None, uri)?).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            body,
            json!({ "error": "this server needs an API token: send Authorization: Bearer <token> (the CLI reads it from --token or VOW_AUTH_TOKEN)" })
        );
        let (status, body) = app.send(with(Some("guess"), uri)?).await?;
        assert_eq!(
            (status, body),
            (
                StatusCode::UNAUTHORIZED,
                json!({ "error": "wrong API token" })
            )
        );
    }
    let (status, _) = app.send(with(Some("s3cret"), "/v1/components")?).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send(with(Some("s3cret"), "/v1/nowhere")?).await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "with the token, unknown paths are 404 again"
    );
    let (status, doc) = app.send(with(None, "/openapi.json")?).await?;
    assert_eq!(status, StatusCode::OK, "the document stays open");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    Ok(())
}
