//! Who is calling: the gateway hands this crate the bearer value of a
//! request and gets back either an identity or a reason to refuse.
//!
//! Two kinds of bearer value are understood. The crate never touches the
//! database: it only computes, compares and fetches the identity
//! provider's public keys over HTTP.
//!
//! # API tokens (embedded default)
//!
//! [`generate_api_token`] mints `slw_` + 43 base64url characters (32 bytes
//! from the OS random source). The plaintext is shown to the user **once**;
//! the gateway stores only [`hash_api_token`] of it (lowercase hex SHA-256)
//! and the 12-character [`NewApiToken::display_prefix`] used to tell tokens
//! apart in listings. A stolen database therefore yields no usable token,
//! and a lost token cannot be shown again, only revoked and replaced.
//! A fast unsalted hash is correct here because the token carries 256
//! random bits: there is no dictionary to try. [`looks_like_api_token`]
//! lets the gateway route `slw_…` values to the hash lookup and everything
//! else to OIDC without touching the database.
//!
//! # OIDC / JWT bearer tokens (Entra ID or any identity provider)
//!
//! [`OidcVerifier::verify`] accepts only asymmetric signatures (RS*, PS*,
//! ES256/384, EdDSA): `none` and HMAC tokens are refused before any key is
//! looked up, since a shared secret would let anyone holding it mint
//! tokens. It then checks signature, `exp`/`nbf` (with
//! [`OidcSettings::leeway_secs`]), `iss` and `aud`, and reads the subject
//! and groups claims named in [`OidcSettings`].
//!
//! ## JWKS cache and key rotation
//!
//! The provider's JWKS is fetched on first use (10 s timeout) and kept in
//! memory, shared by all clones of the verifier. Providers rotate keys by
//! publishing a new key and then signing with it, so a token whose `kid`
//! is not in the cache triggers one refetch. Because anyone can send a
//! token with a made-up `kid`, such refetches happen at most once per
//! [`OidcSettings::jwks_refresh_min_secs`]; in between, unknown kids are
//! refused without a request. Concurrent callers share one fetch.
//! While the JWKS cannot be fetched, errors say so and
//! [`AuthError::is_client_error`] is false, so the gateway can answer 503
//! instead of blaming the caller with 401.
//!
//! Errors name the problem and the fix, and never contain the token.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api_token;
mod error;
mod oidc;

pub use api_token::{
    API_TOKEN_LEN, API_TOKEN_PREFIX, DISPLAY_PREFIX_LEN, NewApiToken, generate_api_token,
    hash_api_token, looks_like_api_token,
};
pub use error::AuthError;
pub use oidc::{Identity, OidcSettings, OidcVerifier};
