//! A small HTTP client for Vow's REST API (docs/rest-api.md).
//!
//! Every answer is JSON. A failure status becomes an error whose message is
//! the server's own (`{"error": ...}` or `{"errors": [...]}`), so users see
//! what the server said rather than a status code.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

/// A connection to one server.
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
}

/// A request: method, path segments (escaped when joined) and query.
pub(crate) struct Request<'a> {
    method: Method,
    path: &'a [&'a str],
    query: Vec<(&'a str, String)>,
    headers: HeaderMap,
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: Method, path: &'a [&'a str]) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Adds a query parameter.
    pub(crate) fn query(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// Adds a header; an invalid value is an error, not a silent omission.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> anyhow::Result<Self> {
        let value = value
            .parse()
            .with_context(|| format!("invalid value for header {name}: {value:?}"))?;
        self.headers.insert(name, value);
        Ok(self)
    }
}

impl Client {
    /// A client for the server at `server` (`http://host:port`, optionally
    /// with a path prefix).
    /// With `token`, every request carries `Authorization: Bearer token`.
    #[cfg(test)]
    pub(crate) fn new(server: &str, token: Option<&str>) -> anyhow::Result<Self> {
        Self::with_ca(server, token, None)
    }

    /// A client for the server of the command line's `--server`, `--token`
    /// and `--ca-cert`.
    pub(crate) fn for_server(args: &crate::ServerArgs) -> anyhow::Result<Self> {
        Self::with_ca(args.url(), args.token.as_deref(), args.ca_cert.as_deref())
    }

    /// [`new`](Self::new), also trusting the CA certificate in the PEM file
    /// `ca_cert` for an https:// server.
    pub(crate) fn with_ca(
        server: &str,
        token: Option<&str>,
        ca_cert: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let base = Url::parse(server)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| {
                anyhow!(
                    "invalid server URL {server:?}: expected http://HOST:PORT or https://HOST:PORT"
                )
            })?;
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| anyhow!("the API token has characters a header cannot carry"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .default_headers(headers);
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            http = http.add_root_certificate(certificate);
        }
        let http = http.build().context("cannot set up the HTTP client")?;
        Ok(Self { http, base })
    }

    /// Sends a request without a body.
    pub(crate) async fn call(&self, request: Request<'_>) -> anyhow::Result<Value> {
        let builder = self.builder(request)?;
        self.send(builder).await
    }

    /// Sends a request with a JSON body.
    pub(crate) async fn call_json(
        &self,
        request: Request<'_>,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let builder = self.builder(request)?.json(body);
        self.send(builder).await
    }

    /// Sends a request with a binary body.
    pub(crate) async fn call_bytes(
        &self,
        request: Request<'_>,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let builder = self
            .builder(request)?
            .header(CONTENT_TYPE, "application/wasm")
            .body(body);
        self.send(builder).await
    }

    fn builder(&self, request: Request<'_>) -> anyhow::Result<RequestBuilder> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("invalid server URL {}", self.base))?
            .pop_if_empty()
            .extend(request.path);
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(request.query);
        }
        tracing::debug!(method = %request.method, %url, "request");
        Ok(self
            .http
            .request(request.method, url)
            .headers(request.headers))
    }

    async fn send(&self, builder: RequestBuilder) -> anyhow::Result<Value> {
        let response = builder.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        tracing::debug!(%status, bytes = body.len(), "response");
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            return Err(anyhow!(server_error(status, json.as_ref(), &body)));
        }
        match json {
            Some(json) => Ok(json),
            None if body.is_empty() => Ok(Value::Null),
            None => Err(anyhow!(
                "the server at {} answered {status} with a body that is not JSON: {}",
                self.base,
                snippet(&body)
            )),
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> anyhow::Error {
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        if error.is_connect() {
            anyhow!(
                "cannot reach the vow server at {}: {cause} (is `vow serve` running? \
                 Pass --server URL or set VOW_SERVER to use another)",
                self.base
            )
        } else {
            anyhow!("request to the vow server at {} failed: {cause}", self.base)
        }
    }
}

/// The message of a failed request: the server's own words when it sent the
/// documented JSON error shape, otherwise the status and what came back.
fn server_error(status: StatusCode, json: Option<&Value>, body: &[u8]) -> String {
    if let Some(json) = json {
        if let Some(message) = json.get("error").and_then(Value::as_str) {
            return message.to_owned();
        }
        // Golem's 500 body: `{"golemError": {"type", "details"?, ...}}`.
        if let Some(golem) = json.get("golemError") {
            return match golem.get("details").and_then(Value::as_str) {
                Some(details) => details.to_owned(),
                None => golem.to_string(),
            };
        }
        if let Some(errors) = json.get("errors").and_then(Value::as_array) {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect();
            if !messages.is_empty() {
                return messages.join("; ");
            }
        }
    }
    if body.is_empty() {
        format!("the server answered {status}")
    } else {
        format!("the server answered {status}: {}", snippet(body))
    }
}

/// The start of a body, on one line, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_become_messages() {
        let not_found = json!({"error": "promise x not found"});
        assert_eq!(
            server_error(StatusCode::NOT_FOUND, Some(&not_found), b""),
            "promise x not found"
        );
        let bad = json!({"errors": ["params[0]: expected string, got number", "extra"]});
        assert_eq!(
            server_error(StatusCode::BAD_REQUEST, Some(&bad), b""),
            "params[0]: expected string, got number; extra"
        );
        assert_eq!(
            server_error(StatusCode::BAD_GATEWAY, None, b"<html>\n oops </html>"),
            "the server answered 502 Bad Gateway: <html> oops </html>"
        );
    }

    #[test]
    fn path_segments_are_escaped() -> anyhow::Result<()> {
        let client = Client::new("http://127.0.0.1:9881/prefix/", None)?;
        let request = Request::new(Method::GET, &["v1", "components", "c", "workers", "a b?#"])
            .query("function", "f");
        let built = client.builder(request)?.build()?;
        assert_eq!(
            built.url().as_str(),
            "http://127.0.0.1:9881/prefix/v1/components/c/workers/a%20b%3F%23?function=f"
        );
        Ok(())
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(Client::new("127.0.0.1:9881", None).is_err());
        assert!(Client::new("ftp://example", None).is_err());
        assert!(Client::new("http://localhost:1", None).is_ok());
    }
}
