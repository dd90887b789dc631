//! The web UI: one HTML page and a few ES modules, compiled into the binary
//! and served by the gateway under `/ui/`.
//!
//! The scripts are a client of the REST API (`/api/v1/...`) with the
//! caller's bearer token, exactly as the CLI is: the UI has no routes,
//! queries or rules of its own, so the two cannot drift and authorization
//! is decided in one place. No Node build step: the files here are what the
//! browser runs.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file the UI is made of; `index.html` is the page, the rest are
/// loaded by it.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/app.js"),
    },
    Asset {
        name: "maker.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/maker.js"),
    },
    Asset {
        name: "admin.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/admin.js"),
    },
];

/// Scripts only from the gateway itself, no inline script or style, no
/// framing; `connect-src` allows https for an OIDC provider's token
/// endpoint.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self' https:; form-action 'self' https:; base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes: `/` and `/ui` redirect to `/ui/`, which serves the
/// page; `/ui/{file}` serves the scripts and styles.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

/// The names of the embedded files, for tests and diagnostics.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI file {name}; the UI starts at /ui/"),
        )
            .into_response();
    };
    // Revalidated on every load (no-cache) but answered with 304 when
    // unchanged, so a new gateway version is picked up at once.
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(asset.body.as_bytes()))[..16]
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_the_page_with_a_strict_policy_and_revalidates() {
        let page = get("/ui/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let etag = page.headers()[header::ETAG].to_str().unwrap().to_owned();
        let again = get("/ui/", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let root = get("/", None).await;
        assert_eq!(root.status(), StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn every_script_the_page_loads_is_served_and_unknown_files_are_404() {
        for name in asset_names() {
            let r = get(&format!("/ui/{name}"), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
        }
        let missing = get("/ui/nope.js", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        // Every module imported by a script is one of the embedded files.
        for asset in ASSETS {
            for line in asset.body.lines() {
                if let Some(rest) = line.split("from \"./").nth(1) {
                    let file = rest.split('"').next().unwrap();
                    assert!(
                        asset_names().any(|n| n == file),
                        "{} imports {file}, which is not embedded",
                        asset.name
                    );
                }
            }
        }
    }
}
