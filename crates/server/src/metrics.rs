//! `GET /metrics`: the executor's metrics and the server's own (requests
//! by route and status), in Prometheus' text format or, when the scraper
//! asks for it, OpenMetrics. `docs/metrics.md` lists them.
//!
//! Requests are counted by their route's template (`MatchedPath`, such as
//! `/v1/components/{cid}/workers/{name}`), never by their
//! raw path, so the number of series stays bounded by the route table
//! whatever clients send. A request that matches no route counts as
//! `route="unmatched"`.
//!
//! The route needs the API token when the server has one, as every route
//! with data does: Prometheus sends it with `authorization: {credentials:
//! TOKEN}` (or `bearer_token`) in its scrape config.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use tower::{Layer, Service};
use vow_runtime::metrics::{Format, Metrics};
use vow_runtime::prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use vow_runtime::prometheus_client::metrics::counter::Counter;
use vow_runtime::prometheus_client::metrics::family::Family;
use vow_runtime::prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::routes::AppState;

/// Where `GET /metrics` is served.
pub(crate) const PATH: &str = "/metrics";

/// The server's metrics, and what `GET /metrics` encodes.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    /// The executor's metrics and `requests`.
    registry: Arc<Registry>,
}

impl HttpMetrics {
    /// The server's metrics next to the executor's.
    pub(crate) fn new(executor: &Metrics) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let mut registry = Registry::default();
        executor.register(&mut registry);
        registry.register(
            "vow_http_requests",
            "HTTP requests answered, by method, route template and status.",
            requests.clone(),
        );
        Self {
            requests,
            registry: Arc::new(registry),
        }
    }

    /// The `GET /metrics` route, with these metrics as its state.
    pub(crate) fn route(&self) -> Router<AppState> {
        Router::new().route(PATH, get(scrape).with_state(self.clone()))
    }
}

/// A request's labels. The route is the matched path's shared string, so
/// counting a request allocates nothing once its series exists.
#[derive(Clone, Debug)]
struct RequestLabels {
    /// One of HTTP's methods, or `other`: a client may send any token as
    /// a method, and each would otherwise make a series.
    method: &'static str,
    route: Option<MatchedPath>,
    status: StatusCode,
}

impl RequestLabels {
    fn method(method: &Method) -> &'static str {
        match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            Method::PATCH => "PATCH",
            Method::TRACE => "TRACE",
            Method::CONNECT => "CONNECT",
            _ => "other",
        }
    }

    fn route(&self) -> &str {
        self.route.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RequestLabels {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method && self.status == other.status && self.route() == other.route()
    }
}

impl Eq for RequestLabels {}

impl Hash for RequestLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.method.hash(state);
        self.route().hash(state);
        self.status.hash(state);
    }
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        use vow_runtime::prometheus_client::encoding::EncodeLabel as _;
        ("method", self.method).encode(encoder.encode_label())?;
        ("route", self.route()).encode(encoder.encode_label())?;
        ("status", self.status.as_str()).encode(encoder.encode_label())
    }
}

/// Counts every request once it is answered.
///
/// A layer of its own rather than `axum::middleware::from_fn`, which
/// clones the whole stack of services below it and boxes them for every
/// request: outermost, that measured about 3 µs a request with
/// `benches/metrics.rs`; this layer 2.3 to 2.8 µs, most of it the layer's
/// place in the router rather than the counting.
#[derive(Clone)]
pub(crate) struct CountLayer(HttpMetrics);

impl CountLayer {
    pub(crate) fn new(metrics: HttpMetrics) -> Self {
        Self(metrics)
    }
}

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            requests: self.0.requests.clone(),
        }
    }
}

/// The service of [`CountLayer`].
#[derive(Clone)]
pub(crate) struct Count<S> {
    inner: S,
    requests: Family<RequestLabels, Counter>,
}

impl<S> Service<Request> for Count<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = RequestLabels::method(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        let requests = self.requests.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let labels = RequestLabels {
                method,
                route,
                status: response.status(),
            };
            requests.get_or_create(&labels).inc();
            Ok(response)
        })
    }
}

/// `GET /metrics`: Prometheus' text format, or OpenMetrics when the
/// `Accept` header asks for it.
async fn scrape(State(metrics): State<HttpMetrics>, headers: HeaderMap) -> Response {
    let format = format_for(&headers);
    // Counting workers by status reads the whole worker table: off the
    // async threads.
    let registry = Arc::clone(&metrics.registry);
    let encoded = tokio::task::spawn_blocking(move || format.encode(&registry)).await;
    match encoded {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            text,
        )
            .into_response(),
        Ok(Err(_)) | Err(_) => {
            tracing::error!("encoding the metrics failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded",
            )
            .into_response()
        }
    }
}

/// OpenMetrics if the scraper accepts it, else Prometheus' text format.
fn format_for(headers: &HeaderMap) -> Format {
    let accepts_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if accepts_openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_asks_for_openmetrics_and_others_get_the_text_format() {
        let mut headers = HeaderMap::new();
        assert_eq!(format_for(&headers), Format::Prometheus);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            ),
        );
        assert_eq!(format_for(&headers), Format::OpenMetrics);
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        assert_eq!(format_for(&headers), Format::Prometheus);
    }
}
