//! The real `slipway` binary against a gateway started in this process
//! (SQLite in a temporary folder, in-process bus, the three worker steps,
//! artifacts in a shared folder) and the environment simulator (dev holding
//! the Contoso solution, test and prod empty): an admin sets up
//! environments, a pipeline and its stages, shares it with a maker whose
//! token it creates; the maker lists it and deploys through its stages;
//! errors are one line naming the fix.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use slipway_bus::{Bus, BusConfig, Transport};
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;
use slipway_service::worker::serve;
use slipway_store::Store;

/// The simulator's bearer token, kept in a file the environments reference.
const SIM_TOKEN: &str = "cli-admin-test-token";

/// A gateway running in this test's process.
struct Gateway {
    url: String,
    admin: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    sim: slipway_envsim::Running,
    /// `file:...` holding [`SIM_TOKEN`].
    sim_token_ref: String,
    dir: tempfile::TempDir,
}

/// The simulator: dev with Contoso 1.0.0.0 (unmanaged, as a maker builds
/// it), test and prod empty; the token in a file in `dir`.
async fn start_sim(dir: &std::path::Path) -> (slipway_envsim::Running, String) {
    use slipway_envsim::config::{EnvironmentConfig, SeedSolution};
    let zip = dir.join("Contoso_1_0_0_0.zip");
    std::fs::write(
        &zip,
        slipway_testkit::solution_zip::SolutionZip::new("Contoso", "1.0.0.0")
            .display_name("Contoso")
            .publisher("contoso", "cts")
            .root_component(1, "cts_order")
            .build(),
    )
    .unwrap();
    let mut dev = EnvironmentConfig::new("dev");
    dev.solutions = vec![SeedSolution { path: zip }];
    let mut config = slipway_envsim::Config::in_memory();
    config.dev_tokens = vec![SIM_TOKEN.into()];
    config.environments = vec![
        dev,
        EnvironmentConfig::new("test"),
        EnvironmentConfig::new("prod"),
    ];
    let sim = slipway_envsim::EnvSim::start(config).await.unwrap();
    let token_file = dir.join("sim-token");
    std::fs::write(&token_file, format!("{SIM_TOKEN}\n")).unwrap();
    (sim, format!("file:{}", token_file.display()))
}

async fn start() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let (sim, sim_token_ref) = start_sim(dir.path()).await;
    let mut config = Config::default();
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.outbox_poll_ms = 50;
    config.gateway.environment_check_timeout_ms = 2_000;
    // One folder the three steps share, as separate workers would.
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    config.artifacts.url = format!("file://{}", artifacts.display());
    config.bus = BusConfig {
        transport: Transport::InProcess,
        retry_base_ms: 10,
        retry_max_ms: 20,
        max_attempts: 3,
        ..BusConfig::default()
    };
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gateway.sqlite").display()
    );
    let store = Store::connect(&db).await.unwrap();
    let admin = slipway_gateway::admin::issue_token(
        &store,
        "bootstrap",
        slipway_gateway::admin::TokenRequest {
            name: "cli admin tests".into(),
            subject: "cli-admin".into(),
            groups: vec![],
            roles: vec![slipway_store::AccessRole::Admin],
            expires_in_days: None,
        },
    )
    .await
    .unwrap();
    let bus = Bus::connect(&config.bus).await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(
        bus.clone(),
        slipway_exporter::ExporterStep::from_config(&config)
            .await
            .unwrap(),
        shutdown.clone(),
    ));
    tokio::spawn(serve(
        bus.clone(),
        slipway_validator::ValidatorStep::from_config(&config)
            .await
            .unwrap(),
        shutdown.clone(),
    ));
    tokio::spawn(serve(
        bus.clone(),
        slipway_importer::ImporterStep::from_config(&config)
            .await
            .unwrap(),
        shutdown.clone(),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = shutdown.clone();
    let task = tokio::spawn(async move {
        slipway_gateway::run(&config, store, bus, s, move |addr| {
            let _ = tx.send(addr);
        })
        .await
    });
    let addr = rx.await.unwrap();
    Gateway {
        url: format!("http://{addr}"),
        admin: admin.token,
        shutdown,
        task,
        sim,
        sim_token_ref,
        dir,
    }
}

impl Gateway {
    /// Runs `slipway args` with `token`, no profile file.
    async fn slipway(&self, token: &str, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_URL", &self.url)
            .env("SLIPWAY_TOKEN", token)
            .env("SLIPWAY_PROFILE", self.dir.path().join("no-profile.toml"))
            .env_remove("SLIPWAY_CONFIG")
            .output()
            .await
            .unwrap();
        Out {
            args: args.join(" "),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn admin(&self, args: &[&str]) -> Out {
        self.slipway(&self.admin, args).await
    }

    /// A secret reference to a file that does not exist: the background
    /// check of an environment registered with it fails at once.
    fn missing_token_file(&self) -> String {
        format!("file:{}", self.dir.path().join("no-such-token").display())
    }

    /// The URL of the simulated environment `name`.
    fn env_url(&self, name: &str) -> String {
        self.sim.env_url(name)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.sim.shutdown().await.unwrap();
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Out {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts exit 0; returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "`slipway {}` failed:\n{}{}",
            self.args,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts exit 0 and JSON on stdout.
    fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("`slipway {}` printed no JSON ({e}): {out}", self.args))
    }

    /// Asserts exit `code` with a one-line error; returns it.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "`slipway {}` should exit {code}:\n{}{}",
            self.args,
            self.stdout,
            self.stderr
        );
        let stderr = self.stderr.trim_end();
        if code == 1 {
            assert_eq!(
                stderr.lines().count(),
                1,
                "`slipway {}`: the error is one line: {stderr}",
                self.args
            );
            assert!(stderr.starts_with("error: "), "{stderr}");
        }
        stderr
    }
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect()
}

/// What [`set_up`] made.
struct Setup {
    pipeline_id: String,
    test_stage: String,
    prod_stage: String,
    maker: String,
    maker_token_id: String,
}

/// As admin: the simulator's dev, test, prod; pipeline Contoso from dev with stages test
/// and prod (after test); a maker token; the pipeline shared with it.
async fn set_up(gw: &Gateway) -> Setup {
    let creds = gw.sim_token_ref.clone();
    for (name, kind) in [
        ("dev", "development"),
        ("test", "target"),
        ("prod", "target"),
    ] {
        let url = gw.env_url(name);
        let env = gw
            .admin(&[
                "admin",
                "env",
                "add",
                "--name",
                name,
                "--url",
                &url,
                "--kind",
                kind,
                "--token-ref",
                &creds,
                "-o",
                "json",
            ])
            .await
            .json();
        assert_eq!(env["name"], name, "{env}");
        assert_eq!(env["kind"], kind, "{env}");
        assert_eq!(env["credentials"]["token_ref"], creds.as_str(), "{env}");
    }
    let pipeline = gw
        .admin(&[
            "admin",
            "pipeline",
            "create",
            "--name",
            "Contoso",
            "--description",
            "Contoso apps",
            "--source",
            "dev",
            "-o",
            "json",
        ])
        .await
        .json();
    let pipeline_id = pipeline["id"].as_str().unwrap().to_owned();
    assert_eq!(names(&pipeline["source_environments"]), ["dev"]);
    let test = gw
        .admin(&[
            "admin",
            "stage",
            "add",
            "--pipeline",
            "Contoso",
            "--name",
            "test",
            "--target",
            "test",
            "-o",
            "json",
        ])
        .await
        .json();
    let prod = gw
        .admin(&[
            "admin",
            "stage",
            "add",
            "--pipeline",
            &pipeline_id,
            "--name",
            "prod",
            "--after",
            "test",
            "--target",
            "prod",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(prod["previous_stage_id"], test["id"], "{prod}");
    assert_eq!(names(&prod["targets"]), ["prod"]);
    let created = gw
        .admin(&[
            "admin",
            "token",
            "create",
            "--subject",
            "maker",
            "--role",
            "maker",
            "-o",
            "json",
        ])
        .await
        .json();
    let maker = created["token"].as_str().unwrap().to_owned();
    assert!(maker.starts_with("slw_"), "{created}");
    assert_eq!(created["api_token"]["subject"], "maker");
    let shared = gw
        .admin(&[
            "admin",
            "share",
            "add",
            "--pipeline",
            "Contoso",
            "--user",
            "maker",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(shared["shares"][0]["name"], "maker", "{shared}");
    Setup {
        pipeline_id,
        test_stage: test["id"].as_str().unwrap().to_owned(),
        prod_stage: prod["id"].as_str().unwrap().to_owned(),
        maker,
        maker_token_id: created["api_token"]["id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_up_a_pipeline_and_a_maker_deploys_through_its_stages() {
    let gw = start().await;
    let s = set_up(&gw).await;

    // The maker sees the pipeline, its stages in order and where they go.
    let listed = gw
        .slipway(&s.maker, &["pipeline", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(names(&listed), ["Contoso"]);
    assert_eq!(names(&listed[0]["stages"]), ["test", "prod"]);
    assert_eq!(names(&listed[0]["source_environments"]), ["dev"]);
    assert_eq!(
        listed[0]["shares"],
        Value::Array(vec![]),
        "not the maker's to know"
    );
    let text = gw.slipway(&s.maker, &["pipeline", "list"]).await;
    assert!(
        text.ok()
            .contains("from dev: stage test -> test; stage prod (after test) -> prod"),
        "{}",
        text.stdout
    );
    let one = gw
        .slipway(
            &s.maker,
            &[
                "pipeline",
                "list",
                "--pipeline",
                &s.pipeline_id,
                "-o",
                "json",
            ],
        )
        .await
        .json();
    assert_eq!(names(&one), ["Contoso"]);

    // Stages run in order: prod only after test.
    let early = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "Contoso",
                "--stage",
                "prod",
                "--wait",
            ],
        )
        .await;
    let err = early.fails(1);
    assert!(err.contains("409") && err.contains("stage test"), "{err}");
    // Deploying by stage name: the pipeline's only source, the stage's only target.
    let mut run_ids = Vec::new();
    for (stage, stage_id, target) in [
        ("test", &s.test_stage, "test"),
        ("prod", &s.prod_stage, "prod"),
    ] {
        let run = gw
            .slipway(
                &s.maker,
                &[
                    "deploy",
                    "--solution",
                    "Contoso",
                    "--stage",
                    stage,
                    "--notes",
                    "from the CLI",
                    "--wait",
                    "-o",
                    "json",
                ],
            )
            .await
            .json();
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["requested_by"], "maker");
        let d = &run["deployment"];
        assert_eq!(d["pipeline_id"], s.pipeline_id.as_str(), "{run}");
        assert_eq!(d["stage_id"], stage_id.as_str(), "{run}");
        assert_eq!(d["source_environment"], "dev");
        assert_eq!(d["target_environment"], target);
        assert_eq!(d["notes"], "from the CLI", "{run}");
        run_ids.push(run["id"].as_str().unwrap().to_owned());
    }
    // Text mode follows the run to its end.
    let followed = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "Contoso",
                "--stage",
                &s.test_stage,
                "--from",
                "dev",
                "--new-version",
                "1.1.0.0",
                "--wait",
            ],
        )
        .await;
    let out = followed.ok();
    assert!(out.contains("(pipeline Contoso, stage test)"), "{out}");
    assert!(out.contains("-> succeeded"), "{out}");

    // The runs, as a list and one by one.
    let runs = gw.slipway(&s.maker, &["runs", "-o", "json"]).await.json();
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
    let listed = gw
        .slipway(&s.maker, &["runs", "list", "--limit", "1", "-o", "json"])
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    for args in [
        vec!["runs", run_ids[0].as_str(), "-o", "json"],
        vec!["runs", "show", run_ids[0].as_str(), "-o", "json"],
    ] {
        let shown = gw.slipway(&s.maker, &args).await.json();
        assert_eq!(shown["run"]["id"], run_ids[0].as_str());
        assert_eq!(shown["run"]["state"], "succeeded");
        assert!(shown["history"].as_array().unwrap().len() >= 5, "{shown}");
    }
    let shown = gw.slipway(&s.maker, &["runs", "show", &run_ids[0]]).await;
    let out = shown.ok();
    assert!(
        out.contains("validation: passed") && out.contains("notes: from the CLI"),
        "{out}"
    );
    let table = gw.slipway(&s.maker, &["runs"]).await;
    assert!(table.ok().starts_with("ID"), "{}", table.stdout);
    assert!(table.stdout.contains("dev -> prod"), "{}", table.stdout);
    // A deployment scheduled far ahead waits after validation; it can be canceled.
    let scheduled = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "Contoso",
                "--stage",
                "test",
                "--new-version",
                "1.2.0.0",
                "--at",
                "2099-01-01T00:00:00Z",
                "-o",
                "json",
            ],
        )
        .await
        .json();
    assert_eq!(
        scheduled["gates"]["scheduled_at"], "2099-01-01T00:00:00Z",
        "{scheduled}"
    );
    let id = scheduled["id"].as_str().unwrap();
    // Held after validation, waiting for its time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let shown = gw
            .slipway(&s.maker, &["runs", "show", id, "-o", "json"])
            .await
            .json();
        if shown["run"]["state"] == "scheduled" {
            break;
        }
        assert!(
            shown["run"]["state"] != "failed" && std::time::Instant::now() < deadline,
            "the scheduled run never got through validation: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let canceled = gw
        .slipway(
            &s.maker,
            &[
                "runs",
                "cancel",
                id,
                "--reason",
                "not that late",
                "-o",
                "json",
            ],
        )
        .await
        .json();
    assert_eq!(canceled["state"], "canceled", "{canceled}");
    assert_eq!(canceled["reason"], "not that late", "{canceled}");
    // A finished run cannot be canceled: the gateway's 409, in one line.
    let late = gw
        .slipway(
            &s.maker,
            &["runs", "cancel", &run_ids[0], "--reason", "oops"],
        )
        .await;
    let err = late.fails(1);
    assert!(err.contains("409") && err.contains("succeeded"), "{err}");

    // The audit log has the setup and the runs, and its chain holds.
    let verified = gw
        .admin(&["admin", "audit", "verify", "-o", "json"])
        .await
        .json();
    assert_eq!(verified["intact"], true, "{verified}");
    assert!(
        gw.admin(&["admin", "audit", "verify"])
            .await
            .ok()
            .contains("intact")
    );
    let records = gw
        .admin(&[
            "admin",
            "audit",
            "list",
            "--pipeline",
            "Contoso",
            "--since",
            "1h",
            "-o",
            "json",
        ])
        .await
        .json();
    let records = records.as_array().unwrap();
    assert!(
        records.iter().any(|r| r["entity_kind"] == "stage"),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r["pipeline_id"] == s.pipeline_id.as_str()),
        "{records:?}"
    );
    let by_admin = gw
        .admin(&[
            "admin",
            "audit",
            "list",
            "--actor",
            "cli-admin",
            "--entity-kind",
            "api_token",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(by_admin.as_array().unwrap().len(), 1, "{by_admin}");

    // Admins still deploy straight from one environment to another.
    let raw = gw
        .admin(&[
            "deploy",
            "--solution",
            "Contoso",
            "--from",
            "dev",
            "--to",
            "test",
            "--wait",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(raw["state"], "succeeded", "{raw}");
    assert!(raw["deployment"]["pipeline_id"].is_null(), "{raw}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_naming_the_problem_and_the_fix() {
    let gw = start().await;
    let s = set_up(&gw).await;

    let unknown = gw
        .slipway(
            &s.maker,
            &["deploy", "--solution", "Contoso", "--stage", "uat"],
        )
        .await;
    assert_eq!(
        unknown.fails(1),
        "error: no stage uat in the pipelines shared with you; `slipway pipeline list` shows them"
    );
    // Makers go through a pipeline.
    let raw = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "Contoso",
                "--from",
                "dev",
                "--to",
                "test",
            ],
        )
        .await;
    assert!(raw.fails(1).contains("--stage"), "{}", raw.stderr);
    // The same stage name in two pipelines shared with the maker.
    let creds = gw.missing_token_file();
    gw.admin(&[
        "admin",
        "env",
        "add",
        "--name",
        "uat",
        "--url",
        "http://127.0.0.1:4",
        "--kind",
        "target",
        "--token-ref",
        &creds,
    ])
    .await
    .ok();
    gw.admin(&[
        "admin", "pipeline", "create", "--name", "Fabrikam", "--source", "dev",
    ])
    .await
    .ok();
    gw.admin(&[
        "admin",
        "stage",
        "add",
        "--pipeline",
        "Fabrikam",
        "--name",
        "test",
        "--target",
        "uat",
    ])
    .await
    .ok();
    gw.admin(&[
        "admin",
        "share",
        "add",
        "--pipeline",
        "Fabrikam",
        "--group",
        "makers",
    ])
    .await
    .ok();
    let grouped = gw
        .admin(&[
            "admin",
            "token",
            "create",
            "--name",
            "grouped",
            "--subject",
            "maria",
            "--group",
            "makers",
            "--role",
            "maker",
            "-o",
            "json",
        ])
        .await
        .json();
    let maria = grouped["token"].as_str().unwrap();
    // maria sees Fabrikam only (through her group); the maker Contoso only.
    let hers = gw
        .slipway(maria, &["pipeline", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(names(&hers), ["Fabrikam"]);
    gw.admin(&[
        "admin",
        "share",
        "add",
        "--pipeline",
        "Fabrikam",
        "--user",
        "maker",
    ])
    .await
    .ok();
    let ambiguous = gw
        .slipway(
            &s.maker,
            &["deploy", "--solution", "Contoso", "--stage", "test"],
        )
        .await;
    let err = ambiguous.fails(1);
    assert!(
        err.contains("several pipelines")
            && err.contains("Contoso")
            && err.contains("Fabrikam")
            && err.contains("--pipeline"),
        "{err}"
    );
    let chosen = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "Contoso",
                "--stage",
                "test",
                "--pipeline",
                "Fabrikam",
                "-o",
                "json",
            ],
        )
        .await
        .json();
    assert_eq!(
        chosen["deployment"]["target_environment"], "uat",
        "{chosen}"
    );
    // A source the pipeline does not deploy from: the gateway's 422, and the flag.
    let wrong = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "Contoso",
                "--stage",
                "prod",
                "--from",
                "test",
            ],
        )
        .await;
    let err = wrong.fails(1);
    assert!(
        err.contains("422") && err.contains("not linked") && err.contains("--from"),
        "{err}"
    );
    // Two source environments: --from is needed.
    gw.admin(&[
        "admin",
        "env",
        "add",
        "--name",
        "dev2",
        "--url",
        "http://127.0.0.1:5",
        "--kind",
        "development",
        "--token-ref",
        &creds,
    ])
    .await
    .ok();
    gw.admin(&[
        "admin", "pipeline", "update", "Fabrikam", "--source", "dev", "--source", "dev2",
    ])
    .await
    .ok();
    let sources = gw
        .slipway(
            &s.maker,
            &[
                "deploy",
                "--solution",
                "C",
                "--stage",
                "test",
                "--pipeline",
                "Fabrikam",
            ],
        )
        .await;
    let err = sources.fails(1);
    assert!(err.contains("dev, dev2") && err.contains("--from"), "{err}");

    // Not an admin: the gateway's 403 message.
    let forbidden = gw.slipway(&s.maker, &["admin", "env", "list"]).await;
    let err = forbidden.fails(1);
    assert!(
        err.contains("403") && err.contains("maker may not list environments"),
        "{err}"
    );
    // A token the gateway does not know, and a revoked one.
    let bogus = gw
        .slipway("slw_not_a_real_token", &["pipeline", "list"])
        .await;
    let err = bogus.fails(1);
    assert!(
        err.contains("refused the token") && err.contains("slipway profile set"),
        "{err}"
    );
    gw.admin(&["admin", "token", "revoke", &s.maker_token_id])
        .await
        .ok();
    let revoked = gw.slipway(&s.maker, &["pipeline", "list"]).await;
    assert!(
        revoked.fails(1).contains("slipway profile set"),
        "{}",
        revoked.stderr
    );
    let tokens = gw
        .admin(&["admin", "token", "list", "-o", "json"])
        .await
        .json();
    let maker_token = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == s.maker_token_id.as_str())
        .unwrap();
    assert!(maker_token["revoked_at"].is_string(), "{maker_token}");
    // No gateway there.
    let unreachable = gw.admin(&["runs", "--gateway", "http://127.0.0.1:9"]).await;
    let err = unreachable.fails(1);
    assert!(
        err.contains("cannot reach the gateway at http://127.0.0.1:9")
            && err.contains("slipway dev"),
        "{err}"
    );
    // An environment nothing answers for fails its check.
    let check = gw.admin(&["admin", "env", "validate", "uat"]).await;
    let err = check.fails(1);
    assert!(
        err.contains("environment uat failed its check") && err.contains("no-such-token"),
        "{err}"
    );
    // A field the gateway refuses: its 422 names the field.
    let bad_url = gw
        .admin(&[
            "admin",
            "env",
            "add",
            "--name",
            "x",
            "--url",
            "ftp://example.com",
            "--kind",
            "target",
            "--token-ref",
            "env:X",
        ])
        .await;
    let err = bad_url.fails(1);
    assert!(err.contains("422") && err.contains("`url`"), "{err}");
    // Argument mistakes exit 2.
    gw.admin(&["admin", "env", "update", "dev"]).await.fails(2);
    gw.admin(&["admin", "share", "add", "--pipeline", "Contoso"])
        .await
        .fails(2);
    gw.admin(&["admin", "role", "grant", "--user", "x", "--role", "owner"])
        .await
        .fails(2);
    gw.admin(&["deploy", "--solution", "Contoso"])
        .await
        .fails(2);
    gw.admin(&["admin", "pipeline", "create", "--name", "NoSource"])
        .await
        .fails(2);
    gw.admin(&["admin", "env", "show", "nowhere"])
        .await
        .fails(1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_changes_and_removes_what_it_set_up() {
    let gw = start().await;
    let s = set_up(&gw).await;

    // Environments: text list, show, update, delete (refused while in use).
    let list = gw.admin(&["admin", "env", "list"]).await;
    let out = list.ok();
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("development"), "{out}");
    // The simulator answers WhoAmI for prod.
    let checked = gw
        .admin(&["admin", "env", "validate", "prod", "-o", "json"])
        .await
        .json();
    assert_eq!(checked["validation_status"], "success", "{checked}");
    let shown = gw.admin(&["admin", "env", "show", "prod"]).await;
    assert!(
        shown.ok().contains("static token from file:"),
        "{}",
        shown.stdout
    );
    let updated = gw
        .admin(&[
            "admin",
            "env",
            "update",
            "test",
            "--token-url",
            "https://login.example.com/t/oauth2/v2.0/token",
            "--client-id",
            "app-1",
            "--client-secret-ref",
            "env:TEST_SECRET",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(updated["credentials"]["kind"], "client_secret", "{updated}");
    assert_eq!(
        updated["credentials"]["client_secret_ref"],
        "env:TEST_SECRET"
    );
    let in_use = gw.admin(&["admin", "env", "delete", "prod"]).await;
    assert!(in_use.fails(1).contains("409"), "{}", in_use.stderr);
    gw.admin(&[
        "admin",
        "env",
        "add",
        "--name",
        "spare",
        "--url",
        "https://spare.example.com",
        "--kind",
        "target",
        "--token-ref",
        "env:SPARE",
    ])
    .await
    .ok();
    let deleted = gw
        .admin(&["admin", "env", "delete", "spare", "-o", "json"])
        .await
        .json();
    assert_eq!(deleted["name"], "spare");
    let envs = gw
        .admin(&["admin", "env", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(names(&envs), ["dev", "prod", "test"]);

    // Stages: settings on and off, policies from a file, then removal.
    let policies = gw.dir.path().join("policies.json");
    std::fs::write(
        &policies,
        r#"{"managed_only": true, "blocked_connectors": ["shared_twitter"]}"#,
    )
    .unwrap();
    let stage = gw
        .admin(&[
            "admin",
            "stage",
            "update",
            "prod",
            "--pipeline",
            "Contoso",
            "--approval-required",
            "--deploy-as-user",
            "release-bot",
            "--policies",
            policies.to_str().unwrap(),
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(stage["approval_required"], true, "{stage}");
    assert_eq!(stage["deploy_as"]["user"], "release-bot", "{stage}");
    assert_eq!(stage["policies"]["managed_only"], true, "{stage}");
    assert_eq!(stage["previous_stage_id"], s.test_stage.as_str(), "kept");
    assert_eq!(names(&stage["targets"]), ["prod"], "kept");
    let tree = gw.admin(&["admin", "pipeline", "show", "Contoso"]).await;
    let out = tree.ok();
    assert!(
        out.contains("after test, approval required, deploys as release-bot"),
        "{out}"
    );
    assert!(out.contains("shared with: user maker"), "{out}");
    let stage = gw
        .admin(&[
            "admin",
            "stage",
            "update",
            &s.prod_stage,
            "--approval-required=false",
            "--deploy-as-environment",
            "--first",
            "--name",
            "production",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(stage["approval_required"], false, "{stage}");
    assert_eq!(stage["deploy_as"]["mode"], "environment", "{stage}");
    assert!(stage["previous_stage_id"].is_null(), "{stage}");
    assert_eq!(stage["name"], "production");
    assert_eq!(stage["policies"]["managed_only"], true, "kept: {stage}");
    gw.admin(&[
        "admin",
        "stage",
        "delete",
        "production",
        "--pipeline",
        "Contoso",
    ])
    .await
    .ok();
    let pipeline = gw
        .admin(&[
            "admin",
            "pipeline",
            "update",
            "Contoso",
            "--description",
            "only test now",
            "--allow-redeploy-older",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(names(&pipeline["stages"]), ["test"]);
    assert_eq!(pipeline["allow_redeploy_older"], true);
    assert_eq!(pipeline["description"], "only test now");

    // Sharing and roles.
    let unshared = gw
        .admin(&[
            "admin",
            "share",
            "remove",
            "--pipeline",
            "Contoso",
            "--user",
            "maker",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(unshared["shares"], Value::Array(vec![]), "{unshared}");
    let nothing = gw.slipway(&s.maker, &["pipeline", "list"]).await;
    assert!(nothing.ok().contains("no pipeline is shared with you"));
    gw.admin(&[
        "admin", "role", "grant", "--group", "release", "--role", "approver",
    ])
    .await
    .ok();
    let grants = gw
        .admin(&["admin", "role", "list", "-o", "json"])
        .await
        .json();
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["principal"]["name"] == "release"
                && g["principal"]["kind"] == "group"
                && g["role"] == "approver"),
        "{grants}"
    );
    gw.admin(&[
        "admin", "role", "revoke", "--group", "release", "--role", "approver",
    ])
    .await
    .ok();
    let again = gw
        .admin(&[
            "admin", "role", "revoke", "--group", "release", "--role", "approver",
        ])
        .await;
    assert!(again.fails(1).contains("404"), "{}", again.stderr);
    let me = gw.admin(&["whoami", "-o", "json"]).await.json();
    assert_eq!(me["subject"], "cli-admin");
    let token = gw
        .admin(&[
            "admin",
            "token",
            "create",
            "--name",
            "ci",
            "--subject",
            "ci",
        ])
        .await;
    assert!(
        token.ok().contains("shown only this once"),
        "{}",
        token.stdout
    );
    let revoked = gw
        .admin(&["admin", "token", "revoke", "ci", "-o", "json"])
        .await
        .json();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");

    let gone = gw
        .admin(&["admin", "pipeline", "delete", "Contoso", "-o", "json"])
        .await
        .json();
    assert_eq!(gone["id"], s.pipeline_id.as_str());
    let left = gw.admin(&["pipeline", "list", "-o", "json"]).await.json();
    assert_eq!(left, Value::Array(vec![]));
    // Every change above is in the chain, still intact.
    gw.admin(&["admin", "audit", "verify"]).await.ok();
    gw.stop().await;
}
