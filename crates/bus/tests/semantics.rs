//! The delivery semantics, proven once per transport (AMQP on a fresh vhost of
//! the real RabbitMQ, and in-process).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use slipway_bus::{FnHandler, HandlerError, QueueName, Transport};
use slipway_messages::{Envelope, Message, Role, Step, StepStatus};

const EXPORTER: QueueName = QueueName::Role(Role::Exporter);

on_both_transports!(
    publish_consume_ack_round_trip,
    transient_failures_retry_then_succeed,
    always_failing_message_is_parked_after_max_attempts,
    permanent_failure_is_parked_at_once,
    malformed_message_is_parked_and_consumer_continues,
    competing_consumers_share_a_queue,
    shutdown_returns_and_unacked_message_is_redelivered,
    panicking_handler_is_retried_then_parked,
    retrying_and_failed_events_pass_on_the_reports_the_command_carried,
    a_slow_delivery_does_not_hold_back_the_others,
    concurrent_settles_ack_each_delivery_once,
);

async fn publish_consume_ack_round_trip(transport: Transport) {
    let t = test_bus(transport).await;
    let sent: Vec<Envelope> = (0..3).map(|_| export_command()).collect();
    for envelope in &sent {
        t.bus.publish(envelope).await.unwrap();
    }
    let (handler, mut seen) = recording(|_| Ok(()));
    let (stop, task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let mut received = Vec::new();
    for _ in &sent {
        received.push(next_matching(&mut seen, "a delivery", |_| true).await);
    }
    let ids: HashSet<_> = received.iter().map(|e| e.message_id).collect();
    assert_eq!(ids, sent.iter().map(|e| e.message_id).collect());
    assert!(received.iter().all(|e| e.attempt == 1));
    let first = received.iter().find(|e| e.message_id == sent[0].message_id);
    assert_eq!(first, Some(&sent[0]), "the envelope arrives unchanged");

    stop.cancel();
    task.await.unwrap().unwrap();
    // After the consumer stopped, anything unacked would be back in the queue.
    assert_eq!(t.bus.queue_depth(EXPORTER).await.unwrap(), 0);
    assert!(t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty());
}

async fn transient_failures_retry_then_succeed(transport: Transport) {
    let t = test_bus_with(transport, |c| c.max_attempts = 5).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let (handler, mut seen) = recording(|e| match e.attempt {
        1 | 2 => Err(HandlerError::Transient(format!(
            "throttled on attempt {}",
            e.attempt
        ))),
        _ => Ok(()),
    });
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let envelope = export_command();
    t.bus.publish(&envelope).await.unwrap();

    let mut attempts = Vec::new();
    for _ in 0..3 {
        let delivery = next_matching(&mut seen, "a delivery", |_| true).await;
        assert_eq!(delivery.message_id, envelope.message_id);
        attempts.push(delivery.attempt);
    }
    assert_eq!(attempts, [1, 2, 3]);
    for attempt in [1, 2] {
        let (run_id, event) = next_matching(&mut events, "a retrying event", |(_, e)| {
            e.status == StepStatus::Retrying
        })
        .await;
        assert_eq!(run_id, envelope.run_id);
        assert_eq!(event.step, Some(Step::Export));
        assert_eq!(event.service, "exporter");
        assert_eq!(
            event.detail.unwrap(),
            format!("throttled on attempt {attempt}")
        );
    }
    assert!(t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty());
}

async fn always_failing_message_is_parked_after_max_attempts(transport: Transport) {
    let t = test_bus(transport).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let (handler, mut seen) =
        recording(|_| Err(HandlerError::Transient("dataverse answered 503".into())));
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let envelope = export_command();
    t.bus.publish(&envelope).await.unwrap();

    let (run_id, failed) = next_matching(&mut events, "a failed event", |(_, e)| {
        e.status == StepStatus::Failed
    })
    .await;
    assert_eq!(run_id, envelope.run_id);
    assert_eq!(failed.step, Some(Step::Export));
    assert_eq!(failed.service, "exporter");
    let detail = failed.detail.unwrap();
    assert!(detail.contains("dataverse answered 503"), "{detail}");
    assert!(detail.contains("3 attempts"), "{detail}");

    let mut attempts = Vec::new();
    while let Ok(delivery) = seen.try_recv() {
        attempts.push(delivery.attempt);
    }
    assert_eq!(attempts, [1, 2, 3], "max_attempts is 3, the first included");
    let parked = t.bus.drain_parked(Role::Exporter).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempt, 3);
    assert!(parked[0].reason.contains("dataverse answered 503"));
    let body = Envelope::decode(&parked[0].body).unwrap();
    assert_eq!(body.message_id, envelope.message_id);
    assert!(
        t.bus.drain_parked(Role::Exporter).await.unwrap().is_empty(),
        "draining empties"
    );
}

async fn permanent_failure_is_parked_at_once(transport: Transport) {
    let t = test_bus(transport).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let (handler, mut seen) = recording(|_| {
        Err(HandlerError::Permanent(
            "solution Contoso does not exist".into(),
        ))
    });
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let envelope = export_command();
    t.bus.publish(&envelope).await.unwrap();

    let (_, failed) = next_matching(&mut events, "a failed event", |(_, e)| {
        e.status == StepStatus::Failed
    })
    .await;
    assert_eq!(
        failed.detail.as_deref(),
        Some("solution Contoso does not exist")
    );
    assert_eq!(seen.try_recv().unwrap().attempt, 1);
    assert!(
        seen.try_recv().is_err(),
        "a permanent failure is not retried"
    );
    let parked = t.bus.drain_parked(Role::Exporter).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempt, 1);
}

async fn malformed_message_is_parked_and_consumer_continues(transport: Transport) {
    let t = test_bus(transport).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let (handler, mut seen) = recording(|_| Ok(()));
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);

    let run_id = uuid::Uuid::now_v7();
    t.inject_raw("exporter", b"not json at all").await;
    let unknown_kind = serde_json::json!({
        "message_id": uuid::Uuid::now_v7(), "run_id": run_id, "schema_version": 1,
        "attempt": 1, "sent_at": "2026-01-01T00:00:00Z", "kind": "launch_rockets", "body": {}
    });
    t.inject_raw("exporter", unknown_kind.to_string().as_bytes())
        .await;
    let good = export_command();
    t.bus.publish(&good).await.unwrap();

    let handled = next_matching(&mut seen, "the good message", |_| true).await;
    assert_eq!(
        handled.message_id, good.message_id,
        "only the good message reaches the handler"
    );
    let (_, failed) = next_matching(
        &mut events,
        "a failed event for the malformed run",
        |(r, e)| *r == run_id && e.status == StepStatus::Failed,
    )
    .await;
    assert_eq!(
        failed.step, None,
        "a malformed message cannot be attributed to a step"
    );
    assert!(failed.detail.unwrap().contains("launch_rockets"));

    eventually("both malformed messages parked", || async {
        // Draining is destructive, so look at the count through a second drain only at the end.
        t.bus.queue_depth(EXPORTER).await.unwrap() == 0
    })
    .await;
    let mut parked = Vec::new();
    for _ in 0..50 {
        parked.extend(t.bus.drain_parked(Role::Exporter).await.unwrap());
        if parked.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reasons: Vec<String> = parked.iter().map(|p| p.reason.clone()).collect();
    reasons.sort();
    assert_eq!(parked.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("launch_rockets")),
        "{reasons:?}"
    );
    assert!(parked.iter().any(|p| p.body == b"not json at all"));
}

async fn competing_consumers_share_a_queue(transport: Transport) {
    let t = test_bus_with(transport, |c| c.prefetch = 1).await;
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut stops = Vec::new();
    for consumer in 0..2 {
        let tx = tx.clone();
        let handler = FnHandler(move |envelope: Envelope| {
            tx.send((consumer, envelope.message_id)).unwrap();
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
        });
        stops.push(spawn_consumer(&t.bus, EXPORTER, handler).0);
    }
    let total = 20;
    for _ in 0..total {
        t.bus.publish(&export_command()).await.unwrap();
    }
    let mut by_consumer = [0; 2];
    let mut ids = HashSet::new();
    while ids.len() < total {
        let (consumer, id) = next_matching(&mut seen, "a delivery", |_| true).await;
        by_consumer[consumer] += 1;
        ids.insert(id);
    }
    assert!(
        by_consumer.iter().all(|n| *n > 0),
        "both consumers got work: {by_consumer:?}"
    );
}

async fn shutdown_returns_and_unacked_message_is_redelivered(transport: Transport) {
    let t = test_bus(transport).await;
    let started = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&started);
    let stuck = FnHandler(move |_: Envelope| {
        flag.store(true, Ordering::SeqCst);
        std::future::pending::<Result<(), HandlerError>>()
    });
    let (stop, task) = spawn_consumer(&t.bus, EXPORTER, stuck);
    let envelope = export_command();
    t.bus.publish(&envelope).await.unwrap();
    eventually("the handler to start", || async {
        started.load(Ordering::SeqCst)
    })
    .await;

    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), task).await;
    stopped
        .expect("consume returns after shutdown")
        .unwrap()
        .unwrap();

    let (handler, mut seen) = recording(|_| Ok(()));
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let again = next_matching(&mut seen, "the redelivery", |_| true).await;
    assert_eq!(again.message_id, envelope.message_id);
}

async fn panicking_handler_is_retried_then_parked(transport: Transport) {
    let t = test_bus(transport).await;
    let (_events_stop, mut events) = watch_events(&t.bus);
    let handler = FnHandler(|_: Envelope| async { panic!("bug in the handler") });
    let (_stop, task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let envelope = export_command();
    t.bus.publish(&envelope).await.unwrap();

    let (_, failed) = next_matching(&mut events, "a failed event", |(_, e)| {
        e.status == StepStatus::Failed
    })
    .await;
    let detail = failed.detail.unwrap();
    assert!(
        detail.contains("the handler panicked: bug in the handler"),
        "{detail}"
    );
    let parked = t.bus.drain_parked(Role::Exporter).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempt, 3);
    assert!(!task.is_finished(), "the consumer keeps running");
}

/// The reports of earlier steps travelling with a command reach the gateway
/// even when the command never succeeds: on its retrying and failed events.
async fn retrying_and_failed_events_pass_on_the_reports_the_command_carried(transport: Transport) {
    let t = test_bus_with(transport, |c| c.max_attempts = 2).await;
    let (events_handler, mut events) = recording(|_| Ok(()));
    let (_events_stop, _events_task) = spawn_consumer(&t.bus, QueueName::Events, events_handler);
    let (handler, _seen) = recording(|_| Err(HandlerError::Transient("target is down".into())));
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let mut command = export_command();
    let exported = command.next(Message::RunEvent(slipway_messages::RunEvent {
        step: Some(Step::Export),
        status: StepStatus::Succeeded,
        service: "exporter".into(),
        instance: None,
        detail: None,
        outcome: None,
    }));
    command.reports = vec![exported.clone()];
    t.bus.publish(&command).await.unwrap();

    for status in [StepStatus::Retrying, StepStatus::Failed] {
        let event = next_matching(
            &mut events,
            "an event about the command",
            |e| matches!(&e.message, Message::RunEvent(r) if r.status == status),
        )
        .await;
        let unpacked: Vec<uuid::Uuid> = event
            .clone()
            .into_events()
            .iter()
            .map(|e| e.message_id)
            .collect();
        assert_eq!(
            unpacked,
            [exported.message_id, event.message_id],
            "the {status:?} event carries the command's reports first"
        );
    }
}

/// Acks are coalesced, but a delivery settled above one still running is
/// acked on its own: with prefetch 2 and one slot held by a stuck job, the
/// other messages still flow through the second slot. And no coalesced ack
/// covers the stuck one: when the consumer stops, it is back in the queue.
async fn a_slow_delivery_does_not_hold_back_the_others(transport: Transport) {
    let t = test_bus_with(transport, |c| c.prefetch = 2).await;
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let slow = export_command();
    let slow_id = slow.message_id;
    let handler = FnHandler(move |envelope: Envelope| {
        tx.send(envelope.message_id).unwrap();
        async move {
            if envelope.message_id == slow_id {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    });
    t.bus.publish(&slow).await.unwrap();
    let (stop, task) = spawn_consumer(&t.bus, EXPORTER, handler);
    next_matching(&mut seen, "the slow delivery", |id| *id == slow_id).await;
    let fast: Vec<Envelope> = (0..10).map(|_| export_command()).collect();
    for envelope in &fast {
        t.bus.publish(envelope).await.unwrap();
    }
    let mut handled = HashSet::new();
    while handled.len() < fast.len() {
        let id = next_matching(&mut seen, "the fast deliveries, past the slow one", |_| {
            true
        })
        .await;
        assert_ne!(id, slow_id, "the slow delivery came again while it ran");
        handled.insert(id);
    }
    eventually("the fast deliveries to be acked", || async {
        t.bus.queue_depth(EXPORTER).await.unwrap() == 0
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(seen.try_recv().is_err(), "no fast delivery came twice");

    // Stopping handed the stuck job back: nothing had acked it.
    eventually("the stuck delivery to be back in the queue", || async {
        t.bus.queue_depth(EXPORTER).await.unwrap() == 1
    })
    .await;
    let (handler, mut again) = recording(|_| Ok(()));
    let (_stop, _task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let redelivered = next_matching(&mut again, "the stuck delivery again", |_| true).await;
    assert_eq!(redelivered.message_id, slow_id);
}

/// Many deliveries settled concurrently and out of order (each handler
/// waits a little, differently): each is handled once and acked once. A
/// wrong coalesced ack (one covering an unsettled tag, or a tag acked twice)
/// would close the channel and bring deliveries back.
async fn concurrent_settles_ack_each_delivery_once(transport: Transport) {
    let t = test_bus_with(transport, |c| c.prefetch = 16).await;
    let total = 200;
    let sent: Vec<Envelope> = (0..total).map(|_| export_command()).collect();
    for envelope in &sent {
        t.bus.publish(envelope).await.unwrap();
    }
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let handler = FnHandler(move |envelope: Envelope| {
        tx.send((envelope.message_id, envelope.attempt)).unwrap();
        let pause = u64::from(envelope.message_id.as_bytes()[15] % 5);
        async move {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            Ok(())
        }
    });
    let (stop, task) = spawn_consumer(&t.bus, EXPORTER, handler);
    let mut handled = HashSet::new();
    while handled.len() < total {
        let (id, attempt) = next_matching(&mut seen, "every delivery", |_| true).await;
        assert_eq!(attempt, 1, "{id} was retried");
        assert!(handled.insert(id), "{id} was delivered twice");
    }
    eventually("nothing left in the queue", || async {
        t.bus.queue_depth(EXPORTER).await.unwrap() == 0
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(t.bus.queue_depth(EXPORTER).await.unwrap(), 0, "all acked");
    assert!(seen.try_recv().is_err(), "no delivery came twice");
    assert_eq!(handled, sent.iter().map(|e| e.message_id).collect());
}
