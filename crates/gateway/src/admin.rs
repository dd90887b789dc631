//! The admin side of the API: environments, pipelines and stages, sharing,
//! role grants, API tokens and the audit log. Admin-only routes answer 403
//! to other roles before looking anything up; pipelines not shared with a
//! maker or approver answer the same 404 as unknown ones.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use slipway_dataverse::CredentialsRef;
use slipway_policy::StagePolicies;
use slipway_store::{
    AccessRole, ApiToken, AuditQuery, AuditRecord, AuditVerification, DeployAs, Environment,
    EnvironmentKind, EnvironmentPatch, NewApiToken, NewEnvironment, NewPipeline, Pipeline,
    PipelinePatch, Principal, PrincipalKind, RoleGrant, Stage, StageSettings, StageSpec,
    ValidationStatus,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Gateway;
use crate::caller::Caller;
use crate::error::{ApiError, Body, FieldError};

/// The actor recorded for changes the gateway makes on its own.
const SYSTEM_ACTOR: &str = "slipway";

// ---------------------------------------------------------------- me

/// Who the caller is and which roles they hold.
#[utoipa::path(get, path = "/api/v1/me", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = Caller), (status = 401, body = crate::error::ErrorBody)))]
pub async fn me(caller: Caller) -> Json<Caller> {
    Json(caller)
}

// ---------------------------------------------------------------- environments

/// An environment to register. Credentials are references (`env:NAME`,
/// `file:/path`), never secrets.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRequest {
    pub name: String,
    /// e.g. `https://contoso.crm4.dynamics.com`.
    pub url: String,
    pub kind: EnvironmentKind,
    pub credentials: CredentialsRef,
}

/// Changes to an environment; absent fields are kept.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentPatchRequest {
    pub name: Option<String>,
    pub url: Option<String>,
    pub kind: Option<EnvironmentKind>,
    pub credentials: Option<CredentialsRef>,
}

/// What [`check_url`] says beyond the rule itself.
pub(crate) struct UrlHints {
    /// An example of a good URL, after "give ...".
    pub example: &'static str,
    /// Why plain http is refused.
    pub http: &'static str,
    /// Where credentials go instead of the URL.
    pub credentials: &'static str,
}

/// A URL Slipway calls: https, or plain http to this machine only; a host;
/// no user name or password in it. Problems are pushed on `errors`.
pub(crate) fn check_url(field: &str, url: &str, hints: &UrlHints, errors: &mut Vec<FieldError>) {
    let mut bad = |reason: String| {
        errors.push(FieldError {
            field: field.into(),
            reason,
        })
    };
    match reqwest::Url::parse(url) {
        Err(e) => bad(format!(
            "`{url}` is not a URL ({e}); give {}",
            hints.example
        )),
        Ok(parsed) => {
            let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            match parsed.scheme() {
                "https" => {}
                "http" if local => {}
                "http" => bad(hints.http.into()),
                other => bad(format!("scheme `{other}` is not supported; use https")),
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                bad("has no host".into());
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                bad(format!(
                    "must not contain a user name or password; {}",
                    hints.credentials
                ));
            }
        }
    }
}

/// The rules of an environment's URL.
const ENVIRONMENT_URL: UrlHints = UrlHints {
    example: "the environment URL, e.g. https://contoso.crm4.dynamics.com",
    http: "must use https (plain http is allowed only to this machine, for the simulator)",
    credentials: "give credentials as references",
};

fn credential_errors(credentials: &CredentialsRef, errors: &mut Vec<FieldError>) {
    if let Err(problems) = credentials.validate() {
        errors.extend(problems.into_iter().map(|(field, reason)| FieldError {
            field: format!("credentials.{field}"),
            reason,
        }));
    }
}

fn name_errors(field: &str, name: &str, errors: &mut Vec<FieldError>) {
    if let Err(slipway_store::StoreError::Invalid { field, reason }) =
        slipway_store::admin::check_name(field, name)
    {
        errors.push(FieldError { field, reason });
    }
}

fn fail_on(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

fn credentials_json(credentials: &CredentialsRef) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(credentials).map_err(|e| ApiError::Internal(e.into()))
}

#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", security(("bearer" = [])),
    responses((status = 200, body = Vec<Environment>), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_environments(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<Environment>>, ApiError> {
    caller.require_admin("list environments")?;
    Ok(Json(gw.store.list_environments().await?))
}

/// Registers an environment and checks it (WhoAmI) in the background: its
/// `validation_status` starts `pending`.
#[utoipa::path(post, path = "/api/v1/environments", tag = "environments", security(("bearer" = [])),
    request_body = EnvironmentRequest,
    responses((status = 201, body = Environment), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_environment(
    State(gw): State<Gateway>,
    caller: Caller,
    Body(req): Body<EnvironmentRequest>,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    caller.require_admin("register environments")?;
    let mut errors = Vec::new();
    name_errors("name", &req.name, &mut errors);
    check_url("url", &req.url, &ENVIRONMENT_URL, &mut errors);
    credential_errors(&req.credentials, &mut errors);
    fail_on(errors)?;
    let env = gw
        .store
        .create_environment(
            &caller.subject,
            &NewEnvironment {
                name: req.name,
                url: req.url.trim_end_matches('/').to_owned(),
                kind: req.kind,
                credentials: credentials_json(&req.credentials)?,
            },
        )
        .await?;
    spawn_check(gw.clone(), env.clone());
    Ok((StatusCode::CREATED, Json(env)))
}

#[utoipa::path(get, path = "/api/v1/environments/{id}", tag = "environments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = Environment), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_environment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Environment>, ApiError> {
    caller.require_admin("read environments")?;
    let env = gw
        .store
        .get_environment(id)
        .await?
        .ok_or_else(|| ApiError::not_found("environment", id))?;
    Ok(Json(env))
}

/// Changes an environment; a new URL or new credentials are checked again.
#[utoipa::path(patch, path = "/api/v1/environments/{id}", tag = "environments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = EnvironmentPatchRequest,
    responses((status = 200, body = Environment), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn update_environment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Body(req): Body<EnvironmentPatchRequest>,
) -> Result<Json<Environment>, ApiError> {
    caller.require_admin("change environments")?;
    let mut errors = Vec::new();
    if let Some(name) = &req.name {
        name_errors("name", name, &mut errors);
    }
    if let Some(url) = &req.url {
        check_url("url", url, &ENVIRONMENT_URL, &mut errors);
    }
    if let Some(c) = &req.credentials {
        credential_errors(c, &mut errors);
    }
    fail_on(errors)?;
    let patch = EnvironmentPatch {
        name: req.name,
        url: req.url.map(|u| u.trim_end_matches('/').to_owned()),
        kind: req.kind,
        credentials: req.credentials.as_ref().map(credentials_json).transpose()?,
    };
    let env = gw
        .store
        .update_environment(&caller.subject, id, &patch)
        .await?;
    if env.validation_status == ValidationStatus::Pending {
        spawn_check(gw.clone(), env.clone());
    }
    Ok(Json(env))
}

#[utoipa::path(delete, path = "/api/v1/environments/{id}", tag = "environments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "a pipeline uses it", body = crate::error::ErrorBody)))]
pub async fn delete_environment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("delete environments")?;
    gw.store.delete_environment(&caller.subject, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the environment now (WhoAmI with its credentials) and answers
/// with the stored result.
#[utoipa::path(post, path = "/api/v1/environments/{id}/validate", tag = "environments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Environment), (status = 404, body = crate::error::ErrorBody)))]
pub async fn validate_environment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Environment>, ApiError> {
    caller.require_admin("check environments")?;
    let env = gw
        .store
        .get_environment(id)
        .await?
        .ok_or_else(|| ApiError::not_found("environment", id))?;
    let checked = check_environment(&gw, &env, &caller.subject).await?;
    Ok(Json(checked.unwrap_or(env)))
}

fn spawn_check(gw: Gateway, env: Environment) {
    tokio::spawn(async move {
        if let Err(err) = check_environment(&gw, &env, SYSTEM_ACTOR).await {
            tracing::warn!(environment = %env.name, error = %err, "could not record environment check");
        }
    });
}

async fn check_environment(
    gw: &Gateway,
    env: &Environment,
    actor: &str,
) -> Result<Option<Environment>, ApiError> {
    let timeout = std::time::Duration::from_millis(gw.config.environment_check_timeout_ms);
    Ok(check_and_record(&gw.store, timeout, env, actor).await?)
}

/// WhoAmI against `env` with its credentials, bounded by `timeout`; stores
/// the outcome (audited as `actor`) and returns the environment as stored.
pub async fn check_and_record(
    store: &slipway_store::Store,
    timeout: std::time::Duration,
    env: &Environment,
    actor: &str,
) -> Result<Option<Environment>, slipway_store::StoreError> {
    let outcome = who_am_i(timeout, env).await;
    let (status, error) = match &outcome {
        Ok(()) => (ValidationStatus::Success, None),
        Err(reason) => (ValidationStatus::Failed, Some(reason.as_str())),
    };
    tracing::info!(environment = %env.name, ?status, error, "environment checked");
    store
        .record_environment_validation(actor, env, status, error)
        .await
}

async fn who_am_i(timeout: std::time::Duration, env: &Environment) -> Result<(), String> {
    ask_environment(
        timeout,
        env,
        |client| async move { client.who_am_i().await },
    )
    .await
    .map(|_| ())
}

/// Asks `env` something with its stored credentials (resolved now, in the
/// gateway), retrying a transient failure once, within `timeout` overall:
/// the one way the gateway talks to an environment (WhoAmI checks, the
/// solutions a maker picks from). The error says what went wrong.
pub(crate) async fn ask_environment<T, F>(
    timeout: std::time::Duration,
    env: &Environment,
    call: impl FnOnce(slipway_dataverse::Client) -> F,
) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, slipway_dataverse::DataverseError>>,
{
    let credentials: CredentialsRef = serde_json::from_value(env.credentials.clone())
        .map_err(|e| format!("stored credentials are unreadable: {e}"))?;
    let credentials = credentials.resolve().map_err(|e| e.to_string())?;
    let mut config = slipway_dataverse::ClientConfig::new(env.url.clone(), credentials);
    config.request_timeout = timeout;
    config.retry.max_retries = 1;
    let client = slipway_dataverse::Client::new(config).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, call(client)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms; check the URL and that the environment is reachable from the gateway",
            timeout.as_millis()
        )),
    }
}

// ---------------------------------------------------------------- pipelines

/// A pipeline to create. Stages are added afterwards.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Allow deploying a version older than the one installed.
    #[serde(default)]
    pub allow_redeploy_older: bool,
    /// The development environments makers deploy from (at least one).
    pub source_environment_ids: Vec<Uuid>,
}

/// Changes to a pipeline; absent fields are kept.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelinePatchRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub allow_redeploy_older: Option<bool>,
    pub source_environment_ids: Option<Vec<Uuid>>,
}

/// A stage, whole: adding one, or replacing one with `PUT`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    pub name: String,
    /// The stage a deployment must have succeeded in first; none for a first stage.
    #[serde(default)]
    pub previous_stage_id: Option<Uuid>,
    /// One or more target environments.
    pub target_environment_ids: Vec<Uuid>,
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default)]
    pub pre_export_gate: bool,
    #[serde(default)]
    pub pre_deployment_gate: bool,
    #[serde(default)]
    pub deploy_as: DeployAs,
    #[serde(default)]
    pub policies: StagePolicies,
}

impl StageRequest {
    fn into_spec(self) -> Result<StageSpec, ApiError> {
        let mut errors = Vec::new();
        name_errors("name", &self.name, &mut errors);
        let settings = StageSettings {
            approval_required: self.approval_required,
            pre_export_gate: self.pre_export_gate,
            pre_deployment_gate: self.pre_deployment_gate,
            deploy_as: self.deploy_as,
            policies: self.policies,
        };
        errors.extend(
            settings
                .problems()
                .into_iter()
                .map(|(field, reason)| FieldError { field, reason }),
        );
        if self.target_environment_ids.is_empty() {
            errors.push(FieldError {
                field: "target_environment_ids".into(),
                reason: "a stage needs at least one target environment".into(),
            });
        }
        fail_on(errors)?;
        Ok(StageSpec {
            name: self.name,
            previous_stage_id: self.previous_stage_id,
            target_ids: self.target_environment_ids,
            settings,
        })
    }
}

/// A pipeline as a non-admin sees it: who else it is shared with is not theirs to know.
fn for_caller(mut pipeline: Pipeline, caller: &Caller) -> Pipeline {
    if !caller.is_admin() {
        pipeline.shares.clear();
    }
    pipeline
}

/// The pipeline if the caller may see it; the same 404 otherwise.
pub async fn visible_pipeline(
    gw: &Gateway,
    caller: &Caller,
    id: Uuid,
) -> Result<Pipeline, ApiError> {
    let pipeline = gw.store.get_pipeline(id).await?;
    match pipeline {
        Some(p) if caller.is_admin() => Ok(p),
        Some(p)
            if gw
                .store
                .pipeline_shared_with(id, &caller.principals())
                .await? =>
        {
            Ok(p)
        }
        _ => Err(ApiError::not_found("pipeline", id)),
    }
}

/// Admins see every pipeline; makers and approvers those shared with them
/// (or with one of their groups).
#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines", security(("bearer" = [])),
    responses((status = 200, body = Vec<Pipeline>)))]
pub async fn list_pipelines(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<Pipeline>>, ApiError> {
    caller.require(&[AccessRole::Maker, AccessRole::Approver], "see pipelines")?;
    let pipelines = if caller.is_admin() {
        gw.store.list_pipelines(None).await?
    } else {
        gw.store.list_pipelines(Some(&caller.principals())).await?
    };
    Ok(Json(
        pipelines
            .into_iter()
            .map(|p| for_caller(p, &caller))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/pipelines", tag = "pipelines", security(("bearer" = [])),
    request_body = PipelineRequest,
    responses((status = 201, body = Pipeline), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_pipeline(
    State(gw): State<Gateway>,
    caller: Caller,
    Body(req): Body<PipelineRequest>,
) -> Result<(StatusCode, Json<Pipeline>), ApiError> {
    caller.require_admin("create pipelines")?;
    let mut errors = Vec::new();
    name_errors("name", &req.name, &mut errors);
    fail_on(errors)?;
    let pipeline = gw
        .store
        .create_pipeline(
            &caller.subject,
            &NewPipeline {
                name: req.name,
                description: req.description,
                allow_redeploy_older: req.allow_redeploy_older,
                source_environment_ids: req.source_environment_ids,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(pipeline)))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Pipeline), (status = 404, description = "unknown, or not shared with the caller", body = crate::error::ErrorBody)))]
pub async fn get_pipeline(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Pipeline>, ApiError> {
    caller.require(&[AccessRole::Maker, AccessRole::Approver], "see pipelines")?;
    let pipeline = visible_pipeline(&gw, &caller, id).await?;
    Ok(Json(for_caller(pipeline, &caller)))
}

#[utoipa::path(patch, path = "/api/v1/pipelines/{id}", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PipelinePatchRequest,
    responses((status = 200, body = Pipeline), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn update_pipeline(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Body(req): Body<PipelinePatchRequest>,
) -> Result<Json<Pipeline>, ApiError> {
    caller.require_admin("change pipelines")?;
    let mut errors = Vec::new();
    if let Some(name) = &req.name {
        name_errors("name", name, &mut errors);
    }
    fail_on(errors)?;
    let pipeline = gw
        .store
        .update_pipeline(
            &caller.subject,
            id,
            &PipelinePatch {
                name: req.name,
                description: req.description,
                allow_redeploy_older: req.allow_redeploy_older,
                source_environment_ids: req.source_environment_ids,
            },
        )
        .await?;
    Ok(Json(pipeline))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{id}", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_pipeline(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("delete pipelines")?;
    gw.store.delete_pipeline(&caller.subject, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a stage. Refused: a development environment as target, a previous
/// stage that closes a cycle, more than `gateway.max_stages_per_pipeline`.
#[utoipa::path(post, path = "/api/v1/pipelines/{id}/stages", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = StageRequest,
    responses((status = 201, body = Stage), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn add_stage(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Body(req): Body<StageRequest>,
) -> Result<(StatusCode, Json<Stage>), ApiError> {
    caller.require_admin("change pipelines")?;
    let spec = req.into_spec()?;
    let stage = gw
        .store
        .add_stage(
            &caller.subject,
            id,
            &spec,
            gw.config.max_stages_per_pipeline,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(stage)))
}

/// Replaces a stage, with the same rules as adding one.
#[utoipa::path(put, path = "/api/v1/pipelines/{id}/stages/{stage_id}", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("stage_id" = Uuid, Path)), request_body = StageRequest,
    responses((status = 200, body = Stage), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn update_stage(
    State(gw): State<Gateway>,
    caller: Caller,
    Path((id, stage_id)): Path<(Uuid, Uuid)>,
    Body(req): Body<StageRequest>,
) -> Result<Json<Stage>, ApiError> {
    caller.require_admin("change pipelines")?;
    let spec = req.into_spec()?;
    let stage = gw
        .store
        .update_stage(&caller.subject, id, stage_id, &spec)
        .await?;
    Ok(Json(stage))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{id}/stages/{stage_id}", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("stage_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "another stage follows it", body = crate::error::ErrorBody)))]
pub async fn delete_stage(
    State(gw): State<Gateway>,
    caller: Caller,
    Path((id, stage_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("change pipelines")?;
    gw.store.delete_stage(&caller.subject, id, stage_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- sharing

/// Shares the pipeline with a user or group (idempotent).
#[utoipa::path(post, path = "/api/v1/pipelines/{id}/shares", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Principal,
    responses((status = 200, body = Pipeline), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn share_pipeline(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Body(principal): Body<Principal>,
) -> Result<Json<Pipeline>, ApiError> {
    caller.require_admin("share pipelines")?;
    gw.store
        .share_pipeline(&caller.subject, id, &principal)
        .await?;
    let pipeline = gw
        .store
        .get_pipeline(id)
        .await?
        .ok_or_else(|| ApiError::not_found("pipeline", id))?;
    Ok(Json(pipeline))
}

fn principal_kind(kind: &str) -> Result<PrincipalKind, ApiError> {
    PrincipalKind::parse(kind)
        .ok_or_else(|| ApiError::invalid("kind", format!("`{kind}` is not `user` or `group`")))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{id}/shares/{kind}/{name}", tag = "pipelines", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "user or group"), ("name" = String, Path)),
    responses((status = 204), (status = 404, description = "no such pipeline or share", body = crate::error::ErrorBody)))]
pub async fn unshare_pipeline(
    State(gw): State<Gateway>,
    caller: Caller,
    Path((id, kind, name)): Path<(Uuid, String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("share pipelines")?;
    let principal = Principal {
        kind: principal_kind(&kind)?,
        name,
    };
    if gw
        .store
        .unshare_pipeline(&caller.subject, id, &principal)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "pipeline {id} is not shared with {principal}"
        )))
    }
}

// ---------------------------------------------------------------- roles

#[utoipa::path(get, path = "/api/v1/role-grants", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = Vec<RoleGrant>)))]
pub async fn list_role_grants(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<RoleGrant>>, ApiError> {
    caller.require_admin("list role grants")?;
    Ok(Json(gw.store.list_role_grants().await?))
}

/// Gives a user or group a role (idempotent: 200 when it already had it).
#[utoipa::path(post, path = "/api/v1/role-grants", tag = "access", security(("bearer" = [])),
    request_body = RoleGrant,
    responses((status = 201, body = RoleGrant), (status = 200, description = "already granted", body = RoleGrant), (status = 422, body = crate::error::ErrorBody)))]
pub async fn grant_role(
    State(gw): State<Gateway>,
    caller: Caller,
    Body(grant): Body<RoleGrant>,
) -> Result<(StatusCode, Json<RoleGrant>), ApiError> {
    caller.require_admin("grant roles")?;
    let created = gw.store.grant_role(&caller.subject, &grant).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(grant)))
}

/// Takes a role back. The last admin grant cannot be removed.
#[utoipa::path(delete, path = "/api/v1/role-grants/{kind}/{name}/{role}", tag = "access", security(("bearer" = [])),
    params(("kind" = String, Path, description = "user or group"), ("name" = String, Path), ("role" = String, Path, description = "admin, maker or approver")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "it is the last admin grant", body = crate::error::ErrorBody)))]
pub async fn revoke_role(
    State(gw): State<Gateway>,
    caller: Caller,
    Path((kind, name, role)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("revoke roles")?;
    let grant = RoleGrant {
        principal: Principal {
            kind: principal_kind(&kind)?,
            name,
        },
        role: AccessRole::parse(&role).ok_or_else(|| {
            ApiError::invalid("role", format!("`{role}` is not admin, maker or approver"))
        })?,
    };
    if gw.store.revoke_role(&caller.subject, &grant).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "{} does not have the role {}",
            grant.principal,
            grant.role.as_str()
        )))
    }
}

// ---------------------------------------------------------------- tokens

/// A token to create for a user. `roles` are granted to that user too.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, e.g. `ci-prod-deploys`.
    pub name: String,
    /// The user the token authenticates as.
    pub subject: String,
    /// Groups the user is taken to belong to (for shares and grants to groups).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Roles to grant the user (kept when the token is revoked).
    #[serde(default)]
    pub roles: Vec<AccessRole>,
    /// Days until it expires: 1 to 3650, 90 when absent.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new token: the only time `token` is ever shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Send as `Authorization: Bearer <token>`. Store it now: only its hash is kept.
    pub token: String,
    pub api_token: ApiToken,
}

pub const DEFAULT_TOKEN_DAYS: u32 = 90;
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// Creates a token (and its roles) and returns it once. Also used to
/// bootstrap the first admin (`slipway-gateway create-token`, `slipway dev`).
pub async fn issue_token(
    store: &slipway_store::Store,
    actor: &str,
    req: TokenRequest,
) -> Result<CreatedToken, ApiError> {
    let mut errors = Vec::new();
    name_errors("name", &req.name, &mut errors);
    name_errors("subject", &req.subject, &mut errors);
    for (i, g) in req.groups.iter().enumerate() {
        name_errors(&format!("groups[{i}]"), g, &mut errors);
    }
    let days = req.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if days == 0 || days > MAX_TOKEN_DAYS {
        errors.push(FieldError {
            field: "expires_in_days".into(),
            reason: format!("must be from 1 to {MAX_TOKEN_DAYS}"),
        });
    }
    fail_on(errors)?;
    let minted = slipway_auth::generate_api_token();
    let token = store
        .create_api_token(
            actor,
            &NewApiToken {
                name: req.name,
                subject: req.subject.clone(),
                groups: req.groups,
                token_hash: minted.hash.clone(),
                display_prefix: minted.display_prefix.clone(),
                expires_at: Some(OffsetDateTime::now_utc() + time::Duration::days(i64::from(days))),
            },
        )
        .await?;
    for role in req.roles {
        store
            .grant_role(
                actor,
                &RoleGrant {
                    principal: Principal::user(&req.subject),
                    role,
                },
            )
            .await?;
    }
    Ok(CreatedToken {
        token: minted.plaintext,
        api_token: token,
    })
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", security(("bearer" = [])),
    request_body = TokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_token(
    State(gw): State<Gateway>,
    caller: Caller,
    Body(req): Body<TokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require_admin("create API tokens")?;
    let created = issue_token(&gw.store, &caller.subject, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every token, active or not, newest first; never the tokens themselves.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiToken>)))]
pub async fn list_tokens(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    caller.require_admin("list API tokens")?;
    Ok(Json(gw.store.list_api_tokens(None).await?))
}

/// Revokes a token at once (idempotent).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiToken), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_token(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ApiToken>, ApiError> {
    caller.require_admin("revoke API tokens")?;
    Ok(Json(gw.store.revoke_api_token(&caller.subject, id).await?))
}

// ---------------------------------------------------------------- audit

/// Filters of the audit log; all optional.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub pipeline_id: Option<Uuid>,
    pub actor: Option<String>,
    /// environment, pipeline, stage, share, role_grant, api_token, webhook or run.
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    /// RFC 3339 time, inclusive.
    pub since: Option<String>,
    /// RFC 3339 time, exclusive.
    pub until: Option<String>,
    /// Records after this sequence number (for paging).
    pub after_seq: Option<i64>,
    /// 1 to 1000, 100 when absent.
    pub limit: Option<u32>,
}

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| crate::api::parse_rfc3339(field, v))
        .transpose()
}

/// The audit log, oldest first, filtered by pipeline, actor, entity and time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses((status = 200, body = Vec<AuditRecord>), (status = 422, body = crate::error::ErrorBody)))]
pub async fn list_audit(
    State(gw): State<Gateway>,
    caller: Caller,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    caller.require_admin("read the audit log")?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let query = AuditQuery {
        pipeline_id: q.pipeline_id.map(|p| p.to_string()),
        actor: q.actor,
        entity_kind: q.entity_kind,
        entity_id: q.entity_id,
        since: parse_time("since", q.since.as_deref())?,
        until: parse_time("until", q.until.as_deref())?,
        after_seq: q.after_seq,
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(gw.store.list_audit(&query).await?))
}

/// Walks the whole hash chain and reports the first record that was
/// altered, removed or reordered.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditVerification)))]
pub async fn verify_audit(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    caller.require_admin("verify the audit log")?;
    Ok(Json(gw.store.verify_audit().await?))
}
