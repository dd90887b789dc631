//! `slipway deploy` through the real binary (see `support`): the version
//! the maker saw in the source (`--current-version`), and stages with
//! several targets (one run each, `--wait` on all of them, `--target`).
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use slipway_envsim::config::Faults;
use support::{Gateway, set_up, start};

/// The version of Contoso in the simulator's dev now.
async fn dev_version(gw: &Gateway) -> String {
    let client = slipway_dataverse::Client::new(slipway_dataverse::ClientConfig::new(
        gw.env_url("dev"),
        slipway_dataverse::Credentials::StaticToken(support::SIM_TOKEN.into()),
    ))
    .unwrap();
    client.solution("Contoso").await.unwrap().unwrap().version
}

async fn run_count(gw: &Gateway) -> usize {
    gw.admin(&["runs", "list", "-o", "json"])
        .await
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_version_must_match_the_source() {
    let gw = start().await;
    let s = set_up(&gw).await;
    // `--current-version <current>`, with `--wait -o json` when `wait`.
    let current = |current: &'static str, wait: bool| {
        let mut args = vec!["--current-version", current];
        if wait {
            args.extend(["--wait", "-o", "json"]);
        }
        args
    };

    // Dev has 1.0.0.0: another version is refused before anything starts.
    let out = gw
        .deploy(&s.maker, "Contoso", "test", &current("1.0.0.1", false))
        .await;
    let error = out.fails(1);
    assert!(
        error.contains("solution Contoso has version 1.0.0.0 in dev, not 1.0.0.1")
            && error.contains("--current-version 1.0.0.0"),
        "{error}"
    );
    assert_eq!(run_count(&gw).await, 0, "nothing was submitted");
    let out = gw
        .deploy(&s.maker, "Contoso", "test", &current("one", false))
        .await;
    assert!(out.fails(2).contains("not a solution version"), "{out:?}");

    // The matching version deploys; the export moves dev on to 1.0.0.1.
    let run = gw
        .deploy(&s.maker, "Contoso", "test", &current("1.0.0.0", true))
        .await
        .json();
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["artifact"]["version"], "1.0.0.1");
    assert_eq!(run["source_version"], "1.0.0.0", "{run:#}");
    assert_eq!(dev_version(&gw).await, "1.0.0.1");
    let shown = gw
        .slipway(&s.maker, &["runs", "show", run["id"].as_str().unwrap()])
        .await;
    assert!(
        shown
            .ok()
            .contains("source: dev had version 1.0.0.0 before the export"),
        "{}",
        shown.stdout
    );

    // So what the maker saw before is stale now.
    let error = gw
        .deploy(&s.maker, "Contoso", "test", &current("1.0.0.0", false))
        .await
        .fails(1)
        .to_owned();
    assert!(
        error.contains("has version 1.0.0.1 in dev, not 1.0.0.0"),
        "{error}"
    );
    // The same version written shorter still matches.
    let out = gw
        .deploy(&s.maker, "Contoso", "test", &current("1.0.0.1", true))
        .await
        .json();
    assert_eq!(out["artifact"]["version"], "1.0.0.2", "{out:#}");
    assert_eq!(out["source_version"], "1.0.0.1");
    gw.stop().await;
}

/// Pipeline Fan from dev, shared with the maker, whose first stage `both`
/// deploys to test and prod.
async fn two_target_stage(gw: &Gateway) -> String {
    let s = set_up(gw).await;
    gw.admin(&[
        "admin", "pipeline", "create", "--name", "Fan", "--source", "dev",
    ])
    .await
    .ok();
    gw.share("Fan", "maker", &[]).await.ok();
    let stage = gw
        .admin(&[
            "admin",
            "stage",
            "add",
            "--pipeline",
            "Fan",
            "--name",
            "both",
            "--target",
            "test",
            "--target",
            "prod",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(support::names(&stage["targets"]).len(), 2, "{stage}");
    s.maker
}

fn targets(runs: &Value) -> Vec<&str> {
    let mut t: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deployment"]["target_environment"].as_str().unwrap())
        .collect();
    t.sort_unstable();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_with_two_targets_deploys_and_waits_for_both() {
    let gw = start().await;
    let maker = two_target_stage(&gw).await;
    let deploy = |extra: &'static [&'static str]| gw.deploy(&maker, "Contoso", "both", extra);

    // --wait -o json: every run, each to its end, all with one version.
    let runs = deploy(&["--wait", "-o", "json"]).await.json();
    assert_eq!(targets(&runs), ["prod", "test"], "{runs:#}");
    for run in runs.as_array().unwrap() {
        assert_eq!(run["state"], "succeeded", "{run:#}");
        assert_eq!(run["artifact"]["version"], "1.0.0.1", "{run:#}");
        assert!(run.get("fan_out").is_none());
    }
    assert_eq!(dev_version(&gw).await, "1.0.0.1");

    // --target picks one: one run, as a plain deployment.
    let one = deploy(&["--target", "test", "--wait", "-o", "json"])
        .await
        .json();
    assert_eq!(one["deployment"]["target_environment"], "test", "{one:#}");
    assert_eq!(one["state"], "succeeded");
    assert_eq!(one["artifact"]["version"], "1.0.0.2");
    let error = deploy(&["--target", "qa"]).await.fails(1).to_owned();
    assert!(error.contains("not to qa"), "{error}");

    // One target failing fails the wait, naming it and why.
    gw.faults(
        "prod",
        Faults {
            fail_imports_with: Some("prod is frozen".into()),
            ..Faults::default()
        },
    );
    let out = deploy(&["--wait"]).await;
    let error = out.fails(1).to_owned();
    assert!(
        error.contains("1 of 2 deployments did not succeed: prod failed")
            && error.contains("prod is frozen"),
        "{error}"
    );
    assert!(!error.contains("test failed"), "{error}");
    assert!(
        out.stdout.contains("to 2 targets") && out.stdout.contains("to test:"),
        "{}",
        out.stdout
    );

    // Without --wait: one line per run, its id and target.
    gw.faults("prod", Faults::default());
    let out = deploy(&[]).await;
    let stdout = out.ok().to_owned();
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let mut listed: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let mut words = l.split_whitespace();
            (words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    listed.sort_unstable_by_key(|(_, target)| *target);
    assert_eq!(listed[0].1, "prod");
    assert_eq!(listed[1].1, "test");
    for (id, _) in listed {
        let run = gw.wait_state(&maker, id, "succeeded").await;
        assert_eq!(run["artifact"]["version"], "1.0.0.4", "{run:#}");
    }
    gw.stop().await;
}
