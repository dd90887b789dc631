//! What a client browses besides runs: the solutions installed in an
//! environment, the maker's "pick a solution" list. The gateway asks the
//! environment on the caller's behalf, the same way it checks one
//! ([`crate::admin::ask_environment`]).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use slipway_store::{AccessRole, EnvironmentKind};
use uuid::Uuid;

use crate::Gateway;
use crate::admin::ask_environment;
use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};

/// A visible solution installed in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SolutionView {
    /// What deployments name: `solution_name` of `POST /api/v1/deployments`.
    pub unique_name: String,
    /// The display name.
    pub friendly_name: Option<String>,
    /// As Dataverse writes it, e.g. `1.0.0.3`.
    pub version: String,
    pub managed: bool,
    /// The publisher's display name (its unique name when it has none);
    /// absent when the environment does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
}

impl From<slipway_dataverse::SolutionListing> for SolutionView {
    fn from(listing: slipway_dataverse::SolutionListing) -> Self {
        let solution = listing.solution;
        SolutionView {
            unique_name: solution.unique_name,
            friendly_name: solution.friendly_name,
            version: solution.version,
            managed: solution.is_managed,
            publisher: listing.publisher.map(|p| {
                p.friendly_name
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or(p.unique_name)
            }),
        }
    }
}

/// The visible solutions installed in an environment, by display name.
/// Admins may ask any environment; makers only a development environment
/// linked to a pipeline shared with them (any other is the same 404 as an
/// unknown id); approvers none.
#[utoipa::path(get, path = "/api/v1/environments/{id}/solutions", tag = "environments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "environment id")),
    responses((status = 200, description = "visible solutions (isvisible eq true), sorted by display name", body = Vec<SolutionView>),
              (status = 403, body = ErrorBody),
              (status = 404, description = "no such environment the caller may deploy from", body = ErrorBody),
              (status = 502, description = "the environment did not answer or refused; the message names it and the error", body = ErrorBody)))]
pub async fn environment_solutions(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<SolutionView>>, ApiError> {
    caller.require(&[AccessRole::Maker], "list the solutions of an environment")?;
    let env = match gw.store.get_environment(id).await? {
        Some(env) if caller.is_admin() => env,
        Some(env)
            if env.kind == EnvironmentKind::Development
                && deploys_from(&gw, &caller, id).await? =>
        {
            env
        }
        _ => return Err(ApiError::not_found("environment", id)),
    };
    let timeout = std::time::Duration::from_millis(gw.config.environment_check_timeout_ms);
    let listed = ask_environment(timeout, &env, |client| async move {
        client.solutions_with_publishers().await
    })
    .await
    .map_err(|e| {
        tracing::warn!(environment = %env.name, error = %e, "listing solutions failed");
        ApiError::BadGateway(format!(
            "environment {} did not list its solutions: {e}",
            env.name
        ))
    })?;
    let mut solutions: Vec<SolutionView> = listed.into_iter().map(SolutionView::from).collect();
    solutions.sort_by_cached_key(|s| {
        (
            s.friendly_name
                .as_deref()
                .unwrap_or(&s.unique_name)
                .to_lowercase(),
            s.unique_name.to_lowercase(),
        )
    });
    Ok(Json(solutions))
}

/// True when a pipeline shared with the caller deploys from environment `id`.
async fn deploys_from(gw: &Gateway, caller: &Caller, id: Uuid) -> Result<bool, ApiError> {
    let pipelines = gw.store.list_pipelines(Some(&caller.principals())).await?;
    Ok(pipelines
        .iter()
        .any(|p| p.source_environments.iter().any(|e| e.id == id)))
}
