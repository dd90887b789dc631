//! The gateway: Slipway's HTTP API and the one writer of its database.
//!
//! - [`api`]: the routes (`/healthz`, `/readyz`, `/api/v1/deployments...`)
//!   and their error type.
//! - [`relay`]: the outbox relay, which publishes the commands that
//!   [`slipway_store::Store::create_run`] wrote in the same transaction as
//!   the run, with publisher confirms, and only then marks them published.
//! - [`events`]: the consumer of the event queue, which applies run events
//!   in queue order, a batch per database transaction, moving each run
//!   through its state machine (idempotently: redelivered events change
//!   nothing).
//!
//! The gateway never talks to Dataverse environments; the workers do.

pub mod api;
pub mod events;
pub mod relay;

use std::sync::Arc;

use slipway_bus::Bus;
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;
use slipway_store::Store;
use tokio::sync::Notify;

/// Everything a request handler or background task of the gateway needs.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub store: Store,
    pub bus: Bus,
    /// Wakes the outbox relay as soon as a run is created.
    pub relay_wakeup: Arc<Notify>,
}

/// Runs the HTTP server, the outbox relay and the event consumer until
/// `shutdown` is cancelled. `on_listen` receives the bound address (the
/// configured port may be 0).
pub async fn run(
    config: &Config,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let gateway = Gateway {
        store,
        bus,
        relay_wakeup: Arc::new(Notify::new()),
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

    // If any of the three stops on its own (a fatal bus or database error),
    // the whole gateway stops, so the supervisor restarts it rather than
    // leaving an API whose runs no longer move.
    let relay = tokio::spawn(stop_all_when_done(
        shutdown.clone(),
        relay::run(gateway.clone(), config.gateway.clone(), shutdown.clone()),
    ));
    let events = tokio::spawn(stop_all_when_done(
        shutdown.clone(),
        events::run(
            gateway.clone(),
            config.gateway.event_batch,
            shutdown.clone(),
        ),
    ));
    let server = axum::serve(listener, api::router(gateway))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let served = stop_all_when_done(shutdown.clone(), async {
        server.await.context("HTTP server failed")
    })
    .await;
    let relayed = relay.await.context("outbox relay panicked")?;
    let consumed = events.await.context("event consumer panicked")?;
    served?;
    relayed.context("outbox relay stopped")?;
    consumed.context("event consumer stopped")?;
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
