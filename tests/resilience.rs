//! Failures: a worker killed mid-job, the broker dropping every connection,
//! messages that always fail, and messages that are not messages.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use slipway_tests::{Cluster, ClusterOptions, events};

#[tokio::test(flavor = "multi_thread")]
async fn a_job_held_by_a_killed_worker_completes_on_a_replica_exactly_once() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    // Every step takes 1.5 s, so the validator is sure to hold the job when killed.
    let id = cluster
        .submit(json!({ "step_millis": 1500 }))
        .await
        .unwrap();
    cluster
        .wait_step(id, "validate", "started", Duration::from_secs(30))
        .await
        .unwrap();
    let validator = cluster
        .workers
        .iter()
        .position(|w| w.name.starts_with("slipway-validator"))
        .unwrap();
    cluster.workers[validator].kill().await;

    // Nothing can finish while no validator runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.run(id).await.unwrap()["state"], "validating");

    cluster.spawn_worker("slipway-validator").await.unwrap();
    let run = cluster
        .wait_terminal(id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.log_hint());
    let history = cluster.history(id).await.unwrap();
    let succeeded = history
        .iter()
        .filter(|e| e["kind"] == "transition" && e["state"] == "succeeded")
        .count();
    assert_eq!(succeeded, 1, "the run must end Succeeded exactly once");
    assert_eq!(
        events(&history, "import", "succeeded").len(),
        1,
        "imported once"
    );
    assert!(
        events(&history, "validate", "started").len() >= 2,
        "the replica redid the killed validation"
    );
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn services_reconnect_when_the_broker_drops_every_connection() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let id = cluster
        .submit(json!({ "step_millis": 1000 }))
        .await
        .unwrap();
    cluster
        .wait_step(id, "validate", "started", Duration::from_secs(30))
        .await
        .unwrap();
    // The management API lists new connections a little late: wait until
    // it shows at least one per service, so every service loses one.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.vhost.connection_names().await.unwrap().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the services' connections never showed up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = cluster.vhost.close_all_connections().await.unwrap();
    assert!(
        closed.len() >= 4,
        "expected the four services' connections, closed {closed:?}"
    );

    let run = cluster
        .wait_terminal(id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.log_hint());
    // And the reconnected services keep working for new runs.
    let next = cluster.submit(json!({})).await.unwrap();
    let run = cluster
        .wait_terminal(next, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}");
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_always_fails_is_parked_and_its_run_fails_with_the_reason() {
    let options = ClusterOptions {
        env: [("SLIPWAY__BUS__MAX_ATTEMPTS".to_string(), "3".to_string())].into(),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(options).await.unwrap();
    let id = cluster
        .submit(json!({ "always_fail": "validate" }))
        .await
        .unwrap();
    let run = cluster
        .wait_terminal(id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["state"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("fail on every attempt"),
        "reason names the failure: {run}"
    );

    let history = cluster.history(id).await.unwrap();
    assert_eq!(
        events(&history, "validate", "failed").len(),
        1,
        "the third attempt parked it"
    );
    assert_eq!(
        events(&history, "validate", "retrying").len(),
        2,
        "two retries"
    );
    assert!(
        events(&history, "import", "started").is_empty()
            && events(&history, "import", "succeeded").is_empty(),
        "never imported"
    );
    let parked = cluster
        .wait_queue_depth("slipway.validator.parked", 1, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(parked, 1, "the failing command is parked");
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_parked_at_once_and_the_consumer_goes_on() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let conn = Connection::connect(&cluster.vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let newer = json!({"message_id": uuid::Uuid::now_v7(), "run_id": uuid::Uuid::now_v7(), "schema_version": 99,
                       "attempt": 1, "sent_at": "2026-01-01T00:00:00Z", "kind": "export", "body": {}});
    for body in [b"this is not json".to_vec(), newer.to_string().into_bytes()] {
        channel
            .basic_publish(
                "".into(),
                "slipway.exporter".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A good deployment after the bad ones still goes through.
    let id = cluster.submit(json!({})).await.unwrap();
    let run = cluster
        .wait_terminal(id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}");
    let parked = cluster
        .wait_queue_depth("slipway.exporter.parked", 2, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(parked, 2, "both malformed messages parked");
    let exporter_log = cluster
        .workers
        .iter()
        .find(|w| w.name.starts_with("slipway-exporter"))
        .map(|w| std::fs::read_to_string(&w.log).unwrap())
        .unwrap();
    assert!(
        exporter_log.contains("not valid JSON"),
        "the reason is logged:\n{exporter_log}"
    );
    assert!(
        exporter_log.contains("schema version 99"),
        "the reason is logged:\n{exporter_log}"
    );
    cluster.shutdown().await.unwrap();
}

/// A gateway that dies right after committing runs (before relaying their
/// commands) loses nothing: the commands wait in the outbox. Two gateway
/// replicas then relay them side by side, and each is acted on once.
#[tokio::test(flavor = "multi_thread")]
async fn outbox_survives_a_gateway_crash_and_replicas_relay_each_command_once() {
    use slipway_messages::{Deployment, Envelope, ExportCommand, Message};
    let mut cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    cluster.gateway.kill().await;

    // What a gateway commits on submit, with no gateway left to relay it.
    let store = slipway_store::Store::connect(cluster.db.url())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = uuid::Uuid::now_v7();
        let deployment = Deployment::between(&format!("Crashed{n}"), "dev", "test");
        let first = Envelope::new(
            id,
            Message::Export(ExportCommand {
                deployment: deployment.clone(),
            }),
        );
        let new = slipway_store::NewRun {
            id,
            deployment,
            requested_by: "test".into(),
            gates: Default::default(),
            artifact: None,
        };
        store
            .create_run(&new, &first, &Default::default())
            .await
            .unwrap();
        ids.push(id);
    }
    // Two replicas come up and relay concurrently.
    cluster.gateway_url = cluster.spawn_gateway().await.unwrap();
    cluster.spawn_gateway().await.unwrap();

    for id in ids {
        let run = cluster
            .wait_terminal(id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(run["state"], "succeeded", "{run}");
        let history = cluster.history(id).await.unwrap();
        assert_eq!(
            events(&history, "export", "succeeded").len(),
            1,
            "run {id} exported more than once"
        );
        assert_eq!(
            events(&history, "import", "succeeded").len(),
            1,
            "run {id} imported more than once"
        );
    }
    cluster.shutdown().await.unwrap();
}
