//! The outbox relay: publishes commands written by the same transaction as
//! their state change, so a crash between the two loses nothing.
//!
//! A row is claimed (leased), published with a broker confirm, and only then
//! marked published. A crash after the publish and before the mark publishes
//! the row again after its lease: consumers see a duplicate message id, which
//! the pipeline is built to absorb (at-least-once everywhere).

use std::sync::Arc;
use std::time::Duration;

use slipway_service::config::GatewayConfig;
use slipway_service::shutdown::CancellationToken;
use slipway_store::OutboxItem;
use tokio::sync::{Notify, mpsc};

use crate::Gateway;

/// Submissions whose commands may wait for the relay before submitters
/// wait for it (back-pressure), rather than the broker falling behind.
const HANDED_OVER: usize = 1024;

/// How the rest of the gateway reaches the relay.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    wakeup: Arc<Notify>,
    handed_over: mpsc::Sender<Vec<OutboxItem>>,
}

/// What the relay task receives from its [`RelayHandle`]s.
#[derive(Debug)]
pub struct RelayInbox {
    handed_over: mpsc::Receiver<Vec<OutboxItem>>,
}

/// A relay's handle and inbox.
pub fn channel() -> (RelayHandle, RelayInbox) {
    let (sender, receiver) = mpsc::channel(HANDED_OVER);
    (
        RelayHandle {
            wakeup: Arc::new(Notify::new()),
            handed_over: sender,
        },
        RelayInbox {
            handed_over: receiver,
        },
    )
}

impl RelayHandle {
    /// New rows are waiting in the outbox: claim them now, not at the next poll.
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }

    /// Publishes commands whose rows were written leased to this replica
    /// ([`slipway_store::Publish::ByCaller`]), without claiming them first.
    /// Waits while the relay is [`HANDED_OVER`] submissions behind, so a
    /// slow broker slows submissions down instead of piling them up. Should
    /// the relay have stopped, the rows stay in the outbox and are claimed
    /// once their lease runs out; nothing is lost.
    pub async fn publish(&self, items: Vec<OutboxItem>) {
        if items.is_empty() {
            return;
        }
        if self.handed_over.send(items).await.is_err() {
            tracing::warn!(
                "the outbox relay has stopped; these commands are published when their lease runs out"
            );
        }
    }
}

/// Relay until shutdown. Errors are logged and retried; they never stop the
/// gateway, since the rows stay in the outbox until published.
pub async fn run(
    gateway: Gateway,
    config: GatewayConfig,
    mut inbox: RelayInbox,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut poll = tokio::time::interval(Duration::from_millis(config.outbox_poll_ms.max(10)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease = Duration::from_millis(config.outbox_lease_ms.max(1_000));
    let batch = config.outbox_batch.max(1);
    let mut claim = true;
    loop {
        while claim {
            let relayed = match relay_once(&gateway, batch, lease).await {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox relay round failed; will retry");
                    0
                }
            };
            // A full batch means more may be waiting: go again at once.
            claim = relayed >= batch as usize;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Publish what was handed over rather than leave it to
                // wait for its lease.
                inbox.handed_over.close();
                while let Some(items) = inbox.handed_over.recv().await {
                    publish_and_mark(&gateway, items).await;
                }
                return Ok(());
            }
            Some(mut items) = inbox.handed_over.recv() => {
                // One batch at a time: what arrives meanwhile makes the next
                // batch bigger (measured: publishing several batches at
                // once cost more CPU per deployment, not less).
                while items.len() < batch as usize {
                    match inbox.handed_over.try_recv() {
                        Ok(more) => items.extend(more),
                        Err(_) => break,
                    }
                }
                publish_and_mark(&gateway, items).await;
            }
            _ = gateway.relay.wakeup.notified() => claim = true,
            _ = poll.tick() => claim = true,
        }
    }
}

/// One round: claim, publish each (confirmed), mark the confirmed ones.
/// Returns how many rows it claimed: a full claim means more may be
/// waiting (rows the broker did not confirm stay leased, so the next claim
/// takes others).
async fn relay_once(gateway: &Gateway, batch: u32, lease: Duration) -> anyhow::Result<usize> {
    let items = gateway.store.claim_outbox(batch, lease).await?;
    let claimed = items.len();
    if claimed > 0 {
        publish_and_mark(gateway, items).await;
    }
    Ok(claimed)
}

/// Publishes `items` (each confirmed), then marks the confirmed ones; a
/// failure leaves the rows to be claimed once their lease runs out.
async fn publish_and_mark(gateway: &Gateway, items: Vec<OutboxItem>) {
    let published = publish_all(gateway, items).await;
    if let Err(err) = gateway.store.mark_published(&published).await {
        tracing::warn!(error = %err, "cannot mark published commands; they are published again after their lease");
    }
}

/// The ids of the items the broker confirmed.
async fn publish_all(gateway: &Gateway, items: Vec<OutboxItem>) -> Vec<i64> {
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
    done
}
