//! W3C trace context on requests: a `traceparent` header joins the
//! request's span, and any invocation the request queues, to the caller's
//! trace.
//!
//! The request's span is joined here, as it is made; an invocation carries
//! the parsed header into the runtime ([`Invocation::with_trace_parent`]),
//! because it runs later, on its worker's task, and may outlive the
//! request. A header W3C says to ignore (malformed, or repeated) is
//! ignored: the request is served as if it had none.
//!
//! [`Invocation::with_trace_parent`]: vow_runtime::Invocation::with_trace_parent

use std::borrow::Cow;

use axum::http::{HeaderMap, Request, Uri};
use tracing::field::Empty;
use vow_runtime::trace::TraceParent;

/// The W3C trace context header.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The caller's trace context, if the request carries one valid
/// `traceparent` header.
pub(crate) fn trace_parent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    TraceParent::parse(value.to_str().ok()?)
}

/// The span of one request (INFO, as tower-http's default one with
/// `method`, `uri` and `version`), joined to the caller's trace when the
/// request says which (its `trace_id` field then holds the trace id).
///
/// A completion link's token is a credential, so the `uri` shows
/// `/v1/links/…` in its place: spans reach logs and OTLP collectors.
pub(crate) fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %shown_uri(request.uri()),
        version = ?request.version(),
        trace_id = Empty,
    );
    if let Some(parent) = trace_parent(request.headers()) {
        vow_runtime::trace::join(&span, &parent);
    }
    span
}

/// Where a link's token starts in a path.
const LINKS: &str = "/v1/links/";

/// `uri` as spans show it: with a completion link's token left out.
fn shown_uri(uri: &Uri) -> Cow<'_, str> {
    let path = uri.path();
    let Some(token) = path.strip_prefix(LINKS) else {
        return Cow::Owned(uri.to_string());
    };
    // What follows the token (`/complete`, `/reject`) is kept.
    let rest = token.find('/').map_or("", |at| &token[at..]);
    Cow::Owned(format!("{LINKS}…{rest}"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn one_valid_header_is_read_and_anything_else_ignored() {
        let mut headers = HeaderMap::new();
        assert_eq!(trace_parent(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static(HEADER));
        assert_eq!(
            trace_parent(&headers).map(|p| p.to_string()).as_deref(),
            Some(HEADER)
        );
        // Two headers: W3C leaves no way to pick one.
        headers.append(TRACEPARENT, HeaderValue::from_static(HEADER));
        assert_eq!(trace_parent(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-nonsense"));
        assert_eq!(trace_parent(&headers), None);
    }

    #[test]
    fn a_link_token_never_reaches_a_span() {
        let shown = |uri: &str| shown_uri(&uri.parse().expect("a valid URI")).into_owned();
        assert_eq!(shown("/v1/links/s3cr3t"), "/v1/links/…");
        assert_eq!(shown("/v1/links/s3cr3t/complete"), "/v1/links/…/complete");
        assert_eq!(
            shown("/v1/promises?status=pending"),
            "/v1/promises?status=pending"
        );
    }
}
