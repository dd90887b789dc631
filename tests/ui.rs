//! The web UI end to end, in a real browser: Debian's Chromium, headless,
//! driven over WebDriver (chromedriver) with fantoccini, against a gateway
//! and workers started as OS processes (real RabbitMQ and PostgreSQL) and
//! the environment simulator.
//!
//! Each test starts its own cluster, simulator and chromedriver (on a free
//! port, killed with its browser when the test ends). What a test is not
//! about is set up through the REST API; what it is about is done the way a
//! person does it: typing, choosing, clicking, pressing Tab. Elements are
//! found by the hooks of the UI's contract (ids, button and link texts).
//! Every wait polls with a deadline and, when it runs out, says what it
//! waited for with the page's URL and visible text.
//!
//! With `SLIPWAY_SCREENSHOTS=<folder>` the tests save PNGs of the main
//! pages there (the pictures in docs/screenshots are made that way).
#![allow(clippy::unwrap_used)]

mod e2e;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::{OUTLOOK, SHAREPOINT, connection, id_of, send, solution};
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use slipway_envsim::config::EnvironmentConfig;
use slipway_envsim::{Config, DataLocation, EnvSim, Running};
use slipway_testkit::solution_zip::SolutionZip;
use slipway_tests::{Cluster, ClusterOptions};
use uuid::Uuid;

/// The simulator's static bearer token, handed to Slipway through a file.
const SIM_TOKEN: &str = "slipway-e2e-ui";
/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);
/// How long a run may take to reach a state (debug builds, two cores,
/// several tests at once).
const RUN_DEADLINE: Duration = Duration::from_secs(60);
const INSTALL_HINT: &str = "install them with `apt-get install -y chromium chromium-driver`";

// ------------------------------------------------------------------ browser

/// A program on PATH, else at its Debian location.
fn program(name: &str, debian: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(debian))
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A chromedriver process in a process group of its own, with the browser
/// it starts; dropping it kills that group, so no Chromium outlives a test
/// (even one that panicked).
#[derive(Debug)]
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary = program("chromedriver", "/usr/bin/chromedriver");
        assert!(
            binary.is_file(),
            "the UI tests drive Chromium through chromedriver, and {} does not exist; {INSTALL_HINT}",
            binary.display()
        );
        let port = free_port();
        let child = {
            use std::os::unix::process::CommandExt as _;
            std::process::Command::new(&binary)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {}: {e}; {INSTALL_HINT}", binary.display())
                })
        };
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = slipway_testkit::http_client().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match http.get(format!("{}/status", driver.url)).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                return driver;
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited with {status} before it was ready (port {port})");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready on port {port} after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)): it and
        // the browser it started, nothing else.
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// One headless Chromium on a chromedriver of its own, looking at one
/// gateway's UI.
struct Browser {
    client: Client,
    /// The gateway, e.g. `http://127.0.0.1:41234`.
    base: String,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser whose window is `width` x `height` CSS pixels.
    async fn start(base: &str, width: u32, height: u32) -> Browser {
        let chromium = program("chromium", "/usr/bin/chromium");
        assert!(
            chromium.is_file(),
            "the UI tests need Chromium, and {} does not exist; {INSTALL_HINT}",
            chromium.display()
        );
        let driver = Driver::start().await;
        let profile = tempfile::Builder::new()
            .prefix("slipway-ui-chromium-")
            .tempdir()
            .unwrap();
        let mut capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--lang=en-US",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        if width < 500 {
            // Chrome keeps windows at least 500 px wide, even headless: a
            // phone's width takes its emulation (the page's viewport meta
            // applies as on a phone).
            capabilities["goog:chromeOptions"]["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0},
            });
        }
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start {}: {e}; {INSTALL_HINT}",
                    chromium.display()
                )
            });
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            driver,
            _profile: profile,
        }
    }

    /// Ends the session (the browser quits), then chromedriver.
    async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }

    /// Marks the page shown now, so that waiting for the next one cannot
    /// be satisfied by what is still on screen (pages load before they
    /// replace <main>).
    async fn mark_stale(&self) {
        let _ = self
            .client
            .execute(
                "document.querySelectorAll('main h1').forEach((h) => { h.dataset.stale = 'yes'; })",
                vec![],
            )
            .await;
    }

    /// Clicks a link or button that leads to another page.
    async fn follow(&self, element: &Element, what: &str) {
        self.mark_stale().await;
        self.click(element, what).await;
    }

    /// Follows the navigation link `link` to the page headed `heading`.
    async fn navigate(&self, link: &str, heading: &str) {
        let nav = self.link("#nav", link).await;
        self.follow(&nav, link).await;
        self.wait_heading(heading).await;
    }

    /// Opens a page of the UI by its route, e.g. `/deploy/<id>`.
    async fn open(&self, route: &str) {
        if self.route().await != route {
            self.mark_stale().await;
        }
        let url = format!("{}/ui/#{route}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Where the browser is and what it shows, for failure messages.
    async fn context(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(no URL: {e})"));
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(no text: {e})"));
        format!("at {url}\n--- visible text ---\n{text}\n---")
    }

    /// Polls `check` until it gives a value; fails after `within`, saying
    /// what was awaited and what the page shows.
    async fn poll<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = check().await {
                return found;
            }
            if Instant::now() > deadline {
                panic!("waited {within:?} for {what}; {}", self.context().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the element `css` to be shown.
    async fn wait_css(&self, css: &str) -> Element {
        self.poll(&format!("`{css}` to be shown"), WAIT, async || {
            let found = self.client.find(Locator::Css(css)).await.ok()?;
            found.is_displayed().await.ok()?.then_some(found)
        })
        .await
    }

    /// Waits for an element a script finds (it returns the element or null).
    async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Element {
        self.poll(what, WAIT, async || {
            let found = self.client.execute(script, args.clone()).await.ok()?;
            let id = found.as_object()?.values().next()?.as_str()?.to_owned();
            Some(Element::from_element_id(self.client.clone(), id.into()))
        })
        .await
    }

    /// The shown button whose text is `text`, inside `scope` (CSS).
    async fn button(&self, scope: &str, text: &str) -> Element {
        self.shown("button", "a button", scope, text).await
    }

    /// The shown link whose text is `text`, inside `scope` (CSS).
    async fn link(&self, scope: &str, text: &str) -> Element {
        self.shown("a", "a link", scope, text).await
    }

    /// The shown `tag` element (`what`) whose text is `text`, inside `scope`.
    async fn shown(&self, tag: &str, what: &str, scope: &str, text: &str) -> Element {
        self.wait_js(
            &format!("{what} \"{text}\" in `{scope}`"),
            "const scope = document.querySelector(arguments[0]);
             if (!scope) return null;
             return [...scope.querySelectorAll(arguments[2])].find((e) =>
               e.textContent.trim() === arguments[1] && e.getClientRects().length > 0) || null;",
            vec![json!(scope), json!(text), json!(tag)],
        )
        .await
    }

    /// The input of `form` whose label reads `label` (exactly, else the
    /// label starting with it): checkboxes named after environments.
    async fn labelled(&self, form: &str, name: &str, label: &str) -> Element {
        self.wait_js(
            &format!("an input `{name}` labelled \"{label}\" in `{form}`"),
            "const form = document.querySelector(arguments[0]);
             if (!form) return null;
             const inputs = [...form.querySelectorAll(`[name=\"${arguments[1]}\"]`)];
             const text = (i) => [...(i.labels || [])].map((l) => l.textContent.trim());
             return inputs.find((i) => text(i).some((t) => t === arguments[2]))
               || inputs.find((i) => text(i).some((t) => t.startsWith(arguments[2])))
               || null;",
            vec![json!(form), json!(name), json!(label)],
        )
        .await
    }

    /// Clicks, retrying while the element cannot take the click yet (still
    /// disabled, covered for a moment).
    async fn click(&self, element: &Element, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let refused = match element.click().await {
                Ok(()) => return,
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                panic!(
                    "{what} did not take a click within {WAIT:?}: {refused}; {}",
                    self.context().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the field `css`, replacing what it held.
    async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_css(css).await;
        field.clear().await.unwrap();
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    /// Picks the option of the select `css` whose text is `wanted` (or
    /// whose value is, or whose text contains it); waits for the option to
    /// be there (options may be loaded from the API).
    async fn choose(&self, css: &str, wanted: &str) {
        let value: String = self
            .poll(
                &format!("an option \"{wanted}\" in `{css}`"),
                WAIT,
                async || {
                    let found = self
                        .client
                        .execute(
                            "const s = document.querySelector(arguments[0]);
                             if (!s || s.disabled) return null;
                             const w = arguments[1];
                             const o = [...s.options].filter((o) => !o.disabled);
                             const hit = o.find((o) => o.textContent.trim() === w)
                               || o.find((o) => o.value === w)
                               || o.find((o) => o.textContent.includes(w));
                             return hit ? hit.value : null;",
                            vec![json!(css), json!(wanted)],
                        )
                        .await
                        .ok()?;
                    found.as_str().map(str::to_owned)
                },
            )
            .await;
        let select = self.wait_css(css).await;
        let option = select
            .find(Locator::XPath(&format!(".//option[@value='{value}']")))
            .await
            .unwrap();
        self.click(&option, &format!("option {value} of `{css}`"))
            .await;
        let chosen = self
            .js(
                "return document.querySelector(arguments[0]).value",
                vec![json!(css)],
            )
            .await;
        if chosen != value.as_str() {
            panic!(
                "`{css}` holds {chosen} after choosing {value}; {}",
                self.context().await
            );
        }
    }

    /// The text of the first `css` element ("" if there is none).
    async fn text_of(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the first `css` element's text contains `needle`.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.poll(&format!("`{css}` to read \"{needle}\""), WAIT, async || {
            let text = self.text_of(css).await;
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Waits until a newly shown page's h1 reads `heading`; with a
    /// trailing `…`, until it starts with what comes before.
    async fn wait_heading(&self, heading: &str) {
        self.poll(&format!("the heading \"{heading}\""), WAIT, async || {
            let h1 = self.text_of("main h1:not([data-stale])").await;
            let h1 = h1.trim();
            let fits = match heading.strip_suffix('…') {
                Some(start) => h1.starts_with(start),
                None => h1 == heading,
            };
            fits.then_some(())
        })
        .await;
    }

    /// The route in the address bar, e.g. `/runs/<id>`.
    async fn route(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap()
            .fragment()
            .unwrap_or_default()
            .to_owned()
    }

    /// Signs in the way people do: types the token, clicks "Sign in".
    async fn sign_in(&self, token: &str) {
        self.open("/").await;
        self.fill("form#signin input#token", token).await;
        let button = self.button("form#signin", "Sign in").await;
        self.follow(&button, "Sign in").await;
        self.wait_heading("Pipelines").await;
        self.wait_css("button#signout").await;
    }

    /// Saves a screenshot as `<name>.png` when SLIPWAY_SCREENSHOTS names a
    /// folder: the top of the page, or from the element `at` down.
    async fn screenshot(&self, name: &str, at: Option<&str>) {
        let Some(dir) = std::env::var_os("SLIPWAY_SCREENSHOTS") else {
            return;
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The page at rest: nothing focused, no passing status message.
        self.js(
            "document.activeElement && document.activeElement.blur();
             const status = document.getElementById('status');
             if (status) status.hidden = true;
             const at = arguments[0] && document.querySelector(arguments[0]);
             if (at) at.scrollIntoView({block: 'start'}); else window.scrollTo(0, 0);",
            vec![json!(at)],
        )
        .await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Presses and releases one key, sent to whatever has the focus.
    async fn press(&self, key: Key) {
        let key: char = key.into();
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(actions).await.unwrap();
    }

    /// On a run page: waits until #run-state reads `state`; fails at once
    /// if the run ends in another state.
    async fn wait_run_state(&self, state: &str, cluster: &Cluster) {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let shown = self.text_of("#run-state").await;
            let shown = shown.trim();
            if shown.contains(state) {
                return;
            }
            let ended = ["succeeded", "failed", "canceled"]
                .iter()
                .any(|end| shown.contains(end));
            if ended || Instant::now() > deadline {
                panic!(
                    "the run page shows `{shown}`, not `{state}`{}; {}\n{}",
                    if ended { "" } else { " after the deadline" },
                    self.context().await,
                    cluster.log_hint()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ------------------------------------------------------------------ world

/// A cluster, a simulator serving `dev`, `test` and `prod` (registered in
/// Slipway), and API tokens for people.
struct World {
    cluster: Cluster,
    sim: Running,
    _dir: tempfile::TempDir,
    /// Environment name -> id in Slipway.
    envs: BTreeMap<String, Uuid>,
}

/// Someone with an API token of their own.
#[derive(Debug)]
struct Person {
    subject: String,
    token: String,
    http: reqwest::Client,
}

fn target_env(name: &str) -> EnvironmentConfig {
    EnvironmentConfig {
        platform_solutions: vec!["AppModuleWebResources".into()],
        connections: vec![
            connection(&format!("{name}-sharepoint"), SHAREPOINT, "SharePoint"),
            connection(&format!("{name}-office365"), OUTLOOK, "Office 365 Outlook"),
        ],
        ..EnvironmentConfig::new(name)
    }
}

impl World {
    /// Starts the cluster (with one of each worker when `workers`) and the
    /// simulator, and registers the environments.
    async fn start(workers: bool) -> World {
        World::start_with(workers, BTreeMap::new()).await
    }

    /// [`World::start`] with extra `SLIPWAY__...` variables for the services.
    async fn start_with(workers: bool, env: BTreeMap<String, String>) -> World {
        let dir = tempfile::Builder::new()
            .prefix("slipway-ui-")
            .tempdir()
            .unwrap();
        let token_file = dir.path().join("envsim-token");
        std::fs::write(&token_file, format!("{SIM_TOKEN}\n")).unwrap();
        let mut config = Config::in_memory();
        config.data = DataLocation::Memory;
        config.dev_tokens = vec![SIM_TOKEN.into()];
        config.environments = vec![
            EnvironmentConfig {
                platform_solutions: vec!["AppModuleWebResources".into()],
                ..EnvironmentConfig::new("dev")
            },
            target_env("test"),
            target_env("prod"),
        ];
        let options = ClusterOptions {
            env,
            start_workers: workers,
        };
        let (cluster, sim) = tokio::join!(Cluster::start(options), EnvSim::start(config));
        let (cluster, sim) = (cluster.unwrap(), sim.unwrap());
        let credentials = json!({
            "kind": "static_token",
            "token_ref": format!("file:{}", token_file.display()),
        });
        let mut envs = BTreeMap::new();
        for (name, kind) in [
            ("dev", "development"),
            ("test", "target"),
            ("prod", "target"),
        ] {
            let (status, env) = send(
                cluster
                    .http
                    .post(format!("{}/api/v1/environments", cluster.gateway_url))
                    .json(&json!({
                        "name": name,
                        "url": sim.env_url(name),
                        "kind": kind,
                        "credentials": credentials,
                    })),
            )
            .await;
            assert_eq!(status, 201, "register {name}: {env}");
            envs.insert(name.to_owned(), id_of(&env));
        }
        World {
            cluster,
            sim,
            _dir: dir,
            envs,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.gateway_url)
    }

    /// A person with a token and `roles`.
    async fn person(&self, subject: &str, roles: &[&str]) -> Person {
        let (status, created) = send(self.cluster.http.post(self.url("/api/v1/tokens")).json(
            &json!({"name": format!("{subject}-token"), "subject": subject, "roles": roles}),
        ))
        .await;
        assert_eq!(status, 201, "token for {subject}: {created}");
        let token = created["token"].as_str().unwrap().to_owned();
        Person {
            subject: subject.into(),
            http: slipway_testkit::http_client_with_token(&token).unwrap(),
            token,
        }
    }

    /// A browser on this world's gateway, 1280 x 900.
    async fn browser(&self) -> Browser {
        Browser::start(&self.cluster.gateway_url, 1280, 900).await
    }

    /// Creates a pipeline from dev through `stages` (name, target, approval
    /// required), each after the one before; returns its id and the
    /// stages' ids.
    async fn pipeline(&self, name: &str, stages: &[(&str, &str, bool)]) -> (Uuid, Vec<Uuid>) {
        let admin = &self.cluster.http;
        let (status, pipeline) = send(admin.post(self.url("/api/v1/pipelines")).json(&json!({
            "name": name,
            "source_environment_ids": [self.envs["dev"]],
        })))
        .await;
        assert_eq!(status, 201, "create pipeline {name}: {pipeline}");
        let id = id_of(&pipeline);
        let mut ids: Vec<Uuid> = Vec::new();
        for (stage, target, approval) in stages {
            let (status, created) = send(
                admin
                    .post(self.url(&format!("/api/v1/pipelines/{id}/stages")))
                    .json(&json!({
                        "name": stage,
                        "previous_stage_id": ids.last(),
                        "target_environment_ids": [self.envs[*target]],
                        "approval_required": approval,
                    })),
            )
            .await;
            assert_eq!(status, 201, "add stage {stage} to {name}: {created}");
            ids.push(id_of(&created));
        }
        (id, ids)
    }

    async fn share(&self, pipeline: Uuid, who: &Person) {
        let (status, body) = send(
            self.cluster
                .http
                .post(self.url(&format!("/api/v1/pipelines/{pipeline}/shares")))
                .json(&json!({"kind": "user", "name": who.subject})),
        )
        .await;
        assert_eq!(status, 200, "share {pipeline} with {}: {body}", who.subject);
    }

    fn dataverse(&self, env: &str) -> slipway_dataverse::Client {
        e2e::dataverse(&self.sim, SIM_TOKEN, env, RUN_DEADLINE)
    }

    /// Installs an unmanaged solution in dev, as a maker building it there.
    async fn install_in_dev(&self, solution: &SolutionZip) {
        e2e::install_in_dev(&self.dataverse("dev"), solution).await;
    }

    async fn run(&self, id: Uuid) -> Value {
        self.cluster.run(id).await.unwrap()
    }

    /// Waits (through the API) until the run is in `state`.
    async fn wait_for(&self, id: Uuid, state: &str) -> Value {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let run = self.run(id).await;
            if run["state"] == state {
                return run;
            }
            assert!(
                Instant::now() < deadline
                    && !matches!(
                        run["state"].as_str(),
                        Some("succeeded" | "failed" | "canceled")
                    ),
                "run {id} is `{}`, waiting for `{state}`: {run:#}\n{}",
                run["state"],
                self.cluster.log_hint()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.cluster.shutdown().await.unwrap();
        self.sim.shutdown().await.unwrap();
    }

    /// Ends `test`: closes its browser, stops everything, says how long it took.
    async fn end(self, b: Browser, test: &str, started: Instant) {
        b.close().await;
        self.stop().await;
        eprintln!("{test} test: {:?}", started.elapsed());
    }
}

/// The run id in a `/runs/<id>` route.
fn run_id(route: &str) -> Uuid {
    route
        .strip_prefix("/runs/")
        .and_then(|rest| rest.split(['?', '/']).next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a run page: #{route}"))
}

// ------------------------------------------------------------------ maker deploys

/// On the deploy page of a pipeline: picks dev, `solution` and `stage`,
/// writes notes, clicks Deploy; returns the run the page went to.
async fn deploy_through_the_form(
    b: &Browser,
    solution: &str,
    stage: &str,
    notes: &str,
    screenshot: Option<&str>,
) -> Uuid {
    b.wait_heading("Deploy").await;
    b.wait_css("form#deploy").await;
    b.choose("form#deploy select#source", "dev").await;
    b.choose("form#deploy select#solution", solution).await;
    b.choose("form#deploy select#stage", stage).await;
    b.fill("form#deploy textarea#notes", notes).await;
    if let Some(name) = screenshot {
        b.screenshot(name, None).await;
    }
    let deploy = b.button("form#deploy", "Deploy").await;
    b.follow(&deploy, "Deploy").await;
    let route = b
        .poll("the run page after Deploy", WAIT, async || {
            let route = b.route().await;
            route.starts_with("/runs/").then_some(route)
        })
        .await;
    b.wait_heading("Deployment of …").await;
    run_id(&route)
}

/// On a run awaiting settings: picks the connection and types the
/// variable's value, then saves.
async fn fill_settings(b: &Browser, w: &World, connection: &str, api_url: &str) {
    b.wait_run_state("awaiting settings", &w.cluster).await;
    b.wait_css("form#settings").await;
    b.choose("form#settings select#conn-inv_outlook", connection)
        .await;
    b.fill("form#settings input#env-inv_ApiUrl", api_url).await;
}

/// A maker deploys to Test through the form, supplies the connection and
/// the environment variable the run waits for, watches it succeed; then
/// deploys the same solution to Prod the same way.
#[tokio::test(flavor = "multi_thread")]
async fn maker_deploys_to_test_then_prod_filling_missing_settings() {
    let started = Instant::now();
    let w = World::start(true).await;
    let name = "Invoices";
    w.install_in_dev(
        &solution(name, "inv")
            .connection_reference_named("inv_outlook", "Outlook", OUTLOOK)
            .env_var("inv_ApiUrl", 100000000, None, None),
    )
    .await;
    let (pipeline, _) = w
        .pipeline(
            "Invoicing",
            &[("Test", "test", false), ("Prod", "prod", false)],
        )
        .await;
    let maker = w.person("ui-maker", &["maker"]).await;
    w.share(pipeline, &maker).await;

    let b = w.browser().await;
    b.sign_in(&maker.token).await;
    let card = format!("section.card[data-pipeline=\"{pipeline}\"]");
    b.wait_text(&format!("{card} h2"), "Invoicing").await;
    b.wait_text(&card, "Prod").await;
    b.screenshot("home", None).await;
    let deploy = b.link(&card, "Deploy").await;
    b.follow(&deploy, "Deploy").await;
    b.poll("the deploy page", WAIT, async || {
        (b.route().await == format!("/deploy/{pipeline}")).then_some(())
    })
    .await;

    // Test: the run waits for settings; the maker supplies them.
    let to_test = deploy_through_the_form(&b, name, "Test", "first drop", Some("deploy")).await;
    let test_url = "https://test.contoso.example/invoices";
    fill_settings(&b, &w, "test-office365", test_url).await;
    b.screenshot("run-awaiting-settings", Some("#run-settings"))
        .await;
    let save = b
        .button("form#settings", "Save settings and validate again")
        .await;
    b.click(&save, "Save settings").await;
    b.wait_run_state("succeeded", &w.cluster).await;
    b.wait_css("ol#steps").await;
    b.screenshot("run-succeeded", None).await;

    let run = w.run(to_test).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["requested_by"], maker.subject.as_str());
    assert_eq!(run["deployment"]["target_environment"], "test", "{run:#}");
    assert_eq!(run["deployment"]["notes"], "first drop", "{run:#}");
    let test = w.dataverse("test");
    let installed = test
        .solution(name)
        .await
        .unwrap()
        .expect("installed in test");
    assert_eq!(installed.version, "1.0.0.1");
    let bound = test.connection_references().await.unwrap();
    let reference = bound
        .iter()
        .find(|r| r.logical_name == "inv_outlook")
        .expect("the reference exists in test");
    assert_eq!(reference.connection_id.as_deref(), Some("test-office365"));
    let values = test.environment_variable_values().await.unwrap();
    let value = values
        .iter()
        .find(|v| v.schema_name == "inv_ApiUrl")
        .unwrap_or_else(|| panic!("no value of inv_ApiUrl in test: {values:?}"));
    assert_eq!(value.value.as_deref(), Some(test_url));

    // Prod: the same solution (the artifact Test approved); Prod has its
    // own connections, so it asks for them too.
    b.open(&format!("/deploy/{pipeline}")).await;
    let to_prod = deploy_through_the_form(&b, name, "Prod", "release", None).await;
    assert_ne!(to_prod, to_test);
    let prod_url = "https://contoso.example/invoices";
    fill_settings(&b, &w, "prod-office365", prod_url).await;
    let save = b
        .button("form#settings", "Save settings and validate again")
        .await;
    b.click(&save, "Save settings").await;
    b.wait_run_state("succeeded", &w.cluster).await;

    let run = w.run(to_prod).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["deployment"]["target_environment"], "prod", "{run:#}");
    assert_eq!(run["artifact"]["version"], "1.0.0.1", "{run:#}");
    let prod = w.dataverse("prod");
    let installed = prod
        .solution(name)
        .await
        .unwrap()
        .expect("installed in prod");
    assert_eq!(
        (installed.version.as_str(), installed.is_managed),
        ("1.0.0.1", true)
    );
    let values = prod.environment_variable_values().await.unwrap();
    assert!(
        values
            .iter()
            .any(|v| v.schema_name == "inv_ApiUrl" && v.value.as_deref() == Some(prod_url)),
        "{values:?}"
    );
    w.end(b, "maker deploy", started).await;
}

// ------------------------------------------------------------------ approver rejects

/// An approver opens the waiting run from the Approvals inbox, writes a
/// comment and rejects: the run fails with the comment, nothing imported.
#[tokio::test(flavor = "multi_thread")]
async fn approver_rejects_a_run_with_a_comment() {
    let started = Instant::now();
    let w = World::start(true).await;
    let name = "Gated";
    w.install_in_dev(&solution(name, "gtd")).await;
    let (pipeline, stages) = w.pipeline("Release train", &[("Prod", "prod", true)]).await;
    let maker = w.person("ui-maker", &["maker"]).await;
    let approver = w.person("ui-approver", &["approver"]).await;
    w.share(pipeline, &maker).await;
    w.share(pipeline, &approver).await;
    let (status, run) = send(maker.http.post(w.url("/api/v1/deployments")).json(&json!({
        "solution_name": name,
        "pipeline_id": pipeline,
        "stage_id": stages[0],
        "source_environment": "dev",
        "notes": "quarterly release",
    })))
    .await;
    assert_eq!(status, 202, "{run}");
    let id = id_of(&run);
    w.wait_for(id, "awaiting_approval").await;

    let b = w.browser().await;
    b.sign_in(&approver.token).await;
    b.navigate("Approvals", "Approvals").await;
    let row = b
        .wait_css(&format!("table#approvals a[href*=\"{id}\"]"))
        .await;
    b.wait_text("table#approvals", name).await;
    b.screenshot("approvals", None).await;
    b.follow(&row, "the waiting run").await;
    b.wait_heading("Deployment of …").await;
    assert_eq!(run_id(&b.route().await), id);
    b.wait_run_state("awaiting approval", &w.cluster).await;
    let comment = "not during the quarter close";
    b.fill("form#decision textarea#comment", comment).await;
    let reject = b.button("form#decision", "Reject").await;
    b.click(&reject, "Reject").await;
    b.wait_run_state("failed", &w.cluster).await;
    b.wait_text("#run-reason", comment).await;

    let run = w.run(id).await;
    assert_eq!(run["state"], "failed", "{run:#}");
    assert!(run["reason"].as_str().unwrap().contains(comment), "{run:#}");
    assert_eq!(run["gates"]["approval"]["passed"], false, "{run:#}");
    assert_eq!(
        run["gates"]["approval"]["by"],
        approver.subject.as_str(),
        "{run:#}"
    );
    assert!(
        w.dataverse("prod").solution(name).await.unwrap().is_none(),
        "a rejected run imports nothing"
    );
    w.end(b, "approver", started).await;
}

// ------------------------------------------------------------------ admin builds a pipeline

/// An admin creates a pipeline and two stages through the forms; the API
/// then has them exactly as made. The audit log records it, its chain intact.
#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_a_pipeline_with_stages() {
    let started = Instant::now();
    let w = World::start(false).await;
    let b = w.browser().await;
    b.sign_in(&w.cluster.admin_token).await;
    b.navigate("Manage pipelines", "Manage pipelines").await;

    let form = "form#new-pipeline";
    b.fill(&format!("{form} [name=\"name\"]"), "Payroll").await;
    b.fill(
        &format!("{form} [name=\"description\"]"),
        "Payroll app releases",
    )
    .await;
    let dev = b.labelled(form, "source_environment_ids", "dev").await;
    b.click(&dev, "the dev checkbox").await;
    let older = b
        .wait_css(&format!("{form} [name=\"allow_redeploy_older\"]"))
        .await;
    b.click(&older, "allow_redeploy_older").await;
    let create = b.button(form, "Create pipeline").await;
    b.follow(&create, "Create pipeline").await;
    let route = b
        .poll("the new pipeline's page", WAIT, async || {
            let route = b.route().await;
            let id = route.strip_prefix("/admin/pipelines/")?;
            id.parse::<Uuid>().ok().map(|_| route.clone())
        })
        .await;
    let id: Uuid = route
        .trim_start_matches("/admin/pipelines/")
        .parse()
        .unwrap();
    b.wait_heading("Payroll").await;

    // Test, then Prod after Test with an approval.
    let form = "form#new-stage";
    b.wait_css(form).await;
    b.fill(&format!("{form} [name=\"name\"]"), "Test").await;
    let test = b.labelled(form, "target_environment_ids", "test").await;
    b.click(&test, "the test checkbox").await;
    let add = b.button(form, "Add stage").await;
    b.click(&add, "Add stage").await;
    // The form is ready for the next stage once Test can be picked as the
    // previous one.
    b.choose(&format!("{form} [name=\"previous_stage_id\"]"), "Test")
        .await;
    b.fill(&format!("{form} [name=\"name\"]"), "Prod").await;
    let prod = b.labelled(form, "target_environment_ids", "prod").await;
    b.click(&prod, "the prod checkbox").await;
    let approval = b
        .wait_css(&format!("{form} [name=\"approval_required\"]"))
        .await;
    b.click(&approval, "approval_required").await;
    let add = b.button(form, "Add stage").await;
    b.click(&add, "Add stage").await;
    b.wait_text("main", "Prod").await;
    let pipeline = b
        .poll("both stages through the API", WAIT, async || {
            let (status, p) = send(
                w.cluster
                    .http
                    .get(w.url(&format!("/api/v1/pipelines/{id}"))),
            )
            .await;
            (status == 200 && p["stages"].as_array()?.len() == 2).then_some(p)
        })
        .await;
    b.screenshot("admin-pipeline", None).await;

    assert_eq!(pipeline["name"], "Payroll", "{pipeline:#}");
    assert_eq!(
        pipeline["description"], "Payroll app releases",
        "{pipeline:#}"
    );
    assert_eq!(pipeline["allow_redeploy_older"], true, "{pipeline:#}");
    let sources: Vec<&str> = pipeline["source_environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["dev"], "{pipeline:#}");
    let stages = pipeline["stages"].as_array().unwrap();
    let (first, second) = (&stages[0], &stages[1]);
    assert_eq!(first["name"], "Test", "{pipeline:#}");
    assert!(first["previous_stage_id"].is_null(), "{pipeline:#}");
    assert_eq!(first["targets"][0]["name"], "test", "{pipeline:#}");
    assert_eq!(first["targets"].as_array().unwrap().len(), 1);
    assert_eq!(first["approval_required"], false, "{pipeline:#}");
    assert_eq!(second["name"], "Prod", "{pipeline:#}");
    assert_eq!(second["previous_stage_id"], first["id"], "{pipeline:#}");
    assert_eq!(second["targets"][0]["name"], "prod", "{pipeline:#}");
    assert_eq!(second["targets"].as_array().unwrap().len(), 1);
    assert_eq!(second["approval_required"], true, "{pipeline:#}");
    for stage in [first, second] {
        assert_eq!(stage["pre_export_gate"], false, "{stage:#}");
        assert_eq!(stage["pre_deployment_gate"], false, "{stage:#}");
    }

    // The audit log shows it, and its chain checks out.
    b.navigate("Audit", "Audit log").await;
    b.wait_css("table#audit tbody tr").await;
    b.wait_text("#chain-status", "intact").await;
    b.screenshot("audit", None).await;
    w.end(b, "admin", started).await;
}

// ------------------------------------------------------------------ sharing

/// A maker sees only the pipeline shared with them; the other one's deploy
/// page says it is not there rather than showing it.
#[tokio::test(flavor = "multi_thread")]
async fn maker_cannot_see_a_pipeline_not_shared_with_them() {
    let started = Instant::now();
    let w = World::start(false).await;
    let (shared, _) = w.pipeline("Team apps", &[("Test", "test", false)]).await;
    let (hidden, _) = w
        .pipeline("Secret payroll", &[("Prod", "prod", false)])
        .await;
    let maker = w.person("ui-maker", &["maker"]).await;
    w.share(shared, &maker).await;

    let b = w.browser().await;
    b.sign_in(&maker.token).await;
    b.wait_text(
        &format!("section.card[data-pipeline=\"{shared}\"] h2"),
        "Team apps",
    )
    .await;
    let cards = b
        .js(
            "return [...document.querySelectorAll('[data-pipeline]')].map((e) => e.dataset.pipeline)",
            vec![],
        )
        .await;
    assert_eq!(cards, json!([shared.to_string()]), "{}", b.context().await);
    let main = b.text_of("main").await;
    assert!(!main.contains("Secret payroll"), "{}", b.context().await);

    b.open(&format!("/deploy/{hidden}")).await;
    b.poll("a not-found or forbidden message", WAIT, async || {
        let text = b.text_of("main").await.to_lowercase();
        [
            "not found",
            "no pipeline",
            "not shared",
            "forbidden",
            "no access",
            "not allowed",
            "does not exist",
            "cannot see",
        ]
        .iter()
        .any(|m| text.contains(m))
        .then_some(())
    })
    .await;
    let main = b.text_of("main").await;
    let deploy_form = b
        .js(
            "return !!document.querySelector('form#deploy, select#solution')",
            vec![],
        )
        .await;
    assert!(
        deploy_form == false && !main.contains("Secret payroll"),
        "the unshared pipeline is shown; {}",
        b.context().await
    );
    w.end(b, "sharing", started).await;
}

// ------------------------------------------------------------------ keyboard

/// The deploy form with the keyboard alone: every input has a label, Tab
/// reaches every control in order, Space ticks the dry-run box.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_form_works_with_the_keyboard_alone() {
    let started = Instant::now();
    let w = World::start(false).await;
    w.install_in_dev(&solution("Keys", "key")).await;
    let (pipeline, _) = w
        .pipeline(
            "Keyboard",
            &[("Test", "test", false), ("Prod", "prod", false)],
        )
        .await;
    let maker = w.person("ui-maker", &["maker"]).await;
    w.share(pipeline, &maker).await;

    let b = w.browser().await;
    b.sign_in(&maker.token).await;
    b.open(&format!("/deploy/{pipeline}")).await;
    b.wait_heading("Deploy").await;
    b.choose("form#deploy select#solution", "Keys").await;

    let unlabelled = b
        .js(
            "return [...document.querySelectorAll('input,select,textarea')]
               .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length > 0))
               .map((e) => e.outerHTML)",
            vec![],
        )
        .await;
    assert_eq!(
        unlabelled,
        json!([]),
        "inputs without a label; {}",
        b.context().await
    );

    // Every control a keyboard user must reach: shown and enabled; of a
    // radio group, the one Tab lands on (the checked one).
    let wanted = b
        .js(
            "const form = document.querySelector('form#deploy');
             const seen = new Set();
             const out = [];
             for (const e of form.querySelectorAll('input,select,textarea,button')) {
               if (e.type === 'hidden' || e.disabled || e.getClientRects().length === 0) continue;
               if (e.type === 'radio') {
                 if (seen.has(e.name)) continue;
                 seen.add(e.name);
                 out.push('radio:' + e.name);
               } else {
                 out.push(e.id || e.name || e.textContent.trim());
               }
             }
             return out;",
            vec![],
        )
        .await;
    let wanted: Vec<String> = serde_json::from_value(wanted).unwrap();
    for control in ["source", "solution", "stage", "version", "notes", "dry_run"] {
        assert!(
            wanted.iter().any(|w| w == control),
            "#{control} is not in the form: {wanted:?}; {}",
            b.context().await
        );
    }
    assert!(wanted.iter().any(|w| w == "radio:when"), "{wanted:?}");

    // Start at the heading (where the page puts focus) and Tab forward.
    b.js("document.querySelector('main h1').focus()", vec![])
        .await;
    let mut reached: Vec<String> = Vec::new();
    for _ in 0..60 {
        b.press(Key::Tab).await;
        let here = b
            .js(
                "const e = document.activeElement;
                 if (!e || !e.closest('form#deploy')) return null;
                 if (e.type === 'radio') return 'radio:' + e.name;
                 return e.id || e.name || e.textContent.trim();",
                vec![],
            )
            .await;
        if let Some(here) = here.as_str() {
            if !reached.iter().any(|r| r == here) {
                reached.push(here.to_owned());
            }
        } else if !reached.is_empty() {
            break; // past the form
        }
    }
    eprintln!("keyboard: Tab reached {reached:?}");
    let missed: Vec<&String> = wanted.iter().filter(|w| !reached.contains(w)).collect();
    assert!(
        missed.is_empty(),
        "Tab never reaches {missed:?} (reached {reached:?}); {}",
        b.context().await
    );
    // In document order: the order of the tab stops is the form's.
    let order: Vec<&String> = reached.iter().filter(|r| wanted.contains(r)).collect();
    let expected: Vec<&String> = wanted.iter().collect();
    assert_eq!(order, expected, "tab order differs from the form's order");

    // Space on the focused dry-run box ticks it.
    b.js("document.getElementById('dry_run').focus()", vec![])
        .await;
    b.press(Key::Space).await;
    let checked = b
        .js("return document.getElementById('dry_run').checked", vec![])
        .await;
    assert_eq!(checked, true, "Space did not tick #dry_run");
    w.end(b, "keyboard", started).await;
}

// ------------------------------------------------------------------ phone width

/// At 390 CSS pixels wide (a phone) no main page scrolls sideways.
#[tokio::test(flavor = "multi_thread")]
async fn main_pages_fit_a_phone_width() {
    let started = Instant::now();
    let w = World::start(true).await;
    let name = "Narrow";
    w.install_in_dev(&solution(name, "nrw")).await;
    let (pipeline, stages) = w
        .pipeline(
            "A pipeline with a rather long name for a phone",
            &[("Test", "test", false), ("Prod", "prod", true)],
        )
        .await;
    let admin = &w.cluster.http;
    let (status, run) = send(admin.post(w.url("/api/v1/deployments")).json(&json!({
        "solution_name": name,
        "pipeline_id": pipeline,
        "stage_id": stages[0],
        "source_environment": "dev",
        "notes": "a note long enough to wrap on a narrow screen, twice over at least",
    })))
    .await;
    assert_eq!(status, 202, "{run}");
    let run = id_of(&run);
    w.wait_for(run, "succeeded").await;
    // And one waiting for approval, so the inbox has a row.
    let (status, waiting) = send(admin.post(w.url("/api/v1/deployments")).json(&json!({
        "solution_name": name,
        "pipeline_id": pipeline,
        "stage_id": stages[1],
        "source_environment": "dev",
    })))
    .await;
    assert_eq!(status, 202, "{waiting}");
    let waiting = id_of(&waiting);
    w.wait_for(waiting, "awaiting_approval").await;

    let b = Browser::start(&w.cluster.gateway_url, 390, 844).await;
    b.sign_in(&w.cluster.admin_token).await;
    let width = b.js("return window.innerWidth", vec![]).await;
    assert_eq!(width, 390, "the page is not phone-sized");
    b.wait_css(&format!("[data-pipeline=\"{pipeline}\"]")).await;
    let pages = [
        ("/".to_owned(), "Pipelines", "[data-pipeline]"),
        (format!("/deploy/{pipeline}"), "Deploy", "form#deploy"),
        (format!("/runs/{run}"), "Deployment of …", "#run-state"),
        (format!("/runs/{waiting}"), "Deployment of …", "#run-state"),
        ("/runs".to_owned(), "Runs", "table#runs"),
        ("/approvals".to_owned(), "Approvals", "table#approvals"),
        (
            "/admin/environments".to_owned(),
            "Environments",
            "table#environments",
        ),
        (
            "/admin/pipelines".to_owned(),
            "Manage pipelines",
            "form#new-pipeline",
        ),
        (
            format!("/admin/pipelines/{pipeline}"),
            "A pipeline with a rather long name for a phone",
            "form#new-stage",
        ),
        ("/admin/access".to_owned(), "Access", "form#new-token"),
        ("/admin/audit".to_owned(), "Audit log", "table#audit"),
    ];
    let mut wide = Vec::new();
    for (route, heading, content) in &pages {
        b.open(route).await;
        b.wait_heading(heading).await;
        b.wait_css(content).await;
        if route == "/" {
            b.screenshot("phone-home", None).await;
        }
        let sizes = b
            .js(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await;
        let (scroll, inner) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        if scroll > inner {
            // Name the elements that stick out, to say what to fix.
            let culprits = b
                .js(
                    "return [...document.querySelectorAll('main *')]
                       .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
                       .slice(0, 5)
                       .map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                         + (e.className ? '.' + String(e.className).replace(/ +/g, '.') : ''))",
                    vec![],
                )
                .await;
            wide.push(format!(
                "#{route}: scrollWidth {scroll} > {inner} ({culprits})"
            ));
        }
    }
    assert!(
        wide.is_empty(),
        "pages scroll sideways at 390 px:\n{}",
        wide.join("\n")
    );
    w.end(b, "phone", started).await;
}

// ------------------------------------------------------------------ sign-in with an identity provider

/// The client id the UI signs in as, and the audience of its tokens.
const OIDC_CLIENT: &str = "slipway-ui-e2e";
const OIDC_AUDIENCE: &str = "api://slipway-ui-e2e";
/// The test-only key pair the auth crate's tests use (never a real key).
const OIDC_KID: &str = "test-rsa-1";
const OIDC_PEM: &str = include_str!("../crates/auth/tests/keys/test-only-rsa-1.pem");
const OIDC_JWK: &str = include_str!("../crates/auth/tests/keys/test-only-rsa-1.jwk.json");

/// What the provider answers a browser sent to `/authorize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Signs the person in: a code for the PKCE challenge.
    SignIn,
    /// The person declined: `error=access_denied`.
    Refuse,
    /// A code, with a `state` the tab did not send (a forged or crossed answer).
    WrongState,
}

/// A code the provider issued, waiting to be traded for a token.
#[derive(Debug)]
struct Grant {
    challenge: String,
    redirect_uri: String,
}

#[derive(Debug)]
struct IdpState {
    issuer: String,
    /// The gateway's origin, once known: redirects go only to its `/ui/`,
    /// and only it may read token answers (CORS).
    gateway: Option<String>,
    answer: Answer,
    subject: String,
    groups: Vec<String>,
    codes: BTreeMap<String, Grant>,
    /// Requests the provider refused, and why: a browser only shows an
    /// error page or a message, the test says which rule broke.
    refused: Vec<String>,
    token_requests: usize,
    /// The access tokens issued.
    issued: Vec<String>,
}

type Shared = std::sync::Arc<std::sync::Mutex<IdpState>>;

/// A small OpenID provider on 127.0.0.1 for one person: discovery,
/// `/authorize` (no login page: it answers at once, as `Answer` says),
/// `/token` (authorization code with PKCE S256, CORS for the gateway) and
/// `/jwks`. The token endpoint is on a second port, so a second origin:
/// the UI's Content-Security-Policy must name it, as with providers whose
/// token endpoint is on another host than the issuer.
struct Idp {
    issuer: String,
    token_origin: String,
    state: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `base` with `pairs` as its query, for a redirect.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(base).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

fn redirect(to: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        axum::http::StatusCode::FOUND,
        [(axum::http::header::LOCATION, to.to_owned())],
    )
        .into_response()
}

impl Idp {
    async fn start(subject: &str, groups: &[&str]) -> Idp {
        use axum::routing::get;
        let issuer_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", issuer_listener.local_addr().unwrap());
        let token_origin = format!("http://{}", token_listener.local_addr().unwrap());
        let state: Shared = std::sync::Arc::new(std::sync::Mutex::new(IdpState {
            issuer: issuer.clone(),
            gateway: None,
            answer: Answer::SignIn,
            subject: subject.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            codes: BTreeMap::new(),
            refused: Vec::new(),
            token_requests: 0,
            issued: Vec::new(),
        }));
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{token_origin}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        });
        let jwks = json!({"keys": [serde_json::from_str::<Value>(OIDC_JWK).unwrap()]});
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route("/authorize", get(authorize))
            .route(
                "/token",
                axum::routing::post(token).options(token_preflight),
            )
            .route("/jwks", get(move || async move { axum::Json(jwks) }))
            .with_state(state.clone());
        let tasks = [issuer_listener, token_listener]
            .into_iter()
            .map(|listener| {
                let app = app.clone();
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() })
            })
            .collect();
        Idp {
            issuer,
            token_origin,
            state,
            tasks,
        }
    }

    /// The gateway's `auth.*` settings for this provider.
    fn gateway_env(&self) -> BTreeMap<String, String> {
        [
            ("SLIPWAY__AUTH__OIDC_ISSUER", self.issuer.clone()),
            ("SLIPWAY__AUTH__OIDC_AUDIENCE", OIDC_AUDIENCE.to_owned()),
            (
                "SLIPWAY__AUTH__OIDC_JWKS_URL",
                format!("{}/jwks", self.issuer),
            ),
            ("SLIPWAY__AUTH__OIDC_CLIENT_ID", OIDC_CLIENT.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdpState> {
        self.state.lock().unwrap()
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// `GET /authorize`: checks the request as a provider does, then sends the
/// browser back to the UI with a code (or an error).
async fn authorize(
    axum::extract::State(state): axum::extract::State<Shared>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut s = state.lock().unwrap();
    let arg = |name: &str| q.get(name).map(String::as_str).unwrap_or_default();
    let expected_redirect = s.gateway.as_ref().map(|g| format!("{g}/ui/"));
    let problem = if arg("response_type") != "code" {
        Some(format!(
            "response_type {:?} is not \"code\"",
            arg("response_type")
        ))
    } else if arg("client_id") != OIDC_CLIENT {
        Some(format!("unknown client_id {:?}", arg("client_id")))
    } else if Some(arg("redirect_uri")) != expected_redirect.as_deref() {
        Some(format!(
            "redirect_uri {:?} is not the registered {expected_redirect:?}",
            arg("redirect_uri")
        ))
    } else if arg("code_challenge_method") != "S256" || arg("code_challenge").len() != 43 {
        Some(format!(
            "PKCE needs code_challenge_method S256 and a 43-character challenge, got {:?} and {:?}",
            arg("code_challenge_method"),
            arg("code_challenge")
        ))
    } else if arg("state").is_empty() {
        Some("no state".to_owned())
    } else if !arg("scope").split(' ').any(|s| s == "openid") {
        Some(format!("scope {:?} lacks openid", arg("scope")))
    } else {
        None
    };
    if let Some(problem) = problem {
        s.refused.push(format!("/authorize: {problem}"));
        return (
            axum::http::StatusCode::BAD_REQUEST,
            format!("test provider: {problem}"),
        )
            .into_response();
    }
    let back = arg("redirect_uri");
    match s.answer {
        Answer::Refuse => redirect(&with_query(
            back,
            &[
                ("error", "access_denied"),
                ("error_description", "The person declined to sign in"),
                ("state", arg("state")),
            ],
        )),
        answer => {
            let code = Uuid::new_v4().to_string();
            s.codes.insert(
                code.clone(),
                Grant {
                    challenge: arg("code_challenge").to_owned(),
                    redirect_uri: back.to_owned(),
                },
            );
            let state_back = if answer == Answer::WrongState {
                format!("{}-not-yours", arg("state"))
            } else {
                arg("state").to_owned()
            };
            redirect(&with_query(
                back,
                &[("code", &code), ("state", &state_back)],
            ))
        }
    }
}

/// The CORS headers of a token answer: only the gateway's page may read it.
fn cors(s: &IdpState, headers: &axum::http::HeaderMap) -> Vec<(axum::http::HeaderName, String)> {
    use axum::http::header;
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if s.gateway.as_deref() != Some(origin) {
        return Vec::new();
    }
    vec![
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.to_owned()),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "POST".to_owned()),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "content-type".to_owned(),
        ),
        (header::VARY, "Origin".to_owned()),
    ]
}

/// `OPTIONS /token`: the CORS preflight, should the browser send one.
async fn token_preflight(
    axum::extract::State(state): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let s = state.lock().unwrap();
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    for (name, value) in cors(&s, &headers) {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// `POST /token`: trades a code for an RS256 access token when the code,
/// the redirect URI, the client and the PKCE verifier all match.
async fn token(
    axum::extract::State(state): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
    axum::extract::Form(form): axum::extract::Form<BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use sha2::Digest as _;
    let mut s = state.lock().unwrap();
    s.token_requests += 1;
    let arg = |name: &str| form.get(name).cloned().unwrap_or_default();
    let grant = s.codes.remove(&arg("code"));
    let problem = match &grant {
        _ if arg("grant_type") != "authorization_code" => {
            Some(format!("grant_type {:?}", arg("grant_type")))
        }
        None => Some(format!("unknown or used code {:?}", arg("code"))),
        Some(g) if g.redirect_uri != arg("redirect_uri") => Some(format!(
            "redirect_uri {:?} differs from the authorization request's {:?}",
            arg("redirect_uri"),
            g.redirect_uri
        )),
        _ if arg("client_id") != OIDC_CLIENT => Some(format!("client_id {:?}", arg("client_id"))),
        Some(g)
            if b64url(&sha2::Sha256::digest(arg("code_verifier").as_bytes())) != g.challenge =>
        {
            Some("code_verifier does not match the code_challenge".to_owned())
        }
        Some(_) => None,
    };
    let cors = cors(&s, &headers);
    let mut response = match problem {
        Some(problem) => {
            s.refused.push(format!("/token: {problem}"));
            (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": problem})),
            )
                .into_response()
        }
        None => {
            let now = unix_now();
            let claims = json!({
                "iss": s.issuer,
                "aud": OIDC_AUDIENCE,
                "sub": s.subject,
                "groups": s.groups,
                "iat": now,
                "nbf": now,
                "exp": now + 600,
            });
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = Some(OIDC_KID.to_owned());
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(OIDC_PEM.as_bytes()).unwrap();
            let access = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            s.issued.push(access.clone());
            axum::Json(json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 600,
                "scope": "openid profile",
            }))
            .into_response()
        }
    };
    for (name, value) in cors {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A person signs in with their organization's identity provider: the UI
/// sends them there, trades the code (PKCE) for a token at the provider's
/// token endpoint (another origin, allowed by the page's policy) and uses
/// it for the API: the Pipelines page lists what is shared with their
/// group. A refusal and an answer that is not the tab's leave them on the
/// sign-in page with a message, no code traded.
#[tokio::test(flavor = "multi_thread")]
async fn people_sign_in_with_their_organization() {
    let started = Instant::now();
    let subject = "oidc-person@contoso.example";
    let idp = Idp::start(subject, &["release-team"]).await;
    let w = World::start_with(false, idp.gateway_env()).await;
    let gateway = w.cluster.gateway_url.trim_end_matches('/').to_owned();
    idp.lock().gateway = Some(gateway.clone());

    // The group may deploy what is shared with it.
    let (status, grant) =
        send(w.cluster.http.post(w.url("/api/v1/role-grants")).json(
            &json!({"principal": {"kind": "group", "name": "release-team"}, "role": "maker"}),
        ))
        .await;
    assert_eq!(status, 201, "grant maker to release-team: {grant}");
    let (shared, _) = w
        .pipeline("Team releases", &[("Test", "test", false)])
        .await;
    let (hidden, _) = w.pipeline("Payroll", &[("Prod", "prod", false)]).await;
    let (status, body) = send(
        w.cluster
            .http
            .post(w.url(&format!("/api/v1/pipelines/{shared}/shares")))
            .json(&json!({"kind": "group", "name": "release-team"})),
    )
    .await;
    assert_eq!(status, 200, "share with release-team: {body}");

    // The page may connect to the issuer and the token endpoint, nowhere
    // else (the token endpoint once the gateway has read the discovery
    // document, which the sign-in page makes it do).
    let (status, config) = send(w.cluster.http.get(w.url("/api/v1/auth/config"))).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(
        config["oidc"]["token_endpoint"],
        format!("{}/token", idp.token_origin),
        "{config}"
    );
    let page = w.cluster.http.get(w.url("/ui/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!(
            "connect-src 'self' {} {};",
            idp.issuer, idp.token_origin
        )),
        "{csp}"
    );

    let b = w.browser().await;
    let token_in_tab = async || {
        b.js("return sessionStorage.getItem('slipway.token')", vec![])
            .await
    };

    // 1. The person declines at the provider.
    idp.lock().answer = Answer::Refuse;
    b.open("/").await;
    b.wait_heading("Sign in to Slipway").await;
    let button = b.button("main", "Sign in with your organization").await;
    b.follow(&button, "Sign in with your organization").await;
    b.wait_text("#status", "Sign-in was refused by the identity provider")
        .await;
    b.wait_text("#status", "The person declined to sign in")
        .await;
    b.wait_heading("Sign in to Slipway").await;
    assert_eq!(b.route().await, "/signin");
    assert_eq!(token_in_tab().await, Value::Null, "{}", b.context().await);

    // 2. An answer whose state is not the one this tab sent: its code is
    // never traded.
    idp.lock().answer = Answer::WrongState;
    let button = b.button("main", "Sign in with your organization").await;
    b.follow(&button, "Sign in with your organization").await;
    b.wait_text("#status", "does not belong to this tab").await;
    b.wait_heading("Sign in to Slipway").await;
    assert_eq!(token_in_tab().await, Value::Null, "{}", b.context().await);
    assert_eq!(idp.lock().token_requests, 0, "a code was traded");
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        url.query(),
        None,
        "the code stays in the address bar: {url}"
    );

    // 3. Signed in: the UI trades the code and uses the token.
    idp.lock().answer = Answer::SignIn;
    let button = b.button("main", "Sign in with your organization").await;
    b.follow(&button, "Sign in with your organization").await;
    b.wait_heading("Pipelines").await;
    b.wait_css("button#signout").await;
    b.wait_text("#who", subject).await;
    b.wait_text(
        &format!("section.card[data-pipeline=\"{shared}\"] h2"),
        "Team releases",
    )
    .await;
    let cards = b
        .js(
            "return [...document.querySelectorAll('[data-pipeline]')].map((e) => e.dataset.pipeline)",
            vec![],
        )
        .await;
    assert_eq!(cards, json!([shared.to_string()]), "{}", b.context().await);
    assert!(!cards.to_string().contains(&hidden.to_string()));
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        url.query(),
        None,
        "the code stays in the address bar: {url}"
    );
    assert_eq!(b.route().await, "/");

    // The tab holds exactly the provider's token, and the API takes it as
    // an OIDC caller with the group's role.
    let (issued, refused) = {
        let s = idp.lock();
        (s.issued.clone(), s.refused.clone())
    };
    assert_eq!(
        issued.len(),
        1,
        "tokens issued: {issued:?}; refused: {refused:?}"
    );
    assert_eq!(token_in_tab().await, json!(issued[0]));
    let me = b
        .js(
            "return fetch('/api/v1/me', {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('slipway.token')}})
               .then((r) => r.json())",
            vec![],
        )
        .await;
    assert_eq!(
        me,
        json!({"subject": subject, "groups": ["release-team"], "roles": ["maker"], "authenticated_by": "oidc"}),
    );
    // The refusals were the two the test asked for, none of the UI's making:
    // only the forged state's code is left untraded.
    assert_eq!(
        refused,
        Vec::<String>::new(),
        "the provider refused requests"
    );
    assert_eq!(idp.lock().codes.len(), 1, "the forged answer's code");

    b.close().await;
    w.stop().await;
    idp.stop();
    eprintln!("oidc sign-in test: {:?}", started.elapsed());
}

// ------------------------------------------------------------------ import progress

/// A slow import shows its real percentage on the run page: the
/// `<progress id="import-progress">` takes the value of the run's
/// `import_progress` (read by the importer from the target's import job)
/// and grows with the import.
#[tokio::test(flavor = "multi_thread")]
async fn the_run_page_shows_a_slow_imports_percentage() {
    let env = BTreeMap::from([
        (
            "SLIPWAY__ENVIRONMENTS__IMPORT_POLL_MS".to_owned(),
            "200".to_owned(),
        ),
        (
            "SLIPWAY__ENVIRONMENTS__IMPORT_POLL_MAX_MS".to_owned(),
            "400".to_owned(),
        ),
    ]);
    let w = World::start_with(true, env).await;
    let name = "Receipts";
    w.install_in_dev(&solution(name, "rcp")).await;
    let (pipeline, _) = w.pipeline("Receipts", &[("Test", "test", false)]).await;
    let maker = w.person("ui-progress-maker", &["maker"]).await;
    w.share(pipeline, &maker).await;
    w.sim
        .set_faults(
            "test",
            slipway_envsim::Faults {
                import_delay_ms: 8_000,
                ..slipway_envsim::Faults::default()
            },
        )
        .unwrap();

    let b = w.browser().await;
    b.sign_in(&maker.token).await;
    b.open(&format!("/deploy/{pipeline}")).await;
    let run = deploy_through_the_form(&b, name, "Test", "slow import", None).await;
    let shown_value = async || {
        b.js(
            "const p = document.getElementById('import-progress');
             return p && p.hasAttribute('value') ? p.value : null;",
            vec![],
        )
        .await
        .as_f64()
    };
    let first = b
        .poll(
            "a percentage on the import's bar",
            RUN_DEADLINE,
            async || shown_value().await.filter(|p| *p > 0.0),
        )
        .await;
    assert!(first < 100.0, "{first}");
    assert_eq!(
        b.js(
            "return document.getElementById('import-progress').max",
            vec![]
        )
        .await,
        json!(100)
    );
    let label = b.text_of("label[for=import-progress]").await;
    assert!(label.ends_with(" %"), "{label}");
    let later = b
        .poll("the percentage to grow", RUN_DEADLINE, async || {
            shown_value().await.filter(|p| *p > first)
        })
        .await;
    assert!(later <= 100.0, "{later}");

    b.wait_run_state("succeeded", &w.cluster).await;
    let done = w.run(run).await;
    assert_eq!(done["import_progress"]["percent"], 100.0, "{done:#}");
    b.close().await;
    w.stop().await;
}
