//! The simulator as a server: persistence across restarts, seeding from a
//! config file, the token endpoint, the admin endpoints, the binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;

use common::*;
use serde_json::{Value, json};
use slipway_envsim::{Config, DataLocation, EnvSim, Faults};
use slipway_testkit::solution_zip::SolutionZip;
use tokio::io::{AsyncBufReadExt, BufReader};

fn base_zip(version: &str) -> Vec<u8> {
    SolutionZip::new("Base", version)
        .publisher("contoso", "cts")
        .root_component(1, "cts_customer")
        .env_var("cts_Url", 100000000, Some("https://x"), None)
        .build()
}

#[tokio::test]
async fn state_survives_a_restart_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.data = DataLocation::File(dir.path().join("envsim.sqlite"));

    let sim = EnvSim::start(config.clone()).await.unwrap();
    let c = client(&sim, "test");
    let who = c.who_am_i().await.unwrap();
    import(&c, base_zip("1.0.0.0")).await.unwrap();
    sim.shutdown().await.unwrap();

    let sim = EnvSim::start(config).await.unwrap();
    let c = client(&sim, "test");
    let installed = c.solution("Base").await.unwrap().unwrap();
    assert_eq!(installed.version, "1.0.0.0");
    assert_eq!(
        c.who_am_i().await.unwrap(),
        who,
        "the organization keeps its ids"
    );
    assert_eq!(
        c.export_solution("Base", false).await.unwrap(),
        base_zip("1.0.0.0")
    );
    assert_eq!(c.environment_variable_definitions().await.unwrap().len(), 1);
    // Components registered before the restart still count: a downgrade is refused.
    let message = import_error(&c, base_zip("0.9.0.0")).await;
    assert!(
        message.contains("lower than the installed version"),
        "{message}"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_config_file_seeds_environments_connections_and_solutions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.zip"), base_zip("1.0.0.0")).unwrap();
    let toml = r#"
        data = "state.sqlite"
        dev_tokens = ["dev-token"]

        [[environments]]
        name = "test"

        [[environments.connections]]
        id = "outlook-1"
        connector_id = "/providers/Microsoft.PowerApps/apis/shared_office365"
        display_name = "Outlook"

        [[environments.solutions]]
        path = "base.zip"
    "#;
    let path = dir.path().join("envsim.toml");
    std::fs::write(&path, toml).unwrap();
    let config = Config::from_file(&path).unwrap();
    assert_eq!(
        config.data,
        DataLocation::File(dir.path().join("state.sqlite"))
    );

    let sim = EnvSim::start(config.clone()).await.unwrap();
    let c = client(&sim, "test");
    assert_eq!(
        c.solution("Base").await.unwrap().unwrap().version,
        "1.0.0.0"
    );
    let connections = c.connections().await.unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0].display_name.as_deref(), Some("Outlook"));
    sim.shutdown().await.unwrap();

    // Restarting with the same seed does not re-import (nor fail).
    let sim = EnvSim::start(config).await.unwrap();
    assert_eq!(client(&sim, "test").solutions().await.unwrap().len(), 1);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_seed_that_cannot_be_installed_stops_the_start_with_the_reason() {
    let mut config = config();
    config.environments[0].solutions = vec![slipway_envsim::config::SeedSolution {
        path: "/nonexistent/base.zip".into(),
    }];
    let err = EnvSim::start(config).await.unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/base.zip")
            && err.to_string().contains("cannot read"),
        "{err}"
    );
}

#[tokio::test]
async fn a_seed_with_missing_dependencies_says_how_to_provide_them() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("app.zip");
    std::fs::write(
        &zip,
        SolutionZip::new("App", "1.0.0.0")
            .missing_dependency(
                slipway_testkit::solution_zip::DepEnd::new("61", "msdyn_/icon.png")
                    .solution("AppModuleWebResources (2.5)"),
                slipway_testkit::solution_zip::DepEnd::new("80", "cts_app"),
            )
            .build(),
    )
    .unwrap();
    let mut config = config();
    config.environments[0].solutions = vec![slipway_envsim::config::SeedSolution { path: zip }];
    let err = EnvSim::start(config.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("Some dependencies are missing") && err.contains("platform_solutions"),
        "{err}"
    );
    config.environments[0].platform_solutions = vec!["AppModuleWebResources".into()];
    EnvSim::start(config)
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_token_endpoint_answers_oauth_errors_and_takes_faults_at_run_time() {
    let mut config = config();
    config.clients = vec![slipway_envsim::config::ClientCredentials {
        client_id: "app".into(),
        client_secret: "pw".into(),
    }];
    let sim = EnvSim::start(config).await.unwrap();
    let http = http();
    // Not a form: an OAuth error, not a bare text answer.
    let resp = http.post(sim.token_url()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");

    let resp = http
        .put(format!("{}/_admin/_token/faults", sim.base_url()))
        .json(&json!({"throttle_every_nth": 1, "retry_after_secs": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "pw"),
            ("scope", &format!("{}/.default", sim.env_url("test"))),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let stats: Value = http
        .get(format!("{}/_admin/_token/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["throttled"], 1, "{stats}");
}

#[tokio::test]
async fn requests_without_a_valid_bearer_get_401_in_odata_format() {
    let sim = EnvSim::start(config()).await.unwrap();
    let http = http();
    let url = format!("{}/api/data/v9.2/WhoAmI", sim.env_url("test"));
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bearer"),
        "{body}"
    );
    let resp = http.get(&url).bearer_auth("forged").send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn tokens_are_scoped_to_one_environment() {
    let mut config = config();
    config.environments.push(environment("prod"));
    config.clients = vec![slipway_envsim::config::ClientCredentials {
        client_id: "app".into(),
        client_secret: "pw".into(),
    }];
    let sim = EnvSim::start(config).await.unwrap();
    let http = http();
    let token: Value = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "pw"),
            ("scope", &format!("{}/.default", sim.env_url("test"))),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let who = |env: &str| {
        http.get(format!("{}/api/data/v9.2/WhoAmI", sim.env_url(env)))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(who("test").await.unwrap().status(), 200);
    let resp = who("prod").await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("issued for environment test")
    );

    let bad_scope = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "pw"),
            ("scope", "https://elsewhere/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_scope.status(), 400);
    let body: Value = bad_scope.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn faults_are_set_at_run_time_through_the_admin_endpoint() {
    let sim = EnvSim::start(config()).await.unwrap();
    let http = http();
    let url = format!("{}/_admin/test/faults", sim.base_url());
    let resp = http
        .put(&url)
        .json(&json!({"server_error_every_nth": 1, "server_error_status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let err = client(&sim, "test").who_am_i().await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    let faults: Faults = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(faults.server_error_every_nth, 1);
    let stats: Value = http
        .get(format!("{}/_admin/test/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["server_errors"], 1);

    let resp = http
        .put(&url)
        .json(&json!({"typo": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .put(format!("{}/_admin/nowhere/faults", sim.base_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn unsupported_queries_get_an_odata_error_naming_the_problem() {
    let sim = EnvSim::start(config()).await.unwrap();
    let http = http();
    let get = |query: &str| {
        http.get(format!(
            "{}/api/data/v9.2/solutions?{query}",
            sim.env_url("test")
        ))
        .bearer_auth(DEV_TOKEN)
        .send()
    };
    let resp = get("$filter=startswith(uniquename,'a')").await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "0x80060888");
    let resp = http
        .get(format!("{}/test/api/data/v9.1/solutions", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/data/v9.2/"),
        "{body}"
    );
    let resp = http
        .delete(format!("{}/api/data/v9.2/solutions", sim.env_url("test")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such endpoint: DELETE"),
        "{body}"
    );
    let resp = get("$select=nosuchcolumn").await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.solution'."
    );
}

#[tokio::test]
async fn the_binary_serves_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envsim.toml");
    std::fs::write(
        &path,
        "dev_tokens = [\"dev-token\"]\n[[environments]]\nname = \"test\"\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway-envsim"))
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--data", ":memory:"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let base = line
        .strip_prefix("slipway-envsim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let resp = http()
        .get(format!("{base}/test/api/data/v9.2/WhoAmI"))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test]
async fn the_binary_refuses_a_bad_config_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envsim.toml");
    std::fs::write(&path, "[[environments]]\nname = \"bad name\"\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway-envsim"))
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad name"), "{stderr}");
}
