//! OidcVerifier against a real JWKS served over HTTP by a local axum server,
//! with tokens signed by the committed test-only keys in tests/keys/.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use slipway_auth::{AuthError, Identity, OidcSettings, OidcVerifier};

const ISSUER: &str = "https://login.example.test/tenant-1/v2.0";
const AUDIENCE: &str = "api://slipway";

const RSA_1_PEM: &str = include_str!("keys/test-only-rsa-1.pem");
const RSA_2_PEM: &str = include_str!("keys/test-only-rsa-2.pem");
const EC_PEM: &str = include_str!("keys/test-only-ec-p256.pem");
const RSA_1_JWK: &str = include_str!("keys/test-only-rsa-1.jwk.json");
const RSA_2_JWK: &str = include_str!("keys/test-only-rsa-2.jwk.json");
const EC_JWK: &str = include_str!("keys/test-only-ec-p256.jwk.json");

const RSA_1_KID: &str = "test-rsa-1";
const RSA_2_KID: &str = "test-rsa-2";
const EC_KID: &str = "test-ec-1";

/// A committed JWK, with the extra fields Entra ID puts next to its keys,
/// to show they are tolerated.
fn jwk(text: &str) -> Value {
    let mut jwk: Value = serde_json::from_str(text).unwrap();
    jwk["x5t"] = json!("bm90LWEtcmVhbC10aHVtYnByaW50");
    jwk["issuer"] = json!(ISSUER);
    jwk
}

fn jwks(keys: &[&str]) -> Value {
    json!({ "keys": keys.iter().map(|k| jwk(k)).collect::<Vec<_>>() })
}

struct ServerState {
    jwks: Mutex<Value>,
    hits: AtomicUsize,
    status: AtomicU16,
}

/// A JWKS endpoint on 127.0.0.1 whose key set and status can be switched,
/// counting the requests it serves.
struct JwksServer {
    url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(jwks: Value) -> Self {
        async fn keys(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
            state.hits.fetch_add(1, Ordering::SeqCst);
            let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
            let body = state.jwks.lock().unwrap().clone();
            (status, Json(body))
        }
        let state = Arc::new(ServerState {
            jwks: Mutex::new(jwks),
            hits: AtomicUsize::new(0),
            status: AtomicU16::new(200),
        });
        let app = axum::Router::new()
            .route("/discovery/v2.0/keys", get(keys))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer {
            url: format!("http://{addr}/discovery/v2.0/keys"),
            state,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn serve(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    fn settings(&self) -> OidcSettings {
        OidcSettings::new(ISSUER, AUDIENCE, self.url.clone())
    }

    fn verifier(&self) -> OidcVerifier {
        OidcVerifier::new(self.settings()).unwrap()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a good token; tests change what they need.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-123",
        "name": "Ada Lovelace",
        "groups": ["release-managers", "readers"],
        "iat": now(),
        "nbf": now() - 10,
        "exp": now() + 600,
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, pem: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some(RSA_1_KID), RSA_1_PEM, claims)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Asserts the error kind, that the message says what is expected, and
/// that the token never appears in it.
fn assert_refused(
    result: Result<Identity, AuthError>,
    token: &str,
    matches: fn(&AuthError) -> bool,
    expected_text: &str,
) -> AuthError {
    let err = result.expect_err("token must be refused");
    let text = err.to_string();
    assert!(matches(&err), "unexpected error: {err:?}");
    assert!(
        text.contains(expected_text),
        "message {text:?} lacks {expected_text:?}"
    );
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!text.contains(part), "message leaks the token: {text}");
    }
    assert!(!format!("{err:?}").contains(token));
    err
}

#[tokio::test]
async fn valid_rs256_token_gives_subject_groups_and_name() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK, EC_JWK])).await;
    let verifier = server.verifier();
    let identity = verifier.verify(&rs256(&claims())).await.unwrap();
    assert_eq!(
        identity,
        Identity {
            subject: "user-123".to_string(),
            groups: vec!["release-managers".to_string(), "readers".to_string()],
            name: Some("Ada Lovelace".to_string()),
        }
    );
    // The "Bearer " scheme is tolerated, and the cached JWKS is reused.
    let again = verifier
        .verify(&format!("Bearer {}", rs256(&claims())))
        .await
        .unwrap();
    assert_eq!(again.subject, "user-123");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn valid_es256_token_is_accepted() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK, EC_JWK])).await;
    let mut c = claims();
    c["sub"] = json!("ec-user");
    c.as_object_mut().unwrap().remove("name");
    let token = sign(Algorithm::ES256, Some(EC_KID), EC_PEM, &c);
    let identity = server.verifier().verify(&token).await.unwrap();
    assert_eq!(identity.subject, "ec-user");
    assert_eq!(identity.name, None);
    assert_eq!(identity.groups.len(), 2);
}

#[tokio::test]
async fn token_without_kid_uses_the_only_key_of_its_type() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK, EC_JWK])).await;
    let token = sign(Algorithm::RS256, None, RSA_1_PEM, &claims());
    assert_eq!(
        server.verifier().verify(&token).await.unwrap().subject,
        "user-123"
    );

    let two_rsa = JwksServer::start(jwks(&[RSA_1_JWK, RSA_2_JWK])).await;
    assert_refused(
        two_rsa.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::AmbiguousKey { candidates: 2, .. }),
        "token has no kid header",
    );
}

#[tokio::test]
async fn expired_token_is_refused_with_its_expiry_time() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let mut c = claims();
    c["exp"] = json!(1_700_000_000);
    c["nbf"] = json!(1_699_990_000);
    let token = rs256(&c);
    let err = assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::Expired { .. }),
        "token expired at 2023-11-14T22:13:20Z; sign in again",
    );
    assert!(err.is_client_error());
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted_and_leeway_is_configurable() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let mut c = claims();
    c["exp"] = json!(now() - 20);
    let token = rs256(&c);
    // Default leeway is 60 s.
    assert!(server.verifier().verify(&token).await.is_ok());
    let strict = OidcVerifier::new(OidcSettings {
        leeway_secs: 0,
        ..server.settings()
    })
    .unwrap();
    assert_refused(
        strict.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::Expired { .. }),
        "token expired at",
    );
}

#[tokio::test]
async fn not_yet_valid_token_is_refused() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let mut c = claims();
    c["nbf"] = json!(now() + 3600);
    c["exp"] = json!(now() + 7200);
    let token = rs256(&c);
    let err = assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::NotYetValid { .. }),
        "token is not valid before 20",
    );
    assert!(err.is_client_error());
}

#[tokio::test]
async fn wrong_audience_is_refused_naming_both_audiences() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let mut c = claims();
    c["aud"] = json!("api://other-app");
    let token = rs256(&c);
    let err = assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::WrongAudience { .. }),
        "token audience api://other-app is not the configured oidc audience api://slipway",
    );
    assert!(err.is_client_error());

    // An array audience containing ours is fine.
    c["aud"] = json!(["api://other-app", AUDIENCE]);
    assert!(server.verifier().verify(&rs256(&c)).await.is_ok());

    // No audience at all is refused too.
    c.as_object_mut().unwrap().remove("aud");
    let token = rs256(&c);
    assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::MissingClaim { claim, .. } if claim == "aud"),
        "token has no 'aud' claim",
    );
}

#[tokio::test]
async fn wrong_issuer_is_refused_naming_both_issuers() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let mut c = claims();
    c["iss"] = json!("https://login.example.test/other-tenant/v2.0");
    let token = rs256(&c);
    let err = assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::WrongIssuer { .. }),
        "token issuer https://login.example.test/other-tenant/v2.0 is not the configured oidc issuer https://login.example.test/tenant-1/v2.0",
    );
    assert!(err.is_client_error());
}

#[tokio::test]
async fn tampered_signature_or_payload_is_refused() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    let token = rs256(&claims());
    let (signed, signature) = token.rsplit_once('.').unwrap();

    // Flip one character in the middle of the signature.
    let mut sig: Vec<u8> = signature.bytes().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{signed}.{}", String::from_utf8(sig).unwrap());
    let err = assert_refused(
        verifier.verify(&tampered).await,
        &tampered,
        |e| matches!(e, AuthError::BadSignature { .. }),
        "token signature does not verify with key test-rsa-1",
    );
    assert!(err.is_client_error());

    // Swap in a payload that promotes the caller, keeping the old signature.
    let (header, _) = signed.split_once('.').unwrap();
    let mut c = claims();
    c["groups"] = json!(["admins"]);
    let forged = format!("{header}.{}.{signature}", b64(&c));
    assert_refused(
        verifier.verify(&forged).await,
        &forged,
        |e| matches!(e, AuthError::BadSignature { .. }),
        "altered",
    );

    // A valid signature by a key that is not the one the kid names.
    let wrong_key = sign(Algorithm::RS256, Some(RSA_1_KID), RSA_2_PEM, &claims());
    assert_refused(
        verifier.verify(&wrong_key).await,
        &wrong_key,
        |e| matches!(e, AuthError::BadSignature { .. }),
        "does not verify",
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    for signature in ["", "c2ln"] {
        let token = format!(
            "{}.{}.{signature}",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": RSA_1_KID})),
            b64(&claims())
        );
        let err = assert_refused(
            verifier.verify(&token).await,
            &token,
            |e| matches!(e, AuthError::UnsupportedAlgorithm { alg } if alg == "none"),
            "unsupported algorithm none; the identity provider must sign with an asymmetric key",
        );
        assert!(err.is_client_error());
    }
    // Refused before any key lookup: the JWKS was never fetched.
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn hs256_token_is_refused_even_when_keyed_with_public_key_material() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    // The classic confusion attack: HMAC keyed with the RSA public modulus.
    let jwk: Value = serde_json::from_str(RSA_1_JWK).unwrap();
    let secret = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(RSA_1_KID.to_string());
    let token =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
    let err = assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::UnsupportedAlgorithm { alg } if alg == "HS256"),
        "unsupported algorithm HS256; the identity provider must sign with an asymmetric key",
    );
    assert!(err.is_client_error());
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn token_alg_must_match_the_key_type() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK, EC_JWK])).await;
    // Signed by the RSA key but the header points at the EC key.
    let token = sign(Algorithm::RS256, Some(EC_KID), RSA_1_PEM, &claims());
    assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::KeyMismatch { .. }),
        "key test-ec-1 in the JWKS at",
    );
    // The JWK pins RS256; a PS256 token with that kid is refused.
    let token = sign(Algorithm::PS256, Some(RSA_1_KID), RSA_1_PEM, &claims());
    assert_refused(
        server.verifier().verify(&token).await,
        &token,
        |e| matches!(e, AuthError::KeyMismatch { .. }),
        "is published for RS256 only, but the token says PS256",
    );
}

#[tokio::test]
async fn unknown_kid_refetches_once_and_picks_up_a_rotated_key() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    assert_eq!(server.hits(), 1);

    // The provider rotates: the old key is gone, a new one is published.
    server.serve(jwks(&[RSA_2_JWK]));
    let rotated = sign(Algorithm::RS256, Some(RSA_2_KID), RSA_2_PEM, &claims());
    let identity = verifier.verify(&rotated).await.unwrap();
    assert_eq!(identity.subject, "user-123");
    assert_eq!(
        server.hits(),
        2,
        "the unknown kid caused exactly one refetch"
    );

    // A clone shares the cache.
    assert!(verifier.clone().verify(&rotated).await.is_ok());
    assert_eq!(server.hits(), 2);

    // Another unknown kid within jwks_refresh_min_secs: refused, no request.
    let forged_kid = sign(Algorithm::RS256, Some("test-rsa-3"), RSA_2_PEM, &claims());
    let err = assert_refused(
        verifier.verify(&forged_kid).await,
        &forged_kid,
        |e| matches!(e, AuthError::UnknownKey { kid, .. } if kid == "test-rsa-3"),
        &format!("no key with kid test-rsa-3 in JWKS at {}", server.url),
    );
    assert!(err.is_client_error());
    assert_eq!(server.hits(), 2, "no refetch inside the refresh window");

    // The rotated-out key is no longer trusted, also without a request.
    let old = rs256(&claims());
    assert_refused(
        verifier.verify(&old).await,
        &old,
        |e| matches!(e, AuthError::UnknownKey { .. }),
        "no key with kid test-rsa-1",
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn without_a_refresh_window_every_unknown_kid_refetches() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = OidcVerifier::new(OidcSettings {
        jwks_refresh_min_secs: 0,
        ..server.settings()
    })
    .unwrap();
    let unknown = sign(Algorithm::RS256, Some("nope"), RSA_1_PEM, &claims());
    for expected_hits in 1..=3 {
        assert!(verifier.verify(&unknown).await.is_err());
        assert_eq!(server.hits(), expected_hits);
    }
}

#[tokio::test]
async fn concurrent_first_calls_share_one_fetch() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    let token = rs256(&claims());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn concurrent_callers_share_a_failed_fetch() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    server.state.status.store(503, Ordering::SeqCst);
    let verifier = server.verifier();
    let token = rs256(&claims());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, AuthError::JwksUnreachable { .. }), "{err}");
    }
    // Callers that waited for the failing fetch got its error, not a fetch of their own.
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn jwks_server_down_is_not_the_callers_fault() {
    // Bind and release a port so nothing listens on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    drop(listener);
    let verifier = OidcVerifier::new(OidcSettings::new(ISSUER, AUDIENCE, url.clone())).unwrap();
    let token = rs256(&claims());
    let err = assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::JwksUnreachable { .. }),
        &format!("JWKS at {url} unreachable: "),
    );
    assert!(!err.is_client_error());
}

#[tokio::test]
async fn jwks_http_error_or_garbage_is_not_the_callers_fault_and_recovers() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    let token = rs256(&claims());

    server.state.status.store(500, Ordering::SeqCst);
    let err = assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::JwksUnreachable { .. }),
        "it answered HTTP 500 Internal Server Error",
    );
    assert!(!err.is_client_error());

    server.state.status.store(200, Ordering::SeqCst);
    server.serve(json!({"issuer": ISSUER}));
    let err = assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::JwksInvalid { .. }),
        "is not a JWK set",
    );
    assert!(!err.is_client_error());

    server.serve(json!({"keys": [{"kty": "oct", "kid": RSA_1_KID, "k": "c2VjcmV0"}]}));
    assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::JwksInvalid { .. }),
        "holds no signature key",
    );

    // Once the provider is back, the next call fetches again and succeeds.
    server.serve(jwks(&[RSA_1_JWK]));
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn groups_claim_shapes() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    let mut c = claims();

    c["groups"] = json!("release-managers");
    let identity = verifier.verify(&rs256(&c)).await.unwrap();
    assert_eq!(identity.groups, vec!["release-managers".to_string()]);

    c.as_object_mut().unwrap().remove("groups");
    let identity = verifier.verify(&rs256(&c)).await.unwrap();
    assert!(identity.groups.is_empty());

    c["groups"] = json!({"admins": true});
    let token = rs256(&c);
    assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::InvalidClaim { claim, .. } if claim == "groups"),
        "token claim 'groups' must be a string or an array of strings, but holds an object",
    );

    c["groups"] = json!(["ok", 7]);
    let token = rs256(&c);
    assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::InvalidClaim { claim, .. } if claim == "groups"),
        "but holds a number",
    );

    // Entra ID groups overage: the claim is replaced by a Graph pointer.
    c.as_object_mut().unwrap().remove("groups");
    c["_claim_names"] = json!({"groups": "src1"});
    c["_claim_sources"] = json!({"src1": {"endpoint": "https://graph.example.test/x"}});
    let token = rs256(&c);
    assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::InvalidClaim { claim, .. } if claim == "groups"),
        "too many groups",
    );
}

#[tokio::test]
async fn custom_subject_and_groups_claims() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = OidcVerifier::new(OidcSettings {
        subject_claim: "oid".to_string(),
        groups_claim: "roles".to_string(),
        ..server.settings()
    })
    .unwrap();
    let mut c = claims();
    c["oid"] = json!("00000000-0000-0000-0000-00000000abcd");
    c["roles"] = json!(["Slipway.Deployer"]);
    let identity = verifier.verify(&rs256(&c)).await.unwrap();
    assert_eq!(identity.subject, "00000000-0000-0000-0000-00000000abcd");
    assert_eq!(identity.groups, vec!["Slipway.Deployer".to_string()]);

    c.as_object_mut().unwrap().remove("oid");
    let token = rs256(&c);
    let err = assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::MissingClaim { claim, .. } if claim == "oid"),
        "token has no 'oid' claim; set oidc.subject_claim",
    );
    assert!(err.is_client_error());

    c["oid"] = json!(["not", "a", "string"]);
    let token = rs256(&c);
    assert_refused(
        verifier.verify(&token).await,
        &token,
        |e| matches!(e, AuthError::InvalidClaim { claim, .. } if claim == "oid"),
        "is an array where the caller's id was expected",
    );
}

#[tokio::test]
async fn malformed_bearer_values_are_client_errors() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let verifier = server.verifier();
    for token in ["", "slw_notajwt", "a.b", "not.a.jwt"] {
        let err = verifier.verify(token).await.unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedToken(_)),
            "{token}: {err}"
        );
        assert!(err.is_client_error());
    }
    // A signed header with a payload that is not JSON.
    let token = rs256(&claims());
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let garbage = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode("nope"));
    let err = verifier.verify(&garbage).await.unwrap_err();
    assert!(err.is_client_error(), "{err}");
    assert_eq!(server.hits(), 1);
}

/// A JWKS older than `jwks_max_age_secs` is fetched again even for a known
/// key, so a key the provider withdrew stops being trusted; while the
/// provider is down, the keys fetched before stay in use.
#[tokio::test]
async fn stale_jwks_is_refetched_and_withdrawn_keys_stop_working() {
    let server = JwksServer::start(jwks(&[RSA_1_JWK])).await;
    let mut settings = server.settings();
    settings.jwks_max_age_secs = 0;
    let verifier = OidcVerifier::new(settings).unwrap();
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    assert_eq!(server.hits(), 1);
    // Provider down: the stale keys still verify (and a fetch was tried).
    server.state.status.store(503, Ordering::SeqCst);
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    assert_eq!(server.hits(), 2);
    // Provider back, key withdrawn: the token is refused after the refetch.
    server.state.status.store(200, Ordering::SeqCst);
    server.serve(jwks(&[RSA_2_JWK]));
    assert!(verifier.verify(&rs256(&claims())).await.is_err());
    assert_eq!(server.hits(), 3);
}
