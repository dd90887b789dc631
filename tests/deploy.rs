//! Real deployments end to end: the gateway and the three workers, each its
//! own OS process, against real RabbitMQ and PostgreSQL, the environment
//! simulator (started in this process, reached over real HTTP) and solutions
//! built like real exports (publisher, tables, connection references,
//! dependencies on components a target lacks).
//!
//! Everything is done the way people do it: an admin registers the
//! environments and builds the pipelines through the API, a maker with a
//! token of their own deploys through it, an approver decides. What the
//! target ends up with is read back from the simulator with the Dataverse
//! client, never taken from Slipway's word.
//!
//! Each end-to-end test function starts one cluster and one simulator and
//! runs its independent scenarios side by side (each with its own solution,
//! pipeline and, where it counts imports, its own target environment). The
//! last two tests talk to the simulator alone: they pin down what it does
//! to an import whose caller (a killed importer) vanished mid-request.
#![allow(clippy::unwrap_used)]

mod e2e;
mod world;

use std::time::{Duration, Instant};

use e2e::{OUTLOOK, SHAREPOINT, id_of, send, solution};
use serde_json::json;
use sha2::Digest as _;
use slipway_envsim::{Config, DataLocation, EnvSim, Faults, Running};
use slipway_testkit::solution_zip::DepEnd;
use slipway_tests::events;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use world::*;

// ------------------------------------------------------------------ scenarios

/// Test first, then Prod: the version is bumped once, the artifact is
/// exported once and reused, the download is the artifact. Prod before Test
/// succeeded is refused.
async fn test_then_prod_reusing_the_artifact(w: &World) {
    let name = "ContosoCore";
    w.install_in_dev(&solution(name, "core")).await;
    let pipe = w
        .pipeline("Core", &[("Test", "test"), ("Prod", "prod")], false)
        .await;

    // Prod before Test succeeded: refused, naming the Test stage.
    let (status, refused) = w.deploy(&w.maker, request(&pipe, 1, name, json!({}))).await;
    assert_eq!(status, 409, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("stage Test") && error.contains(name),
        "{refused}"
    );

    // Test: no version given, so the installed 1.0.0.0 becomes 1.0.0.1.
    let to_test = w
        .submit(&pipe, 0, name, json!({"notes": "first drop"}))
        .await;
    let run = w.wait_end(to_test, "succeeded").await;
    assert_eq!(run["artifact"]["version"], "1.0.0.1", "{run:#}");
    assert_eq!(run["validation"]["verdict"], "passed", "{run:#}");
    let managed = run["artifact"]["managed_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let unmanaged = run["artifact"]["unmanaged_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let installed = w.installed("test", name).await.expect("installed in test");
    assert_eq!(installed.version, "1.0.0.1");
    assert!(installed.is_managed, "pipelines import the managed file");
    let history = w.history(to_test).await;
    for step in ["export", "validate", "import"] {
        assert_eq!(
            events(&history, step, "succeeded").len(),
            1,
            "{step} once: {history:#?}"
        );
    }
    // Dev moved on to the exported version; the run keeps what it had.
    let dev = w.installed("dev", name).await.unwrap();
    assert_eq!((dev.version.as_str(), dev.is_managed), ("1.0.0.1", false));
    assert_eq!(run["source_version"], "1.0.0.0", "{run:#}");

    // Prod with a version that never succeeded in Test: refused too.
    let (status, refused) = w
        .deploy(
            &w.maker,
            request(&pipe, 1, name, json!({"version": "1.0.0.9"})),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("1.0.0.9"),
        "{refused}"
    );

    // Prod without a version: the version that succeeded in Test, same artifact.
    let to_prod = w.submit(&pipe, 1, name, json!({})).await;
    let run = w.wait_end(to_prod, "succeeded").await;
    assert_eq!(run["artifact"]["managed_sha256"], managed.as_str());
    assert_eq!(run["artifact"]["version"], "1.0.0.1");
    let history = w.history(to_prod).await;
    assert!(
        history.iter().all(|e| e["step"] != "export"),
        "Prod reuses the artifact, it never exports: {history:#?}"
    );
    assert_eq!(events(&history, "import", "succeeded").len(), 1);
    // How environments are reached stays with the workers.
    for shown in [run.to_string(), json!(history).to_string()] {
        assert!(
            !shown.contains(SIM_TOKEN) && !shown.contains("token_ref"),
            "credentials leak into the API: {shown}"
        );
    }
    let installed = w.installed("prod", name).await.expect("installed in prod");
    assert_eq!(
        (installed.version.as_str(), installed.is_managed),
        ("1.0.0.1", true)
    );

    // The download is the artifact, byte for byte.
    for (kind, sha, managed) in [
        ("managed", &managed, true),
        ("unmanaged", &unmanaged, false),
    ] {
        let response = w
            .maker
            .http
            .get(w.url(&format!(
                "/api/v1/deployments/{to_test}/artifact?kind={kind}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/zip");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), sha, "{kind}");
        let parsed =
            slipway_solution::Solution::from_bytes(&bytes, &slipway_solution::Limits::default())
                .unwrap();
        assert_eq!(parsed.unique_name, name);
        assert_eq!(parsed.version.to_string(), "1.0.0.1");
        assert_eq!(parsed.managed, managed, "{kind}");
    }
}

/// Two deployments without a version to the same stage: the first export
/// moves dev on to its version, so the second bumps from there (1.0.0.1,
/// then 1.0.0.2) instead of repeating a version the target refuses.
async fn deploying_again_without_a_version_bumps_again(w: &World) {
    let name = "Again";
    w.install_in_dev(&solution(name, "agn")).await;
    let pipe = w.pipeline("Again", &[("Test", "test")], false).await;
    for (version, before) in [("1.0.0.1", "1.0.0.0"), ("1.0.0.2", "1.0.0.1")] {
        let id = w.submit(&pipe, 0, name, json!({})).await;
        let run = w.wait_end(id, "succeeded").await;
        assert_eq!(run["artifact"]["version"], version, "{run:#}");
        assert_eq!(run["source_version"], before, "{run:#}");
        assert_eq!(w.installed("test", name).await.unwrap().version, version);
        assert_eq!(w.installed("dev", name).await.unwrap().version, version);
    }
}

/// A solution needing a table the target lacks fails validation with the list.
async fn missing_dependencies_fail_validation(w: &World) {
    // dev has the table (from another solution); test does not.
    w.install_in_dev(&solution("DepsBase", "depb").root_component(1, "depb_account"))
        .await;
    let app = solution("DepsApp", "depa").missing_dependency(
        DepEnd::new("1", "depb_account")
            .display_name("Customer Account")
            .solution("DepsBase (1.0.0.0)"),
        DepEnd::new("1", "depa_record").display_name("Record"),
    );
    w.install_in_dev(&app).await;
    let pipe = w.pipeline("Deps", &[("Test", "test")], false).await;
    let id = w.submit(&pipe, 0, "DepsApp", json!({})).await;
    let run = w.wait_end(id, "failed").await;
    let missing = run["validation"]["missing_dependencies"]
        .as_array()
        .unwrap();
    assert!(!missing.is_empty(), "{run:#}");
    assert_eq!(missing[0]["required"], "Customer Account", "{run:#}");
    assert_eq!(missing[0]["required_by"], "Record", "{run:#}");
    assert_eq!(run["validation"]["verdict"], "failed");
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("missing dependency") && reason.contains("Customer Account"),
        "the reason names what is missing: {reason}"
    );
    assert!(events(&w.history(id).await, "import", "started").is_empty());
    assert!(w.installed("test", "DepsApp").await.is_none());
}

/// A connection reference without a connection waits for settings with the
/// right candidates; the maker picks one and the run goes on to success.
async fn missing_connection_is_supplied_as_settings(w: &World) {
    let name = "FlowApp";
    w.install_in_dev(&solution(name, "flw").connection_reference_named(
        "flw_outlook",
        "Outlook",
        OUTLOOK,
    ))
    .await;
    let pipe = w.pipeline("Flows", &[("Test", "test")], false).await;
    let id = w.submit(&pipe, 0, name, json!({})).await;
    let run = w.wait_for(id, "awaiting_settings").await;
    let refs = run["validation"]["connection_references"]
        .as_array()
        .unwrap();
    assert_eq!(refs.len(), 1, "{run:#}");
    assert_eq!(refs[0]["logical_name"], "flw_outlook");
    assert!(refs[0]["problem"].is_string(), "{run:#}");
    let candidates: Vec<&str> = refs[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(candidates, ["test-office365"], "only Outlook connections");
    assert_eq!(run["validation"]["verdict"], "needs_settings");

    let settings = json!({
        "EnvironmentVariables": [],
        "ConnectionReferences": [
            {"LogicalName": "flw_outlook", "ConnectionId": candidates[0], "ConnectorId": OUTLOOK}
        ],
    });
    let (status, run) = send(
        w.maker
            .http
            .put(w.url(&format!("/api/v1/deployments/{id}/settings")))
            .json(&json!({"settings": settings})),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "validating", "{run}");
    let run = w.wait_end(id, "succeeded").await;
    assert_eq!(
        run["validation"]["connection_references"][0]["connection_id"],
        "test-office365"
    );
    let bound = w.dataverse("test").connection_references().await.unwrap();
    let reference = bound
        .iter()
        .find(|r| r.logical_name == "flw_outlook")
        .expect("the reference exists in test");
    assert_eq!(reference.connection_id.as_deref(), Some("test-office365"));
    let states = transitions(&w.history(id).await);
    let waited = states
        .iter()
        .position(|s| s == "awaiting_settings")
        .unwrap();
    assert_eq!(
        states.get(waited + 1).map(String::as_str),
        Some("validating"),
        "{states:?}"
    );
}

/// A connection of another connector is refused by name, before importing;
/// the run waits for settings and can be canceled there.
async fn wrong_connector_names_both(w: &World) {
    let name = "WrongConn";
    w.install_in_dev(&solution(name, "wrg").connection_reference_named(
        "wrg_outlook",
        "Outlook",
        OUTLOOK,
    ))
    .await;
    let pipe = w.pipeline("Wrong", &[("Test", "test")], false).await;
    let settings = json!({"ConnectionReferences": [
        {"LogicalName": "wrg_outlook", "ConnectionId": "test-teams", "ConnectorId": OUTLOOK}
    ]});
    let id = w
        .submit(&pipe, 0, name, json!({"settings": settings}))
        .await;
    let run = w.wait_for(id, "awaiting_settings").await;
    let check = &run["validation"]["connection_references"][0];
    let problem = check["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("shared_teams") && problem.contains("shared_office365"),
        "the problem names both connectors: {check:#}"
    );
    assert_eq!(check["candidates"][0]["id"], "test-office365", "{check:#}");
    let (status, canceled) = w
        .act(
            &w.maker,
            id,
            "cancel",
            Some(json!({"reason": "wrong connection"})),
        )
        .await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["state"], "canceled");
    assert!(events(&w.history(id).await, "import", "started").is_empty());
    assert!(w.installed("test", name).await.is_none());
}

/// Approval on Prod: waiting runs show in the approver's inbox; nobody
/// approves their own; an approver approves one (imported), rejects one
/// (failed with the comment); a canceled one is never imported.
async fn approvals_gate_prod(w: &World) {
    let name = "Gated";
    w.install_in_dev(&solution(name, "gtd")).await;
    let pipe = w
        .pipeline("Gated", &[("Test", "test"), ("Prod", "approvals")], false)
        .await;
    let first = w.submit(&pipe, 0, name, json!({})).await;
    w.wait_end(first, "succeeded").await;

    let mut prod = pipe.stage_bodies[1].clone();
    prod["approval_required"] = json!(true);
    let (status, stage) = w.update_stage(&pipe, 1, &prod).await;
    assert_eq!(status, 200, "{stage}");
    assert_eq!(stage["approval_required"], true, "{stage}");

    // A lead who both makes and approves, to show nobody approves their own.
    let lead = w.actor("e2e-lead", &["maker", "approver"]).await;
    w.share(pipe.id, &lead.subject).await;

    let approved = w
        .submit(&pipe, 1, name, json!({"notes": "release 1"}))
        .await;
    let rejected = w.submit_as(&lead, &pipe, 1, name, json!({})).await;
    let canceled = w.submit(&pipe, 1, name, json!({})).await;
    for id in [approved, rejected, canceled] {
        let run = w.wait_for(id, "awaiting_approval").await;
        assert_eq!(run["gates"]["approval_required"], true);
        assert_eq!(run["validation"]["verdict"], "passed");
    }

    let (status, inbox) = send(w.approver.http.get(w.url("/api/v1/approvals"))).await;
    assert_eq!(status, 200, "{inbox}");
    let waiting: Vec<Uuid> = inbox.as_array().unwrap().iter().map(id_of).collect();
    for id in [approved, rejected, canceled] {
        assert!(waiting.contains(&id), "{id} not in the inbox {inbox:#}");
    }
    // An approver the pipeline is not shared with sees none of them.
    let outsider = w.actor("e2e-outsider", &["approver"]).await;
    let (status, inbox) = send(outsider.http.get(w.url("/api/v1/approvals"))).await;
    assert_eq!(status, 200, "{inbox}");
    let theirs: Vec<Uuid> = inbox.as_array().unwrap().iter().map(id_of).collect();
    for id in [approved, rejected, canceled] {
        assert!(!theirs.contains(&id), "{id} is not theirs: {inbox:#}");
    }
    let (status, body) = w.act(&outsider, approved, "approve", None).await;
    assert_eq!(status, 404, "not shared, not visible: {body}");

    let (status, body) = w.act(&w.maker, approved, "approve", None).await;
    assert_eq!(status, 403, "a maker cannot approve: {body}");
    let (status, body) = w.act(&lead, rejected, "approve", None).await;
    assert_eq!(status, 403, "no self-approval: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("another approver"),
        "{body}"
    );

    let (status, body) = w.act(&w.maker, canceled, "cancel", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "canceled");
    let (status, body) = w.act(&w.approver, canceled, "approve", None).await;
    assert_eq!(status, 409, "a canceled run cannot be approved: {body}");
    assert!(
        w.installed("approvals", name).await.is_none(),
        "nothing imported yet"
    );

    let comment = "not during the quarter close";
    let (status, body) = w
        .act(
            &w.approver,
            rejected,
            "reject",
            Some(json!({"comment": comment})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = w.wait_end(rejected, "failed").await;
    assert!(run["reason"].as_str().unwrap().contains(comment), "{run:#}");
    assert_eq!(run["gates"]["approval"]["passed"], false);

    let (status, body) = w
        .act(
            &w.approver,
            approved,
            "approve",
            Some(json!({"comment": "go"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = w.wait_end(approved, "succeeded").await;
    assert_eq!(run["gates"]["approval"]["by"], w.approver.subject.as_str());
    let installed = w.installed("approvals", name).await.unwrap();
    assert_eq!(installed.version, "1.0.0.1");
    assert_eq!(
        w.operations("approvals").await.len(),
        1,
        "only the approved run imported"
    );
    for id in [rejected, canceled] {
        assert!(
            events(&w.history(id).await, "import", "started").is_empty(),
            "run {id} must not import"
        );
    }
    let (_, inbox) = send(w.approver.http.get(w.url("/api/v1/approvals"))).await;
    let waiting: Vec<Uuid> = inbox.as_array().unwrap().iter().map(id_of).collect();
    for id in [approved, rejected, canceled] {
        assert!(!waiting.contains(&id), "{id} is decided: {inbox:#}");
    }
}

/// A pre-deployment gate completed by an external system's callback:
/// status 20 lets the import go, status 30 fails the run with the comment.
async fn pre_deployment_gate_callbacks(w: &World) {
    let name = "Cab";
    w.install_in_dev(&solution(name, "cab")).await;
    let pipe = w.pipeline("Change board", &[("Test", "test")], false).await;
    let mut stage = pipe.stage_bodies[0].clone();
    stage["pre_deployment_gate"] = json!(true);
    let (status, body) = w.update_stage(&pipe, 0, &stage).await;
    assert_eq!(status, 200, "{body}");
    let passed = w.submit(&pipe, 0, name, json!({})).await;
    let stopped = w.submit(&pipe, 0, name, json!({})).await;
    for id in [passed, stopped] {
        w.wait_for(id, "awaiting_pre_deployment").await;
    }
    assert!(
        w.installed("test", name).await.is_none(),
        "held before the gate"
    );
    let (status, body) = w
        .act(
            &w.approver,
            stopped,
            "gates/pre_deployment",
            Some(json!({"status": 30, "comment": "change freeze"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = w.wait_end(stopped, "failed").await;
    assert!(
        run["reason"].as_str().unwrap().contains("change freeze"),
        "{run:#}"
    );
    let (status, body) = w
        .act(
            &w.approver,
            passed,
            "gates/pre_deployment",
            Some(json!({"status": 20})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    w.wait_end(passed, "succeeded").await;
    assert_eq!(w.installed("test", name).await.unwrap().version, "1.0.0.1");
    assert!(events(&w.history(stopped).await, "import", "started").is_empty());
}

/// A version not higher than the target's is refused at once; with
/// redeploying older versions allowed, an earlier artifact is accepted and
/// reused, and the environment itself refuses the managed downgrade when the
/// validator stages it; the installed version again is accepted and imported.
async fn version_rule_and_redeploying_older(w: &World) {
    let name = "Versioned";
    w.install_in_dev(&solution(name, "ver")).await;
    let pipe = w.pipeline("Versions", &[("Test", "test")], false).await;
    let first = w.submit(&pipe, 0, name, json!({})).await;
    let first_run = w.wait_end(first, "succeeded").await;
    assert_eq!(first_run["artifact"]["version"], "1.0.0.1");
    let newer = w
        .submit(&pipe, 0, name, json!({"version": "1.0.0.5"}))
        .await;
    w.wait_end(newer, "succeeded").await;
    assert_eq!(w.installed("test", name).await.unwrap().version, "1.0.0.5");

    for older in ["1.0.0.1", "1.0.0.5"] {
        let (status, refused) = w
            .deploy(&w.maker, request(&pipe, 0, name, json!({"version": older})))
            .await;
        assert_eq!(status, 422, "{older}: {refused}");
        assert_eq!(refused["fields"][0]["field"], "version", "{refused}");
        assert!(
            refused["fields"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("1.0.0.5"),
            "{refused}"
        );
    }

    let (status, patched) = send(
        w.cluster
            .http
            .patch(w.url(&format!("/api/v1/pipelines/{}", pipe.id)))
            .json(&json!({"allow_redeploy_older": true})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");

    // The earlier artifact: accepted and reused (no export); the version
    // rule no longer stops it, but the environment does: staging it (as the
    // validator does) is refused like the import would be, because a
    // managed solution never goes down a version. The run fails before
    // importing, with the environment's words.
    let back = w
        .submit(&pipe, 0, name, json!({"version": "1.0.0.1"}))
        .await;
    let run = w.wait_end(back, "failed").await;
    assert_eq!(
        run["artifact"]["managed_sha256"], first_run["artifact"]["managed_sha256"],
        "the stored 1.0.0.1 artifact is reused"
    );
    assert_eq!(run["deployment"]["allow_older_version"], true);
    assert!(run["validation"]["version_problem"].is_null(), "{run:#}");
    assert_eq!(run["validation"]["verdict"], "failed", "{run:#}");
    let refusal = "is lower than the installed version (1.0.0.5)";
    assert!(
        run["validation"]["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains(refusal),
        "{run:#}"
    );
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("test refused the solution") && reason.contains(refusal),
        "{reason}"
    );
    let history = w.history(back).await;
    assert!(
        history
            .iter()
            .all(|e| e["step"] != "export" && e["step"] != "import"),
        "{history:#?}"
    );
    assert_eq!(w.installed("test", name).await.unwrap().version, "1.0.0.5");

    // The installed version again is a redeployment: accepted and imported.
    let again = w
        .submit(&pipe, 0, name, json!({"version": "1.0.0.5"}))
        .await;
    let run = w.wait_end(again, "succeeded").await;
    assert_eq!(run["validation"]["installed_version"], "1.0.0.5");
}

/// An import the environment fails ends the run failed with its words.
async fn import_failure_in_the_environment(w: &World) {
    let message = "Solution import failed: the organization is in administration mode";
    w.set_faults(
        "uat",
        &Faults {
            fail_imports_with: Some(message.into()),
            ..Faults::default()
        },
    )
    .await;
    let name = "Breaks";
    w.install_in_dev(&solution(name, "brk")).await;
    let pipe = w.pipeline("Broken", &[("UAT", "uat")], false).await;
    let id = w.submit(&pipe, 0, name, json!({})).await;
    let run = w.wait_end(id, "failed").await;
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains(message) && reason.contains("uat"),
        "the environment's message: {reason}"
    );
    assert_eq!(run["validation"]["verdict"], "passed");
    assert!(w.installed("uat", name).await.is_none());
    let operations = w.operations("uat").await;
    assert_eq!(operations.len(), 1, "{operations:#?}");
    assert_eq!(operations[0]["statuscode"], 31, "failed: {operations:#?}");

    // The environment is fixed; the maker retries: a new run of the same
    // artifact (no export), imported this time.
    w.set_faults("uat", &Faults::default()).await;
    let (status, retried) = w.act(&w.maker, id, "retry", None).await;
    assert_eq!(status, 202, "{retried}");
    let again = id_of(&retried);
    assert_ne!(again, id);
    let rerun = w.wait_end(again, "succeeded").await;
    assert_eq!(rerun["artifact"], run["artifact"], "the same artifact");
    let history = w.history(again).await;
    assert!(
        history.iter().all(|e| e["step"] != "export"),
        "{history:#?}"
    );
    assert_eq!(w.installed("uat", name).await.unwrap().version, "1.0.0.1");
    assert_eq!(w.operations("uat").await.len(), 2);
}

/// A dry run validates and stops: nothing reaches the target.
async fn dry_run_validates_only(w: &World) {
    let name = "DryRun";
    w.install_in_dev(&solution(name, "dry")).await;
    let pipe = w.pipeline("Dry", &[("Test", "test")], false).await;
    let id = w.submit(&pipe, 0, name, json!({"dry_run": true})).await;
    let run = w.wait_end(id, "succeeded").await;
    assert_eq!(run["gates"]["dry_run"], true);
    assert_eq!(run["validation"]["verdict"], "passed", "{run:#}");
    let history = w.history(id).await;
    assert_eq!(events(&history, "validate", "succeeded").len(), 1);
    assert!(
        history.iter().all(|e| e["step"] != "import"),
        "a dry run never imports: {history:#?}"
    );
    assert!(w.installed("test", name).await.is_none(), "test unchanged");
}

/// A run scheduled a few seconds ahead waits in `scheduled`, then imports.
async fn scheduled_import_waits_for_its_time(w: &World) {
    let name = "Scheduled";
    w.install_in_dev(&solution(name, "sch")).await;
    let pipe = w.pipeline("Later", &[("Test", "test")], false).await;
    let when = OffsetDateTime::now_utc() + time::Duration::seconds(8);
    let id = w
        .submit(
            &pipe,
            0,
            name,
            json!({"scheduled_at": when.format(&Rfc3339).unwrap()}),
        )
        .await;
    w.wait_for(id, "scheduled").await;
    assert!(
        w.installed("test", name).await.is_none(),
        "nothing imported before its time"
    );
    w.wait_end(id, "succeeded").await;
    let history = w.history(id).await;
    let started = events(&history, "import", "started");
    let first_import = at(&started.first().expect("imported")["at"]);
    assert!(
        first_import >= when,
        "import started at {first_import}, before {when}"
    );
    let states = transitions(&history);
    let scheduled = states.iter().position(|s| s == "scheduled").unwrap();
    assert_eq!(
        states.get(scheduled + 1).map(String::as_str),
        Some("importing"),
        "{states:?}"
    );
    assert_eq!(w.installed("test", name).await.unwrap().version, "1.0.0.1");
}

// ------------------------------------------------------------------ tests

/// Runs a scenario and says how long it took (shown with --nocapture).
async fn timed(name: &str, scenario: impl std::future::Future<Output = ()>) {
    let started = Instant::now();
    scenario.await;
    eprintln!("scenario {name}: {:?}", started.elapsed());
}

/// A stage with two targets that deploys as a named user: a request naming
/// no target starts one run per target, and each target's solution is
/// installed by that user (acted for by the environment's own user).
async fn a_stage_fans_out_and_deploys_as_its_user(w: &World) {
    let name = "Regions";
    w.install_in_dev(&solution(name, "rgn")).await;
    let pipe = w.pipeline("Regions", &[("Regions", "eu")], false).await;
    let mut stage = pipe.stage_bodies[0].clone();
    stage["target_environment_ids"] = json!([w.envs["eu"], w.envs["us"]]);
    stage["deploy_as"] = json!({"mode": "user", "user": RELEASE_USER});
    let (status, body) = w.update_stage(&pipe, 0, &stage).await;
    assert_eq!(status, 200, "{body}");
    let (status, first) = w.deploy(&w.maker, request(&pipe, 0, name, json!({}))).await;
    assert_eq!(status, 202, "{first}");
    let fan_out = first["fan_out"].as_array().unwrap();
    assert_eq!(fan_out.len(), 1, "{first}");
    let ids = [id_of(&first), fan_out[0].as_str().unwrap().parse().unwrap()];
    for id in ids {
        let run = w.wait_end(id, "succeeded").await;
        assert_eq!(
            run["deployment"]["deploy_as"],
            json!({"mode": "user", "user": RELEASE_USER})
        );
    }
    for env in ["eu", "us"] {
        let target = w.dataverse(env);
        assert_eq!(w.installed(env, name).await.unwrap().version, "1.0.0.1");
        let release = target
            .system_user_by_domain_name(RELEASE_USER)
            .await
            .unwrap()
            .unwrap();
        let own = target.who_am_i().await.unwrap().user_id;
        let (status, rows) = send(
            slipway_testkit::http_client_with_token(SIM_TOKEN)
                .unwrap()
                .get(format!(
                    "{}/api/data/v9.2/solutions?$filter=uniquename eq '{name}'&$select=_modifiedby_value,_modifiedonbehalfby_value",
                    w.sim.env_url(env)
                )),
        )
        .await;
        assert_eq!(status, 200, "{rows}");
        let row = &rows["value"][0];
        assert_eq!(
            row["_modifiedby_value"],
            release.id.to_string(),
            "{env}: {row}"
        );
        assert_eq!(
            row["_modifiedonbehalfby_value"],
            own.to_string(),
            "{env}: {row}"
        );
    }
}

/// Stages in order with artifact reuse, validation failures and settings,
/// approvals and gate callbacks, the version rule, import failures and
/// retry, dry runs and scheduled imports, fan-out and deploy-as: side by
/// side in one cluster.
#[tokio::test(flavor = "multi_thread")]
async fn deployments_through_stages_gates_and_failures() {
    let started = Instant::now();
    let w = World::start(&["approvals", "uat", "eu", "us"]).await;
    tokio::join!(
        timed("test then prod", test_then_prod_reusing_the_artifact(&w)),
        timed(
            "again without a version",
            deploying_again_without_a_version_bumps_again(&w)
        ),
        timed(
            "missing dependencies",
            missing_dependencies_fail_validation(&w)
        ),
        timed(
            "missing connection",
            missing_connection_is_supplied_as_settings(&w)
        ),
        timed("wrong connector", wrong_connector_names_both(&w)),
        timed("approvals", approvals_gate_prod(&w)),
        timed("pre-deployment gate", pre_deployment_gate_callbacks(&w)),
        timed("versions", version_rule_and_redeploying_older(&w)),
        timed("import failure", import_failure_in_the_environment(&w)),
        timed("dry run", dry_run_validates_only(&w)),
        timed("scheduled", scheduled_import_waits_for_its_time(&w)),
        timed(
            "fan-out as a user",
            a_stage_fans_out_and_deploys_as_its_user(&w)
        ),
    );
    eprintln!("scenarios done in {:?}", started.elapsed());
    w.stop().await;
}

/// SIGKILL of the importer, twice: once while the environment runs the
/// import (the importer follows it by delayed polls), once the moment the
/// import step starts (the start command itself is in the killed process's
/// hands). Nothing moves until a replica runs; then each import is followed
/// to its end, started once in its target, and each run succeeds once.
#[tokio::test(flavor = "multi_thread")]
async fn an_importer_killed_mid_import_imports_once_after_a_replica_starts() {
    let mut w = World::start(&[]).await;
    for env in ["test", "prod"] {
        w.set_faults(
            env,
            &Faults {
                import_delay_ms: 2_500,
                ..Faults::default()
            },
        )
        .await;
    }
    let name = "Survivor";
    w.install_in_dev(&solution(name, "srv")).await;
    let pipe = w
        .pipeline("Survive", &[("Test", "test"), ("Prod", "prod")], false)
        .await;
    let deadline = Instant::now() + RUN_DEADLINE;

    // 1. The import runs in the target and the importer has reported it
    // (it follows it by delayed polls from now on): kill the importer now.
    // Killed between starting the import and that report, the start
    // command would come back to a replica instead (scenario 2).
    let id = w.submit(&pipe, 0, name, json!({})).await;
    while w.operations("test").await.is_empty()
        || w.cluster.run(id).await.unwrap()["state"] != "importing"
    {
        assert!(Instant::now() < deadline, "{}", w.cluster.log_hint());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_importer(&mut w).await;
    let operation = w.operations("test").await.remove(0);
    assert_ne!(operation["statecode"], 3, "still running when killed");
    let operation_id = operation["asyncoperationid"].as_str().unwrap().to_owned();
    // The environment finishes on its own; the run cannot know until an
    // importer follows the operation again.
    loop {
        let operations = w.operations("test").await;
        assert_eq!(operations.len(), 1, "{operations:#?}");
        if operations[0]["statecode"] == 3 {
            assert_eq!(operations[0]["statuscode"], 30, "{operations:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "{operations:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.cluster.run(id).await.unwrap()["state"], "importing");
    w.cluster.spawn_worker("slipway-importer").await.unwrap();
    w.wait_end(id, "succeeded").await;
    let operations = w.operations("test").await;
    assert_eq!(operations.len(), 1, "imported once: {operations:#?}");
    assert_eq!(operations[0]["asyncoperationid"], operation_id.as_str());
    assert_ran_once(&w, id).await;
    assert_eq!(w.installed("test", name).await.unwrap().version, "1.0.0.1");

    // 2. The importer has just taken the start command: kill it.
    let id = w.submit(&pipe, 1, name, json!({})).await;
    w.cluster
        .wait_step(id, "import", "started", RUN_DEADLINE)
        .await
        .unwrap();
    kill_importer(&mut w).await;
    assert_eq!(w.cluster.run(id).await.unwrap()["state"], "importing");
    w.cluster.spawn_worker("slipway-importer").await.unwrap();
    // Killed while its ImportSolutionAsync request was in flight, the
    // importer may leave an operation the simulator never runs (see
    // an_import_the_environment_recorded_runs_even_if_the_caller_was_cut_off):
    // the run then stays importing; say so rather than only time out.
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let run = w.cluster.run(id).await.unwrap();
        if run["state"] != "importing" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} still importing after {RUN_DEADLINE:?}; prod's operations: {:#?}",
            w.operations("prod").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.wait_end(id, "succeeded").await;
    let operations = w.operations("prod").await;
    assert_eq!(operations.len(), 1, "imported once: {operations:#?}");
    assert_eq!(operations[0]["statuscode"], 30, "{operations:#?}");
    assert_ran_once(&w, id).await;
    assert_eq!(w.installed("prod", name).await.unwrap().version, "1.0.0.1");
    w.stop().await;
}

/// SIGKILL of the running importer; waits until it is gone.
async fn kill_importer(w: &mut World) {
    let importer = w
        .cluster
        .workers
        .iter()
        .rposition(|p| p.name.starts_with("slipway-importer"))
        .unwrap();
    let process = &mut w.cluster.workers[importer];
    process.kill().await;
    assert!(
        process.child.try_wait().unwrap().is_some(),
        "{} still runs",
        process.name
    );
}

/// The run ended Succeeded once, and the import succeeded once.
async fn assert_ran_once(w: &World, id: Uuid) {
    let history = w.history(id).await;
    let succeeded = transitions(&history)
        .iter()
        .filter(|s| *s == "succeeded")
        .count();
    assert_eq!(succeeded, 1, "succeeded once: {history:#?}");
    assert_eq!(
        events(&history, "import", "succeeded").len(),
        1,
        "{history:#?}"
    );
}

/// Twenty deployments of twenty solutions through three pipelines at once:
/// each succeeds, each step acted on once, each target has its solution.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_deployments_all_succeed() {
    let w = World::start(&["uat"]).await;
    let targets = ["test", "prod", "uat"];
    let mut pipes = Vec::new();
    for (n, target) in targets.iter().enumerate() {
        pipes.push(
            w.pipeline(&format!("Load {n}"), &[("Only", target)], false)
                .await,
        );
    }
    let names: Vec<String> = (0..20).map(|n| format!("Load{n:02}")).collect();
    for (n, name) in names.iter().enumerate() {
        let mut zip = solution(name, &format!("ld{n:02}"));
        if n % 2 == 0 {
            zip = zip.connection_reference(&format!("ld{n:02}_sharepoint"), SHAREPOINT);
        }
        w.install_in_dev(&zip).await;
    }
    let started = Instant::now();
    let submitted = futures::future::join_all(names.iter().enumerate().map(|(n, name)| {
        let pipe = &pipes[n % pipes.len()];
        let target = targets[n % targets.len()];
        let settings = json!({"ConnectionReferences": [{
            "LogicalName": format!("ld{n:02}_sharepoint"),
            "ConnectionId": format!("{target}-sharepoint"),
        }]});
        let extra = if n % 2 == 0 {
            json!({"settings": settings})
        } else {
            json!({})
        };
        w.submit(pipe, 0, name, extra)
    }))
    .await;
    let ended =
        futures::future::join_all(submitted.iter().map(|id| w.wait_end(*id, "succeeded"))).await;
    let elapsed = started.elapsed();
    eprintln!("20 concurrent deployments done in {elapsed:?}");
    assert!(elapsed < RUN_DEADLINE, "took {elapsed:?}");
    for (n, (id, run)) in submitted.iter().zip(&ended).enumerate() {
        let target = targets[n % targets.len()];
        assert_eq!(run["deployment"]["target_environment"], target);
        let history = w.history(*id).await;
        for step in ["export", "validate"] {
            assert_eq!(events(&history, step, "succeeded").len(), 1, "{history:#?}");
        }
        assert_eq!(events(&history, "import", "succeeded").len(), 1);
        let installed = w.installed(target, &names[n]).await.unwrap();
        assert_eq!(installed.version, "1.0.0.1", "{} in {target}", names[n]);
    }
    let imports: usize = {
        let mut total = 0;
        for target in targets {
            total += w.operations(target).await.len();
        }
        total
    };
    assert_eq!(imports, 20, "one import per deployment");
    w.stop().await;
}

// ------------------------------------------------------------------ the simulator under a killed importer

/// A simulator alone, serving `test`, its state in `data`.
async fn simulator(data: DataLocation) -> Running {
    let mut config = Config::in_memory();
    config.data = data;
    config.dev_tokens = vec![SIM_TOKEN.into()];
    config.environments = vec![target_env("test")];
    EnvSim::start(config).await.unwrap()
}

/// A client of the simulator's `test` that answers at once (no retries).
fn sim_client(sim: &Running) -> slipway_dataverse::Client {
    let mut config = slipway_dataverse::ClientConfig::new(
        sim.env_url("test"),
        slipway_dataverse::Credentials::StaticToken(SIM_TOKEN.into()),
    );
    config.retry.max_retries = 0;
    slipway_dataverse::Client::new(config).unwrap()
}

/// What an importer SIGKILLed in the middle of `ImportSolutionAsync` does
/// to the environment: sends the request and is gone before the answer.
/// Cut off after 0.2 to 2.2 ms, so some requests are cut off while the
/// environment records the import. Returns the import job ids sent.
async fn cut_off_imports(sim: &Running, count: u64) -> Vec<Uuid> {
    let zip = solution("CutOff", "cut").managed(true).build();
    let client = sim_client(sim);
    let mut jobs = Vec::new();
    for n in 0..count {
        let job = Uuid::new_v4();
        let request = slipway_dataverse::ImportRequest {
            import_job_id: Some(job),
            ..slipway_dataverse::ImportRequest::new(zip.clone().into())
        };
        let cut_after = Duration::from_micros(200 + (n % 40) * 50);
        let _ = tokio::time::timeout(cut_after, client.import_solution_async(&request)).await;
        jobs.push(job);
    }
    jobs
}

/// The importer's exactly-once rests on the environment: a start sent
/// again with the same `ImportJobId` finds the import the first request
/// started. So an import the environment recorded must run even when the
/// caller vanished mid-request (Dataverse does not cancel an import when
/// the HTTP client disconnects); otherwise the retried start finds an
/// operation that stays In Progress forever and the run never ends (seen
/// end to end when the importer is killed just as it starts an import).
#[tokio::test(flavor = "multi_thread")]
async fn an_import_the_environment_recorded_runs_even_if_the_caller_was_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(DataLocation::File(dir.path().join("envsim.sqlite"))).await;
    let jobs = cut_off_imports(&sim, 200).await;
    // The replica's retry of each start, as the importer sends it.
    let client = sim_client(&sim);
    let zip = solution("CutOff", "cut").managed(true).build();
    let mut operations = Vec::new();
    for job in &jobs {
        let request = slipway_dataverse::ImportRequest {
            import_job_id: Some(*job),
            ..slipway_dataverse::ImportRequest::new(zip.clone().into())
        };
        let started = client.import_solution_async(&request).await.unwrap();
        operations.push(started.async_operation_id);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut running = operations.clone();
    while !running.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in running {
            if !client.async_operation(id).await.unwrap().is_completed() {
                still.push(id);
            }
        }
        running = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        running.is_empty(),
        "{} of {} imports stay In Progress for good after their first request was cut off \
         (each retried with its ImportJobId gets the same operation back), e.g. {}",
        running.len(),
        operations.len(),
        running[0]
    );
    sim.shutdown().await.unwrap();
}

/// An in-memory simulator (what tests use) keeps its state when callers
/// vanish mid-request.
#[tokio::test(flavor = "multi_thread")]
async fn cut_off_requests_leave_an_in_memory_simulator_intact() {
    let sim = simulator(DataLocation::Memory).await;
    cut_off_imports(&sim, 200).await;
    let client = sim_client(&sim);
    let connections = client
        .connections()
        .await
        .unwrap_or_else(|e| panic!("the simulator lost its state: {e}"));
    assert_eq!(connections.len(), 3, "{connections:?}");
    sim.shutdown().await.unwrap();
}
