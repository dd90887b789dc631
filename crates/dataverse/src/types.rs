//! Request and response types, with Dataverse's own JSON field names.
//!
//! Entity records (`solutions`, `asyncoperations`...) use the lowercase
//! logical names of their columns; action parameters and complex types
//! (`StageSolutionResults`...) use PascalCase, as the Web API does.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Answer of the `WhoAmI` function: who the token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WhoAmI {
    /// `BusinessUnitId`.
    pub business_unit_id: Uuid,
    /// `UserId` (the application user of a client-credentials token).
    pub user_id: Uuid,
    /// `OrganizationId`: stable identity of the environment.
    pub organization_id: Uuid,
}

/// A row of the `solutions` entity set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledSolution {
    /// `solutionid`.
    #[serde(rename = "solutionid")]
    pub solution_id: Uuid,
    /// `uniquename`.
    #[serde(rename = "uniquename")]
    pub unique_name: String,
    /// `friendlyname`.
    #[serde(rename = "friendlyname", default)]
    pub friendly_name: Option<String>,
    /// `version` as Dataverse writes it (`1.0.0.1`).
    pub version: String,
    /// `ismanaged`.
    #[serde(rename = "ismanaged")]
    pub is_managed: bool,
}

/// A visible solution with its publisher, as
/// [`crate::Client::solutions_with_publishers`] lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolutionListing {
    #[serde(flatten)]
    pub solution: InstalledSolution,
    /// `publisherid`, expanded; absent when the publisher is not readable.
    #[serde(rename = "publisherid", default)]
    pub publisher: Option<PublisherSummary>,
}

/// The columns of a `publisher` that name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublisherSummary {
    /// `uniquename`.
    #[serde(rename = "uniquename")]
    pub unique_name: String,
    /// `friendlyname`.
    #[serde(rename = "friendlyname", default)]
    pub friendly_name: Option<String>,
}

/// `statuscode` of an `asyncoperation` (values of `AsyncOperation_StatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "i32", into = "i32")]
pub enum AsyncStatus {
    /// 0
    WaitingForResources,
    /// 10
    Waiting,
    /// 20
    InProgress,
    /// 21
    Pausing,
    /// 22
    Canceling,
    /// 30
    Succeeded,
    /// 31
    Failed,
    /// 32
    Canceled,
    /// Any code this client does not know.
    Other(i32),
}

impl From<i32> for AsyncStatus {
    fn from(code: i32) -> Self {
        match code {
            0 => Self::WaitingForResources,
            10 => Self::Waiting,
            20 => Self::InProgress,
            21 => Self::Pausing,
            22 => Self::Canceling,
            30 => Self::Succeeded,
            31 => Self::Failed,
            32 => Self::Canceled,
            other => Self::Other(other),
        }
    }
}

impl From<AsyncStatus> for i32 {
    fn from(s: AsyncStatus) -> i32 {
        match s {
            AsyncStatus::WaitingForResources => 0,
            AsyncStatus::Waiting => 10,
            AsyncStatus::InProgress => 20,
            AsyncStatus::Pausing => 21,
            AsyncStatus::Canceling => 22,
            AsyncStatus::Succeeded => 30,
            AsyncStatus::Failed => 31,
            AsyncStatus::Canceled => 32,
            AsyncStatus::Other(c) => c,
        }
    }
}

impl fmt::Display for AsyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WaitingForResources => f.write_str("waiting for resources"),
            Self::Waiting => f.write_str("waiting"),
            Self::InProgress => f.write_str("in progress"),
            Self::Pausing => f.write_str("pausing"),
            Self::Canceling => f.write_str("canceling"),
            Self::Succeeded => f.write_str("succeeded"),
            Self::Failed => f.write_str("failed"),
            Self::Canceled => f.write_str("canceled"),
            Self::Other(c) => write!(f, "in status {c}"),
        }
    }
}

/// `statecode` 3: the operation is over (whatever its status).
pub const ASYNC_STATE_COMPLETED: i32 = 3;

/// A row of `asyncoperations`: the job behind `ImportSolutionAsync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncOperation {
    /// `asyncoperationid`.
    #[serde(rename = "asyncoperationid")]
    pub id: Uuid,
    /// `name`, e.g. `ImportSolutionAsync`.
    #[serde(default)]
    pub name: Option<String>,
    /// `statecode`: 0 ready, 1 suspended, 2 locked, 3 completed.
    pub statecode: i32,
    /// `statuscode`.
    pub statuscode: AsyncStatus,
    /// `message`: the full error text of a failed operation.
    #[serde(default)]
    pub message: Option<String>,
    /// `friendlymessage`: a shorter text for people.
    #[serde(default)]
    pub friendlymessage: Option<String>,
}

impl AsyncOperation {
    /// Whether the operation is over (`statecode` 3).
    pub fn is_completed(&self) -> bool {
        self.statecode == ASYNC_STATE_COMPLETED
    }

    /// The most complete message Dataverse gave.
    pub fn error_message(&self) -> String {
        self.message
            .clone()
            .or_else(|| self.friendlymessage.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("asynchronous operation {} gave no message", self.id))
    }
}

/// A row of `importjobs`: the import behind an `ImportSolutionAsync`, keyed
/// by the `ImportJobId` it was given. Unlike the asynchronous operation it
/// tells how far the import has got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportJob {
    /// `progress`: a percentage, 0 to 100, that grows while the import runs.
    #[serde(default)]
    pub progress: Option<f64>,
    /// `startedon` (ISO 8601, as Dataverse writes it).
    #[serde(default, rename = "startedon")]
    pub started_on: Option<String>,
    /// `completedon` (ISO 8601); set once the import is over.
    #[serde(default, rename = "completedon")]
    pub completed_on: Option<String>,
    /// `solutionname`: the unique name of the solution imported.
    #[serde(default, rename = "solutionname")]
    pub solution_name: Option<String>,
}

/// Answer of `ImportSolutionAsync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportStarted {
    /// `AsyncOperationId`: poll `asyncoperations(<id>)`.
    pub async_operation_id: Uuid,
    /// `ImportJobKey`.
    #[serde(default)]
    pub import_job_key: Option<String>,
}

/// What `ImportSolutionAsync` receives.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    /// The solution zip. `Bytes` so retries and callers share one buffer.
    pub customization_file: Bytes,
    /// `OverwriteUnmanagedCustomizations`.
    pub overwrite_unmanaged_customizations: bool,
    /// `PublishWorkflows`: turn flows on after import.
    pub publish_workflows: bool,
    /// `HoldingSolution`: stage for a later upgrade.
    pub holding_solution: bool,
    /// `ImportJobId`. The client fills in a fresh one when `None`, so a
    /// request retried after a timeout names the same job; pass a
    /// deterministic id to make redelivered commands idempotent.
    pub import_job_id: Option<Uuid>,
    /// `ComponentParameters`: environment variable values and connections.
    pub component_parameters: Vec<ComponentParameter>,
}

impl ImportRequest {
    /// An import of `zip` with the pipeline defaults: overwrite unmanaged
    /// customizations, publish workflows, no holding solution.
    pub fn new(zip: Bytes) -> Self {
        Self {
            customization_file: zip,
            overwrite_unmanaged_customizations: true,
            publish_workflows: true,
            holding_solution: false,
            import_job_id: None,
            component_parameters: Vec::new(),
        }
    }
}

/// One entry of `ComponentParameters`, sent as a `crmbaseentity` with its
/// `@odata.type`, the way the Web API takes deployment settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "@odata.type")]
pub enum ComponentParameter {
    /// `Microsoft.Dynamics.CRM.environmentvariablevalue` {schemaname, value}.
    #[serde(rename = "Microsoft.Dynamics.CRM.environmentvariablevalue")]
    EnvironmentVariableValue {
        /// Schema name of the definition.
        #[serde(rename = "schemaname")]
        schema_name: String,
        /// The value, as text.
        value: String,
    },
    /// `Microsoft.Dynamics.CRM.connectionreference`
    /// {connectionreferencelogicalname, connectionid}.
    #[serde(rename = "Microsoft.Dynamics.CRM.connectionreference")]
    ConnectionReference {
        /// `connectionreferencelogicalname`.
        #[serde(rename = "connectionreferencelogicalname")]
        logical_name: String,
        /// `connectionid`: the connection in the target environment.
        #[serde(rename = "connectionid")]
        connection_id: String,
    },
}

/// Answer of `StageSolution` (the `StageSolutionResults` complex type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StageSolutionResults {
    /// `StageSolutionUploadId`.
    pub stage_solution_upload_id: Uuid,
    /// `StageSolutionStatus` (e.g. `Passed`, `Failed`).
    #[serde(default)]
    pub stage_solution_status: Option<String>,
    /// `SolutionValidationResults`.
    #[serde(default)]
    pub solution_validation_results: Vec<SolutionValidationResult>,
    /// `MissingDependencies`.
    #[serde(default)]
    pub missing_dependencies: Vec<MissingDependency>,
    /// `SolutionDetails`.
    #[serde(default)]
    pub solution_details: Option<SolutionDetails>,
}

impl StageSolutionResults {
    /// Validation results of type `Error`.
    pub fn errors(&self) -> impl Iterator<Item = &SolutionValidationResult> {
        self.solution_validation_results.iter().filter(|r| {
            r.solution_validation_result_type
                .eq_ignore_ascii_case("error")
        })
    }
}

/// `SolutionValidationResult` complex type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SolutionValidationResult {
    /// `SolutionValidationResultType`: `Error`, `Warning` or `Info`.
    pub solution_validation_result_type: String,
    /// `Message`.
    #[serde(default)]
    pub message: String,
    /// `ErrorCode`.
    #[serde(default)]
    pub error_code: i64,
    /// `AdditionalInfo`.
    #[serde(default)]
    pub additional_info: Option<String>,
}

/// `MissingDependency` complex type.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MissingDependency {
    pub required_component_type: Option<String>,
    pub required_component_schema_name: Option<String>,
    pub required_component_id: Option<String>,
    pub required_component_display_name: Option<String>,
    pub required_component_parent_display_name: Option<String>,
    pub required_component_parent_schema_name: Option<String>,
    pub dependent_component_type: Option<String>,
    pub dependent_component_schema_name: Option<String>,
    pub dependent_component_id: Option<String>,
    pub dependent_component_display_name: Option<String>,
    pub dependent_component_parent_display_name: Option<String>,
    pub dependent_component_parent_schema_name: Option<String>,
    pub can_resolve_missing_dependency: Option<bool>,
}

/// `SolutionDetails` complex type (the fields a pipeline uses).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SolutionDetails {
    pub solution_unique_name: Option<String>,
    pub solution_friendly_name: Option<String>,
    pub solution_version: Option<String>,
    pub is_managed: Option<bool>,
    pub publisher_unique_name: Option<String>,
    pub publisher_friendly_name: Option<String>,
    pub previous_solution_unique_name: Option<String>,
    pub previous_solution_version: Option<String>,
    pub previous_is_managed: Option<bool>,
}

/// A row of `environmentvariabledefinitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariableDefinition {
    /// `environmentvariabledefinitionid`.
    #[serde(rename = "environmentvariabledefinitionid")]
    pub id: Uuid,
    /// `schemaname`.
    #[serde(rename = "schemaname")]
    pub schema_name: String,
    /// `displayname`.
    #[serde(rename = "displayname", default)]
    pub display_name: Option<String>,
    /// `type`: 100000000 String, ...01 Number, ...02 Boolean, ...03 JSON,
    /// ...04 Data source, ...05 Secret.
    #[serde(rename = "type")]
    pub kind: i32,
    /// `defaultvalue`.
    #[serde(rename = "defaultvalue", default)]
    pub default_value: Option<String>,
    /// `isrequired`.
    #[serde(rename = "isrequired", default)]
    pub is_required: bool,
}

/// A row of `environmentvariablevalues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariableValue {
    /// `environmentvariablevalueid`.
    #[serde(rename = "environmentvariablevalueid")]
    pub id: Uuid,
    /// `schemaname`.
    #[serde(rename = "schemaname")]
    pub schema_name: String,
    /// `value`.
    #[serde(default)]
    pub value: Option<String>,
    /// `_environmentvariabledefinitionid_value`: the definition it sets.
    #[serde(rename = "_environmentvariabledefinitionid_value", default)]
    pub definition_id: Option<Uuid>,
}

/// A row of `connectionreferences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReferenceRecord {
    /// `connectionreferenceid`.
    #[serde(rename = "connectionreferenceid")]
    pub id: Uuid,
    /// `connectionreferencelogicalname`.
    #[serde(rename = "connectionreferencelogicalname")]
    pub logical_name: String,
    /// `connectionreferencedisplayname`.
    #[serde(rename = "connectionreferencedisplayname", default)]
    pub display_name: Option<String>,
    /// `connectorid`, e.g. `/providers/Microsoft.PowerApps/apis/shared_office365`.
    #[serde(rename = "connectorid", default)]
    pub connector_id: Option<String>,
    /// `connectionid`: the bound connection, if any.
    #[serde(rename = "connectionid", default)]
    pub connection_id: Option<String>,
}

/// A connection that exists in an environment (what a connection reference
/// can be bound to).
///
/// Real environments list these through the Power Apps connections API, not
/// the Dataverse Web API; Slipway models them as a Dataverse-style entity set
/// named `connections` (see the crate docs), which the simulator serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// `connectionid`: the connection's name, as put in `ComponentParameters`.
    #[serde(rename = "connectionid")]
    pub id: String,
    /// `connectorid`, e.g. `/providers/Microsoft.PowerApps/apis/shared_office365`.
    #[serde(rename = "connectorid")]
    pub connector_id: String,
    /// `displayname`.
    #[serde(rename = "displayname", default)]
    pub display_name: Option<String>,
    /// `status`: `Connected` when usable, otherwise e.g. `Error`.
    pub status: String,
}

/// A row of `msdyn_solutioncomponentsummaries`: one component of an
/// installed solution, named the way solution packages name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolutionComponentSummary {
    /// `msdyn_componenttype`: the component type code (1 Entity, 29 Workflow,
    /// 61 WebResource, 380 environment variable definition...); Dataverse
    /// types the column as a decimal. `None` when only a name is known.
    #[serde(rename = "msdyn_componenttype", default)]
    pub component_type: Option<f64>,
    /// `msdyn_componenttypename`, e.g. `Entity`.
    #[serde(rename = "msdyn_componenttypename", default)]
    pub component_type_name: Option<String>,
    /// `msdyn_schemaname`, when the component has one.
    #[serde(rename = "msdyn_schemaname", default)]
    pub schema_name: Option<String>,
    /// `msdyn_objectid`: the component's id.
    #[serde(rename = "msdyn_objectid", default)]
    pub object_id: Option<String>,
    /// `msdyn_name`: its (display) name.
    #[serde(rename = "msdyn_name", default)]
    pub name: Option<String>,
}

impl SolutionComponentSummary {
    /// The type code, when it is a whole non-negative number.
    pub fn type_code(&self) -> Option<u32> {
        self.component_type
            .filter(|c| c.fract() == 0.0 && *c >= 0.0 && *c <= f64::from(u32::MAX))
            .map(|c| c as u32)
    }
}

/// A row of `systemusers`: the columns that say who a user is, to
/// impersonate them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemUser {
    /// `systemuserid`: what `MSCRMCallerID` takes.
    #[serde(rename = "systemuserid")]
    pub id: Uuid,
    /// `domainname`: the user principal name (`someone@contoso.com`) of a
    /// Microsoft Entra user; application users have a generated one.
    #[serde(rename = "domainname", default)]
    pub domain_name: Option<String>,
    /// `fullname`.
    #[serde(rename = "fullname", default)]
    pub full_name: Option<String>,
    /// `azureactivedirectoryobjectid`: what `CallerObjectId` takes.
    #[serde(rename = "azureactivedirectoryobjectid", default)]
    pub object_id: Option<Uuid>,
    /// `applicationid`: the application (client) id of an application user.
    #[serde(rename = "applicationid", default)]
    pub application_id: Option<Uuid>,
    /// `isdisabled`: a disabled user cannot be impersonated.
    #[serde(rename = "isdisabled", default)]
    pub is_disabled: bool,
}

/// Whom requests act for: Dataverse impersonation, one header on every
/// request. The caller's own credentials still authenticate; its user needs
/// the `prvActOnBehalfOfAnotherUser` privilege (the Delegate role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerId {
    /// `CallerObjectId`: the user's Microsoft Entra object id (the
    /// documented preferred way).
    ObjectId(Uuid),
    /// `MSCRMCallerID`: the user's `systemuserid` (the legacy way; also what
    /// a `systemusers` lookup finds).
    SystemUserId(Uuid),
}

impl CallerId {
    /// The request header that carries it.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::ObjectId(_) => "CallerObjectId",
            Self::SystemUserId(_) => "MSCRMCallerID",
        }
    }

    /// The id it carries.
    pub fn id(self) -> Uuid {
        match self {
            Self::ObjectId(id) | Self::SystemUserId(id) => id,
        }
    }
}

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.header_name(), self.id())
    }
}
