//! Plain types of the admin side: environments, pipelines, stages, sharing,
//! roles and API tokens (no I/O). They double as the API's views: the
//! gateway serializes them as they are.

use std::fmt;

use serde::{Deserialize, Serialize};
use slipway_policy::StagePolicies;
use time::OffsetDateTime;
use uuid::Uuid;

/// What an environment is for; never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentKind {
    /// Makers build solutions here; pipelines deploy from it.
    Development,
    /// Pipelines deploy to it (test, production...).
    Target,
}

impl EnvironmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvironmentKind::Development => "development",
            EnvironmentKind::Target => "target",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "development" => Some(EnvironmentKind::Development),
            "target" => Some(EnvironmentKind::Target),
            _ => None,
        }
    }
}

/// Whether Slipway could reach an environment with its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    /// Not checked yet (just registered, or its URL or credentials changed).
    Pending,
    /// WhoAmI answered.
    Success,
    /// WhoAmI failed; `validation_error` says why.
    Failed,
}

impl ValidationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationStatus::Pending => "pending",
            ValidationStatus::Success => "success",
            ValidationStatus::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(ValidationStatus::Pending),
            "success" => Some(ValidationStatus::Success),
            "failed" => Some(ValidationStatus::Failed),
            _ => None,
        }
    }
}

/// A registered Dataverse environment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Environment {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub kind: EnvironmentKind,
    /// How to authenticate, by reference only (`env:NAME`, `file:/path`):
    /// never a secret.
    #[schema(value_type = Object)]
    pub credentials: serde_json::Value,
    pub validation_status: ValidationStatus,
    pub validation_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub validated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An environment to register.
#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub name: String,
    pub url: String,
    pub kind: EnvironmentKind,
    pub credentials: serde_json::Value,
}

/// Changes to an environment; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub kind: Option<EnvironmentKind>,
    pub credentials: Option<serde_json::Value>,
}

/// An environment as a pipeline or stage refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EnvironmentRef {
    pub id: Uuid,
    pub name: String,
}

/// Who runs the import in a stage's target environments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeployAs {
    /// The environment's registered credentials (the default).
    #[default]
    Environment,
    /// A service principal (application id) the stage's owner chose, as
    /// the product's "delegated deployment".
    ServicePrincipal { application_id: String },
    /// A named user, e.g. the pipeline owner.
    User { user: String },
}

/// A stage's behaviour, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StageSettings {
    /// An approver must approve each deployment before it is imported.
    pub approval_required: bool,
    /// An external system must complete a gate before the export starts
    /// (OnPreExportStarted).
    pub pre_export_gate: bool,
    /// An external system must complete a gate before the import starts
    /// (OnPreDeploymentStarted).
    pub pre_deployment_gate: bool,
    pub deploy_as: DeployAs,
    pub policies: StagePolicies,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stage {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub name: String,
    /// The stage whose success a deployment here requires; `None` for a
    /// first stage.
    pub previous_stage_id: Option<Uuid>,
    /// One or more target environments (fan-out, e.g. regional copies).
    pub targets: Vec<EnvironmentRef>,
    #[serde(flatten)]
    pub settings: StageSettings,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A stage to add, or the whole new content of a stage.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub previous_stage_id: Option<Uuid>,
    pub target_ids: Vec<Uuid>,
    pub settings: StageSettings,
}

/// A pipeline with its sources, stages (first stages first, each after the
/// one it follows) and shares.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Pipeline {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Deployments of versions older than the installed one are allowed.
    pub allow_redeploy_older: bool,
    /// The development environments it deploys from.
    pub source_environments: Vec<EnvironmentRef>,
    pub stages: Vec<Stage>,
    pub shares: Vec<Principal>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A pipeline to create.
#[derive(Debug, Clone)]
pub struct NewPipeline {
    pub name: String,
    pub description: String,
    pub allow_redeploy_older: bool,
    pub source_environment_ids: Vec<Uuid>,
}

/// Changes to a pipeline; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct PipelinePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub allow_redeploy_older: Option<bool>,
    pub source_environment_ids: Option<Vec<Uuid>>,
}

/// A user or a group (from the identity provider's groups claim, or given
/// to an API token).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Group,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Group => "group",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(PrincipalKind::User),
            "group" => Some(PrincipalKind::Group),
            _ => None,
        }
    }
}

/// A user or group by name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: PrincipalKind::User,
            name: name.into(),
        }
    }

    pub fn group(name: impl Into<String>) -> Self {
        Principal {
            kind: PrincipalKind::Group,
            name: name.into(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// What a caller may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AccessRole {
    /// Sets up environments, pipelines, sharing, tokens; sees everything.
    Admin,
    /// Deploys through the pipelines shared with them.
    Maker,
    /// Approves or rejects deployments on the pipelines shared with them.
    Approver,
}

impl AccessRole {
    pub const ALL: [AccessRole; 3] = [AccessRole::Admin, AccessRole::Maker, AccessRole::Approver];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Admin => "admin",
            AccessRole::Maker => "maker",
            AccessRole::Approver => "approver",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        AccessRole::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A role given to a user or a group.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    pub principal: Principal,
    pub role: AccessRole,
}

/// An API token as listed: never the token itself, nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The user the token authenticates as.
    pub subject: String,
    /// Groups the token's user is taken to belong to.
    pub groups: Vec<String>,
    /// The token's first characters, to recognize it.
    pub display_prefix: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl ApiToken {
    /// Usable at `now`: not revoked, not expired.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A token to store: its hash, never the token.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub name: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub token_hash: String,
    pub display_prefix: String,
    pub expires_at: Option<OffsetDateTime>,
}

impl StageSettings {
    /// Every problem of these settings as (field, reason), fields named as
    /// in the API (`deploy_as.application_id`, `policies.blocked_connectors[0]`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match &self.deploy_as {
            DeployAs::Environment => {}
            DeployAs::ServicePrincipal { application_id } => {
                if application_id.trim().is_empty() {
                    problems.push((
                        "deploy_as.application_id".into(),
                        "must name the service principal's application (client) id".into(),
                    ));
                }
            }
            DeployAs::User { user } => {
                if user.trim().is_empty() {
                    problems.push(("deploy_as.user".into(), "must name a user".into()));
                }
            }
        }
        if let Err(errors) = self.policies.validate() {
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| (format!("policies.{}", e.field), e.reason)),
            );
        }
        problems
    }
}
