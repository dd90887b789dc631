//! The outbox relay: publishes commands written by the same transaction as
//! their state change, so a crash between the two loses nothing.
//!
//! A row is claimed (leased), published with a broker confirm, and only then
//! marked published. A crash after the publish and before the mark publishes
//! the row again after its lease: consumers see a duplicate message id, which
//! the pipeline is built to absorb (at-least-once everywhere).

use std::time::Duration;

use slipway_service::config::GatewayConfig;
use slipway_service::shutdown::CancellationToken;

use crate::Gateway;

/// Relay until shutdown. Errors are logged and retried; they never stop the
/// gateway, since the rows stay in the outbox until published.
pub async fn run(
    gateway: Gateway,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let poll = Duration::from_millis(config.outbox_poll_ms.max(10));
    let lease = Duration::from_millis(config.outbox_lease_ms.max(1_000));
    let batch = config.outbox_batch.max(1);
    loop {
        let relayed = match relay_once(&gateway, batch, lease).await {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay round failed; will retry");
                0
            }
        };
        // A full batch means more may be waiting: go again at once.
        if relayed >= batch as usize {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = gateway.relay_wakeup.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round: claim, publish each (confirmed), mark the confirmed ones.
pub async fn relay_once(gateway: &Gateway, batch: u32, lease: Duration) -> anyhow::Result<usize> {
    let items = gateway.store.claim_outbox(batch, lease).await?;
    if items.is_empty() {
        return Ok(0);
    }
    let publishes = items.iter().map(|item| async move {
        gateway
            .bus
            .publish_with_headers(&item.envelope, &item.trace_headers)
            .await
            .map(|()| item.id)
            .map_err(|err| (item.id, err))
    });
    let mut done = Vec::with_capacity(items.len());
    for result in futures::future::join_all(publishes).await {
        match result {
            Ok(id) => done.push(id),
            Err((id, err)) => {
                tracing::warn!(outbox_id = id, error = %err, "publish not confirmed; the row stays in the outbox")
            }
        }
    }
    gateway.store.mark_published(&done).await?;
    Ok(done.len())
}
