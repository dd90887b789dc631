//! `slipway dev`, the README's first command, runs the whole pipeline and
//! the environment simulator in one process and stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Starts `slipway dev` with `extra` arguments in `dir`; returns the child,
/// the gateway's URL and the simulated test environment's URL.
async fn start_dev(
    dir: &std::path::Path,
    extra: &[&str],
) -> (tokio::process::Child, String, String) {
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
    while gateway.is_none() || test_env.is_none() {
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
    }
    // Keep reading, so slipway dev never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, gateway.unwrap(), test_env.unwrap())
}

/// `--amqp` and `--database-url` run the same on RabbitMQ and PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn slipway_dev_runs_on_rabbitmq_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let vhost = slipway_testkit::rabbit::fresh_vhost().await.unwrap();
    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    let (mut child, gateway, _) = start_dev(
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
    let (mut child, gateway, test_env) = start_dev(dir.path(), &["--data-dir", "state"]).await;
    let http = slipway_testkit::http_client().unwrap();

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
    let out = with_profile(&[
        "profile",
        "set",
        "--url",
        &gateway,
        "--token",
        "s3cret-t0ken",
    ]);
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
        shown.contains(&gateway) && !shown.contains("s3cret"),
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
