//! Shared support for the bus tests: a bus on either transport (AMQP on a
//! fresh vhost of the real broker), sample messages and recording handlers.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use slipway_bus::{
    Bus, BusConfig, CancellationToken, FnHandler, Handler, HandlerError, QueueName, Transport,
};
use slipway_messages::{Deployment, Envelope, ExportCommand, Message, PlaceholderWork, RunEvent};
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
            deployment: Deployment {
                solution_name: "Contoso".into(),
                source_environment: "dev".into(),
                target_environment: "test".into(),
                version: None,
                settings: None,
                placeholder: PlaceholderWork::default(),
            },
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
