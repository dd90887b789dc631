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
