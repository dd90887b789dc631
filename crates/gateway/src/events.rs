//! Follows the event queue and moves each run through its state machine.

use slipway_bus::{Handler, HandlerError, QueueName};
use slipway_messages::{Envelope, Message};
use slipway_service::shutdown::CancellationToken;
use slipway_store::{Applied, Store};

use crate::Gateway;

/// Consume run events until shutdown.
pub async fn run(gateway: Gateway, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handler = EventHandler {
        store: gateway.store.clone(),
    };
    gateway.bus.consume(QueueName::Events, handler, shutdown).await?;
    Ok(())
}

/// Applies each run event to the store; the store makes that idempotent.
#[derive(Debug)]
struct EventHandler {
    store: Store,
}

#[async_trait::async_trait]
impl Handler for EventHandler {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandlerError> {
        let Message::RunEvent(event) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the event queue received a `{}` command; commands go to the worker queues",
                envelope.message.kind()
            )));
        };
        // A database hiccup is transient: the event is retried, not lost.
        let applied = self
            .store
            .apply_event(&envelope)
            .await
            .map_err(|err| HandlerError::Transient(format!("cannot record the event: {err}")))?;
        match applied {
            Applied::Transitioned { from, to } => {
                tracing::info!(run_id = %envelope.run_id, %from, %to, service = %event.service, "run moved")
            }
            Applied::UnknownRun => {
                tracing::warn!(run_id = %envelope.run_id, "event for a run this gateway does not know; recorded nothing")
            }
            Applied::Recorded | Applied::Duplicate => {}
        }
        Ok(())
    }
}
