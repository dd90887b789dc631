//! What happens to one delivery, the same for both transports: decode, run
//! the handler in a span parented to the publisher's trace, then retry, park
//! or accept. The transport acks only when this returns `Ok`.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::Value;
use slipway_messages::{Envelope, Message, RunEvent, StepStatus};
use tracing::Instrument;
use uuid::Uuid;

use crate::{Bus, BusError, Handler, HandlerError, QueueName, Route, TraceHeaders, trace};

/// Header naming why a message was parked.
pub(crate) const REASON_HEADER: &str = "x-slipway-reason";
/// Header with the delivery attempt at which a message was parked.
pub(crate) const ATTEMPT_HEADER: &str = "x-slipway-attempt";

/// Runs `handler` on one delivery and settles it: `Ok` means the message is
/// done with (handled, sent to a retry queue, or parked) and may be acked.
pub(crate) async fn process<H: Handler>(
    bus: &Bus,
    queue: QueueName,
    handler: &H,
    body: &[u8],
    headers: &TraceHeaders,
) -> Result<(), BusError> {
    let envelope = match Envelope::decode(body) {
        Ok(envelope) => envelope,
        Err(err) => return park_undecodable(bus, queue, body, headers, &err.to_string()).await,
    };
    let span = tracing::info_span!(
        "bus.handle",
        queue = %queue,
        kind = envelope.message.kind(),
        run_id = %envelope.run_id,
        message_id = %envelope.message_id,
        attempt = envelope.attempt,
    );
    trace::set_parent(&span, headers);
    async {
        let attempt = envelope.attempt;
        // A panicking handler is a failure like any other: retried, then parked.
        let outcome = AssertUnwindSafe(handler.handle(envelope.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(HandlerError::Transient(panic_reason(panic.as_ref()))));
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let max_attempts = bus.config().max_attempts;
        match error {
            HandlerError::Transient(reason) if attempt < max_attempts => {
                let delay = bus.config().retry_delay(attempt);
                tracing::info!(%reason, ?delay, "transient failure; retrying");
                let mut next = envelope.clone();
                next.attempt = attempt.saturating_add(1);
                bus.send(Route::Retry(queue, delay), &next.encode(), headers)
                    .await?;
                report(bus, queue, envelope.run_id, StepStatus::Retrying, reason).await
            }
            error => {
                let reason = match error {
                    HandlerError::Transient(reason) => {
                        format!("{reason} (gave up after {attempt} attempts)")
                    }
                    HandlerError::Permanent(reason) => reason,
                };
                tracing::warn!(%reason, "parking message");
                park(bus, queue, body, headers, &reason, attempt).await?;
                report(bus, queue, envelope.run_id, StepStatus::Failed, reason).await
            }
        }
    }
    .instrument(span)
    .await
}

fn panic_reason(panic: &(dyn Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("the handler panicked: {message}")
}

async fn park_undecodable(
    bus: &Bus,
    queue: QueueName,
    body: &[u8],
    headers: &TraceHeaders,
    error: &str,
) -> Result<(), BusError> {
    let reason = format!("undecodable message on {queue}: {error}");
    tracing::warn!(%queue, %reason, "parking undecodable message");
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|v| v.get(name)).cloned();
    let attempt = field("attempt")
        .and_then(|v| v.as_u64())
        .and_then(|a| u32::try_from(a).ok())
        .unwrap_or(1);
    park(bus, queue, body, headers, &reason, attempt).await?;
    let run_id = field("run_id").and_then(|v| serde_json::from_value::<Uuid>(v).ok());
    match run_id {
        // The message could not be attributed to a step: `step` stays `None`.
        Some(run_id) => emit(bus, queue, run_id, None, StepStatus::Failed, reason).await,
        None => Ok(()),
    }
}

async fn park(
    bus: &Bus,
    queue: QueueName,
    body: &[u8],
    headers: &TraceHeaders,
    reason: &str,
    attempt: u32,
) -> Result<(), BusError> {
    let mut headers = headers.clone();
    headers.insert(REASON_HEADER.into(), reason.into());
    headers.insert(ATTEMPT_HEADER.into(), attempt.to_string());
    bus.send(Route::Parked(queue), body, &headers).await
}

/// Tells the gateway what became of a role's message (events about events
/// would loop back to the gateway, so the event queue only logs).
async fn report(
    bus: &Bus,
    queue: QueueName,
    run_id: Uuid,
    status: StepStatus,
    reason: String,
) -> Result<(), BusError> {
    let step = match queue {
        QueueName::Role(role) => Some(role.step()),
        QueueName::Events => None,
    };
    emit(bus, queue, run_id, step, status, reason).await
}

async fn emit(
    bus: &Bus,
    queue: QueueName,
    run_id: Uuid,
    step: Option<slipway_messages::Step>,
    status: StepStatus,
    reason: String,
) -> Result<(), BusError> {
    let QueueName::Role(role) = queue else {
        return Ok(());
    };
    let event = Envelope::new(
        run_id,
        Message::RunEvent(RunEvent {
            step,
            status,
            service: role.as_str().to_owned(),
            instance: Some(crate::instance_name()),
            detail: Some(reason),
        }),
    );
    bus.publish(&event).await
}
