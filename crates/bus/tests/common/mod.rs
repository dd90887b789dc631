//! Shared support for the bus tests: a bus on either transport (AMQP on a
//! fresh vhost of the real broker), sample messages and recording handlers.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use slipway_bus::{
    BatchHandler, Bus, BusConfig, CancellationToken, FnHandler, Handler, HandlerError, QueueName,
    Transport,
};
use slipway_messages::{Deployment, Envelope, ExportCommand, Message, RunEvent};
use slipway_testkit::rabbit::{RabbitVhost, fresh_vhost};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Runs each named `async fn name(transport: Transport)` once per transport,
/// as `name::amqp` and `name::in_process`.
#[macro_export]
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn amqp() {
                super::$name(slipway_bus::Transport::Amqp).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_process() {
                super::$name(slipway_bus::Transport::InProcess).await;
            }
        }
    )*};
}

/// A bus for one test; the vhost (AMQP) lives as long as it.
pub struct TestBus {
    pub bus: Bus,
    pub config: BusConfig,
    pub vhost: Option<RabbitVhost>,
}

/// Small delays so retries finish quickly.
pub fn fast_config(transport: Transport, url: String) -> BusConfig {
    BusConfig {
        transport,
        url,
        prefetch: 8,
        max_attempts: 3,
        retry_base_ms: 20,
        retry_max_ms: 100,
        shutdown_grace_ms: 500,
        ..BusConfig::default()
    }
}

pub async fn test_bus(transport: Transport) -> TestBus {
    test_bus_with(transport, |_| {}).await
}

pub async fn test_bus_with(transport: Transport, adjust: impl FnOnce(&mut BusConfig)) -> TestBus {
    let vhost = match transport {
        Transport::Amqp => Some(fresh_vhost().await.unwrap()),
        Transport::InProcess => None,
    };
    let url = vhost
        .as_ref()
        .map(RabbitVhost::amqp_url)
        .unwrap_or_default();
    let mut config = fast_config(transport, url);
    adjust(&mut config);
    let bus = Bus::connect(&config).await.unwrap();
    TestBus { bus, config, vhost }
}

impl TestBus {
    /// Puts raw bytes into a role's queue, bypassing the bus's encoding (with
    /// lapin directly on AMQP).
    pub async fn inject_raw(&self, queue: &str, body: &[u8]) {
        match &self.vhost {
            Some(vhost) => {
                let connection = lapin::Connection::connect(&vhost.amqp_url(), Default::default())
                    .await
                    .unwrap();
                let channel = connection.create_channel().await.unwrap();
                channel
                    .basic_publish(
                        "".into(),
                        format!("{}.{queue}", self.config.prefix).into(),
                        Default::default(),
                        body,
                        Default::default(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                connection.close(200, "done".into()).await.unwrap();
            }
            None => {
                let role = match queue {
                    "exporter" => slipway_messages::Role::Exporter,
                    other => panic!("no role queue {other}"),
                };
                self.bus
                    .publish_raw(QueueName::Role(role), body, &Default::default())
                    .await
                    .unwrap();
            }
        }
    }
}

pub fn export_command() -> Envelope {
    Envelope::new(
        Uuid::now_v7(),
        Message::Export(ExportCommand {
            deployment: Deployment::between("Contoso", "dev", "test"),
        }),
    )
}

/// Starts consuming in the background; cancel the token to stop it.
pub fn spawn_consumer<H: Handler>(
    bus: &Bus,
    queue: QueueName,
    handler: H,
) -> (
    CancellationToken,
    JoinHandle<Result<(), slipway_bus::BusError>>,
) {
    let shutdown = CancellationToken::new();
    let bus = bus.clone();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { bus.consume(queue, handler, token).await });
    (shutdown, task)
}

/// Starts consuming in batches in the background; cancel the token to stop it.
pub fn spawn_batch_consumer<H: BatchHandler>(
    bus: &Bus,
    queue: QueueName,
    handler: H,
    max_batch: usize,
) -> (
    CancellationToken,
    JoinHandle<Result<(), slipway_bus::BusError>>,
) {
    let shutdown = CancellationToken::new();
    let bus = bus.clone();
    let token = shutdown.clone();
    let task =
        tokio::spawn(async move { bus.consume_batches(queue, handler, max_batch, token).await });
    (shutdown, task)
}

/// A batch handler that sends every batch it sees and answers with `outcome`
/// (called with the batch and how many batches came before it); it refuses
/// (permanently) the envelopes `refuse` names.
pub struct RecordingBatches<F, R> {
    outcome: F,
    refuse: R,
    calls: std::sync::atomic::AtomicUsize,
    seen: mpsc::UnboundedSender<Vec<Envelope>>,
    pause: Duration,
}

impl<F, R> RecordingBatches<F, R> {
    /// Makes each batch take `pause`, so the queue fills up meanwhile.
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

/// Admits every envelope.
pub type AdmitAll = fn(&Envelope) -> bool;

/// The batches a [`RecordingBatches`] saw, in order.
pub type SeenBatches = mpsc::UnboundedReceiver<Vec<Envelope>>;

pub fn recording_batches<F>(outcome: F) -> (RecordingBatches<F, AdmitAll>, SeenBatches)
where
    F: Fn(&[Envelope], usize) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    recording_batches_refusing(outcome, |_| false)
}

pub fn recording_batches_refusing<F, R>(
    outcome: F,
    refuse: R,
) -> (
    RecordingBatches<F, R>,
    mpsc::UnboundedReceiver<Vec<Envelope>>,
)
where
    F: Fn(&[Envelope], usize) -> Result<(), HandlerError> + Send + Sync + 'static,
    R: Fn(&Envelope) -> bool + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = RecordingBatches {
        outcome,
        refuse,
        calls: Default::default(),
        seen: tx,
        pause: Duration::ZERO,
    };
    (handler, rx)
}

#[async_trait::async_trait]
impl<F, R> BatchHandler for RecordingBatches<F, R>
where
    F: Fn(&[Envelope], usize) -> Result<(), HandlerError> + Send + Sync + 'static,
    R: Fn(&Envelope) -> bool + Send + Sync + 'static,
{
    fn admit(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        if (self.refuse)(envelope) {
            return Err(HandlerError::Permanent("refused by admit".into()));
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: Vec<Envelope>) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let result = (self.outcome)(&batch, call);
        tokio::time::sleep(self.pause).await;
        self.seen.send(batch).unwrap();
        result
    }
}

/// A handler that records every envelope it sees and answers with `outcome`.
pub fn recording<F>(outcome: F) -> (impl Handler, mpsc::UnboundedReceiver<Envelope>)
where
    F: Fn(&Envelope) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = FnHandler(move |envelope: Envelope| {
        let result = outcome(&envelope);
        tx.send(envelope).unwrap();
        async move { result }
    });
    (handler, rx)
}

/// Consumes the event queue, sending on every run event.
pub fn watch_events(bus: &Bus) -> (CancellationToken, mpsc::UnboundedReceiver<(Uuid, RunEvent)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = FnHandler(move |envelope: Envelope| {
        if let Message::RunEvent(event) = envelope.message {
            tx.send((envelope.run_id, event)).unwrap();
        }
        async { Ok(()) }
    });
    let (token, _task) = spawn_consumer(bus, QueueName::Events, handler);
    (token, rx)
}

/// The next item that satisfies `wanted`, failing the test with `what` if
/// none comes (a guard against hangs, not a performance assertion).
pub async fn next_matching<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    what: &str,
    wanted: impl Fn(&T) -> bool,
) -> T {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let item = rx.recv().await.expect("the sender is gone");
            if wanted(&item) {
                return item;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it holds, failing the test with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
