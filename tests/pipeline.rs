//! A deployment through the gateway and the three workers, each its own OS
//! process, over the real RabbitMQ and PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use slipway_tests::{Cluster, ClusterOptions, events};

/// Submits a placeholder deployment, waits for it to succeed and returns
/// its history.
async fn run_to_success(
    cluster: &Cluster,
    placeholder: serde_json::Value,
) -> Vec<serde_json::Value> {
    let id = cluster.submit(placeholder).await.unwrap();
    let run = cluster
        .wait_terminal(id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.log_hint());
    cluster.history(id).await.unwrap()
}

/// The steps' events in the history as `step:status`, retries left out.
fn step_events(history: &[serde_json::Value]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e["kind"] == "event" && e["status"] != "retrying")
        .map(|e| {
            format!(
                "{}:{}",
                e["step"].as_str().unwrap(),
                e["status"].as_str().unwrap()
            )
        })
        .collect()
}

/// The states the history's transitions moved to, in order.
fn states(history: &[serde_json::Value]) -> Vec<&str> {
    history
        .iter()
        .filter(|e| e["kind"] == "transition")
        .map(|e| e["state"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_passes_the_three_workers_in_order_and_succeeds() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    // Steps slower than `worker.started_event_after_ms` (200) report `started`.
    let history = run_to_success(&cluster, json!({ "step_millis": 300 })).await;
    // The order in which each step started and finished, as the gateway saw it.
    let steps = step_events(&history);
    let position = |s: &str| {
        steps
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("no {s} in {steps:?}"))
    };
    assert!(
        position("export:succeeded") < position("validate:started"),
        "{steps:?}"
    );
    assert!(
        position("validate:succeeded") < position("import:started"),
        "{steps:?}"
    );

    // Each step ran in a different process, and each process is a worker we started.
    let pids: BTreeSet<String> = cluster
        .workers
        .iter()
        .map(|w| w.pid().to_string())
        .collect();
    let mut seen = BTreeSet::new();
    for step in ["export", "validate", "import"] {
        let done = events(&history, step, "succeeded");
        assert_eq!(done.len(), 1, "{step} succeeded {} times", done.len());
        let instance = done[0]["instance"].as_str().unwrap();
        let pid = instance.rsplit(':').next().unwrap().to_string();
        assert!(
            pids.contains(&pid),
            "{step} ran in {instance}, not one of the workers {pids:?}"
        );
        seen.insert(pid);
    }
    assert_eq!(seen.len(), 3, "the three steps ran in three processes");

    // State transitions recorded in order, ending Succeeded exactly once.
    let states = states(&history);
    assert_eq!(states.first(), Some(&"requested"), "{states:?}");
    assert_eq!(
        states.iter().filter(|s| **s == "succeeded").count(),
        1,
        "{states:?}"
    );

    // SIGTERM: every service exits 0.
    cluster.shutdown().await.unwrap();
}

/// Steps done in milliseconds report only their end, and those reports
/// travel with the job to the last step's event: the gateway still sees
/// every step and every state, in order.
#[tokio::test(flavor = "multi_thread")]
async fn fast_steps_report_with_the_job() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let history = run_to_success(&cluster, json!({})).await;
    assert_eq!(
        step_events(&history),
        ["export:succeeded", "validate:succeeded", "import:succeeded"],
        "{history:#?}"
    );
    assert_eq!(
        states(&history),
        ["requested", "validating", "importing", "succeeded"]
    );
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_load_and_no_job_is_done_twice() {
    // A small prefetch, so one replica cannot hold every job at once.
    let options = ClusterOptions {
        env: [("SLIPWAY__BUS__PREFETCH".to_string(), "2".to_string())].into(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(options).await.unwrap();
    let second = cluster.spawn_worker("slipway-validator").await.unwrap();
    let second_pid = cluster.workers[second].pid().to_string();
    let first_pid = cluster.workers[1].pid().to_string();
    // Both replicas consume before the first job arrives.
    cluster
        .wait_consumers("slipway.validator", 2, Duration::from_secs(30))
        .await
        .unwrap();

    let mut ids = Vec::new();
    for _ in 0..24 {
        ids.push(cluster.submit(json!({ "step_millis": 40 })).await.unwrap());
    }
    let mut by_replica = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let run = cluster
            .wait_terminal(*id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(run["state"], "succeeded", "{run}");
        let history = cluster.history(*id).await.unwrap();
        for step in ["export", "validate", "import"] {
            let done = events(&history, step, "succeeded");
            assert_eq!(
                done.len(),
                1,
                "run {id}: {step} was done {} times: {history:#?}",
                done.len()
            );
        }
        let validated = events(&history, "validate", "succeeded");
        assert_eq!(validated.len(), 1);
        let pid = validated[0]["instance"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        *by_replica.entry(pid).or_default() += 1;
    }
    assert!(
        by_replica.contains_key(&first_pid) && by_replica.contains_key(&second_pid),
        "both validator replicas should have taken jobs: {by_replica:?}"
    );
    cluster.shutdown().await.unwrap();
}
