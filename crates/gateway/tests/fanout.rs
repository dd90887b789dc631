//! Deploying through a stage with several target environments, over real
//! HTTP on both databases: a request that names no target starts one run
//! per target (same version, settings, notes and deploy-as) in one
//! transaction, and a later stage takes a version only once it succeeded in
//! every target of the stage before. Runs are moved through their steps by
//! writing the workers' events to the store, as the gateway's event
//! consumer does.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{Api, Db, Gw, start};
use serde_json::{Value, json};
use slipway_messages::{
    ArtifactRef, Envelope, Message, RunEvent, Step, StepOutcome, StepStatus, ValidationReport,
    Verdict,
};
use uuid::Uuid;

on_both_databases!(
    a_stage_without_a_named_target_fans_out_to_every_target,
    a_version_goes_on_only_once_every_target_has_it,
    a_first_stage_fan_out_settles_one_version_from_the_source,
);

/// `dev` and a pipeline from it: `Test` (test), then `Prod` (prod-eu and
/// prod-us, deploying as a named user), then `Regional` (apac).
struct World {
    gw: Gw,
    maker: Api,
    pipeline: String,
    test: String,
    prod: String,
    regional: String,
}

async fn world(db: Db) -> World {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let dev = a.env("dev", "development").await;
    let test = a.env("test", "target").await;
    let prod_us = a.env("prod-us", "target").await;
    let prod_eu = a.env("prod-eu", "target").await;
    let apac = a.env("apac", "target").await;
    let pipeline = a.pipeline("Contoso ALM", &[&dev]).await;
    let test_stage = a.stage(&pipeline, "Test", None, &[&test]).await;
    let prod = a
        .post(
            &format!("/api/v1/pipelines/{pipeline}/stages"),
            json!({
                "name": "Prod",
                "previous_stage_id": test_stage,
                "target_environment_ids": [prod_us, prod_eu],
                "deploy_as": {"mode": "user", "user": "owner@contoso.com"},
            }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let regional = a.stage(&pipeline, "Regional", Some(&prod), &[&apac]).await;
    a.share(&pipeline, "user", "maker").await;
    let maker = gw.user("maker", &[], &["maker"]).await;
    World {
        gw,
        maker,
        pipeline,
        test: test_stage,
        prod,
        regional,
    }
}

impl World {
    /// The maker's request through `stage`, with `extra` fields.
    fn request(&self, stage: &str, extra: Value) -> Value {
        let mut body = json!({
            "solution_name": "Contoso",
            "pipeline_id": self.pipeline,
            "stage_id": stage,
            "source_environment": "dev",
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    /// The maker's request through `stage`, with `extra` fields, sent.
    async fn deploy(&self, stage: &str, extra: Value) -> common::Resp {
        self.maker
            .post("/api/v1/deployments", self.request(stage, extra))
            .await
    }

    /// How many runs the maker sees.
    async fn run_count(&self) -> usize {
        self.maker
            .get("/api/v1/deployments?limit=1000")
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len()
    }

    async fn run(&self, id: &str) -> Value {
        self.maker
            .get(&format!("/api/v1/deployments/{id}"))
            .await
            .ok(200)
    }

    /// Moves a run through validation (of `version`) and import to
    /// `succeeded`, as the workers' events would.
    async fn succeed(&self, id: &str, version: &str) {
        let run: Uuid = id.parse().unwrap();
        let artifact = artifact(version);
        let events = [
            event(run, Step::Export, StepStatus::Started, None),
            event(
                run,
                Step::Export,
                StepStatus::Succeeded,
                Some(StepOutcome::Exported {
                    artifact: artifact.clone(),
                    source_version: Some("1.0.0.0".into()),
                }),
            ),
            event(run, Step::Validate, StepStatus::Started, None),
            event(
                run,
                Step::Validate,
                StepStatus::Succeeded,
                Some(StepOutcome::Validated {
                    artifact,
                    report: passed(version),
                }),
            ),
            event(run, Step::Import, StepStatus::Started, None),
            event(run, Step::Import, StepStatus::Succeeded, None),
        ];
        self.gw.store.apply_events(&events).await.unwrap();
        assert_eq!(self.run(id).await["state"], "succeeded");
    }
}

/// An artifact of `version` (its bytes never read here).
fn artifact(version: &str) -> ArtifactRef {
    ArtifactRef {
        managed_sha256: "a".repeat(64),
        unmanaged_sha256: "b".repeat(64),
        version: version.into(),
        managed_bytes: 1,
    }
}

/// A validation of `version` that found nothing.
fn passed(version: &str) -> ValidationReport {
    ValidationReport {
        verdict: Verdict::Passed,
        artifact_version: version.into(),
        installed_version: None,
        version_problem: None,
        missing_dependencies: Vec::new(),
        errors: Vec::new(),
        connection_references: Vec::new(),
        environment_variables: Vec::new(),
        policy_violations: Vec::new(),
        diff: None,
        warnings: Vec::new(),
    }
}

/// What a worker of `step` publishes about `run`.
fn event(run: Uuid, step: Step, status: StepStatus, outcome: Option<StepOutcome>) -> Envelope {
    Envelope::new(
        run,
        Message::RunEvent(RunEvent {
            step: Some(step),
            status,
            service: step_service(step).into(),
            instance: None,
            detail: None,
            outcome,
        }),
    )
}

fn step_service(step: Step) -> &'static str {
    match step {
        Step::Export => "exporter",
        Step::Validate => "validator",
        Step::Import => "importer",
    }
}

fn id(run: &Value) -> String {
    run["id"].as_str().unwrap().to_owned()
}

async fn a_stage_without_a_named_target_fans_out_to_every_target(db: Db) {
    let w = world(db).await;
    // One target: one run, and the answer is what it always was.
    let first = w
        .deploy(&w.test, json!({"version": "1.0.0.1"}))
        .await
        .ok(202);
    assert!(first.get("fan_out").is_none(), "{first}");
    assert_eq!(first["deployment"]["target_environment"], "test");
    assert!(
        first["deployment"].get("deploy_as").is_none(),
        "the Test stage deploys with the environment's credentials: {first}"
    );
    w.succeed(&id(&first), "1.0.0.1").await;
    // What the exporter said dev had before the export.
    assert_eq!(w.run(&id(&first)).await["source_version"], "1.0.0.0");

    // Prod has two targets and none is named: one run per target.
    let settings = json!({"EnvironmentVariables": [{"SchemaName": "cts_Url", "Value": "https://prod"}], "ConnectionReferences": []});
    let body = w
        .deploy(&w.prod, json!({"notes": "release 1", "settings": settings}))
        .await
        .ok(202);
    let siblings = body["fan_out"].as_array().unwrap();
    assert_eq!(siblings.len(), 1, "{body}");
    let mut runs = vec![body.clone()];
    runs.push(w.run(siblings[0].as_str().unwrap()).await);
    let mut targets: Vec<&str> = runs
        .iter()
        .map(|r| r["deployment"]["target_environment"].as_str().unwrap())
        .collect();
    targets.sort_unstable();
    assert_eq!(targets, ["prod-eu", "prod-us"]);
    for run in &runs {
        let d = &run["deployment"];
        assert_eq!(d["version"], "1.0.0.1", "{run}");
        assert_eq!(run["artifact"]["version"], "1.0.0.1", "{run}");
        assert_eq!(d["notes"], "release 1");
        assert_eq!(d["settings"], settings);
        assert_eq!(d["stage_id"], w.prod.as_str());
        assert_eq!(
            d["deploy_as"],
            json!({"mode": "user", "user": "owner@contoso.com"}),
            "the stage's deploy-as travels with each run: {run}"
        );
        assert_eq!(run["requested_by"], "maker");
        assert_eq!(run["state"], "requested");
        assert_eq!(run["source_version"], Value::Null, "nothing exported yet");
    }
    assert_ne!(runs[0]["id"], runs[1]["id"]);

    // A named target still starts exactly one run.
    let one = w
        .deploy(&w.prod, json!({"target_environment": "prod-us"}))
        .await
        .ok(202);
    assert!(one.get("fan_out").is_none(), "{one}");
    assert_eq!(one["deployment"]["target_environment"], "prod-us");
    w.deploy(&w.prod, json!({"target_environment": "apac"}))
        .await
        .invalid("target_environment");

    // A refusal stops every target: nothing is started.
    let before = w.run_count().await;
    w.deploy(&w.prod, json!({"version": "9.9.9.9"}))
        .await
        .conflict("has not succeeded in stage Test");
    let after = w.run_count().await;
    assert_eq!(before, after);

    // The OpenAPI document describes the answer.
    let doc = w.maker.get("/api/v1/openapi.json").await.ok(200);
    assert!(
        doc["components"]["schemas"]["Submitted"]
            .to_string()
            .contains("fan_out"),
        "{}",
        doc["components"]["schemas"]["Submitted"]
    );
    w.gw.stop().await;
}

/// A first stage with several targets and no version in the request: the
/// gateway asks the source once for the version all targets get (each run
/// exports on its own). A source it cannot ask refuses the request, naming
/// the way around it; with a version, it is not asked.
async fn a_first_stage_fan_out_settles_one_version_from_the_source(db: Db) {
    let w = world(db).await;
    let a = &w.gw.admin;
    let dev = a.env("dev2", "development").await;
    let (one, two) = (a.env("qa-1", "target").await, a.env("qa-2", "target").await);
    let pipeline = a.pipeline("QA", &[&dev]).await;
    let stage = a.stage(&pipeline, "QA", None, &[&one, &two]).await;
    a.share(&pipeline, "user", "maker").await;
    let body = |extra: Value| {
        let mut b = json!({
            "solution_name": "Contoso",
            "pipeline_id": pipeline,
            "stage_id": stage,
            "source_environment": "dev2",
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // The test environments' credentials cannot be resolved.
    let refused = w.maker.post("/api/v1/deployments", body(json!({}))).await;
    assert_eq!(refused.status, 502, "{}", refused.text);
    let message = refused.body["error"].as_str().unwrap();
    assert!(
        message.contains("environment dev2 did not say which version of Contoso it has")
            && message.contains("give the version to deploy"),
        "{message}"
    );
    // One named target is settled the same way (a redelivered export then
    // exports that version again instead of bumping twice).
    let one = w
        .maker
        .post(
            "/api/v1/deployments",
            body(json!({"target_environment": "qa-1"})),
        )
        .await;
    assert_eq!(one.status, 502, "{}", one.text);
    let both = w
        .maker
        .post("/api/v1/deployments", body(json!({"version": "2.0.0.0"})))
        .await
        .ok(202);
    assert_eq!(both["deployment"]["version"], "2.0.0.0");
    assert_eq!(both["fan_out"].as_array().unwrap().len(), 1, "{both}");
    w.gw.stop().await;
}

async fn a_version_goes_on_only_once_every_target_has_it(db: Db) {
    let w = world(db).await;
    let test_run = w
        .deploy(&w.test, json!({"version": "1.0.0.1"}))
        .await
        .ok(202);
    w.succeed(&id(&test_run), "1.0.0.1").await;
    let prod = w.deploy(&w.prod, json!({})).await.ok(202);
    let prod_runs = [id(&prod), prod["fan_out"][0].as_str().unwrap().to_owned()];

    let regional = || async { w.deploy(&w.regional, json!({})).await };
    regional().await.conflict("has not succeeded in stage Prod");

    // Succeeded in one target of two: not yet.
    w.succeed(&prod_runs[0], "1.0.0.1").await;
    let message = regional().await.conflict("has not succeeded in stage Prod");
    assert!(message.contains("Contoso"), "{message}");
    // Naming the version does not get around it either.
    w.deploy(&w.regional, json!({"version": "1.0.0.1"}))
        .await
        .conflict("version 1.0.0.1 of Contoso has not succeeded in stage Prod");

    // A dry run in the other target imports nothing: still not.
    let dry = w
        .deploy(
            &w.prod,
            json!({"target_environment": "prod-us", "dry_run": true}),
        )
        .await
        .ok(202);
    w.succeed_dry_run(&id(&dry), "1.0.0.1").await;
    regional().await.conflict("has not succeeded in stage Prod");

    // Both targets have it: the next stage deploys that version.
    w.succeed(&prod_runs[1], "1.0.0.1").await;
    let next = regional().await.ok(202);
    assert_eq!(next["deployment"]["target_environment"], "apac");
    assert_eq!(next["deployment"]["version"], "1.0.0.1");
    assert_eq!(next["artifact"]["version"], "1.0.0.1");
    assert!(next.get("fan_out").is_none(), "{next}");
    w.gw.stop().await;
}

impl World {
    /// Moves a dry run through validation to `succeeded` (it never imports).
    async fn succeed_dry_run(&self, id: &str, version: &str) {
        let run: Uuid = id.parse().unwrap();
        let events = [
            event(run, Step::Validate, StepStatus::Started, None),
            event(
                run,
                Step::Validate,
                StepStatus::Succeeded,
                Some(StepOutcome::Validated {
                    artifact: artifact(version),
                    report: passed(version),
                }),
            ),
        ];
        self.gw.store.apply_events(&events).await.unwrap();
        let run = self.run(id).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["gates"]["dry_run"], true);
    }
}
