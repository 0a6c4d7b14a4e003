//! A node of a cluster: any node answers any request.
//!
//! Several `vow serve` processes share one PostgreSQL database, and each
//! worker runs on one of them, its owner (`docs/cluster.md`). Every node
//! serves [`front`]: a request about one worker
//! (`/v1/components/{cid}/workers/{name}/...`) goes to that worker's owner:
//! to this node's own routes ([`router`](crate::router)) when it is this
//! node (a free worker is taken over first), or forwarded to the owner's
//! advertised URL, streamed both ways, with its answer passed back as it
//! is. Everything else (listings, promises, links, components) is
//! answered here: every node knows every promise and lists every worker.
//! So a client may send anything to any node: a completion sent to a node
//! that does not own the worker settles the promise on its owner and
//! answers with its `true` or `false`.
//!
//! `GET /v1/nodes` is answered by every node itself, from the database.
//! While a node starts, drains or has stopped, it answers 503 with
//! `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::ServerConfig;
use crate::error::ApiError;

/// Whether a node takes requests.
#[derive(Clone, Debug)]
pub enum Target {
    /// It does: its own routes answer (and the workers it owns).
    Local(Router),
    /// It does not (it is starting, draining or stopped): why, for the
    /// 503's message.
    Unavailable(String),
}

/// Where a worker runs, from [`Placement::locate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// On this node (or nowhere: this node's routes answer that it does
    /// not exist).
    Here,
    /// On another node, reached at `url`.
    There {
        /// Its id.
        node_id: String,
        /// Its advertised base URL.
        url: String,
    },
    /// Cannot be told now: why, for the 503's message.
    Unavailable(String),
}

/// What [`Placement::locate`] returns.
pub type LocateFuture<'a> = BoxFuture<'a, Located>;

/// Which node runs a worker, for the requests about it.
pub trait Placement: Send + Sync + 'static {
    /// Where worker `name` of component `component` runs; a free worker is
    /// taken over by this node (and then [`Located::Here`]).
    fn locate<'a>(&'a self, component: uuid::Uuid, name: &'a str) -> LocateFuture<'a>;

    /// The node [`locate`](Self::locate) named for this worker could not
    /// be reached, or says the worker is not its own: forget anything
    /// remembered about where it runs. Nothing, by default.
    fn forget(&self, component: uuid::Uuid, name: &str) {
        let _ = (component, name);
    }
}

/// What [`Nodes::list`] returns.
pub type NodesFuture<'a> = BoxFuture<'a, Result<Vec<NodeInfo>, String>>;

/// The nodes of the cluster, as `GET /v1/nodes` lists them.
pub trait Nodes: Send + Sync + 'static {
    /// Every node the database knows, by id, or why they cannot be read.
    fn list(&self) -> NodesFuture<'_>;
}

/// Whether a node is in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// It renews its membership and runs the workers it owns.
    Alive,
    /// It stopped renewing (it left, died or was cut off): listed for an
    /// hour after. Its workers are free, and taken over by the others.
    Gone,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Its id (`vow serve --node-id`).
    pub node_id: String,
    /// Alive or gone.
    pub role: NodeRole,
    /// The epoch of this run of the node: a new one at each start.
    pub epoch: i64,
    /// Where other nodes forward requests for its workers to
    /// (`--advertise-url`).
    pub advertise_url: String,
    /// When this run joined (RFC 3339).
    pub started_at: String,
    /// Until when it counts as alive unless it renews (RFC 3339).
    pub expires_at: String,
    /// How many workers it owns now.
    pub owned: u64,
    /// Its load at its last renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<NodeLoadInfo>,
}

/// A node's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLoadInfo {
    /// Workers it runs, in memory or not.
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
/// (two nodes that briefly disagree on who owns a worker cannot bounce it).
const FORWARDED_BY: HeaderName = HeaderName::from_static("x-vow-forwarded-by");

/// On the answer to a forwarded request: the node it was forwarded to
/// does not run the worker (it names the node that does), so the node
/// that forwarded it looks again next time.
const NOT_OWNER: HeaderName = HeaderName::from_static("x-vow-not-owner");

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
    placement: Arc<dyn Placement>,
    client: reqwest::Client,
    unreachable: Arc<tokio::sync::Notify>,
}

/// The routes of node `node_id` of a cluster: `GET /v1/nodes` from
/// `nodes`, a request about one worker to the node `placement` says runs
/// it, everything else to `target`. With an API token in `config`, every
/// request needs it here too (the owner checks it again). `unreachable` is
/// told each time an owner cannot be reached, so that whoever keeps the
/// membership current looks again at once (it may have died, and its
/// workers be free). Nodes served over HTTPS are trusted by the system's
/// roots and, when given, the PEM certificates in `ca_cert` (a private
/// CA, or the nodes' self-signed certificate).
pub fn front(
    node_id: &str,
    config: &ServerConfig,
    nodes: Arc<dyn Nodes>,
    placement: Arc<dyn Placement>,
    target: watch::Receiver<Target>,
    unreachable: Arc<tokio::sync::Notify>,
    ca_cert: Option<&std::path::Path>,
) -> Result<Router, crate::TlsError> {
    let mut client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // An owner whose machine died, or that a partition cut off, is
        // noticed within about 11 s (a frozen process is not: its kernel
        // still answers), and the request answers 502.
        .tcp_keepalive(Duration::from_secs(5))
        .tcp_keepalive_interval(Duration::from_secs(2))
        .tcp_keepalive_retries(3)
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
        placement,
        client,
        unreachable,
    };
    let mut router = Router::new()
        .route("/v1/nodes", get(list_nodes))
        .fallback(about_worker)
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

/// Anything not about one worker: this node's routes answer.
async fn dispatch(State(front): State<Front>, request: Request) -> Response {
    let router = match front.target.borrow().clone() {
        Target::Local(router) => router,
        Target::Unavailable(why) => return unavailable(why),
    };
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A request about one worker (`/v1/components/{cid}/workers/{name}` and
/// the paths under it) goes to the worker's owner.
async fn about_worker(State(front): State<Front>, request: Request) -> Response {
    let Some((component, name)) = worker_of(request.uri().path(), request.method()) else {
        return dispatch(State(front), request).await;
    };
    if let Target::Unavailable(why) = &*front.target.borrow() {
        return unavailable(why.clone());
    }
    match front.placement.locate(component, &name).await {
        Located::Here => dispatch(State(front), request).await,
        Located::Unavailable(why) => unavailable(why),
        // Forwarded here by a node that took this one for the owner:
        // ownership moved meanwhile, and the client retries.
        Located::There { node_id, .. } if request.headers().contains_key(&FORWARDED_BY) => {
            let mut response = unavailable(format!(
                "worker {name:?} moved to node {node_id:?} while this request was forwarded to \
                 node {:?}: retry",
                front.node_id
            ));
            if let Ok(value) = HeaderValue::from_str(&node_id) {
                response.headers_mut().insert(NOT_OWNER, value);
            }
            response
        }
        Located::There { node_id, url } => {
            let response = forward(&front, &node_id, &url, request).await;
            let moved = response.status() == StatusCode::SERVICE_UNAVAILABLE
                && response.headers().contains_key(&NOT_OWNER);
            if moved || response.status() == StatusCode::BAD_GATEWAY {
                front.placement.forget(component, &name);
            }
            response
        }
    }
}

/// The worker a request is about: `/v1/components/{cid}/workers/{name}`
/// and the paths under it, except the listing `POST .../workers/find`.
/// `None` for anything else, and for a malformed path (this node's routes
/// say what is wrong with it).
fn worker_of(path: &str, method: &Method) -> Option<(uuid::Uuid, String)> {
    let rest = path.strip_prefix("/v1/components/")?;
    let (component, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("workers/")?;
    let (name, deeper) = match rest.split_once('/') {
        Some((name, _)) => (name, true),
        None => (rest, false),
    };
    if name.is_empty() || (name == "find" && !deeper && method == Method::POST) {
        return None;
    }
    let component = uuid::Uuid::parse_str(component).ok()?;
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?
        .into_owned();
    Some((component, name))
}

/// Sends `request` to the node at `base` and streams its answer back.
async fn forward(front: &Front, node_id: &str, base: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let worker = worker_of(parts.uri.path(), &parts.method);
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
            if let Some((component, name)) = &worker {
                front.placement.forget(*component, name);
            }
            tracing::warn!(node = %node_id, %url, error = %e, "cannot forward a request to the worker's owner");
            return unavailable(format!(
                "node {node_id:?} runs this worker but cannot be reached from node {:?} ({}): retry; if it died, another node takes its workers over once its lease expires",
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
                    "node {node_id:?}, which runs this worker, did not answer a request forwarded by node {:?} ({}): it may have been carried out; retry with the same Idempotency-Key",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_about_one_worker_are_told_apart() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let uuid = uuid::Uuid::parse_str(id).expect("a valid UUID");
        let about = |path: &str, method: Method| worker_of(path, &method);
        assert_eq!(
            about(
                &format!("/v1/components/{id}/workers/w%201/complete"),
                Method::POST
            ),
            Some((uuid, "w 1".to_owned()))
        );
        assert_eq!(
            about(&format!("/v1/components/{id}/workers/w1"), Method::DELETE),
            Some((uuid, "w1".to_owned()))
        );
        // The worker named `find`, and the listing that is not about one.
        assert_eq!(
            about(&format!("/v1/components/{id}/workers/find"), Method::GET),
            Some((uuid, "find".to_owned()))
        );
        assert_eq!(
            about(&format!("/v1/components/{id}/workers/find"), Method::POST),
            None
        );
        assert_eq!(
            about(&format!("/v1/components/{id}/workers"), Method::GET),
            None
        );
        assert_eq!(
            about(&format!("/v1/components/{id}/invoke"), Method::POST),
            None
        );
        assert_eq!(
            about("/v1/components/not-a-uuid/workers/w1", Method::GET),
            None
        );
        assert_eq!(about("/v1/promises", Method::GET), None);
    }
}
