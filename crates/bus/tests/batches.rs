//! Batch consumption (`Bus::consume_batches`), proven once per transport
//! (AMQP on a fresh vhost of the real RabbitMQ, and in-process): the queue's
//! order, batches under load, retries, parking and shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use slipway_bus::{BatchHandler, BusError, HandlerError, QueueName, Transport};
use slipway_messages::{Envelope, Role, StepStatus};
use tokio::sync::mpsc;
use uuid::Uuid;

const EXPORTER: QueueName = QueueName::Role(Role::Exporter);

on_both_transports!(
    batches_keep_the_queue_order,
    batches_grow_under_load,
    a_transient_batch_failure_is_retried_in_place_once,
    a_batch_failing_twice_goes_through_the_retry_queue,
    a_permanent_batch_failure_parks_every_message,
    malformed_and_refused_messages_are_parked_and_the_rest_handled,
    shutdown_returns_the_batch_and_it_is_redelivered_in_order,
);

/// Publishes `n` commands one after the other (each confirmed), so the
/// queue holds them in this order.
async fn publish_in_order(t: &TestBus, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let envelope = export_command();
        t.bus.publish(&envelope).await.unwrap();
        ids.push(envelope.message_id);
    }
    ids
}

/// Receives batches until `n` envelopes came, returning them all in order
/// and the batch sizes.
async fn receive(
    seen: &mut mpsc::UnboundedReceiver<Vec<Envelope>>,
    n: usize,
) -> (Vec<Envelope>, Vec<usize>) {
    let mut envelopes = Vec::new();
    let mut sizes = Vec::new();
    while envelopes.len() < n {
        let batch = next_matching(seen, "a batch", |_| true).await;
        sizes.push(batch.len());
        envelopes.extend(batch);
    }
    (envelopes, sizes)
}

fn ids(envelopes: &[Envelope]) -> Vec<Uuid> {
    envelopes.iter().map(|e| e.message_id).collect()
}

async fn batches_keep_the_queue_order(transport: Transport) {
    let t = test_bus(transport).await;
    let sent = publish_in_order(&t, 300).await;
    let (handler, mut seen) = recording_batches(|_, _| Ok(()));
    let (stop, task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 16);
    let (received, sizes) = receive(&mut seen, sent.len()).await;
    assert_eq!(ids(&received), sent, "the handler sees the queue's order");
    assert!(sizes.iter().all(|s| (1..=16).contains(s)), "{sizes:?}");
    assert!(received.iter().all(|e| e.attempt == 1));

    stop.cancel();
    task.await.unwrap().unwrap();
    // After the consumer stopped, anything unacked would be back in the queue.
    assert_eq!(t.bus.queue_depth(EXPORTER).await.unwrap(), 0);
    assert!(t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty());
}

async fn batches_grow_under_load(transport: Transport) {
    let t = test_bus(transport).await;
    let (handler, mut seen) = recording_batches(|_, _| Ok(()));
    let handler = handler.with_pause(Duration::from_millis(20));
    let (_stop, _task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 10);
    // Published while the consumer runs: each slow batch lets the next fill.
    let publisher = {
        let bus = t.bus.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..200 {
                let envelope = export_command();
                bus.publish(&envelope).await.unwrap();
                ids.push(envelope.message_id);
            }
            ids
        })
    };
    let (received, sizes) = receive(&mut seen, 200).await;
    let sent = publisher.await.unwrap();
    assert_eq!(ids(&received), sent);
    assert!(
        sizes.iter().any(|s| *s > 1),
        "no batch held more than one message: {sizes:?}"
    );
    assert!(sizes.iter().all(|s| *s <= 10), "{sizes:?}");
}

async fn a_transient_batch_failure_is_retried_in_place_once(transport: Transport) {
    let t = test_bus(transport).await;
    let sent = publish_in_order(&t, 5).await;
    let (handler, mut seen) = recording_batches(|_, call| match call {
        0 => Err(HandlerError::Transient("database restarting".into())),
        _ => Ok(()),
    });
    let (_stop, _task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 8);
    let failed = next_matching(&mut seen, "the failing batch", |_| true).await;
    let again = next_matching(&mut seen, "the batch again", |_| true).await;
    assert_eq!(
        again, failed,
        "the same batch, in place, with the same attempt"
    );
    let (rest, _) = receive(&mut seen, sent.len() - again.len()).await;
    let mut handled = again;
    handled.extend(rest);
    assert_eq!(ids(&handled), sent, "the order survives the retry");
    assert!(
        handled.iter().all(|e| e.attempt == 1),
        "no delivery attempt was spent"
    );
    eventually("the queue to empty", || async {
        t.bus.queue_depth(EXPORTER).await.unwrap() == 0
    })
    .await;
    assert!(t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty());
}

async fn a_batch_failing_twice_goes_through_the_retry_queue(transport: Transport) {
    let t = test_bus(transport).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let (handler, mut seen) = recording_batches(|batch, _| {
        if batch.iter().any(|e| e.attempt == 1) {
            Err(HandlerError::Transient("deadlock detected".into()))
        } else {
            Ok(())
        }
    });
    let (_stop, _task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 8);
    let sent: HashSet<Uuid> = publish_in_order(&t, 4).await.into_iter().collect();
    let mut second_attempts = HashSet::new();
    while second_attempts.len() < sent.len() {
        let batch = next_matching(&mut seen, "a batch", |_| true).await;
        for envelope in batch.iter().filter(|e| e.attempt == 2) {
            second_attempts.insert(envelope.message_id);
        }
        assert!(batch.iter().all(|e| e.attempt <= 2), "{batch:?}");
    }
    assert_eq!(second_attempts, sent);
    let (_, retrying) = next_matching(&mut events, "a retrying event", |(_, e)| {
        e.status == StepStatus::Retrying
    })
    .await;
    assert_eq!(retrying.detail.as_deref(), Some("deadlock detected"));
    assert!(t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty());
}

async fn a_permanent_batch_failure_parks_every_message(transport: Transport) {
    let t = test_bus(transport).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let sent: HashSet<Uuid> = publish_in_order(&t, 3).await.into_iter().collect();
    let (handler, _seen) =
        recording_batches(|_, _| Err(HandlerError::Permanent("schema mismatch".into())));
    let (_stop, _task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 8);
    for _ in 0..sent.len() {
        let (_, failed) = next_matching(&mut events, "a failed event", |(_, e)| {
            e.status == StepStatus::Failed
        })
        .await;
        assert_eq!(failed.detail.as_deref(), Some("schema mismatch"));
    }
    let mut parked = Vec::new();
    for _ in 0..50 {
        parked.extend(t.bus.drain_parked(Role::Exporter).await.unwrap());
        if parked.len() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parked_ids: HashSet<Uuid> = parked
        .iter()
        .map(|p| Envelope::decode(&p.body).unwrap().message_id)
        .collect();
    assert_eq!(parked_ids, sent);
    assert!(
        parked
            .iter()
            .all(|p| p.attempt == 1 && p.reason == "schema mismatch")
    );
}

async fn malformed_and_refused_messages_are_parked_and_the_rest_handled(transport: Transport) {
    let t = test_bus(transport).await;
    let good = export_command();
    let refused = export_command();
    let last = export_command();
    t.bus.publish(&good).await.unwrap();
    t.inject_raw("exporter", b"not json at all").await;
    t.bus.publish(&refused).await.unwrap();
    t.bus.publish(&last).await.unwrap();
    let refused_id = refused.message_id;
    let (handler, mut seen) =
        recording_batches_refusing(|_, _| Ok(()), move |e| e.message_id == refused_id);
    let (_stop, _task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 8);

    let (handled, _) = receive(&mut seen, 2).await;
    assert_eq!(ids(&handled), [good.message_id, last.message_id]);
    let mut parked = Vec::new();
    for _ in 0..50 {
        parked.extend(t.bus.drain_parked(Role::Exporter).await.unwrap());
        if parked.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert!(
        parked
            .iter()
            .any(|p| p.body == b"not json at all" && p.reason.contains("not valid JSON")),
        "{parked:?}"
    );
    assert!(
        parked.iter().any(|p| p.reason == "refused by admit"
            && Envelope::decode(&p.body).unwrap().message_id == refused_id),
        "{parked:?}"
    );
    eventually("the queue to empty", || async {
        t.bus.queue_depth(EXPORTER).await.unwrap() == 0
    })
    .await;
}

/// Never finishes a batch.
struct Stuck(Arc<AtomicBool>);

#[async_trait::async_trait]
impl BatchHandler for Stuck {
    async fn handle_batch(&self, _: Vec<Envelope>) -> Result<(), HandlerError> {
        self.0.store(true, Ordering::SeqCst);
        std::future::pending().await
    }
}

async fn shutdown_returns_the_batch_and_it_is_redelivered_in_order(transport: Transport) {
    let t = test_bus(transport).await;
    let sent = publish_in_order(&t, 20).await;
    let started = Arc::new(AtomicBool::new(false));
    let (stop, task) = spawn_batch_consumer(&t.bus, EXPORTER, Stuck(Arc::clone(&started)), 8);
    eventually("the batch to start", || async {
        started.load(Ordering::SeqCst)
    })
    .await;

    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), task).await;
    stopped
        .expect("consume_batches returns after shutdown")
        .unwrap()
        .unwrap();

    let (handler, mut seen) = recording_batches(|_, _| Ok(()));
    let (_stop, _task) = spawn_batch_consumer(&t.bus, EXPORTER, handler, 8);
    let (received, _) = receive(&mut seen, sent.len()).await;
    assert_eq!(ids(&received), sent, "everything comes back, in order");
}

#[tokio::test]
async fn a_batch_size_of_zero_is_refused_by_name() {
    let t = test_bus(Transport::InProcess).await;
    let (handler, _seen) = recording_batches(|_, _| Ok(()));
    let err = t
        .bus
        .consume_batches(EXPORTER, handler, 0, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::InvalidBatch { max_batch: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("max_batch = 0"), "{err}");
}
