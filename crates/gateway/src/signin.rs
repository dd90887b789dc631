//! What a browser needs to sign in, before it has any credentials
//! (`GET /api/v1/auth/config`): API tokens always work; OIDC (authorization
//! code with PKCE, in the browser) when `auth.oidc_client_id` is set next to
//! the `auth.oidc_*` keys the gateway checks tokens with. The provider's
//! endpoints come from its discovery document, which the gateway fetches
//! and caches, so the browser needs one answer from one origin; when the
//! provider does not answer, the endpoints are `null` and `discovery_url`
//! says where the browser may look itself.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use slipway_service::config::AuthConfig;
use tokio::sync::Mutex;

use crate::Gateway;

/// A discovery document is fetched again after this long.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// After a failed fetch, the next try waits this long (page loads must not
/// hammer a provider that is down).
const DISCOVERY_RETRY: Duration = Duration::from_secs(30);
/// How long the provider may take to answer.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer of `GET /api/v1/auth/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuthConfigView {
    /// API tokens (`slw_...`) are always accepted as bearer tokens.
    pub token: bool,
    /// OIDC sign-in, when configured; `null` otherwise.
    pub oidc: Option<OidcView>,
}

/// How a browser signs in with the identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OidcView {
    /// The provider's issuer; tokens must carry it as `iss`.
    pub issuer: String,
    /// The client id the browser signs in as (`auth.oidc_client_id`).
    pub client_id: String,
    /// The scopes to ask for (`auth.oidc_scope`).
    pub scope: String,
    /// From the discovery document; `null` when the gateway could not read it.
    pub authorization_endpoint: Option<String>,
    /// From the discovery document; `null` when the gateway could not read it.
    pub token_endpoint: Option<String>,
    /// The provider's discovery document (`<issuer>/.well-known/openid-configuration`).
    pub discovery_url: String,
}

/// Browser sign-in settings and the cached discovery document.
#[derive(Debug, Default)]
pub struct SignIn {
    oidc: Option<OidcSignIn>,
}

#[derive(Debug)]
struct OidcSignIn {
    issuer: String,
    client_id: String,
    scope: String,
    discovery_url: String,
    /// The issuer's origin: the page reads the discovery document there
    /// when the gateway could not.
    issuer_origin: Option<String>,
    /// The token endpoint's origin, once a discovery document named it;
    /// read on every page load (so not behind the async `cache` lock).
    token_origin: std::sync::Mutex<Option<String>>,
    http: reqwest::Client,
    cache: Mutex<Discovery>,
}

/// What is known of the discovery document.
#[derive(Debug, Default)]
struct Discovery {
    endpoints: Option<Endpoints>,
    fetched_at: Option<Instant>,
    failed_at: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    authorization: String,
    token: String,
}

/// The fields of a discovery document the browser needs.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

impl SignIn {
    /// The browser sign-in `config` asks for: none without
    /// `auth.oidc_client_id`; an error naming the keys when it is set
    /// without the keys the gateway checks the resulting tokens with.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<SignIn> {
        let Some(client_id) = &config.oidc_client_id else {
            return Ok(SignIn::default());
        };
        if client_id.trim().is_empty() {
            anyhow::bail!(
                "auth.oidc_client_id is empty; set it to the client id browsers sign in as, or leave it out"
            );
        }
        let missing: Vec<&str> = [
            ("auth.oidc_issuer", &config.oidc_issuer),
            ("auth.oidc_audience", &config.oidc_audience),
            ("auth.oidc_jwks_url", &config.oidc_jwks_url),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
        let Some(issuer) = config.oidc_issuer.as_deref().filter(|_| missing.is_empty()) else {
            anyhow::bail!(
                "auth.oidc_client_id is set, but the gateway could not check the tokens browsers get; also set {}",
                missing.join(", ")
            );
        };
        if config.oidc_scope.trim().is_empty() {
            anyhow::bail!(
                "auth.oidc_scope is empty; set the scopes browsers ask for, e.g. \"openid profile\""
            );
        }
        // reqwest is built without a TLS crypto provider; another one
        // installed first is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(DISCOVERY_TIMEOUT)
            .connect_timeout(DISCOVERY_TIMEOUT)
            .user_agent(concat!("slipway-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for OIDC discovery: {e}"))?;
        Ok(SignIn {
            oidc: Some(OidcSignIn {
                issuer: issuer.to_owned(),
                client_id: client_id.trim().to_owned(),
                scope: config.oidc_scope.trim().to_owned(),
                discovery_url: format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                ),
                issuer_origin: origin_of(issuer),
                token_origin: std::sync::Mutex::new(None),
                http,
                cache: Mutex::new(Discovery::default()),
            }),
        })
    }

    /// What `GET /api/v1/auth/config` answers, reading the discovery
    /// document when the cache has none or an old one.
    pub async fn view(&self) -> AuthConfigView {
        let oidc = match &self.oidc {
            None => None,
            Some(oidc) => {
                let endpoints = oidc.endpoints().await;
                Some(OidcView {
                    issuer: oidc.issuer.clone(),
                    client_id: oidc.client_id.clone(),
                    scope: oidc.scope.clone(),
                    authorization_endpoint: endpoints.as_ref().map(|e| e.authorization.clone()),
                    token_endpoint: endpoints.map(|e| e.token),
                    discovery_url: oidc.discovery_url.clone(),
                })
            }
        };
        AuthConfigView { token: true, oidc }
    }

    /// The origins the web UI must be allowed to connect to for sign-in:
    /// the issuer's, and the token endpoint's once the discovery document
    /// has named it. None without OIDC sign-in.
    pub fn connect_origins(&self) -> Vec<String> {
        let Some(oidc) = &self.oidc else {
            return Vec::new();
        };
        let token = oidc
            .token_origin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        oidc.issuer_origin.iter().cloned().chain(token).collect()
    }

    /// The web UI's options: its Content-Security-Policy lets the page
    /// reach [`SignIn::connect_origins`], asked on each page load (the
    /// token endpoint becomes known when the discovery document is read).
    pub fn ui_options(self: &std::sync::Arc<Self>) -> slipway_webui::UiOptions {
        if self.oidc.is_none() {
            return slipway_webui::UiOptions::default();
        }
        let signin = self.clone();
        slipway_webui::UiOptions {
            connect_origins: Vec::new(),
            more_connect_origins: Some(std::sync::Arc::new(move || signin.connect_origins())),
        }
    }
}

/// The origin (`scheme://host[:port]`) of an http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

impl OidcSignIn {
    /// The cached endpoints, fetched first when missing or old (but not
    /// again within [`DISCOVERY_RETRY`] of a failure); an old copy is kept
    /// when fetching a new one fails.
    async fn endpoints(&self) -> Option<Endpoints> {
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .fetched_at
            .is_some_and(|at| at.elapsed() < DISCOVERY_MAX_AGE);
        let resting = cache
            .failed_at
            .is_some_and(|at| at.elapsed() < DISCOVERY_RETRY);
        if !fresh && !resting {
            match self.fetch().await {
                Ok(endpoints) => {
                    *self
                        .token_origin
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        origin_of(&endpoints.token);
                    cache.endpoints = Some(endpoints);
                    cache.fetched_at = Some(Instant::now());
                    cache.failed_at = None;
                }
                Err(reason) => {
                    tracing::warn!(url = %self.discovery_url, %reason, "cannot read the OIDC discovery document; browsers get no endpoints");
                    cache.failed_at = Some(Instant::now());
                }
            }
        }
        cache.endpoints.clone()
    }

    async fn fetch(&self) -> Result<Endpoints, String> {
        let response = self
            .http
            .get(&self.discovery_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the provider answered {status}"));
        }
        let doc: DiscoveryDocument = response
            .json()
            .await
            .map_err(|e| format!("not a discovery document: {e}"))?;
        // OpenID Connect Discovery 1.0, 4.3: the issuers must be the same.
        if doc.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(format!(
                "the document names issuer {} instead of {}; check auth.oidc_issuer",
                doc.issuer, self.issuer
            ));
        }
        for (name, url) in [
            ("authorization_endpoint", &doc.authorization_endpoint),
            ("token_endpoint", &doc.token_endpoint),
        ] {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("{name} {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(format!("{name} {url:?} is not an http(s) URL"));
            }
        }
        Ok(Endpoints {
            authorization: doc.authorization_endpoint,
            token: doc.token_endpoint,
        })
    }
}

/// How a browser signs in: always with an API token, and with the identity
/// provider when OIDC sign-in is configured. Needs no credentials.
#[utoipa::path(get, path = "/api/v1/auth/config", tag = "access",
    responses((status = 200, description = "sign-in options; `oidc` is null unless auth.oidc_client_id is configured", body = AuthConfigView)))]
pub async fn auth_config(State(gw): State<Gateway>) -> Json<AuthConfigView> {
    Json(gw.signin.view().await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn oidc_config() -> AuthConfig {
        AuthConfig {
            oidc_issuer: Some("https://login.example.test/tenant/v2.0".into()),
            oidc_audience: Some("api://slipway".into()),
            oidc_jwks_url: Some("https://login.example.test/tenant/keys".into()),
            oidc_client_id: Some("browser-app".into()),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn without_a_client_id_browsers_only_get_tokens() {
        let mut config = oidc_config();
        config.oidc_client_id = None;
        assert!(SignIn::from_config(&config).unwrap().oidc.is_none());
        assert!(
            SignIn::from_config(&AuthConfig::default())
                .unwrap()
                .oidc
                .is_none()
        );
    }

    #[test]
    fn a_client_id_needs_the_keys_that_check_tokens() {
        let mut config = AuthConfig {
            oidc_client_id: Some("browser-app".into()),
            ..AuthConfig::default()
        };
        let err = SignIn::from_config(&config).unwrap_err().to_string();
        for key in [
            "auth.oidc_issuer",
            "auth.oidc_audience",
            "auth.oidc_jwks_url",
        ] {
            assert!(err.contains(key), "{err}");
        }
        config.oidc_client_id = Some(" ".into());
        let err = SignIn::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("auth.oidc_client_id is empty"), "{err}");
        let mut config = oidc_config();
        config.oidc_scope = String::new();
        let err = SignIn::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("auth.oidc_scope"), "{err}");
    }

    #[test]
    fn the_page_may_connect_to_the_issuer_and_then_the_token_endpoint() {
        let none = std::sync::Arc::new(SignIn::default());
        assert!(none.connect_origins().is_empty());
        assert!(
            !none
                .ui_options()
                .content_security_policy()
                .contains("https:")
        );

        let signin = std::sync::Arc::new(SignIn::from_config(&oidc_config()).unwrap());
        assert_eq!(signin.connect_origins(), ["https://login.example.test"]);
        let options = signin.ui_options();
        // The discovery document names a token endpoint elsewhere: the
        // next page load may post there.
        let oidc = signin.oidc.as_ref().unwrap();
        *oidc.token_origin.lock().unwrap() = origin_of("https://tokens.example.test:8443/t/token");
        assert_eq!(
            signin.connect_origins(),
            [
                "https://login.example.test",
                "https://tokens.example.test:8443"
            ]
        );
        let csp = options.content_security_policy();
        assert!(
            csp.contains(
                "connect-src 'self' https://login.example.test https://tokens.example.test:8443;"
            ),
            "{csp}"
        );
        assert_eq!(origin_of("ftp://files.example.test/x"), None);
        assert_eq!(origin_of("not a url"), None);
    }

    #[test]
    fn the_discovery_url_follows_the_issuer() {
        let mut config = oidc_config();
        config.oidc_issuer = Some("https://login.example.test/tenant/v2.0/".into());
        let signin = SignIn::from_config(&config).unwrap();
        let oidc = signin.oidc.unwrap();
        assert_eq!(
            oidc.discovery_url,
            "https://login.example.test/tenant/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(oidc.scope, "openid profile");
    }
}
