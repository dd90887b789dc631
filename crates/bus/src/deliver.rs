//! What happens to deliveries, the same for both transports: decode, run
//! the handler (on one delivery, or on a batch) in a span parented to the
//! publisher's trace, then retry, park or accept each. The transport acks a
//! delivery only once it is settled here.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::Value;
use slipway_messages::{Envelope, Message, RunEvent, StepStatus};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    BatchHandler, Bus, BusError, Handler, HandlerError, QueueName, Route, TraceHeaders, trace,
};

/// Header naming why a message was parked.
pub(crate) const REASON_HEADER: &str = "x-slipway-reason";
/// Header with the delivery attempt at which a message was parked.
pub(crate) const ATTEMPT_HEADER: &str = "x-slipway-attempt";

/// A delivery as a transport hands it over: the body as it arrived and its
/// string headers.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) body: Vec<u8>,
    pub(crate) headers: TraceHeaders,
}

/// How a consumer hands its deliveries to a handler; the transports only
/// take deliveries, run this and ack what it settled.
#[async_trait::async_trait]
pub(crate) trait Process: Send + Sync + 'static {
    /// `None`: one delivery per call, calls run concurrently (up to
    /// prefetch). `Some(max)`: up to `max` deliveries per call, taken in
    /// delivery order, one call at a time.
    fn batch(&self) -> Option<usize>;

    /// Settles each of `messages`: `Ok` means it is done with (handled, sent
    /// to a retry queue, or parked) and may be acked; an `Err` (the bus
    /// itself failed) leaves it to be requeued.
    async fn settle(
        &self,
        bus: &Bus,
        queue: QueueName,
        messages: &[Incoming],
    ) -> Vec<Result<(), BusError>>;
}

/// [`Bus::consume`]: each delivery on its own.
pub(crate) struct Each<H>(pub(crate) H);

#[async_trait::async_trait]
impl<H: Handler> Process for Each<H> {
    fn batch(&self) -> Option<usize> {
        None
    }

    async fn settle(
        &self,
        bus: &Bus,
        queue: QueueName,
        messages: &[Incoming],
    ) -> Vec<Result<(), BusError>> {
        let mut settled = Vec::with_capacity(messages.len());
        for message in messages {
            settled.push(process(bus, queue, &self.0, message).await);
        }
        settled
    }
}

/// [`Bus::consume_batches`]: up to `max` deliveries per handler call.
pub(crate) struct Batches<B> {
    pub(crate) handler: B,
    pub(crate) max: usize,
}

#[async_trait::async_trait]
impl<B: BatchHandler> Process for Batches<B> {
    fn batch(&self) -> Option<usize> {
        Some(self.max)
    }

    async fn settle(
        &self,
        bus: &Bus,
        queue: QueueName,
        messages: &[Incoming],
    ) -> Vec<Result<(), BusError>> {
        process_batch(bus, queue, &self.handler, messages).await
    }
}

/// Runs `handler` on one delivery and settles it.
async fn process<H: Handler>(
    bus: &Bus,
    queue: QueueName,
    handler: &H,
    message: &Incoming,
) -> Result<(), BusError> {
    let envelope = match Envelope::decode(&message.body) {
        Ok(envelope) => envelope,
        Err(err) => return park_undecodable(bus, queue, message, &err.to_string()).await,
    };
    let span = tracing::info_span!(
        "bus.handle",
        queue = %queue,
        kind = envelope.message.kind(),
        run_id = %envelope.run_id,
        message_id = %envelope.message_id,
        attempt = envelope.attempt,
    );
    trace::set_parent(&span, &message.headers);
    async {
        let outcome = guarded(handler.handle(envelope.clone())).await;
        settle(bus, queue, &envelope, message, outcome).await
    }
    .instrument(span)
    .await
}

/// Runs `handler` on the decodable, admitted messages of a batch, in order,
/// and settles every message of it. Undecodable ones are parked at once and
/// refused ones settled alone, before the handler runs. A transient failure
/// of the batch is retried in place once after `retry_delay(1)` (a database
/// hiccup then costs neither the order nor a delivery attempt); if it fails
/// again, every message goes through the retry path like a single one.
async fn process_batch<B: BatchHandler>(
    bus: &Bus,
    queue: QueueName,
    handler: &B,
    messages: &[Incoming],
) -> Vec<Result<(), BusError>> {
    let mut settled: Vec<Result<(), BusError>> = Vec::with_capacity(messages.len());
    let mut admitted: Vec<(usize, Envelope)> = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let outcome = match Envelope::decode(&message.body) {
            Err(err) => park_undecodable(bus, queue, message, &err.to_string()).await,
            Ok(envelope) => match handler.admit(&envelope) {
                Ok(()) => {
                    admitted.push((index, envelope));
                    Ok(())
                }
                Err(refused) => settle(bus, queue, &envelope, message, Err(refused)).await,
            },
        };
        settled.push(outcome);
    }
    let Some((first, _)) = admitted.first() else {
        return settled;
    };
    let span = tracing::info_span!("bus.handle_batch", queue = %queue, size = admitted.len());
    trace::set_parent(&span, &messages[*first].headers);
    for (index, _) in &admitted[1..] {
        trace::add_link(&span, &messages[*index].headers);
    }
    async {
        let batch: Vec<Envelope> = admitted.iter().map(|(_, e)| e.clone()).collect();
        let mut outcome = guarded(handler.handle_batch(batch.clone())).await;
        if let Err(HandlerError::Transient(reason)) = &outcome {
            let delay = bus.config().retry_delay(1);
            tracing::info!(%reason, ?delay, "transient failure of a batch; retrying it in place once");
            tokio::time::sleep(delay).await;
            outcome = guarded(handler.handle_batch(batch)).await;
        }
        for (index, envelope) in &admitted {
            settled[*index] = settle(bus, queue, envelope, &messages[*index], outcome.clone()).await;
        }
    }
    .instrument(span)
    .await;
    settled
}

/// A panicking handler is a failure like any other: retried, then parked.
async fn guarded(
    handling: impl Future<Output = Result<(), HandlerError>>,
) -> Result<(), HandlerError> {
    AssertUnwindSafe(handling)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(HandlerError::Transient(panic_reason(panic.as_ref()))))
}

/// What becomes of a decoded message after its handler answered `outcome`:
/// nothing more (`Ok`), a retry with `attempt + 1` after a backoff, or
/// parking (permanent, or out of attempts) with a failed run event.
async fn settle(
    bus: &Bus,
    queue: QueueName,
    envelope: &Envelope,
    message: &Incoming,
    outcome: Result<(), HandlerError>,
) -> Result<(), BusError> {
    let error = match outcome {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    let attempt = envelope.attempt;
    let max_attempts = bus.config().max_attempts;
    match error {
        HandlerError::Transient(reason) if attempt < max_attempts => {
            let delay = bus.config().retry_delay(attempt);
            tracing::info!(%reason, ?delay, message_id = %envelope.message_id, "transient failure; retrying");
            let mut next = envelope.clone();
            next.attempt = attempt.saturating_add(1);
            bus.send(Route::Retry(queue, delay), &next.encode(), &message.headers)
                .await?;
            report(bus, queue, envelope, StepStatus::Retrying, reason).await
        }
        error => {
            let reason = match error {
                HandlerError::Transient(reason) => {
                    format!("{reason} (gave up after {attempt} attempts)")
                }
                HandlerError::Permanent(reason) => reason,
            };
            tracing::warn!(%reason, message_id = %envelope.message_id, "parking message");
            park(
                bus,
                queue,
                &message.body,
                &message.headers,
                &reason,
                attempt,
            )
            .await?;
            report(bus, queue, envelope, StepStatus::Failed, reason).await
        }
    }
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
    message: &Incoming,
    error: &str,
) -> Result<(), BusError> {
    let Incoming { body, headers } = message;
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
        Some(run_id) => {
            emit(
                bus,
                queue,
                run_id,
                None,
                StepStatus::Failed,
                reason,
                Vec::new(),
            )
            .await
        }
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
/// would loop back to the gateway, so the event queue only logs), passing
/// on the reports of earlier steps the message carried.
async fn report(
    bus: &Bus,
    queue: QueueName,
    envelope: &Envelope,
    status: StepStatus,
    reason: String,
) -> Result<(), BusError> {
    let step = match queue {
        QueueName::Role(role) => Some(role.step()),
        QueueName::Events => None,
    };
    let reports = envelope.reports.clone();
    emit(bus, queue, envelope.run_id, step, status, reason, reports).await
}

async fn emit(
    bus: &Bus,
    queue: QueueName,
    run_id: Uuid,
    step: Option<slipway_messages::Step>,
    status: StepStatus,
    reason: String,
    reports: Vec<Envelope>,
) -> Result<(), BusError> {
    let QueueName::Role(role) = queue else {
        return Ok(());
    };
    let mut event = Envelope::new(
        run_id,
        Message::RunEvent(RunEvent {
            step,
            status,
            service: role.as_str().to_owned(),
            instance: Some(crate::instance_name()),
            detail: Some(reason),
            outcome: None,
        }),
    );
    event.reports = reports;
    bus.publish(&event).await
}
