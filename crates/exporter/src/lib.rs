//! The exporter: takes an export command, exports the solution from the
//! source environment (unmanaged and managed), stamps the version into both
//! files, stores them in the content-addressed artifact store, and hands the
//! validator a command naming them.
//!
//! Like Power Platform pipelines, it then moves the solution in the source
//! (development) environment on to the exported version, when that is
//! higher than the one it had (`PATCH solutions(<id>)`): the next
//! deployment without a version bumps from there instead of producing the
//! same version again. The version the source had before is reported with
//! the artifact (`source_version`, the run's "dev current version"). An
//! environment refusing the update does not fail the run (the artifact is
//! good); the event says so, and why.
//!
//! A deployment that does not name real environments
//! ([`slipway_messages::Deployment::is_real`] is false) gets the placeholder
//! step instead: it derives the artifact's identity from the deployment and
//! touches nothing (the benchmark and the bus tests rely on it).
//!
//! Failures are sorted by whether waiting helps: throttling, 5xx, timeouts
//! and refused connections are [`HandlerError::Transient`] (the bus retries);
//! a missing or managed solution, a bad version, an environment refusing
//! (4xx) and credentials that cannot be resolved end the run with
//! [`StepDone::failed`] and a reason the maker can act on.
//!
//! Redelivery is safe: exporting the same version again stores the same (or
//! an equally valid) pair of files, and storing bytes already stored is a
//! no-op; the source's version is updated last, so a failure before it
//! leaves the source as it was and the retry picks the same version. (A
//! command without a version that is redelivered *after* the update, e.g.
//! because its events could not be published, bumps once more, as a new
//! deployment would: a higher version, never a repeated one.) The exporter
//! never touches the database and never logs credentials.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::io::Cursor;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use slipway_artifacts::{ArtifactError, ArtifactStore};
use slipway_bus::HandlerError;
use slipway_dataverse::{DataverseError, InstalledSolution, client_for};
use slipway_messages::{
    ArtifactRef, Envelope, EnvironmentAccess, ExportCommand, Message, Role, StepOutcome,
    ValidateCommand,
};
use slipway_service::config::{Config, EnvironmentsConfig};
use slipway_service::worker::{Step, StepDone};
use slipway_solution::{Limits, ReadMode, Solution, Version, VersionPart};

/// The export step: where artifacts go and how environments are called.
#[derive(Debug, Clone)]
pub struct ExporterStep {
    artifacts: ArtifactStore,
    environments: EnvironmentsConfig,
}

impl ExporterStep {
    /// A step storing into `artifacts` and calling environments as
    /// `environments` says (request timeout).
    pub fn new(artifacts: ArtifactStore, environments: EnvironmentsConfig) -> Self {
        ExporterStep {
            artifacts,
            environments,
        }
    }

    /// The step the worker binary runs: opens the artifact store named by
    /// `artifacts.url`.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let url = &config.artifacts.url;
        let artifacts = ArtifactStore::open(url).await.with_context(|| {
            format!(
                "cannot open the artifact store `{url}`; fix the `artifacts.url` setting \
                 (SLIPWAY__ARTIFACTS__URL)"
            )
        })?;
        Ok(Self::new(artifacts, config.environments.clone()))
    }

    /// The real export from `source`, see the crate docs.
    async fn export(
        &self,
        cmd: &ExportCommand,
        source: &EnvironmentAccess,
    ) -> Result<StepDone, Stop> {
        let env = source.name.as_str();
        let name = cmd.deployment.solution_name.as_str();
        let timeout = Duration::from_millis(self.environments.request_timeout_ms);
        let client = client_for(&source.url, &source.credentials, timeout).map_err(|e| {
            // Building a client does no I/O: what fails here is the
            // configuration (credentials that cannot be resolved, a bad URL),
            // which no retry fixes.
            let reason = match e {
                DataverseError::Config(message) => message,
                other => other.to_string(),
            };
            Stop::Fail(format!("cannot call environment {env}: {reason}"))
        })?;

        let installed = client
            .solution(name)
            .await
            .map_err(|e| dataverse_stop(env, &format!("look up solution {name}"), e))?
            .ok_or_else(|| {
                Stop::Fail(format!(
                    "solution {name} is not in environment {env}; check the unique name (not the display name)"
                ))
            })?;
        if installed.is_managed {
            return Err(Stop::Fail(format!(
                "solution {name} is managed in {env}; pipelines deploy unmanaged solutions from a development environment"
            )));
        }
        let version = artifact_version(cmd.deployment.version.as_deref(), &installed, env)?;

        // One after the other: environments refuse concurrent exports of
        // one solution.
        let unique = installed.unique_name.as_str();
        let unmanaged = client
            .export_solution(unique, false)
            .await
            .map_err(|e| dataverse_stop(env, &format!("export {unique} as unmanaged"), e))?;
        let managed = client
            .export_solution(unique, true)
            .await
            .map_err(|e| dataverse_stop(env, &format!("export {unique} as managed"), e))?;

        // Re-versioning inflates and rewrites whole packages: keep it off
        // the async threads.
        let (unmanaged, managed) = {
            let (unique, env, version) = (unique.to_owned(), env.to_owned(), version.clone());
            tokio::task::spawn_blocking(move || {
                let unmanaged = stamp(&unmanaged, &version, false, &unique, &env)?;
                let managed = stamp(&managed, &version, true, &unique, &env)?;
                Ok::<_, Stop>((unmanaged, managed))
            })
            .await
            .map_err(|e| {
                Stop::Retry(format!(
                    "re-versioning the exported files of {name} stopped unexpectedly: {e}"
                ))
            })??
        };

        let managed_bytes = u64::try_from(managed.len()).unwrap_or(u64::MAX);
        let managed_id = self
            .artifacts
            .put(Bytes::from(managed))
            .await
            .map_err(store_stop)?;
        let unmanaged_id = self
            .artifacts
            .put(Bytes::from(unmanaged))
            .await
            .map_err(store_stop)?;
        let artifact = ArtifactRef {
            managed_sha256: managed_id.to_string(),
            unmanaged_sha256: unmanaged_id.to_string(),
            version: version.to_string(),
            managed_bytes,
        };
        tracing::info!(
            solution = name,
            environment = env,
            version = %artifact.version,
            source_version = %installed.version,
            managed_sha256 = %artifact.managed_sha256,
            unmanaged_sha256 = %artifact.unmanaged_sha256,
            managed_bytes,
            "exported"
        );
        // Last, so that nothing after it can fail and retry the export.
        let not_moved = move_source_on(&client, &installed, &version, env).await?;
        let mut done = next_is_validate(cmd, artifact, Some(installed.version.clone()));
        done.detail = not_moved;
        Ok(done)
    }
}

/// Sets the solution's version in the source environment to `version` when
/// that is higher than the one it has, so the next export without a
/// version bumps from there. A transient failure retries the step (the
/// source is unchanged, so the retry exports the same version); a refusal
/// leaves the source as it is and returns what to tell the maker.
async fn move_source_on(
    client: &slipway_dataverse::Client,
    installed: &InstalledSolution,
    version: &Version,
    env: &str,
) -> Result<Option<String>, Stop> {
    let name = installed.unique_name.as_str();
    let current = match Version::parse(&installed.version) {
        Ok(current) if *version <= current => return Ok(None),
        Ok(_) => installed.version.as_str(),
        // Nothing to compare with: leave it, and say so.
        Err(_) => {
            return Ok(Some(format!(
                "exported {version}; the version of {name} in {env} stays {:?}, which is not a solution version; \
                 set it there by hand",
                installed.version
            )));
        }
    };
    match client
        .set_solution_version(installed.solution_id, &version.to_string())
        .await
    {
        Ok(()) => {
            tracing::info!(solution = name, environment = env, from = current, to = %version, "source version updated");
            Ok(None)
        }
        Err(err) if err.is_transient() => Err(dataverse_stop(
            env,
            &format!("update the version of {name} to {version}"),
            err,
        )),
        Err(err) => {
            let reason = match err {
                DataverseError::Api {
                    status, message, ..
                } => format!("it refused ({status}): {message}"),
                other => other.to_string(),
            };
            tracing::warn!(solution = name, environment = env, %reason, "source version not updated");
            Ok(Some(format!(
                "exported {version}, but the version of {name} in {env} stays {current}: {reason}; \
                 the next deployment without a version gets {version} again, so give one, \
                 or let the environment's user update solutions"
            )))
        }
    }
}

#[async_trait::async_trait]
impl Step for ExporterStep {
    fn role(&self) -> Role {
        Role::Exporter
    }

    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError> {
        let Message::Export(cmd) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the exporter takes `export` commands, not `{}`",
                envelope.message.kind()
            )));
        };
        let source = match &cmd.deployment.source {
            Some(source) if cmd.deployment.is_real() => source,
            _ => return Ok(placeholder(cmd)),
        };
        match self.export(cmd, source).await {
            Ok(done) => Ok(done),
            Err(Stop::Fail(reason)) => {
                tracing::warn!(solution = %cmd.deployment.solution_name, %reason, "export failed");
                Ok(StepDone::failed(reason, None))
            }
            Err(Stop::Retry(reason)) => Err(HandlerError::Transient(reason)),
        }
    }
}

/// Why an export stopped before producing an artifact.
#[derive(Debug)]
enum Stop {
    /// No retry helps: the run fails with this reason.
    Fail(String),
    /// Trying again later may work: the bus retries.
    Retry(String),
}

/// Sorts an environment's error: transient ones are retried; anything else
/// (a refusal, an unreadable answer) fails with the environment's words.
fn dataverse_stop(env: &str, what: &str, err: DataverseError) -> Stop {
    if err.is_transient() {
        return Stop::Retry(format!(
            "could not {what} in environment {env} (will retry): {err}"
        ));
    }
    match err {
        DataverseError::Api {
            status, message, ..
        } => Stop::Fail(format!(
            "environment {env} refused to {what} ({status}): {message}"
        )),
        other => Stop::Fail(format!("could not {what} in environment {env}: {other}")),
    }
}

/// A store that cannot be written is an outage (disk, network), not a
/// property of the deployment: retry.
fn store_stop(err: ArtifactError) -> Stop {
    Stop::Retry(format!(
        "cannot store the exported solution in the artifact store (will retry): {err}"
    ))
}

/// The version the artifact gets: the one asked for, else the installed one
/// with its revision bumped (1.2.3.4 -> 1.2.3.5).
fn artifact_version(
    requested: Option<&str>,
    installed: &InstalledSolution,
    env: &str,
) -> Result<Version, Stop> {
    match requested {
        Some(text) => Version::parse(text).map_err(|e| {
            Stop::Fail(format!(
                "version {text:?} is not a valid solution version: {e}; give major.minor.build.revision, e.g. 1.2.0.0"
            ))
        }),
        None => Version::parse(&installed.version)
            .map(|v| v.bump(VersionPart::Revision))
            .map_err(|e| {
                Stop::Fail(format!(
                    "solution {} in {env} has version {:?}, which cannot be bumped: {e}; give the version to deploy",
                    installed.unique_name, installed.version
                ))
            }),
    }
}

/// Writes `version` into an exported package and checks the result is the
/// solution and kind (managed or not) that was asked for.
fn stamp(
    zip: &[u8],
    version: &Version,
    managed: bool,
    name: &str,
    env: &str,
) -> Result<Vec<u8>, Stop> {
    let kind = if managed { "managed" } else { "unmanaged" };
    let unusable = |e: slipway_solution::SolutionError| {
        Stop::Fail(format!(
            "the {kind} export of {name} from {env} is not a usable solution package: {e}"
        ))
    };
    let limits = Limits::default();
    let stamped = slipway_solution::reversion(zip, version, &limits).map_err(unusable)?;
    let facts = Solution::from_reader_mode(Cursor::new(&stamped), &limits, ReadMode::Facts)
        .map_err(unusable)?;
    if facts.managed != managed {
        let is = if facts.managed {
            "managed"
        } else {
            "unmanaged"
        };
        return Err(Stop::Fail(format!(
            "environment {env} was asked for the {kind} export of {name} and returned a package marked {is}; \
             export it by hand to check, or report the environment's behaviour"
        )));
    }
    if !facts.unique_name.eq_ignore_ascii_case(name) {
        return Err(Stop::Fail(format!(
            "environment {env} was asked to export {name} and returned solution {}; \
             check the solution's unique name in {env}",
            facts.unique_name
        )));
    }
    Ok(stamped)
}

/// Done: the event carries `artifact` (and the version the source had
/// before) and the validator gets it next.
fn next_is_validate(
    cmd: &ExportCommand,
    artifact: ArtifactRef,
    source_version: Option<String>,
) -> StepDone {
    StepDone::succeeded(
        Some(StepOutcome::Exported {
            artifact: artifact.clone(),
            source_version,
        }),
        Some(Message::Validate(ValidateCommand {
            deployment: cmd.deployment.clone(),
            artifact,
        })),
    )
}

/// The placeholder step for deployments without real environments: an
/// identity derived from the deployment, nothing stored.
fn placeholder(cmd: &ExportCommand) -> StepDone {
    let version = cmd
        .deployment
        .version
        .clone()
        .unwrap_or_else(|| "1.0.0.0".into());
    let placeholder = format!("placeholder:{}:{version}", cmd.deployment.solution_name);
    let artifact = ArtifactRef {
        managed_sha256: format!("{placeholder}:managed"),
        unmanaged_sha256: format!("{placeholder}:unmanaged"),
        version,
        managed_bytes: 0,
    };
    next_is_validate(cmd, artifact, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_testkit::solution_zip::SolutionZip;

    fn installed(version: &str) -> InstalledSolution {
        serde_json::from_value(serde_json::json!({
            "solutionid": "00000000-0000-0000-0000-000000000001",
            "uniquename": "ContosoApp",
            "version": version,
            "ismanaged": false,
        }))
        .unwrap()
    }

    fn reason(stop: Stop) -> (bool, String) {
        match stop {
            Stop::Fail(r) => (false, r),
            Stop::Retry(r) => (true, r),
        }
    }

    #[test]
    fn the_requested_version_wins_else_the_revision_is_bumped() {
        let v = artifact_version(Some(" 2.1 "), &installed("1.0.0.0"), "dev").unwrap();
        assert_eq!(v.to_string(), "2.1");
        let v = artifact_version(None, &installed("1.2.3.4"), "dev").unwrap();
        assert_eq!(v.to_string(), "1.2.3.5");
        let v = artifact_version(None, &installed("1.2"), "dev").unwrap();
        assert_eq!(v.to_string(), "1.2.0.1");
    }

    #[test]
    fn an_installed_version_that_cannot_be_bumped_fails_naming_it() {
        let (retry, r) = reason(artifact_version(None, &installed("banana"), "dev").unwrap_err());
        assert!(!retry);
        assert!(r.contains("\"banana\"") && r.contains("dev"), "{r}");
    }

    #[test]
    fn dataverse_errors_are_sorted_by_whether_waiting_helps() {
        let (retry, r) = reason(dataverse_stop(
            "dev",
            "export X as managed",
            DataverseError::Http {
                status: 502,
                body: "bad gateway".into(),
            },
        ));
        assert!(retry, "{r}");
        let (retry, _) = reason(dataverse_stop(
            "dev",
            "export X",
            DataverseError::Throttled {
                retry_after_secs: 900,
            },
        ));
        assert!(retry);
        let (retry, r) = reason(dataverse_stop(
            "dev",
            "export X as managed",
            DataverseError::Api {
                status: 403,
                code: "0x80040220".into(),
                message: "Principal user is missing prvExportSolution privilege".into(),
            },
        ));
        assert!(!retry);
        assert_eq!(
            r,
            "environment dev refused to export X as managed (403): Principal user is missing prvExportSolution privilege"
        );
        let (retry, r) = reason(dataverse_stop(
            "dev",
            "export X",
            DataverseError::Decode {
                what: "ExportSolution".into(),
                message: "expected value".into(),
            },
        ));
        assert!(!retry);
        assert!(r.contains("ExportSolution"), "{r}");
    }

    #[tokio::test]
    async fn a_refused_version_update_leaves_the_source_and_says_why() {
        use slipway_dataverse::{Client, ClientConfig, Credentials, ImportRequest};
        let mut config = slipway_envsim::Config::in_memory();
        config.dev_tokens = vec!["t".into()];
        config.environments = vec![slipway_envsim::config::EnvironmentConfig::new("dev")];
        let sim = slipway_envsim::EnvSim::start(config).await.unwrap();
        let mut c = ClientConfig::new(sim.env_url("dev"), Credentials::StaticToken("t".into()));
        c.poll_interval = Duration::from_millis(20);
        let client = Client::new(c).unwrap();
        // Managed: the simulator refuses its update as Dataverse would.
        let zip = SolutionZip::new("Vendor", "3.0.0.0").managed(true).build();
        client
            .import_solution(&ImportRequest::new(Bytes::from(zip)))
            .await
            .unwrap();
        let installed = client.solution("Vendor").await.unwrap().unwrap();

        let to = |v: &str| Version::parse(v).unwrap();
        let note = move_source_on(&client, &installed, &to("3.0.0.1"), "dev")
            .await
            .unwrap()
            .unwrap();
        assert!(
            note.starts_with("exported 3.0.0.1, but the version of Vendor in dev stays 3.0.0.0: it refused (400):")
                && note.contains("give one"),
            "{note}"
        );
        assert_eq!(
            client.solution("Vendor").await.unwrap().unwrap().version,
            "3.0.0.0"
        );
        // Not higher: nothing asked, nothing to say.
        for same_or_lower in ["3.0", "2.9.9.9"] {
            let asked = move_source_on(&client, &installed, &to(same_or_lower), "dev").await;
            assert!(matches!(asked, Ok(None)), "{same_or_lower}: {asked:?}");
        }
        let mut odd = installed.clone();
        odd.version = "banana".into();
        let note = move_source_on(&client, &odd, &to("1.0.0.1"), "dev")
            .await
            .unwrap()
            .unwrap();
        assert!(
            note.contains("\"banana\"") && note.contains("by hand"),
            "{note}"
        );
    }

    #[test]
    fn stamping_checks_the_kind_and_the_name() {
        let version = Version::parse("1.0.0.7").unwrap();
        let unmanaged = SolutionZip::new("ContosoApp", "1.0.0.0").build();
        let stamped = stamp(&unmanaged, &version, false, "contosoapp", "dev").unwrap();
        let read = Solution::from_bytes(&stamped, &Limits::default()).unwrap();
        assert_eq!(read.version.to_string(), "1.0.0.7");

        let (retry, r) =
            reason(stamp(&unmanaged, &version, true, "ContosoApp", "dev").unwrap_err());
        assert!(!retry);
        assert!(
            r.contains("managed export of ContosoApp") && r.contains("marked unmanaged"),
            "{r}"
        );
        let (_, r) = reason(stamp(&unmanaged, &version, false, "Other", "dev").unwrap_err());
        assert!(r.contains("returned solution ContosoApp"), "{r}");
        let (_, r) = reason(stamp(b"not a zip", &version, false, "ContosoApp", "dev").unwrap_err());
        assert!(r.contains("not a usable solution package"), "{r}");
    }
}
