//! Follows the event queue and moves each run through its state machine:
//! the events queued are taken in order, up to `gateway.event_batch` at a
//! time, and applied in one database transaction per batch. An event may
//! carry the reports of earlier steps that travelled with the job
//! (`Envelope::reports`); they are applied first, in order.

use slipway_bus::{BatchHandler, HandlerError, QueueName};
use slipway_messages::{Envelope, Message};
use slipway_service::shutdown::CancellationToken;
use slipway_store::{Applied, Store, StoreError};

use crate::Gateway;

/// Consume run events, `max_batch` at most per transaction, until shutdown.
pub async fn run(
    gateway: Gateway,
    max_batch: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let handler = EventHandler {
        store: gateway.store.clone(),
        gateway: gateway.clone(),
    };
    gateway
        .bus
        .consume_batches(QueueName::Events, handler, max_batch, shutdown)
        .await?;
    Ok(())
}

/// Applies batches of run events to the store; the store makes that idempotent.
#[derive(Debug)]
struct EventHandler {
    store: Store,
    /// To wake the live streams of the runs a batch changed.
    gateway: Gateway,
}

#[async_trait::async_trait]
impl BatchHandler for EventHandler {
    fn admit(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        match envelope.message {
            Message::RunEvent(_) => Ok(()),
            _ => Err(HandlerError::Permanent(format!(
                "the event queue received a `{}` command; commands go to the worker queues",
                envelope.message.kind()
            ))),
        }
    }

    async fn handle_batch(&self, batch: Vec<Envelope>) -> Result<(), HandlerError> {
        let batch: Vec<Envelope> = batch.into_iter().flat_map(Envelope::into_events).collect();
        let applied = self
            .store
            .apply_events(&batch)
            .await
            .map_err(|err| match err {
                StoreError::NotAnEvent { .. } => HandlerError::Permanent(err.to_string()),
                // A database hiccup is transient: the events are retried, not lost.
                err => HandlerError::Transient(format!("cannot record the events: {err}")),
            })?;
        let mut changed = std::collections::BTreeSet::new();
        for (envelope, applied) in batch.iter().zip(applied) {
            let Message::RunEvent(event) = &envelope.message else {
                continue;
            };
            if matches!(applied, Applied::Transitioned { .. } | Applied::Recorded) {
                changed.insert(envelope.run_id);
            }
            match applied {
                Applied::Transitioned { from, to } => {
                    tracing::info!(run_id = %envelope.run_id, %from, %to, service = %event.service, "run moved")
                }
                Applied::UnknownRun => {
                    tracing::warn!(run_id = %envelope.run_id, "event for a run this gateway does not know; recorded nothing")
                }
                Applied::Recorded | Applied::Duplicate => {}
            }
        }
        for run_id in changed {
            self.gateway.run_changed(run_id);
        }
        Ok(())
    }
}
