//! Uploading, listing and describing components.

use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::{App, guest_bytes};

#[tokio::test]
async fn upload_list_and_get_show_exports_with_wit_types() -> Result<()> {
    let app = App::new()?;
    let bytes = guest_bytes("approval")?;
    let request = Request::post("/v1/components?name=approval").body(Body::from(bytes.clone()))?;
    let (status, uploaded) = app.send(request).await?;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let cid = uploaded["componentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(cid.len(), 36, "{uploaded}");
    assert_eq!(uploaded["name"], "approval");
    assert_eq!(uploaded["size"], json!(bytes.len()));
    let sha = uploaded["sha256"].as_str().unwrap_or_default();
    assert!(
        sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
        "{sha}"
    );
    assert_eq!(
        uploaded["exports"],
        json!([{
            "name": "request-approval",
            "params": [{ "name": "subject", "type": "string" }],
            "results": ["string"],
        }])
    );

    let harness = app.upload("harness").await?;
    let (status, one) = app.get(&format!("/v1/components/{harness}")).await?;
    assert_eq!(status, StatusCode::OK);
    let exports = one["exports"].as_array().cloned().unwrap_or_default();
    let policy = exports
        .iter()
        .find(|e| e["name"] == "retry-policy-roundtrip")
        .cloned()
        .unwrap_or_default();
    assert_eq!(policy["params"][0]["name"], "policy");
    assert_eq!(
        policy["params"][0]["type"],
        "record { max-attempts: u32, min-delay: u64, max-delay: u64, multiplier: f64, max-jitter-factor: option<f64> }"
    );
    let ping = exports.iter().find(|e| e["name"] == "ping").cloned();
    assert_eq!(
        ping,
        Some(
            json!({ "name": "ping", "params": [{ "name": "n", "type": "u32" }], "results": ["u32"] })
        )
    );
    let fail = exports.iter().find(|e| e["name"] == "fail").cloned();
    assert_eq!(fail.map(|f| f["results"].clone()), Some(json!([])));

    let (status, listed) = app.get("/v1/components").await?;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = listed["components"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("approval"), json!("harness")]);
    assert_eq!(listed["components"][0], uploaded);
    Ok(())
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused_with_the_reason() -> Result<()> {
    let app = App::new()?;
    let request = Request::post("/v1/components?name=junk").body(Body::from("not wasm at all"))?;
    let (status, body) = app.send(request).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{body}");
    let message = errors[0].as_str().unwrap_or_default();
    assert!(message.starts_with("invalid component: "), "{message}");
    let (_, listed) = app.get("/v1/components").await?;
    assert_eq!(listed, json!({ "components": [] }));
    Ok(())
}

#[tokio::test]
async fn unsatisfiable_imports_are_named() -> Result<()> {
    let app = App::new()?;
    let request =
        Request::post("/v1/components?name=floor").body(Body::from(guest_bytes("floor")?))?;
    let (status, body) = app.send(request).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("component imports what vow does not provide: ")
            && message.contains("vow-bench:floor/waiter"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_and_malformed_component_ids() -> Result<()> {
    let app = App::new()?;
    let unknown = "00000000-0000-0000-0000-000000000001";
    let (status, body) = app.get(&format!("/v1/components/{unknown}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": format!("component {unknown} not found") })
    );
    let (status, body) = app
        .get(&format!("/v1/components/{unknown}/workers"))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": format!("component {unknown} not found") })
    );

    let (status, body) = app.get("/v1/components/not-a-uuid").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(
        message.starts_with("invalid component id \"not-a-uuid\": "),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn an_upload_needs_a_name() -> Result<()> {
    let app = App::new()?;
    let (status, body) = app
        .send(Request::post("/v1/components").body(Body::from(guest_bytes("approval")?))?)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(message.contains("missing field `name`"), "{body}");
    let (status, body) = app
        .send(Request::post("/v1/components?name=%20").body(Body::from(guest_bytes("approval")?))?)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({ "errors": ["the component name is empty"] }));
    Ok(())
}
