//! An in-process app, requests through `tower::ServiceExt::oneshot`, and
//! helpers for the steps most tests share.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use vow_runtime::Executor;
use vow_server::ServerConfig;

/// A compilation cache shared by every test of this binary, so each guest
/// is compiled once per run rather than once per test.
pub fn cache_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| vow_tests::guest_target_dir().join("server-compile-cache"))
        .clone()
}

/// The bytes of a guest component.
pub fn guest_bytes(name: &str) -> Result<Vec<u8>> {
    let path = vow_tests::guest(name)?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// A fresh executor (with the shared cache) for one test.
pub fn executor() -> Result<Executor> {
    Ok(Executor::builder().cache_dir(cache_dir()).build()?)
}

/// A status and a parsed JSON body.
pub type Reply = (StatusCode, Value);

/// The router of a fresh executor.
#[derive(Clone)]
pub struct App {
    pub router: Router,
}

impl App {
    pub fn new() -> Result<Self> {
        Self::with_config(ServerConfig::default())
    }

    /// The router of an executor made by `builder` (with the shared cache).
    pub fn with_executor(builder: vow_runtime::ExecutorBuilder) -> Result<Self> {
        Ok(Self {
            router: vow_server::router(
                builder.cache_dir(cache_dir()).build()?,
                ServerConfig::default(),
            ),
        })
    }

    pub fn with_config(config: ServerConfig) -> Result<Self> {
        Ok(Self {
            router: vow_server::router(executor()?, config),
        })
    }

    /// Sends a request; its status, headers and whole body, whatever
    /// the body is.
    pub async fn send_raw(&self, request: Request<Body>) -> Result<(StatusCode, HeaderMap, Bytes)> {
        let response = self.router.clone().oneshot(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// Sends a request; every answer must be JSON.
    pub async fn send(&self, request: Request<Body>) -> Result<Reply> {
        let (status, headers, bytes) = self.send_raw(request).await?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        ensure!(
            content_type == vow_server::JSON_CONTENT_TYPE,
            "{status} with content type {content_type:?}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let body = serde_json::from_slice(&bytes)
            .with_context(|| format!("{status}: {}", String::from_utf8_lossy(&bytes)))?;
        Ok((status, body))
    }

    pub async fn get(&self, uri: &str) -> Result<Reply> {
        self.send(Request::get(uri).body(Body::empty())?).await
    }

    pub async fn delete(&self, uri: &str) -> Result<Reply> {
        self.send(Request::delete(uri).body(Body::empty())?).await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Result<Reply> {
        self.send(json_request(Method::POST, uri, body)?).await
    }

    /// Uploads a guest; its component id.
    pub async fn upload(&self, guest: &str) -> Result<String> {
        let request = Request::post(format!("/v1/components?name={guest}"))
            .header(header::CONTENT_TYPE, "application/wasm")
            .body(Body::from(guest_bytes(guest)?))?;
        let (status, body) = self.send(request).await?;
        ensure!(status == StatusCode::CREATED, "upload: {status} {body}");
        body["componentId"]
            .as_str()
            .map(str::to_owned)
            .context("no componentId")
    }

    /// Starts a worker.
    pub async fn create_worker(&self, cid: &str, name: &str) -> Result<()> {
        let (status, body) = self
            .post(
                &format!("/v1/components/{cid}/workers"),
                &json!({ "name": name }),
            )
            .await?;
        ensure!(status == StatusCode::OK, "create worker: {status} {body}");
        Ok(())
    }

    /// Invokes and awaits with Vow's plain JSON params.
    pub async fn invoke(
        &self,
        cid: &str,
        worker: &str,
        function: &str,
        params: Value,
    ) -> Result<Reply> {
        self.post(
            &invoke_uri(cid, worker, function),
            &json!({ "params_json": params }),
        )
        .await
    }

    /// Invokes and awaits with `{"params": params}` as given (Golem's
    /// type-annotated form); the status and the body's exact text.
    pub async fn invoke_raw(
        &self,
        cid: &str,
        worker: &str,
        function: &str,
        params: Value,
    ) -> Result<(StatusCode, String)> {
        let request = json_request(
            Method::POST,
            &invoke_uri(cid, worker, function),
            &json!({ "params": params }),
        )?;
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8(bytes.to_vec())?))
    }

    /// Waits until `worker` is parked on a pending promise; its oplog index.
    pub async fn awaited_promise(&self, cid: &str, worker: &str) -> Result<u64> {
        let uri = format!("/v1/promises?status=pending&component={cid}&worker={worker}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&uri).await?;
            ensure!(status == StatusCode::OK, "{status} {body}");
            let awaited = body["promises"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["awaited"] == json!(true));
            if let Some(promise) = awaited {
                return promise["oplogIdx"].as_u64().context("no oplogIdx");
            }
            if Instant::now() > deadline {
                bail!("{worker} never awaited a promise: {body}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub fn invoke_uri(cid: &str, worker: &str, function: &str) -> String {
    format!("/v1/components/{cid}/workers/{worker}/invoke-and-await?function={function}")
}

pub fn json_request(method: Method, uri: &str, body: &Value) -> Result<Request<Body>> {
    Ok(Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, vow_server::JSON_CONTENT_TYPE)
        .body(Body::from(serde_json::to_vec(body)?))?)
}
