//! One deployment is one trace across all four services: each exports its
//! spans over OTLP/HTTP (JSON) to a receiver inside this test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};
use slipway_tests::{Cluster, ClusterOptions};

/// trace id -> names of the services that sent spans in it.
type Traces = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

async fn receive(State(traces): State<Traces>, Json(body): Json<Value>) -> Json<Value> {
    let mut traces = traces.lock().unwrap();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("?")
            .to_string();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                if let Some(trace) = span["traceId"].as_str() {
                    traces
                        .entry(trace.to_string())
                        .or_default()
                        .insert(service.clone());
                }
            }
        }
    }
    Json(json!({}))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_deployment_is_one_trace_across_the_four_services() {
    let traces: Traces = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(traces.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let options = ClusterOptions {
        env: [
            (
                "SLIPWAY__TELEMETRY__OTLP_ENDPOINT".to_string(),
                format!("http://{addr}"),
            ),
            (
                "SLIPWAY__TELEMETRY__OTLP_PROTOCOL".to_string(),
                "json".to_string(),
            ),
            // Export spans every 100 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
        ]
        .into(),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(options).await.unwrap();
    let id = cluster.submit(json!({})).await.unwrap();
    let run = cluster
        .wait_terminal(id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded");

    let all: BTreeSet<String> = [
        "slipway-gateway",
        "slipway-exporter",
        "slipway-validator",
        "slipway-importer",
    ]
    .map(String::from)
    .into();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let complete = traces
            .lock()
            .unwrap()
            .values()
            .any(|services| all.is_subset(services));
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no trace spans all four services: {:?}\n{}",
            traces.lock().unwrap(),
            cluster.log_hint()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.shutdown().await.unwrap();
}
