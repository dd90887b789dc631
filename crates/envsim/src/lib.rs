//! A Dataverse-compatible environment simulator: several named environments
//! behind the Dataverse Web API v9.2 subset a deployment pipeline uses, with
//! the import semantics of a real environment, persisted in SQLite. It runs
//! in-process (tests, `slipway dev`) or as the `slipway-envsim` binary.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration (every key documented there and in
//!   the README).
//! - `api` (private): axum routes. Each environment lives at
//!   `http://HOST:PORT/{env}/api/data/v9.2/`: `WhoAmI`, `solutions`,
//!   `asyncoperations(<id>)`, `environmentvariabledefinitions`,
//!   `environmentvariablevalues`, `connectionreferences`, `connections`,
//!   `systemusers`,
//!   `msdyn_solutioncomponentsummaries` (the components each installed
//!   solution registered, filtered by `msdyn_solutionid`)
//!   (GET with `$select` and a `$filter` subset: `field eq literal [and ...]`),
//!   and the actions `ExportSolution`, `StageSolution`, `ImportSolutionAsync`,
//!   `DeleteAndPromote`.
//!   `POST /{tenant}/oauth2/v2.0/token` issues opaque tokens for the
//!   client-credentials grant; `/_admin/...` sets faults and reads counters.
//! - [`engine`]: the import rules (listed in the README and on `plan_import`),
//!   Dataverse's missing-dependency message, the managed-export rewrite.
//! - `store` (private): the SQLite schema (`migrations/`) and queries.
//! - [`error`]: start-up errors and Dataverse's OData error answers.
//!
//! # Semantics and honest simplifications
//!
//! - A required component counts as present when an installed solution in
//!   that environment registered it (by `ComponentKey`: type + schema name or
//!   id, case-insensitive), or when its `solution="Name (..)"` attribute names
//!   one of the environment's configured `platform_solutions`. Nothing else
//!   is assumed to exist: a real environment has thousands of platform
//!   components the simulator does not know.
//! - Managed over managed is a one-step upgrade (like `StageAndUpgrade`):
//!   components the new version dropped are unregistered, and refused if
//!   another installed solution requires them. Unmanaged over unmanaged
//!   merges (unmanaged imports never delete). `HoldingSolution` stages the
//!   package as `<name>_Upgrade`; `DeleteAndPromote` applies it as an
//!   upgrade. A managed package may not contain a component that an
//!   installed unmanaged solution registered.
//! - Imports run one at a time per simulator, after the configured delay;
//!   a restart fails operations that were running.
//! - `ExportSolution` returns the zip the solution was imported from;
//!   `Managed=true` returns a copy whose `solution.xml` says
//!   `<Managed>1</Managed>` (nothing else is converted). Exporting a solution
//!   installed as managed is refused, as in Dataverse.
//! - `StageSolution` validates only (same rules as import); its upload id
//!   cannot be passed to `ImportSolutionAsync`.
//! - `connections` is Slipway's model of the Power Apps connections list
//!   (`connectionid`, `connectorid`, `displayname`, `status`), configured
//!   per environment.
//! - `systemusers` are the configured `[[environments.users]]`; a request
//!   with `CallerObjectId` or `MSCRMCallerID` acts for one of them (unknown
//!   or disabled: refused), and an import records whom it was made for
//!   (`_createdby_value` / `_createdonbehalfby_value` of the operation,
//!   `_modifiedby_value` / `_modifiedonbehalfby_value` of the solution).
//!   Privileges are not modelled: any caller may act for any user.
//! - Tokens and fault settings live in memory; everything else survives a
//!   restart on the same SQLite file.
//!
//! # Never
//!
//! - Never talks to a real environment or any network service.
//! - Never serves anything but loopback by default; the admin endpoints are
//!   unauthenticated, so do not expose the simulator.
//! - Never panics on a request: bad input gets an OData error naming it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
pub mod config;
pub mod engine;
pub mod error;
mod store;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::EnvStats;
pub use config::{Config, DataLocation, Faults};
pub use error::{ApiError, SimError};

use crate::api::AppState;
use crate::engine::ImportOptions;
use crate::store::Store;

/// Entry point: starts simulators.
#[derive(Debug)]
pub struct EnvSim;

impl EnvSim {
    /// Opens the state, creates the configured environments, installs their
    /// seed solutions (unless already installed at that version or higher),
    /// binds `config.listen` (default `127.0.0.1:0`) and serves.
    pub async fn start(config: Config) -> Result<Running, SimError> {
        config.validate()?;
        let store = Store::open(&config.data).await?;
        let interrupted = store.fail_interrupted_operations().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "failed operations left running by a previous process"
            );
        }
        for env in &config.environments {
            store.ensure_environment(&env.name).await?;
            store.set_connections(&env.name, &env.connections).await?;
            for seed in &env.solutions {
                seed_solution(&store, env, &seed.path).await?;
            }
        }
        let state = Arc::new(AppState::new(&config, store.clone()));
        let addr = config
            .listen
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| SimError::Bind { addr, error })?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = api::router(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, "environment simulator listening");
        Ok(Running {
            addr,
            stop: Some(stop),
            server,
            state,
        })
    }
}

async fn seed_solution(
    store: &Store,
    env: &config::EnvironmentConfig,
    path: &std::path::Path,
) -> Result<(), SimError> {
    let seed_err = |message: String| SimError::Seed {
        env: env.name.clone(),
        path: path.display().to_string(),
        message,
    };
    let zip = std::fs::read(path).map_err(|e| seed_err(format!("cannot read it: {e}")))?;
    let solution = engine::read_solution(&zip).map_err(|r| seed_err(r.message))?;
    if let Some(installed) = store.installed(&env.name, &solution.unique_name).await?
        && installed.managed == solution.managed
        && slipway_solution::Version::parse(&installed.version).is_ok_and(|v| v >= solution.version)
    {
        return Ok(());
    }
    api::install(
        store,
        &env.name,
        &engine::Platform::of(env),
        &zip,
        &ImportOptions::default(),
        store::ActingFor::default(),
    )
    .await
    .map(|_| ())
    .map_err(|r| {
        let hint = if r.missing.is_empty() {
            ""
        } else {
            "; list the solutions that provide these components earlier in \
             [[environments.solutions]], or name first-party ones (the solution=\"Name (..)\" \
             of each dependency) in platform_solutions"
        };
        seed_err(format!("{}{hint}", r.message))
    })
}

/// A running simulator. Dropping it without [`Running::shutdown`] aborts the
/// server task.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    state: Arc<AppState>,
}

impl Running {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment URL a client is configured with: `base_url/{name}`
    /// (its Web API is under `/api/data/v9.2/`).
    pub fn env_url(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url())
    }

    /// The token endpoint (any tenant segment works; this one says `slipway`).
    pub fn token_url(&self) -> String {
        format!("{}/slipway/oauth2/v2.0/token", self.base_url())
    }

    /// Replaces an environment's faults (as `PUT /_admin/{env}/faults` does).
    pub fn set_faults(&self, env: &str, faults: Faults) -> Result<(), SimError> {
        let rt = self
            .state
            .env(env)
            .ok_or_else(|| SimError::Config(format!("environment {env} is not configured")))?;
        *rt.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
        Ok(())
    }

    /// Replaces the token endpoint's faults (as `PUT /_admin/_token/faults` does).
    pub fn set_token_faults(&self, faults: Faults) {
        *self
            .state
            .token_faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// The token endpoint's request counters.
    pub fn token_stats(&self) -> EnvStats {
        self.state.token_stats()
    }

    /// An environment's request counters.
    pub fn stats(&self, env: &str) -> Option<EnvStats> {
        self.state.env(env).map(|rt| rt.stats())
    }

    /// How many tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.state.tokens_issued.load(Ordering::Relaxed)
    }

    /// Forgets every issued token (clients get 401 and must fetch anew).
    pub fn revoke_tokens(&self) {
        self.state.revoke_tokens();
    }

    /// Stops accepting requests, lets in-flight ones finish, closes the database.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.server)
            .await
            .map_err(|e| SimError::Io(std::io::Error::other(e)))?;
        self.state.store.close().await;
        Ok(served?)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}
