//! The validator: checks an artifact against the target environment before
//! anything is imported, and says what stands in the way in words a maker
//! understands.
//!
//! For a real deployment ([`Deployment::is_real`]) it reads the managed
//! artifact from the store (verified by its sha256), parses it, and asks the
//! target:
//!
//! - the installed version (`solutions`): the artifact must be higher unless
//!   the pipeline allows redeploying older versions, and a managed import
//!   cannot upgrade a solution installed unmanaged;
//! - `StageSolution` with the managed zip: missing dependencies and errors;
//! - connection references: the connection from the deployment settings,
//!   else the one already bound in the target; it must exist, be of the
//!   reference's connector and be connected. The target's connections of
//!   that connector are listed as candidates;
//! - environment variables: the value from the settings, else the target's
//!   current value, else the solution's own; it must fit the type;
//! - the stage's policies ([`slipway_policy::StagePolicies::check`]);
//! - the component diff against the installed solution
//!   (`msdyn_solutioncomponentsummaries`; everything is added when the
//!   solution is not installed).
//!
//! The verdict is `failed` for what settings cannot fix (missing
//! dependencies, errors, the version, policies), `needs_settings` for
//! connection references and environment variables, else `passed`. A passed
//! validation hands the importer the same artifact unless the deployment
//! holds after validation; `needs_settings` ends the step without a next
//! command (the gateway waits for settings); `failed` ends the run with a
//! one-line reason.
//!
//! Transient environment and store errors are retried by the bus; an
//! environment that refuses the worker (credentials, URL) parks the command.
//! A deployment without environments ([`Deployment::is_real`] false) gets the
//! placeholder: a passed report and the import command, as before.
//!
//! It never touches the database, never imports, and never logs credentials
//! or environment variable values.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod checks;

use std::time::Duration;

use anyhow::Context as _;
use slipway_artifacts::{ArtifactError, ArtifactId, ArtifactStore};
use slipway_bus::HandlerError;
use slipway_dataverse::DataverseError;
use slipway_messages::{
    Deployment, Envelope, EnvironmentAccess, ImportCommand, Message, Role, StepOutcome,
    ValidateCommand, ValidationReport, Verdict,
};
use slipway_service::config::EnvironmentsConfig;
use slipway_service::worker::{Step, StepDone};
use slipway_solution::{Limits, Solution};

use crate::checks::Settings;

/// The validation step: where artifacts are read from, and how environments
/// are called.
#[derive(Debug, Clone)]
pub struct ValidatorStep {
    artifacts: ArtifactStore,
    environments: EnvironmentsConfig,
}

impl ValidatorStep {
    /// A step reading artifacts from `artifacts` and calling environments
    /// with `environments`' timeouts.
    pub fn new(artifacts: ArtifactStore, environments: EnvironmentsConfig) -> Self {
        ValidatorStep {
            artifacts,
            environments,
        }
    }

    /// The step the service configuration describes (`artifacts.url`,
    /// `[environments]`).
    pub async fn from_config(config: &slipway_service::config::Config) -> anyhow::Result<Self> {
        let url = &config.artifacts.url;
        let artifacts = ArtifactStore::open(url).await.with_context(|| {
            format!(
                "cannot open the artifact store at artifacts.url = {url:?}; set artifacts.url to a folder, file:///abs/dir or s3://bucket/prefix that the exporter writes to"
            )
        })?;
        Ok(Self::new(artifacts, config.environments.clone()))
    }

    /// The real validation against the target environment.
    async fn validate(
        &self,
        cmd: &ValidateCommand,
        target: &EnvironmentAccess,
    ) -> Result<StepDone, HandlerError> {
        let deployment = &cmd.deployment;
        let bytes = match self.read_artifact(cmd).await? {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(StepDone::failed(reason, None)),
        };
        let artifact_len = bytes.len() as u64;
        // Parsing hashes every entry; keep it off the async threads.
        let parsing = bytes.clone();
        let parsed =
            tokio::task::spawn_blocking(move || Solution::from_bytes(&parsing, &Limits::default()))
                .await
                .map_err(|e| {
                    HandlerError::Transient(format!("parsing the artifact was cut short: {e}"))
                })?;
        let solution = match parsed {
            Ok(s) => s,
            Err(e) => {
                return Ok(StepDone::failed(
                    format!(
                        "the stored artifact {} is not a readable solution ({e}); deploy again to export it anew",
                        cmd.artifact.managed_sha256
                    ),
                    None,
                ));
            }
        };

        let timeout = Duration::from_millis(self.environments.request_timeout_ms);
        let client = slipway_dataverse::client_for(&target.url, &target.credentials, timeout)
            .map_err(|e| environment_error(e, target, "building a client"))?;
        let has_refs = !solution.connection_references.is_empty();
        let has_vars = !solution.environment_variables.is_empty();
        let (installed, staged, bound, connections, values) = tokio::try_join!(
            client.solution(&solution.unique_name),
            client.stage_solution(&bytes),
            async {
                if has_refs {
                    client.connection_references().await
                } else {
                    Ok(Vec::new())
                }
            },
            async {
                if !has_refs {
                    return Ok(Ok(Vec::new()));
                }
                // Dataverse itself may not list Power Platform connections
                // (they live in the Power Apps API); only a transient failure
                // stops the validation, any other is a warning.
                match client.connections().await {
                    Ok(list) => Ok(Ok(list)),
                    Err(e) if e.is_transient() => Err(e),
                    Err(e) => Ok(Err(e.to_string())),
                }
            },
            async {
                if has_vars {
                    client.environment_variable_values().await
                } else {
                    Ok(Vec::new())
                }
            },
        )
        .map_err(|e| environment_error(e, target, "reading the target"))?;

        // The diff is for the maker's information: an environment that cannot
        // list components (an older or on-premises one) does not fail the run.
        let diff = match &installed {
            None => Some(checks::diff(&[], &solution)),
            Some(i) => match client.solution_components(i.solution_id).await {
                Ok(rows) => Some(checks::diff(&checks::installed_keys(&rows), &solution)),
                Err(e) if e.is_transient() => {
                    return Err(environment_error(e, target, "listing installed components"));
                }
                Err(e) => {
                    tracing::warn!(
                        target = %target.name,
                        error = %e,
                        "cannot list the installed components; the report has no diff"
                    );
                    None
                }
            },
        };

        let (missing_dependencies, mut errors) = checks::staging_findings(&staged);
        if !solution
            .unique_name
            .eq_ignore_ascii_case(&deployment.solution_name)
        {
            errors.push(format!(
                "the artifact holds solution {}, not {}; deploy again to export the right solution",
                solution.unique_name, deployment.solution_name
            ));
        }
        let settings = match Settings::parse(deployment.settings.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e);
                Settings::default()
            }
        };
        let connectors: Vec<String> = solution
            .connection_references
            .iter()
            .map(|r| r.connector_id.clone())
            .collect();
        let policy_violations = deployment
            .policies
            .as_ref()
            .map(|p| {
                p.check(&slipway_policy::Candidate {
                    connectors: &connectors,
                    managed: solution.managed,
                    artifact_bytes: if cmd.artifact.managed_bytes > 0 {
                        cmd.artifact.managed_bytes
                    } else {
                        artifact_len
                    },
                    at: time::OffsetDateTime::now_utc(),
                    notes: deployment.notes.as_deref(),
                })
            })
            .unwrap_or_default();
        let mut report = ValidationReport {
            verdict: Verdict::Passed,
            artifact_version: solution.version.to_string(),
            installed_version: installed.as_ref().map(|i| i.version.clone()),
            version_problem: checks::version_problem(
                &solution,
                installed.as_ref(),
                &target.name,
                deployment.allow_older_version,
            ),
            missing_dependencies,
            errors,
            connection_references: checks::check_connection_references(
                &solution.connection_references,
                &settings,
                &bound,
                connections.as_deref().ok(),
                &target.name,
            ),
            environment_variables: checks::check_environment_variables(
                &solution.environment_variables,
                &settings,
                &values,
                &target.name,
            ),
            policy_violations,
            diff,
            warnings: match &connections {
                Ok(_) => Vec::new(),
                Err(e) => vec![format!(
                    "{} did not list its connections ({e}); connection ids in the settings were not checked",
                    target.name
                )],
            },
        };
        report.verdict = checks::verdict(&report);
        tracing::info!(
            solution = %solution.unique_name,
            version = %report.artifact_version,
            target = %target.name,
            verdict = ?report.verdict,
            "validated"
        );
        Ok(finish(cmd, report, &target.name))
    }

    /// The managed artifact's bytes; `Ok(Err(reason))` when the run cannot
    /// go on (missing or damaged artifact), `Err` when the store failed.
    async fn read_artifact(
        &self,
        cmd: &ValidateCommand,
    ) -> Result<Result<bytes::Bytes, String>, HandlerError> {
        let sha = &cmd.artifact.managed_sha256;
        let id: ArtifactId = match sha.parse() {
            Ok(id) => id,
            Err(e) => {
                return Ok(Err(format!(
                    "the artifact reference is unusable ({e}); deploy again to export it anew"
                )));
            }
        };
        match self.artifacts.get(&id).await {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(ArtifactError::NotFound { .. }) => Ok(Err(format!(
                "artifact {id} is not in the artifact store; check that the exporter and the validator use the same artifacts.url, then deploy again"
            ))),
            Err(e @ ArtifactError::Corrupt { .. }) => {
                Ok(Err(format!("{e}; deploy again to export it anew")))
            }
            Err(e) => Err(HandlerError::Transient(format!(
                "cannot read artifact {id}: {e}"
            ))),
        }
    }
}

/// The step's end for a finished report: the import next when it passed
/// (unless held), nothing next when settings are needed, the run failed
/// with a one-line reason otherwise.
fn finish(cmd: &ValidateCommand, report: ValidationReport, target: &str) -> StepDone {
    let verdict = report.verdict;
    let summary = (verdict == Verdict::Failed).then(|| checks::failure_summary(&report, target));
    let outcome = Some(StepOutcome::Validated {
        artifact: cmd.artifact.clone(),
        report,
    });
    match (verdict, summary) {
        (Verdict::Passed, _) => StepDone::succeeded(outcome, import_next(cmd)),
        (Verdict::NeedsSettings, _) => StepDone::succeeded(outcome, None),
        (Verdict::Failed, summary) => StepDone::failed(
            summary.unwrap_or_else(|| "validation failed".to_owned()),
            outcome,
        ),
    }
}

/// The import of the validated artifact, unless the deployment holds after
/// validation (approval, gate or schedule: the gateway sends it later).
fn import_next(cmd: &ValidateCommand) -> Option<Message> {
    (!cmd.deployment.hold_after_validation).then(|| {
        Message::Import(ImportCommand {
            deployment: cmd.deployment.clone(),
            artifact: cmd.artifact.clone(),
            async_operation_id: None,
            polls: 0,
        })
    })
}

/// Transient environment errors are retried; anything else (credentials,
/// URL, permissions) will not get better by itself and parks the command.
fn environment_error(e: DataverseError, target: &EnvironmentAccess, doing: &str) -> HandlerError {
    let name = &target.name;
    if e.is_transient() {
        HandlerError::Transient(format!("environment {name}: {doing} failed: {e}"))
    } else {
        HandlerError::Permanent(format!(
            "environment {name} ({}): {doing} failed: {e}; check the environment's URL and credentials, and that its application user may read solutions and stage imports",
            target.url
        ))
    }
}

/// The placeholder for a deployment without environments: a passed report
/// and the import next (unless held). The benchmark and the bus tests rely
/// on it.
fn placeholder(cmd: &ValidateCommand) -> StepDone {
    let report = ValidationReport {
        verdict: Verdict::Passed,
        artifact_version: cmd.artifact.version.clone(),
        installed_version: None,
        version_problem: None,
        missing_dependencies: Vec::new(),
        errors: Vec::new(),
        connection_references: Vec::new(),
        environment_variables: Vec::new(),
        policy_violations: Vec::new(),
        diff: None,
        warnings: Vec::new(),
    };
    StepDone::succeeded(
        Some(StepOutcome::Validated {
            artifact: cmd.artifact.clone(),
            report,
        }),
        import_next(cmd),
    )
}

#[async_trait::async_trait]
impl Step for ValidatorStep {
    fn role(&self) -> Role {
        Role::Validator
    }

    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError> {
        let Message::Validate(cmd) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the validator takes `validate` commands, not `{}`",
                envelope.message.kind()
            )));
        };
        match real_target(&cmd.deployment) {
            Some(target) => self.validate(cmd, target).await,
            None => Ok(placeholder(cmd)),
        }
    }
}

/// The target of a real deployment; `None` for a placeholder one.
fn real_target(deployment: &Deployment) -> Option<&EnvironmentAccess> {
    deployment
        .is_real()
        .then_some(deployment.target.as_ref())
        .flatten()
}
