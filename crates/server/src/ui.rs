//! The web page: plain HTML, CSS and JavaScript modules from
//! `crates/server/assets/`, compiled into the binary, so `vow serve` needs
//! no build step and no network to serve it.
//!
//! The page and its assets carry no data, so they need no API token: the
//! page asks for the token and sends it with its API calls. Each answer has
//! a strong ETag (a digest of the bytes) and `Cache-Control: no-cache`, so
//! a browser revalidates with one small request and never runs the assets
//! of an older binary. The HTML is served with a Content-Security-Policy
//! that allows only this server's own scripts, styles and connections.
//! `docs/web-ui.md` describes the page.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

use crate::routes::AppState;

/// One file of the page.
struct Asset {
    /// Where it is served.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file, the link page's HTML last (it is served at `/v1/links/...`).
const ASSETS: &[Asset] = &[
    asset("/", HTML, include_bytes!("../assets/index.html")),
    asset(
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    asset("/ui/app.js", JS, include_bytes!("../assets/app.js")),
    asset("/ui/api.js", JS, include_bytes!("../assets/api.js")),
    asset("/ui/card.js", JS, include_bytes!("../assets/card.js")),
    asset("/ui/dom.js", JS, include_bytes!("../assets/dom.js")),
    asset("/ui/form.js", JS, include_bytes!("../assets/form.js")),
    asset("/ui/link.js", JS, include_bytes!("../assets/link.js")),
    asset("/ui/shared.js", JS, include_bytes!("../assets/shared.js")),
    asset("/ui/views.js", JS, include_bytes!("../assets/views.js")),
    asset(
        "/ui/icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
    asset("", HTML, include_bytes!("../assets/link.html")),
];

/// The index of the link page in [`ASSETS`].
const LINK_PAGE: usize = ASSETS.len() - 1;

const fn asset(path: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    Asset {
        path,
        content_type,
        bytes,
    }
}

/// What the HTML may load: this server's scripts, styles, icon and API,
/// nothing else; no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes of the page's files, outside the API's route table (they
/// are not part of the API, and not in its OpenAPI document).
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for (index, asset) in ASSETS.iter().enumerate() {
        if !asset.path.is_empty() {
            router = router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { serve(index, &headers) }),
            );
        }
    }
    router
}

/// Whether a path is one of the page's files (served without the API
/// token). Only their exact paths: nothing else under `/ui/` is open.
pub(crate) fn is_page(path: &str) -> bool {
    ASSETS.iter().any(|a| !a.path.is_empty() && a.path == path)
}

/// The page a completion link opens in a browser. It is not cached: its
/// URL holds the link's token.
pub(crate) fn link_page(headers: &HeaderMap) -> Response {
    let mut response = serve(LINK_PAGE, headers);
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// Whether a request for a resource that has both forms prefers HTML: it
/// names `text/html` with a weight at least that of `application/json`.
/// Browsers navigating send `text/html,...`; API clients send
/// `application/json`, `*/*` or nothing, and keep getting JSON.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let weight = |wanted: &str| {
        accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';');
                let media = parts.next()?.trim();
                media.eq_ignore_ascii_case(wanted).then(|| {
                    parts
                        .filter_map(|p| p.trim().strip_prefix("q="))
                        .find_map(|q| q.trim().parse::<f32>().ok())
                        .unwrap_or(1.0)
                })
            })
            .fold(None, |best: Option<f32>, q| {
                Some(best.map_or(q, |b| b.max(q)))
            })
    };
    match (weight("text/html"), weight("application/json")) {
        (Some(html), json) => html > 0.0 && html >= json.unwrap_or(0.0),
        (None, _) => false,
    }
}

/// The strong ETag of every asset, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The asset at `index`, or 304 when the browser already has it.
fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            given
                .split(',')
                .any(|t| t.trim() == etag || t.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type == HTML {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        // A link page's URL is a credential: it must not leave as a Referer.
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        assert!(wants_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!wants_html(&HeaderMap::new()));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("application/json, text/html;q=0.5")));
        assert!(!wants_html(&accept("text/html;q=0")));
        assert!(wants_html(&accept("TEXT/HTML; q=1, application/json; q=1")));
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        for asset in ASSETS {
            let Ok(text) = std::str::from_utf8(asset.bytes) else {
                continue;
            };
            for (at, _) in text.match_indices("from './") {
                let name = &text[at + "from './".len()..];
                let name = &name[..name.find('\'').unwrap_or(0)];
                let path = format!("/ui/{name}");
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{} imports {path}, which is not served",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn no_file_names_another_origin() {
        // The page must work with no internet; the CSP would block such a
        // load anyway, and this says which file has it. An SVG's XML
        // namespace is a name, not a load.
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.bytes);
            let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for origin in ["http://", "https://", "url(//", "@import"] {
                assert!(
                    !text.contains(origin),
                    "{} names {origin}",
                    if asset.path.is_empty() {
                        "link.html"
                    } else {
                        asset.path
                    }
                );
            }
        }
    }
}
