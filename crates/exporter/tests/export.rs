//! The real export, over real HTTP against the environment simulator started
//! in-process (one simulator and one artifact folder per test).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use slipway_artifacts::{ArtifactId, ArtifactStore};
use slipway_bus::HandlerError;
use slipway_dataverse::{Client, ClientConfig, Credentials, ImportRequest};
use slipway_envsim::config::EnvironmentConfig;
use slipway_envsim::{Config, EnvSim, Faults, Running};
use slipway_exporter::ExporterStep;
use slipway_messages::{
    ArtifactRef, Deployment, Envelope, EnvironmentAccess, ExportCommand, Message, StepOutcome,
    ValidateCommand,
};
use slipway_service::config::EnvironmentsConfig;
use slipway_service::worker::{Step, StepDone, StepReport};
use slipway_solution::{Limits, Solution};
use slipway_testkit::solution_zip::SolutionZip;
use tempfile::TempDir;

const DEV_TOKEN: &str = "dev-token";
const OUTLOOK: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";

/// A simulator with `dev` and `test`, a token file, and an exporter storing
/// into a fresh folder.
struct Harness {
    sim: Running,
    dir: TempDir,
    token_file: PathBuf,
    step: ExporterStep,
}

impl Harness {
    async fn start() -> Harness {
        let mut config = Config::in_memory();
        config.dev_tokens = vec![DEV_TOKEN.into()];
        config.environments = vec![
            EnvironmentConfig::new("dev"),
            EnvironmentConfig::new("test"),
        ];
        let sim = EnvSim::start(config).await.unwrap();
        let dir = TempDir::new().unwrap();
        let token_file = dir.path().join("dev-token");
        std::fs::write(&token_file, format!("{DEV_TOKEN}\n")).unwrap();
        let store = ArtifactStore::open(artifacts_dir(&dir).to_str().unwrap())
            .await
            .unwrap();
        let environments = EnvironmentsConfig {
            request_timeout_ms: 10_000,
            ..EnvironmentsConfig::default()
        };
        Harness {
            sim,
            step: ExporterStep::new(store, environments),
            dir,
            token_file,
        }
    }

    /// Installs `zip` into `env` the way a maker's work lands there: an import.
    async fn install(&self, env: &str, zip: Vec<u8>) {
        let mut c = ClientConfig::new(
            self.sim.env_url(env),
            Credentials::StaticToken(DEV_TOKEN.into()),
        );
        c.poll_interval = Duration::from_millis(20);
        c.poll_timeout = Some(Duration::from_secs(30));
        Client::new(c)
            .unwrap()
            .import_solution(&ImportRequest::new(Bytes::from(zip)))
            .await
            .unwrap();
    }

    fn credentials(&self, token_file: &Path) -> serde_json::Value {
        serde_json::json!({
            "kind": "static_token",
            "token_ref": format!("file:{}", token_file.display()),
        })
    }

    fn deployment(&self, solution: &str, version: Option<&str>) -> Deployment {
        let access = |name: &str| EnvironmentAccess {
            name: name.into(),
            url: self.sim.env_url(name),
            credentials: self.credentials(&self.token_file),
        };
        Deployment {
            source: Some(access("dev")),
            target: Some(access("test")),
            ..placeholder_deployment(solution, version)
        }
    }

    async fn export(&self, deployment: Deployment) -> Result<StepDone, HandlerError> {
        self.step.run(&export_envelope(deployment)).await
    }

    /// The solution as dev has it installed now.
    async fn dev_solution(&self, name: &str) -> slipway_dataverse::InstalledSolution {
        Client::new(ClientConfig::new(
            self.sim.env_url("dev"),
            Credentials::StaticToken(DEV_TOKEN.into()),
        ))
        .unwrap()
        .solution(name)
        .await
        .unwrap()
        .unwrap()
    }

    /// A store opened afresh on the same folder: what the validator sees.
    async fn reopened_store(&self) -> ArtifactStore {
        ArtifactStore::open(artifacts_dir(&self.dir).to_str().unwrap())
            .await
            .unwrap()
    }
}

fn artifacts_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("artifacts")
}

fn placeholder_deployment(solution: &str, version: Option<&str>) -> Deployment {
    Deployment {
        version: version.map(Into::into),
        ..Deployment::between(solution, "dev", "test")
    }
}

fn export_envelope(deployment: Deployment) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        Message::Export(ExportCommand { deployment }),
    )
}

/// An unmanaged solution as a maker builds it in dev.
fn contoso(version: &str) -> Vec<u8> {
    SolutionZip::new("ContosoApp", version)
        .display_name("Contoso App")
        .publisher("contoso", "cts")
        .root_component(1, "cts_order")
        .connection_reference("cts_outlook", OUTLOOK)
        .env_var("cts_ApiUrl", 100_000_000, Some("https://example.com"), None)
        .build()
}

/// The artifact a successful export reports, after checking the event and
/// the next command agree on it.
fn exported(done: &StepDone, deployment: &Deployment) -> ArtifactRef {
    exported_from(done, deployment).0
}

/// [`exported`] with the version the source had before the export.
fn exported_from(done: &StepDone, deployment: &Deployment) -> (ArtifactRef, Option<String>) {
    assert_eq!(done.report, StepReport::Succeeded, "{:?}", done.detail);
    let Some(StepOutcome::Exported {
        artifact,
        source_version,
    }) = &done.outcome
    else {
        panic!("expected an Exported outcome, got {:?}", done.outcome);
    };
    assert_eq!(
        done.next,
        Some(Message::Validate(ValidateCommand {
            deployment: deployment.clone(),
            artifact: artifact.clone(),
        }))
    );
    assert_eq!(done.next_delay, None);
    (artifact.clone(), source_version.clone())
}

/// Reads a stored file back (sha256 checked by the store) as a solution.
async fn read_back(store: &ArtifactStore, sha256: &str) -> (Bytes, Solution) {
    let id: ArtifactId = sha256.parse().unwrap();
    let bytes = store.get(&id).await.unwrap();
    let solution = Solution::from_bytes(&bytes, &Limits::default()).unwrap();
    (bytes, solution)
}

fn failed_reason(done: &StepDone) -> &str {
    assert_eq!(done.report, StepReport::Failed, "{done:?}");
    assert_eq!(done.next, None);
    done.detail.as_deref().unwrap()
}

#[tokio::test]
async fn exports_both_files_with_the_requested_version() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;
    let deployment = h.deployment("ContosoApp", Some("1.2.0.0"));

    let done = h.export(deployment.clone()).await.unwrap();
    let artifact = exported(&done, &deployment);
    assert_eq!(artifact.version, "1.2.0.0");
    assert_ne!(artifact.managed_sha256, artifact.unmanaged_sha256);

    let store = h.reopened_store().await;
    let (managed_bytes, managed) = read_back(&store, &artifact.managed_sha256).await;
    let (_, unmanaged) = read_back(&store, &artifact.unmanaged_sha256).await;
    assert_eq!(artifact.managed_bytes, managed_bytes.len() as u64);
    for solution in [&managed, &unmanaged] {
        assert_eq!(solution.unique_name, "ContosoApp");
        assert_eq!(solution.version.to_string(), "1.2.0.0");
        assert_eq!(solution.connection_references.len(), 1);
        assert_eq!(solution.environment_variables.len(), 1);
    }
    assert!(managed.managed);
    assert!(!unmanaged.managed);

    // The files sit under their sha256 in the configured folder.
    let on_disk = artifacts_dir(&h.dir)
        .join("sha256")
        .join(&artifact.managed_sha256[..2])
        .join(&artifact.managed_sha256);
    assert_eq!(std::fs::read(on_disk).unwrap(), managed_bytes);

    // Dev moves on to the exported version, and stays unmanaged.
    let installed = h.dev_solution("ContosoApp").await;
    assert_eq!(installed.version, "1.2.0.0");
    assert!(!installed.is_managed);
    assert_eq!(done.detail, None, "nothing to tell the maker");
}

#[tokio::test]
async fn without_a_version_the_installed_revision_is_bumped() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.2.3.4")).await;
    let deployment = h.deployment("ContosoApp", None);

    let done = h.export(deployment.clone()).await.unwrap();
    let (artifact, source_version) = exported_from(&done, &deployment);
    assert_eq!(artifact.version, "1.2.3.5");
    assert_eq!(source_version.as_deref(), Some("1.2.3.4"));
    let store = h.reopened_store().await;
    let (_, managed) = read_back(&store, &artifact.managed_sha256).await;
    let (_, unmanaged) = read_back(&store, &artifact.unmanaged_sha256).await;
    assert_eq!(managed.version.to_string(), "1.2.3.5");
    assert_eq!(unmanaged.version.to_string(), "1.2.3.5");
    assert!(managed.managed);
    assert!(!unmanaged.managed);
}

#[tokio::test]
async fn the_source_moves_on_so_the_next_export_bumps_again() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;
    let deployment = h.deployment("ContosoApp", None);

    let (first, before_first) =
        exported_from(&h.export(deployment.clone()).await.unwrap(), &deployment);
    assert_eq!(first.version, "1.0.0.1");
    assert_eq!(before_first.as_deref(), Some("1.0.0.0"));
    let dev = h.dev_solution("ContosoApp").await;
    assert_eq!(dev.version, "1.0.0.1", "dev has the exported version now");
    assert!(!dev.is_managed);

    let (second, before_second) =
        exported_from(&h.export(deployment.clone()).await.unwrap(), &deployment);
    assert_eq!(second.version, "1.0.0.2", "never the same version twice");
    assert_eq!(before_second.as_deref(), Some("1.0.0.1"));
    assert_eq!(h.dev_solution("ContosoApp").await.version, "1.0.0.2");
    let (_, unmanaged) = read_back(&h.reopened_store().await, &second.unmanaged_sha256).await;
    assert_eq!(unmanaged.version.to_string(), "1.0.0.2");
}

#[tokio::test]
async fn a_version_not_higher_than_the_source_leaves_it_alone() {
    let h = Harness::start().await;
    h.install("dev", contoso("2.0.0.0")).await;
    for asked in ["1.5.0.0", "2.0"] {
        let deployment = h.deployment("ContosoApp", Some(asked));
        let done = h.export(deployment.clone()).await.unwrap();
        let (artifact, before) = exported_from(&done, &deployment);
        assert_eq!(artifact.version, asked);
        assert_eq!(before.as_deref(), Some("2.0.0.0"));
        assert_eq!(done.detail, None);
        assert_eq!(h.dev_solution("ContosoApp").await.version, "2.0.0.0");
    }
}

#[tokio::test]
async fn the_solution_is_found_by_its_unique_name_in_any_case() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;
    let deployment = h.deployment("contosoapp", Some("1.0.0.1"));

    let done = h.export(deployment.clone()).await.unwrap();
    let artifact = exported(&done, &deployment);
    let (_, managed) = read_back(&h.reopened_store().await, &artifact.managed_sha256).await;
    assert_eq!(managed.unique_name, "ContosoApp");
}

/// With the version settled (given, as the gateway gives it for every
/// target of a fan-out): a redelivery after dev moved on exports the same.
#[tokio::test]
async fn a_redelivered_command_gives_the_same_artifact() {
    let h = Harness::start().await;
    h.install("dev", contoso("2.0.0.0")).await;
    let deployment = h.deployment("ContosoApp", Some("2.0.0.1"));
    let envelope = export_envelope(deployment.clone());

    let first = exported(&h.step.run(&envelope).await.unwrap(), &deployment);
    let mut redelivered = envelope.clone();
    redelivered.attempt = 2;
    let second = exported(&h.step.run(&redelivered).await.unwrap(), &deployment);
    assert_eq!(first, second);
    assert_eq!(second.version, "2.0.0.1");
    assert_eq!(h.dev_solution("ContosoApp").await.version, "2.0.0.1");

    let store = h.reopened_store().await;
    let (_, managed) = read_back(&store, &second.managed_sha256).await;
    assert!(managed.managed);
    let (_, unmanaged) = read_back(&store, &second.unmanaged_sha256).await;
    assert!(!unmanaged.managed);
}

#[tokio::test]
async fn an_unknown_solution_fails_the_run_with_a_hint() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;

    let done = h
        .export(h.deployment("Contoso App", Some("1.0.0.1")))
        .await
        .unwrap();
    assert_eq!(done.outcome, None);
    assert_eq!(
        failed_reason(&done),
        "solution Contoso App is not in environment dev; check the unique name (not the display name)"
    );
}

#[tokio::test]
async fn a_managed_solution_in_the_source_fails_the_run() {
    let h = Harness::start().await;
    h.install(
        "dev",
        SolutionZip::new("Vendor", "3.0.0.0").managed(true).build(),
    )
    .await;

    let done = h.export(h.deployment("Vendor", None)).await.unwrap();
    assert_eq!(
        failed_reason(&done),
        "solution Vendor is managed in dev; pipelines deploy unmanaged solutions from a development environment"
    );
}

#[tokio::test]
async fn a_version_that_does_not_parse_fails_naming_it() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;

    let done = h
        .export(h.deployment("ContosoApp", Some("1.x.0")))
        .await
        .unwrap();
    let reason = failed_reason(&done);
    assert!(reason.contains("\"1.x.0\""), "{reason}");
    assert!(reason.contains("not a valid solution version"), "{reason}");
    assert!(
        std::fs::read_dir(artifacts_dir(&h.dir)).unwrap().count() == 0,
        "nothing may be stored for a refused version"
    );
}

#[tokio::test]
async fn a_missing_token_file_fails_naming_the_file() {
    let h = Harness::start().await;
    let missing = h.dir.path().join("no-such-token");
    let mut deployment = h.deployment("ContosoApp", None);
    if let Some(source) = deployment.source.as_mut() {
        source.credentials = h.credentials(&missing);
    }

    let done = h.export(deployment).await.unwrap();
    let reason = failed_reason(&done);
    assert!(reason.contains("cannot call environment dev"), "{reason}");
    assert!(reason.contains(&missing.display().to_string()), "{reason}");
    assert_eq!(h.sim.stats("dev").unwrap().requests, 0);
}

#[tokio::test]
async fn an_environment_refusing_fails_with_its_message() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;
    let wrong = h.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-a-token").unwrap();
    let mut deployment = h.deployment("ContosoApp", None);
    if let Some(source) = deployment.source.as_mut() {
        source.credentials = h.credentials(&wrong);
    }

    let done = h.export(deployment).await.unwrap();
    let reason = failed_reason(&done);
    assert!(reason.contains("environment dev refused"), "{reason}");
    assert!(
        reason.contains("the bearer token is not valid"),
        "the environment's own message is kept: {reason}"
    );
    assert!(
        !reason.contains("not-a-token"),
        "never show credentials: {reason}"
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;
    h.sim
        .set_faults(
            "dev",
            Faults {
                server_error_every_nth: 1,
                server_error_status: Some(503),
                ..Faults::default()
            },
        )
        .unwrap();

    // The client retries 503s itself first (with its default backoff), then
    // hands the error to the bus as transient.
    match h.export(h.deployment("ContosoApp", None)).await {
        Err(HandlerError::Transient(reason)) => {
            assert!(reason.contains("503"), "{reason}");
            assert!(reason.contains("will retry"), "{reason}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert!(h.sim.stats("dev").unwrap().server_errors > 1);
    assert!(
        std::fs::read_dir(artifacts_dir(&h.dir)).unwrap().count() == 0,
        "nothing is stored when the export did not happen"
    );

    // Once the environment recovers, the retried command succeeds.
    h.sim.set_faults("dev", Faults::default()).unwrap();
    let deployment = h.deployment("ContosoApp", None);
    exported(&h.export(deployment.clone()).await.unwrap(), &deployment);
}

#[tokio::test]
async fn long_throttling_is_transient() {
    let h = Harness::start().await;
    h.install("dev", contoso("1.0.0.0")).await;
    h.sim
        .set_faults(
            "dev",
            Faults {
                throttle_every_nth: 1,
                retry_after_secs: 3_600,
                ..Faults::default()
            },
        )
        .unwrap();

    match h.export(h.deployment("ContosoApp", None)).await {
        Err(HandlerError::Transient(reason)) => {
            assert!(reason.contains("throttled"), "{reason}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_deployment_without_environments_gets_the_placeholder_artifact() {
    let dir = TempDir::new().unwrap();
    let store = ArtifactStore::open(dir.path().to_str().unwrap())
        .await
        .unwrap();
    let step = ExporterStep::new(store, EnvironmentsConfig::default());

    // No environments at all, and only a source: both are placeholders.
    let mut only_source = placeholder_deployment("Contoso", Some("1.0.0.2"));
    only_source.source = Some(EnvironmentAccess {
        name: "dev".into(),
        url: "http://127.0.0.1:9/dev".into(),
        credentials: serde_json::json!({"kind": "static_token", "token_ref": "env:NOPE"}),
    });
    for deployment in [
        placeholder_deployment("Contoso", Some("1.0.0.2")),
        only_source,
    ] {
        let done = step
            .run(&export_envelope(deployment.clone()))
            .await
            .unwrap();
        let artifact = exported(&done, &deployment);
        assert_eq!(
            artifact,
            ArtifactRef {
                managed_sha256: "placeholder:Contoso:1.0.0.2:managed".into(),
                unmanaged_sha256: "placeholder:Contoso:1.0.0.2:unmanaged".into(),
                version: "1.0.0.2".into(),
                managed_bytes: 0,
            }
        );
    }
    let done = step
        .run(&export_envelope(placeholder_deployment("Contoso", None)))
        .await
        .unwrap();
    let Some(StepOutcome::Exported {
        artifact,
        source_version: None,
    }) = done.outcome
    else {
        panic!("expected an Exported outcome without a source version");
    };
    assert_eq!(artifact.version, "1.0.0.0");
    assert_eq!(
        artifact.managed_sha256,
        "placeholder:Contoso:1.0.0.0:managed"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the placeholder stores nothing"
    );
}

#[tokio::test]
async fn other_commands_are_refused_for_good() {
    let h = Harness::start().await;
    let deployment = h.deployment("ContosoApp", None);
    let envelope = Envelope::new(
        uuid::Uuid::now_v7(),
        Message::Validate(ValidateCommand {
            deployment,
            artifact: ArtifactRef {
                managed_sha256: "x".into(),
                unmanaged_sha256: "y".into(),
                version: "1.0.0.0".into(),
                managed_bytes: 0,
            },
        }),
    );
    match h.step.run(&envelope).await {
        Err(HandlerError::Permanent(reason)) => assert!(reason.contains("validate"), "{reason}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}
