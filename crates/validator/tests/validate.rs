//! The real validation, over real HTTP, against the environment simulator
//! started in-process: artifacts in a temporary folder store, solutions built
//! with testkit's `SolutionZip`, the target seeded with connections.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::{Value, json};
use slipway_artifacts::ArtifactStore;
use slipway_bus::HandlerError;
use slipway_envsim::config::{ConnectionConfig, EnvironmentConfig, SeedSolution};
use slipway_envsim::{Config, EnvSim, Faults, Running};
use slipway_messages::{
    ArtifactRef, Deployment, Envelope, EnvironmentAccess, ImportCommand, Message, StepOutcome,
    ValidateCommand, ValidationReport, Verdict,
};
use slipway_service::config::EnvironmentsConfig;
use slipway_service::worker::{Step, StepDone, StepReport};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};
use slipway_validator::ValidatorStep;
use tempfile::TempDir;
use uuid::Uuid;

const OUTLOOK: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";
const TEAMS: &str = "/providers/Microsoft.PowerApps/apis/shared_teams";
const SHAREPOINT: &str = "/providers/Microsoft.PowerApps/apis/shared_sharepointonline";
const TOKEN: &str = "validator-test-token";
const VAULT_REF: &str = "/subscriptions/0f6a3f1e-8b0c-4a61-9d0e-3c2b1a000001/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-app/secrets/api-key";

/// A simulator with environment `test` (three connections, `seeds`
/// installed), a folder artifact store, a token file and the step.
struct Harness {
    sim: Running,
    _dir: TempDir,
    store: ArtifactStore,
    step: ValidatorStep,
    token_file: PathBuf,
}

fn connection(id: &str, connector: &str, display: &str) -> ConnectionConfig {
    ConnectionConfig {
        id: id.into(),
        connector_id: connector.into(),
        display_name: Some(display.into()),
        status: "Connected".into(),
    }
}

async fn harness(seeds: &[Vec<u8>]) -> Harness {
    let dir = TempDir::new().unwrap();
    let mut solutions = Vec::new();
    for (i, zip) in seeds.iter().enumerate() {
        let path = dir.path().join(format!("seed-{i}.zip"));
        std::fs::write(&path, zip).unwrap();
        solutions.push(SeedSolution { path });
    }
    let mut config = Config::in_memory();
    config.dev_tokens = vec![TOKEN.into()];
    config.environments = vec![EnvironmentConfig {
        connections: vec![
            connection("test-office365", OUTLOOK, "Office 365 Outlook (test)"),
            connection("test-teams", TEAMS, "Microsoft Teams (test)"),
            connection("test-sharepoint", SHAREPOINT, "SharePoint (test)"),
        ],
        solutions,
        ..EnvironmentConfig::new("test")
    }];
    let sim = EnvSim::start(config).await.unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let store = ArtifactStore::open(dir.path().join("artifacts").to_str().unwrap())
        .await
        .unwrap();
    let environments = EnvironmentsConfig {
        request_timeout_ms: 10_000,
        ..EnvironmentsConfig::default()
    };
    let step = ValidatorStep::new(store.clone(), environments);
    Harness {
        sim,
        _dir: dir,
        store,
        step,
        token_file,
    }
}

impl Harness {
    fn access(&self, env: &str) -> EnvironmentAccess {
        EnvironmentAccess {
            name: env.into(),
            url: self.sim.env_url(env),
            credentials: json!({
                "kind": "static_token",
                "token_ref": format!("file:{}", self.token_file.display()),
            }),
        }
    }

    fn deployment(&self, solution: &str) -> Deployment {
        Deployment {
            source: Some(self.access("dev")),
            target: Some(self.access("test")),
            ..Deployment::between(solution, "dev", "test")
        }
    }

    /// Stores the managed zip as the exporter would.
    async fn artifact(&self, zip: &SolutionZip, version: &str) -> ArtifactRef {
        let bytes = zip.clone().managed(true).build();
        let len = bytes.len() as u64;
        let id = self.store.put(Bytes::from(bytes)).await.unwrap();
        ArtifactRef {
            managed_sha256: id.to_string(),
            unmanaged_sha256: id.to_string(),
            version: version.into(),
            managed_bytes: len,
        }
    }

    async fn run(&self, deployment: Deployment, artifact: ArtifactRef) -> StepDone {
        self.try_run(deployment, artifact).await.unwrap()
    }

    async fn try_run(
        &self,
        deployment: Deployment,
        artifact: ArtifactRef,
    ) -> Result<StepDone, HandlerError> {
        let envelope = Envelope::new(
            Uuid::now_v7(),
            Message::Validate(ValidateCommand {
                deployment,
                artifact,
            }),
        );
        self.step.run(&envelope).await
    }

    /// Validates `zip` (as managed, version `version`) deployed as `deployment`.
    async fn validate(
        &self,
        zip: &SolutionZip,
        version: &str,
        deployment: Deployment,
    ) -> (StepDone, ValidationReport) {
        let artifact = self.artifact(zip, version).await;
        let done = self.run(deployment, artifact.clone()).await;
        let report = match &done.outcome {
            Some(StepOutcome::Validated {
                artifact: reported,
                report,
            }) => {
                assert_eq!(reported, &artifact);
                report.clone()
            }
            other => panic!("expected a validated outcome, got {other:?}"),
        };
        (done, report)
    }
}

fn app(version: &str) -> SolutionZip {
    SolutionZip::new("ContosoApp", version)
        .publisher("contoso", "cts")
        .root_component(1, "cts_project")
}

fn with_settings(mut d: Deployment, settings: Value) -> Deployment {
    d.settings = Some(settings);
    d
}

fn connection_settings(logical: &str, connection: &str, connector: &str) -> Value {
    json!({
        "EnvironmentVariables": [],
        "ConnectionReferences": [
            {"LogicalName": logical, "ConnectionId": connection, "ConnectorId": connector}
        ]
    })
}

fn value_settings(values: &[(&str, &str)]) -> Value {
    let vars: Vec<Value> = values
        .iter()
        .map(|(s, v)| json!({"SchemaName": s, "Value": v}))
        .collect();
    json!({"EnvironmentVariables": vars, "ConnectionReferences": []})
}

fn import_of(done: &StepDone) -> &ImportCommand {
    match &done.next {
        Some(Message::Import(cmd)) => cmd,
        other => panic!("expected the import command next, got {other:?}"),
    }
}

#[tokio::test]
async fn a_clean_solution_passes_and_hands_the_import_on() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").env_var("cts_Url", 100000000, Some("https://contoso.example"), None);
    let deployment = h.deployment("ContosoApp");
    let (done, report) = h.validate(&zip, "1.0.0.1", deployment.clone()).await;
    assert_eq!(done.report, StepReport::Succeeded, "{report:#?}");
    assert_eq!(report.verdict, Verdict::Passed, "{report:#?}");
    assert_eq!(report.artifact_version, "1.0.0.1");
    assert_eq!(report.installed_version, None);
    assert_eq!(report.version_problem, None);
    assert!(report.errors.is_empty() && report.missing_dependencies.is_empty());
    assert_eq!(
        report.environment_variables[0].value_source.as_deref(),
        Some("default")
    );
    let import = import_of(&done);
    assert_eq!(import.deployment, deployment);
    assert_eq!(import.async_operation_id, None);
    assert_eq!(import.polls, 0);
    let Some(StepOutcome::Validated { artifact, .. }) = &done.outcome else {
        unreachable!()
    };
    assert_eq!(
        &import.artifact, artifact,
        "the importer gets the validated artifact"
    );
}

#[tokio::test]
async fn a_missing_dependency_fails_with_the_list() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").missing_dependency(
        DepEnd::new("1", "contoso_project"),
        DepEnd::new("60", "cts_projectform").display_name("Project form"),
    );
    let (done, report) = h
        .validate(&zip, "1.0.0.1", h.deployment("ContosoApp"))
        .await;
    assert_eq!(report.verdict, Verdict::Failed);
    assert_eq!(done.report, StepReport::Failed);
    assert_eq!(done.next, None);
    assert_eq!(report.missing_dependencies.len(), 1, "{report:#?}");
    let m = &report.missing_dependencies[0];
    assert_eq!(m.required_type, "Entity");
    assert_eq!(m.required, "contoso_project");
    assert_eq!(m.required_by.as_deref(), Some("Project form"));
    assert!(
        report.errors.is_empty(),
        "the error restating the dependencies is left out: {:?}",
        report.errors
    );
    assert_eq!(
        done.detail.as_deref(),
        Some("1 missing dependency in test: table contoso_project (needed by Project form)")
    );
}

#[tokio::test]
async fn a_connection_reference_without_a_connection_needs_settings() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").connection_reference_named("cts_outlook", "Outlook", OUTLOOK);
    let (done, report) = h
        .validate(&zip, "1.0.0.1", h.deployment("ContosoApp"))
        .await;
    assert_eq!(report.verdict, Verdict::NeedsSettings, "{report:#?}");
    assert_eq!(done.report, StepReport::Succeeded);
    assert_eq!(done.next, None, "the gateway waits for settings");
    let c = &report.connection_references[0];
    assert_eq!(c.logical_name, "cts_outlook");
    assert_eq!(c.display_name.as_deref(), Some("Outlook"));
    assert_eq!(c.connection_id, None);
    assert!(
        c.problem
            .as_deref()
            .unwrap()
            .starts_with("needs a connection"),
        "{c:?}"
    );
    let candidates: Vec<(&str, Option<&str>)> = c
        .candidates
        .iter()
        .map(|c| (c.id.as_str(), c.display_name.as_deref()))
        .collect();
    assert_eq!(
        candidates,
        [("test-office365", Some("Office 365 Outlook (test)"))]
    );
}

#[tokio::test]
async fn settings_supplying_the_connection_pass() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").connection_reference("cts_outlook", OUTLOOK);
    let deployment = with_settings(
        h.deployment("ContosoApp"),
        connection_settings("cts_outlook", "test-office365", OUTLOOK),
    );
    let (done, report) = h.validate(&zip, "1.0.0.1", deployment).await;
    assert_eq!(report.verdict, Verdict::Passed, "{report:#?}");
    let c = &report.connection_references[0];
    assert_eq!(c.connection_id.as_deref(), Some("test-office365"));
    assert_eq!(c.problem, None);
    assert_eq!(
        c.candidates.len(),
        1,
        "candidates are listed even when fine"
    );
    import_of(&done);
}

#[tokio::test]
async fn a_connection_of_another_connector_names_both_connectors() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").connection_reference("cts_outlook", OUTLOOK);
    let deployment = with_settings(
        h.deployment("ContosoApp"),
        connection_settings("cts_outlook", "test-teams", OUTLOOK),
    );
    let (done, report) = h.validate(&zip, "1.0.0.1", deployment).await;
    assert_eq!(report.verdict, Verdict::NeedsSettings);
    assert_eq!(done.next, None);
    assert_eq!(
        report.connection_references[0].problem.as_deref(),
        Some(
            "connection test-teams is a shared_teams connection; this reference needs shared_office365"
        )
    );

    // A connection id the target does not have.
    let deployment = with_settings(
        h.deployment("ContosoApp"),
        connection_settings("cts_outlook", "prod-office365", OUTLOOK),
    );
    let (_, report) = h.validate(&zip, "1.0.0.1", deployment).await;
    let p = report.connection_references[0].problem.clone().unwrap();
    assert!(p.starts_with("no connection prod-office365 in test"), "{p}");
}

#[tokio::test]
async fn a_number_variable_set_to_text_needs_settings() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").env_var("cts_Retries", 100000001, None, None);
    let deployment = with_settings(
        h.deployment("ContosoApp"),
        value_settings(&[("cts_Retries", "abc")]),
    );
    let (done, report) = h.validate(&zip, "1.0.0.1", deployment).await;
    assert_eq!(report.verdict, Verdict::NeedsSettings);
    assert_eq!(done.next, None);
    let v = &report.environment_variables[0];
    assert_eq!(v.type_name, "number");
    assert_eq!(v.value_source.as_deref(), Some("settings"));
    assert_eq!(
        v.problem.as_deref(),
        Some("the value in the deployment settings is not a number: \"abc\"")
    );

    let fixed = with_settings(
        h.deployment("ContosoApp"),
        value_settings(&[("cts_Retries", "3")]),
    );
    let (_, report) = h.validate(&zip, "1.0.0.1", fixed).await;
    assert_eq!(report.verdict, Verdict::Passed, "{report:#?}");
}

#[tokio::test]
async fn a_secret_must_be_a_key_vault_reference() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1")
        .env_var("cts_ApiKey", 100000005, None, None)
        .env_var("cts_Other", 100000005, None, None);
    let deployment = with_settings(
        h.deployment("ContosoApp"),
        value_settings(&[("cts_ApiKey", "s3cr3t-value"), ("cts_Other", VAULT_REF)]),
    );
    let (_, report) = h.validate(&zip, "1.0.0.1", deployment).await;
    assert_eq!(report.verdict, Verdict::NeedsSettings);
    let by_name = |n: &str| {
        report
            .environment_variables
            .iter()
            .find(|v| v.schema_name == n)
            .unwrap()
    };
    let bad = by_name("cts_ApiKey");
    assert_eq!(bad.type_name, "secret");
    assert_eq!(
        bad.problem.as_deref(),
        Some(
            "the value in the deployment settings must be an Azure Key Vault secret reference \
             /subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{name}"
        )
    );
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("s3cr3t-value"),
        "the secret is never repeated"
    );
    assert_eq!(by_name("cts_Other").problem, None);
}

#[tokio::test]
async fn a_lower_version_fails_unless_older_versions_are_allowed() {
    let installed = app("1.0.0.3").managed(true).build();
    let h = harness(&[installed]).await;

    let (done, report) = h
        .validate(&app("1.0.0.2"), "1.0.0.2", h.deployment("ContosoApp"))
        .await;
    assert_eq!(report.verdict, Verdict::Failed);
    assert_eq!(report.installed_version.as_deref(), Some("1.0.0.3"));
    assert!(
        report
            .version_problem
            .as_deref()
            .unwrap()
            .starts_with("version 1.0.0.2 is not higher than 1.0.0.3 installed in test"),
        "{report:#?}"
    );
    assert!(
        done.detail
            .as_deref()
            .unwrap()
            .contains("version 1.0.0.2 is not higher than 1.0.0.3 installed in test"),
        "{:?}",
        done.detail
    );

    // The same version again is a redeploy: refused, then allowed.
    let (_, report) = h
        .validate(&app("1.0.0.3"), "1.0.0.3", h.deployment("ContosoApp"))
        .await;
    assert_eq!(report.verdict, Verdict::Failed);
    assert!(report.version_problem.is_some());
    let mut allowed = h.deployment("ContosoApp");
    allowed.allow_older_version = true;
    let (done, report) = h
        .validate(&app("1.0.0.3"), "1.0.0.3", allowed.clone())
        .await;
    assert_eq!(report.verdict, Verdict::Passed, "{report:#?}");
    import_of(&done);

    // A lower version passes the version rule; the environment still has its
    // say (the simulator, like Dataverse, refuses downgrading a managed solution).
    let (_, report) = h.validate(&app("1.0.0.2"), "1.0.0.2", allowed).await;
    assert_eq!(report.version_problem, None, "{report:#?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("lower than the installed version")),
        "{report:#?}"
    );
}

#[tokio::test]
async fn an_unmanaged_install_cannot_be_upgraded() {
    let h = harness(&[app("1.0.0.1").build()]).await;
    let (done, report) = h
        .validate(&app("1.0.0.2"), "1.0.0.2", h.deployment("ContosoApp"))
        .await;
    assert_eq!(report.verdict, Verdict::Failed);
    let p = report.version_problem.clone().unwrap();
    assert!(
        p.starts_with("ContosoApp is installed unmanaged in test"),
        "{p}"
    );
    assert!(done.detail.unwrap().contains("installed unmanaged"));
}

#[tokio::test]
async fn a_blocked_connector_fails_with_the_violation() {
    let h = harness(&[]).await;
    let zip = app("1.0.0.1").connection_reference("cts_teams", TEAMS);
    let mut deployment = with_settings(
        h.deployment("ContosoApp"),
        connection_settings("cts_teams", "test-teams", TEAMS),
    );
    deployment.policies = Some(slipway_policy::StagePolicies {
        blocked_connectors: vec!["shared_teams".into()],
        ..Default::default()
    });
    let (done, report) = h.validate(&zip, "1.0.0.1", deployment).await;
    assert_eq!(report.verdict, Verdict::Failed, "{report:#?}");
    assert_eq!(report.connection_references[0].problem, None);
    assert_eq!(report.policy_violations.len(), 1);
    assert_eq!(report.policy_violations[0].policy, "blocked_connectors");
    assert!(report.policy_violations[0].message.contains("shared_teams"));
    let detail = done.detail.unwrap();
    assert!(
        detail.starts_with("policy blocked_connectors: "),
        "{detail}"
    );
    assert_eq!(done.next, None);
}

#[tokio::test]
async fn holding_after_validation_sends_no_import() {
    let h = harness(&[]).await;
    let mut deployment = h.deployment("ContosoApp");
    deployment.hold_after_validation = true;
    let (done, report) = h.validate(&app("1.0.0.1"), "1.0.0.1", deployment).await;
    assert_eq!(report.verdict, Verdict::Passed);
    assert_eq!(done.report, StepReport::Succeeded);
    assert_eq!(done.next, None);
}

#[tokio::test]
async fn the_diff_lists_what_the_import_adds_and_removes() {
    let installed = app("1.0.0.1")
        .root_component(1, "cts_task")
        .managed(true)
        .build();
    let h = harness(&[installed]).await;
    let zip = app("1.0.0.2")
        .root_component(1, "cts_invoice")
        .connection_reference("cts_outlook", OUTLOOK);
    let deployment = with_settings(
        h.deployment("ContosoApp"),
        connection_settings("cts_outlook", "test-office365", OUTLOOK),
    );
    let (_, report) = h.validate(&zip, "1.0.0.2", deployment).await;
    assert_eq!(report.verdict, Verdict::Passed, "{report:#?}");
    let diff = report.diff.unwrap();
    assert_eq!(
        diff["components_added"],
        json!([
            {"component_type": 1, "name": "cts_invoice"},
            {"component_type": "connectionreference", "name": "cts_outlook"}
        ]),
        "{diff:#}"
    );
    assert_eq!(
        diff["components_removed"],
        json!([{"component_type": 1, "name": "cts_task"}]),
        "{diff:#}"
    );
    assert_eq!(diff["new_version"], "1.0.0.2");

    // Not installed: everything is added.
    let (_, report) = h
        .validate(
            &SolutionZip::new("Fresh", "1.0.0.0").root_component(1, "frs_thing"),
            "1.0.0.0",
            h.deployment("Fresh"),
        )
        .await;
    let diff = report.diff.unwrap();
    assert_eq!(
        diff["components_added"],
        json!([{"component_type": 1, "name": "frs_thing"}])
    );
    assert_eq!(diff["components_removed"], json!([]));
}

#[tokio::test]
async fn a_missing_artifact_fails_the_run_with_the_reason() {
    let h = harness(&[]).await;
    let mut artifact = h.artifact(&app("1.0.0.1"), "1.0.0.1").await;
    artifact.managed_sha256 = "0".repeat(64);
    let done = h.run(h.deployment("ContosoApp"), artifact).await;
    assert_eq!(done.report, StepReport::Failed);
    let detail = done.detail.unwrap();
    assert!(detail.contains("not in the artifact store"), "{detail}");
}

#[tokio::test]
async fn a_throttling_target_is_retried_and_a_refusing_one_parks() {
    let h = harness(&[]).await;
    let artifact = h.artifact(&app("1.0.0.1"), "1.0.0.1").await;
    h.sim
        .set_faults(
            "test",
            Faults {
                throttle_every_nth: 1,
                retry_after_secs: 3600,
                ..Faults::default()
            },
        )
        .unwrap();
    match h
        .try_run(h.deployment("ContosoApp"), artifact.clone())
        .await
    {
        Err(HandlerError::Transient(m)) => assert!(m.contains("environment test"), "{m}"),
        other => panic!("expected a transient error, got {other:?}"),
    }

    h.sim.set_faults("test", Faults::default()).unwrap();
    std::fs::write(&h.token_file, "not-the-token").unwrap();
    match h.try_run(h.deployment("ContosoApp"), artifact).await {
        Err(HandlerError::Permanent(m)) => {
            assert!(
                m.contains("environment test") && m.contains("credentials"),
                "{m}"
            );
            assert!(!m.contains("not-the-token"), "never the credentials: {m}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_deployment_without_environments_keeps_the_placeholder() {
    let h = harness(&[]).await;
    let mut deployment = h.deployment("ContosoApp");
    deployment.source = None;
    deployment.target = None;
    // Nothing is stored: the placeholder never reads the artifact.
    let artifact = ArtifactRef {
        managed_sha256: "m".into(),
        unmanaged_sha256: "u".into(),
        version: "1.0.0.7".into(),
        managed_bytes: 0,
    };
    let done = h.run(deployment.clone(), artifact.clone()).await;
    assert_eq!(done.report, StepReport::Succeeded);
    match &done.outcome {
        Some(StepOutcome::Validated { report, .. }) => {
            assert_eq!(report.verdict, Verdict::Passed);
            assert_eq!(report.artifact_version, "1.0.0.7");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(import_of(&done).artifact, artifact);
    deployment.hold_after_validation = true;
    assert_eq!(h.run(deployment, artifact).await.next, None);
}
