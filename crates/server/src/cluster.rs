//! A node of a cluster: any node answers any request.
//!
//! Several `vow serve` processes share one PostgreSQL database; one of
//! them is **active** and runs the workers, the others are **standbys**
//! (`docs/cluster.md`). Every node serves [`front`]: while it is active,
//! requests go to its own routes ([`router`](crate::router)); while it is
//! a standby, they are forwarded to the active node's advertised URL,
//! streamed both ways, and its answer is passed back as it is. So a client
//! may send anything to any node: a completion sent to a standby settles
//! the promise on the active node and answers with its `true` or `false`.
//!
//! `GET /v1/nodes` is answered by every node itself, from the database.
//! While no node is active (between a node's death and its successor's
//! takeover), requests are answered 503 with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::ServerConfig;
use crate::error::ApiError;

/// Where a node sends the requests it gets.
#[derive(Clone, Debug)]
pub enum Target {
    /// This node is active: its own routes answer.
    Local(Router),
    /// Another node is active: requests are forwarded to it.
    Forward {
        /// Its id.
        node_id: String,
        /// Its advertised base URL.
        url: String,
    },
    /// No node can take requests now: why, for the 503's message.
    Unavailable(String),
}

/// What [`Nodes::list`] returns.
pub type NodesFuture<'a> = BoxFuture<'a, Result<Vec<NodeInfo>, String>>;

/// The nodes of the cluster, as `GET /v1/nodes` lists them.
pub trait Nodes: Send + Sync + 'static {
    /// Every node the database knows, by id, or why they cannot be read.
    fn list(&self) -> NodesFuture<'_>;
}

/// What a node is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// It holds the lease and runs the workers.
    Active,
    /// It is alive and forwards requests to the active node.
    Standby,
    /// It stopped renewing (it left, died or was cut off): listed for an
    /// hour after.
    Gone,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Its id (`vow serve --node-id`).
    pub node_id: String,
    /// Active, standby or gone.
    pub role: NodeRole,
    /// The epoch of this run of the node: a new one at each start.
    pub epoch: i64,
    /// Where other nodes forward requests to (`--advertise-url`).
    pub advertise_url: String,
    /// When this run joined (RFC 3339).
    pub started_at: String,
    /// Until when it counts as alive unless it renews (RFC 3339).
    pub expires_at: String,
    /// The lease's epoch, for the active node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<i64>,
    /// Until when the active node's lease runs unless renewed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// The active node's load at its last renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<NodeLoadInfo>,
}

/// An active node's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLoadInfo {
    /// Workers it holds, in memory or not.
    pub workers: u64,
    /// Workers in memory.
    pub resident: u64,
    /// Workers running an invocation.
    pub running: u64,
}

/// `GET /v1/nodes`'s answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeList {
    /// The node that answered.
    pub this_node: String,
    /// Every node, by id.
    pub nodes: Vec<NodeInfo>,
}

/// RFC 3339 of milliseconds since the Unix epoch.
pub fn millis_rfc3339(millis: i64) -> String {
    let at = if millis >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    };
    crate::time::rfc3339(at)
}

/// Marks a request a node forwarded, so that it is never forwarded again
/// (two nodes that briefly disagree on who is active cannot bounce it).
const FORWARDED_BY: HeaderName = HeaderName::from_static("x-vow-forwarded-by");

/// Headers of one hop, not passed on (RFC 9110, 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

#[derive(Clone)]
struct Front {
    node_id: Arc<str>,
    target: watch::Receiver<Target>,
    nodes: Arc<dyn Nodes>,
    client: reqwest::Client,
    unreachable: Arc<tokio::sync::Notify>,
}

/// The routes of node `node_id` of a cluster: `GET /v1/nodes` from
/// `nodes`, everything else to where `target` says. With an API token in
/// `config`, every request needs it here too (the active node checks it
/// again). `unreachable` is told each time the node forwarded to cannot be
/// reached, so that whoever keeps `target` current looks again at once
/// (it may have died, and another node taken over). Nodes served over
/// HTTPS are trusted by the system's roots and, when given, the PEM
/// certificates in `ca_cert` (a private CA, or the nodes' self-signed
/// certificate).
pub fn front(
    node_id: &str,
    config: &ServerConfig,
    nodes: Arc<dyn Nodes>,
    target: watch::Receiver<Target>,
    unreachable: Arc<tokio::sync::Notify>,
    ca_cert: Option<&std::path::Path>,
) -> Result<Router, crate::TlsError> {
    let mut client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // Forwarding is to the advertised URL only, never elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_cert {
        let pem_error = |reason: String| crate::TlsError::Pem {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| pem_error(e.to_string()))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| pem_error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(pem_error("no certificate in it".to_owned()));
        }
        for certificate in certificates {
            client = client.add_root_certificate(certificate);
        }
    }
    let client = client.build().map_err(|e| crate::TlsError::Pem {
        path: ca_cert.map(|p| p.display().to_string()).unwrap_or_default(),
        reason: error_chain(&e),
    })?;
    let front = Front {
        node_id: Arc::from(node_id),
        target,
        nodes,
        client,
        unreachable,
    };
    let mut router = Router::new()
        .route("/v1/nodes", get(list_nodes))
        .fallback(dispatch)
        .with_state(front);
    if let Some(token) = config.auth_token.as_deref().map(crate::auth::Token::new) {
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            crate::auth::require(token.clone(), request, next)
        }));
    }
    Ok(router.layer(axum::middleware::map_response(crate::json_charset)))
}

/// `GET /v1/nodes`: every node of the cluster.
async fn list_nodes(State(front): State<Front>) -> Response {
    match front.nodes.list().await {
        Ok(nodes) => axum::Json(NodeList {
            this_node: front.node_id.to_string(),
            nodes,
        })
        .into_response(),
        Err(reason) => unavailable(format!("cannot read the cluster's nodes: {reason}")),
    }
}

/// 503 with `Retry-After: 1`.
fn unavailable(message: String) -> Response {
    let mut response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn dispatch(State(front): State<Front>, request: Request) -> Response {
    let target = front.target.borrow().clone();
    match target {
        Target::Local(router) => match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        // A standby keeps no metrics of workers: an empty scrape, so that
        // scraping every node counts the active node's once.
        Target::Forward { .. } | Target::Unavailable(_) if request.uri().path() == "/metrics" => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            "# this node is a standby: it runs no workers\n",
        )
            .into_response(),
        Target::Unavailable(why) => unavailable(why),
        Target::Forward { node_id, .. } if request.headers().contains_key(&FORWARDED_BY) => {
            unavailable(format!(
                "this node is not active and the request was forwarded here already; node {node_id:?} is active as far as this node knows: retry"
            ))
        }
        Target::Forward { node_id, url } => forward(&front, &node_id, &url, request).await,
    }
}

/// Sends `request` to the node at `base` and streams its answer back.
async fn forward(front: &Front, node_id: &str, base: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut headers = passed_on(&parts.headers);
    headers.remove(header::HOST);
    if let Ok(value) = HeaderValue::from_str(&front.node_id) {
        headers.insert(FORWARDED_BY, value);
    }
    let sent = front
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        // Not sent: retrying is safe.
        Err(e) if e.is_connect() => {
            front.unreachable.notify_one();
            tracing::warn!(node = %node_id, %url, error = %e, "cannot forward a request to the active node");
            return unavailable(format!(
                "node {node_id:?} is active but cannot be reached from node {:?} ({}): retry; if it died, another node takes over once its lease expires",
                front.node_id,
                error_chain(&e)
            ));
        }
        // Sent, and perhaps acted on: a retry without an idempotency key
        // may do it twice.
        Err(e) => {
            tracing::warn!(node = %node_id, %url, error = %e, "a forwarded request got no answer");
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "node {node_id:?}, the active node, did not answer a request forwarded by node {:?} ({}): it may have been carried out; retry with the same Idempotency-Key",
                    front.node_id,
                    error_chain(&e)
                ),
            )
            .into_response();
        }
    };
    let status = answer.status();
    let headers = passed_on(answer.headers());
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `headers` without those of one hop: the fixed ones and any that
/// `Connection` names.
fn passed_on(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        kept.remove(name);
    }
    kept
}

/// An error with its causes, for a message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
