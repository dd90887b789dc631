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
pub mod pg;
pub mod rabbit;
pub mod solution_zip;

/// An HTTP client for tests. reqwest is built without a default crypto
/// provider (the workspace uses ring, not aws-lc), so this installs ring's
/// first: plain http needs none, but the client refuses to build without one.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // Fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    use anyhow::Context as _;
    reqwest::Client::builder()
        .build()
        .context("cannot build an http client")
}
