//! Slipway's own API tokens: random, shown once, stored only as a SHA-256 hash.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::OsRng;
use rand::{RngCore as _, TryRngCore as _};
use sha2::{Digest as _, Sha256};

/// Every Slipway API token starts with this, so secret scanners and
/// `looks_like_api_token` can tell it apart from a JWT or a typo.
pub const API_TOKEN_PREFIX: &str = "slw_";

/// Random bytes behind each token: 256 bits, far beyond guessing.
const TOKEN_RANDOM_BYTES: usize = 32;

/// Length of the base64url (no padding) text of [`TOKEN_RANDOM_BYTES`].
const TOKEN_BODY_LEN: usize = 43;

/// Full length of a token: prefix plus body.
pub const API_TOKEN_LEN: usize = API_TOKEN_PREFIX.len() + TOKEN_BODY_LEN;

/// How many leading characters of a token are safe to show in lists:
/// the prefix plus 8 random characters (48 bits), enough to tell tokens
/// apart, far too few to help guess the remaining 210 bits.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// A freshly minted API token.
///
/// Show `plaintext` to the user once and drop it; store only `hash` and
/// `display_prefix`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// The secret the caller sends as `Authorization: Bearer <plaintext>`.
    pub plaintext: String,
    /// Lowercase hex SHA-256 of `plaintext`: what the gateway stores and looks up.
    pub hash: String,
    /// First [`DISPLAY_PREFIX_LEN`] characters, to tell tokens apart in listings.
    pub display_prefix: String,
}

/// Debug never prints the secret, so a stray `{:?}` in a log stays safe.
impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken")
            .field("plaintext", &"[redacted]")
            .field("hash", &self.hash)
            .field("display_prefix", &self.display_prefix)
            .finish()
    }
}

/// Mints a new API token from the operating system's random source.
pub fn generate_api_token() -> NewApiToken {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    if OsRng.try_fill_bytes(&mut bytes).is_err() {
        // The OS source practically never fails once the process runs; if it
        // does, ThreadRng (a CSPRNG seeded from the OS) is the next best thing.
        rand::rng().fill_bytes(&mut bytes);
    }
    let plaintext = format!("{API_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_api_token(&plaintext);
    let display_prefix = plaintext.chars().take(DISPLAY_PREFIX_LEN).collect();
    NewApiToken {
        plaintext,
        hash,
        display_prefix,
    }
}

/// Lowercase hex SHA-256 of a presented token: the gateway hashes what the
/// caller sent and looks the hash up, so the database never holds a usable
/// secret. A plain hash (no salt, no slow KDF) is right here: the input has
/// 256 random bits, so there is nothing to brute-force.
pub fn hash_api_token(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Cheap shape check (prefix, length, base64url alphabet) so the gateway can
/// route a bearer value to the API-token path or the OIDC path, and reject
/// garbage without a database lookup.
pub fn looks_like_api_token(s: &str) -> bool {
    let Some(body) = s.strip_prefix(API_TOKEN_PREFIX) else {
        return false;
    };
    body.len() == TOKEN_BODY_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_has_the_documented_shape() {
        let t = generate_api_token();
        assert!(t.plaintext.starts_with("slw_"), "{}", t.display_prefix);
        assert_eq!(t.plaintext.len(), API_TOKEN_LEN);
        assert_eq!(API_TOKEN_LEN, 47);
        assert!(looks_like_api_token(&t.plaintext));
        let body = &t.plaintext[API_TOKEN_PREFIX.len()..];
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
    }

    #[test]
    fn two_generated_tokens_differ() {
        let a = generate_api_token();
        let b = generate_api_token();
        assert_ne!(a.plaintext, b.plaintext);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn hash_is_stable_lowercase_hex_sha256_of_the_whole_token() {
        let t = generate_api_token();
        assert_eq!(t.hash, hash_api_token(&t.plaintext));
        assert_eq!(hash_api_token(&t.plaintext), hash_api_token(&t.plaintext));
        assert_eq!(t.hash.len(), 64);
        assert!(
            t.hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // Known answer: sha256("abc").
        assert_eq!(
            hash_api_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // The prefix is part of what is hashed.
        let body = &t.plaintext[API_TOKEN_PREFIX.len()..];
        assert_ne!(hash_api_token(body), t.hash);
    }

    #[test]
    fn display_prefix_is_the_first_twelve_chars_and_hides_the_rest() {
        let t = generate_api_token();
        assert_eq!(t.display_prefix.len(), DISPLAY_PREFIX_LEN);
        assert!(t.plaintext.starts_with(&t.display_prefix));
        let rest = &t.plaintext[DISPLAY_PREFIX_LEN..];
        assert_eq!(rest.len(), API_TOKEN_LEN - DISPLAY_PREFIX_LEN);
        assert!(!t.display_prefix.contains(rest));
        let debug = format!("{t:?}");
        assert!(!debug.contains(&t.plaintext), "{debug}");
        assert!(!debug.contains(rest), "{debug}");
        assert!(debug.contains(&t.display_prefix));
    }

    #[test]
    fn looks_like_api_token_checks_prefix_length_and_charset() {
        let good = format!("slw_{}", "A".repeat(43));
        assert!(looks_like_api_token(&good));
        assert!(looks_like_api_token(&format!(
            "slw_{}",
            "-_09az".repeat(7) + "x"
        )));
        // Wrong prefix or case.
        assert!(!looks_like_api_token(&format!("SLW_{}", "A".repeat(43))));
        assert!(!looks_like_api_token(&format!("slx_{}", "A".repeat(43))));
        assert!(!looks_like_api_token(&"A".repeat(47)));
        // Wrong length.
        assert!(!looks_like_api_token(&format!("slw_{}", "A".repeat(42))));
        assert!(!looks_like_api_token(&format!("slw_{}", "A".repeat(44))));
        assert!(!looks_like_api_token("slw_"));
        assert!(!looks_like_api_token(""));
        // Characters outside base64url (standard base64, padding, space, non-ASCII).
        assert!(!looks_like_api_token(&format!("slw_{}+", "A".repeat(42))));
        assert!(!looks_like_api_token(&format!("slw_{}/", "A".repeat(42))));
        assert!(!looks_like_api_token(&format!("slw_{}=", "A".repeat(42))));
        assert!(!looks_like_api_token(&format!("slw_{} ", "A".repeat(42))));
        assert!(!looks_like_api_token(&format!("slw_{}é", "A".repeat(41))));
        // A JWT is not an API token.
        assert!(!looks_like_api_token(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
        ));
    }
}
