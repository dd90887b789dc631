//! What the CLI tests share: the real `slipway` binary against a gateway
//! started in the test's process (SQLite in a temporary folder, in-process
//! bus, the three worker steps, artifacts in a shared folder) and the
//! environment simulator (dev holding the Contoso solutions, test and prod
//! empty), with an admin token; and the setup most tests start from.
// Each test binary uses a part of this.
#![allow(dead_code)]

use serde_json::Value;
use slipway_bus::Bus;
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;
use slipway_store::Store;

/// The gateway's own in-process start-up, shared with its tests.
#[path = "../../../gateway/tests/common/in_process.rs"]
mod in_process;

/// The simulator's bearer token, kept in a file the environments reference.
pub const SIM_TOKEN: &str = "cli-admin-test-token";

/// A gateway running in this test's process.
pub struct Gateway {
    pub url: String,
    pub admin: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub sim: slipway_envsim::Running,
    /// `file:...` holding [`SIM_TOKEN`].
    pub sim_token_ref: String,
    pub dir: tempfile::TempDir,
}

/// The simulator: dev with Contoso 1.0.0.0 (unmanaged, as a maker builds
/// it) and ContosoConfig 1.0.0.0 (an environment variable without a value:
/// its deployments wait for settings), test and prod empty; the token in a
/// file in `dir`.
async fn start_sim(dir: &std::path::Path) -> (slipway_envsim::Running, String) {
    use slipway_envsim::config::{EnvironmentConfig, SeedSolution};
    use slipway_testkit::solution_zip::SolutionZip;
    let mut dev = EnvironmentConfig::new("dev");
    for (name, zip) in [
        (
            "Contoso",
            SolutionZip::new("Contoso", "1.0.0.0")
                .display_name("Contoso")
                .publisher("contoso", "cts")
                .root_component(1, "cts_order"),
        ),
        (
            "ContosoConfig",
            SolutionZip::new("ContosoConfig", "1.0.0.0")
                .display_name("Contoso configuration")
                .publisher("contoso", "cts")
                .env_var(CONFIG_VARIABLE, 100000000, None, None),
        ),
    ] {
        let path = dir.join(format!("{name}_1_0_0_0.zip"));
        std::fs::write(&path, zip.build()).unwrap();
        dev.solutions.push(SeedSolution { path });
    }
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

/// The environment variable of ContosoConfig, which has no value.
pub const CONFIG_VARIABLE: &str = "cts_ApiUrl";

pub async fn start() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let (sim, sim_token_ref) = start_sim(dir.path()).await;
    let mut config = Config::default();
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.outbox_poll_ms = 50;
    config.gateway.environment_check_timeout_ms = 2_000;
    // Imports are checked often, so a slow one shows several checks.
    config.environments.import_poll_ms = 50;
    config.environments.import_poll_max_ms = 200;
    // One folder the three steps share, as separate workers would.
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    config.artifacts.url = format!("file://{}", artifacts.display());
    config.bus = in_process::bus_config();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gateway.sqlite").display()
    );
    let store = Store::connect(&db).await.unwrap();
    let admin = in_process::admin_token(&store, "cli admin tests", "cli-admin").await;
    let bus = Bus::connect(&config.bus).await.unwrap();
    let shutdown = CancellationToken::new();
    in_process::spawn_workers(&bus, &config, &shutdown).await;
    let (url, task) = in_process::spawn_gateway(config, store, bus, shutdown.clone()).await;
    Gateway {
        url,
        admin,
        shutdown,
        task,
        sim,
        sim_token_ref,
        dir,
    }
}

impl Gateway {
    /// Runs `slipway args` with `token`, no profile file, in the test's
    /// temporary folder.
    pub async fn slipway(&self, token: &str, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .current_dir(self.dir.path())
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

    pub async fn admin(&self, args: &[&str]) -> Out {
        self.slipway(&self.admin, args).await
    }

    /// `slipway deploy --solution <solution> --stage <stage>` and `extra`,
    /// as `token`.
    pub async fn deploy(&self, token: &str, solution: &str, stage: &str, extra: &[&str]) -> Out {
        let mut args = vec!["deploy", "--solution", solution, "--stage", stage];
        args.extend_from_slice(extra);
        self.slipway(token, &args).await
    }

    /// As admin, a token of `subject` with `role`: what the CLI printed.
    pub async fn create_token(&self, subject: &str, role: &str) -> Value {
        self.admin(&[
            "admin",
            "token",
            "create",
            "--subject",
            subject,
            "--role",
            role,
            "-o",
            "json",
        ])
        .await
        .json()
    }

    /// As admin, shares `pipeline` with the user `user` (extra `args`).
    pub async fn share(&self, pipeline: &str, user: &str, args: &[&str]) -> Out {
        let mut all = vec![
            "admin",
            "share",
            "add",
            "--pipeline",
            pipeline,
            "--user",
            user,
        ];
        all.extend_from_slice(args);
        self.admin(&all).await
    }

    /// A secret reference to a file that does not exist: the background
    /// check of an environment registered with it fails at once.
    pub fn missing_token_file(&self) -> String {
        format!("file:{}", self.dir.path().join("no-such-token").display())
    }

    /// The URL of the simulated environment `name`.
    pub fn env_url(&self, name: &str) -> String {
        self.sim.env_url(name)
    }

    /// Polls `slipway runs show id` as `token` until the run is in
    /// `state`; panics when it ends elsewhere or takes over 60 s.
    pub async fn wait_state(&self, token: &str, id: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let shown = self
                .slipway(token, &["runs", "show", id, "-o", "json"])
                .await
                .json();
            let run = &shown["run"];
            if run["state"] == state {
                return run.clone();
            }
            assert!(
                !matches!(
                    run["state"].as_str(),
                    Some("succeeded" | "failed" | "canceled")
                ) && std::time::Instant::now() < deadline,
                "deployment {id} never reached {state}: {shown:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Imports `zip` into environment `env` of the simulator, as someone
    /// working there directly (not through Slipway) would.
    pub async fn install(&self, env: &str, zip: Vec<u8>) {
        let client = slipway_dataverse::Client::new(slipway_dataverse::ClientConfig::new(
            self.env_url(env),
            slipway_dataverse::Credentials::StaticToken(SIM_TOKEN.into()),
        ))
        .unwrap();
        client
            .import_solution(&slipway_dataverse::ImportRequest::new(zip.into()))
            .await
            .unwrap();
    }

    /// Sets the simulator's faults of environment `env`.
    pub fn faults(&self, env: &str, faults: slipway_envsim::config::Faults) {
        self.sim.set_faults(env, faults).unwrap();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.sim.shutdown().await.unwrap();
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Out {
    pub args: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts exit 0; returns stdout.
    pub fn ok(&self) -> &str {
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
    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("`slipway {}` printed no JSON ({e}): {out}", self.args))
    }

    /// Asserts exit `code` with a one-line error; returns it.
    pub fn fails(&self, code: i32) -> &str {
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

pub fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect()
}

/// What [`set_up`] made.
pub struct Setup {
    pub pipeline_id: String,
    pub test_stage: String,
    pub prod_stage: String,
    pub maker: String,
    pub maker_token_id: String,
}

/// As admin: the simulator's dev, test, prod; pipeline Contoso from dev with stages test
/// and prod (after test); a maker token; the pipeline shared with it.
pub async fn set_up(gw: &Gateway) -> Setup {
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
    let created = gw.create_token("maker", "maker").await;
    let maker = created["token"].as_str().unwrap().to_owned();
    assert!(maker.starts_with("slw_"), "{created}");
    assert_eq!(created["api_token"]["subject"], "maker");
    let shared = gw.share("Contoso", "maker", &["-o", "json"]).await.json();
    assert_eq!(shared["shares"][0]["name"], "maker", "{shared}");
    Setup {
        pipeline_id,
        test_stage: test["id"].as_str().unwrap().to_owned(),
        prod_stage: prod["id"].as_str().unwrap().to_owned(),
        maker,
        maker_token_id: created["api_token"]["id"].as_str().unwrap().to_owned(),
    }
}
