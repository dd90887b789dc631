//! Runs through pipelines: the checks made when a deployment is requested
//! (stage order, the artifact to reuse, the version rule against the
//! target), and what people and external systems do to a run afterwards
//! (approve, reject, complete a gate, supply settings, retry, download its
//! artifact).

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_messages::{ArtifactRef, Deployment, EnvironmentAccess};
use slipway_store::{AccessRole, Gate, Pipeline, RunState, Stage};
use uuid::Uuid;

use crate::Gateway;
use crate::api::{RunView, visible_run};
use crate::caller::Caller;
use crate::error::{ApiError, Body, ErrorBody};

/// What a deployment through a stage will do, decided at request time.
#[derive(Debug)]
pub struct Plan {
    pub source: EnvironmentAccess,
    pub target: EnvironmentAccess,
    /// The version to deploy, when known now.
    pub version: Option<String>,
    /// The stored artifact to validate and import instead of exporting.
    pub artifact: Option<ArtifactRef>,
}

async fn access(gw: &Gateway, name: &str) -> Result<EnvironmentAccess, ApiError> {
    let env =
        gw.store.environment_by_name(name).await?.ok_or_else(|| {
            ApiError::Conflict(format!("environment {name} is no longer registered"))
        })?;
    Ok(EnvironmentAccess {
        name: env.name,
        url: env.url,
        credentials: env.credentials,
    })
}

/// Stage order, artifact reuse and the version rule.
///
/// - A stage after another deploys only a version that succeeded there
///   in every one of its targets, by default the newest, and reuses its
///   artifact (never exports again).
/// - A first stage reuses the pipeline's artifact of the requested
///   version if there is one (a redeployment), else exports.
/// - A known version must be higher than the one installed in the target,
///   unless the pipeline allows redeploying older versions (checked here
///   when the target answers quickly, and always by the validator).
pub async fn plan(
    gw: &Gateway,
    pipeline: &Pipeline,
    stage: &Stage,
    deployment: &Deployment,
) -> Result<Plan, ApiError> {
    let source = access(gw, &deployment.source_environment).await?;
    let target = access(gw, &deployment.target_environment).await?;
    let requested = deployment
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if let Some(v) = requested
        && slipway_solution::Version::parse(v).is_err()
    {
        return Err(ApiError::invalid(
            "version",
            format!("`{v}` is not a solution version like 1.0.0.1"),
        ));
    }
    let (version, artifact) = match stage.previous_stage_id {
        Some(previous) => {
            let previous_name = pipeline
                .stages
                .iter()
                .find(|s| s.id == previous)
                .map_or_else(|| previous.to_string(), |s| s.name.clone());
            let succeeded = gw
                .store
                .succeeded_versions(previous, &deployment.solution_name)
                .await?;
            let chosen = match requested {
                Some(v) => succeeded.into_iter().find(|r| {
                    r.artifact
                        .as_ref()
                        .is_some_and(|a| same_version(&a.version, v))
                }),
                None => succeeded.into_iter().find(|r| r.artifact.is_some()),
            };
            let Some(artifact) = chosen.and_then(|r| r.artifact) else {
                return Err(ApiError::Conflict(match requested {
                    Some(v) => format!(
                        "version {v} of {} has not succeeded in stage {previous_name}; stages run in order, deploy it there first",
                        deployment.solution_name
                    ),
                    None => format!(
                        "{} has not succeeded in stage {previous_name} yet; stages run in order, deploy it there first",
                        deployment.solution_name
                    ),
                }));
            };
            (Some(artifact.version.clone()), Some(artifact))
        }
        None => match requested {
            Some(v) => (
                Some(v.to_owned()),
                gw.store
                    .artifact_of(pipeline.id, &deployment.solution_name, v)
                    .await?,
            ),
            None => (None, None),
        },
    };
    if let Some(version) = &version {
        check_version(
            gw,
            &target,
            &deployment.solution_name,
            version,
            pipeline.allow_redeploy_older,
        )
        .await?;
    }
    Ok(Plan {
        source,
        target,
        version,
        artifact,
    })
}

/// The version a first-stage deployment gets when the request names none:
/// the source's installed version with its revision bumped, as the
/// exporter would choose it. Settled once, at submit: each export moves the
/// source on to its version, so left to the exporters the targets of a
/// fan-out would get different versions (and the next stage, which takes a
/// version only once every target has it, none of them), and an export
/// redelivered after it moved the source would bump a second time.
pub async fn next_version(gw: &Gateway, source: &str, solution: &str) -> Result<String, ApiError> {
    let env = gw.store.environment_by_name(source).await?.ok_or_else(|| {
        ApiError::Conflict(format!("environment {source} is no longer registered"))
    })?;
    let timeout = std::time::Duration::from_millis(gw.config.environment_check_timeout_ms);
    let installed = crate::admin::ask_environment(timeout, &env, |client| async move {
        client.solution(solution).await
    })
    .await
    .map_err(|e| {
        ApiError::BadGateway(format!(
            "environment {source} did not say which version of {solution} it has: {e}; \
             or give the version to deploy"
        ))
    })?
    .ok_or_else(|| {
        ApiError::invalid(
            "solution_name",
            format!(
                "solution {solution} is not in environment {source}; check the unique name (not the display name)"
            ),
        )
    })?;
    slipway_solution::Version::parse(&installed.version)
        .map(|v| {
            v.bump(slipway_solution::VersionPart::Revision)
                .to_string()
        })
        .map_err(|e| {
            ApiError::invalid(
                "version",
                format!(
                    "solution {solution} in {source} has version {:?}, which cannot be bumped ({e}); give the version to deploy",
                    installed.version
                ),
            )
        })
}

fn same_version(a: &str, b: &str) -> bool {
    match (
        slipway_solution::Version::parse(a),
        slipway_solution::Version::parse(b),
    ) {
        (Ok(a), Ok(b)) => a.canonical() == b.canonical(),
        _ => a == b,
    }
}

/// Refuses a version not higher than the target's, unless allowed. When the
/// target does not answer within a few seconds the check is left to the
/// validator, which always makes it.
async fn check_version(
    gw: &Gateway,
    target: &EnvironmentAccess,
    solution: &str,
    version: &str,
    allow_older: bool,
) -> Result<(), ApiError> {
    let timeout =
        std::time::Duration::from_millis(gw.config.environment_check_timeout_ms.min(5_000));
    let Ok(client) = slipway_dataverse::client_for(&target.url, &target.credentials, timeout)
    else {
        return Ok(());
    };
    let Ok(Ok(Some(installed))) = tokio::time::timeout(timeout, client.solution(solution)).await
    else {
        return Ok(());
    };
    let (Ok(new), Ok(old)) = (
        slipway_solution::Version::parse(version),
        slipway_solution::Version::parse(&installed.version),
    ) else {
        return Ok(());
    };
    if new.parts() <= old.parts() && !allow_older {
        return Err(ApiError::invalid(
            "version",
            format!(
                "version {version} is not higher than {} installed in {}; deploy a higher version (this pipeline does not allow redeploying older versions)",
                installed.version, target.name
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- actions

/// An approver's or an external system's decision.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Shown to the maker; required when rejecting.
    #[serde(default)]
    pub comment: Option<String>,
}

/// An external system completing a gate, as Power Platform's callbacks do:
/// status 20 (or `completed`) lets the run go on, 30 (or `rejected`)
/// fails it with the comment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateCallback {
    #[schema(value_type = Object)]
    pub status: serde_json::Value,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The run if the caller may decide its gates: admins, and approvers of a
/// pipeline shared with them; never the requester (no self-approval).
async fn decidable_run(
    gw: &Gateway,
    caller: &Caller,
    id: Uuid,
) -> Result<slipway_store::Run, ApiError> {
    caller.require(&[AccessRole::Approver], "approve or reject deployments")?;
    let run = visible_run(gw, caller, id).await?;
    if run.requested_by == caller.subject {
        return Err(ApiError::Forbidden(format!(
            "{} requested this deployment; another approver must decide",
            caller.subject
        )));
    }
    Ok(run)
}

/// Approves a run waiting for approval; it moves on to its next gate, its
/// scheduled time or the import.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/approve", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body(content = Option<DecisionRequest>),
    responses((status = 200, body = RunView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "not waiting for approval", body = ErrorBody)))]
pub async fn approve(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: axum::body::Bytes,
) -> Result<Json<RunView>, ApiError> {
    let req: DecisionRequest = crate::error::optional_body(&body)?;
    decidable_run(&gw, &caller, id).await?;
    let run = gw
        .store
        .decide_gate(
            id,
            Gate::Approval,
            &caller.subject,
            true,
            req.comment.as_deref(),
        )
        .await?;
    gw.relay.wake();
    gw.run_changed(id);
    Ok(Json(run.into()))
}

/// Rejects a run waiting for approval; it fails with the comment.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/reject", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = DecisionRequest,
    responses((status = 200, body = RunView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, description = "no comment", body = ErrorBody)))]
pub async fn reject(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Body(req): Body<DecisionRequest>,
) -> Result<Json<RunView>, ApiError> {
    let comment = req
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::invalid("comment", "say why, for the maker"))?;
    decidable_run(&gw, &caller, id).await?;
    let run = gw
        .store
        .decide_gate(id, Gate::Approval, &caller.subject, false, Some(comment))
        .await?;
    gw.run_changed(id);
    Ok(Json(run.into()))
}

/// An external system completes a pre-export or pre-deployment gate (or
/// an approval) with status 20 / `completed` or 30 / `rejected`.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/gates/{gate}", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("gate" = String, Path, description = "pre_export, pre_deployment or approval")),
    request_body = GateCallback,
    responses((status = 200, body = RunView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn complete_gate(
    State(gw): State<Gateway>,
    caller: Caller,
    Path((id, gate)): Path<(Uuid, String)>,
    Body(req): Body<GateCallback>,
) -> Result<Json<RunView>, ApiError> {
    let gate = match gate.as_str() {
        "pre_export" => Gate::PreExport,
        "pre_deployment" => Gate::PreDeployment,
        "approval" => Gate::Approval,
        other => {
            return Err(ApiError::invalid(
                "gate",
                format!("`{other}` is not pre_export, pre_deployment or approval"),
            ));
        }
    };
    let passed = match &req.status {
        serde_json::Value::Number(n) if n.as_i64() == Some(20) => true,
        serde_json::Value::Number(n) if n.as_i64() == Some(30) => false,
        serde_json::Value::String(s) if s == "completed" || s == "approved" => true,
        serde_json::Value::String(s) if s == "rejected" => false,
        other => {
            return Err(ApiError::invalid(
                "status",
                format!("`{other}` is not 20 / completed or 30 / rejected"),
            ));
        }
    };
    decidable_run(&gw, &caller, id).await?;
    let run = gw
        .store
        .decide_gate(id, gate, &caller.subject, passed, req.comment.as_deref())
        .await?;
    gw.relay.wake();
    gw.run_changed(id);
    Ok(Json(run.into()))
}

/// Settings for a run waiting for them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// The deployment settings JSON (connection references and environment
    /// variable values), replacing the run's.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// Supplies the settings a validation asked for; validation runs again.
#[utoipa::path(put, path = "/api/v1/deployments/{id}/settings", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SettingsRequest,
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, description = "not awaiting settings", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn supply_settings(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Body(req): Body<SettingsRequest>,
) -> Result<Json<RunView>, ApiError> {
    caller.require(&[AccessRole::Maker], "supply deployment settings")?;
    if !req.settings.is_object() {
        return Err(ApiError::invalid(
            "settings",
            "must be a JSON object with EnvironmentVariables and ConnectionReferences (`slipway settings create` writes one)",
        ));
    }
    visible_run(&gw, &caller, id).await?;
    let run = gw
        .store
        .supply_settings(id, &caller.subject, req.settings)
        .await?;
    gw.relay.wake();
    gw.run_changed(id);
    Ok(Json(run.into()))
}

/// Runs again a run that failed or was canceled: the same request, as a
/// new run (reusing the artifact it validated, if any).
#[utoipa::path(post, path = "/api/v1/deployments/{id}/retry", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = RunView), (status = 404, body = ErrorBody), (status = 409, description = "the run has not failed", body = ErrorBody)))]
pub async fn retry(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    caller.require(&[AccessRole::Maker], "retry deployments")?;
    let old = visible_run(&gw, &caller, id).await?;
    if !matches!(old.state, RunState::Failed | RunState::Canceled) {
        return Err(ApiError::Conflict(format!(
            "deployment {id} is {}; only failed or canceled runs are retried",
            old.state
        )));
    }
    let d = &old.deployment;
    let request = crate::api::SubmitDeployment {
        solution_name: d.solution_name.clone(),
        pipeline_id: d.pipeline_id,
        stage_id: d.stage_id,
        source_environment: Some(d.source_environment.clone()),
        target_environment: Some(d.target_environment.clone()),
        version: old
            .artifact
            .as_ref()
            .map(|a| a.version.clone())
            .or_else(|| d.version.clone()),
        settings: d.settings.clone(),
        notes: d.notes.clone(),
        scheduled_at: None,
        dry_run: old.gates.dry_run,
        placeholder: d.placeholder.clone(),
    };
    crate::api::submit(&gw, &caller, request).await
}

/// Which file of an artifact.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ArtifactQuery {
    /// `managed` (the default: what is imported) or `unmanaged`.
    #[serde(default)]
    pub kind: Option<String>,
}

/// Downloads a run's artifact (the managed file by default), verified
/// against its sha256.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/artifact", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ArtifactQuery),
    responses((status = 200, description = "the solution zip", content_type = "application/zip"), (status = 404, description = "no such run, or it has no artifact yet", body = ErrorBody)))]
pub async fn download_artifact(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<ArtifactQuery>,
) -> Result<Response, ApiError> {
    let run = visible_run(&gw, &caller, id).await?;
    let artifact = run
        .artifact
        .ok_or_else(|| ApiError::NotFound(format!("deployment {id} has no artifact yet")))?;
    let (sha, kind) = match q.kind.as_deref().unwrap_or("managed") {
        "managed" => (artifact.managed_sha256, "managed"),
        "unmanaged" => (artifact.unmanaged_sha256, "unmanaged"),
        other => {
            return Err(ApiError::invalid(
                "kind",
                format!("`{other}` is not managed or unmanaged"),
            ));
        }
    };
    let store = gw.artifacts.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "this gateway has no artifact store configured (artifacts.url)".into(),
        )
    })?;
    let id_of = sha
        .parse::<slipway_artifacts::ArtifactId>()
        .map_err(|_| ApiError::NotFound(format!("deployment {id} has no stored artifact")))?;
    let bytes = store
        .get(&id_of)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the artifact store cannot give {sha}: {e}")))?;
    let name = format!(
        "{}_{}_{kind}.zip",
        run.deployment.solution_name,
        artifact.version.replace('.', "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        HttpBody::from(bytes),
    )
        .into_response())
}

/// Runs waiting for approval that the caller may decide (admins: all).
#[utoipa::path(get, path = "/api/v1/approvals", tag = "deployments", security(("bearer" = [])),
    responses((status = 200, body = Vec<RunView>), (status = 403, body = ErrorBody)))]
pub async fn approvals(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<RunView>>, ApiError> {
    caller.require(&[AccessRole::Approver], "see approvals")?;
    let waiting = gw
        .store
        .runs_in_state(RunState::AwaitingApproval, 500)
        .await?;
    let mut visible = Vec::new();
    for run in waiting {
        let shared = match run.deployment.pipeline_id {
            Some(p) => {
                caller.is_admin()
                    || gw
                        .store
                        .pipeline_shared_with(p, &caller.principals())
                        .await?
            }
            None => caller.is_admin(),
        };
        if shared {
            visible.push(RunView::from(run));
        }
    }
    Ok(Json(visible))
}
