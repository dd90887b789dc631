//! The gateway's HTTP API over a real listener, with the three workers on
//! the in-process bus, on both database backends.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway_bus::Bus;
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;
use slipway_store::Store;

#[path = "common/in_process.rs"]
mod in_process;

struct App {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(database_url: &str) -> App {
    let mut config = Config::default();
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.outbox_poll_ms = 50;
    config.artifacts.url = "memory://".into();
    config.bus = in_process::bus_config();
    let store = Store::connect(database_url).await.unwrap();
    let admin = in_process::admin_token(&store, "api test", "api-admin").await;
    let bus = Bus::connect(&config.bus).await.unwrap();
    let shutdown = CancellationToken::new();
    in_process::spawn_workers(&bus, &config, &shutdown).await;
    let (url, task) = in_process::spawn_gateway(config, store, bus, shutdown.clone()).await;
    App {
        url,
        http: slipway_testkit::http_client_with_token(&admin).unwrap(),
        shutdown,
        task,
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    async fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, run) = self.get(&format!("/api/v1/deployments/{id}")).await;
            if run["state"] == state {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run never reached {state}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn deployment() -> Value {
    json!({"solution_name": "Contoso", "source_environment": "dev", "target_environment": "test"})
}

async fn submit_runs_to_succeeded_and_reports_history(app: &App) {
    let (status, run) = app.post("/api/v1/deployments", deployment()).await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["state"], "requested");
    let id = run["id"].as_str().unwrap();
    app.wait_state(id, "succeeded").await;
    let (status, history) = app.get(&format!("/api/v1/deployments/{id}/events")).await;
    assert_eq!(status, 200);
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "transition")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    // Placeholder steps end within `worker.started_event_after_ms`: they
    // report only their end, so the run never shows `exporting`.
    assert_eq!(
        states,
        ["requested", "validating", "importing", "succeeded"]
    );
    let (_, list) = app.get("/api/v1/deployments").await;
    assert!(list.as_array().unwrap().iter().any(|r| r["id"] == id));
}

async fn bad_requests_get_clear_errors(app: &App) {
    let (status, body) = app
        .post("/api/v1/deployments", json!({"solution_name": "x"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"][0]["field"], "source_environment", "{body}");

    let (status, body) = app
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "x", "colour": 1}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("colour"), "{body}");

    let mut same = deployment();
    same["target_environment"] = "dev".into();
    let (status, body) = app.post("/api/v1/deployments", same).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("the same"),
        "{body}"
    );

    let mut empty = deployment();
    empty["solution_name"] = " ".into();
    let (status, body) = app.post("/api/v1/deployments", empty).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("solution_name"),
        "{body}"
    );

    let missing = uuid::Uuid::now_v7();
    let (status, body) = app.get(&format!("/api/v1/deployments/{missing}")).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&missing.to_string())
    );
    let (status, _) = app.get("/api/v1/deployments/not-a-uuid").await;
    assert_eq!(status, 400);
}

async fn failing_step_fails_the_run_with_its_reason(app: &App) {
    let mut d = deployment();
    d["placeholder"] = json!({"always_fail": "import"});
    let (_, run) = app.post("/api/v1/deployments", d).await;
    let run = app.wait_state(run["id"].as_str().unwrap(), "failed").await;
    assert!(
        run["reason"]
            .as_str()
            .unwrap()
            .contains("import step told to fail"),
        "{run}"
    );
}

async fn cancel_only_before_importing(app: &App) {
    let mut slow = deployment();
    slow["placeholder"] = json!({"step_millis": 2000});
    let (_, run) = app.post("/api/v1/deployments", slow).await;
    let id = run["id"].as_str().unwrap();
    let (status, run) = app
        .post(
            &format!("/api/v1/deployments/{id}/cancel"),
            json!({"reason": "wrong build"}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "canceled");
    let (status, body) = app
        .post(&format!("/api/v1/deployments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
}

async fn health_and_readiness(app: &App) {
    let resp = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
}

async fn openapi_describes_every_route(app: &App) {
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/deployments",
        "/api/v1/deployments/{id}",
        "/api/v1/deployments/{id}/events",
        "/api/v1/deployments/{id}/cancel",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["paths"]["/api/v1/deployments"]["post"]["responses"]["202"].is_object());
    assert!(
        doc["components"]["schemas"]["SubmitDeployment"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("solution_name"))
    );
}

async fn all(database_url: &str) {
    let app = start(database_url).await;
    health_and_readiness(&app).await;
    openapi_describes_every_route(&app).await;
    submit_runs_to_succeeded_and_reports_history(&app).await;
    bad_requests_get_clear_errors(&app).await;
    failing_step_fails_the_run_with_its_reason(&app).await;
    cancel_only_before_importing(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    all(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gw.sqlite").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_on_postgres() {
    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    all(db.url()).await;
    db.drop_db().await.unwrap();
}
