//! Bearer tokens: OAuth 2.0 client credentials with caching, or a static
//! token for development.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::DataverseError;
use crate::client::RetryPolicy;

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// OAuth 2.0 client credentials grant (an app registration with a secret).
    ClientSecret {
        /// Token endpoint, e.g.
        /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
        token_url: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// Scope; `None` means `<environment url>/.default`.
        scope: Option<String>,
    },
    /// A bearer token used as is, never refreshed (development only).
    StaticToken(String),
}

impl std::fmt::Debug for Credentials {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientSecret {
                token_url,
                client_id,
                scope,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("scope", scope)
                .finish(),
            Self::StaticToken(_) => f.write_str("StaticToken(<redacted>)"),
        }
    }
}

#[derive(Debug)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Hands out a valid token, fetching a new one shortly before the cached one
/// expires (at half its lifetime when that is under ten minutes, else five
/// minutes before expiry).
#[derive(Debug)]
pub(crate) struct TokenSource {
    credentials: Credentials,
    scope: String,
    cache: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    // Entra ID v2 writes a number, v1 wrote a string.
    expires_in: serde_json::Value,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub(crate) fn new(credentials: Credentials, default_scope: String) -> Self {
        let scope = match &credentials {
            Credentials::ClientSecret { scope: Some(s), .. } => s.clone(),
            _ => default_scope,
        };
        Self {
            credentials,
            scope,
            cache: Mutex::new(None),
        }
    }

    /// Whether a 401 can be cured by fetching a new token.
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self.credentials, Credentials::ClientSecret { .. })
    }

    /// Forgets the cached token (after a 401).
    pub(crate) async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        policy: &RetryPolicy,
    ) -> Result<String, DataverseError> {
        let (token_url, client_id, client_secret) = match &self.credentials {
            Credentials::StaticToken(t) => return Ok(t.clone()),
            Credentials::ClientSecret {
                token_url,
                client_id,
                client_secret,
                ..
            } => (token_url, client_id, client_secret),
        };
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let auth_err = |message: String| DataverseError::Auth {
            url: token_url.clone(),
            message,
        };
        // The token endpoint is retried like the Web API: 429, 5xx, timeouts
        // and refused connections, with the same backoff and bound.
        let mut retries = 0u32;
        let (status, body) = loop {
            let sent = http
                .post(token_url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("scope", &self.scope),
                ])
                .send()
                .await;
            let transient = match &sent {
                Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
                Err(e) => e.is_timeout() || e.is_connect(),
            };
            if transient && retries < policy.max_retries {
                tokio::time::sleep(policy.backoff(retries)).await;
                retries += 1;
                continue;
            }
            let resp = sent.map_err(|e| auth_err(e.to_string()))?;
            let status = resp.status();
            break (
                status,
                resp.bytes().await.map_err(|e| auth_err(e.to_string()))?,
            );
        };
        if !status.is_success() {
            let message = match serde_json::from_slice::<TokenError>(&body) {
                Ok(e) => format!("{}: {}", e.error, e.error_description),
                Err(_) => format!("status {status}"),
            };
            return Err(auth_err(message));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| auth_err(format!("unexpected token response: {e}")))?;
        let lifetime = match &parsed.expires_in {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| auth_err("token response has no usable expires_in".into()))?;
        let lifetime = Duration::from_secs(lifetime);
        let margin = if lifetime < Duration::from_secs(600) {
            lifetime / 2
        } else {
            Duration::from_secs(300)
        };
        let token = parsed.access_token;
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        tracing::debug!(lifetime_secs = lifetime.as_secs(), "fetched access token");
        Ok(token)
    }
}
