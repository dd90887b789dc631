//! Why a caller could not be identified, worded for the person who has to fix it.

/// Why a bearer token was refused or could not be checked.
///
/// Messages never contain the token. Values taken from a token's unsigned
/// header (alg, kid) are shortened and stripped of control characters first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The OIDC settings cannot work; found at start-up, not per request.
    #[error("invalid oidc settings: {0}")]
    InvalidSettings(String),

    /// Not a JWS compact token at all.
    #[error(
        "bearer token is not a well-formed JWT: {0}; send the identity provider's access token as 'Authorization: Bearer <token>'"
    )]
    MalformedToken(String),

    /// `none`, HMAC or an algorithm this crate does not know.
    #[error(
        "unsupported algorithm {alg}; the identity provider must sign with an asymmetric key (RS256/384/512, PS256/384/512, ES256/384 or EdDSA)"
    )]
    UnsupportedAlgorithm {
        /// The `alg` header value (shortened, sanitised).
        alg: String,
    },

    /// `exp` is in the past (beyond the leeway).
    #[error("token expired at {expired_at}; sign in again to get a fresh token")]
    Expired {
        /// RFC 3339 time from the `exp` claim.
        expired_at: String,
    },

    /// `nbf` is in the future (beyond the leeway).
    #[error(
        "token is not valid before {not_before}; wait until then, or check the clocks of this server and the identity provider"
    )]
    NotYetValid {
        /// RFC 3339 time from the `nbf` claim.
        not_before: String,
    },

    /// `aud` does not contain the configured audience.
    #[error(
        "token audience {actual} is not the configured oidc audience {expected}; request a token for {expected} (scope/resource), or fix oidc.audience"
    )]
    WrongAudience {
        /// The token's `aud` (values joined by ", ").
        actual: String,
        /// `OidcSettings::audience`.
        expected: String,
    },

    /// `iss` is not the configured issuer.
    #[error(
        "token issuer {actual} is not the configured oidc issuer {expected}; sign in with that identity provider (tenant), or fix oidc.issuer"
    )]
    WrongIssuer {
        /// The token's `iss`.
        actual: String,
        /// `OidcSettings::issuer`.
        expected: String,
    },

    /// A claim Slipway needs is absent.
    #[error("token has no '{claim}' claim; {hint}")]
    MissingClaim {
        /// Claim name.
        claim: String,
        /// What to change so the claim is there.
        hint: String,
    },

    /// A claim is present but has the wrong shape.
    #[error("token claim '{claim}' {problem}")]
    InvalidClaim {
        /// Claim name.
        claim: String,
        /// What is wrong with it and what to do.
        problem: String,
    },

    /// The signature does not match the key the header points at.
    #[error(
        "token signature does not verify with key {kid} from the JWKS at {jwks_url}; the token was altered or not issued by the configured identity provider: sign in again"
    )]
    BadSignature {
        /// Key id used (or "(none)").
        kid: String,
        /// Where the key came from.
        jwks_url: String,
    },

    /// The header's `kid` is not (yet) published by the identity provider.
    #[error(
        "no key with kid {kid} in JWKS at {jwks_url}; the token was signed by a key this identity provider does not publish (check that oidc.issuer and oidc.jwks_url name the same tenant), or keys were rotated moments ago: retry in a minute"
    )]
    UnknownKey {
        /// The `kid` header value (shortened, sanitised).
        kid: String,
        /// The JWKS that was searched.
        jwks_url: String,
    },

    /// The token names no `kid` and several keys could have signed it.
    #[error(
        "token has no kid header and the JWKS at {jwks_url} has {candidates} keys for {alg}; the identity provider must put the key id (kid) in the token header"
    )]
    AmbiguousKey {
        /// Token algorithm.
        alg: String,
        /// How many keys matched.
        candidates: usize,
        /// The JWKS that was searched.
        jwks_url: String,
    },

    /// The key the token points at is of another type than its `alg`
    /// (e.g. an RS256 token naming an EC key), or pinned to another `alg`.
    #[error(
        "key {kid} in the JWKS at {jwks_url} {problem}; the token header does not match the key that signed it: sign in again"
    )]
    KeyMismatch {
        /// Key id.
        kid: String,
        /// The JWKS holding the key.
        jwks_url: String,
        /// e.g. "is an EC key and cannot verify an RS256 token".
        problem: String,
    },

    /// The JWKS could not be fetched (network, DNS, TLS, timeout, HTTP error).
    #[error(
        "JWKS at {url} unreachable: {reason}; check oidc.jwks_url and that this server can reach the identity provider"
    )]
    JwksUnreachable {
        /// `OidcSettings::jwks_url`.
        url: String,
        /// What failed.
        reason: String,
    },

    /// The JWKS was fetched but is not a usable JWK set.
    #[error(
        "JWKS at {url} is not usable: {reason}; oidc.jwks_url must be the identity provider's jwks_uri (see its /.well-known/openid-configuration)"
    )]
    JwksInvalid {
        /// `OidcSettings::jwks_url`.
        url: String,
        /// What is wrong with the document.
        reason: String,
    },

    /// A published key could not be used for verification.
    #[error(
        "key {kid} in the JWKS at {jwks_url} cannot be used: {reason}; the identity provider publishes a broken key, report it to its administrator"
    )]
    KeyUnusable {
        /// Key id.
        kid: String,
        /// The JWKS holding the key.
        jwks_url: String,
        /// What the crypto backend said.
        reason: String,
    },
}

impl AuthError {
    /// True when the caller's token is at fault (the gateway answers 401);
    /// false when this server cannot check tokens right now or is
    /// misconfigured (the gateway answers 503 and an operator must act).
    pub fn is_client_error(&self) -> bool {
        match self {
            AuthError::MalformedToken(_)
            | AuthError::UnsupportedAlgorithm { .. }
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. }
            | AuthError::WrongAudience { .. }
            | AuthError::WrongIssuer { .. }
            | AuthError::MissingClaim { .. }
            | AuthError::InvalidClaim { .. }
            | AuthError::BadSignature { .. }
            | AuthError::UnknownKey { .. }
            | AuthError::AmbiguousKey { .. }
            | AuthError::KeyMismatch { .. } => true,
            AuthError::InvalidSettings(_)
            | AuthError::JwksUnreachable { .. }
            | AuthError::JwksInvalid { .. }
            | AuthError::KeyUnusable { .. } => false,
        }
    }
}
