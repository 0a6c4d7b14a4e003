//! `vow serve --otlp-endpoint URL`: spans exported to an OpenTelemetry
//! collector over OTLP/HTTP with protobuf, through the SDK's batch span
//! processor, as service `vow` (`OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` change it; `OTEL_EXPORTER_OTLP_HEADERS` adds
//! headers; `OTEL_BSP_*` tune the batches).
//!
//! It is also where a W3C `traceparent` becomes a span's OpenTelemetry
//! parent: the runtime carries trace contexts as plain data and calls the
//! hook set here ([`vow_runtime::trace::set_join_hook`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};
use tracing_subscriber::registry::LookupSpan;
use vow_runtime::trace::TraceParent;

use crate::output;

/// How long one export may take, as the OTLP exporter's default.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The span export, to be flushed at exit.
pub(crate) struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Exports what is buffered and stops the batch processor's thread.
    pub(crate) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            output::error_line(&format!(
                "warning: the last spans were not exported: {error}"
            ));
        }
    }
}

/// The layer that turns spans into OpenTelemetry spans and exports them to
/// the collector at `endpoint` (a base URL: spans go to
/// `endpoint/v1/traces`, as with `OTEL_EXPORTER_OTLP_ENDPOINT`). Call it
/// inside the tokio runtime, which exports the batches.
pub(crate) fn layer<S>(endpoint: &str) -> anyhow::Result<(OpenTelemetryLayer<S, Tracer>, Exporter)>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let url = traces_url(endpoint)?;
    let client = TokioClient {
        client: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .context("cannot set up the OTLP exporter's HTTP client")?,
        runtime: tokio::runtime::Handle::try_current()
            .context("the OTLP exporter needs the tokio runtime")?,
        failing: AtomicBool::new(false),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.as_str())
        .build()
        .with_context(|| format!("cannot set up the OTLP exporter for {url}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer("vow");
    vow_runtime::trace::set_join_hook(join);
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Exporter { provider },
    ))
}

/// `endpoint/v1/traces`.
fn traces_url(endpoint: &str) -> anyhow::Result<reqwest::Url> {
    let base = reqwest::Url::parse(endpoint)
        .with_context(|| format!("--otlp-endpoint {endpoint:?} is not a URL"))?;
    if !matches!(base.scheme(), "http" | "https") {
        anyhow::bail!("--otlp-endpoint {endpoint:?}: an http:// or https:// URL is needed");
    }
    let path = format!("{}/v1/traces", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

/// Service `vow` at this version, unless `OTEL_SERVICE_NAME` names it.
fn resource() -> Resource {
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("vow");
    }
    resource.build()
}

/// Makes the caller's span (from a `traceparent`) the parent of `span`.
fn join(span: &tracing::Span, parent: &TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::NONE,
    );
    // Fails only for a span this layer does not see (filtered out) or one
    // it started already; either way it stays where it was.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The exporter's HTTP client: the workspace's reqwest on the process's
/// tokio runtime. The batch processor exports from a thread of its own and
/// blocks on each export; the request runs as a task of the runtime, and
/// that thread waits for it.
#[derive(Debug)]
struct TokioClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Whether the last export failed, so that a collector that is down is
    /// reported once, not every few seconds.
    failing: AtomicBool,
}

#[async_trait]
impl HttpClient for TokioClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let url = request.uri().to_string();
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await?;
        let failure = match &sent {
            Ok((status, _, _)) if status.is_success() => None,
            Ok((status, _, body)) => Some(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Err(error) => Some(error.to_string()),
        };
        match failure {
            Some(error) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(%url, %error, "cannot export spans; retrying with the next batch");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(%url, "exporting spans again");
            }
            _ => {}
        }
        let (status, headers, body) = sent?;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_go_to_v1_traces_under_the_base_url() -> anyhow::Result<()> {
        for (endpoint, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example/base/",
                "https://otel.example/base/v1/traces",
            ),
        ] {
            assert_eq!(traces_url(endpoint)?.as_str(), url);
        }
        assert!(traces_url("collector:4318").is_err());
        assert!(traces_url("not a url").is_err());
        Ok(())
    }
}
