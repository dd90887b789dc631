//! The real `slipway` binary against a gateway started in this process
//! (see `support`): an admin sets up environments, a pipeline and its
//! stages, shares it with a maker whose token it creates; the maker lists
//! it and deploys through its stages; errors are one line naming the fix.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::{names, set_up, start};

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
    let early = gw.deploy(&s.maker, "Contoso", "prod", &["--wait"]).await;
    let err = early.fails(1);
    assert!(err.contains("409") && err.contains("stage test"), "{err}");
    // Deploying by stage name: the pipeline's only source, the stage's only target.
    let mut run_ids = Vec::new();
    for (stage, stage_id, target) in [
        ("test", &s.test_stage, "test"),
        ("prod", &s.prod_stage, "prod"),
    ] {
        let run = gw
            .deploy(
                &s.maker,
                "Contoso",
                stage,
                &["--notes", "from the CLI", "--wait", "-o", "json"],
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
        .deploy(
            &s.maker,
            "Contoso",
            &s.test_stage,
            &["--from", "dev", "--new-version", "1.1.0.0", "--wait"],
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
        .deploy(
            &s.maker,
            "Contoso",
            "test",
            &[
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

    let unknown = gw.deploy(&s.maker, "Contoso", "uat", &[]).await;
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
    gw.share("Fabrikam", "maker", &[]).await.ok();
    let ambiguous = gw.deploy(&s.maker, "Contoso", "test", &[]).await;
    let err = ambiguous.fails(1);
    assert!(
        err.contains("several pipelines")
            && err.contains("Contoso")
            && err.contains("Fabrikam")
            && err.contains("--pipeline"),
        "{err}"
    );
    let chosen = gw
        .deploy(
            &s.maker,
            "Contoso",
            "test",
            &["--pipeline", "Fabrikam", "-o", "json"],
        )
        .await
        .json();
    assert_eq!(
        chosen["deployment"]["target_environment"], "uat",
        "{chosen}"
    );
    // A source the pipeline does not deploy from: the gateway's 422, and the flag.
    let wrong = gw
        .deploy(&s.maker, "Contoso", "prod", &["--from", "test"])
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
        .deploy(&s.maker, "C", "test", &["--pipeline", "Fabrikam"])
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
