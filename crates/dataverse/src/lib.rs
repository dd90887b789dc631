//! A client for the Dataverse Web API v9.2: the calls a deployment pipeline
//! makes against a Power Platform environment.
//!
//! Users point it at their real environments; tests and `slipway dev` point
//! it at the simulator (`slipway-envsim`), which serves the same API.
//!
//! # Layout
//!
//! - [`client`]: [`Client`] and its [`ClientConfig`] / [`RetryPolicy`]:
//!   `WhoAmI`, `solutions` (and a solution's version: `PATCH
//!   solutions(<id>)`), `ExportSolution`, `StageSolution`,
//!   `ImportSolutionAsync` + polling `asyncoperations(<id>)` and the
//!   import's progress in `importjobs(<ImportJobId>)`,
//!   `DeleteAndPromote`,
//!   `environmentvariabledefinitions`, `environmentvariablevalues`,
//!   `connectionreferences`, `connections`, the components of an installed
//!   solution (`msdyn_solutioncomponentsummaries`), `systemusers` lookups
//!   (by user principal name or application id) and impersonation
//!   ([`Client::acting_for`]: `CallerObjectId` / `MSCRMCallerID` on every
//!   request).
//! - [`auth`]: [`Credentials`]: OAuth 2.0 client credentials (token cached,
//!   refreshed before expiry and once after a 401) or a static bearer token.
//! - [`credentials_ref`]: [`CredentialsRef`] / [`SecretRef`]: what Slipway
//!   stores instead of secrets (`env:NAME`, `file:/path`), resolved into
//!   [`Credentials`] at use time.
//! - [`types`]: request and response types with Dataverse's JSON names.
//! - [`error`]: [`DataverseError`], which carries Dataverse's OData error
//!   code and message.
//!
//! # Behaviour
//!
//! - 429 answers are retried after their `Retry-After` (seconds); 5xx answers,
//!   timeouts and refused connections with exponential backoff, up to
//!   [`RetryPolicy::max_retries`]. `ImportSolutionAsync` always sends an
//!   `ImportJobId` (a fresh one unless given) so a retried request names the
//!   same job.
//! - Large files move without needless copies: zips are taken as
//!   [`bytes::Bytes`], base64-encoded once straight into the request body
//!   (which retries share), and export answers are decoded from the response
//!   buffer straight into one `Bytes`.
//! - The `connections` entity set is Slipway's model of the Power Apps
//!   connections list (rows with `connectionid`, `connectorid`,
//!   `displayname`, `status`). A real environment lists connections through
//!   the Power Apps API instead, and its own `connections` entity set is an
//!   unrelated table; [`Client::connections`] is meant for the simulator.
//!
//! # Never
//!
//! - Never logs or prints secrets or tokens ([`Credentials`]' `Debug` redacts).
//! - Never holds state about a pipeline: it is a thin, stateless-per-call
//!   client (only the token cache lives in it).
//! - Never retries an answer that is not transient (4xx other than 401/429).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod client;
pub mod credentials_ref;
pub mod error;
pub mod types;

pub use auth::Credentials;
pub use client::{Client, ClientConfig, RetryPolicy};
pub use credentials_ref::{CredentialsRef, CredentialsRefError, SecretRef, client_for};
pub use error::DataverseError;
pub use types::*;
