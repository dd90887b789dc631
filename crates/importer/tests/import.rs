//! The importer against the environment simulator over real HTTP: start,
//! polls, redelivery, failures, settings, backoff, and the worker loop on
//! the in-process bus.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use slipway_artifacts::ArtifactStore;
use slipway_bus::{Bus, BusConfig, FnHandler, QueueName, Transport};
use slipway_dataverse::{Client, ClientConfig, Credentials};
use slipway_envsim::config::{ConnectionConfig, EnvironmentConfig, UserConfig};
use slipway_envsim::{Config, EnvSim, Faults, Running};
use slipway_importer::ImporterStep;
use slipway_messages::{
    ArtifactRef, DeployIdentity, Deployment, Envelope, EnvironmentAccess, ImportCommand, Message,
    RunEvent, Step as PipelineStep, StepOutcome, StepStatus,
};
use slipway_service::config::EnvironmentsConfig;
use slipway_service::shutdown::CancellationToken;
use slipway_service::worker::{Step, StepDone, StepReport};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};
use uuid::Uuid;

const DEV_TOKEN: &str = "importer-test-token";
const SHAREPOINT: &str = "/providers/Microsoft.PowerApps/apis/shared_sharepointonline";
/// The application (client) id of the `test` environment's release bot.
const RELEASE_BOT: Uuid = Uuid::from_u128(0x5e1e_a5e0_b07a_4c1d_9e2f_0a1b_2c3d_4e5f);

/// A simulator with environments `dev` and `test`, an artifact store and a
/// token file in one temporary folder.
struct Fixture {
    sim: Running,
    artifacts: ArtifactStore,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        Self::with_faults(Faults::default()).await
    }

    /// A fixture whose `test` takes `ms` to import.
    async fn with_import_delay(ms: u64) -> Self {
        Self::with_faults(Faults {
            import_delay_ms: ms,
            ..Faults::default()
        })
        .await
    }

    async fn with_faults(faults: Faults) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{DEV_TOKEN}\n")).unwrap();
        let mut config = Config::in_memory();
        config.dev_tokens = vec![DEV_TOKEN.into()];
        let test = EnvironmentConfig {
            connections: vec![ConnectionConfig {
                id: "sharepoint-1".into(),
                connector_id: SHAREPOINT.into(),
                display_name: Some("SharePoint".into()),
                status: "Connected".into(),
            }],
            // Whom a stage may deploy as.
            users: vec![
                UserConfig {
                    domain_name: Some("owner@contoso.com".into()),
                    ..UserConfig::default()
                },
                UserConfig {
                    application_id: Some(RELEASE_BOT),
                    ..UserConfig::default()
                },
            ],
            faults,
            ..EnvironmentConfig::new("test")
        };
        config.environments = vec![EnvironmentConfig::new("dev"), test];
        let sim = EnvSim::start(config).await.unwrap();
        let artifacts = ArtifactStore::open(dir.path().join("artifacts").to_str().unwrap())
            .await
            .unwrap();
        Fixture {
            sim,
            artifacts,
            token_file,
            _dir: dir,
        }
    }

    fn access(&self, env: &str) -> EnvironmentAccess {
        EnvironmentAccess {
            name: env.into(),
            url: self.sim.env_url(env),
            credentials: serde_json::json!({
                "kind": "static_token",
                "token_ref": format!("file:{}", self.token_file.display()),
            }),
        }
    }

    /// A direct client of `env`, to look at what the import did.
    fn client(&self, env: &str) -> Client {
        let mut config = ClientConfig::new(
            self.sim.env_url(env),
            Credentials::StaticToken(DEV_TOKEN.into()),
        );
        config.retry.max_retries = 0;
        Client::new(config).unwrap()
    }

    fn step(&self, import_poll_ms: u64, import_poll_max_ms: u64) -> ImporterStep {
        ImporterStep::new(
            self.artifacts.clone(),
            EnvironmentsConfig {
                request_timeout_ms: 10_000,
                import_poll_ms,
                import_poll_max_ms,
            },
        )
    }

    /// Stores `zip` as the managed file of an artifact of `version`.
    async fn artifact(&self, zip: Vec<u8>, version: &str) -> ArtifactRef {
        let managed_bytes = zip.len() as u64;
        let managed = self.artifacts.put(zip.into()).await.unwrap();
        let unmanaged = self
            .artifacts
            .put(format!("unmanaged {version}").into_bytes().into())
            .await
            .unwrap();
        ArtifactRef {
            managed_sha256: managed.to_string(),
            unmanaged_sha256: unmanaged.to_string(),
            version: version.into(),
            managed_bytes,
        }
    }

    /// Stores the managed Contoso of `version` as an artifact.
    async fn contoso(&self, version: &str) -> ArtifactRef {
        self.artifact(contoso(version).build(), version).await
    }

    fn deployment(&self, solution: &str, settings: Option<serde_json::Value>) -> Deployment {
        Deployment {
            source: Some(self.access("dev")),
            target: Some(self.access("test")),
            settings,
            ..Deployment::between(solution, "dev", "test")
        }
    }

    /// The row of async operation `id` in `test`.
    async fn operation(&self, id: Uuid) -> serde_json::Value {
        let id = id.to_string();
        self.operations("test")
            .await
            .into_iter()
            .find(|o| o["asyncoperationid"] == id.as_str())
            .unwrap_or_else(|| panic!("test has no async operation {id}"))
    }

    /// Drives a new run importing `artifact` as `solution` (with `settings`)
    /// to its end.
    async fn import(
        &self,
        step: &ImporterStep,
        solution: &str,
        settings: Option<serde_json::Value>,
        artifact: ArtifactRef,
    ) -> Vec<StepDone> {
        let deployment = self.deployment(solution, settings);
        drive(step, Uuid::now_v7(), start_command(deployment, artifact)).await
    }

    /// The async operations the target has, as JSON rows.
    async fn operations(&self, env: &str) -> Vec<serde_json::Value> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "{}/api/data/v9.2/asyncoperations",
                self.sim.env_url(env)
            ))
            .bearer_auth(DEV_TOKEN)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        body["value"].as_array().unwrap().clone()
    }
}

/// A managed solution `Contoso` at `version` with a table.
fn contoso(version: &str) -> SolutionZip {
    SolutionZip::new("Contoso", version)
        .publisher("contoso", "cts")
        .managed(true)
        .root_component(1, "cts_order")
}

fn start_command(deployment: Deployment, artifact: ArtifactRef) -> Message {
    Message::Import(ImportCommand {
        deployment,
        artifact,
        async_operation_id: None,
        polls: 0,
    })
}

fn command(message: &Message) -> &ImportCommand {
    match message {
        Message::Import(cmd) => cmd,
        other => panic!("expected an import command, got {other:?}"),
    }
}

fn progress_id(done: &StepDone) -> Uuid {
    match &done.outcome {
        Some(StepOutcome::ImportProgress {
            async_operation_id, ..
        }) => *async_operation_id,
        other => panic!("expected import progress, got {other:?} in {done:?}"),
    }
}

/// Runs only the start of a new run deploying `artifact`.
async fn start_only(
    step: &ImporterStep,
    deployment: Deployment,
    artifact: ArtifactRef,
) -> StepDone {
    let first = Envelope::new(Uuid::now_v7(), start_command(deployment, artifact));
    step.run(&first).await.unwrap()
}

/// Runs `first`, then every poll it leads to, until the step is no longer
/// in progress; returns every result. Waits each poll's delay in between,
/// as the bus would.
async fn drive(step: &ImporterStep, run_id: Uuid, first: Message) -> Vec<StepDone> {
    let mut results = Vec::new();
    let mut envelope = Envelope::new(run_id, first);
    for _ in 0..2_000 {
        let done = step.run(&envelope).await.unwrap();
        let next = done.next.clone();
        let delay = done.next_delay;
        let in_progress = done.report == StepReport::InProgress;
        results.push(done);
        if !in_progress {
            return results;
        }
        tokio::time::sleep(delay.unwrap()).await;
        envelope = envelope.next(next.unwrap());
    }
    panic!("the import did not end after 2000 polls");
}

#[tokio::test]
async fn start_then_polls_import_the_artifact_at_its_version() {
    let fx = Fixture::with_import_delay(150).await;
    let step = fx.step(10, 40);
    let artifact = fx.contoso("1.2.0.3").await;
    let run_id = Uuid::now_v7();

    let results = drive(
        &step,
        run_id,
        start_command(fx.deployment("Contoso", None), artifact.clone()),
    )
    .await;

    let start = &results[0];
    assert_eq!(start.report, StepReport::InProgress);
    let id = progress_id(start);
    assert_eq!(start.next_delay, Some(Duration::from_millis(10)));
    let next = command(start.next.as_ref().unwrap());
    assert_eq!(next.async_operation_id, Some(id));
    assert_eq!(next.polls, 0);
    assert_eq!(next.artifact, artifact);
    assert!(
        results.len() >= 3,
        "an import of 150 ms polled every 10-40 ms takes several polls: {results:?}"
    );
    for poll in &results[1..results.len() - 1] {
        assert_eq!(poll.report, StepReport::InProgress);
        assert_eq!(progress_id(poll), id);
    }
    let last = results.last().unwrap();
    assert_eq!(last.report, StepReport::Succeeded, "{last:?}");
    assert!(last.next.is_none());
    assert!(matches!(
        &last.outcome,
        Some(StepOutcome::Imported { async_operation_id, .. }) if *async_operation_id == id
    ));

    let installed = fx
        .client("test")
        .solution("Contoso")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(installed.version, "1.2.0.3");
    assert!(installed.is_managed);
}

fn progress_percent(done: &StepDone) -> Option<f64> {
    match &done.outcome {
        Some(StepOutcome::ImportProgress { percent, .. }) => *percent,
        other => panic!("expected import progress, got {other:?} in {done:?}"),
    }
}

#[tokio::test]
async fn the_polls_of_a_slow_import_report_its_growing_percentage() {
    let fx = Fixture::with_import_delay(1_200).await;
    let step = fx.step(100, 100);
    let artifact = fx.contoso("1.0.0.0").await;

    let results = fx.import(&step, "Contoso", None, artifact).await;

    assert_eq!(
        progress_percent(&results[0]),
        None,
        "the start reports no percentage yet"
    );
    let last = results.last().unwrap();
    assert_eq!(last.report, StepReport::Succeeded, "{last:?}");
    let percents: Vec<f64> = results[1..results.len() - 1]
        .iter()
        .map(|poll| progress_percent(poll).expect("every poll of a running import has one"))
        .collect();
    assert!(
        percents.len() >= 5,
        "a 1.2 s import polled every 100 ms: {percents:?}"
    );
    // The last may be 100: the import job can finish between the read of
    // the operation and the read of the job (Dataverse's job also reaches
    // 100 before its operation completes).
    assert!(
        percents.iter().all(|p| (0.0..=100.0).contains(p)),
        "a percentage: {percents:?}"
    );
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "the percentage never goes back: {percents:?}"
    );
    assert!(
        percents[0] < 50.0 && percents[percents.len() - 1] > 50.0,
        "it grows with the import: {percents:?}"
    );
}

#[tokio::test]
async fn a_poll_that_cannot_read_the_import_job_goes_on_without_a_percentage() {
    let fx = Fixture::with_import_delay(60_000).await;
    let step = fx.step(10, 10);
    let artifact = fx.contoso("1.0.0.0").await;
    let start = start_only(&step, fx.deployment("Contoso", None), artifact).await;
    let poll = start.next.unwrap();

    // Polled under another run id, the poll names an import job the
    // environment does not have (404): the operation alone decides.
    let done = step
        .run(&Envelope::new(Uuid::now_v7(), poll))
        .await
        .unwrap();

    assert_eq!(done.report, StepReport::InProgress, "{done:?}");
    assert_eq!(progress_percent(&done), None);
    assert!(done.next.is_some());
}

#[tokio::test]
async fn a_stage_deploy_as_imports_as_that_user_or_service_principal() {
    let fx = Fixture::start().await;
    let step = fx.step(10, 40);
    let target = fx.client("test");
    let own = target.who_am_i().await.unwrap().user_id.to_string();
    let owner = target
        .system_user_by_domain_name("owner@contoso.com")
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let bot = target
        .system_user_by_application_id(RELEASE_BOT)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    for (version, identity, expected) in [
        (
            "1.0.0.1",
            DeployIdentity::User {
                user: "owner@contoso.com".into(),
            },
            &owner,
        ),
        (
            "1.0.0.2",
            DeployIdentity::ServicePrincipal {
                application_id: RELEASE_BOT.to_string(),
            },
            &bot,
        ),
    ] {
        let artifact = fx.contoso(version).await;
        let deployment = Deployment {
            deploy_as: Some(identity.clone()),
            ..fx.deployment("Contoso", None)
        };
        let results = drive(&step, Uuid::now_v7(), start_command(deployment, artifact)).await;
        let last = results.last().unwrap();
        assert_eq!(last.report, StepReport::Succeeded, "{identity}: {last:?}");
        let op = fx.operation(progress_id(&results[0])).await;
        assert_eq!(
            op["_createdby_value"],
            expected.as_str(),
            "{identity}: {op}"
        );
        assert_eq!(
            op["_createdonbehalfby_value"],
            own.as_str(),
            "{identity}: {op}"
        );
        assert_eq!(
            target.solution("Contoso").await.unwrap().unwrap().version,
            version
        );
    }

    // Without deploy-as the environment's own user imports.
    let artifact = fx.contoso("1.0.0.3").await;
    let results = fx.import(&step, "Contoso", None, artifact).await;
    let op = fx.operation(progress_id(&results[0])).await;
    assert_eq!(op["_createdby_value"], own.as_str(), "{op}");
    assert_eq!(op["_createdonbehalfby_value"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_deploy_as_identity_unknown_to_the_target_fails_the_run_before_importing() {
    let fx = Fixture::start().await;
    let step = fx.step(10, 40);
    let artifact = fx.contoso("1.0.0.1").await;
    for (identity, says) in [
        (
            DeployIdentity::User {
                user: "stranger@contoso.com".into(),
            },
            "the stage deploys as user stranger@contoso.com, which cannot act in test: user stranger@contoso.com is not a user of this environment",
        ),
        (
            DeployIdentity::ServicePrincipal {
                application_id: "not-an-id".into(),
            },
            "is not an application (client) id",
        ),
        (
            // An object id goes straight to the target, which refuses it.
            DeployIdentity::User {
                user: Uuid::from_u128(7).to_string(),
            },
            "could not start: dataverse returned 404 (0x80040217): systemuser With AzureActiveDirectoryObjectId",
        ),
    ] {
        let deployment = Deployment {
            deploy_as: Some(identity.clone()),
            ..fx.deployment("Contoso", None)
        };
        let done = start_only(&step, deployment, artifact.clone()).await;
        assert_eq!(done.report, StepReport::Failed, "{identity}: {done:?}");
        let detail = done.detail.unwrap();
        assert!(detail.contains(says), "{identity}: {detail}");
    }
    assert!(fx.operations("test").await.is_empty());
    assert!(
        fx.client("test")
            .solution("Contoso")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_redelivered_start_finds_the_same_import() {
    let fx = Fixture::with_import_delay(100).await;
    let step = fx.step(10, 40);
    let artifact = fx.contoso("1.0.0.1").await;
    let run_id = Uuid::now_v7();
    let start = Envelope::new(
        run_id,
        start_command(fx.deployment("Contoso", None), artifact),
    );
    let mut redelivered = start.clone();
    redelivered.attempt = 2;

    let first = step.run(&start).await.unwrap();
    let second = step.run(&redelivered).await.unwrap();

    assert_eq!(progress_id(&first), progress_id(&second));
    assert_eq!(first.next, second.next);
    let operations = fx.operations("test").await;
    assert_eq!(operations.len(), 1, "{operations:?}");
    assert_eq!(
        operations[0]["asyncoperationid"],
        progress_id(&first).to_string()
    );
}

#[tokio::test]
async fn a_crash_after_the_start_imports_exactly_once() {
    let fx = Fixture::with_import_delay(50).await;
    let step = fx.step(10, 40);
    let artifact = fx.contoso("2.0.0.0").await;
    let run_id = Uuid::now_v7();
    let start = start_command(fx.deployment("Contoso", None), artifact);

    // The worker started the import, then died before publishing its poll.
    let lost = step
        .run(&Envelope::new(run_id, start.clone()))
        .await
        .unwrap();
    let results = drive(&step, run_id, start).await;

    assert_eq!(progress_id(&results[0]), progress_id(&lost));
    let last = results.last().unwrap();
    assert_eq!(last.report, StepReport::Succeeded, "{last:?}");
    let operations = fx.operations("test").await;
    assert_eq!(operations.len(), 1, "{operations:?}");
    assert_eq!(operations[0]["statuscode"], 30);
    let installed = fx
        .client("test")
        .solution("Contoso")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(installed.version, "2.0.0.0");
}

#[tokio::test]
async fn a_missing_dependency_fails_with_the_environments_message() {
    let fx = Fixture::start().await;
    let step = fx.step(5, 20);
    let zip = SolutionZip::new("Invoices", "1.0.0.0")
        .publisher("contoso", "cts")
        .managed(true)
        .root_component(1, "cts_invoice")
        .missing_dependency(
            DepEnd::new("1", "cts_customer")
                .display_name("Customer")
                .solution("CoreTables (1.0.0.0)"),
            DepEnd::new("1", "cts_invoice"),
        )
        .build();
    let artifact = fx.artifact(zip, "1.0.0.0").await;

    let results = fx.import(&step, "Invoices", None, artifact).await;

    let last = results.last().unwrap();
    assert_eq!(last.report, StepReport::Failed, "{last:?}");
    let reason = last.detail.as_deref().unwrap();
    assert!(
        reason.starts_with(
            "the import into test failed: The following solution cannot be imported: Invoices. \
             Some dependencies are missing."
        ),
        "{reason}"
    );
    assert!(reason.contains("cts_customer"), "{reason}");
    match &last.outcome {
        Some(StepOutcome::Imported {
            async_operation_id,
            message: Some(message),
        }) => {
            assert_eq!(*async_operation_id, progress_id(&results[0]));
            assert_eq!(
                reason,
                format!("the import into test failed: {message}"),
                "the environment's message is kept verbatim"
            );
        }
        other => panic!("expected the failed import's outcome, got {other:?}"),
    }
    assert!(
        fx.client("test")
            .solution("Invoices")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_import_the_environment_fails_reports_its_message_verbatim() {
    let message = "Solution manifest import: FAILURE: the organization is in administration mode";
    let fx = Fixture::with_faults(Faults {
        fail_imports_with: Some(message.into()),
        ..Faults::default()
    })
    .await;
    let step = fx.step(5, 20);
    let artifact = fx.contoso("1.0.0.0").await;

    let results = fx.import(&step, "Contoso", None, artifact).await;

    let last = results.last().unwrap();
    assert_eq!(last.report, StepReport::Failed);
    assert_eq!(
        last.detail.as_deref(),
        Some(format!("the import into test failed: {message}").as_str())
    );
    assert!(last.next.is_none());
}

#[tokio::test]
async fn settings_become_component_parameters() {
    let fx = Fixture::start().await;
    let step = fx.step(5, 20);
    let zip = contoso("1.0.0.0")
        .env_var("cts_ApiUrl", 100000000, Some("https://default"), None)
        .env_var("cts_Region", 100000000, None, None)
        .connection_reference("cts_sharepoint", SHAREPOINT)
        .build();
    let artifact = fx.artifact(zip, "1.0.0.0").await;
    // Empty entries are left out: the simulator refuses a parameter naming
    // an unknown variable or reference, so passing them would fail the import.
    let settings = serde_json::json!({
        "EnvironmentVariables": [
            {"SchemaName": "cts_ApiUrl", "Value": "https://api.contoso.test"},
            {"SchemaName": "cts_NotInTheSolution", "Value": ""},
        ],
        "ConnectionReferences": [
            {"LogicalName": "cts_sharepoint", "ConnectionId": "sharepoint-1", "ConnectorId": SHAREPOINT},
            {"LogicalName": "cts_unknown", "ConnectionId": "", "ConnectorId": SHAREPOINT},
        ],
    });

    let results = fx.import(&step, "Contoso", Some(settings), artifact).await;

    let last = results.last().unwrap();
    assert_eq!(last.report, StepReport::Succeeded, "{last:?}");
    let client = fx.client("test");
    let values = client.environment_variable_values().await.unwrap();
    let api_url = values
        .iter()
        .find(|v| v.schema_name.eq_ignore_ascii_case("cts_ApiUrl"))
        .unwrap();
    assert_eq!(api_url.value.as_deref(), Some("https://api.contoso.test"));
    assert!(
        !values
            .iter()
            .any(|v| v.schema_name.eq_ignore_ascii_case("cts_Region")),
        "a variable without a setting gets no value: {values:?}"
    );
    let references = client.connection_references().await.unwrap();
    let sharepoint = references
        .iter()
        .find(|r| r.logical_name == "cts_sharepoint")
        .unwrap();
    assert_eq!(sharepoint.connection_id.as_deref(), Some("sharepoint-1"));
}

#[tokio::test]
async fn the_poll_delay_doubles_up_to_the_maximum() {
    let fx = Fixture::with_import_delay(60_000).await;
    let step = fx.step(100, 350);
    let artifact = fx.contoso("1.0.0.0").await;
    let run_id = Uuid::now_v7();

    let mut envelope = Envelope::new(
        run_id,
        start_command(fx.deployment("Contoso", None), artifact),
    );
    let mut delays = Vec::new();
    let mut polls = Vec::new();
    for _ in 0..6 {
        // Polled at once: the delays are what the bus would wait.
        let done = step.run(&envelope).await.unwrap();
        assert_eq!(done.report, StepReport::InProgress, "{done:?}");
        delays.push(done.next_delay.unwrap().as_millis() as u64);
        let next = done.next.unwrap();
        polls.push(command(&next).polls);
        envelope = envelope.next(next);
    }
    assert_eq!(delays, [100, 100, 200, 350, 350, 350]);
    assert_eq!(polls, [0, 1, 2, 3, 4, 5]);
    assert_eq!(fx.operations("test").await.len(), 1);
}

#[tokio::test]
async fn an_operation_the_environment_does_not_know_fails_the_run() {
    let fx = Fixture::start().await;
    let step = fx.step(5, 20);
    let artifact = fx.contoso("1.0.0.0").await;
    let unknown = Uuid::new_v4();
    let poll = Message::Import(ImportCommand {
        deployment: fx.deployment("Contoso", None),
        artifact,
        async_operation_id: Some(unknown),
        polls: 3,
    });

    let done = step
        .run(&Envelope::new(Uuid::now_v7(), poll))
        .await
        .unwrap();

    assert_eq!(done.report, StepReport::Failed);
    let reason = done.detail.unwrap();
    assert!(reason.contains(&unknown.to_string()), "{reason}");
    assert!(reason.contains("does not know"), "{reason}");
    assert!(done.next.is_none());
}

#[tokio::test]
async fn an_artifact_missing_from_the_store_fails_the_run() {
    let fx = Fixture::start().await;
    let step = fx.step(5, 20);
    let mut artifact = fx.contoso("1.0.0.0").await;
    artifact.managed_sha256 = slipway_artifacts::ArtifactId::of(b"never stored").to_string();

    let done = start_only(&step, fx.deployment("Contoso", None), artifact).await;

    assert_eq!(done.report, StepReport::Failed);
    let reason = done.detail.unwrap();
    assert!(reason.contains("not in the artifact store"), "{reason}");
    assert!(fx.operations("test").await.is_empty());
}

#[tokio::test]
async fn only_polls_are_continuations() {
    let fx = Fixture::start().await;
    let step = fx.step(5, 20);
    let artifact = fx.contoso("1.0.0.0").await;
    let start = ImportCommand {
        deployment: fx.deployment("Contoso", None),
        artifact,
        async_operation_id: None,
        polls: 0,
    };
    let poll = ImportCommand {
        async_operation_id: Some(Uuid::new_v4()),
        ..start.clone()
    };
    let run_id = Uuid::now_v7();
    assert!(!step.is_continuation(&Envelope::new(run_id, Message::Import(start.clone()))));
    assert!(step.is_continuation(&Envelope::new(run_id, Message::Import(poll))));
    let export = Message::Export(slipway_messages::ExportCommand {
        deployment: start.deployment,
    });
    assert!(!step.is_continuation(&Envelope::new(run_id, export)));
}

#[tokio::test]
async fn placeholder_deployments_succeed_at_once() {
    let fx = Fixture::start().await;
    let step = fx.step(5, 20);
    let mut deployment = fx.deployment("Contoso", None);
    deployment.source = None;
    deployment.target = None;
    let artifact = ArtifactRef {
        managed_sha256: "placeholder:Contoso:1.0.0.0:managed".into(),
        unmanaged_sha256: "placeholder:Contoso:1.0.0.0:unmanaged".into(),
        version: "1.0.0.0".into(),
        managed_bytes: 0,
    };

    let done = start_only(&step, deployment, artifact).await;

    assert_eq!(done, StepDone::succeeded(None, None));
    assert!(fx.operations("test").await.is_empty());
}

/// The worker loop on the in-process bus: one `started`, progress events,
/// one `succeeded`; the polls travel through the bus's delayed publish.
#[tokio::test]
async fn the_worker_reports_progress_from_the_start_and_one_success() {
    let fx = Fixture::with_import_delay(300).await;
    let step = fx.step(20, 40);
    let artifact = fx.contoso("3.1.0.0").await;
    let bus = Bus::connect(&BusConfig {
        transport: Transport::InProcess,
        retry_base_ms: 10,
        retry_max_ms: 40,
        max_attempts: 4,
        ..BusConfig::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(slipway_service::worker::serve(
        bus.clone(),
        step,
        shutdown.clone(),
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    let events = tokio::spawn({
        let bus = bus.clone();
        let shutdown = shutdown.clone();
        async move {
            bus.consume(
                QueueName::Events,
                FnHandler(move |envelope: Envelope| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(envelope);
                        Ok(())
                    }
                }),
                shutdown,
            )
            .await
        }
    });
    let run_id = Uuid::now_v7();
    bus.publish(&Envelope::new(
        run_id,
        start_command(fx.deployment("Contoso", None), artifact),
    ))
    .await
    .unwrap();

    let mut seen: Vec<RunEvent> = Vec::new();
    loop {
        let envelope = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the import should end within 30 s")
            .unwrap();
        assert_eq!(envelope.run_id, run_id);
        let Message::RunEvent(event) = envelope.message else {
            panic!("the event queue carries run events");
        };
        let done = matches!(event.status, StepStatus::Succeeded | StepStatus::Failed);
        seen.push(event);
        if done {
            break;
        }
    }
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    events.await.unwrap().unwrap();

    assert!(seen.iter().all(|e| e.step == Some(PipelineStep::Import)));
    let bare_starts = seen
        .iter()
        .filter(|e| e.status == StepStatus::Started && e.outcome.is_none())
        .count();
    // Starting the import took less than `worker.started_event_after_ms`:
    // its first progress report is the import's `started`, and the polls
    // (continuations) never report a bare start.
    assert_eq!(
        bare_starts, 0,
        "no bare `started` for a quick start: {seen:?}"
    );
    assert_eq!(seen[0].status, StepStatus::Started);
    assert!(
        matches!(seen[0].outcome, Some(StepOutcome::ImportProgress { .. })),
        "{seen:?}"
    );
    let progress: Vec<Uuid> = seen
        .iter()
        .filter_map(|e| match (&e.status, &e.outcome) {
            (
                StepStatus::Started,
                Some(StepOutcome::ImportProgress {
                    async_operation_id, ..
                }),
            ) => Some(*async_operation_id),
            _ => None,
        })
        .collect();
    assert!(
        progress.len() >= 3,
        "a 300 ms import polled every 20-40 ms reports progress several times: {seen:?}"
    );
    let id = progress[0];
    assert!(progress.iter().all(|p| *p == id));
    assert_eq!(
        progress.len() + 1,
        seen.len(),
        "nothing but progress (from the start) and the end: {seen:?}"
    );
    let last = seen.last().unwrap();
    assert_eq!(last.status, StepStatus::Succeeded, "{last:?}");
    assert!(matches!(
        &last.outcome,
        Some(StepOutcome::Imported { async_operation_id, .. }) if *async_operation_id == id
    ));
    let installed = fx
        .client("test")
        .solution("Contoso")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(installed.version, "3.1.0.0");
    assert_eq!(fx.operations("test").await.len(), 1);
    assert_eq!(
        bus.drain_parked(slipway_messages::Role::Importer)
            .await
            .unwrap(),
        []
    );
}
