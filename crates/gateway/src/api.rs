//! The HTTP API: the router, health checks, deployments and the OpenAPI
//! document (the admin routes are in [`crate::admin`]). Every error is an
//! [`ApiError`], which says what went wrong and how to fix it, and never
//! leaks internal details to the client.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use slipway_messages::{
    DeployIdentity, Deployment, Envelope, ExportCommand, Message, PlaceholderWork, ValidateCommand,
};
use slipway_store::{
    AccessRole, CancelOutcome, HistoryEntry, NewRun, Publish, Run, RunFilter, RunGates,
};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::Gateway;
use crate::admin;
use crate::caller::Caller;
pub use crate::error::ApiError;
use crate::error::{Body, ErrorBody, FieldError};
use crate::runs;
use crate::webhooks;
use crate::{browse, signin, stream};

/// The gateway's routes, with request tracing outermost.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/api/v1/deployments",
            get(list_deployments).post(submit_deployment),
        )
        .route("/api/v1/deployments/{id}", get(get_deployment))
        .route("/api/v1/deployments/{id}/events", get(deployment_events))
        .route(
            "/api/v1/deployments/{id}/stream",
            get(stream::follow_deployment),
        )
        .route("/api/v1/deployments/{id}/cancel", post(cancel_deployment))
        .route("/api/v1/deployments/{id}/approve", post(runs::approve))
        .route("/api/v1/deployments/{id}/reject", post(runs::reject))
        .route(
            "/api/v1/deployments/{id}/gates/{gate}",
            post(runs::complete_gate),
        )
        .route(
            "/api/v1/deployments/{id}/settings",
            put(runs::supply_settings),
        )
        .route("/api/v1/deployments/{id}/retry", post(runs::retry))
        .route(
            "/api/v1/deployments/{id}/artifact",
            get(runs::download_artifact),
        )
        .route("/api/v1/approvals", get(runs::approvals))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/auth/config", get(signin::auth_config))
        .route("/api/v1/me", get(admin::me))
        .route(
            "/api/v1/environments",
            get(admin::list_environments).post(admin::create_environment),
        )
        .route(
            "/api/v1/environments/{id}",
            get(admin::get_environment)
                .patch(admin::update_environment)
                .delete(admin::delete_environment),
        )
        .route(
            "/api/v1/environments/{id}/validate",
            post(admin::validate_environment),
        )
        .route(
            "/api/v1/environments/{id}/solutions",
            get(browse::environment_solutions),
        )
        .route(
            "/api/v1/pipelines",
            get(admin::list_pipelines).post(admin::create_pipeline),
        )
        .route(
            "/api/v1/pipelines/{id}",
            get(admin::get_pipeline)
                .patch(admin::update_pipeline)
                .delete(admin::delete_pipeline),
        )
        .route("/api/v1/pipelines/{id}/stages", post(admin::add_stage))
        .route(
            "/api/v1/pipelines/{id}/stages/{stage_id}",
            put(admin::update_stage).delete(admin::delete_stage),
        )
        .route("/api/v1/pipelines/{id}/shares", post(admin::share_pipeline))
        .route(
            "/api/v1/pipelines/{id}/shares/{kind}/{name}",
            delete(admin::unshare_pipeline),
        )
        .route(
            "/api/v1/role-grants",
            get(admin::list_role_grants).post(admin::grant_role),
        )
        .route(
            "/api/v1/role-grants/{kind}/{name}/{role}",
            delete(admin::revoke_role),
        )
        .route(
            "/api/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/api/v1/audit", get(admin::list_audit))
        .route("/api/v1/audit/verify", get(admin::verify_audit))
        .route(
            "/api/v1/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route("/api/v1/webhooks/{id}", delete(webhooks::delete_webhook))
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::webhook_deliveries),
        )
        // The page may connect to the identity provider, for sign-in.
        .merge(slipway_webui::router_with(gateway.signin.ui_options()))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(gateway)
        .layer(TraceLayer::new_for_http())
}

/// Rejections axum makes itself (a path id that is not a uuid, a method the
/// route lacks, a wrong content type) answer in plain text; give them the
/// same JSON shape as every other error.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_owned();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase();
    }
    let mut json = (
        status,
        Json(ErrorBody {
            error: message,
            fields: Vec::new(),
        }),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// Unknown paths get the same JSON error shape as everything else.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route {}; the API is described at /api/v1/openapi.json",
        uri.path()
    ))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the process is up", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Ready when both the database and the broker answer.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "database and broker answer"), (status = 503, description = "not ready; the body says which part")))]
async fn readyz(State(gw): State<Gateway>) -> (StatusCode, Json<serde_json::Value>) {
    let database = gw.store.ping().await.map_err(|e| e.to_string());
    let bus = gw.bus.is_ready();
    let ready = database.is_ok() && bus;
    let body = serde_json::json!({
        "ready": ready,
        "database": database.err().unwrap_or_else(|| "ok".into()),
        "bus": if bus { "ok" } else { "not connected" },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// What a maker submits to deploy a solution: through a pipeline's stage
/// (`pipeline_id`, `stage_id`, and one of the pipeline's source
/// environments), or, for admins only, straight from one environment to
/// another by name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitDeployment {
    pub solution_name: String,
    /// The pipeline to deploy through; required for makers.
    #[serde(default)]
    pub pipeline_id: Option<Uuid>,
    /// The stage of that pipeline to deploy to.
    #[serde(default)]
    pub stage_id: Option<Uuid>,
    /// Name of the development environment the solution comes from; with
    /// a pipeline, one of its source environments.
    #[serde(default)]
    pub source_environment: Option<String>,
    /// Name of the target environment. With a pipeline it may be left
    /// out: the deployment goes to every target of the stage, one run per
    /// target (the same version, settings and notes), all started together.
    #[serde(default)]
    pub target_environment: Option<String>,
    /// The version to deploy. First stage: the version the artifact gets
    /// (none: the installed revision plus one); later stages: a version
    /// that succeeded in the previous stage (none: the newest one).
    #[serde(default)]
    pub version: Option<String>,
    /// The deployment settings JSON (`slipway settings create` writes one).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Deployment notes, shown to approvers and kept with the run.
    #[serde(default)]
    pub notes: Option<String>,
    /// Import no earlier than this (RFC 3339); now when absent.
    #[serde(default)]
    pub scheduled_at: Option<String>,
    /// Validate only: export (or reuse) and validate, never import.
    #[serde(default)]
    pub dry_run: bool,
    /// What placeholder steps do (delays, injected failures) for runs
    /// without environments (admin deployments by environment name).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub placeholder: PlaceholderWork,
}

/// A deployment run as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: Uuid,
    /// requested, exporting, validating, importing, succeeded, failed or canceled.
    pub state: String,
    /// Why the run failed or was canceled.
    pub reason: Option<String>,
    /// What was asked for, as submitted.
    #[schema(value_type = Object)]
    pub deployment: Deployment,
    pub requested_by: String,
    /// The gates the run passes and how each went, and its scheduled time.
    pub gates: RunGates,
    /// The artifact validated and imported (sha256 ids, version, size).
    #[schema(value_type = Option<Object>)]
    pub artifact: Option<slipway_messages::ArtifactRef>,
    /// The latest validation: verdict, missing dependencies, connection
    /// references and environment variables with their problems, policy
    /// violations, the component diff against the target.
    #[schema(value_type = Option<Object>)]
    pub validation: Option<slipway_messages::ValidationReport>,
    /// The solution's version in the source (development) environment
    /// before this run exported it ("dev current version"); the export
    /// moved the source on to the artifact's version when that was higher.
    /// `null` when the run did not export (a later stage, a redeployment).
    pub source_version: Option<String>,
    /// How far the import has got: the percentage the target environment
    /// last reported (`null` while it reported none; 100 once the import
    /// succeeded), how many times the importer reported on it, and when.
    /// `null` until the import starts.
    pub import_progress: Option<slipway_store::ImportProgress>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

impl From<Run> for RunView {
    fn from(run: Run) -> Self {
        let mut deployment = run.deployment;
        // How environments are reached is the workers' business.
        for access in [&mut deployment.source, &mut deployment.target]
            .into_iter()
            .flatten()
        {
            access.credentials = serde_json::Value::Null;
        }
        RunView {
            id: run.id,
            state: run.state.to_string(),
            reason: run.reason,
            deployment,
            requested_by: run.requested_by,
            gates: run.gates,
            artifact: run.artifact,
            validation: run.validation,
            source_version: run.source_version,
            import_progress: run.import_progress,
            created_at: run.created_at,
            updated_at: run.updated_at,
        }
    }
}

fn required<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, ApiError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::invalid(field, "must not be empty")),
    }
}

/// Where a deployment goes: the environments by name, and the pipeline and
/// stage it runs through, if any.
struct Route {
    source: String,
    /// One target, or every target of the stage (fan-out), in the stage's
    /// order.
    targets: Vec<String>,
    pipeline_id: Option<Uuid>,
    stage_id: Option<Uuid>,
    /// Through a pipeline: the pipeline and the stage.
    through: Option<(slipway_store::Pipeline, slipway_store::Stage)>,
}

/// Checks the request against the pipeline: shared with the caller, the
/// source environment linked to it, the target one of the stage's.
async fn route_of(
    gw: &Gateway,
    caller: &Caller,
    req: &SubmitDeployment,
) -> Result<Route, ApiError> {
    let Some(pipeline_id) = req.pipeline_id else {
        if !caller.is_admin() {
            return Err(ApiError::invalid(
                "pipeline_id",
                "makers deploy through a pipeline; give pipeline_id and stage_id (GET /api/v1/pipelines lists yours)",
            ));
        }
        let source = required("source_environment", req.source_environment.as_deref())?;
        let target = required("target_environment", req.target_environment.as_deref())?;
        if source == target {
            return Err(ApiError::invalid(
                "target_environment",
                "is the same as source_environment; deploy to another environment",
            ));
        }
        return Ok(Route {
            source: source.into(),
            targets: vec![target.into()],
            pipeline_id: None,
            stage_id: None,
            through: None,
        });
    };
    let pipeline = admin::visible_pipeline(gw, caller, pipeline_id).await?;
    let stage_id = req.stage_id.ok_or_else(|| {
        ApiError::invalid("stage_id", "give the stage of the pipeline to deploy to")
    })?;
    let stage = pipeline
        .stages
        .iter()
        .find(|s| s.id == stage_id)
        .ok_or_else(|| {
            ApiError::invalid(
                "stage_id",
                format!("pipeline {} has no stage with id {stage_id}", pipeline.name),
            )
        })?;
    let names = |envs: &[slipway_store::EnvironmentRef]| {
        envs.iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let source = required("source_environment", req.source_environment.as_deref())?;
    if !pipeline
        .source_environments
        .iter()
        .any(|e| e.name == source)
    {
        return Err(ApiError::invalid(
            "source_environment",
            format!(
                "environment {source} is not linked to pipeline {}; deploy from one of: {}",
                pipeline.name,
                names(&pipeline.source_environments)
            ),
        ));
    }
    let targets = match req.target_environment.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => {
            if !stage.targets.iter().any(|e| e.name == t) {
                return Err(ApiError::invalid(
                    "target_environment",
                    format!(
                        "stage {} deploys to {}, not to {t}",
                        stage.name,
                        names(&stage.targets)
                    ),
                ));
            }
            vec![t.to_owned()]
        }
        // Every target of the stage: the deployment fans out.
        _ => stage.targets.iter().map(|e| e.name.clone()).collect(),
    };
    if targets.is_empty() {
        return Err(ApiError::Conflict(format!(
            "stage {} has no target environment; an admin adds one to the stage",
            stage.name
        )));
    }
    let stage = stage.clone();
    Ok(Route {
        source: source.into(),
        targets,
        pipeline_id: Some(pipeline_id),
        stage_id: Some(stage_id),
        through: Some((pipeline, stage)),
    })
}

/// What submitting a deployment answers: the run it started (the first,
/// when it fanned out), and the other runs of a fan-out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    #[serde(flatten)]
    pub run: RunView,
    /// Ids of the runs the same request started for the stage's other
    /// target environments (a request without `target_environment` through
    /// a stage with several targets: one run per target). Absent when the
    /// request started one run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fan_out: Vec<Uuid>,
}

/// Creates the run and its first command (one run per target of the stage
/// when no target is named: all of them and their commands in one
/// transaction), then wakes the relay. Answers 202: the deployment proceeds
/// in the background.
#[tracing::instrument(skip_all, fields(run_id))]
#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])), request_body = SubmitDeployment,
    responses((status = 202, description = "accepted; the run proceeds in the background (the first run, with the other runs of a fan-out in `fan_out`)", body = Submitted),
              (status = 400, description = "not JSON", body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "no such pipeline visible to the caller", body = ErrorBody),
              (status = 409, description = "the version has not succeeded in every target of the previous stage, or the stage has no target", body = ErrorBody),
              (status = 422, description = "a field is unusable", body = ErrorBody)))]
async fn submit_deployment(
    State(gw): State<Gateway>,
    caller: Caller,
    Body(req): Body<SubmitDeployment>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let mut runs = submit_all(&gw, &caller, req).await?.into_iter();
    let run = runs
        .next()
        .ok_or_else(|| ApiError::Conflict("the deployment started no run".into()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Submitted {
            run: run.into(),
            fan_out: runs.map(|r| r.id).collect(),
        }),
    ))
}

/// Checks a deployment request that names its target and starts its run
/// (retry).
pub(crate) async fn submit(
    gw: &Gateway,
    caller: &Caller,
    req: SubmitDeployment,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let run = submit_all(gw, caller, req)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Conflict("the deployment started no run".into()))?;
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}

/// Whom the importer acts as for a stage's deploy-as; `None` for the
/// environment's own credentials.
fn deploy_identity(deploy_as: &slipway_store::DeployAs) -> Option<DeployIdentity> {
    match deploy_as {
        slipway_store::DeployAs::Environment => None,
        slipway_store::DeployAs::ServicePrincipal { application_id } => {
            Some(DeployIdentity::ServicePrincipal {
                application_id: application_id.trim().to_owned(),
            })
        }
        slipway_store::DeployAs::User { user } => Some(DeployIdentity::User {
            user: user.trim().to_owned(),
        }),
    }
}

/// Checks a deployment request and starts its runs: one, or one per target
/// of the stage (fan-out), in one transaction. Every target is planned
/// before anything is written, so a refusal in one target starts none.
async fn submit_all(
    gw: &Gateway,
    caller: &Caller,
    req: SubmitDeployment,
) -> Result<Vec<Run>, ApiError> {
    let gw = gw.clone();
    let caller = caller.clone();
    caller.require(&[AccessRole::Maker], "deploy")?;
    required("solution_name", Some(&req.solution_name))?;
    let scheduled_at = parse_when("scheduled_at", req.scheduled_at.as_deref())?;
    let route = route_of(&gw, &caller, &req).await?;
    let mut version = req.version.clone();
    if let Some((_, stage)) = &route.through
        && stage.previous_stage_id.is_none()
        && version.as_deref().is_none_or(|v| v.trim().is_empty())
    {
        // A first stage exports: the next revision of dev's version is
        // settled now, so every target of a fan-out gets the same one and a
        // redelivered export (after it moved dev on) exports it again
        // rather than bumping twice. The maker sees it at once.
        let name = req.solution_name.trim();
        version = Some(crate::runs::next_version(&gw, &route.source, name).await?);
    }
    let mut planned = Vec::with_capacity(route.targets.len());
    for target in &route.targets {
        let (new, first) =
            plan_run(&gw, &caller, &req, &route, target, &version, scheduled_at).await?;
        // Every target deploys the version the first one settled on.
        version = new.deployment.version.clone();
        planned.push((new, first));
    }
    let pairs: Vec<(&NewRun, &Envelope)> = planned.iter().map(|(n, e)| (n, e)).collect();
    // This replica publishes the first commands itself right after the
    // commit; the relay takes them only if that fails (lease).
    let lease_ms = i64::try_from(gw.config.outbox_lease_ms.max(1_000)).unwrap_or(i64::MAX);
    let started = gw
        .store
        .start_runs(
            &pairs,
            &slipway_bus::current_trace_headers(),
            Publish::ByCaller { lease_ms },
        )
        .await?;
    gw.relay.publish(started.publish).await;
    let runs = started.runs;
    for run in &runs {
        tracing::info!(
            run_id = %run.id,
            target = %run.deployment.target_environment,
            requested_by = %caller.subject,
            "deployment requested"
        );
    }
    Ok(runs)
}

/// The run to `target` a request asks for, and its first command.
async fn plan_run(
    gw: &Gateway,
    caller: &Caller,
    req: &SubmitDeployment,
    route: &Route,
    target: &str,
    version: &Option<String>,
    scheduled_at: Option<time::OffsetDateTime>,
) -> Result<(NewRun, Envelope), ApiError> {
    let id = Uuid::now_v7();
    tracing::Span::current().record("run_id", tracing::field::display(id));
    let mut deployment = Deployment {
        solution_name: req.solution_name.trim().to_owned(),
        source_environment: route.source.clone(),
        target_environment: target.to_owned(),
        pipeline_id: route.pipeline_id,
        stage_id: route.stage_id,
        source: None,
        target: None,
        notes: req.notes.clone().filter(|n| !n.trim().is_empty()),
        policies: None,
        allow_older_version: false,
        hold_after_validation: false,
        version: version.clone(),
        settings: req.settings.clone(),
        placeholder: req.placeholder.clone(),
        deploy_as: None,
    };
    let mut gates = RunGates {
        scheduled_at,
        dry_run: req.dry_run,
        ..RunGates::default()
    };
    let mut artifact = None;
    if let Some((pipeline, stage)) = &route.through {
        let plan = crate::runs::plan(gw, pipeline, stage, &deployment).await?;
        deployment.source = Some(plan.source);
        deployment.target = Some(plan.target);
        deployment.version = plan.version;
        deployment.policies = Some(stage.settings.policies.clone());
        deployment.deploy_as = deploy_identity(&stage.settings.deploy_as);
        deployment.allow_older_version = pipeline.allow_redeploy_older;
        gates.approval_required = stage.settings.approval_required;
        gates.pre_export_gate = stage.settings.pre_export_gate;
        gates.pre_deployment_gate = stage.settings.pre_deployment_gate;
        artifact = plan.artifact;
    }
    deployment.hold_after_validation = gates.holds_after_validation();
    let first = Envelope::new(
        id,
        match &artifact {
            // Later stages and redeployments validate the stored artifact.
            Some(artifact) => Message::Validate(ValidateCommand {
                deployment: deployment.clone(),
                artifact: artifact.clone(),
            }),
            None => Message::Export(ExportCommand {
                deployment: deployment.clone(),
            }),
        },
    );
    let new = NewRun {
        id,
        deployment,
        requested_by: caller.subject.clone(),
        gates,
        artifact,
    };
    Ok((new, first))
}

/// An optional RFC 3339 time field; blank counts as absent.
pub(crate) fn parse_when(
    field: &str,
    value: Option<&str>,
) -> Result<Option<time::OffsetDateTime>, ApiError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_rfc3339(field, v.trim()))
        .transpose()
}

/// An RFC 3339 time, or a 422 on `field` that shows the form.
pub(crate) fn parse_rfc3339(field: &str, value: &str) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(
        |e| {
            ApiError::invalid(
                field,
                format!("`{value}` is not an RFC 3339 time ({e}), e.g. 2026-11-27T18:00:00Z"),
            )
        },
    )
}

/// The run if the caller may see it (admins: all; others: the runs they
/// requested and those of pipelines shared with them); the same 404 otherwise.
pub(crate) async fn visible_run(gw: &Gateway, caller: &Caller, id: Uuid) -> Result<Run, ApiError> {
    caller.require(
        &[AccessRole::Maker, AccessRole::Approver],
        "see deployments",
    )?;
    let run = gw.store.get_run(id).await?;
    let visible = match &run {
        None => false,
        Some(_) if caller.is_admin() => true,
        Some(run) if run.requested_by == caller.subject => true,
        Some(run) => match run.deployment.pipeline_id {
            Some(p) => {
                gw.store
                    .pipeline_shared_with(p, &caller.principals())
                    .await?
            }
            None => false,
        },
    };
    match run {
        Some(run) if visible => Ok(run),
        _ => Err(ApiError::not_found("deployment", id)),
    }
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments", security(("bearer" = [])), params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, body = RunView), (status = 404, description = "no such deployment visible to the caller", body = ErrorBody)))]
async fn get_deployment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(visible_run(&gw, &caller, id).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}/events", tag = "deployments", security(("bearer" = [])), params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, description = "state transitions and step events, oldest first", body = Vec<Object>), (status = 404, description = "no such deployment visible to the caller", body = ErrorBody)))]
async fn deployment_events(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    visible_run(&gw, &caller, id).await?;
    Ok(Json(gw.store.run_history(id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct ListQuery {
    /// Most runs returned, newest first (1 to 1000), after filtering.
    #[serde(default = "default_limit")]
    limit: u32,
    /// Only runs through this pipeline.
    #[param(value_type = Option<Uuid>)]
    #[serde(default)]
    pipeline: Option<String>,
    /// Only runs to this stage.
    #[param(value_type = Option<Uuid>)]
    #[serde(default)]
    stage: Option<String>,
    /// Only runs of this solution (unique name, any case).
    #[serde(default)]
    solution: Option<String>,
    /// Only runs in this state: requested, awaiting_pre_export, exporting,
    /// validating, awaiting_settings, awaiting_approval,
    /// awaiting_pre_deployment, scheduled, importing, succeeded, failed or
    /// canceled.
    #[serde(default)]
    state: Option<String>,
}

fn default_limit() -> u32 {
    50
}

impl ListQuery {
    /// The filters asked for (blank ones count as absent), or a 422 naming
    /// every unusable one.
    fn filter(&self) -> Result<RunFilter, ApiError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mut errors = Vec::new();
        let mut id_of = |field: &str, value: Option<String>| {
            value.and_then(|v| match Uuid::parse_str(&v) {
                Ok(id) => Some(id),
                Err(e) => {
                    errors.push(FieldError {
                        field: field.into(),
                        reason: format!("`{v}` is not an id ({e}); give the {field}'s uuid"),
                    });
                    None
                }
            })
        };
        let pipeline_id = id_of("pipeline", given(&self.pipeline));
        let stage_id = id_of("stage", given(&self.stage));
        let state = given(&self.state).and_then(|v| {
            let state = slipway_store::RunState::parse(&v);
            if state.is_none() {
                let known: Vec<&str> = slipway_store::RunState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                errors.push(FieldError {
                    field: "state".into(),
                    reason: format!("`{v}` is not a run state; use one of: {}", known.join(", ")),
                });
            }
            state
        });
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        Ok(RunFilter {
            pipeline_id,
            stage_id,
            solution_name: given(&self.solution),
            state,
        })
    }
}

/// The newest runs the caller may see, filtered by pipeline, stage,
/// solution and state (in the database, before the limit).
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<RunView>), (status = 422, description = "a filter is unusable; the field names it", body = ErrorBody)))]
async fn list_deployments(
    State(gw): State<Gateway>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    caller.require(
        &[AccessRole::Maker, AccessRole::Approver],
        "see deployments",
    )?;
    let Query(q) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = q.limit.clamp(1, 1000);
    let filter = q.filter()?;
    let runs = if caller.is_admin() {
        gw.store.list_runs_filtered(limit, &filter, None).await?
    } else {
        let shared: Vec<Uuid> = gw
            .store
            .list_pipelines(Some(&caller.principals()))
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        gw.store
            .list_runs_filtered(limit, &filter, Some((&caller.subject, &shared)))
            .await?
    };
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}

/// Why a run is canceled.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Cancels a run that has not started importing (an import cannot be
/// stopped half way). 409 when it is too late.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/cancel", tag = "deployments", security(("bearer" = [])), params(("id" = Uuid, Path, description = "run id")), request_body(content = Option<CancelRequest>),
    responses((status = 200, body = RunView), (status = 404, description = "no such deployment visible to the caller", body = ErrorBody), (status = 409, description = "already importing or over", body = ErrorBody)))]
async fn cancel_deployment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    body: axum::body::Bytes,
) -> Result<Json<RunView>, ApiError> {
    caller.require(&[AccessRole::Maker], "cancel deployments")?;
    let req: CancelRequest = crate::error::optional_body(&body)?;
    visible_run(&gw, &caller, id).await?;
    match gw
        .store
        .cancel_run(id, &caller.subject, req.reason.as_deref())
        .await?
    {
        CancelOutcome::Canceled { .. } => gw.run_changed(id),
        CancelOutcome::TooLate { state } => {
            return Err(ApiError::Conflict(format!(
                "deployment {id} is {state}; only runs that have not started importing can be canceled"
            )));
        }
        CancelOutcome::UnknownRun => return Err(ApiError::not_found("deployment", id)),
    }
    let run = gw
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment", id))?;
    Ok(Json(run.into()))
}

/// Declares the bearer scheme every `/api/v1` route but this document uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (slw_...) created by an admin, or an OIDC access token when the gateway is configured for one",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of this API.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Slipway gateway",
        description = "Deploy Power Platform solutions through pipelines; administer environments, pipelines, access and the audit log. Errors are JSON `{error, fields?}`: 401 without valid credentials, 403 when the caller's role does not allow the route, 404 for ids that do not exist or that the caller may not see (the two are indistinguishable), 409 for conflicts with the current state, 422 naming each unusable field, 502 when an environment the gateway asks on the caller's behalf does not answer."
    ),
    modifiers(&BearerAuth),
    paths(
        healthz,
        readyz,
        submit_deployment,
        list_deployments,
        get_deployment,
        deployment_events,
        stream::follow_deployment,
        cancel_deployment,
        runs::approve,
        runs::reject,
        runs::complete_gate,
        runs::supply_settings,
        runs::retry,
        runs::download_artifact,
        runs::approvals,
        admin::me,
        admin::list_environments,
        admin::create_environment,
        admin::get_environment,
        admin::update_environment,
        admin::delete_environment,
        admin::validate_environment,
        browse::environment_solutions,
        signin::auth_config,
        admin::list_pipelines,
        admin::create_pipeline,
        admin::get_pipeline,
        admin::update_pipeline,
        admin::delete_pipeline,
        admin::add_stage,
        admin::update_stage,
        admin::delete_stage,
        admin::share_pipeline,
        admin::unshare_pipeline,
        admin::list_role_grants,
        admin::grant_role,
        admin::revoke_role,
        admin::create_token,
        admin::list_tokens,
        admin::revoke_token,
        admin::list_audit,
        admin::verify_audit,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::delete_webhook,
        webhooks::webhook_deliveries
    ),
    components(schemas(
        SubmitDeployment,
        RunView,
        Submitted,
        CancelRequest,
        ErrorBody,
        FieldError,
        runs::DecisionRequest,
        runs::GateCallback,
        runs::SettingsRequest,
        webhooks::WebhookRequest,
        browse::SolutionView,
        signin::AuthConfigView,
        signin::OidcView
    ))
)]
pub struct ApiDoc;

/// Serves [`ApiDoc`] as JSON.
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}
