//! What happens to runs after they are requested, through the real
//! `slipway` binary (see `support`): approvers approve, reject and complete
//! gates; makers supply the settings a run waits for, retry a failed run,
//! follow a run's import with `--wait`, download its artifact; admins
//! manage webhooks.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use slipway_envsim::config::Faults;
use support::{CONFIG_VARIABLE, Gateway, set_up, start};

/// An approver token for `alice`, with the Contoso pipeline shared with her.
async fn approver(gw: &Gateway) -> String {
    let created = gw.create_token("alice", "approver").await;
    gw.share("Contoso", "alice", &[]).await.ok();
    created["token"].as_str().unwrap().to_owned()
}

/// The maker deploys `solution` to the test stage (extra `args`), without
/// waiting; returns the run's id.
async fn deploy(gw: &Gateway, maker: &str, solution: &str, args: &[&str]) -> String {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let run = gw.deploy(maker, solution, "test", &all).await.json();
    run["id"].as_str().unwrap().to_owned()
}

/// As admin, changes the Contoso pipeline's test stage with `flags`.
async fn update_test_stage(gw: &Gateway, flags: &[&str]) {
    let mut args = vec!["admin", "stage", "update", "test", "--pipeline", "Contoso"];
    args.extend_from_slice(flags);
    gw.admin(&args).await.ok();
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_approve_reject_and_complete_gates() {
    let gw = start().await;
    let s = set_up(&gw).await;
    let alice = approver(&gw).await;
    update_test_stage(&gw, &["--approval-required"]).await;

    // A run waiting for approval is in the approver's inbox.
    let approved = deploy(&gw, &s.maker, "Contoso", &["--notes", "please"]).await;
    gw.wait_state(&s.maker, &approved, "awaiting_approval")
        .await;
    let inbox = gw
        .slipway(&alice, &["runs", "approvals", "-o", "json"])
        .await
        .json();
    assert_eq!(ids(&inbox), [approved.as_str()]);
    let text = gw.slipway(&alice, &["runs", "approvals"]).await;
    let out = text.ok();
    assert!(
        out.starts_with("ID") && out.contains(&approved) && out.contains("please"),
        "{out}"
    );
    let shown = gw.slipway(&s.maker, &["runs", "show", &approved]).await;
    assert!(
        shown.ok().contains(&format!(
            "waiting for an approver: `slipway runs approve {approved}`"
        )),
        "{}",
        shown.stdout
    );
    // A maker is no approver.
    let own = gw.slipway(&s.maker, &["runs", "approve", &approved]).await;
    let err = own.fails(1);
    assert!(err.contains("403") && err.contains("approver"), "{err}");
    let run = gw
        .slipway(
            &alice,
            &[
                "runs",
                "approve",
                &approved,
                "--comment",
                "checked",
                "-o",
                "json",
            ],
        )
        .await
        .json();
    assert_eq!(run["gates"]["approval"]["by"], "alice", "{run}");
    assert_eq!(run["gates"]["approval"]["passed"], true, "{run}");
    assert_eq!(run["gates"]["approval"]["comment"], "checked", "{run}");
    gw.wait_state(&s.maker, &approved, "succeeded").await;
    // Deciding again: the gateway's 409, in one line.
    let again = gw.slipway(&alice, &["runs", "approve", &approved]).await;
    assert!(again.fails(1).contains("409"), "{}", again.stderr);

    // Rejecting needs a comment; the run fails with it.
    let rejected = deploy(&gw, &s.maker, "Contoso", &["--new-version", "1.1.0.0"]).await;
    gw.wait_state(&s.maker, &rejected, "awaiting_approval")
        .await;
    gw.slipway(&alice, &["runs", "reject", &rejected])
        .await
        .fails(2);
    let out = gw
        .slipway(
            &alice,
            &["runs", "reject", &rejected, "--comment", "not this week"],
        )
        .await;
    assert!(out.ok().contains("rejected deployment"), "{}", out.stdout);
    let run = gw.wait_state(&s.maker, &rejected, "failed").await;
    assert!(
        run["reason"].as_str().unwrap().contains("not this week"),
        "{run}"
    );
    let empty = gw.slipway(&alice, &["runs", "approvals"]).await;
    assert!(
        empty.ok().contains("no deployment waits for your approval"),
        "{}",
        empty.stdout
    );

    // A pre-deployment gate, failed by an external system.
    update_test_stage(&gw, &["--approval-required=false", "--pre-deployment-gate"]).await;
    let gated = deploy(&gw, &s.maker, "Contoso", &["--new-version", "1.2.0.0"]).await;
    gw.wait_state(&s.maker, &gated, "awaiting_pre_deployment")
        .await;
    let run = gw
        .slipway(
            &alice,
            &[
                "runs",
                "gate",
                &gated,
                "pre-deployment",
                "--status",
                "failed",
                "--comment",
                "no change ticket",
                "-o",
                "json",
            ],
        )
        .await
        .json();
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["gates"]["pre_deployment"]["passed"], false, "{run}");

    // Ids: not a uuid is an argument mistake; an unknown one names where they are listed.
    let bad = gw.slipway(&alice, &["runs", "approve", "nope"]).await;
    assert!(
        bad.fails(2).contains("is not a deployment id"),
        "{}",
        bad.stderr
    );
    let unknown = gw
        .slipway(
            &alice,
            &["runs", "approve", "01a21c8b-dd04-709d-9f1e-a8b3ae2a5080"],
        )
        .await;
    let err = unknown.fails(1);
    assert!(
        err.contains("404") && err.contains("`slipway runs list`"),
        "{err}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_supplied_to_a_waiting_run_and_its_artifact_downloaded() {
    let gw = start().await;
    let s = set_up(&gw).await;

    // ContosoConfig's variable has no value: the run waits for settings.
    let id = deploy(&gw, &s.maker, "ContosoConfig", &[]).await;
    gw.wait_state(&s.maker, &id, "awaiting_settings").await;
    let shown = gw.slipway(&s.maker, &["runs", "show", &id]).await;
    let out = shown.ok();
    assert!(
        out.contains(&format!("`slipway runs settings {id} --settings FILE`"))
            && out.contains(&format!(
                "environment variable {CONFIG_VARIABLE}: needs a value"
            )),
        "{out}"
    );
    let dir = gw.dir.path();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let refused = gw
        .slipway(
            &s.maker,
            &["runs", "settings", &id, "--settings", bad.to_str().unwrap()],
        )
        .await;
    assert!(
        refused
            .fails(1)
            .contains("not a JSON deployment settings file"),
        "{}",
        refused.stderr
    );
    let settings = dir.join("settings.json");
    std::fs::write(
        &settings,
        format!(
            r#"{{"EnvironmentVariables": [{{"SchemaName": "{CONFIG_VARIABLE}", "Value": "https://api.contoso.com"}}], "ConnectionReferences": []}}"#
        ),
    )
    .unwrap();
    let supplied = gw
        .slipway(
            &s.maker,
            &[
                "runs",
                "settings",
                &id,
                "--settings",
                settings.to_str().unwrap(),
                "--wait",
            ],
        )
        .await;
    let out = supplied.ok();
    assert!(
        out.contains("settings supplied")
            && out.contains("-> validating")
            && out.contains("-> succeeded"),
        "{out}"
    );
    // Over: no settings to supply any more.
    let late = gw
        .slipway(
            &s.maker,
            &[
                "runs",
                "settings",
                &id,
                "--settings",
                settings.to_str().unwrap(),
            ],
        )
        .await;
    assert!(late.fails(1).contains("409"), "{}", late.stderr);

    // The managed zip, named as the gateway suggests, checked, not overwritten.
    let written = gw
        .slipway(&s.maker, &["artifacts", "download", &id, "-o", "json"])
        .await
        .json();
    assert_eq!(written["kind"], "managed", "{written}");
    let path = dir.join(written["path"].as_str().unwrap());
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "ContosoConfig_1_0_0_1_managed.zip"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(written["bytes"], bytes.len(), "{written}");
    assert_eq!(&bytes[..2], b"PK", "a zip");
    let solution =
        slipway_solution::Solution::from_bytes(&bytes, &slipway_solution::Limits::default())
            .unwrap();
    assert_eq!(solution.unique_name, "ContosoConfig");
    assert_eq!(solution.version.to_string(), "1.0.0.1");
    assert!(solution.managed);
    let again = gw.slipway(&s.maker, &["artifacts", "download", &id]).await;
    let err = again.fails(1);
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    let out = dir.join("unmanaged.zip");
    let text = gw
        .slipway(
            &s.maker,
            &[
                "artifacts",
                "download",
                &id,
                "--unmanaged",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .await;
    assert!(
        text.ok().contains("unmanaged.zip") && text.stdout.contains("version 1.0.0.1"),
        "{}",
        text.stdout
    );
    let unmanaged = slipway_solution::Solution::from_bytes(
        &std::fs::read(&out).unwrap(),
        &slipway_solution::Limits::default(),
    )
    .unwrap();
    assert_eq!(unmanaged.unique_name, "ContosoConfig");
    assert!(!unmanaged.managed);
    gw.slipway(
        &s.maker,
        &[
            "artifacts",
            "download",
            &id,
            "--managed",
            "--out",
            out.to_str().unwrap(),
            "--force",
        ],
    )
    .await
    .ok();
    let replaced = slipway_solution::Solution::from_bytes(
        &std::fs::read(&out).unwrap(),
        &slipway_solution::Limits::default(),
    )
    .unwrap();
    assert!(replaced.managed, "--force replaced the file");
    gw.slipway(
        &s.maker,
        &["artifacts", "download", &id, "--managed", "--unmanaged"],
    )
    .await
    .fails(2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_is_retried_and_wait_shows_the_import_running() {
    let gw = start().await;
    let s = set_up(&gw).await;

    // A slow import that fails: each step, the import's checks, the reason.
    gw.faults(
        "test",
        Faults {
            import_delay_ms: 1_500,
            fail_imports_with: Some("the disk is full".into()),
            ..Faults::default()
        },
    );
    let failed = gw.deploy(&s.maker, "Contoso", "test", &["--wait"]).await;
    let err = failed.fails(1).to_owned();
    assert!(
        err.contains("failed") && err.contains("the disk is full"),
        "{err}"
    );
    let out = &failed.stdout;
    for line in [
        "export succeeded",
        "validate succeeded",
        "-> importing",
        "import started",
        "import running (check 1",
        "import failed",
        "-> failed",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    // No terminal: no bar drawn on stderr, only the error.
    assert!(!failed.stderr.contains("importing  "), "{}", failed.stderr);
    let id = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("deployment "))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_owned();

    // The target is fixed: the run is retried as a new run, which succeeds.
    gw.faults(
        "test",
        Faults {
            import_delay_ms: 300,
            ..Faults::default()
        },
    );
    let retried = gw
        .slipway(&s.maker, &["runs", "retry", &id, "--wait", "-o", "json"])
        .await
        .json();
    assert_eq!(retried["state"], "succeeded", "{retried}");
    assert_ne!(retried["id"], id.as_str());
    assert_eq!(retried["deployment"]["solution_name"], "Contoso");
    // Only failed or canceled runs are retried.
    let again = gw
        .slipway(
            &s.maker,
            &["runs", "retry", retried["id"].as_str().unwrap()],
        )
        .await;
    let err = again.fails(1);
    assert!(err.contains("409") && err.contains("succeeded"), "{err}");

    // A validation that fails: a size limit only the exported file can be
    // checked against, so the run is accepted and the validator refuses it.
    let policies = gw.dir.path().join("tiny.json");
    std::fs::write(&policies, r#"{"max_artifact_bytes": 100}"#).unwrap();
    update_test_stage(&gw, &["--policies", policies.to_str().unwrap()]).await;
    let stale = gw.deploy(&s.maker, "Contoso", "test", &["--wait"]).await;
    let err = stale.fails(1);
    assert!(
        err.contains("over this stage's limit"),
        "stderr: {err}\nstdout: {}",
        stale.stdout
    );
    assert!(
        stale
            .stdout
            .contains("validation found:\n  - policy max_artifact_bytes: the solution file is"),
        "{}",
        stale.stdout
    );

    // A dry run validates and stops there.
    let dry = gw
        .deploy(&s.maker, "Contoso", "prod", &["--dry-run", "--wait"])
        .await;
    let out = dry.ok();
    assert!(
        out.contains("validate succeeded") && out.contains("-> succeeded"),
        "{out}"
    );
    assert!(!out.contains("import started"), "{out}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_list_and_delete_webhooks() {
    let gw = start().await;
    let s = set_up(&gw).await;

    let empty = gw.admin(&["admin", "webhook", "list"]).await;
    assert!(empty.ok().contains("no webhooks yet"), "{}", empty.stdout);
    let hook = gw
        .admin(&[
            "admin",
            "webhook",
            "create",
            "--url",
            "http://127.0.0.1:9/hooks/slipway",
            "--pipeline",
            "Contoso",
            "--event",
            "ondeploymentcompleted",
            "--event",
            "OnDeploymentRequested",
            "--secret-ref",
            "env:SLIPWAY_TEST_HOOK_SECRET",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(hook["pipeline_id"], s.pipeline_id.as_str(), "{hook}");
    assert_eq!(
        hook["events"],
        serde_json::json!(["OnDeploymentRequested", "OnDeploymentCompleted"])
    );
    assert_eq!(hook["secret_ref"], "env:SLIPWAY_TEST_HOOK_SECRET");
    let id = hook["id"].as_str().unwrap().to_owned();
    let every = gw
        .admin(&[
            "admin",
            "webhook",
            "create",
            "--url",
            "https://hooks.example.com/all",
            "--secret-ref",
            "file:/run/secrets/hook",
        ])
        .await;
    assert!(
        every.ok().contains("for all events (every pipeline)"),
        "{}",
        every.stdout
    );
    let listed = gw
        .admin(&["admin", "webhook", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let table = gw.admin(&["admin", "webhook", "list"]).await;
    let out = table.ok();
    assert!(
        out.starts_with("ID")
            && out.contains("http://127.0.0.1:9/hooks/slipway")
            && out.contains("OnDeploymentRequested, OnDeploymentCompleted"),
        "{out}"
    );
    let none = gw.admin(&["admin", "webhook", "deliveries", &id]).await;
    assert!(none.ok().contains("no deliveries yet"), "{}", none.stdout);

    // Mistakes: a bad event is an argument error; a bad URL the gateway's 422.
    gw.admin(&[
        "admin",
        "webhook",
        "create",
        "--url",
        "https://hooks.example.com",
        "--event",
        "OnDeployed",
        "--secret-ref",
        "env:X",
    ])
    .await
    .fails(2);
    let bad = gw
        .admin(&[
            "admin",
            "webhook",
            "create",
            "--url",
            "http://hooks.example.com/plain",
            "--secret-ref",
            "env:X",
        ])
        .await;
    let err = bad.fails(1);
    assert!(err.contains("422") && err.contains("https"), "{err}");
    let maker = gw.slipway(&s.maker, &["admin", "webhook", "list"]).await;
    assert!(maker.fails(1).contains("403"), "{}", maker.stderr);

    // A run raises OnDeploymentRequested: a delivery (to nobody listening).
    gw.deploy(&s.maker, "Contoso", "test", &[]).await.ok();
    let deliveries = gw
        .admin(&["admin", "webhook", "deliveries", &id, "-o", "json"])
        .await
        .json();
    assert!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["event"] == "OnDeploymentRequested"),
        "{deliveries}"
    );

    // Deleted by URL, then by id; a second time it is unknown.
    let gone = gw
        .admin(&[
            "admin",
            "webhook",
            "delete",
            "https://hooks.example.com/all",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(gone["url"], "https://hooks.example.com/all");
    let deleted = gw.admin(&["admin", "webhook", "delete", &id]).await;
    assert!(
        deleted.ok().contains("deleted webhook"),
        "{}",
        deleted.stdout
    );
    let left = gw
        .admin(&["admin", "webhook", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(left, Value::Array(vec![]));
    let unknown = gw.admin(&["admin", "webhook", "delete", &id]).await;
    let err = unknown.fails(1);
    assert!(
        err.contains("no webhook") && err.contains("slipway admin webhook list"),
        "{err}"
    );
    gw.stop().await;
}
