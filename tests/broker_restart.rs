//! The broker restarts under a running deployment: every service reconnects
//! and the deployment completes.
//!
//! This stops and starts the whole local RabbitMQ node (`rabbitmqctl
//! stop_app` / `start_app`), so it lives alone in its own test binary: cargo
//! runs test binaries one after another, and nothing else shares the broker
//! while it restarts.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use slipway_tests::{Cluster, ClusterOptions, events};

fn rabbitmqctl(arg: &str) {
    let out = std::process::Command::new("rabbitmqctl")
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `rabbitmqctl {arg}` ({e}); this test restarts the local RabbitMQ node and needs rabbitmqctl on PATH"));
    assert!(
        out.status.success(),
        "`rabbitmqctl {arg}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn services_reconnect_after_the_broker_restarts() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let id = cluster
        .submit(json!({ "step_millis": 1000 }))
        .await
        .unwrap();
    cluster
        .wait_step(id, "validate", "started", Duration::from_secs(30))
        .await
        .unwrap();

    // Each phase's time goes to stderr, shown when the test fails or with
    // --nocapture: a slow run says whether the broker or the services were.
    let started = Instant::now();
    rabbitmqctl("stop_app");
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl("start_app");
    rabbitmqctl("await_startup");
    eprintln!(
        "broker stopped and started again in {:?}",
        started.elapsed()
    );

    let run = cluster
        .wait_terminal(id, Duration::from_secs(90))
        .await
        .unwrap();
    eprintln!("the run in flight ended after {:?}", started.elapsed());
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.log_hint());
    let history = cluster.history(id).await.unwrap();
    assert_eq!(
        events(&history, "import", "succeeded").len(),
        1,
        "imported once"
    );

    // The reconnected services keep taking new work.
    let next = cluster.submit(json!({})).await.unwrap();
    let run = cluster
        .wait_terminal(next, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}");
    cluster.shutdown().await.unwrap();
}
