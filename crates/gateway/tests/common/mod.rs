//! Shared helpers of the admin API tests: a gateway started in-process on a
//! real listener (SQLite file or a fresh PostgreSQL database, in-process
//! bus), and an HTTP client whose every answer is checked for the API's
//! invariants: never a 500, and every error a JSON `{error, fields?}`.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use slipway_bus::Bus;
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;
use slipway_store::Store;

pub mod in_process;

/// The subject of the admin token every gateway starts with.
pub const ADMIN: &str = "test-admin";

/// A secret reference that never resolves, so the background WhoAmI check of
/// an environment registered with it fails at once, without any network.
pub const UNSET_SECRET: &str = "env:SLIPWAY_ADMIN_TEST_SECRET_THAT_IS_NEVER_SET";

/// Generates `sqlite::<name>` and `postgres::<name>` tests calling `<name>(Db)`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Postgres).await;
                }
            )*
        }
    };
}

/// Which database a gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A gateway running in this process.
pub struct Gw {
    pub url: String,
    pub db_url: String,
    /// The same database, for what the API cannot do (expired tokens, tampering).
    pub store: Store,
    /// A client sending the admin token.
    pub admin: Api,
    /// The gateway's bus (in-process), for workers a test runs next to it.
    pub bus: Bus,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pg: Option<slipway_testkit::pg::PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a gateway on `db` with the test defaults, changed by `tweak`.
pub async fn start(db: Db, tweak: impl FnOnce(&mut Config)) -> Gw {
    let (db_url, pg, dir) = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("gateway.sqlite").display()
            );
            (url, None, Some(dir))
        }
        Db::Postgres => {
            let pg = slipway_testkit::pg::fresh_database().await.unwrap();
            (pg.url().to_owned(), Some(pg), None)
        }
    };
    let mut config = Config::default();
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.outbox_poll_ms = 50;
    config.gateway.environment_check_timeout_ms = 5_000;
    config.bus = in_process::bus_config();
    tweak(&mut config);
    let store = Store::connect(&db_url).await.unwrap();
    let admin = in_process::admin_token(&store, "admin tests", ADMIN).await;
    let bus = Bus::connect(&config.bus).await.unwrap();
    let shutdown = CancellationToken::new();
    let (url, task) =
        in_process::spawn_gateway(config, store.clone(), bus.clone(), shutdown.clone()).await;
    let anonymous = Api {
        base: url.clone(),
        http: slipway_testkit::http_client().unwrap(),
        auth: None,
    };
    Gw {
        admin: anonymous.bearer(&admin),
        bus,
        url,
        db_url,
        store,
        shutdown,
        task,
        pg,
        _dir: dir,
    }
}

impl Gw {
    /// A client without credentials.
    pub fn anonymous(&self) -> Api {
        Api {
            auth: None,
            ..self.admin.clone()
        }
    }

    /// Creates an API token (and the roles) through the admin API.
    pub async fn token(&self, subject: &str, groups: &[&str], roles: &[&str]) -> Created {
        let body = self
            .admin
            .post(
                "/api/v1/tokens",
                json!({"name": format!("{subject} token"), "subject": subject, "groups": groups, "roles": roles}),
            )
            .await
            .ok(201);
        Created {
            token: body["token"].as_str().unwrap().to_owned(),
            id: body["api_token"]["id"].as_str().unwrap().to_owned(),
        }
    }

    /// A client for a new token of `subject`.
    pub async fn user(&self, subject: &str, groups: &[&str], roles: &[&str]) -> Api {
        let created = self.token(subject, groups, roles).await;
        self.admin.bearer(&created.token)
    }

    /// Stops the gateway, checks it stopped cleanly, drops the database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        if let Some(pg) = self.pg {
            pg.drop_db().await.unwrap();
        }
    }
}

/// A token as `POST /api/v1/tokens` returned it.
#[derive(Debug, Clone)]
pub struct Created {
    pub token: String,
    pub id: String,
}

/// An HTTP client of one gateway, as one caller.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    /// The whole `Authorization` header value, if any.
    auth: Option<String>,
}

/// One answer, with what was asked for the messages of failed assertions.
#[derive(Debug)]
pub struct Resp {
    pub request: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Resp {
    /// Asserts the status and returns the body.
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{} answered {} (expected {status}): {}",
            self.request, self.status, self.text
        );
        self.body
    }

    /// Asserts a 422 whose first field is `field`; returns the body.
    pub fn invalid(self, field: &str) -> Value {
        assert_eq!(
            self.status, 422,
            "{} answered {} (expected 422 naming {field}): {}",
            self.request, self.status, self.text
        );
        assert_eq!(
            self.body["fields"][0]["field"], field,
            "{} named the wrong field: {}",
            self.request, self.text
        );
        let reason = self.body["fields"][0]["reason"].as_str().unwrap_or("");
        assert!(
            !reason.trim().is_empty(),
            "{}: no reason given: {}",
            self.request,
            self.text
        );
        self.body
    }

    /// Asserts a 409 whose message contains `text`; returns the message.
    pub fn conflict(self, text: &str) -> String {
        assert_eq!(
            self.status, 409,
            "{} answered {} (expected 409): {}",
            self.request, self.status, self.text
        );
        let message = self.body["error"].as_str().unwrap().to_owned();
        assert!(
            message.contains(text),
            "{}: 409 message lacks {text:?}: {message}",
            self.request
        );
        message
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Api {
    /// The same gateway as `Authorization: Bearer <token>`.
    pub fn bearer(&self, token: &str) -> Api {
        self.with_authorization(&format!("Bearer {token}"))
    }

    /// The same gateway with this exact `Authorization` header.
    pub fn with_authorization(&self, value: &str) -> Api {
        Api {
            auth: Some(value.to_owned()),
            ..self.clone()
        }
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// Any request with an optional JSON body.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let raw = body.map(|b| (b.to_string(), "application/json"));
        self.send_raw(method, path, raw).await
    }

    /// Any request with an optional raw body of the given content type.
    /// Panics on a 500, and on an error answer that is not the API's JSON
    /// error shape.
    pub async fn send_raw(&self, method: Method, path: &str, body: Option<(String, &str)>) -> Resp {
        let resp = self.try_send_raw(method, path, body).await;
        assert_ne!(
            resp.status, 500,
            "{} answered 500, which no request may: {}",
            resp.request, resp.text
        );
        resp
    }

    /// [`Api::send_raw`] without the 500 check (for concurrency tests that
    /// count the answers themselves); the JSON error shape is still checked.
    pub async fn try_send(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let raw = body.map(|b| (b.to_string(), "application/json"));
        self.try_send_raw(method, path, raw).await
    }

    async fn try_send_raw(&self, method: Method, path: &str, body: Option<(String, &str)>) -> Resp {
        let request = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20));
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some((text, content_type)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(text);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let resp = Resp {
            request,
            status,
            headers,
            text,
            body,
        };
        if status >= 400 {
            assert!(
                resp.content_type().starts_with("application/json"),
                "{} answered {status} with content-type {:?}, not JSON: {}",
                resp.request,
                resp.content_type(),
                resp.text
            );
            assert!(
                resp.body["error"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{} answered {status} without an `error` message: {}",
                resp.request,
                resp.text
            );
        }
        resp
    }

    // ---- shorthands for the admin setup every scenario needs

    /// Registers an environment whose background check fails at once (its
    /// secret reference never resolves); returns its id.
    pub async fn env(&self, name: &str, kind: &str) -> String {
        let body = self
            .post(
                "/api/v1/environments",
                json!({
                    "name": name,
                    "url": format!("https://{name}.crm4.dynamics.com"),
                    "kind": kind,
                    "credentials": {"kind": "static_token", "token_ref": UNSET_SECRET},
                }),
            )
            .await
            .ok(201);
        body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a pipeline deploying from `sources`; returns its id.
    pub async fn pipeline(&self, name: &str, sources: &[&str]) -> String {
        let body = self
            .post(
                "/api/v1/pipelines",
                json!({"name": name, "source_environment_ids": sources}),
            )
            .await
            .ok(201);
        body["id"].as_str().unwrap().to_owned()
    }

    /// Adds a stage; returns its id.
    pub async fn stage(
        &self,
        pipeline: &str,
        name: &str,
        previous: Option<&str>,
        targets: &[&str],
    ) -> String {
        let body = self
            .post(
                &format!("/api/v1/pipelines/{pipeline}/stages"),
                json!({"name": name, "previous_stage_id": previous, "target_environment_ids": targets}),
            )
            .await
            .ok(201);
        body["id"].as_str().unwrap().to_owned()
    }

    /// Shares a pipeline with `user` or `group` `name`.
    pub async fn share(&self, pipeline: &str, kind: &str, name: &str) {
        self.post(
            &format!("/api/v1/pipelines/{pipeline}/shares"),
            json!({"kind": kind, "name": name}),
        )
        .await
        .ok(200);
    }
}

/// Polls `probe` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls an environment until its check is no longer `pending`.
pub async fn checked_environment(api: &Api, id: &str) -> Value {
    eventually(
        &format!("environment {id} to be checked"),
        Duration::from_secs(15),
        || async move {
            let env = api.get(&format!("/api/v1/environments/{id}")).await.ok(200);
            (env["validation_status"] != "pending").then_some(env)
        },
    )
    .await
}

/// The names of a JSON array of objects with a `name`.
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}
