//! What only the RabbitMQ transport has: topology on a real broker, a clear
//! error when the broker is absent, and surviving dropped connections.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use slipway_bus::{Bus, BusConfig, BusError, Connections, FnHandler, QueueName, Transport};
use slipway_messages::{Envelope, Role};

const EXPORTER: QueueName = QueueName::Role(Role::Exporter);

#[tokio::test]
async fn declaring_the_topology_twice_is_idempotent() {
    let t = test_bus(Transport::Amqp).await;
    // Same settings, and different backoff settings (new retry tiers): both
    // must coexist with what the first bus declared.
    let again = Bus::connect(&t.config).await.unwrap();
    let other_tiers = BusConfig {
        retry_base_ms: 50,
        max_attempts: 6,
        ..t.config.clone()
    };
    let third = Bus::connect(&other_tiers).await.unwrap();
    assert!(again.is_ready() && third.is_ready());

    third.publish(&export_command()).await.unwrap();
    again.publish(&export_command()).await.unwrap();
    assert_eq!(t.bus.queue_depth(EXPORTER).await.unwrap(), 2);
    assert_eq!(t.bus.queue_depth(QueueName::Events).await.unwrap(), 0);
}

#[tokio::test]
async fn an_absent_broker_is_a_clear_error() {
    let config = BusConfig {
        url: "amqp://guest:secret@127.0.0.1:1/%2f".into(),
        ..BusConfig::default()
    };
    let err = Bus::connect(&config).await.unwrap_err();
    assert!(matches!(err, BusError::Connect { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("rabbitmq-server -detached"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password is not shown: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_publisher_survive_dropped_connections() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let t = test_bus(Transport::Amqp).await;
    let vhost = t.vhost.as_ref().unwrap();
    let handled = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&handled);
    let handler = FnHandler(move |envelope: Envelope| {
        seen.lock().unwrap().insert(envelope.message_id);
        async {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(())
        }
    });
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);

    let total = 300;
    let mut sent = HashSet::new();
    let mut cut = Vec::new();
    for i in 0..total {
        if i == total / 3 || i == 2 * total / 3 {
            eventually("some messages handled before the cut", || async {
                !handled.lock().unwrap().is_empty()
            })
            .await;
            let closed = vhost.close_all_connections().await.unwrap();
            assert!(!closed.is_empty(), "the bus had a connection to close");
            cut.extend(closed);
        }
        let envelope = export_command();
        t.bus.publish(&envelope).await.unwrap();
        sent.insert(envelope.message_id);
    }
    eventually("every message handled after the reconnects", || async {
        handled.lock().unwrap().is_superset(&sent)
    })
    .await;
    assert!(t.bus.is_ready());
    let now = vhost.connection_names().await.unwrap();
    assert!(
        now.iter().all(|name| !cut.contains(name)),
        "the bus runs on a new connection: {now:?} vs closed {cut:?}"
    );
    assert!(t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty());
}

/// Small frames keep each connection's buffers small; a message many times
/// longer than a frame still arrives whole.
#[tokio::test]
async fn a_message_longer_than_many_frames_arrives_whole() {
    let t = test_bus_with(Transport::Amqp, |c| c.frame_max = 4096).await;
    let mut sent = export_command();
    if let slipway_messages::Message::Export(command) = &mut sent.message {
        command.deployment.notes = Some("n".repeat(300 * 1024));
    }
    t.bus.publish(&sent).await.unwrap();
    let (handler, mut seen) = recording(|_| Ok(()));
    let (stop, task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let received = next_matching(&mut seen, "the long message", |_| true).await;
    assert_eq!(received, sent);
    stop.cancel();
    task.await.unwrap().unwrap();
    // The broker agreed to the frame size asked for (the management API
    // lists a connection after a moment).
    let vhost = t.vhost.as_ref().unwrap();
    let mut connections = Vec::new();
    for _ in 0..100 {
        connections = vhost.connections().await.unwrap();
        if !connections.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !connections.is_empty(),
        "the management API lists no connection"
    );
    for c in &connections {
        assert_eq!(c["frame_max"], 4096, "{c}");
    }
}

/// `connections = shared` puts publishes and consumers on one connection
/// (the workers' choice); unset or `separate`, they get one each.
#[tokio::test]
async fn shared_connections_publish_and_consume_on_one() {
    for (choice, expected) in [
        (Some(Connections::Shared), vec!["shared"]),
        (None, vec!["consume", "publish"]),
        (Some(Connections::Separate), vec!["consume", "publish"]),
    ] {
        let t = test_bus_with(Transport::Amqp, |c| c.connections = choice).await;
        let (handler, mut seen) = recording(|_| Ok(()));
        let (stop, task) = spawn_consumer(&t.bus, EXPORTER, handler);
        t.bus.publish(&export_command()).await.unwrap();
        next_matching(&mut seen, "the command", |_| true).await;
        // The management API lists a connection after a moment.
        let vhost = t.vhost.as_ref().unwrap();
        for _ in 0..100 {
            if vhost.connection_names().await.unwrap().len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Each says what it is for in the name the client gave it.
        let mut kinds: Vec<String> = vhost
            .connections()
            .await
            .unwrap()
            .iter()
            .filter_map(|c| {
                c["user_provided_name"]
                    .as_str()?
                    .rsplit(' ')
                    .next()
                    .map(str::to_owned)
            })
            .collect();
        kinds.sort();
        assert_eq!(kinds, expected, "{choice:?}");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
