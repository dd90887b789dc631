//! The gateway: Slipway's HTTP API and the one writer of its database.
//!
//! - [`api`]: the router, health checks, deployments and the OpenAPI
//!   document; [`admin`]: environments, pipelines, stages, sharing, role
//!   grants, API tokens and the audit log.
//! - [`caller`]: who is calling (API token or OIDC JWT) and their roles;
//!   [`error`]: the one error type and the JSON body extractor that names
//!   the unusable field.
//! - [`relay`]: the outbox relay, which publishes the commands that
//!   [`slipway_store::Store::create_run`] wrote in the same transaction as
//!   the run, with publisher confirms, and only then marks them published.
//! - [`events`]: the consumer of the event queue, which applies run events
//!   in queue order, a batch per database transaction, moving each run
//!   through its state machine (idempotently: redelivered events change
//!   nothing).
//! - [`webhooks`]: the admin routes of outgoing webhooks and the task that
//!   delivers the gate events runs raise, signed, retried with backoff.
//! - [`stream`]: a run followed live (server-sent events); [`browse`]: the
//!   solutions of an environment, for a maker to pick from; [`signin`]: how
//!   a browser signs in.
//!
//! The gateway talks to Dataverse environments only to check an
//! environment an admin registers (WhoAmI) and to list the solutions a
//! caller may deploy; deployments are the workers'.

pub mod admin;
pub mod api;
pub mod browse;
pub mod caller;
pub mod error;
pub mod events;
pub mod relay;
pub mod runs;
pub mod signin;
pub mod stream;
pub mod webhooks;

use std::sync::Arc;

use slipway_bus::Bus;
use slipway_service::config::{Config, GatewayConfig};
use slipway_service::shutdown::CancellationToken;
use slipway_store::Store;

/// Everything a request handler or background task of the gateway needs.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub store: Store,
    pub bus: Bus,
    /// Wakes the outbox relay, or hands it commands to publish at once.
    pub relay: relay::RelayHandle,
    /// Checks OIDC bearer tokens, when `auth.oidc_*` is configured.
    pub oidc: Option<slipway_auth::OidcVerifier>,
    pub config: Arc<GatewayConfig>,
    /// The artifact store, for downloads.
    pub artifacts: Option<slipway_artifacts::ArtifactStore>,
    /// Ids of the runs this replica just changed: wakes their live streams
    /// at once (streams also poll, for what other replicas change).
    pub run_changes: tokio::sync::broadcast::Sender<uuid::Uuid>,
    /// Cancelled when the gateway stops; live streams end with it.
    pub shutdown: CancellationToken,
    /// How browsers sign in, with the identity provider's cached endpoints.
    pub signin: Arc<signin::SignIn>,
}

impl Gateway {
    /// Tells the live streams of run `id` that it changed.
    pub fn run_changed(&self, id: uuid::Uuid) {
        // No stream follows it: nobody to tell.
        let _ = self.run_changes.send(id);
    }
}

/// The OIDC verifier `config` asks for: none when no `auth.oidc_*` key is
/// set, an error naming the missing key when only some are.
pub fn oidc_from_config(
    config: &slipway_service::config::AuthConfig,
) -> anyhow::Result<Option<slipway_auth::OidcVerifier>> {
    let keys = [
        ("auth.oidc_issuer", &config.oidc_issuer),
        ("auth.oidc_audience", &config.oidc_audience),
        ("auth.oidc_jwks_url", &config.oidc_jwks_url),
    ];
    if keys.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    let missing: Vec<&str> = keys
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    let (Some(issuer), Some(audience), Some(jwks_url)) = (
        &config.oidc_issuer,
        &config.oidc_audience,
        &config.oidc_jwks_url,
    ) else {
        anyhow::bail!(
            "OIDC sign-in needs auth.oidc_issuer, auth.oidc_audience and auth.oidc_jwks_url; missing: {}",
            missing.join(", ")
        );
    };
    let mut settings = slipway_auth::OidcSettings::new(issuer, audience, jwks_url);
    settings.groups_claim.clone_from(&config.oidc_groups_claim);
    settings
        .subject_claim
        .clone_from(&config.oidc_subject_claim);
    Ok(Some(slipway_auth::OidcVerifier::new(settings)?))
}

/// Run ids a slow stream may fall behind by before it rereads its run anyway.
const RUN_CHANGES_BUFFER: usize = 1024;

/// Runs the HTTP server, the outbox relay, the event consumer and webhook
/// delivery until `shutdown` is cancelled. `on_listen` receives the bound
/// address (the configured port may be 0).
pub async fn run(
    config: &Config,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let (relay, relay_inbox) = relay::channel();
    let gateway = Gateway {
        store,
        bus,
        relay,
        oidc: oidc_from_config(&config.auth)?,
        signin: Arc::new(signin::SignIn::from_config(&config.auth)?),
        run_changes: tokio::sync::broadcast::channel(RUN_CHANGES_BUFFER).0,
        shutdown: shutdown.clone(),
        config: Arc::new(config.gateway.clone()),
        artifacts: Some(
            slipway_artifacts::ArtifactStore::open(&config.artifacts.url)
                .await
                .with_context(|| {
                    format!(
                        "cannot open the artifact store at artifacts.url = {}",
                        config.artifacts.url
                    )
                })?,
        ),
    };
    let listener = tokio::net::TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on gateway.listen = {}; pick a free address (SLIPWAY__GATEWAY__LISTEN, or `slipway dev --listen`; port 0 picks one)",
                config.gateway.listen
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    on_listen(addr);

    // If any of the tasks stops on its own (a fatal bus or database error),
    // the whole gateway stops, so the supervisor restarts it rather than
    // leaving an API whose runs no longer move.
    let relay = tokio::spawn(stop_all_when_done(
        shutdown.clone(),
        relay::run(
            gateway.clone(),
            config.gateway.clone(),
            relay_inbox,
            shutdown.clone(),
        ),
    ));
    let events = tokio::spawn(stop_all_when_done(
        shutdown.clone(),
        events::run(
            gateway.clone(),
            config.gateway.event_batch,
            shutdown.clone(),
        ),
    ));
    let hooks = tokio::spawn(stop_all_when_done(
        shutdown.clone(),
        webhooks::run(gateway.clone(), config.gateway.clone(), shutdown.clone()),
    ));
    let server = axum::serve(listener, api::router(gateway))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let served = stop_all_when_done(shutdown.clone(), async {
        server.await.context("HTTP server failed")
    })
    .await;
    let relayed = relay.await.context("outbox relay panicked")?;
    let consumed = events.await.context("event consumer panicked")?;
    let delivered = hooks.await.context("webhook delivery panicked")?;
    served?;
    relayed.context("outbox relay stopped")?;
    consumed.context("event consumer stopped")?;
    delivered.context("webhook delivery stopped")?;
    Ok(())
}

/// Runs `task`, then cancels `shutdown` so its siblings stop too.
async fn stop_all_when_done<T>(
    shutdown: CancellationToken,
    task: impl std::future::Future<Output = T>,
) -> T {
    let out = task.await;
    shutdown.cancel();
    out
}
