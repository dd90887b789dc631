//! The message bus between Slipway's services: RabbitMQ for the deployed
//! services, an in-process transport with the same semantics for
//! `slipway dev` and fast tests.
//!
//! [`Bus::publish`] routes an [`Envelope`] by its message (commands to their
//! role's queue, run events to the gateway) and returns only once the broker
//! confirmed it. [`Bus::consume`] runs a [`Handler`] on each delivery with
//! prefetch-bounded concurrency and acks only after the handler returned;
//! [`Bus::consume_batches`] hands a [`BatchHandler`] what is available in
//! delivery order, one batch at a time, with the same settling rules; a
//! transient failure goes through a retry queue with backoff, a message that
//! keeps failing (or is permanent, or undecodable) is parked with its reason
//! and reported as a failed [`RunEvent`](slipway_messages::RunEvent). W3C
//! trace context travels in message headers.
//!
//! Layout:
//! - `config`: [`BusConfig`], [`Transport`], [`Connections`] and the backoff rule.
//! - `topology`: exchange and queue names ([`QueueName`]), retry tiers.
//! - `deliver`: what happens to deliveries (one, or a batch), shared by both
//!   transports.
//! - `amqp`: lapin connection, confirm channels, consumer loop, reconnects.
//! - `memory`: the in-process transport.
//! - `trace`: trace-context headers.
//!
//! This crate never drops a message silently (it is acked only once handled,
//! retried or parked), never interprets message bodies beyond decoding the
//! envelope, and never panics on what arrives from the broker.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod amqp;
mod config;
mod deliver;
mod error;
mod memory;
mod topology;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use slipway_messages::{Envelope, Role};
use tokio::task::JoinSet;

pub use config::{BusConfig, Connections, Transport};
pub use error::{BusError, HandlerError};
pub use tokio_util::sync::CancellationToken;
pub use topology::QueueName;
pub use trace::{TraceHeaders, current_trace_headers};

/// The largest `max_batch` of [`Bus::consume_batches`] (twice it must fit
/// the AMQP prefetch count, a `u16`).
pub const MAX_BATCH: usize = (u16::MAX / 2) as usize;

/// A connection to the bus. Cheap to clone; shared by all tasks of a process.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Amqp(Arc<amqp::AmqpBus>),
    Memory(Arc<memory::MemoryBus>),
}

/// Processes one message. Called concurrently (up to `prefetch`), and again
/// for a redelivered message, so implementations must be idempotent.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// `Ok` acks the message; the handler publishes any follow-up message
    /// itself before returning, so the ack comes after that publish's confirm.
    async fn handle(&self, envelope: Envelope) -> Result<(), HandlerError>;
}

/// Processes messages in batches, in delivery order, one batch at a time
/// (see [`Bus::consume_batches`]). A batch may be delivered again (also in
/// parts), so implementations must be idempotent.
#[async_trait::async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Screens each decoded message before it joins a batch. An error
    /// settles that message alone, as a [`Handler`] error would (permanent:
    /// parked at once), and the rest of the batch still goes to
    /// [`BatchHandler::handle_batch`]. Admits everything by default.
    fn admit(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let _ = envelope;
        Ok(())
    }

    /// `Ok` acks the whole batch. An error applies to every message of it: a
    /// transient one is retried in place once, then each message goes
    /// through the retry queue; a permanent one parks them all.
    async fn handle_batch(&self, batch: Vec<Envelope>) -> Result<(), HandlerError>;
}

/// A [`Handler`] made from an async closure, for small handlers and tests.
pub struct FnHandler<F>(pub F);

impl<F> std::fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnHandler")
    }
}

#[async_trait::async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Envelope) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, envelope: Envelope) -> Result<(), HandlerError> {
        (self.0)(envelope).await
    }
}

/// A message taken from a parking queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The message as it arrived (possibly not even JSON).
    pub body: Vec<u8>,
    /// Why it was parked (the `x-slipway-reason` header).
    pub reason: String,
    /// The delivery attempt at which it was parked.
    pub attempt: u32,
}

impl ParkedMessage {
    fn from_parts(body: Vec<u8>, headers: &TraceHeaders) -> Self {
        ParkedMessage {
            reason: headers
                .get(deliver::REASON_HEADER)
                .cloned()
                .unwrap_or_default(),
            attempt: headers
                .get(deliver::ATTEMPT_HEADER)
                .and_then(|a| a.parse().ok())
                .unwrap_or_default(),
            body,
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone)]
enum Route {
    /// The command exchange, routed to a role's queue.
    Command(Role),
    /// The event exchange, with this routing key.
    Event(String),
    /// Straight into a queue.
    Queue(QueueName),
    /// The queue's retry queue with this delay.
    Retry(QueueName, Duration),
    /// The queue's parking queue.
    Parked(QueueName),
}

impl Bus {
    /// Connects (AMQP) or creates (in-process) the bus and declares its
    /// topology idempotently.
    pub async fn connect(config: &BusConfig) -> Result<Bus, BusError> {
        let inner = match config.transport {
            Transport::Amqp => Inner::Amqp(Arc::new(amqp::AmqpBus::connect(config).await?)),
            Transport::InProcess => Inner::Memory(Arc::new(memory::MemoryBus::new(config))),
        };
        Ok(Bus { inner })
    }

    /// Publishes a message and waits for the broker's confirm: commands go to
    /// their role's queue, run events to the event exchange. Carries the trace
    /// context of the current span.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.publish_with_headers(envelope, &current_trace_headers())
            .await
    }

    /// [`Bus::publish`] with explicit trace headers, e.g. the `traceparent`
    /// stored with an outbox row.
    pub async fn publish_with_headers(
        &self,
        envelope: &Envelope,
        headers: &TraceHeaders,
    ) -> Result<(), BusError> {
        let route = match (&envelope.message.role(), &envelope.message) {
            (Some(role), _) => Route::Command(*role),
            (None, slipway_messages::Message::RunEvent(event)) => {
                Route::Event(topology::event_routing_key(&event.service, event.status))
            }
            (None, _) => Route::Queue(QueueName::Events),
        };
        self.send(route, &envelope.encode(), headers).await
    }

    /// Publishes a command so that it is delivered after about `delay`
    /// (through the role's retry queues, whose TTL dead-letters it back, so
    /// no delivery is held while waiting): the largest retry tier not over
    /// `delay`, else the shortest. The importer polls long imports this way.
    /// Events and bus setups without retry tiers are published at once.
    pub async fn publish_delayed(
        &self,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), BusError> {
        let tiers = self.config().retry_tiers();
        let (Some(role), Some(shortest)) = (envelope.message.role(), tiers.first().copied()) else {
            return self.publish(envelope).await;
        };
        let tier = tiers
            .iter()
            .copied()
            .filter(|t| *t <= delay)
            .max()
            .unwrap_or(shortest);
        self.send(
            Route::Retry(QueueName::Role(role), tier),
            &envelope.encode(),
            &current_trace_headers(),
        )
        .await
    }

    /// Puts bytes as they are into a queue, e.g. to replay a parked message.
    pub async fn publish_raw(
        &self,
        queue: QueueName,
        body: &[u8],
        headers: &TraceHeaders,
    ) -> Result<(), BusError> {
        self.send(Route::Queue(queue), body, headers).await
    }

    /// Consumes `queue` until `shutdown` is cancelled: acks after `handler`
    /// returned `Ok`, retries transient errors with backoff, parks after
    /// `max_attempts`, on permanent errors and undecodable messages (and then
    /// publishes a failed run event), and reconnects after the broker dropped
    /// the connection. On shutdown it stops taking deliveries, lets in-flight
    /// handlers finish (up to `shutdown_grace_ms`), returns the rest to the
    /// queue and returns `Ok`. Each handler call runs in a span whose parent
    /// is the trace context from the message headers.
    pub async fn consume<H: Handler>(
        &self,
        queue: QueueName,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        self.consume_with(queue, deliver::Each(handler), shutdown)
            .await
    }

    /// Consumes `queue` like [`Bus::consume`], but hands `handler` batches:
    /// whatever deliveries are there, up to `max_batch`, without waiting for
    /// a batch to fill, in delivery order, one batch at a time (so the
    /// handler sees the queue's order). Undecodable messages and those
    /// [`BatchHandler::admit`] refuses are settled alone before the handler
    /// runs; the rest is acked together after `Ok` (one multiple ack on
    /// AMQP), retried in place once and then through the retry queue after a
    /// transient error, and parked after a permanent one. The channel's
    /// prefetch is at least `2 * max_batch`, so the next batch arrives while
    /// one is handled. Reconnects and shutdown as in [`Bus::consume`].
    pub async fn consume_batches<H: BatchHandler>(
        &self,
        queue: QueueName,
        handler: H,
        max_batch: usize,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        if max_batch == 0 || max_batch > MAX_BATCH {
            return Err(BusError::InvalidBatch {
                max_batch,
                limit: MAX_BATCH,
            });
        }
        let batches = deliver::Batches {
            handler,
            max: max_batch,
        };
        self.consume_with(queue, batches, shutdown).await
    }

    async fn consume_with<P: deliver::Process>(
        &self,
        queue: QueueName,
        process: P,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let process = Arc::new(process);
        match &self.inner {
            Inner::Amqp(amqp) => amqp.consume(self, queue, process, shutdown).await,
            Inner::Memory(memory) => memory.consume(self, queue, process, shutdown).await,
        }
    }

    /// Is the connection up (for `/readyz`)? Always true in-process.
    pub fn is_ready(&self) -> bool {
        match &self.inner {
            Inner::Amqp(amqp) => amqp.is_ready(),
            Inner::Memory(_) => true,
        }
    }

    /// Messages ready in a queue (not counting unacked ones).
    pub async fn queue_depth(&self, queue: QueueName) -> Result<u32, BusError> {
        match &self.inner {
            Inner::Amqp(amqp) => amqp.depth(queue).await,
            Inner::Memory(memory) => Ok(memory.depth(queue)),
        }
    }

    /// Takes every message from a role's parking queue.
    pub async fn drain_parked(&self, role: Role) -> Result<Vec<ParkedMessage>, BusError> {
        self.drain_parked_queue(QueueName::Role(role)).await
    }

    /// Takes every message from any queue's parking queue (the gateway's included).
    pub async fn drain_parked_queue(
        &self,
        queue: QueueName,
    ) -> Result<Vec<ParkedMessage>, BusError> {
        match &self.inner {
            Inner::Amqp(amqp) => amqp.drain_parked(queue).await,
            Inner::Memory(memory) => Ok(memory.drain_parked(queue)),
        }
    }

    fn config(&self) -> &BusConfig {
        match &self.inner {
            Inner::Amqp(amqp) => &amqp.config,
            Inner::Memory(memory) => &memory.config,
        }
    }

    async fn send(
        &self,
        route: Route,
        body: &[u8],
        headers: &TraceHeaders,
    ) -> Result<(), BusError> {
        match &self.inner {
            Inner::Amqp(amqp) => amqp.send(route, body, headers).await,
            Inner::Memory(memory) => {
                memory.send(route, body, headers);
                Ok(())
            }
        }
    }
}

/// `host:pid`, naming this replica in the run events the bus publishes.
pub fn instance_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    })
    .clone()
}

/// Waits for in-flight handlers up to the shutdown grace, then aborts the
/// rest (their messages are unacked, so they go back to the queue).
async fn finish_in_flight(in_flight: &mut JoinSet<()>, config: &BusConfig) {
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            still_running = in_flight.len(),
            ?grace,
            "handlers did not finish within the shutdown grace; returning their messages to the queue"
        );
        in_flight.shutdown().await;
    }
}
