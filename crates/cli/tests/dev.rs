//! `slipway dev`, the README's first command, runs the whole pipeline and
//! the environment simulator in one process and stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// What `slipway dev` printed at start.
struct Dev {
    child: tokio::process::Child,
    gateway: String,
    test_env: String,
    admin_token: String,
    maker_token: String,
}

/// Starts `slipway dev` with `extra` arguments in `dir`.
async fn start_dev(dir: &std::path::Path, extra: &[&str]) -> Dev {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--envsim-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .current_dir(dir)
        .env_remove("SLIPWAY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut gateway = None;
    let mut test_env = None;
    let mut admin_token = None;
    let mut maker_token = None;
    while gateway.is_none() || test_env.is_none() || admin_token.is_none() || maker_token.is_none()
    {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("slipway dev printed nothing for 60 s")
            .unwrap()
            .expect("slipway dev exited before it was up");
        if let Some(rest) = line.split("gateway on ").nth(1) {
            gateway = rest.split_whitespace().next().map(String::from);
        }
        if let Some(url) = line.trim().strip_prefix("test: ") {
            test_env = Some(url.to_string());
        }
        if let Some(token) = line.trim().strip_prefix("admin token: ") {
            admin_token = Some(token.to_string());
        }
        if let Some(token) = line.trim().strip_prefix("maker token: ") {
            maker_token = Some(token.to_string());
        }
    }
    // Keep reading, so slipway dev never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Dev {
        child,
        gateway: gateway.unwrap(),
        test_env: test_env.unwrap(),
        admin_token: admin_token.unwrap(),
        maker_token: maker_token.unwrap(),
    }
}

/// `--amqp` and `--database-url` run the same on RabbitMQ and PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn slipway_dev_runs_on_rabbitmq_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let vhost = slipway_testkit::rabbit::fresh_vhost().await.unwrap();
    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    let Dev {
        mut child,
        gateway,
        admin_token,
        ..
    } = start_dev(
        dir.path(),
        &["--amqp", &vhost.amqp_url(), "--database-url", db.url()],
    )
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
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
        .env("SLIPWAY_URL", &gateway)
        .env("SLIPWAY_TOKEN", &admin_token)
        .env("SLIPWAY_PROFILE", dir.path().join("no-profile.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "succeeded");
    // The run is in PostgreSQL, and the commands went through the vhost.
    let store = slipway_store::Store::connect(db.url()).await.unwrap();
    let id = run["id"].as_str().unwrap().parse().unwrap();
    assert!(store.get_run(id).await.unwrap().is_some());
    assert!(!dir.path().join(".slipway").join("slipway.sqlite").exists());
    child.kill().await.unwrap();
    db.drop_db().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn slipway_dev_deploys_and_serves_simulated_environments() {
    let dir = tempfile::tempdir().unwrap();
    let Dev {
        mut child,
        gateway,
        test_env,
        admin_token,
        maker_token,
    } = start_dev(dir.path(), &["--data-dir", "state"]).await;
    let http = slipway_testkit::http_client_with_token(&admin_token).unwrap();

    // Seeded: the environments (checked with WhoAmI), and a pipeline
    // dev -> test -> prod that the demo maker sees.
    let maker = slipway_testkit::http_client_with_token(&maker_token).unwrap();
    let pipelines: Value = maker
        .get(format!("{gateway}/api/v1/pipelines"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stages: Vec<&str> = pipelines[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["test", "prod"], "{pipelines}");
    assert_eq!(pipelines[0]["source_environments"][0]["name"], "dev");
    // A seeded solution, deployed by the maker through the pipeline to test,
    // then to prod (which reuses the artifact tested).
    let stage_id = |name: &str| {
        pipelines[0]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let pipeline_id = pipelines[0]["id"].as_str().unwrap().to_string();
    let mut artifacts = Vec::new();
    for stage in ["test", "prod"] {
        let run: Value = maker
            .post(format!("{gateway}/api/v1/deployments"))
            .json(&json!({
                "solution_name": "ContosoCore",
                "pipeline_id": pipeline_id,
                "stage_id": stage_id(stage),
                "source_environment": "dev",
                "notes": "first release",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = run["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{run}"))
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        let run = loop {
            let run: Value = maker
                .get(format!("{gateway}/api/v1/deployments/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ["succeeded", "failed", "canceled"].contains(&run["state"].as_str().unwrap_or("")) {
                break run;
            }
            assert!(
                Instant::now() < deadline,
                "run to {stage} never ended: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(run["state"], "succeeded", "to {stage}: {run}");
        assert_eq!(run["artifact"]["version"], "1.0.0.1", "{run}");
        artifacts.push(run["artifact"]["managed_sha256"].clone());
    }
    assert_eq!(
        artifacts[0], artifacts[1],
        "prod imports the artifact tested"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let envs: Value = http
            .get(format!("{gateway}/api/v1/environments"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let statuses: Vec<&str> = envs
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["validation_status"].as_str().unwrap())
            .collect();
        if statuses == ["success", "success", "success"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "environments not validated: {envs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let run: Value = http
        .post(format!("{gateway}/api/v1/deployments"))
        .json(&json!({"solution_name": "Contoso", "source_environment": "dev", "target_environment": "test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run: Value = http
            .get(format!("{gateway}/api/v1/deployments/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "run never succeeded: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let who: Value = http
        .get(format!("{test_env}/api/data/v9.2/WhoAmI"))
        .bearer_auth("slipway-dev")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(who["UserId"].is_string(), "{who}");

    // The CLI against the same gateway: deploy and follow, then read back.
    let slipway = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_URL", &gateway)
            .env("SLIPWAY_TOKEN", &admin_token)
            .env("SLIPWAY_PROFILE", dir.path().join("no-profile.toml"))
            .output()
            .unwrap()
    };
    let out = slipway(&[
        "deploy",
        "--solution",
        "Contoso",
        "--from",
        "dev",
        "--to",
        "prod",
        "--wait",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-> succeeded"), "{stdout}");
    assert!(stdout.contains("import succeeded"), "{stdout}");
    let out = slipway(&["runs", &id, "--output", "json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["run"]["state"], "succeeded");
    assert!(shown["history"].as_array().unwrap().len() >= 5);
    let out = slipway(&[
        "deploy",
        "--solution",
        "Contoso",
        "--from",
        "dev",
        "--to",
        "dev",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("the same"),
        "{stderr}"
    );
    // A saved profile stands in for SLIPWAY_URL; its token is never shown.
    let profile_file = dir.path().join("profile.toml");
    let with_profile = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env_remove("SLIPWAY_URL")
            .env_remove("SLIPWAY_TOKEN")
            .env("SLIPWAY_PROFILE", &profile_file)
            .output()
            .unwrap()
    };
    let out = with_profile(&["profile", "set", "--url", &gateway, "--token", &admin_token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_profile(&["runs", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    let shown = with_profile(&["profile", "show"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&gateway) && !shown.contains(&admin_token[12..]),
        "{shown}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&profile_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the profile is readable by its owner only"
        );
    }

    let out = slipway(&["runs", "--gateway", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "slipway dev exited with {status}");
    for file in ["slipway.sqlite", "envsim.sqlite"] {
        assert!(
            dir.path().join("state").join(file).exists(),
            "{file} is kept in --data-dir: {:?}",
            walk(dir.path())
        );
    }
    // A restart keeps the data and the tokens, and seeds nothing twice.
    let again = start_dev(dir.path(), &["--data-dir", "state"]).await;
    assert_eq!(again.admin_token, admin_token);
    let http = slipway_testkit::http_client_with_token(&admin_token).unwrap();
    let pipelines: Value = http
        .get(format!("{}/api/v1/pipelines", again.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pipelines.as_array().unwrap().len(), 1, "{pipelines}");
    let run: Value = http
        .get(format!("{}/api/v1/deployments/{id}", again.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded", "{run}");
    drop(again);

    let completions = slipway(&["completions", "bash"]);
    assert!(completions.status.success());
    assert!(String::from_utf8_lossy(&completions.stdout).contains("slipway"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// The demo solutions `slipway dev` embeds are what the testkit builds.
#[test]
fn embedded_demo_solutions_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/demo");
    for (name, bytes) in slipway_testkit::demo::demo_solutions() {
        let committed = std::fs::read(dir.join(name)).unwrap();
        assert!(
            committed == bytes,
            "{name} differs from slipway_testkit::demo; regenerate with `cargo run -p slipway-testkit --example demo_solutions -- crates/cli/src/demo`"
        );
    }
}
