//! The HTTP API. Every error is an [`ApiError`], which says what went wrong
//! and how to fix it, and never leaks internal details to the client.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use slipway_messages::{Deployment, Envelope, ExportCommand, Message, PlaceholderWork};
use slipway_store::{CancelOutcome, HistoryEntry, NewRun, Run};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::Gateway;

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
        .route("/api/v1/deployments/{id}/cancel", post(cancel_deployment))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(gateway)
        .layer(TraceLayer::new_for_http())
}

/// Errors of the HTTP layer; each variant documents its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not the JSON this route takes.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the request is well-formed but a field is unusable.
    #[error("{0}")]
    Invalid(String),
    /// 404: no such deployment.
    #[error("no deployment with id {0}")]
    NotFound(Uuid),
    /// 409: the request conflicts with the run's state.
    #[error("{0}")]
    Conflict(String),
    /// 500: logged with its cause; the client sees only that it happened.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

impl From<slipway_store::StoreError> for ApiError {
    fn from(err: slipway_store::StoreError) -> Self {
        match err {
            slipway_store::StoreError::DuplicateRun(id) => {
                ApiError::Conflict(format!("a deployment with id {id} already exists"))
            }
            other => ApiError::Internal(other.into()),
        }
    }
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

/// What a maker submits to deploy a solution.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitDeployment {
    pub solution_name: String,
    pub source_environment: String,
    pub target_environment: String,
    #[serde(default)]
    pub version: Option<String>,
    /// The deployment settings JSON (`slipway settings create` writes one).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// What the placeholder steps do (delays, injected failures) until the
    /// real steps land.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub placeholder: PlaceholderWork,
    /// Who asks; until authentication lands this is taken on trust.
    #[serde(default)]
    pub requested_by: Option<String>,
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

impl From<Run> for RunView {
    fn from(run: Run) -> Self {
        RunView {
            id: run.id,
            state: run.state.to_string(),
            reason: run.reason,
            deployment: run.deployment,
            requested_by: run.requested_by,
            created_at: run.created_at,
            updated_at: run.updated_at,
        }
    }
}

fn require(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::Invalid(format!("`{field}` must not be empty")));
    }
    Ok(())
}

/// Creates the run and its first command in one transaction, then wakes the
/// relay. Answers 202: the deployment proceeds in the background.
#[tracing::instrument(skip_all, fields(run_id))]
#[utoipa::path(post, path = "/api/v1/deployments", request_body = SubmitDeployment,
    responses((status = 202, description = "accepted; the run proceeds in the background", body = RunView),
              (status = 400, description = "not the JSON this route takes"), (status = 422, description = "a field is unusable")))]
async fn submit_deployment(
    State(gw): State<Gateway>,
    body: Result<Json<SubmitDeployment>, JsonRejection>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    require("solution_name", &req.solution_name)?;
    require("source_environment", &req.source_environment)?;
    require("target_environment", &req.target_environment)?;
    if req.source_environment == req.target_environment {
        return Err(ApiError::Invalid(
            "`source_environment` and `target_environment` are the same; deploy to another environment".into(),
        ));
    }
    let id = Uuid::now_v7();
    tracing::Span::current().record("run_id", tracing::field::display(id));
    let deployment = Deployment {
        solution_name: req.solution_name,
        source_environment: req.source_environment,
        target_environment: req.target_environment,
        version: req.version,
        settings: req.settings,
        placeholder: req.placeholder,
    };
    let first = Envelope::new(
        id,
        Message::Export(ExportCommand {
            deployment: deployment.clone(),
        }),
    );
    let new = NewRun {
        id,
        deployment,
        requested_by: req.requested_by.unwrap_or_else(|| "anonymous".into()),
    };
    let run = gw
        .store
        .create_run(&new, &first, &slipway_bus::current_trace_headers())
        .await?;
    gw.relay_wakeup.notify_one();
    tracing::info!(run_id = %id, "deployment requested");
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, body = RunView), (status = 404, description = "no such deployment")))]
async fn get_deployment(
    State(gw): State<Gateway>,
    Path(id): Path<Uuid>,
) -> Result<Json<RunView>, ApiError> {
    let run = gw.store.get_run(id).await?.ok_or(ApiError::NotFound(id))?;
    Ok(Json(run.into()))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}/events", params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, description = "state transitions and step events, oldest first", body = Vec<Object>), (status = 404, description = "no such deployment")))]
async fn deployment_events(
    State(gw): State<Gateway>,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    if gw.store.get_run(id).await?.is_none() {
        return Err(ApiError::NotFound(id));
    }
    Ok(Json(gw.store.run_history(id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct ListQuery {
    /// Most runs returned, newest first (1 to 1000).
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

#[utoipa::path(get, path = "/api/v1/deployments", params(ListQuery), responses((status = 200, body = Vec<RunView>)))]
async fn list_deployments(
    State(gw): State<Gateway>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let runs = gw.store.list_runs(q.limit.clamp(1, 1000)).await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}

/// Why a run is canceled, and by whom.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// Cancels a run that has not started importing (an import cannot be
/// stopped half way). 409 when it is too late.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/cancel", params(("id" = Uuid, Path, description = "run id")), request_body(content = Option<CancelRequest>),
    responses((status = 200, body = RunView), (status = 404, description = "no such deployment"), (status = 409, description = "already importing or over")))]
async fn cancel_deployment(
    State(gw): State<Gateway>,
    Path(id): Path<Uuid>,
    body: Option<Json<CancelRequest>>,
) -> Result<Json<RunView>, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let actor = req.requested_by.as_deref().unwrap_or("anonymous");
    match gw
        .store
        .cancel_run(id, actor, req.reason.as_deref())
        .await?
    {
        CancelOutcome::Canceled { .. } => {}
        CancelOutcome::TooLate { state } => {
            return Err(ApiError::Conflict(format!(
                "deployment {id} is {state}; only runs that have not started importing can be canceled"
            )));
        }
        CancelOutcome::UnknownRun => return Err(ApiError::NotFound(id)),
    }
    let run = gw.store.get_run(id).await?.ok_or(ApiError::NotFound(id))?;
    Ok(Json(run.into()))
}

/// The OpenAPI description of this API.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Slipway gateway",
        description = "Submit and follow deployments of Power Platform solutions"
    ),
    paths(
        healthz,
        readyz,
        submit_deployment,
        list_deployments,
        get_deployment,
        deployment_events,
        cancel_deployment
    ),
    components(schemas(SubmitDeployment, RunView, CancelRequest))
)]
pub struct ApiDoc;

/// Serves [`ApiDoc`] as JSON.
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}
