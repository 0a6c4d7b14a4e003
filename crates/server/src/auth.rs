//! API authentication: with a token configured, every route but the
//! OpenAPI document, completion links' own routes (whose token is their
//! credential) and the web page's files (which hold no data) needs
//! `Authorization: Bearer <token>`.
//!
//! The token is compared through SHA-256 digests, byte by byte without an
//! early exit, so the time a comparison takes says nothing about how much
//! of a guess was right, nor about the token's length.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// The path that stays open: clients read the scheme from it.
const OPEN: &str = "/openapi.json";

/// Completion links' routes: their token is their holder's credential.
const LINKS: &str = "/v1/links/";

/// A configured API token, kept as its digest.
#[derive(Clone)]
pub(crate) struct Token(Arc<[u8; 32]>);

impl Token {
    pub(crate) fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `given` is the token, in time that does not depend on it.
    fn matches(&self, given: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(given).into();
        let difference = digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }
}

/// Whether a request for `path` needs no API token. (The OpenAPI document
/// marks the same routes as needing none: a test checks it.)
pub(crate) fn is_open(path: &str) -> bool {
    path == OPEN || path.starts_with(LINKS)
}

/// The middleware: 401 with the JSON error body for a missing or wrong
/// token.
pub(crate) async fn require(token: Token, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // The web page's files hold no data: the page asks for the token.
    if is_open(path) || crate::ui::is_page(path) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(given) if token.matches(given) => next.run(request).await,
        given => {
            let message = if given.is_some() {
                "wrong API token"
            } else {
                "this server needs an API token: send Authorization: Bearer <token> (the CLI reads it from --token or VOW_AUTH_TOKEN)"
            };
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches() {
        let token = Token::new("s3cret");
        assert!(token.matches(b"s3cret"));
        assert!(!token.matches(b"s3cre"));
        assert!(!token.matches(b"s3cret "));
        assert!(!token.matches(b""));
    }
}
