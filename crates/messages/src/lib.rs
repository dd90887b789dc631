//! The only serializable boundary between Slipway services.
//!
//! Every message on the bus is an [`Envelope`]: a message id, the run it
//! belongs to, the schema version, the delivery attempt and the time it was
//! sent, around one [`Message`] whose `kind` names its body:
//!
//! | kind       | body                | sent to            |
//! |------------|---------------------|--------------------|
//! | `export`   | [`ExportCommand`]   | the exporter queue |
//! | `validate` | [`ValidateCommand`] | the validator queue|
//! | `import`   | [`ImportCommand`]   | the importer queue |
//! | `run_event`| [`RunEvent`]        | the event exchange |
//!
//! Reports travel with the job: an envelope may carry run events that the
//! gateway has not received yet ([`Envelope::reports`]), oldest first. A
//! worker that finishes a step quickly adds its `succeeded` event to the
//! next command instead of publishing it; whatever the gateway next
//! receives about the run (a slow step's `started`, a failure, the last
//! step's end) carries them all, and [`Envelope::into_events`] unpacks them.
//!
//! Decoding ([`Envelope::decode`]) refuses a newer schema version or an
//! unknown kind with a [`DecodeError`] that says so; it never panics. These
//! types are a compatibility promise: add optional fields with
//! `#[serde(default)]`, and bump [`SCHEMA_VERSION`] for anything else.
//!
//! This crate never does I/O.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A message with its delivery metadata. Built with [`Envelope::new`], which
/// assigns a fresh message id; [`Envelope::next`] derives the following step's
/// message for the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub message_id: Uuid,
    pub run_id: Uuid,
    pub schema_version: u32,
    /// 1 on first delivery; the bus increments it on every retry.
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    #[serde(flatten)]
    pub message: Message,
    /// Run events (as envelopes of kind `run_event`, oldest first) that the
    /// gateway has not received yet: reports of earlier steps travelling
    /// with the job. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<Envelope>,
}

/// The typed body of an envelope, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Message {
    Export(ExportCommand),
    Validate(ValidateCommand),
    Import(ImportCommand),
    RunEvent(RunEvent),
}

/// Every kind this build understands, as written on the wire.
pub const KINDS: [&str; 4] = ["export", "validate", "import", "run_event"];

impl Message {
    /// The wire name of this message's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Export(_) => "export",
            Message::Validate(_) => "validate",
            Message::Import(_) => "import",
            Message::RunEvent(_) => "run_event",
        }
    }

    /// The deployment a command carries, or `None` for events.
    pub fn deployment(&self) -> Option<&Deployment> {
        match self {
            Message::Export(c) => Some(&c.deployment),
            Message::Validate(c) => Some(&c.deployment),
            Message::Import(c) => Some(&c.deployment),
            Message::RunEvent(_) => None,
        }
    }

    /// The worker role that handles this message, or `None` for events.
    pub fn role(&self) -> Option<Role> {
        match self {
            Message::Export(_) => Some(Role::Exporter),
            Message::Validate(_) => Some(Role::Validator),
            Message::Import(_) => Some(Role::Importer),
            Message::RunEvent(_) => None,
        }
    }
}

/// Why a message could not be decoded. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("message has no usable `{field}` field; every message must be a Slipway envelope")]
    MissingField { field: &'static str },
    #[error(
        "message has schema version {found}, newer than the {supported} this service reads; upgrade this service"
    )]
    NewerSchema { found: u64, supported: u32 },
    #[error(
        "message kind `{kind}` is unknown to this service (it knows {known}); upgrade this service"
    )]
    UnknownKind { kind: String, known: String },
    #[error("message of kind `{kind}` does not match its schema: {source}")]
    Malformed {
        kind: String,
        source: serde_json::Error,
    },
}

impl Envelope {
    /// A first-attempt envelope with a fresh message id, sent now.
    pub fn new(run_id: Uuid, message: Message) -> Self {
        Envelope {
            message_id: Uuid::now_v7(),
            run_id,
            schema_version: SCHEMA_VERSION,
            attempt: 1,
            sent_at: OffsetDateTime::now_utc(),
            message,
            reports: Vec::new(),
        }
    }

    /// The run events this envelope delivers to the gateway, in the order
    /// they happened: the reports it carries, then itself if it is a run
    /// event. Each keeps its own message id, so a report delivered twice
    /// (on a retried command, say) is recognized as the same event.
    pub fn into_events(self) -> Vec<Envelope> {
        /// Depth-first, reports before their carrier; the JSON parser's
        /// recursion limit bounds the nesting.
        fn unpack(mut envelope: Envelope, out: &mut Vec<Envelope>) {
            for report in std::mem::take(&mut envelope.reports) {
                unpack(report, out);
            }
            if matches!(envelope.message, Message::RunEvent(_)) {
                out.push(envelope);
            }
        }
        let mut events = Vec::with_capacity(self.reports.len() + 1);
        unpack(self, &mut events);
        events
    }

    /// The next message of the same run (a fresh id, attempt 1).
    pub fn next(&self, message: Message) -> Self {
        Envelope::new(self.run_id, message)
    }

    /// Serialize to the JSON bytes that travel on the bus.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain types cannot fail: no maps with non-string
        // keys, no custom serializers that error.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse bus bytes, refusing newer schemas and unknown kinds by name.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        /// The two fields checked before the body is parsed; serde skips
        /// the rest without building it.
        #[derive(Deserialize)]
        struct Head {
            schema_version: Option<u64>,
            kind: Option<String>,
        }
        // Fast path: a well-formed head, then one typed parse of the bytes.
        // Anything odd takes the slower path below, which names the problem.
        if let Ok(Head {
            schema_version: Some(version),
            kind: Some(kind),
        }) = serde_json::from_slice::<Head>(bytes)
            && version <= u64::from(SCHEMA_VERSION)
            && KINDS.contains(&kind.as_str())
        {
            return serde_json::from_slice(bytes)
                .map_err(|source| DecodeError::Malformed { kind, source });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(DecodeError::NotJson)?;
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or(DecodeError::MissingField {
                field: "schema_version",
            })?;
        if version > u64::from(SCHEMA_VERSION) {
            return Err(DecodeError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .ok_or(DecodeError::MissingField { field: "kind" })?
            .to_owned();
        if !KINDS.contains(&kind.as_str()) {
            return Err(DecodeError::UnknownKind {
                kind,
                known: KINDS.join(", "),
            });
        }
        serde_json::from_value(value).map_err(|source| DecodeError::Malformed { kind, source })
    }
}

/// The three worker roles, each with its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Exporter,
    Validator,
    Importer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Exporter, Role::Validator, Role::Importer];

    /// The role's name: its queue's suffix and its routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Exporter => "exporter",
            Role::Validator => "validator",
            Role::Importer => "importer",
        }
    }

    /// The pipeline step this role performs.
    pub fn step(self) -> Step {
        match self {
            Role::Exporter => Step::Export,
            Role::Validator => Step::Validate,
            Role::Importer => Step::Import,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a maker asked to deploy, carried unchanged from step to step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique name of the solution in the source environment.
    pub solution_name: String,
    /// Environment the solution is exported from.
    pub source_environment: String,
    /// Environment the solution is imported into.
    pub target_environment: String,
    /// Version the artifact gets, if the maker chose one.
    #[serde(default)]
    pub version: Option<String>,
    /// Deployment settings (the `pac solution create-settings` JSON).
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    /// The pipeline and stage deployed through, when the run belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<Uuid>,
    /// Where to export from and how to reach it. `None` (with `target`)
    /// makes the workers do [`PlaceholderWork`] instead of real steps: the
    /// benchmark and the bus tests use that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EnvironmentAccess>,
    /// Where to import into and how to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<EnvironmentAccess>,
    /// The maker's deployment notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The stage's policies, checked by the validator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<slipway_policy::StagePolicies>,
    /// The pipeline allows deploying a version lower than the installed one.
    #[serde(default)]
    pub allow_older_version: bool,
    /// After a passed validation the validator hands the import on only
    /// when this is false; when true (approval, a pre-deployment gate or a
    /// scheduled time) the gateway sends the import command later.
    #[serde(default)]
    pub hold_after_validation: bool,
    /// What the placeholder steps do when there are no environments to talk
    /// to; lets tests and benchmarks drive delays and failures.
    #[serde(default)]
    pub placeholder: PlaceholderWork,
    /// Whom the importer acts as in the target (the stage's deploy-as);
    /// `None`: the environment's own credentials. Absent in messages
    /// written before it existed, which therefore import as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_as: Option<DeployIdentity>,
}

/// An identity the importer impersonates in the target environment, as a
/// stage's deploy-as names it. The credentials stay the environment's: its
/// application user must hold the Delegate role (`prvActOnBehalfOfAnotherUser`),
/// and the import runs with the privileges both it and this identity have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum DeployIdentity {
    /// An application user: the service principal's application (client) id.
    ServicePrincipal { application_id: String },
    /// A user: a user principal name (`someone@contoso.com`) or the user's
    /// Microsoft Entra object id.
    User { user: String },
}

impl std::fmt::Display for DeployIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeployIdentity::ServicePrincipal { application_id } => {
                write!(f, "service principal {application_id}")
            }
            DeployIdentity::User { user } => write!(f, "user {user}"),
        }
    }
}

impl Deployment {
    /// A deployment of `solution` from `source` to `target` by name, with
    /// nothing else set: no environments to talk to (placeholder work), no
    /// pipeline, no version, settings, notes or policies.
    pub fn between(solution: &str, source: &str, target: &str) -> Self {
        Deployment {
            solution_name: solution.into(),
            source_environment: source.into(),
            target_environment: target.into(),
            version: None,
            settings: None,
            pipeline_id: None,
            stage_id: None,
            source: None,
            target: None,
            notes: None,
            policies: None,
            allow_older_version: false,
            hold_after_validation: false,
            placeholder: PlaceholderWork::default(),
            deploy_as: None,
        }
    }

    /// True when the workers talk to real environments (both ends known).
    pub fn is_real(&self) -> bool {
        self.source.is_some() && self.target.is_some()
    }
}

/// How a worker reaches an environment: its URL and its credentials *by
/// reference* (`{"kind":"static_token","token_ref":"env:NAME"}`, see
/// `slipway_dataverse::CredentialsRef`). Never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentAccess {
    pub name: String,
    pub url: String,
    pub credentials: serde_json::Value,
}

/// Behaviour of the placeholder steps (see [`Deployment::placeholder`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceholderWork {
    /// Milliseconds each step spends "working".
    #[serde(default)]
    pub step_millis: u64,
    /// A step that fails with a transient error on every attempt.
    #[serde(default)]
    pub always_fail: Option<Step>,
    /// A step that fails transiently on its first N attempts, then succeeds.
    #[serde(default)]
    pub fail_first_attempts: Option<(Step, u32)>,
}

/// Where the exported files of one version are kept (content-addressed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// sha256 of the managed file, lowercase hex.
    pub managed_sha256: String,
    /// sha256 of the unmanaged file, lowercase hex.
    pub unmanaged_sha256: String,
    /// The version stamped into the artifact.
    pub version: String,
    /// Size of the managed file in bytes (what is imported).
    #[serde(default)]
    pub managed_bytes: u64,
}

/// Export the solution from the source environment and store the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportCommand {
    pub deployment: Deployment,
}

/// Validate the artifact against the target environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateCommand {
    pub deployment: Deployment,
    pub artifact: ArtifactRef,
}

/// Import the artifact's managed file into the target environment.
///
/// An import can run for hours, so the importer never holds a delivery
/// while it runs: it starts the import (with an import job id derived from
/// the run, so a redelivery finds the same import), then sends itself this
/// command again, delayed, with `async_operation_id` set, and each delivery
/// polls once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCommand {
    pub deployment: Deployment,
    pub artifact: ArtifactRef,
    /// The environment's asynchronous operation of the import, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_operation_id: Option<Uuid>,
    /// Polls done so far (for backoff and for progress).
    #[serde(default)]
    pub polls: u32,
}

/// A pipeline step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Export,
    Validate,
    Import,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Export => "export",
            Step::Validate => "validate",
            Step::Import => "import",
        }
    }
}

/// Something that happened to a run, published by the service it happened in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The step it happened in, or `None` for a message that could not be
    /// attributed to a step (e.g. a malformed command).
    pub step: Option<Step>,
    pub status: StepStatus,
    /// The service that reports it (`exporter`, `validator`, ...).
    pub service: String,
    /// Which replica of the service (host and process id), so operators can
    /// see how work spreads across replicas.
    #[serde(default)]
    pub instance: Option<String>,
    /// Human-readable detail: the reason of a failure, the artifact made...
    #[serde(default)]
    pub detail: Option<String>,
    /// What a step produced, for the gateway to keep on the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StepOutcome>,
}

/// What a step reports beyond its status. The validation report makes one
/// variant large; events are few per run, so it is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepOutcome {
    /// The exporter stored the artifact (or found it stored).
    Exported {
        artifact: ArtifactRef,
        /// The solution's version in the source environment before this
        /// export (Power Platform's "dev current version"); the exporter
        /// moves the source on to the artifact's version when that is
        /// higher. `None` from placeholder work and older exporters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_version: Option<String>,
    },
    /// The validator's findings about `artifact`; with verdict `passed`
    /// the run imports exactly that artifact.
    Validated {
        artifact: ArtifactRef,
        report: ValidationReport,
    },
    /// An import in progress (sent with status `started`, repeatedly).
    ImportProgress {
        async_operation_id: Uuid,
        /// 0 to 100 when the environment says; `None` when it does not.
        #[serde(default)]
        percent: Option<f64>,
    },
    /// The import finished.
    Imported {
        async_operation_id: Uuid,
        /// The environment's own message, if any.
        #[serde(default)]
        message: Option<String>,
    },
}

/// The validator's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing stands in the way of the import.
    Passed,
    /// Only deployment settings are missing or wrong; the maker can supply
    /// them and validation runs again.
    NeedsSettings,
    /// Something the maker cannot fix with settings (missing dependencies,
    /// a lower version, a policy).
    Failed,
}

/// What the validator found, shown to the maker in words they understand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub verdict: Verdict,
    /// The artifact's version and what the target has installed.
    pub artifact_version: String,
    #[serde(default)]
    pub installed_version: Option<String>,
    /// Why the version may not be deployed (lower than installed...).
    #[serde(default)]
    pub version_problem: Option<String>,
    /// Components the solution needs that the target lacks.
    #[serde(default)]
    pub missing_dependencies: Vec<MissingDependency>,
    /// Errors the target reported when staging the solution.
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub connection_references: Vec<ConnectionReferenceCheck>,
    #[serde(default)]
    pub environment_variables: Vec<EnvironmentVariableCheck>,
    #[serde(default)]
    pub policy_violations: Vec<slipway_policy::PolicyViolation>,
    /// Component-level changes against what the target has installed
    /// (`slipway_solution::SolutionDiff` as JSON).
    #[serde(default)]
    pub diff: Option<serde_json::Value>,
    /// What could not be checked, and why (the run is not held by these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A component the solution needs and the target lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingDependency {
    /// e.g. `Entity`, `Attribute`.
    pub required_type: String,
    /// Display or schema name of what is missing.
    pub required: String,
    /// The solution component that needs it.
    #[serde(default)]
    pub required_by: Option<String>,
}

/// A connection reference of the solution and the connection it will use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionReferenceCheck {
    pub logical_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub connector_id: String,
    /// The connection chosen in the settings, if any.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// Why it cannot be used as is; `None` when it is fine.
    #[serde(default)]
    pub problem: Option<String>,
    /// The target's connections of the same connector.
    #[serde(default)]
    pub candidates: Vec<ConnectionCandidate>,
}

/// A connection in the target that a connection reference could use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCandidate {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// An environment variable of the solution and the value it will have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentVariableCheck {
    pub schema_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// string, number, boolean, json, data_source or secret.
    pub type_name: String,
    /// Where the value comes from: `settings`, `current` (already set in
    /// the target), `default` (the definition's), or `None` when it has none.
    #[serde(default)]
    pub value_source: Option<String>,
    /// Why it cannot be used as is; `None` when it is fine.
    #[serde(default)]
    pub problem: Option<String>,
}

/// The outcome a [`RunEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Started,
    Succeeded,
    /// A transient failure; the message will be retried.
    Retrying,
    /// The step failed for good (parked after its attempts, or refused).
    Failed,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope::new(
            Uuid::now_v7(),
            Message::Export(ExportCommand {
                deployment: Deployment {
                    version: Some("1.0.0.2".into()),
                    ..Deployment::between("Contoso", "dev", "test")
                },
            }),
        )
    }

    #[test]
    fn round_trips_through_json() {
        let env = sample();
        let back = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.message.kind(), "export");
        assert_eq!(back.message.role(), Some(Role::Exporter));
    }

    #[test]
    fn wire_form_names_kind_and_body() {
        let v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        assert_eq!(v["kind"], "export");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["body"]["deployment"]["solution_name"], "Contoso");
    }

    #[test]
    fn refuses_newer_schema() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        v["schema_version"] = (SCHEMA_VERSION + 1).into();
        let err = Envelope::decode(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains("upgrade this service"));
    }

    #[test]
    fn refuses_unknown_kind() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        v["kind"] = "launch_rockets".into();
        let err = Envelope::decode(v.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("launch_rockets"), "{err}");
    }

    #[test]
    fn the_source_version_of_an_export_is_optional_on_the_wire() {
        let artifact = ArtifactRef {
            managed_sha256: "m".into(),
            unmanaged_sha256: "u".into(),
            version: "1.0.0.2".into(),
            managed_bytes: 7,
        };
        // An event written before the field existed still parses.
        let old = serde_json::json!({"type": "exported", "artifact": artifact});
        assert_eq!(
            serde_json::from_value::<StepOutcome>(old.clone()).unwrap(),
            StepOutcome::Exported {
                artifact: artifact.clone(),
                source_version: None
            }
        );
        let none = StepOutcome::Exported {
            artifact: artifact.clone(),
            source_version: None,
        };
        assert_eq!(serde_json::to_value(&none).unwrap(), old);
        let some = StepOutcome::Exported {
            artifact,
            source_version: Some("1.0.0.1".into()),
        };
        let v = serde_json::to_value(&some).unwrap();
        assert_eq!(v["source_version"], "1.0.0.1");
        assert_eq!(serde_json::from_value::<StepOutcome>(v).unwrap(), some);
    }

    #[test]
    fn deploy_as_is_optional_on_the_wire() {
        // A message written before the field existed still parses.
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        assert!(v["body"]["deployment"].get("deploy_as").is_none(), "{v}");
        v["body"]["deployment"]
            .as_object_mut()
            .unwrap()
            .remove("deploy_as");
        let old = Envelope::decode(v.to_string().as_bytes()).unwrap();
        assert_eq!(old.message.deployment().unwrap().deploy_as, None);

        let identity = DeployIdentity::User {
            user: "release@contoso.com".into(),
        };
        v["body"]["deployment"]["deploy_as"] = serde_json::to_value(&identity).unwrap();
        assert_eq!(
            v["body"]["deployment"]["deploy_as"],
            serde_json::json!({"mode": "user", "user": "release@contoso.com"})
        );
        let back = Envelope::decode(v.to_string().as_bytes()).unwrap();
        assert_eq!(back.message.deployment().unwrap().deploy_as, Some(identity));
        let app = serde_json::json!({"mode": "service_principal", "application_id": "a1"});
        assert_eq!(
            serde_json::from_value::<DeployIdentity>(app).unwrap(),
            DeployIdentity::ServicePrincipal {
                application_id: "a1".into()
            }
        );
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for bytes in [
            &b""[..],
            b"not json",
            b"[]",
            b"{}",
            b"{\"schema_version\":1}",
            b"\xff\xfe",
        ] {
            assert!(Envelope::decode(bytes).is_err());
        }
        let mut v: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        v["body"] = serde_json::json!({"deployment": 5});
        let err = Envelope::decode(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    }

    #[test]
    fn reports_travel_with_the_job_and_unpack_in_order() {
        let plain = sample();
        let v: serde_json::Value = serde_json::from_slice(&plain.encode()).unwrap();
        assert!(
            v.get("reports").is_none(),
            "no reports field unless there are some"
        );
        assert!(
            plain.clone().into_events().is_empty(),
            "a command is no event"
        );

        let event = |step, status| {
            plain.next(Message::RunEvent(RunEvent {
                step: Some(step),
                status,
                service: "worker".into(),
                instance: None,
                detail: None,
                outcome: None,
            }))
        };
        let exported = event(Step::Export, StepStatus::Succeeded);
        let validated = event(Step::Validate, StepStatus::Succeeded);
        let mut command = sample();
        command.reports = vec![exported.clone(), validated.clone()];
        let back = Envelope::decode(&command.encode()).unwrap();
        assert_eq!(back, command);
        let ids: Vec<Uuid> = back.into_events().iter().map(|e| e.message_id).collect();
        assert_eq!(ids, [exported.message_id, validated.message_id]);

        let mut started = event(Step::Import, StepStatus::Started);
        let mut nested = validated.clone();
        nested.reports = vec![exported.clone()];
        started.reports = vec![nested];
        let events = started.clone().into_events();
        let ids: Vec<Uuid> = events.iter().map(|e| e.message_id).collect();
        assert_eq!(
            ids,
            [
                exported.message_id,
                validated.message_id,
                started.message_id
            ],
            "flattened, oldest first, the carrier last"
        );
        assert!(events.iter().all(|e| e.reports.is_empty()));
    }
}
