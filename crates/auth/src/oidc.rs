//! OIDC / JWT bearer tokens checked against the identity provider's JWKS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use crate::AuthError;

/// One JWKS request may take this long in total (connect included).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS is a few KiB; refusing more keeps a broken endpoint from filling memory.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Real access tokens (even Entra's, with many groups) stay well below this.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Values from a token shown in an error are cut to this many characters.
const SHOWN_CHARS: usize = 120;

/// Where tokens come from and which claims say who the caller is.
///
/// Deserialises from the gateway's configuration; every field but `issuer`,
/// `audience` and `jwks_url` has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OidcSettings {
    /// Exact `iss` the tokens must carry, e.g.
    /// `https://login.microsoftonline.com/<tenant-id>/v2.0` for Entra ID.
    pub issuer: String,
    /// Value that must appear in the token's `aud`, e.g. the API's
    /// application (client) id or `api://slipway`.
    pub audience: String,
    /// The provider's `jwks_uri`, e.g.
    /// `https://login.microsoftonline.com/<tenant-id>/discovery/v2.0/keys`.
    pub jwks_url: String,
    /// Claim listing the caller's groups (string or array of strings).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim naming the caller. `sub` is pairwise per application in Entra ID;
    /// `oid` (object id) or `preferred_username` are stable alternatives there.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Least time between two JWKS refetches caused by an unknown `kid`:
    /// rotation is picked up at once, a flood of forged kids costs one fetch
    /// per interval.
    #[serde(default = "default_jwks_refresh_min_secs")]
    pub jwks_refresh_min_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Longest a fetched JWKS is used before it is fetched again even for
    /// known keys, so a key the provider withdrew stops being trusted. While
    /// the provider is unreachable, the old keys stay in use.
    #[serde(default = "default_jwks_max_age_secs")]
    pub jwks_max_age_secs: u64,
}

fn default_jwks_max_age_secs() -> u64 {
    24 * 60 * 60
}

fn default_groups_claim() -> String {
    "groups".to_string()
}

fn default_subject_claim() -> String {
    "sub".to_string()
}

fn default_jwks_refresh_min_secs() -> u64 {
    60
}

fn default_leeway_secs() -> u64 {
    60
}

impl OidcSettings {
    /// Settings with the defaults for everything but the three required values.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        OidcSettings {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            groups_claim: default_groups_claim(),
            subject_claim: default_subject_claim(),
            jwks_refresh_min_secs: default_jwks_refresh_min_secs(),
            leeway_secs: default_leeway_secs(),
            jwks_max_age_secs: default_jwks_max_age_secs(),
        }
    }

    fn validate(&self) -> Result<(), AuthError> {
        let bad = |msg: String| Err(AuthError::InvalidSettings(msg));
        for (field, value, example) in [
            (
                "issuer",
                &self.issuer,
                "https://login.microsoftonline.com/<tenant-id>/v2.0",
            ),
            ("audience", &self.audience, "api://slipway"),
            ("groups_claim", &self.groups_claim, "groups"),
            ("subject_claim", &self.subject_claim, "sub"),
        ] {
            if value.trim().is_empty() {
                return bad(format!("oidc.{field} is empty; set it, e.g. {example:?}"));
            }
            if value.trim() != value.as_str() {
                return bad(format!(
                    "oidc.{field} {value:?} has leading or trailing whitespace; tokens are compared exactly, remove it"
                ));
            }
        }
        let url = match reqwest::Url::parse(&self.jwks_url) {
            Ok(url) => url,
            Err(e) => {
                return bad(format!(
                    "oidc.jwks_url {:?} is not a URL ({e}); set it to the identity provider's jwks_uri",
                    self.jwks_url
                ));
            }
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return bad(format!(
                "oidc.jwks_url {:?} must be an http(s) URL with a host; set it to the identity provider's jwks_uri",
                self.jwks_url
            ));
        }
        Ok(())
    }
}

/// Who is calling, as the identity provider vouches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Value of the configured subject claim.
    pub subject: String,
    /// Values of the configured groups claim (empty when absent).
    pub groups: Vec<String>,
    /// The `name` claim, for display only.
    pub name: Option<String>,
}

/// Checks bearer JWTs against one identity provider.
///
/// Cheap to clone: clones share the HTTP client and the JWKS cache.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    client: reqwest::Client,
    /// Last JWKS fetched successfully; `None` until the first one.
    keys: RwLock<Option<Arc<KeyCache>>>,
    /// Held across a fetch, so concurrent callers wait for one fetch
    /// instead of each sending their own.
    refresh: Mutex<RefreshState>,
    /// Fetches finished (success or failure); lets a caller that waited on
    /// `refresh` see that someone fetched meanwhile and reuse the outcome.
    fetches: AtomicU64,
}

#[derive(Default)]
struct RefreshState {
    /// When an unknown `kid` last caused a refetch (rate limit).
    last_kid_refetch: Option<Instant>,
    /// Outcome of the last fetch when it failed.
    last_error: Option<AuthError>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

static CRYPTO_PROVIDER: Once = Once::new();

/// reqwest is built with `rustls-no-provider` in this workspace and needs a
/// process-wide rustls provider before any client is built (even for http).
/// Another provider installed first is fine: that one is used.
fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

impl OidcVerifier {
    /// Checks the settings and builds the HTTP client. Does no network I/O:
    /// the JWKS is fetched on the first `verify`.
    pub fn new(settings: OidcSettings) -> Result<Self, AuthError> {
        settings.validate()?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("slipway-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                AuthError::InvalidSettings(format!(
                    "cannot build the HTTP client for the JWKS: {e}"
                ))
            })?;
        Ok(OidcVerifier {
            inner: Arc::new(Inner {
                settings,
                client,
                keys: RwLock::new(None),
                refresh: Mutex::new(RefreshState::default()),
                fetches: AtomicU64::new(0),
            }),
        })
    }

    /// The settings this verifier was built with.
    pub fn settings(&self) -> &OidcSettings {
        &self.inner.settings
    }

    /// Verifies a bearer JWT (the part after `Bearer `; a leading `Bearer `
    /// is tolerated) and returns who it names.
    ///
    /// Checks, in order: shape, algorithm (asymmetric only), signing key
    /// from the JWKS, signature, `exp`/`nbf` (with leeway), `iss`, `aud`,
    /// then the subject and groups claims.
    pub async fn verify(&self, bearer: &str) -> Result<Identity, AuthError> {
        let token = strip_scheme(bearer.trim());
        let header = parse_header(token)?;
        let key = self.key_for(&header).await?;
        self.check_key_fits(&key, &header)?;
        let claims = self.decode(token, &key, &header)?;
        self.identity(&claims)
    }

    fn jwks_url(&self) -> &str {
        &self.inner.settings.jwks_url
    }

    async fn cached(&self) -> Option<Arc<KeyCache>> {
        self.inner.keys.read().await.clone()
    }

    /// Finds the key for a token, fetching the JWKS when it was never
    /// fetched, and refetching (rate limited) when the `kid` is unknown.
    async fn key_for(&self, header: &TokenHeader) -> Result<Arc<CachedKey>, AuthError> {
        let fetches_seen = self.inner.fetches.load(Ordering::Acquire);
        let max_age = Duration::from_secs(self.inner.settings.jwks_max_age_secs);
        let fresh = |cache: &KeyCache| cache.fetched_at.elapsed() < max_age;
        if let Some(cache) = self.cached().await
            && fresh(&cache)
            && let Some(found) = self.lookup(&cache, header)?
        {
            return Ok(found);
        }

        let mut refresh = self.inner.refresh.lock().await;
        let cached = self.cached().await;
        let stale = cached.as_ref().filter(|c| !fresh(c)).cloned();
        if let Some(cache) = cached.as_ref().filter(|c| fresh(c))
            && let Some(found) = self.lookup(cache, header)?
        {
            return Ok(found);
        }
        if self.inner.fetches.load(Ordering::Acquire) != fetches_seen {
            // Someone fetched while this caller waited; their outcome stands.
            return match (&refresh.last_error, &stale) {
                (Some(_), Some(old)) => self
                    .lookup(old, header)?
                    .ok_or_else(|| self.unknown_key(header)),
                (Some(err), None) => Err(err.clone()),
                (None, _) => Err(self.unknown_key(header)),
            };
        }
        if cached.is_some() && stale.is_none() {
            let min = Duration::from_secs(self.inner.settings.jwks_refresh_min_secs);
            if refresh
                .last_kid_refetch
                .is_some_and(|at| at.elapsed() < min)
            {
                return Err(self.unknown_key(header));
            }
            refresh.last_kid_refetch = Some(Instant::now());
        }

        let fetched = self.fetch_jwks().await;
        self.inner.fetches.fetch_add(1, Ordering::AcqRel);
        match fetched {
            Ok(cache) => {
                refresh.last_error = None;
                let cache = Arc::new(cache);
                *self.inner.keys.write().await = Some(Arc::clone(&cache));
                drop(refresh);
                self.lookup(&cache, header)?
                    .ok_or_else(|| self.unknown_key(header))
            }
            Err(err) => {
                refresh.last_error = Some(err.clone());
                // Rather than lock everybody out while the provider is
                // down, keep trusting the keys last fetched.
                if let Some(old) = &stale {
                    tracing::warn!(url = %self.jwks_url(), error = %err, "JWKS refetch failed; using the keys fetched before");
                    if let Some(found) = self.lookup(old, header)? {
                        return Ok(found);
                    }
                }
                Err(err)
            }
        }
    }

    fn lookup(
        &self,
        cache: &KeyCache,
        header: &TokenHeader,
    ) -> Result<Option<Arc<CachedKey>>, AuthError> {
        match cache.find(header.kid.as_deref(), header.alg) {
            Lookup::Found(key) => Ok(Some(key)),
            Lookup::Missing => Ok(None),
            Lookup::Ambiguous(candidates) => Err(AuthError::AmbiguousKey {
                alg: format!("{:?}", header.alg),
                candidates,
                jwks_url: self.jwks_url().to_string(),
            }),
        }
    }

    fn unknown_key(&self, header: &TokenHeader) -> AuthError {
        AuthError::UnknownKey {
            kid: kid_text(header.kid.as_deref()),
            jwks_url: self.jwks_url().to_string(),
        }
    }

    async fn fetch_jwks(&self) -> Result<KeyCache, AuthError> {
        let url = self.jwks_url();
        let unreachable = |reason: String| AuthError::JwksUnreachable {
            url: url.to_string(),
            reason,
        };
        let invalid = |reason: String| AuthError::JwksInvalid {
            url: url.to_string(),
            reason,
        };

        let mut response = self
            .inner
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable(describe_http_error(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unreachable(format!("it answered HTTP {status}")));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(invalid(format!("it is larger than {MAX_JWKS_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(describe_http_error(&e)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(invalid(format!("it is larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }

        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let raw: RawSet = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("it is not a JWK set ({{\"keys\": [...]}}): {e}")))?;
        let cache = KeyCache::from_raw(raw.keys);
        if cache.keys.is_empty() {
            return Err(invalid(
                "it holds no signature key this server can use (RSA, EC or OKP keys not marked for encryption)"
                    .to_string(),
            ));
        }
        Ok(cache)
    }

    fn check_key_fits(&self, key: &CachedKey, header: &TokenHeader) -> Result<(), AuthError> {
        let mismatch = |problem: String| AuthError::KeyMismatch {
            kid: kid_text(key.kid.as_deref()),
            jwks_url: self.jwks_url().to_string(),
            problem,
        };
        if key.family != header.alg.family() {
            return Err(mismatch(format!(
                "is {} key and cannot verify a {:?} token",
                family_text(key.family),
                header.alg
            )));
        }
        if let Some(pinned) = key.alg
            && pinned != header.alg
        {
            return Err(mismatch(format!(
                "is published for {pinned:?} only, but the token says {:?}",
                header.alg
            )));
        }
        Ok(())
    }

    fn decode(
        &self,
        token: &str,
        key: &CachedKey,
        header: &TokenHeader,
    ) -> Result<Map<String, Value>, AuthError> {
        let settings = &self.inner.settings;
        let mut validation = Validation::new(header.alg);
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);

        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(err) => Err(self.explain(err.kind(), token, key)),
        }
    }

    /// Turns a jsonwebtoken error into one that says what to do. Claim
    /// values are only quoted for claim checks, which jsonwebtoken runs
    /// after the signature verified, so they come from the provider.
    fn explain(&self, kind: &ErrorKind, token: &str, key: &CachedKey) -> AuthError {
        let settings = &self.inner.settings;
        let claims = || {
            jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token)
                .unwrap_or_default()
        };
        match kind {
            ErrorKind::InvalidSignature => AuthError::BadSignature {
                kid: kid_text(key.kid.as_deref()),
                jwks_url: self.jwks_url().to_string(),
            },
            ErrorKind::ExpiredSignature => AuthError::Expired {
                expired_at: time_text(claims().get("exp")),
            },
            ErrorKind::ImmatureSignature => AuthError::NotYetValid {
                not_before: time_text(claims().get("nbf")),
            },
            ErrorKind::InvalidAudience => AuthError::WrongAudience {
                actual: claim_text(claims().get("aud")),
                expected: settings.audience.clone(),
            },
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
                actual: claim_text(claims().get("iss")),
                expected: settings.issuer.clone(),
            },
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim {
                claim: claim.clone(),
                hint: match claim.as_str() {
                    "exp" => "the identity provider must issue tokens that expire".to_string(),
                    "aud" => format!(
                        "request a token for the audience {:?} (scope/resource)",
                        settings.audience
                    ),
                    _ => format!(
                        "use an access token from the identity provider {:?}",
                        settings.issuer
                    ),
                },
            },
            ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim {
                claim: claim.clone(),
                problem: "is not a number of seconds since 1970; the identity provider issues malformed tokens".to_string(),
            },
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::MalformedToken(
                "its payload or signature is not valid base64url JSON".to_string(),
            ),
            other => AuthError::KeyUnusable {
                kid: kid_text(key.kid.as_deref()),
                jwks_url: self.jwks_url().to_string(),
                reason: jsonwebtoken::errors::Error::from(other.clone()).to_string(),
            },
        }
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let settings = &self.inner.settings;
        let subject_claim = &settings.subject_claim;
        let subject = match claims.get(subject_claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => {
                return Err(AuthError::MissingClaim {
                    claim: subject_claim.clone(),
                    hint: "set oidc.subject_claim to a claim the identity provider issues (\"sub\"; for Entra ID also \"oid\" or \"preferred_username\")".to_string(),
                });
            }
            Some(other) => {
                return Err(AuthError::InvalidClaim {
                    claim: subject_claim.clone(),
                    problem: format!(
                        "is {} where the caller's id was expected; set oidc.subject_claim to a claim holding a non-empty string",
                        json_kind(other)
                    ),
                });
            }
        };

        let groups_claim = &settings.groups_claim;
        let wrong_groups = |found: &Value| AuthError::InvalidClaim {
            claim: groups_claim.clone(),
            problem: format!(
                "must be a string or an array of strings, but holds {}; set oidc.groups_claim to the claim that lists the caller's groups",
                json_kind(found)
            ),
        };
        let groups = match claims.get(groups_claim) {
            None | Some(Value::Null) => {
                if groups_overage(claims, groups_claim) {
                    return Err(AuthError::InvalidClaim {
                        claim: groups_claim.clone(),
                        problem: "was left out by the identity provider because the caller is in too many groups (Entra ID groups overage); in the app registration emit only groups assigned to the application".to_string(),
                    });
                }
                Vec::new()
            }
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(group) => Ok(group.clone()),
                    other => Err(wrong_groups(other)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(wrong_groups(other)),
        };

        let name = claims
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Identity {
            subject,
            groups,
            name,
        })
    }
}

/// The parts of a JWS header that choose the key.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn strip_scheme(value: &str) -> &str {
    match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    }
}

/// Reads alg and kid without trusting anything else yet; refuses `none`,
/// HMAC and unknown algorithms before any key is looked up.
fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
    let malformed = |why: &str| Err(AuthError::MalformedToken(why.to_string()));
    if token.is_empty() {
        return malformed("it is empty");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::MalformedToken(format!(
            "it is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let parts = token.split('.').count();
    match parts {
        3 => {}
        5 => {
            return malformed(
                "it is an encrypted token (JWE, five parts); the identity provider must issue signed (JWS) access tokens",
            );
        }
        n => {
            return Err(AuthError::MalformedToken(format!(
                "it has {n} dot-separated parts, expected 3 (header.payload.signature)"
            )));
        }
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let Ok(raw) = URL_SAFE_NO_PAD.decode(encoded) else {
        return malformed("its header is not base64url");
    };
    let Ok(header) = serde_json::from_slice::<Map<String, Value>>(&raw) else {
        return malformed("its header is not a JSON object");
    };
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return malformed("its header has no alg"),
    };
    let Some(alg) = asymmetric_alg(alg) else {
        return Err(AuthError::UnsupportedAlgorithm { alg: shown(alg) });
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return malformed("its kid header is not a string"),
    };
    if header.contains_key("crit") {
        return malformed(
            "its header marks extensions as critical (crit), which this server does not implement",
        );
    }
    Ok(TokenHeader { alg, kid })
}

/// The only algorithms accepted: a token signed with a shared secret (HS*)
/// could be forged by anyone holding the secret, and `none` by anyone.
fn asymmetric_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The usable keys of one JWKS.
struct KeyCache {
    keys: Vec<Arc<CachedKey>>,
    /// When this set was fetched; older than `jwks_max_age_secs` is stale.
    fetched_at: Instant,
}

struct CachedKey {
    kid: Option<String>,
    key: DecodingKey,
    family: AlgorithmFamily,
    /// The JWK's `alg`, when it pins one.
    alg: Option<Algorithm>,
}

enum Lookup {
    Found(Arc<CachedKey>),
    Missing,
    Ambiguous(usize),
}

impl KeyCache {
    /// Keeps the asymmetric signature keys; skips (rather than fails on)
    /// keys this server cannot use, so one exotic key does not lock
    /// everybody out.
    fn from_raw(raw: Vec<Value>) -> Self {
        let keys = raw
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| usable_key(&jwk).map(Arc::new))
            .collect();
        KeyCache {
            keys,
            fetched_at: Instant::now(),
        }
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => {
                let mut same_kid = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                // Prefer the key of the token's family when a kid is reused
                // across key types; otherwise return any, so the mismatch is reported.
                let best = same_kid
                    .clone()
                    .find(|k| k.family == alg.family())
                    .or_else(|| same_kid.next());
                match best {
                    Some(key) => Lookup::Found(Arc::clone(key)),
                    None => Lookup::Missing,
                }
            }
            None => {
                let candidates: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.family == alg.family() && k.alg.is_none_or(|a| a == alg))
                    .collect();
                match candidates.as_slice() {
                    [] => Lookup::Missing,
                    [only] => Lookup::Found(Arc::clone(only)),
                    many => Lookup::Ambiguous(many.len()),
                }
            }
        }
    }
}

fn usable_key(jwk: &Jwk) -> Option<CachedKey> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return None,
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
        // Symmetric ("oct") keys are never trusted; unknown types cannot be used.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        // An alg we do not accept (RSA-OAEP, HS256, ...) means not for us.
        Some(key_alg) => {
            let alg = Algorithm::try_from(key_alg).ok()?;
            if alg.family() == AlgorithmFamily::Hmac {
                return None;
            }
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(CachedKey {
        kid: jwk.common.key_id.clone(),
        key,
        family,
        alg,
    })
}

/// True when Entra ID replaced the groups claim by a pointer to Graph
/// (`_claim_names: {"groups": "src1"}`), which happens past 200 groups.
fn groups_overage(claims: &Map<String, Value>, groups_claim: &str) -> bool {
    claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key(groups_claim))
}

fn describe_http_error(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        format!("no answer within {} s", FETCH_TIMEOUT.as_secs())
    } else if err.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Makes an untrusted value safe to put in a message or a log line.
fn shown(value: &str) -> String {
    if value.is_empty() {
        return "(empty)".to_string();
    }
    let mut text: String = value
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > SHOWN_CHARS {
        text.push('…');
    }
    text
}

fn kid_text(kid: Option<&str>) -> String {
    kid.map_or_else(|| "(no kid)".to_string(), shown)
}

fn family_text(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Rsa => "an RSA",
        AlgorithmFamily::Ec => "an EC",
        AlgorithmFamily::Ed => "an OKP (EdDSA)",
        AlgorithmFamily::Hmac => "a symmetric",
    }
}

fn claim_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(none)".to_string(),
        Some(Value::String(s)) => shown(s),
        Some(Value::Array(items)) => {
            let texts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => shown(s),
                    other => json_kind(other).to_string(),
                })
                .collect();
            shown(&texts.join(", "))
        }
        Some(other) => json_kind(other).to_string(),
    }
}

fn time_text(value: Option<&Value>) -> String {
    let seconds = value.and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
    });
    let Some(seconds) = seconds else {
        return "(unreadable time)".to_string();
    };
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {seconds}"))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OidcSettings {
        OidcSettings::new(
            "https://issuer.example",
            "api://slipway",
            "http://127.0.0.1:1/keys",
        )
    }

    #[test]
    fn settings_defaults_apply_when_deserialising() {
        let s: OidcSettings = serde_json::from_value(serde_json::json!({
            "issuer": "https://issuer.example",
            "audience": "api://slipway",
            "jwks_url": "https://issuer.example/keys",
        }))
        .unwrap();
        assert_eq!(s.groups_claim, "groups");
        assert_eq!(s.subject_claim, "sub");
        assert_eq!(s.jwks_refresh_min_secs, 60);
        assert_eq!(s.leeway_secs, 60);
        assert_eq!(
            s,
            OidcSettings::new(
                "https://issuer.example",
                "api://slipway",
                "https://issuer.example/keys"
            )
        );
    }

    #[test]
    fn new_rejects_unusable_settings_with_the_field_named() {
        let cases: Vec<(OidcSettings, &str)> = vec![
            (
                OidcSettings {
                    issuer: " ".into(),
                    ..settings()
                },
                "oidc.issuer is empty",
            ),
            (
                OidcSettings {
                    audience: String::new(),
                    ..settings()
                },
                "oidc.audience is empty",
            ),
            (
                OidcSettings {
                    issuer: "https://issuer.example ".into(),
                    ..settings()
                },
                "whitespace",
            ),
            (
                OidcSettings {
                    jwks_url: "not a url".into(),
                    ..settings()
                },
                "oidc.jwks_url \"not a url\" is not a URL",
            ),
            (
                OidcSettings {
                    jwks_url: "ftp://issuer.example/keys".into(),
                    ..settings()
                },
                "must be an http(s) URL",
            ),
            (
                OidcSettings {
                    groups_claim: String::new(),
                    ..settings()
                },
                "oidc.groups_claim is empty",
            ),
        ];
        for (bad, expected) in cases {
            let err = OidcVerifier::new(bad.clone()).unwrap_err();
            assert!(
                matches!(err, AuthError::InvalidSettings(_)),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains(expected), "{err}");
            assert!(!err.is_client_error());
        }
        assert!(OidcVerifier::new(settings()).is_ok());
    }

    fn header(json: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn header_parsing_refuses_none_hmac_and_garbage_before_any_key_lookup() {
        for alg in ["none", "HS256", "HS384", "HS512", "RS1", ""] {
            let err = parse_header(&header(&format!(r#"{{"alg":"{alg}"}}"#)))
                .err()
                .unwrap();
            assert!(
                matches!(err, AuthError::UnsupportedAlgorithm { .. }),
                "{alg}: {err}"
            );
            assert!(err.is_client_error());
        }
        let err = parse_header(&header(r#"{"alg":"HS256"}"#)).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("unsupported algorithm HS256; the identity provider must sign with an asymmetric key"),
            "{err}"
        );
        for (token, expected) in [
            ("", "empty"),
            ("a.b", "2 dot-separated parts"),
            ("a.b.c.d.e", "JWE"),
            ("***.e30.c2ln", "not base64url"),
            (&header("[1]"), "not a JSON object"),
            (&header(r#"{"kid":"x"}"#), "no alg"),
            (
                &header(r#"{"alg":"RS256","kid":5}"#),
                "kid header is not a string",
            ),
            (&header(r#"{"alg":"RS256","crit":["b64"]}"#), "crit"),
        ] {
            let err = parse_header(token).err().unwrap();
            assert!(matches!(err, AuthError::MalformedToken(_)), "{err}");
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(parse_header(&long).is_err());
        let ok = parse_header(&header(r#"{"alg":"ES256","kid":"k1"}"#)).unwrap();
        assert_eq!(ok.alg, Algorithm::ES256);
        assert_eq!(ok.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn bearer_scheme_is_tolerated() {
        assert_eq!(strip_scheme("Bearer abc"), "abc");
        assert_eq!(strip_scheme("bearer   abc"), "abc");
        assert_eq!(strip_scheme("abc"), "abc");
        assert_eq!(strip_scheme("Béarer abc"), "Béarer abc");
    }

    #[test]
    fn untrusted_values_are_shortened_and_stripped_of_control_chars() {
        assert_eq!(shown("a\nb"), "a?b");
        assert_eq!(shown(""), "(empty)");
        let long = "x".repeat(500);
        assert_eq!(shown(&long).chars().count(), SHOWN_CHARS + 1);
    }

    #[test]
    fn jwks_keeps_only_asymmetric_signature_keys() {
        let rsa_n = URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let cache = KeyCache::from_raw(vec![
            serde_json::json!({"kty":"RSA","kid":"sig","use":"sig","n":rsa_n,"e":"AQAB"}),
            serde_json::json!({"kty":"RSA","kid":"enc","use":"enc","n":rsa_n,"e":"AQAB"}),
            serde_json::json!({"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":rsa_n,"e":"AQAB"}),
            serde_json::json!({"kty":"oct","kid":"secret","k":"c2VjcmV0"}),
            serde_json::json!({"kty":"RSA","kid":"hs","alg":"HS256","n":rsa_n,"e":"AQAB"}),
            serde_json::json!({"kty":"weird","kid":"w"}),
            serde_json::json!("not even an object"),
        ]);
        let kids: Vec<_> = cache.keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec![Some("sig".to_string())]);
        assert!(matches!(
            cache.find(Some("secret"), Algorithm::RS256),
            Lookup::Missing
        ));
        assert!(matches!(
            cache.find(None, Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            cache.find(None, Algorithm::ES256),
            Lookup::Missing
        ));
    }

    #[test]
    fn time_text_formats_rfc3339() {
        assert_eq!(
            time_text(Some(&serde_json::json!(0))),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(time_text(None), "(unreadable time)");
    }
}
