//! A run's import progress, from the importer's events to the API: the
//! latest percentage and the number of reports on the run
//! (`GET /api/v1/deployments/{id}`, the listing, the live stream), over
//! real HTTP on both databases. The importer's events are published on the
//! gateway's bus as an importer would.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{Db, eventually, start};
use futures::StreamExt as _;
use serde_json::{Value, json};
use slipway_messages::{Envelope, Message, RunEvent, Step, StepOutcome, StepStatus};
use uuid::Uuid;

on_both_databases!(a_run_carries_its_latest_import_progress);

/// An importer's event about run `run_id`.
fn import_event(run_id: Uuid, status: StepStatus, outcome: Option<StepOutcome>) -> Envelope {
    Envelope::new(
        run_id,
        Message::RunEvent(RunEvent {
            step: Some(Step::Import),
            status,
            service: "importer".into(),
            instance: Some("importer-test:1".into()),
            detail: None,
            outcome,
        }),
    )
}

fn progress(operation: Uuid, percent: Option<f64>) -> Option<StepOutcome> {
    Some(StepOutcome::ImportProgress {
        async_operation_id: operation,
        percent,
    })
}

/// The `run` events of a run's stream, as they come.
struct RunStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: Vec<u8>,
}

impl RunStream {
    async fn open(base: &str, token: &str, run: Uuid) -> RunStream {
        let http = slipway_testkit::http_client_with_token(token).unwrap();
        let response = http
            .get(format!("{base}/api/v1/deployments/{run}/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        RunStream {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    /// The next `run` event's RunView; fails when none comes `within`.
    async fn next_run(&mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                if !block.lines().any(|l| l.trim() == "event: run") {
                    continue;
                }
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                return serde_json::from_str(&data.join("\n")).unwrap();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Err(_) => panic!("no run event within {within:?}"),
                Ok(None) => panic!("the stream closed"),
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.unwrap()),
            }
        }
    }
}

async fn a_run_carries_its_latest_import_progress(db: Db) {
    let gw = start(db, |c| c.artifacts.url = "memory://".into()).await;
    let a = &gw.admin;
    let token = gw.token("progress-admin", &[], &["admin"]).await.token;
    // No workers: the test is the importer.
    let run = a
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "source_environment": "dev",
                   "target_environment": "test"}),
        )
        .await
        .ok(202);
    let id: Uuid = run["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/deployments/{id}");
    let path = path.as_str();
    assert_eq!(
        a.get(path).await.ok(200)["import_progress"],
        Value::Null,
        "nothing before the import"
    );

    // Publishes what the importer would.
    let publish = async |status: StepStatus, outcome: Option<StepOutcome>| {
        gw.bus
            .publish(&import_event(id, status, outcome))
            .await
            .unwrap();
    };
    // The run once it has had `polls` reports.
    let reported = async |what: &str, polls: u64| {
        eventually(what, Duration::from_secs(10), || async move {
            let run = a.get(path).await.ok(200);
            (run["import_progress"]["polls"] == polls).then_some(run)
        })
        .await
    };
    let operation = Uuid::new_v4();
    publish(StepStatus::Started, None).await;
    publish(StepStatus::Started, progress(operation, None)).await;
    let started = reported("the import's first report", 1).await;
    assert_eq!(started["state"], "importing");
    assert_eq!(started["import_progress"]["percent"], Value::Null);

    // The stream sends the run again when only its progress changed, woken
    // by the event (its own poll is 2 s away).
    let mut stream = RunStream::open(&gw.url, &token, id).await;
    let first = stream.next_run(Duration::from_secs(5)).await;
    assert_eq!(first["import_progress"]["polls"], 1, "{first}");
    let sent = Instant::now();
    publish(StepStatus::Started, progress(operation, Some(40.0))).await;
    let live = stream.next_run(Duration::from_secs(5)).await;
    assert!(
        sent.elapsed() < Duration::from_millis(1_500),
        "the progress took {:?} to reach the stream",
        sent.elapsed()
    );
    assert_eq!(live["state"], "importing");
    assert_eq!(live["import_progress"]["percent"], 40.0, "{live}");
    assert_eq!(live["import_progress"]["polls"], 2, "{live}");
    assert!(
        live["import_progress"]["updated_at"].as_str().is_some(),
        "{live}"
    );

    let shown = a.get(path).await.ok(200);
    assert_eq!(shown["import_progress"], live["import_progress"]);
    let listed = a.get("/api/v1/deployments").await.ok(200);
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .unwrap()
        .clone();
    assert_eq!(listed["import_progress"]["percent"], 40.0, "{listed}");

    // A report without a percentage (the environment did not say) keeps
    // the last one; the import's success makes it 100.
    publish(StepStatus::Started, progress(operation, None)).await;
    let kept = reported("the third report", 3).await;
    assert_eq!(kept["import_progress"]["percent"], 40.0, "{kept}");
    publish(
        StepStatus::Succeeded,
        Some(StepOutcome::Imported {
            async_operation_id: operation,
            message: None,
        }),
    )
    .await;
    let done = eventually("the success", Duration::from_secs(10), || async move {
        let run = a.get(path).await.ok(200);
        (run["state"] == "succeeded").then_some(run)
    })
    .await;
    assert_eq!(done["import_progress"]["percent"], 100.0, "{done}");
    assert_eq!(done["import_progress"]["polls"], 3, "{done}");

    // A late report of a run that is over changes nothing.
    let history_len = a.get(&format!("{path}/events")).await.ok(200);
    let history_len = history_len.as_array().unwrap().len();
    publish(StepStatus::Started, progress(operation, Some(10.0))).await;
    eventually(
        "the late report recorded",
        Duration::from_secs(10),
        || async move {
            let history = a.get(&format!("{path}/events")).await.ok(200);
            (history.as_array().unwrap().len() > history_len).then_some(())
        },
    )
    .await;
    let after = a.get(path).await.ok(200);
    assert_eq!(after["import_progress"], done["import_progress"]);

    // Documented in the OpenAPI document.
    let doc = gw.anonymous().get("/api/v1/openapi.json").await.ok(200);
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["RunView"]["properties"]["import_progress"].is_object(),
        "{}",
        schemas["RunView"]
    );
    for field in ["percent", "polls", "updated_at"] {
        assert!(
            schemas["ImportProgress"]["properties"][field].is_object(),
            "{field}: {}",
            schemas["ImportProgress"]
        );
    }
    gw.stop().await;
}
