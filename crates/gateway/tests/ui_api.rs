//! What a browser client needs beyond the CLI's routes, over real HTTP on
//! both databases: run history filters, the solutions of an environment
//! (asked of the environment simulator), a run followed live as server-sent
//! events, and how to sign in.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{Api, Db, start};
use futures::StreamExt as _;
use serde_json::{Value, json};
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;

on_both_databases!(
    run_history_filters_apply_before_the_limit,
    makers_pick_solutions_from_their_development_environments,
    a_run_is_followed_live_to_its_end,
    browsers_learn_how_to_sign_in,
);

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

// ====================================================================
// 1. Run history filters
// ====================================================================

async fn run_history_filters_apply_before_the_limit(db: Db) {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let dev = a.env("dev", "development").await;
    let test = a.env("test", "target").await;
    let prod = a.env("prod", "target").await;
    let p1 = a.pipeline("P1", &[&dev]).await;
    let s1 = a.stage(&p1, "Test", None, &[&test]).await;
    let p2 = a.pipeline("P2", &[&dev]).await;
    let s2 = a.stage(&p2, "Prod", None, &[&prod]).await;
    a.share(&p1, "user", "maker").await;
    let maker = gw.user("maker", &[], &["maker"]).await;
    let outsider = gw.user("outsider", &[], &["maker"]).await;

    let via = |pipeline: &str, stage: &str, solution: &str| json!({"solution_name": solution, "pipeline_id": pipeline, "stage_id": stage, "source_environment": "dev", "version": "1.0.0.1"});
    // Oldest first; apart in time, so the order is certain.
    let mut submitted: [String; 4] = Default::default();
    for (i, (api, body)) in [
        (&maker, via(&p1, &s1, "Contoso")),
        (&maker, via(&p1, &s1, "Fabrikam")),
        (a, via(&p2, &s2, "contoso")),
        (
            a,
            json!({"solution_name": "CONTOSO", "source_environment": "dev", "target_environment": "test"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let run = api.post("/api/v1/deployments", body).await.ok(202);
        submitted[i] = run["id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let [contoso_p1, fabrikam_p1, contoso_p2, contoso_direct] =
        submitted.each_ref().map(String::as_str);
    maker
        .post(
            &format!("/api/v1/deployments/{fabrikam_p1}/cancel"),
            json!({"reason": "wrong build"}),
        )
        .await
        .ok(200);

    let list = |api: &Api, query: String| {
        let api = api.clone();
        async move {
            ids(&api
                .get(&format!("/api/v1/deployments{query}"))
                .await
                .ok(200))
        }
    };
    assert_eq!(
        list(a, String::new()).await,
        [contoso_direct, contoso_p2, fabrikam_p1, contoso_p1]
    );
    assert_eq!(
        list(a, format!("?pipeline={p1}")).await,
        [fabrikam_p1, contoso_p1]
    );
    // Filtered first, then limited: the newest run of P1, not of all.
    assert_eq!(
        list(a, format!("?pipeline={p1}&limit=1")).await,
        [fabrikam_p1]
    );
    assert_eq!(list(a, format!("?stage={s2}")).await, [contoso_p2]);
    // Solution names compare in any case, as in Dataverse.
    assert_eq!(
        list(a, "?solution=contoso".into()).await,
        [contoso_direct, contoso_p2, contoso_p1]
    );
    assert_eq!(
        list(a, "?solution=Contoso&limit=2".into()).await,
        [contoso_direct, contoso_p2]
    );
    assert_eq!(
        list(a, format!("?solution=Contoso&pipeline={p1}&stage={s1}")).await,
        [contoso_p1]
    );
    assert_eq!(list(a, "?state=canceled".into()).await, [fabrikam_p1]);
    assert_eq!(
        list(a, "?state=requested&solution=Fabrikam".into()).await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(a, "?state=&solution=%20&pipeline=".into()).await.len(),
        4,
        "blank filters count as absent"
    );

    // Makers see what they saw before, filtered.
    assert_eq!(list(&maker, "?solution=contoso".into()).await, [contoso_p1]);
    assert_eq!(list(&maker, format!("?pipeline={p2}")).await.len(), 0);
    assert_eq!(list(&maker, "?state=canceled".into()).await, [fabrikam_p1]);
    assert_eq!(list(&outsider, format!("?pipeline={p1}")).await.len(), 0);

    // Unusable filters are named, with what would do.
    let body = a
        .get("/api/v1/deployments?state=finished")
        .await
        .invalid("state");
    let reason = body["fields"][0]["reason"].as_str().unwrap();
    for state in ["requested", "awaiting_approval", "succeeded", "canceled"] {
        assert!(reason.contains(state), "{reason}");
    }
    assert!(reason.contains("finished"), "{reason}");
    a.get("/api/v1/deployments?pipeline=P1")
        .await
        .invalid("pipeline");
    a.get("/api/v1/deployments?stage=42").await.invalid("stage");
    let body = a
        .get("/api/v1/deployments?pipeline=x&state=y")
        .await
        .ok(422);
    assert_eq!(body["fields"].as_array().unwrap().len(), 2, "{body}");
    a.get("/api/v1/deployments?limit=many")
        .await
        .invalid("limit");

    // The OpenAPI document describes the filters, the stream and sign-in.
    let doc = gw.anonymous().get("/api/v1/openapi.json").await.ok(200);
    let params: Vec<&str> = doc["paths"]["/api/v1/deployments"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["limit", "pipeline", "stage", "solution", "state"] {
        assert!(params.contains(&name), "{name} undocumented: {params:?}");
    }
    let stream = &doc["paths"]["/api/v1/deployments/{id}/stream"]["get"];
    assert!(
        stream["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{stream}"
    );
    let sign_in = &doc["paths"]["/api/v1/auth/config"]["get"];
    assert!(sign_in["security"].is_null(), "{sign_in}");
    assert!(
        doc["paths"]["/api/v1/environments/{id}/solutions"]["get"]["responses"]["502"].is_object()
    );
    gw.stop().await;
}

// ====================================================================
// 2. The solutions of an environment
// ====================================================================

const SIM_TOKEN: &str = "sim-ui-token-51c2";

/// Installs a solution in a simulated environment, as a maker would build it.
async fn install(sim: &slipway_envsim::Running, env: &str, zip: Vec<u8>) {
    let mut config = slipway_dataverse::ClientConfig::new(
        sim.env_url(env),
        slipway_dataverse::Credentials::StaticToken(SIM_TOKEN.into()),
    );
    config.poll_interval = Duration::from_millis(50);
    config.poll_timeout = Some(Duration::from_secs(30));
    let client = slipway_dataverse::Client::new(config).unwrap();
    client
        .import_solution(&slipway_dataverse::ImportRequest::new(zip.into()))
        .await
        .unwrap();
}

async fn makers_pick_solutions_from_their_development_environments(db: Db) {
    use slipway_testkit::solution_zip::SolutionZip;
    let mut sim_config = slipway_envsim::Config::in_memory();
    sim_config.dev_tokens = vec![SIM_TOKEN.into()];
    sim_config.environments = ["contoso-dev", "other-dev", "contoso-test"]
        .into_iter()
        .map(slipway_envsim::config::EnvironmentConfig::new)
        .collect();
    let sim = slipway_envsim::EnvSim::start(sim_config).await.unwrap();
    install(
        &sim,
        "contoso-dev",
        SolutionZip::new("ContosoCore", "1.0.0.3")
            .display_name("Contoso Core")
            .publisher("Contoso", "contoso")
            .build(),
    )
    .await;
    install(
        &sim,
        "contoso-dev",
        SolutionZip::new("AlphaTools", "2.1.0.0")
            .publisher("AlphaPublisher", "alpha")
            .managed(true)
            .build(),
    )
    .await;

    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("sim-token");
    std::fs::write(&token_file, format!("{SIM_TOKEN}\n")).unwrap();
    let register = |name: &str, url: String, kind: &str| {
        let body = json!({"name": name, "url": url, "kind": kind,
               "credentials": {"kind": "static_token", "token_ref": format!("file:{}", token_file.display())}});
        async move {
            a.post("/api/v1/environments", body).await.ok(201)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let dev = register("sim-dev", sim.env_url("contoso-dev"), "development").await;
    let unlinked = register("sim-other-dev", sim.env_url("other-dev"), "development").await;
    let target = register("sim-test", sim.env_url("contoso-test"), "target").await;
    let dead = register(
        "dead-dev",
        "http://127.0.0.1:1/contoso".into(),
        "development",
    )
    .await;
    let gone = register("gone-dev", sim.env_url("no-such-env"), "development").await;
    let pipeline = a.pipeline("Contoso", &[&dev, &dead]).await;
    a.stage(&pipeline, "Test", None, &[&target]).await;
    let hidden = a.pipeline("Hidden", &[&unlinked]).await;
    a.stage(&hidden, "Test", None, &[&target]).await;
    a.share(&pipeline, "group", "makers").await;
    let maker = gw.user("maker", &["makers"], &["maker"]).await;
    let approver = gw.user("approver", &["makers"], &["approver"]).await;

    let expected = json!([
        {"unique_name": "AlphaTools", "friendly_name": "AlphaTools", "version": "2.1.0.0",
         "managed": true, "publisher": "AlphaPublisher"},
        {"unique_name": "ContosoCore", "friendly_name": "Contoso Core", "version": "1.0.0.3",
         "managed": false, "publisher": "Contoso"},
    ]);
    let path = |id: &str| format!("/api/v1/environments/{id}/solutions");
    assert_eq!(a.get(&path(&dev)).await.ok(200), expected);
    // Through a pipeline shared with the maker's group.
    assert_eq!(maker.get(&path(&dev)).await.ok(200), expected);
    assert_eq!(a.get(&path(&unlinked)).await.ok(200), json!([]));
    assert_eq!(a.get(&path(&target)).await.ok(200), json!([]));

    // Not deployable from by this maker: the same 404 as an unknown id.
    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = maker.get(&path(&unknown)).await.ok(404);
    for (id, what) in [
        (&unlinked, "a pipeline not shared with the maker"),
        (&target, "a target environment"),
    ] {
        let refused = maker.get(&path(id)).await.ok(404);
        assert_eq!(
            refused["error"]
                .as_str()
                .unwrap()
                .replace(id.as_str(), "<id>"),
            missing["error"].as_str().unwrap().replace(&unknown, "<id>"),
            "{what} answers differently from a missing environment"
        );
    }
    let refused = approver.get(&path(&dev)).await.ok(403);
    assert!(
        refused["error"].as_str().unwrap().contains("may not"),
        "{refused}"
    );

    // An environment that does not answer: 502 naming it and the error.
    for (id, name) in [(&dead, "dead-dev"), (&gone, "gone-dev")] {
        let failed = a.get(&path(id)).await.ok(502);
        let message = failed["error"].as_str().unwrap();
        assert!(message.contains(name), "{message}");
        assert!(
            message.len() > format!("environment {name} did not list its solutions: ").len(),
            "no error given: {message}"
        );
        assert!(!message.contains(SIM_TOKEN), "{message}");
    }
    maker.get(&path(&dead)).await.ok(502);
    // The simulator was asked with the environment's credentials.
    assert!(sim.stats("contoso-dev").unwrap().requests >= 2);
    gw.stop().await;
    sim.shutdown().await.unwrap();
}

// ====================================================================
// 3. A run followed live
// ====================================================================

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Reads the events of one `text/event-stream` answer.
struct Events {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: Vec<u8>,
}

impl Events {
    async fn open(base: &str, token: &str, run: &str, last_event_id: Option<&str>) -> Events {
        let http = slipway_testkit::http_client_with_token(token).unwrap();
        let mut request = http.get(format!("{base}/api/v1/deployments/{run}/stream"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Events {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream closed;
    /// fails when nothing comes `within`.
    async fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                let (mut event, mut id, mut data) = (None, None, Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                let Some(event) = event else {
                    // A keep-alive comment.
                    continue;
                };
                let data = serde_json::from_str(&data.join("\n")).unwrap();
                return Some(Sse { event, id, data });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Err(_) => panic!(
                    "no event within {within:?}; unread: {}",
                    String::from_utf8_lossy(&self.buffer)
                ),
                Ok(None) => {
                    assert!(self.buffer.is_empty(), "a cut event: {:?}", self.buffer);
                    return None;
                }
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.unwrap()),
            }
        }
    }

    /// Every event up to and including `end`; checks the stream then closes.
    async fn until_end(&mut self, within: Duration) -> Vec<Sse> {
        let mut events = Vec::new();
        while let Some(event) = self.next(within).await {
            let end = event.event == "end";
            events.push(event);
            if end {
                assert!(
                    self.next(Duration::from_secs(5)).await.is_none(),
                    "an event after end"
                );
                return events;
            }
        }
        panic!("the stream closed without an end event: {events:?}");
    }
}

/// The exporter, validator and importer on the gateway's bus, doing
/// placeholder work (the runs here name no registered environments).
async fn start_workers(bus: &slipway_bus::Bus) -> CancellationToken {
    let mut config = Config::default();
    config.artifacts.url = "memory://".into();
    let shutdown = CancellationToken::new();
    common::in_process::spawn_workers(bus, &config, &shutdown).await;
    shutdown
}

fn placeholder_run(step_millis: u64) -> Value {
    json!({"solution_name": "Contoso", "source_environment": "dev", "target_environment": "test",
           "placeholder": {"step_millis": step_millis}})
}

async fn a_run_is_followed_live_to_its_end(db: Db) {
    let gw = start(db, |c| c.artifacts.url = "memory://".into()).await;
    let workers = start_workers(&gw.bus).await;
    let a = &gw.admin;
    let token = gw.token("ui-admin", &[], &["admin"]).await.token;

    // Each step takes 700 ms: far less than the 2 s poll, so seeing every
    // state means the stream was woken by the events themselves.
    let run = a
        .post("/api/v1/deployments", placeholder_run(700))
        .await
        .ok(202);
    let id = run["id"].as_str().unwrap().to_owned();
    let mut stream = Events::open(&gw.url, &token, &id, None).await;
    let events = stream.until_end(Duration::from_secs(30)).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names[0], "run", "{names:?}");
    assert_eq!(events[0].data["id"], id.as_str());
    let end = events.last().unwrap();
    assert_eq!(
        end.data,
        json!({"id": id, "state": "succeeded", "reason": null})
    );

    let states: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "run")
        .map(|e| e.data["state"].as_str().unwrap())
        .collect();
    let order = [
        "requested",
        "exporting",
        "validating",
        "importing",
        "succeeded",
    ];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "states out of order: {states:?}"
    );
    for state in &order[1..] {
        assert!(states.contains(state), "never saw {state} live: {states:?}");
    }
    assert_eq!(
        events[events.len() - 2].event,
        "history",
        "the succeeded transition comes before end: {names:?}"
    );

    // Every history line once, in order, as GET .../events has them.
    let history: Vec<&Sse> = events.iter().filter(|e| e.event == "history").collect();
    let stored = a
        .get(&format!("/api/v1/deployments/{id}/events"))
        .await
        .ok(200);
    let stored = stored.as_array().unwrap();
    assert_eq!(history.len(), stored.len(), "{history:?}");
    for (index, (line, stored)) in history.iter().zip(stored).enumerate() {
        assert_eq!(line.id.as_deref(), Some(index.to_string().as_str()));
        assert_eq!(line.data["index"], index);
        let mut line = line.data.clone();
        line.as_object_mut().unwrap().remove("index");
        assert_eq!(&line, stored);
    }
    let transitions: Vec<&str> = history
        .iter()
        .filter(|e| e.data["kind"] == "transition")
        .map(|e| e.data["state"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, order);

    // Reconnecting after line 2: the run now, the lines after 2, end.
    let mut resumed = Events::open(&gw.url, &token, &id, Some("2")).await;
    let again = resumed.until_end(Duration::from_secs(10)).await;
    assert_eq!(again[0].event, "run");
    assert_eq!(again[0].data["state"], "succeeded");
    let indexes: Vec<u64> = again
        .iter()
        .filter(|e| e.event == "history")
        .map(|e| e.data["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (3..stored.len() as u64).collect::<Vec<_>>());
    assert_eq!(again.last().unwrap().event, "end");

    // A cancel through this gateway ends the stream at once.
    let slow = a
        .post("/api/v1/deployments", placeholder_run(5_000))
        .await
        .ok(202);
    let slow = slow["id"].as_str().unwrap().to_owned();
    let mut stream = Events::open(&gw.url, &token, &slow, None).await;
    assert_eq!(
        stream.next(Duration::from_secs(5)).await.unwrap().event,
        "run"
    );
    let asked = Instant::now();
    a.post(
        &format!("/api/v1/deployments/{slow}/cancel"),
        json!({"reason": "wrong build"}),
    )
    .await
    .ok(200);
    let events = stream.until_end(Duration::from_secs(10)).await;
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "the cancel took {:?} to reach the stream",
        asked.elapsed()
    );
    assert_eq!(
        events.last().unwrap().data,
        json!({"id": slow, "state": "canceled", "reason": "wrong build"})
    );

    // A change this gateway did not make (another replica's) shows up by polling.
    let elsewhere = a
        .post("/api/v1/deployments", placeholder_run(5_000))
        .await
        .ok(202);
    let elsewhere = elsewhere["id"].as_str().unwrap().to_owned();
    let mut stream = Events::open(&gw.url, &token, &elsewhere, None).await;
    assert_eq!(
        stream.next(Duration::from_secs(5)).await.unwrap().event,
        "run"
    );
    let outcome = gw
        .store
        .cancel_run(
            elsewhere.parse().unwrap(),
            "replica-2",
            Some("canceled elsewhere"),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, slipway_store::CancelOutcome::Canceled { .. }),
        "{outcome:?}"
    );
    let events = stream.until_end(Duration::from_secs(10)).await;
    assert_eq!(events.last().unwrap().data["state"], "canceled");

    // Same visibility as GET /api/v1/deployments/{id}.
    let outsider = gw.user("outsider", &[], &["maker"]).await;
    outsider
        .get(&format!("/api/v1/deployments/{id}/stream"))
        .await
        .ok(404);
    gw.user("nobody", &[], &[])
        .await
        .get(&format!("/api/v1/deployments/{id}/stream"))
        .await
        .ok(403);
    gw.anonymous()
        .get(&format!("/api/v1/deployments/{id}/stream"))
        .await
        .ok(401);

    // A stream open while the gateway stops does not hold it up.
    let waiting = a
        .post("/api/v1/deployments", placeholder_run(60_000))
        .await
        .ok(202);
    let mut open = Events::open(&gw.url, &token, waiting["id"].as_str().unwrap(), None).await;
    open.next(Duration::from_secs(5)).await.unwrap();
    workers.cancel();
    tokio::time::timeout(Duration::from_secs(20), gw.stop())
        .await
        .expect("the gateway did not stop with a stream open");
}

// ====================================================================
// 4. Signing in
// ====================================================================

/// Serves discovery documents on 127.0.0.1: `/good/...` names its own
/// issuer, `/liar/...` another one. Returns the base URL and a hit counter.
async fn discovery_server() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let doc = |issuer: String| {
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "jwks_uri": format!("{issuer}/keys"),
        })
    };
    let good = doc(format!("{base}/good/v2.0"));
    let liar = doc("https://login.example.test/someone-else/v2.0".into());
    let (good_hits, liar_hits) = (hits.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/good/v2.0/.well-known/openid-configuration",
            axum::routing::get(move || {
                good_hits.fetch_add(1, Ordering::SeqCst);
                let doc = good.clone();
                async move { axum::Json(doc) }
            }),
        )
        .route(
            "/liar/v2.0/.well-known/openid-configuration",
            axum::routing::get(move || {
                liar_hits.fetch_add(1, Ordering::SeqCst);
                let doc = liar.clone();
                async move { axum::Json(doc) }
            }),
        );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, hits, task)
}

/// The `connect-src` sources of the web UI page's Content-Security-Policy.
async fn connect_src(gw: &common::Gw) -> Vec<String> {
    let page = gw.anonymous().get("/ui/").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    let directive = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("connect-src "))
        .unwrap_or_else(|| panic!("no connect-src in {csp}"));
    directive
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

async fn browsers_learn_how_to_sign_in(db: Db) {
    use std::sync::atomic::Ordering;
    // Without OIDC: tokens only. No credentials needed to ask.
    let plain = start(db, |_| {}).await;
    assert_eq!(
        plain.anonymous().get("/api/v1/auth/config").await.ok(200),
        json!({"token": true, "oidc": null})
    );
    // The page may connect to the gateway alone.
    assert_eq!(connect_src(&plain).await, ["'self'"]);
    plain.stop().await;

    let (base, hits, server) = discovery_server().await;
    let with_oidc = |issuer: String| {
        move |c: &mut Config| {
            c.auth.oidc_issuer = Some(issuer.clone());
            c.auth.oidc_audience = Some("api://slipway".into());
            c.auth.oidc_jwks_url = Some(format!("{issuer}/keys"));
            c.auth.oidc_client_id = Some("slipway-web".into());
        }
    };
    let issuer = format!("{base}/good/v2.0");
    let gw = start(db, with_oidc(issuer.clone())).await;
    let expected = json!({"token": true, "oidc": {
        "issuer": issuer,
        "client_id": "slipway-web",
        "scope": "openid profile",
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "discovery_url": format!("{issuer}/.well-known/openid-configuration"),
    }});
    assert_eq!(
        gw.anonymous().get("/api/v1/auth/config").await.ok(200),
        expected
    );
    assert_eq!(gw.admin.get("/api/v1/auth/config").await.ok(200), expected);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the discovery document is cached"
    );
    // The page may also connect to the provider (token endpoint, discovery),
    // and nowhere else.
    assert_eq!(connect_src(&gw).await, ["'self'".to_owned(), base.clone()]);
    gw.stop().await;

    // A document naming another issuer is not believed: no endpoints, and
    // the browser is told where to look.
    let issuer = format!("{base}/liar/v2.0");
    let gw = start(db, with_oidc(issuer.clone())).await;
    let before = hits.load(Ordering::SeqCst);
    for _ in 0..3 {
        let got = gw.anonymous().get("/api/v1/auth/config").await.ok(200);
        assert_eq!(got["oidc"]["issuer"], issuer.as_str());
        assert_eq!(got["oidc"]["authorization_endpoint"], Value::Null, "{got}");
        assert_eq!(got["oidc"]["token_endpoint"], Value::Null, "{got}");
        assert_eq!(
            got["oidc"]["discovery_url"],
            format!("{issuer}/.well-known/openid-configuration")
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst) - before,
        1,
        "a failed discovery is not retried on every request"
    );
    gw.stop().await;
    server.abort();
}
