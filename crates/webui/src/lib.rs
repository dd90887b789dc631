//! The web UI: one HTML page and a few ES modules, compiled into the binary
//! and served by the gateway under `/ui/`.
//!
//! The scripts are a client of the REST API (`/api/v1/...`) with the
//! caller's bearer token, exactly as the CLI is: the UI has no routes,
//! queries or rules of its own, so the two cannot drift and authorization
//! is decided in one place. No Node build step: the files here are what the
//! browser runs.

use std::sync::Arc;

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
/// framing; `connect-src` is the gateway plus the origins of
/// [`UiOptions`] (an identity provider's), never every https site.
const CSP_BEFORE_CONNECT: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";
const CSP_AFTER_CONNECT: &str = "; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Origins the page may reach besides the gateway's own. Sign-in with an
/// identity provider runs in the browser (authorization code with PKCE):
/// the page posts the code to the provider's token endpoint and may read
/// its discovery document, so the Content-Security-Policy must let it
/// connect there, and only there.
#[derive(Clone, Default)]
pub struct UiOptions {
    /// Origins (`scheme://host[:port]`, http or https) the page may fetch
    /// from, e.g. the OIDC issuer's. A trailing `/` is ignored; entries
    /// that are not such an origin are left out, since they cannot be put
    /// in the header safely.
    pub connect_origins: Vec<String>,
    /// More such origins, asked again on every page load: for ones learnt
    /// after the router is built (a token endpoint named by a discovery
    /// document that the gateway fetches later).
    pub more_connect_origins: Option<Arc<dyn Fn() -> Vec<String> + Send + Sync>>,
}

impl std::fmt::Debug for UiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiOptions")
            .field("connect_origins", &self.connect_origins)
            .field(
                "more_connect_origins",
                &self.more_connect_origins.as_ref().map(|more| more()),
            )
            .finish()
    }
}

impl UiOptions {
    /// The Content-Security-Policy of the UI's files with these options.
    pub fn content_security_policy(&self) -> String {
        let mut origins: Vec<String> = Vec::new();
        let more = self.more_connect_origins.as_ref().map(|more| more());
        for origin in self.connect_origins.iter().chain(more.iter().flatten()) {
            if let Some(origin) = csp_origin(origin)
                && !origins.contains(&origin)
            {
                origins.push(origin);
            }
        }
        let mut csp = String::from(CSP_BEFORE_CONNECT);
        for origin in origins {
            csp.push(' ');
            csp.push_str(&origin);
        }
        csp.push_str(CSP_AFTER_CONNECT);
        csp
    }
}

/// `origin` as a CSP source (lower case, no trailing `/`) when it is an
/// http(s) origin and nothing else: no path, query, wildcard, quote, space
/// or `;` that would change the policy's meaning.
fn csp_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!host.is_empty() && host.chars().all(allowed)).then_some(origin)
}

/// The UI's routes with no origins beyond the gateway's own (sign-in with
/// API tokens only); see [`router_with`].
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    router_with(UiOptions::default())
}

/// The UI's routes: `/` and `/ui` redirect to `/ui/`, which serves the
/// page; `/ui/{file}` serves the scripts and styles. `options` says what
/// else the page may connect to.
pub fn router_with<S: Clone + Send + Sync + 'static>(options: UiOptions) -> Router<S> {
    let options = Arc::new(options);
    let page = options.clone();
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers, &page) }),
        )
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers, &options)
            }),
        )
}

/// The names of the embedded files, for tests and diagnostics.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

fn serve(name: &str, headers: &HeaderMap, options: &UiOptions) -> Response {
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
    match HeaderValue::from_str(&options.content_security_policy()) {
        Ok(csp) => h.insert(header::CONTENT_SECURITY_POLICY, csp),
        // Unreachable (origins are checked to be plain ASCII), but never
        // serve the page without a policy.
        Err(_) => h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'"),
        ),
    };
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

    fn connect_src(csp: &str) -> Vec<&str> {
        let directive = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("connect-src "))
            .unwrap();
        directive.split_whitespace().skip(1).collect()
    }

    #[test]
    fn without_options_the_page_connects_only_to_the_gateway() {
        let csp = UiOptions::default().content_security_policy();
        assert_eq!(connect_src(&csp), ["'self'"], "{csp}");
        assert!(!csp.contains("https:"), "no blanket https: {csp}");
        assert!(csp.contains("form-action 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn the_policy_names_exactly_the_given_origins() {
        let options = UiOptions {
            connect_origins: vec![
                "http://127.0.0.1:8081".into(),
                "https://Login.Example.test/".into(),
                // Not origins: a path, a wildcard, policy syntax, another scheme.
                "https://login.example.test/tenant/v2.0".into(),
                "https://*.example.test".into(),
                "https://evil.test; script-src *".into(),
                "javascript://x".into(),
                "https://".into(),
            ],
            more_connect_origins: Some(Arc::new(|| {
                vec![
                    "https://tokens.example.test".into(),
                    "http://127.0.0.1:8081".into(),
                ]
            })),
        };
        let csp = options.content_security_policy();
        assert_eq!(
            connect_src(&csp),
            [
                "'self'",
                "http://127.0.0.1:8081",
                "https://login.example.test",
                "https://tokens.example.test",
            ],
            "{csp}"
        );
        assert!(!csp.contains("evil"), "{csp}");
        assert!(format!("{options:?}").contains("tokens.example.test"));
    }

    #[tokio::test]
    async fn the_served_page_carries_the_options_origins_asked_on_each_load() {
        let token_origin = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = token_origin.clone();
        let app = router_with::<()>(UiOptions {
            connect_origins: vec!["https://login.example.test".into()],
            more_connect_origins: Some(Arc::new(move || seen.lock().unwrap().clone())),
        });
        let csp_of = |response: Response| {
            response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_owned()
        };
        let page = |app: Router| async move {
            app.oneshot(Request::get("/ui/").body(Body::empty()).unwrap())
                .await
                .unwrap()
        };
        let before = csp_of(page(app.clone()).await);
        assert_eq!(
            connect_src(&before),
            ["'self'", "https://login.example.test"]
        );
        token_origin
            .lock()
            .unwrap()
            .push("https://tokens.example.test".into());
        let after = csp_of(page(app).await);
        assert_eq!(
            connect_src(&after),
            [
                "'self'",
                "https://login.example.test",
                "https://tokens.example.test"
            ]
        );
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
