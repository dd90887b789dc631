//! Test support shared by every Slipway crate's tests. Never a dependency of
//! production code.
//!
//! - [`solution_zip`]: a builder that produces realistic Dataverse solution
//!   zips (solution.xml, customizations.xml, environment variables, flows...),
//!   so tests never need the external corpus.
//! - [`rabbit`]: a fresh, uniquely named RabbitMQ vhost per test on the real
//!   broker, with a clear error saying what to start when it is absent.
//! - [`pg`]: a fresh, uniquely named PostgreSQL database per test on the real
//!   server, with the same kind of error.
//! - [`bins`]: paths of the workspace's service binaries, built on demand, for
//!   tests that run each service as its own OS process.

pub mod bins;
pub mod demo;
pub mod pg;
pub mod rabbit;
pub mod solution_zip;

/// An HTTP client for tests. reqwest is built without a default crypto
/// provider (the workspace uses ring, not aws-lc), so this installs ring's
/// first: plain http needs none, but the client refuses to build without one.
/// An HTTP client that sends `Authorization: Bearer <token>` on every request.
pub fn http_client_with_token(token: &str) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    use anyhow::Context as _;
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the token is not a valid header value")?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("cannot build an http client")
}

pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // Fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    use anyhow::Context as _;
    reqwest::Client::builder()
        .build()
        .context("cannot build an http client")
}
