//! Outgoing webhooks over real HTTP, on both databases: a gateway started in
//! this process posts to a receiver on 127.0.0.1 that records every request.
//! Runs are moved through their gates with the API (gates, approval,
//! cancel) and, for what the workers would report, events applied to the
//! store, so every event is raised exactly when the test says.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::{Api, Db, Gw, eventually, start};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use slipway_messages::{
    ArtifactRef, Deployment, Envelope, ExportCommand, Message, PlaceholderWork, RunEvent,
    StepOutcome, StepStatus,
};
use slipway_store::{NewRun, RunGates};
use uuid::Uuid;

on_both_databases!(
    gate_events_arrive_signed_in_order_and_scoped,
    failed_deliveries_are_retried_then_kept_with_their_error,
    only_admins_manage_webhooks_and_bad_input_is_named,
);

/// The signing secret the tests' webhooks reference (a file, with the
/// newline a mounted secret has; it is dropped when read).
const SECRET: &str = "whsec-test-0123456789";
/// A reference to a variable no test sets.
const UNSET_SECRET: &str = "env:SLIPWAY_WEBHOOK_TEST_SECRET_NEVER_SET";

// ---------------------------------------------------------------- receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Debug, Clone, Default)]
struct ReceiverState {
    requests: Arc<Mutex<Vec<Received>>>,
    /// Path -> how many more requests to answer 500.
    failures: Arc<Mutex<HashMap<String, usize>>>,
}

/// A local HTTP server recording every request; answers 200, or 500 to
/// the first N requests of the paths told to fail.
struct Receiver {
    base: String,
    state: ReceiverState,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, &'static str) {
    let path = uri.path().to_owned();
    state.requests.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    let mut failures = state.failures.lock().unwrap();
    match failures.get_mut(&path) {
        Some(left) if *left > 0 => {
            *left -= 1;
            (StatusCode::INTERNAL_SERVER_ERROR, "receiver is down")
        }
        _ => (StatusCode::OK, "ok"),
    }
}

impl Receiver {
    async fn start(failing: &[(&str, usize)]) -> Receiver {
        let state = ReceiverState::default();
        state
            .failures
            .lock()
            .unwrap()
            .extend(failing.iter().map(|(path, n)| ((*path).to_owned(), *n)));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            base: format!("http://{addr}"),
            state,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The requests to `path` so far, in arrival order.
    fn at(&self, path: &str) -> Vec<Received> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got `n` requests; returns them.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        eventually(
            &format!("{n} requests to {path}"),
            Duration::from_secs(20),
            || async move {
                let got = self.at(path);
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- helpers

fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks what a receiver must check: the signature over
/// `"<timestamp>.<body>"`, and that the headers agree with the body.
fn assert_signed(request: &Received, secret: &str) {
    let timestamp = request.header("x-slipway-timestamp");
    let sent_at: i64 = timestamp.parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now - sent_at).abs() < 120,
        "timestamp {sent_at}, now {now}"
    );
    let expected = format!(
        "sha256={}",
        hmac_hex(secret, &format!("{timestamp}.{}", request.body))
    );
    assert_eq!(request.header("x-slipway-signature"), expected);
    // Another key, or another body, would not verify.
    assert_ne!(
        request.header("x-slipway-signature"),
        format!(
            "sha256={}",
            hmac_hex("another-secret", &format!("{timestamp}.{}", request.body))
        )
    );
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    assert_eq!(request.header("x-slipway-event"), body["event"]);
    assert_eq!(
        request.header("x-slipway-delivery"),
        body["delivery_id"].as_i64().unwrap().to_string()
    );
}

fn events_of(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect()
}

/// Writes [`SECRET`] to a file; returns the folder (kept alive) and its reference.
fn secret_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhook-secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let reference = format!("file:{}", path.display());
    (dir, reference)
}

async fn create_webhook(api: &Api, body: Value) -> String {
    let created = api.post("/api/v1/webhooks", body).await.ok(201);
    created["id"].as_str().unwrap().to_owned()
}

async fn deliveries(api: &Api, webhook: &str) -> Vec<Value> {
    api.get(&format!("/api/v1/webhooks/{webhook}/deliveries"))
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every delivery of `webhook` is settled (delivered or out of
/// attempts) and there are `n`; returns them, newest first.
async fn settled_deliveries(api: &Api, webhook: &str, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} settled deliveries of webhook {webhook}"),
        Duration::from_secs(20),
        || async move {
            let list = deliveries(api, webhook).await;
            (list.len() == n && list.iter().all(|d| d["status"] != "pending")).then_some(list)
        },
    )
    .await
}

fn deployment(pipeline: Option<&str>, stage: Option<&str>) -> Deployment {
    Deployment {
        solution_name: "Contoso".into(),
        source_environment: "dev".into(),
        target_environment: "test".into(),
        pipeline_id: pipeline.map(|p| p.parse().unwrap()),
        stage_id: stage.map(|s| s.parse().unwrap()),
        source: None,
        target: None,
        notes: None,
        policies: None,
        allow_older_version: false,
        hold_after_validation: true,
        version: Some("1.0.0.1".into()),
        settings: None,
        placeholder: PlaceholderWork::default(),
        deploy_as: None,
    }
}

/// What a worker would report, applied straight to the store.
async fn report(gw: &Gw, run: Uuid, step: slipway_messages::Step, outcome: Option<StepOutcome>) {
    let event = Envelope::new(
        run,
        Message::RunEvent(RunEvent {
            step: Some(step),
            status: StepStatus::Succeeded,
            service: "test-worker".into(),
            instance: None,
            detail: None,
            outcome,
        }),
    );
    gw.store.apply_event(&event).await.unwrap();
}

async fn state_of(api: &Api, run: Uuid) -> String {
    let view = api.get(&format!("/api/v1/deployments/{run}")).await.ok(200);
    view["state"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- scenarios

/// A run through every gate raises the six events in order, each signed;
/// a webhook scoped to another pipeline receives nothing, one subscribed to
/// OnDeploymentCompleted only gets that, for runs of any pipeline.
async fn gate_events_arrive_signed_in_order_and_scoped(db: Db) {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let rx = Receiver::start(&[]).await;
    let (_secret_dir, secret_ref) = secret_file();

    let dev = a.env("dev", "development").await;
    let test = a.env("test", "target").await;
    let p = a.pipeline("Webhooked", &[&dev]).await;
    let s = a.stage(&p, "Test", None, &[&test]).await;
    let q = a.pipeline("Elsewhere", &[&dev]).await;

    let all = create_webhook(
        a,
        json!({"url": rx.url("/all"), "pipeline_id": p, "secret_ref": secret_ref}),
    )
    .await;
    let done = create_webhook(
        a,
        json!({"url": rx.url("/done"), "events": ["OnDeploymentCompleted"], "secret_ref": secret_ref}),
    )
    .await;
    let other = create_webhook(
        a,
        json!({"url": rx.url("/other"), "pipeline_id": q, "secret_ref": secret_ref}),
    )
    .await;

    // A run of P through a pre-export gate, an approval and a
    // pre-deployment gate, requested by someone else (no self-approval).
    let run = Uuid::now_v7();
    gw.store
        .create_run(
            &NewRun {
                id: run,
                deployment: deployment(Some(&p), Some(&s)),
                requested_by: "maker".into(),
                gates: RunGates {
                    pre_export_gate: true,
                    approval_required: true,
                    pre_deployment_gate: true,
                    ..RunGates::default()
                },
                artifact: None,
            },
            &Envelope::new(
                run,
                Message::Export(ExportCommand {
                    deployment: deployment(Some(&p), Some(&s)),
                }),
            ),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(state_of(a, run).await, "awaiting_pre_export");
    let got = rx.wait_for("/all", 2).await;
    assert_eq!(
        events_of(&got),
        ["OnDeploymentRequested", "OnPreExportStarted"]
    );

    a.post(
        &format!("/api/v1/deployments/{run}/gates/pre_export"),
        json!({"status": 20}),
    )
    .await
    .ok(200);
    assert_eq!(state_of(a, run).await, "requested");
    report(&gw, run, slipway_messages::Step::Export, None).await;
    let artifact = ArtifactRef {
        managed_sha256: "a".repeat(64),
        unmanaged_sha256: "b".repeat(64),
        version: "1.0.0.1".into(),
        managed_bytes: 10,
    };
    let report_json: slipway_messages::ValidationReport =
        serde_json::from_value(json!({"verdict": "passed", "artifact_version": "1.0.0.1"}))
            .unwrap();
    report(
        &gw,
        run,
        slipway_messages::Step::Validate,
        Some(StepOutcome::Validated {
            artifact,
            report: report_json,
        }),
    )
    .await;
    assert_eq!(state_of(a, run).await, "awaiting_approval");
    a.post(&format!("/api/v1/deployments/{run}/approve"), json!({}))
        .await
        .ok(200);
    assert_eq!(state_of(a, run).await, "awaiting_pre_deployment");
    a.post(
        &format!("/api/v1/deployments/{run}/gates/pre_deployment"),
        json!({"status": 20}),
    )
    .await
    .ok(200);
    assert_eq!(state_of(a, run).await, "importing");
    report(&gw, run, slipway_messages::Step::Import, None).await;
    assert_eq!(state_of(a, run).await, "succeeded");

    let got = rx.wait_for("/all", 6).await;
    assert_eq!(
        events_of(&got),
        [
            "OnDeploymentRequested",
            "OnPreExportStarted",
            "OnApprovalStarted",
            "OnPreDeploymentStarted",
            "OnDeploymentStarted",
            "OnDeploymentCompleted"
        ]
    );
    for request in &got {
        assert_signed(request, SECRET);
        let body = request.json();
        assert_eq!(body["run_id"], run.to_string());
        assert_eq!(body["pipeline_id"], p.as_str());
        assert_eq!(body["stage_id"], s.as_str());
        assert_eq!(body["run_url_path"], format!("/api/v1/deployments/{run}"));
        time::OffsetDateTime::parse(
            body["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    }
    let states: Vec<Value> = got.iter().map(|r| r.json()["state"].clone()).collect();
    assert_eq!(
        states,
        [
            "awaiting_pre_export",
            "awaiting_pre_export",
            "awaiting_approval",
            "awaiting_pre_deployment",
            "importing",
            "succeeded"
        ]
    );
    assert_eq!(got[5].json()["reason"], Value::Null);

    // Every delivery is recorded as delivered at the first attempt.
    let recorded = settled_deliveries(a, &all, 6).await;
    let recorded_events: Vec<&str> = recorded
        .iter()
        .rev()
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(recorded_events, events_of(&got));
    for d in &recorded {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["run_id"], run.to_string());
        assert!(d["delivered_at"].is_string(), "{d}");
        assert_eq!(d["last_error"], Value::Null);
        assert_eq!(d["next_attempt_at"], Value::Null);
    }

    // An admin deployment without a pipeline, canceled: only the unscoped
    // webhook hears of it, with the reason.
    let raw = a
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "source_environment": "dev", "target_environment": "test"}),
        )
        .await
        .ok(202);
    let raw_id = raw["id"].as_str().unwrap().to_owned();
    a.post(
        &format!("/api/v1/deployments/{raw_id}/cancel"),
        json!({"reason": "wrong solution"}),
    )
    .await
    .ok(200);

    let got = rx.wait_for("/done", 2).await;
    assert_eq!(
        events_of(&got),
        ["OnDeploymentCompleted", "OnDeploymentCompleted"]
    );
    let first = got[0].json();
    assert_eq!(first["run_id"], run.to_string());
    assert_eq!(first["state"], "succeeded");
    let second = got[1].json();
    assert_eq!(second["run_id"], raw_id.as_str());
    assert_eq!(second["state"], "canceled");
    assert_eq!(second["reason"], "wrong solution");
    assert_eq!(second["pipeline_id"], Value::Null);
    for request in &got {
        assert_signed(request, SECRET);
    }
    settled_deliveries(a, &done, 2).await;

    // Deliveries are written with the transitions: none exist for the
    // webhook of the other pipeline, and the scoped one got no more.
    assert_eq!(deliveries(a, &other).await, Vec::<Value>::new());
    assert_eq!(deliveries(a, &all).await.len(), 6);
    assert!(rx.at("/other").is_empty());
    assert_eq!(rx.at("/all").len(), 6);

    gw.stop().await;
}

/// A receiver answering 500 twice gets the delivery at the third attempt,
/// after the backoff; one that always fails, and one whose secret cannot
/// be read, are given up after the last attempt, with the error kept.
async fn failed_deliveries_are_retried_then_kept_with_their_error(db: Db) {
    let gw = start(db, |config| {
        config.gateway.webhook_retry_base_ms = 100;
        config.gateway.webhook_retry_max_ms = 150;
        config.gateway.webhook_max_attempts = 3;
        config.gateway.webhook_timeout_ms = 5_000;
    })
    .await;
    let a = &gw.admin;
    let rx = Receiver::start(&[("/flaky", 2), ("/down", usize::MAX)]).await;
    let (_secret_dir, secret_ref) = secret_file();
    let requested = ["OnDeploymentRequested"];
    let flaky = create_webhook(
        a,
        json!({"url": rx.url("/flaky"), "events": requested, "secret_ref": secret_ref}),
    )
    .await;
    let down = create_webhook(
        a,
        json!({"url": rx.url("/down"), "events": requested, "secret_ref": secret_ref}),
    )
    .await;
    let unreadable = create_webhook(
        a,
        json!({"url": rx.url("/unreadable"), "events": requested, "secret_ref": UNSET_SECRET}),
    )
    .await;

    let run = a
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "source_environment": "dev", "target_environment": "test"}),
        )
        .await
        .ok(202);
    let run_id = run["id"].as_str().unwrap();

    // Third time lucky.
    let flaky_deliveries = settled_deliveries(a, &flaky, 1).await;
    let d = &flaky_deliveries[0];
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(d["event"], "OnDeploymentRequested");
    assert_eq!(d["run_id"], run_id);
    assert!(d["delivered_at"].is_string(), "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("500"),
        "the failure before is kept: {d}"
    );
    let attempts = rx.at("/flaky");
    assert_eq!(attempts.len(), 3);
    for request in &attempts {
        assert_signed(request, SECRET);
        assert_eq!(request.body, attempts[0].body, "the same body every time");
        assert_eq!(
            request.header("x-slipway-delivery"),
            d["id"].as_i64().unwrap().to_string()
        );
    }
    // Backoff: 100 ms after the first failure, then 150 (doubled, capped).
    let gap1 = attempts[1].at - attempts[0].at;
    let gap2 = attempts[2].at - attempts[1].at;
    assert!(gap1 >= Duration::from_millis(95), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(145), "{gap2:?}");

    // Out of attempts: undelivered, not lost, with why.
    let down_deliveries = settled_deliveries(a, &down, 1).await;
    let d = &down_deliveries[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(d["delivered_at"], Value::Null);
    assert_eq!(d["next_attempt_at"], Value::Null);
    let error = d["last_error"].as_str().unwrap();
    assert!(
        error.contains("500") && error.contains("receiver is down"),
        "{d}"
    );
    assert_eq!(rx.at("/down").len(), 3, "no attempt after the last");

    // A secret that cannot be read: retried like any failure, never sent.
    let unreadable_deliveries = settled_deliveries(a, &unreadable, 1).await;
    let d = &unreadable_deliveries[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains(UNSET_SECRET),
        "the error names the reference: {d}"
    );
    assert!(rx.at("/unreadable").is_empty());

    gw.stop().await;
}

/// Only admins register, list, remove webhooks and read deliveries; every
/// unusable field is named; changes are audited; secrets never echoed.
async fn only_admins_manage_webhooks_and_bad_input_is_named(db: Db) {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let maker = gw.user("maker", &[], &["maker"]).await;
    let approver = gw.user("approver", &[], &["approver"]).await;
    let good = json!({"url": "https://hooks.contoso.com/slipway", "secret_ref": "env:HOOK_SECRET"});

    for caller in [&maker, &approver] {
        caller.post("/api/v1/webhooks", good.clone()).await.ok(403);
        caller.get("/api/v1/webhooks").await.ok(403);
        let id = Uuid::now_v7();
        caller
            .delete(&format!("/api/v1/webhooks/{id}"))
            .await
            .ok(403);
        caller
            .get(&format!("/api/v1/webhooks/{id}/deliveries"))
            .await
            .ok(403);
    }

    let with = |patch: Value| {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (json!({"url": "http://hooks.contoso.com/x"}), "url"),
        (json!({"url": "ftp://hooks.contoso.com/x"}), "url"),
        (json!({"url": "https://user:pw@hooks.contoso.com/x"}), "url"),
        (json!({"url": ""}), "url"),
        (json!({"events": []}), "events"),
        (
            json!({"events": ["OnDeploymentRequested", "OnNothing"]}),
            "events[1]",
        ),
        (json!({"secret_ref": ""}), "secret_ref"),
        (json!({"secret_ref": "env:"}), "secret_ref"),
        (json!({"secret_ref": "file:relative/path"}), "secret_ref"),
        (json!({"pipeline_id": "not-a-uuid"}), "pipeline_id"),
        (json!({"pipeline_id": Uuid::now_v7()}), "pipeline_id"),
    ];
    for (patch, field) in cases {
        a.post("/api/v1/webhooks", with(patch)).await.invalid(field);
    }
    let pasted = a
        .post(
            "/api/v1/webhooks",
            with(json!({"secret_ref": "hunter2-pasted-secret"})),
        )
        .await
        .invalid("secret_ref");
    assert!(!pasted.to_string().contains("hunter2"), "{pasted}");
    let unknown = a
        .post("/api/v1/webhooks", with(json!({"colour": "red"})))
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.text);
    assert!(unknown.text.contains("colour"), "{}", unknown.text);
    assert_eq!(a.get("/api/v1/webhooks").await.ok(200), json!([]));

    // Events default to all; duplicates are dropped; order is the run's.
    let created = a.post("/api/v1/webhooks", good.clone()).await.ok(201);
    assert_eq!(
        created["events"],
        json!([
            "OnDeploymentRequested",
            "OnPreExportStarted",
            "OnApprovalStarted",
            "OnPreDeploymentStarted",
            "OnDeploymentStarted",
            "OnDeploymentCompleted"
        ])
    );
    assert_eq!(created["secret_ref"], "env:HOOK_SECRET");
    assert_eq!(created["pipeline_id"], Value::Null);
    assert_eq!(created["created_by"], common::ADMIN);
    let id = created["id"].as_str().unwrap().to_owned();
    let picked = a
        .post(
            "/api/v1/webhooks",
            with(json!({"events": ["OnDeploymentCompleted", "OnApprovalStarted", "OnDeploymentCompleted"], "url": "http://127.0.0.1:9/x"})),
        )
        .await
        .ok(201);
    assert_eq!(
        picked["events"],
        json!(["OnApprovalStarted", "OnDeploymentCompleted"])
    );
    let listed = a.get("/api/v1/webhooks").await.ok(200);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), picked["id"].as_str().unwrap()]);
    assert_eq!(deliveries(a, &id).await, Vec::<Value>::new());
    a.get(&format!("/api/v1/webhooks/{id}/deliveries?limit=x"))
        .await
        .invalid("limit");

    a.delete(&format!("/api/v1/webhooks/{id}")).await.ok(204);
    a.delete(&format!("/api/v1/webhooks/{id}")).await.ok(404);
    a.get(&format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .ok(404);
    assert_eq!(
        a.get("/api/v1/webhooks")
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let audit = a.get("/api/v1/audit?entity_kind=webhook").await.ok(200);
    let records: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["entity_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            ("create".to_owned(), id.clone()),
            (
                "create".to_owned(),
                picked["id"].as_str().unwrap().to_owned()
            ),
            ("delete".to_owned(), id.clone()),
        ]
    );
    assert_eq!(
        audit[2]["before"]["url"],
        "https://hooks.contoso.com/slipway"
    );
    gw.stop().await;
}
