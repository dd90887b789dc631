//! The importer: imports an artifact's managed file into the target
//! environment as an upgrade, with the deployment settings, and follows the
//! import to its end. It is the last step: it hands no command to another
//! role.
//!
//! An import can run for hours, so the importer never holds a delivery
//! while it runs:
//!
//! - the *start* (an [`ImportCommand`] without `async_operation_id`) reads
//!   the managed file from the artifact store, calls `ImportSolutionAsync`
//!   with an `ImportJobId` derived from the run, the artifact and the target
//!   ([`import_job_id`]), reports the import as in progress and sends itself
//!   a *poll*, delayed by `environments.import_poll_ms`;
//! - each *poll* reads the asynchronous operation once: still running, it
//!   reads how far the import has got from the import job
//!   (`importjobs(<ImportJobId>)`, its `progress` percentage; a failure to
//!   read it only leaves the percentage out), reports progress and sends
//!   the next poll after a doubling pause capped by
//!   `environments.import_poll_max_ms` ([`poll_delay`]); over, it reports
//!   success or the environment's own failure message.
//!
//! A stage's deploy-as ([`Deployment::deploy_as`]) makes the start act for
//! that identity with Dataverse impersonation ([`acting_client`]): a user
//! given by Microsoft Entra object id goes as `CallerObjectId`; a user
//! principal name or a service principal's application id is looked up in
//! the target's `systemusers` and goes as `MSCRMCallerID`. The environment's
//! credentials still authenticate (its application user needs the Delegate
//! role); polls read the operation as that application user.
//!
//! A redelivered or retried start names the same `ImportJobId`, and the
//! environment answers with the operation it already runs, so one run
//! imports once. Transient failures (network, throttling, 5xx, the artifact
//! store's backend) are [`HandlerError::Transient`]: the bus retries the
//! same command. Everything that will not get better by retrying ends the
//! run with [`StepDone::failed`] and a reason that says what to do.
//!
//! Deployments without environments ([`Deployment::is_real`] false) keep
//! the placeholder behaviour: the step succeeds at once. The importer never
//! touches the database and never logs credentials.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::time::Duration;

use bytes::Bytes;
use slipway_artifacts::{ArtifactError, ArtifactId, ArtifactStore};
use slipway_bus::HandlerError;
use slipway_dataverse::{
    AsyncOperation, AsyncStatus, Client, ComponentParameter, DataverseError, ImportRequest,
};
use slipway_messages::{
    ArtifactRef, DeployIdentity, Deployment, Envelope, EnvironmentAccess, ImportCommand, Message,
    Role, StepOutcome,
};
use slipway_service::config::EnvironmentsConfig;
use slipway_service::worker::{Step, StepDone};
use uuid::Uuid;

/// Namespace of [`import_job_id`]. Never change it: a start redelivered
/// across an upgrade would then start a second import.
pub const IMPORT_JOB_NAMESPACE: Uuid = Uuid::from_u128(0x5b1f_7a9e_3c4d_4e8a_9f21_6d0c_8b7e_a412);

/// The import step.
#[derive(Debug, Clone)]
pub struct ImporterStep {
    artifacts: ArtifactStore,
    environments: EnvironmentsConfig,
}

impl ImporterStep {
    /// A step reading artifacts from `artifacts` and talking to
    /// environments as `environments` says (timeouts, poll pacing).
    pub fn new(artifacts: ArtifactStore, environments: EnvironmentsConfig) -> Self {
        ImporterStep {
            artifacts,
            environments,
        }
    }

    /// The step as the service configuration describes it: opens the
    /// artifact store at `artifacts.url`.
    pub async fn from_config(config: &slipway_service::config::Config) -> anyhow::Result<Self> {
        let url = &config.artifacts.url;
        let artifacts = ArtifactStore::open(url).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot open the artifact store at `artifacts.url` = {url:?}: {e}; set \
                 `artifacts.url` (or SLIPWAY__ARTIFACTS__URL) to the store the exporter writes to"
            )
        })?;
        Ok(Self::new(artifacts, config.environments.clone()))
    }

    /// Starts the import (or finds the one a previous delivery started).
    async fn start(
        &self,
        run_id: Uuid,
        cmd: &ImportCommand,
        target: &EnvironmentAccess,
    ) -> Result<StepDone, HandlerError> {
        let client = match self.client(target) {
            Ok(client) => client,
            Err(stop) => return stop.into(),
        };
        let deploy_as = cmd.deployment.deploy_as.as_ref();
        let client = match acting_client(&client, deploy_as, &target.name).await {
            Ok(client) => client,
            Err(stop) => return stop,
        };
        let zip = match self.managed_file(&cmd.artifact).await {
            Ok(zip) => zip,
            Err(stop) => return stop.into(),
        };
        let component_parameters = match component_parameters(cmd.deployment.settings.as_ref()) {
            Ok(parameters) => parameters,
            Err(reason) => return Ok(StepDone::failed(reason, None)),
        };
        let job_id = import_job_id(run_id, &cmd.artifact, &target.url);
        let request = ImportRequest {
            import_job_id: Some(job_id),
            component_parameters,
            ..ImportRequest::new(zip)
        };
        let started = match client.import_solution_async(&request).await {
            Ok(started) => started,
            Err(e) => {
                return dataverse_failure(
                    e,
                    &format!("the import into {} could not start", target.name),
                );
            }
        };
        let id = started.async_operation_id;
        tracing::info!(
            %run_id,
            target = %target.name,
            solution = %cmd.deployment.solution_name,
            version = %cmd.artifact.version,
            %job_id,
            async_operation_id = %id,
            caller = ?client.caller(),
            "import started"
        );
        Ok(StepDone::in_progress(
            Some(StepOutcome::ImportProgress {
                async_operation_id: id,
                percent: None,
            }),
            Message::Import(ImportCommand {
                async_operation_id: Some(id),
                polls: 0,
                ..cmd.clone()
            }),
            Duration::from_millis(self.environments.import_poll_ms),
        ))
    }

    /// One look at a running import.
    async fn poll(
        &self,
        run_id: Uuid,
        id: Uuid,
        cmd: &ImportCommand,
        target: &EnvironmentAccess,
    ) -> Result<StepDone, HandlerError> {
        let client = match self.client(target) {
            Ok(client) => client,
            Err(stop) => return stop.into(),
        };
        let operation = match client.async_operation(id).await {
            Ok(operation) => operation,
            Err(e) if e.status() == Some(404) => {
                return Ok(StepDone::failed(
                    format!(
                        "the import into {} cannot be followed: the environment does not know its \
                         asynchronous operation {id} ({e}); check the solution's import history \
                         in the environment and deploy again if it is not installed",
                        target.name
                    ),
                    None,
                ));
            }
            Err(e) => {
                return dataverse_failure(
                    e,
                    &format!(
                        "cannot read the import into {} (operation {id})",
                        target.name
                    ),
                );
            }
        };
        let percent = if operation.is_completed() {
            None
        } else {
            let job_id = import_job_id(run_id, &cmd.artifact, &target.url);
            import_percent(&client, job_id, &target.name).await
        };
        Ok(self.polled(id, cmd, target, &operation, percent))
    }

    /// What a poll that read `operation` (and, while it runs, the import
    /// job's `percent`) reports.
    fn polled(
        &self,
        id: Uuid,
        cmd: &ImportCommand,
        target: &EnvironmentAccess,
        operation: &AsyncOperation,
        percent: Option<f64>,
    ) -> StepDone {
        if !operation.is_completed() {
            tracing::debug!(async_operation_id = %id, status = %operation.statuscode, polls = cmd.polls, ?percent, "import still running");
            return StepDone::in_progress(
                Some(StepOutcome::ImportProgress {
                    async_operation_id: id,
                    percent,
                }),
                Message::Import(ImportCommand {
                    polls: cmd.polls.saturating_add(1),
                    ..cmd.clone()
                }),
                poll_delay(&self.environments, cmd.polls),
            );
        }
        if operation.statuscode == AsyncStatus::Succeeded {
            tracing::info!(async_operation_id = %id, target = %target.name, "import succeeded");
            let message = operation
                .message
                .clone()
                .or_else(|| operation.friendlymessage.clone())
                .filter(|m| !m.trim().is_empty());
            return StepDone::succeeded(
                Some(StepOutcome::Imported {
                    async_operation_id: id,
                    message,
                }),
                None,
            );
        }
        let message = environment_message(operation);
        tracing::info!(async_operation_id = %id, target = %target.name, status = %operation.statuscode, "import failed");
        StepDone::failed(
            format!("the import into {} failed: {message}", target.name),
            Some(StepOutcome::Imported {
                async_operation_id: id,
                message: Some(message),
            }),
        )
    }

    /// A client for the target, or the failure that ends the run when its
    /// access cannot work (unreadable credentials, missing secret, bad URL).
    fn client(&self, target: &EnvironmentAccess) -> Result<Client, Stop> {
        slipway_dataverse::client_for(
            &target.url,
            &target.credentials,
            Duration::from_millis(self.environments.request_timeout_ms),
        )
        .map_err(|e| {
            Stop::Fail(format!(
                "cannot call the target environment {}: {e}; fix the environment's URL or \
                 credentials reference, or the secret it names in the importer's environment",
                target.name
            ))
        })
    }

    /// The managed file of `artifact`, or how the step ends without it.
    async fn managed_file(&self, artifact: &ArtifactRef) -> Result<Bytes, Stop> {
        let id: ArtifactId = artifact.managed_sha256.parse().map_err(|e| {
            Stop::Fail(format!(
                "the import command names no usable managed file: {e}"
            ))
        })?;
        self.artifacts.get(&id).await.map_err(|e| match e {
            ArtifactError::Store(_) => Stop::Retry(format!(
                "cannot read the managed file {id} from the artifact store: {e}"
            )),
            ArtifactError::NotFound { .. } => Stop::Fail(format!(
                "the managed file {id} of version {} is not in the artifact store; check that \
                 the importer's `artifacts.url` is the store the exporter writes to, or deploy again",
                artifact.version
            )),
            other => Stop::Fail(format!(
                "cannot import version {}: {other}; deploy again to export a fresh artifact",
                artifact.version
            )),
        })
    }
}

/// Why a step stops before its work is done.
#[derive(Debug)]
enum Stop {
    /// The run fails for this reason.
    Fail(String),
    /// Worth trying again: the bus retries the command.
    Retry(String),
}

impl From<Stop> for Result<StepDone, HandlerError> {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Fail(reason) => Ok(StepDone::failed(reason, None)),
            Stop::Retry(reason) => Err(HandlerError::Transient(reason)),
        }
    }
}

#[async_trait::async_trait]
impl Step for ImporterStep {
    fn role(&self) -> Role {
        Role::Importer
    }

    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError> {
        let Message::Import(cmd) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the importer takes `import` commands, not `{}`",
                envelope.message.kind()
            )));
        };
        let deployment: &Deployment = &cmd.deployment;
        let Some(target) = deployment.target.as_ref().filter(|_| deployment.is_real()) else {
            // Placeholder: no environment to import into.
            return Ok(StepDone::succeeded(None, None));
        };
        match cmd.async_operation_id {
            None => self.start(envelope.run_id, cmd, target).await,
            Some(id) => self.poll(envelope.run_id, id, cmd, target).await,
        }
    }

    /// Polls continue the import the start reported as started.
    fn is_continuation(&self, envelope: &Envelope) -> bool {
        matches!(
            &envelope.message,
            Message::Import(ImportCommand {
                async_operation_id: Some(_),
                ..
            })
        )
    }
}

/// `client` acting for `deploy_as` (unchanged without one): the caller
/// [`Client::caller_for_user`] or [`Client::caller_for_application`] finds in
/// the target. An identity the target does not know (or has disabled) ends
/// the run with a reason naming it; a transient failure of the lookup is
/// retried.
pub async fn acting_client(
    client: &Client,
    deploy_as: Option<&DeployIdentity>,
    target: &str,
) -> Result<Client, Result<StepDone, HandlerError>> {
    let Some(identity) = deploy_as else {
        return Ok(client.clone());
    };
    let caller = match identity {
        DeployIdentity::User { user } => client.caller_for_user(user).await,
        DeployIdentity::ServicePrincipal { application_id } => {
            client.caller_for_application(application_id).await
        }
    };
    match caller {
        Ok(caller) => Ok(client.acting_for(caller)),
        Err(DataverseError::UnknownCaller(why)) => Err(Ok(StepDone::failed(
            format!("the stage deploys as {identity}, which cannot act in {target}: {why}"),
            None,
        ))),
        Err(e) => Err(dataverse_failure(
            e,
            &format!("cannot find {identity} (the stage's deploy-as) in {target}"),
        )),
    }
}

/// How far the import with job `job_id` has got, in percent (0 to 100), as
/// its import job says. The percentage is a nicety: when it cannot be read
/// (the job not there yet, the environment refusing or failing) the poll
/// goes on without it, and the operation alone decides the outcome.
async fn import_percent(client: &Client, job_id: Uuid, target: &str) -> Option<f64> {
    match client.import_job(job_id).await {
        Ok(Some(job)) => job
            .progress
            .filter(|p| p.is_finite())
            .map(|p| p.clamp(0.0, 100.0)),
        Ok(None) => {
            tracing::debug!(%job_id, target, "no import job yet; no percentage this time");
            None
        }
        Err(e) => {
            tracing::warn!(%job_id, target, error = %e, "cannot read the import's progress; going on without a percentage");
            None
        }
    }
}

/// The `ImportJobId` of the import of `artifact` into the environment at
/// `target_url` for run `run_id`: a UUID v5, the same for every delivery of
/// the start command, so the environment finds the import it already runs
/// instead of starting another.
pub fn import_job_id(run_id: Uuid, artifact: &ArtifactRef, target_url: &str) -> Uuid {
    let url = target_url.trim().trim_end_matches('/').to_ascii_lowercase();
    let name = format!(
        "slipway-import\n{run_id}\n{}\n{url}",
        artifact.managed_sha256.to_ascii_lowercase()
    );
    Uuid::new_v5(&IMPORT_JOB_NAMESPACE, name.as_bytes())
}

/// The pause after poll number `polls` (0-based) found the import running:
/// `import_poll_ms * 2^polls`, at most `import_poll_max_ms` (and never
/// under `import_poll_ms`, so a zero maximum cannot make polls spin).
pub fn poll_delay(environments: &EnvironmentsConfig, polls: u32) -> Duration {
    let factor = 1u64.checked_shl(polls).unwrap_or(u64::MAX);
    Duration::from_millis(
        environments.import_poll_ms.saturating_mul(factor).min(
            environments
                .import_poll_max_ms
                .max(environments.import_poll_ms),
        ),
    )
}

/// The deployment settings (`pac solution create-settings` JSON) as
/// `ComponentParameters`: every environment variable with a value and every
/// connection reference with a connection id. Entries left empty are
/// skipped, so the target keeps (or takes from the package) what it has.
/// Settings that are not that JSON are refused with the reason.
pub fn component_parameters(
    settings: Option<&serde_json::Value>,
) -> Result<Vec<ComponentParameter>, String> {
    let Some(settings) = settings.filter(|s| !s.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(settings) = settings.as_object() else {
        return Err(
            "the deployment settings must be a JSON object with `EnvironmentVariables` and \
             `ConnectionReferences` (the `pac solution create-settings` file)"
                .into(),
        );
    };
    let mut parameters = Vec::new();
    for entry in entries(settings, "EnvironmentVariables")? {
        let (Some(schema_name), Some(value)) = (text(entry, "SchemaName"), text(entry, "Value"))
        else {
            continue;
        };
        parameters.push(ComponentParameter::EnvironmentVariableValue { schema_name, value });
    }
    for entry in entries(settings, "ConnectionReferences")? {
        let (Some(logical_name), Some(connection_id)) =
            (text(entry, "LogicalName"), text(entry, "ConnectionId"))
        else {
            continue;
        };
        parameters.push(ComponentParameter::ConnectionReference {
            logical_name,
            connection_id,
        });
    }
    Ok(parameters)
}

/// The objects of the array `key` (names compare case-insensitively).
fn entries<'a>(
    settings: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<impl Iterator<Item = &'a serde_json::Map<String, serde_json::Value>>, String> {
    let list = match field(settings, key) {
        None | Some(serde_json::Value::Null) => &[][..],
        Some(serde_json::Value::Array(list)) => list.as_slice(),
        Some(_) => {
            return Err(format!(
                "`{key}` in the deployment settings must be a list, as `pac solution create-settings` writes it"
            ));
        }
    };
    if let Some(bad) = list.iter().position(|e| !e.is_object()) {
        return Err(format!(
            "entry {} of `{key}` in the deployment settings is not an object",
            bad + 1
        ));
    }
    Ok(list.iter().filter_map(serde_json::Value::as_object))
}

fn field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A non-empty text field; numbers and booleans as their JSON text.
fn text(object: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    let text = match field(object, key)? {
        serde_json::Value::String(s) => s.clone(),
        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.to_string(),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

/// The environment's own words about a failed or canceled operation.
fn environment_message(operation: &AsyncOperation) -> String {
    // `message` is the complete text (a missing dependency list is long);
    // `friendlymessage` may be a shortened copy.
    let given = [&operation.message, &operation.friendlymessage]
        .into_iter()
        .flatten()
        .find(|m| !m.trim().is_empty());
    match given {
        Some(m) => m.clone(),
        None => format!(
            "the environment gave no message (operation {} ended {})",
            operation.id, operation.statuscode
        ),
    }
}

/// A Dataverse error: transient ones go back to the bus for a retry of the
/// same command; the rest end the run, `doing` saying what failed.
fn dataverse_failure(e: DataverseError, doing: &str) -> Result<StepDone, HandlerError> {
    if e.is_transient() {
        Err(HandlerError::Transient(format!("{doing}: {e}")))
    } else {
        Ok(StepDone::failed(format!("{doing}: {e}"), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn artifact(sha: &str) -> ArtifactRef {
        ArtifactRef {
            managed_sha256: sha.into(),
            unmanaged_sha256: "b".repeat(64),
            version: "1.0.0.0".into(),
            managed_bytes: 1,
        }
    }

    #[test]
    fn the_import_job_id_depends_on_run_artifact_and_target_only() {
        let run = Uuid::now_v7();
        let a = artifact(&"a".repeat(64));
        let id = import_job_id(run, &a, "https://contoso.crm.dynamics.com");
        assert_eq!(id.get_version_num(), 5);
        assert_eq!(
            id,
            import_job_id(run, &a, "https://Contoso.crm.dynamics.com/")
        );
        let mut other_version = a.clone();
        other_version.version = "9.9.9.9".into();
        assert_eq!(
            id,
            import_job_id(run, &other_version, "https://contoso.crm.dynamics.com")
        );
        assert_ne!(
            id,
            import_job_id(Uuid::now_v7(), &a, "https://contoso.crm.dynamics.com")
        );
        assert_ne!(
            id,
            import_job_id(
                run,
                &artifact(&"c".repeat(64)),
                "https://contoso.crm.dynamics.com"
            )
        );
        assert_ne!(
            id,
            import_job_id(run, &a, "https://fabrikam.crm.dynamics.com")
        );
    }

    #[test]
    fn the_poll_delay_doubles_and_is_capped() {
        let env = EnvironmentsConfig {
            request_timeout_ms: 1,
            import_poll_ms: 2_000,
            import_poll_max_ms: 30_000,
        };
        let ms: Vec<u64> = [0, 1, 2, 3, 4, 5, 64, u32::MAX]
            .iter()
            .map(|p| poll_delay(&env, *p).as_millis() as u64)
            .collect();
        assert_eq!(
            ms,
            [2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000]
        );
        let odd = EnvironmentsConfig {
            import_poll_max_ms: 0,
            ..env
        };
        assert_eq!(poll_delay(&odd, 3), Duration::from_millis(2_000));
    }

    #[test]
    fn settings_with_values_become_parameters_and_empty_ones_are_skipped() {
        let settings = json!({
            "EnvironmentVariables": [
                {"SchemaName": "cts_Url", "Value": "https://a"},
                {"SchemaName": "cts_Count", "Value": 3},
                {"SchemaName": "cts_Empty", "Value": ""},
                {"SchemaName": "cts_Null", "Value": null},
                {"SchemaName": "cts_NoValue"},
            ],
            "ConnectionReferences": [
                {"LogicalName": "cts_sp", "ConnectionId": "conn-1", "ConnectorId": "/x"},
                {"LogicalName": "cts_none", "ConnectionId": "", "ConnectorId": "/x"},
                {"logicalname": "cts_lower", "connectionid": "conn-2"},
            ],
        });
        assert_eq!(
            component_parameters(Some(&settings)).unwrap(),
            vec![
                ComponentParameter::EnvironmentVariableValue {
                    schema_name: "cts_Url".into(),
                    value: "https://a".into()
                },
                ComponentParameter::EnvironmentVariableValue {
                    schema_name: "cts_Count".into(),
                    value: "3".into()
                },
                ComponentParameter::ConnectionReference {
                    logical_name: "cts_sp".into(),
                    connection_id: "conn-1".into()
                },
                ComponentParameter::ConnectionReference {
                    logical_name: "cts_lower".into(),
                    connection_id: "conn-2".into()
                },
            ]
        );
        assert_eq!(component_parameters(None).unwrap(), vec![]);
        assert_eq!(component_parameters(Some(&json!(null))).unwrap(), vec![]);
        assert_eq!(component_parameters(Some(&json!({}))).unwrap(), vec![]);
    }

    #[test]
    fn unusable_settings_are_refused_by_name() {
        let e = component_parameters(Some(&json!([1]))).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        let e = component_parameters(Some(&json!({"EnvironmentVariables": "x"}))).unwrap_err();
        assert!(e.contains("`EnvironmentVariables`"), "{e}");
        let e = component_parameters(Some(&json!({"ConnectionReferences": [{}, 5]}))).unwrap_err();
        assert!(e.contains("entry 2 of `ConnectionReferences`"), "{e}");
    }

    #[test]
    fn transient_dataverse_errors_are_retried_and_the_rest_end_the_run() {
        let throttled = DataverseError::Throttled {
            retry_after_secs: 600,
        };
        assert!(matches!(
            dataverse_failure(throttled, "starting"),
            Err(HandlerError::Transient(m)) if m.starts_with("starting: ")
        ));
        let unavailable = DataverseError::Http {
            status: 503,
            body: "busy".into(),
        };
        assert!(matches!(
            dataverse_failure(unavailable, "x"),
            Err(HandlerError::Transient(_))
        ));
        let refused = DataverseError::Api {
            status: 403,
            code: "0x80040220".into(),
            message: "the user lacks the prvImportCustomization privilege".into(),
        };
        let done = dataverse_failure(refused, "the import into test could not start").unwrap();
        assert_eq!(done.report, slipway_service::worker::StepReport::Failed);
        assert!(
            done.detail
                .unwrap()
                .contains("could not start: dataverse returned 403 (0x80040220): the user lacks")
        );
    }

    #[test]
    fn a_failed_operation_reports_the_environments_words() {
        let op = |message: Option<&str>, friendly: Option<&str>| AsyncOperation {
            id: Uuid::nil(),
            name: None,
            statecode: slipway_dataverse::ASYNC_STATE_COMPLETED,
            statuscode: AsyncStatus::Failed,
            message: message.map(Into::into),
            friendlymessage: friendly.map(Into::into),
        };
        assert_eq!(
            environment_message(&op(Some("full text"), Some("short"))),
            "full text"
        );
        assert_eq!(environment_message(&op(Some(" "), Some("short"))), "short");
        let none = environment_message(&op(None, None));
        assert!(none.contains("gave no message"), "{none}");
    }
}
