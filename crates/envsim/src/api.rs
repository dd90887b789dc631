//! The HTTP surface: the Web API subset, the token endpoint and the admin
//! endpoints (axum).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::config::{ClientCredentials, Config, Faults, UserConfig};
use crate::engine::{self, ComponentParameter, ImportOptions, Platform, Refusal};
use crate::error::{ApiError, codes};
use crate::store::{ActingFor, Store};
use slipway_solution::Solution;

/// Largest request body accepted (a base64 solution of ~750 MB).
const MAX_BODY: usize = 1 << 30;

/// Counters of one environment, for tests and the admin endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvStats {
    /// Web API requests received (authenticated or not).
    pub requests: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Requests answered 429 by fault injection.
    pub throttled: u64,
    /// Requests answered 5xx by fault injection.
    pub server_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct EnvRuntime {
    pub(crate) name: String,
    pub(crate) platform: Platform,
    pub(crate) faults: Mutex<Faults>,
    counters: Counters,
    /// The `systemusers` requests may act for, with their `systemuserid`.
    users: Vec<(Uuid, UserConfig)>,
}

/// The columns of `systemusers`, in row order.
const SYSTEMUSER_COLUMNS: [&str; 6] = [
    "systemuserid",
    "domainname",
    "fullname",
    "azureactivedirectoryobjectid",
    "applicationid",
    "isdisabled",
];

impl EnvRuntime {
    /// The `systemusers` rows.
    fn user_rows(&self) -> (Vec<&'static str>, Vec<Map<String, Value>>) {
        let text = |v: Option<String>| v.map_or(Value::Null, Value::String);
        let rows = self
            .users
            .iter()
            .map(|(id, u)| {
                let values = [
                    Value::String(id.to_string()),
                    text(u.domain_name.clone()),
                    text(u.full_name.clone()),
                    text(u.object_id.map(|o| o.to_string())),
                    text(u.application_id.map(|a| a.to_string())),
                    Value::Bool(u.disabled),
                ];
                SYSTEMUSER_COLUMNS
                    .iter()
                    .map(|c| (*c).to_string())
                    .zip(values)
                    .collect()
            })
            .collect();
        (SYSTEMUSER_COLUMNS.to_vec(), rows)
    }

    /// Whom a request acts for: the user its `CallerObjectId` (Microsoft
    /// Entra object id) or `MSCRMCallerID` (`systemuserid`) header names,
    /// refused as Dataverse refuses an unknown record when the environment
    /// has no such user, or when the user is disabled.
    fn acting_for(&self, headers: &HeaderMap) -> Result<ActingFor, ApiError> {
        let header = |name: &str| -> Result<Option<Uuid>, ApiError> {
            let Some(value) = headers.get(name) else {
                return Ok(None);
            };
            let text = value.to_str().unwrap_or("").trim();
            Uuid::parse_str(text).map(Some).map_err(|_| {
                ApiError::bad_request(format!("the {name} header must be a guid, got {text:?}"))
            })
        };
        let (found, named) = if let Some(object_id) = header("CallerObjectId")? {
            let found = self
                .users
                .iter()
                .find(|(_, u)| u.object_id == Some(object_id));
            (found, format!("AzureActiveDirectoryObjectId = {object_id}"))
        } else if let Some(id) = header("MSCRMCallerID")? {
            (
                self.users.iter().find(|(uid, _)| *uid == id),
                format!("Id = {id}"),
            )
        } else {
            return Ok(ActingFor(None));
        };
        match found {
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                codes::OBJECT_DOES_NOT_EXIST,
                format!("systemuser With {named} Does Not Exist"),
            )),
            Some((id, u)) if u.disabled => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::GENERIC,
                format!("The user with SystemUserId = {id} is disabled and cannot be impersonated"),
            )),
            Some((id, _)) => Ok(ActingFor(Some(*id))),
        }
    }

    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn stats(&self) -> EnvStats {
        self.counters.stats()
    }
}

impl Counters {
    fn stats(&self) -> EnvStats {
        let c = self;
        EnvStats {
            requests: c.requests.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Issued {
    env: String,
    expires: Instant,
}

/// Shared state of the server.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    envs: HashMap<String, Arc<EnvRuntime>>,
    clients: Vec<ClientCredentials>,
    dev_tokens: Vec<String>,
    token_lifetime: Duration,
    tokens: Mutex<HashMap<String, Issued>>,
    pub(crate) tokens_issued: AtomicU64,
    /// Faults of the token endpoint (`token_faults`), and its counters.
    pub(crate) token_faults: Mutex<Faults>,
    token_counters: Counters,
    /// Imports run one at a time, as in one Dataverse environment.
    import_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    pub(crate) fn new(config: &Config, store: Store) -> Self {
        let envs = config
            .environments
            .iter()
            .map(|e| {
                (
                    e.name.to_ascii_lowercase(),
                    Arc::new(EnvRuntime {
                        name: e.name.clone(),
                        platform: Platform::of(e),
                        faults: Mutex::new(e.faults.clone()),
                        counters: Counters::default(),
                        users: e
                            .users
                            .iter()
                            .map(|u| (u.system_user_id(&e.name), u.clone()))
                            .collect(),
                    }),
                )
            })
            .collect();
        Self {
            store,
            envs,
            clients: config.clients.clone(),
            dev_tokens: config.dev_tokens.clone(),
            token_lifetime: Duration::from_secs(config.token_lifetime_secs),
            tokens: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU64::new(0),
            token_faults: Mutex::new(config.token_faults.clone()),
            token_counters: Counters::default(),
            import_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn env(&self, name: &str) -> Option<&Arc<EnvRuntime>> {
        self.envs.get(&name.to_ascii_lowercase())
    }

    /// Requests to the token endpoint and the faults injected there.
    pub(crate) fn token_stats(&self) -> EnvStats {
        self.token_counters.stats()
    }

    pub(crate) fn revoke_tokens(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Environment lookup, bearer check, request counting and fault injection,
    /// in that order, for every Web API request.
    async fn guard(&self, env: &str, headers: &HeaderMap) -> Result<Arc<EnvRuntime>, ApiError> {
        let rt = known_env(self, env)?.clone();
        let n = rt.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(e) = self.check_bearer(&rt.name, headers) {
            rt.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        inject_faults(&rt.faults(), n, &rt.counters).await?;
        Ok(rt)
    }

    fn check_bearer(&self, env: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("no bearer token: send Authorization: Bearer <token>")
            })?;
        if self.dev_tokens.iter().any(|t| t == token) {
            return Ok(());
        }
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        match tokens.get(token) {
            Some(i) if i.expires <= Instant::now() => Err(ApiError::unauthorized(
                "the bearer token has expired; get a new one from the token endpoint",
            )),
            Some(i) if i.env.eq_ignore_ascii_case(env) => Ok(()),
            Some(i) => Err(ApiError::unauthorized(format!(
                "the bearer token was issued for environment {}, not {env}; request scope <environment url>/.default",
                i.env
            ))),
            None => Err(ApiError::unauthorized(
                "the bearer token is not valid; get one from the token endpoint",
            )),
        }
    }
}

/// Applies injected delay, 429 and 5xx to request number `n` (1-based) of
/// one endpoint, counting what it injects.
async fn inject_faults(faults: &Faults, n: u64, counters: &Counters) -> Result<(), ApiError> {
    if faults.response_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.response_delay_ms)).await;
    }
    if faults.throttle_every_nth > 0 && n.is_multiple_of(faults.throttle_every_nth) {
        counters.throttled.fetch_add(1, Ordering::Relaxed);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::THROTTLED,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        );
        e.retry_after = Some(faults.retry_after_secs);
        return Err(e);
    }
    if faults.server_error_every_nth > 0 && n.is_multiple_of(faults.server_error_every_nth) {
        counters.server_errors.fetch_add(1, Ordering::Relaxed);
        let status = faults
            .server_error_status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(StatusCode::is_server_error)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err(ApiError::new(
            status,
            codes::GENERIC,
            "injected server error (simulator fault injection)",
        ));
    }
    Ok(())
}

/// Builds the router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/{env}/oauth2/v2.0/token", post(token))
        .route("/_admin/tokens", axum::routing::delete(revoke))
        .route(
            "/_admin/_token/faults",
            put(put_token_faults).get(get_token_faults),
        )
        .route("/_admin/_token/stats", get(get_token_stats))
        .route("/_admin/{env}/faults", put(put_faults).get(get_faults))
        .route("/_admin/{env}/stats", get(get_stats))
        .route(
            "/{env}/api/data/v9.2/{resource}",
            get(read).post(action).patch(update),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {method} {}; environments are served at /{{env}}/api/data/v9.2/ and \
         tokens at /{{tenant}}/oauth2/v2.0/token",
        uri.path()
    ))
}

// ---- token endpoint -------------------------------------------------------

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: String) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(state): State<Arc<AppState>>,
    Path(_tenant): Path<String>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let n = state
        .token_counters
        .requests
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    let faults = state
        .token_faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Err(e) = inject_faults(&faults, n, &state.token_counters).await {
        // Entra ID's shape: an OAuth error, with Retry-After on 429.
        let mut resp = oauth_error(e.status, "temporarily_unavailable", e.message);
        if let Some(secs) = e.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        return resp;
    }
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "the token request must be an application/x-www-form-urlencoded form \
                     (grant_type, client_id, client_secret, scope): {e}"
                ),
            );
        }
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported".into(),
        );
    }
    let (Some(id), Some(secret)) = (form.client_id, form.client_secret) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required".into(),
        );
    };
    if !state
        .clients
        .iter()
        .any(|c| c.client_id == id && c.client_secret == secret)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("client {id} is unknown or its secret is wrong"),
        );
    }
    // scope: <environment url>/.default -> the environment's name.
    let scope = form.scope.unwrap_or_default();
    let env = scope
        .strip_suffix("/.default")
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .and_then(|name| state.env(name))
        .map(|rt| rt.name.clone());
    let Some(env) = env else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "scope {scope:?} must be <environment url>/.default of a configured environment"
            ),
        );
    };
    let access_token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    {
        let mut tokens = state.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        tokens.retain(|_, i| i.expires > now);
        tokens.insert(
            access_token.clone(),
            Issued {
                env,
                expires: now + state.token_lifetime,
            },
        );
    }
    state.tokens_issued.fetch_add(1, Ordering::Relaxed);
    Json(json!({
        "token_type": "Bearer",
        "expires_in": state.token_lifetime.as_secs(),
        "ext_expires_in": state.token_lifetime.as_secs(),
        "access_token": access_token,
    }))
    .into_response()
}

// ---- admin ------------------------------------------------------------------

/// The environment named in a path, or the OData 404 that says it is unknown.
fn known_env<'a>(state: &'a AppState, env: &str) -> Result<&'a Arc<EnvRuntime>, ApiError> {
    state.env(env).ok_or_else(|| {
        ApiError::not_found(format!(
            "environment {env} does not exist in this simulator"
        ))
    })
}

fn parse_faults(body: &[u8]) -> Result<Faults, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "faults body is not valid: {e}; send JSON with the keys of [environments.faults]"
        ))
    })
}

async fn put_faults(
    State(state): State<Arc<AppState>>,
    Path(env): Path<String>,
    body: Bytes,
) -> Result<Json<Faults>, ApiError> {
    let rt = known_env(&state, &env)?;
    let faults = parse_faults(&body)?;
    *rt.faults.lock().unwrap_or_else(PoisonError::into_inner) = faults.clone();
    tracing::info!(env = %rt.name, ?faults, "faults set");
    Ok(Json(faults))
}

async fn put_token_faults(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Faults>, ApiError> {
    let faults = parse_faults(&body)?;
    *state
        .token_faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = faults.clone();
    tracing::info!(?faults, "token endpoint faults set");
    Ok(Json(faults))
}

async fn get_token_faults(State(state): State<Arc<AppState>>) -> Json<Faults> {
    Json(
        state
            .token_faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
}

async fn get_token_stats(State(state): State<Arc<AppState>>) -> Json<EnvStats> {
    Json(state.token_stats())
}

async fn get_faults(
    State(state): State<Arc<AppState>>,
    Path(env): Path<String>,
) -> Result<Json<Faults>, ApiError> {
    Ok(Json(known_env(&state, &env)?.faults()))
}

async fn get_stats(
    State(state): State<Arc<AppState>>,
    Path(env): Path<String>,
) -> Result<Json<EnvStats>, ApiError> {
    Ok(Json(known_env(&state, &env)?.stats()))
}

async fn revoke(State(state): State<Arc<AppState>>) -> StatusCode {
    state.revoke_tokens();
    StatusCode::NO_CONTENT
}

// ---- Web API: reads -----------------------------------------------------------

fn context(headers: &HeaderMap, env: &str, fragment: &str) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Value::String(format!(
        "http://{host}/{env}/api/data/v9.2/$metadata#{fragment}"
    ))
}

/// The zip an installed solution exports from; every installed one has one.
async fn installed_zip(state: &AppState, env: &str, name: &str) -> Result<Vec<u8>, ApiError> {
    state
        .store
        .solution_zip(env, name)
        .await?
        .ok_or_else(|| ApiError::internal("solution zip missing"))
}

/// The guid of a single-record segment `<set>(<guid>)`, when `resource` is one.
fn record_id(resource: &str, set: &str) -> Option<Result<Uuid, ApiError>> {
    let id = resource
        .strip_prefix(set)?
        .strip_prefix('(')?
        .strip_suffix(')')?;
    Some(Uuid::parse_str(id).map_err(|_| ApiError::bad_request(format!("{id:?} is not a guid"))))
}

/// The answer to `GET <entity>s(<id>)`: the row with the `$select`ed
/// columns, or Dataverse's 404.
fn one_record(
    row: Option<Map<String, Value>>,
    id: Uuid,
    entity: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    env: &str,
) -> Result<Json<Value>, ApiError> {
    let row =
        row.ok_or_else(|| ApiError::not_found(format!("{entity} With Id = {id} Does Not Exist")))?;
    let mut row = select(row, query.get("$select"), entity)?;
    row.insert(
        "@odata.context".into(),
        context(headers, env, &format!("{entity}s/$entity")),
    );
    Ok(Json(Value::Object(row)))
}

async fn read(
    State(state): State<Arc<AppState>>,
    Path((env, resource)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let rt = state.guard(&env, &headers).await?;
    let acting = rt.acting_for(&headers)?;
    let env = rt.name.as_str();
    if resource == "WhoAmI" || resource == "WhoAmI()" {
        let mut who = state
            .store
            .who_am_i(env)
            .await?
            .ok_or_else(|| ApiError::internal("environment row missing"))?;
        // Acting for someone, WhoAmI names them, as in Dataverse.
        if let ActingFor(Some(user)) = acting {
            who["UserId"] = Value::String(user.to_string());
        }
        who["@odata.context"] = context(&headers, env, "Microsoft.Dynamics.CRM.WhoAmIResponse");
        return Ok(Json(who));
    }
    if let Some(id) = record_id(&resource, "asyncoperations") {
        let id = id?;
        let row = state.store.async_operation_row(env, id).await?;
        return one_record(row, id, "asyncoperation", &query, &headers, env);
    }
    if let Some(id) = record_id(&resource, "importjobs") {
        let id = id?;
        let row = state.store.import_job_row(env, id).await?;
        return one_record(row, id, "importjob", &query, &headers, env);
    }
    let found = if resource == "systemusers" {
        Some(rt.user_rows())
    } else {
        state.store.entity_rows(env, &resource).await?
    };
    let (columns, rows) = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "Resource not found for the segment '{resource}'. The simulator serves WhoAmI, solutions, \
             asyncoperations, importjobs(<id>), environmentvariabledefinitions, environmentvariablevalues, \
             connectionreferences, connections, systemusers and msdyn_solutioncomponentsummaries"
        ))
    })?;
    let entity = resource.strip_suffix('s').unwrap_or(&resource);
    let conditions = match query.get("$filter") {
        Some(f) => parse_filter(f)?,
        None => Vec::new(),
    };
    // Unknown columns are refused even when no row would be touched.
    let selected = query.get("$select").map(|s| s.split(',').map(str::trim));
    for name in conditions
        .iter()
        .map(|c| c.field.as_str())
        .chain(selected.into_iter().flatten().filter(|c| !c.is_empty()))
    {
        if !columns.contains(&name) {
            return Err(unknown_property(name, entity));
        }
    }
    let expand = query
        .get("$expand")
        .map(|e| parse_expand(&resource, e))
        .transpose()?;
    let publishers = match &expand {
        Some(_) => state.store.solution_publishers(env).await?,
        None => Vec::new(),
    };
    let mut value = Vec::new();
    for row in rows {
        if matches(&row, &conditions, entity)? {
            let expanded = expand
                .as_ref()
                .map(|columns| publisher_of(&row, &publishers, columns));
            let mut out = select(row, query.get("$select"), entity)?;
            if let Some(publisher) = expanded {
                out.insert("publisherid".into(), publisher);
            }
            value.push(Value::Object(out));
        }
    }
    Ok(Json(json!({
        "@odata.context": context(&headers, env, &resource),
        "value": value,
    })))
}

fn unknown_property(name: &str, entity: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        codes::QUERY_SYNTAX,
        format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
        ),
    )
}

/// `$select`: keeps the listed columns (and refuses unknown ones, as Dataverse does).
fn select(
    mut row: Map<String, Value>,
    select: Option<&String>,
    entity: &str,
) -> Result<Map<String, Value>, ApiError> {
    let Some(select) = select else {
        return Ok(row);
    };
    let mut out = Map::new();
    for col in select.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let v = row
            .remove(col)
            .ok_or_else(|| unknown_property(col, entity))?;
        out.insert(col.to_string(), v);
    }
    Ok(out)
}

/// Columns of an expanded `publisherid`.
const PUBLISHER_COLUMNS: [&str; 3] = ["publisherid", "uniquename", "friendlyname"];

/// Parses the one `$expand` the simulator serves, a solution's publisher:
/// `publisherid` or `publisherid($select=uniquename,friendlyname)`; returns
/// the publisher columns to show.
fn parse_expand(resource: &str, expand: &str) -> Result<Vec<&'static str>, ApiError> {
    let expand = expand.trim();
    let (property, options) = match expand.split_once('(') {
        Some((property, rest)) => (
            property.trim(),
            Some(rest.strip_suffix(')').ok_or_else(|| {
                ApiError::bad_request(format!("unbalanced parentheses in $expand={expand:?}"))
            })?),
        ),
        None => (expand, None),
    };
    if resource != "solutions" || property != "publisherid" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::QUERY_SYNTAX,
            format!(
                "the simulator supports only $expand=publisherid (with an optional $select) on solutions; got {expand:?} on {resource}"
            ),
        ));
    }
    let Some(options) = options else {
        return Ok(PUBLISHER_COLUMNS.to_vec());
    };
    let select = options.trim().strip_prefix("$select=").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::QUERY_SYNTAX,
            format!("the simulator supports only $select inside $expand; got {options:?}"),
        )
    })?;
    select
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            PUBLISHER_COLUMNS
                .into_iter()
                .find(|known| *known == c)
                .ok_or_else(|| unknown_property(c, "publisher"))
        })
        .collect()
}

/// The expanded `publisherid` of a solution row: its publisher's `columns`
/// (`null` when the solution has no publisher recorded). A publisher's id is
/// derived from its unique name, so it is the same for all its solutions.
fn publisher_of(
    row: &Map<String, Value>,
    publishers: &[(String, Option<String>, Option<String>)],
    columns: &[&str],
) -> Value {
    use std::hash::{Hash, Hasher};
    let solution = row.get("uniquename").and_then(Value::as_str).unwrap_or("");
    let Some((_, Some(unique_name), friendly_name)) = publishers
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(solution))
    else {
        return Value::Null;
    };
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (salt, unique_name.to_lowercase()).hash(&mut hasher);
        hasher.finish()
    };
    let mut publisher = Map::new();
    for column in columns {
        let value = match *column {
            "publisherid" => Value::String(Uuid::from_u64_pair(half(1), half(2)).to_string()),
            "uniquename" => Value::String(unique_name.clone()),
            _ => friendly_name.clone().map_or(Value::Null, Value::String),
        };
        publisher.insert((*column).to_owned(), value);
    }
    Value::Object(publisher)
}

/// One `field eq literal` condition of a `$filter`.
#[derive(Debug, PartialEq)]
struct Condition {
    field: String,
    value: Value,
}

/// Parses the `$filter` subset the simulator supports:
/// `field eq 'text'|true|false|null|number` joined by `and`.
fn parse_filter(filter: &str) -> Result<Vec<Condition>, ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::QUERY_SYNTAX,
            format!(
                "the simulator supports only $filter=field eq 'text' (or true, false, null, a number, \
                 a guid), joined by 'and'; got {filter:?}"
            ),
        )
    };
    let mut out = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (field, after) = rest.split_once(' ').ok_or_else(unsupported)?;
        let after = after.trim_start();
        let after = after
            .strip_prefix("eq ")
            .ok_or_else(unsupported)?
            .trim_start();
        let (value, remaining) = if let Some(s) = after.strip_prefix('\'') {
            // OData strings double their quotes.
            let mut text = String::new();
            let mut chars = s.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        chars.next();
                        text.push('\'');
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    text.push(c);
                }
            }
            let end = end.ok_or_else(unsupported)?;
            (Value::String(text), &s[end..])
        } else {
            let (token, remaining) = after.split_once(' ').unwrap_or((after, ""));
            let value = match token {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                // OData writes guids bare: `msdyn_solutionid eq 7c1f...`.
                n => match serde_json::from_str::<serde_json::Number>(n) {
                    Ok(number) => Value::Number(number),
                    Err(_) => Uuid::parse_str(n)
                        .map(|g| Value::String(g.to_string()))
                        .map_err(|_| unsupported())?,
                },
            };
            (value, remaining)
        };
        out.push(Condition {
            field: field.to_string(),
            value,
        });
        let remaining = remaining.trim();
        if remaining.is_empty() {
            return Ok(out);
        }
        rest = remaining
            .strip_prefix("and ")
            .ok_or_else(unsupported)?
            .trim_start();
    }
}

/// Strings compare case-insensitively (Dataverse's default collation).
fn matches(
    row: &Map<String, Value>,
    conditions: &[Condition],
    entity: &str,
) -> Result<bool, ApiError> {
    for c in conditions {
        let v = row
            .get(&c.field)
            .ok_or_else(|| unknown_property(&c.field, entity))?;
        let equal = match (v, &c.value) {
            (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        };
        if !equal {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---- Web API: actions ---------------------------------------------------------

async fn action(
    State(state): State<Arc<AppState>>,
    Path((env, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let rt = state.guard(&env, &headers).await?;
    let acting = rt.acting_for(&headers)?;
    match resource.as_str() {
        "ExportSolution" => export_solution(&state, &rt, &headers, &body).await,
        "StageSolution" => stage_solution(&state, &rt, &headers, &body).await,
        "ImportSolutionAsync" => import_solution_async(&state, &rt, &headers, &body, acting).await,
        "DeleteAndPromote" => delete_and_promote(&state, &rt, &headers, &body).await,
        other => Err(ApiError::not_found(format!(
            "Resource not found for the segment '{other}'. The simulator's actions are \
             ExportSolution, StageSolution, ImportSolutionAsync and DeleteAndPromote"
        ))),
    }
}

/// `PATCH solutions(<id>)` with `{"version": ...}`: the version of an
/// unmanaged solution, as pipelines set it in a development environment
/// after exporting a new version (the zip it exports from gets the version
/// too). A managed solution is refused: its version changes only by
/// importing a newer one. Answers 204, as Dataverse does.
async fn update(
    State(state): State<Arc<AppState>>,
    Path((env, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let rt = state.guard(&env, &headers).await?;
    rt.acting_for(&headers)?;
    let env = rt.name.as_str();
    let Some(id) = resource
        .strip_prefix("solutions(")
        .and_then(|r| r.strip_suffix(')'))
    else {
        return Err(ApiError::not_found(format!(
            "Resource not found for the segment '{resource}'. The simulator updates solutions(<solutionid>) only"
        )));
    };
    let id =
        Uuid::parse_str(id).map_err(|_| ApiError::bad_request(format!("{id:?} is not a guid")))?;
    let fields: Map<String, Value> = parse_body("solution update", &body)?;
    let mut version = None;
    for (name, value) in &fields {
        match (name.as_str(), value) {
            ("version", Value::String(v)) => version = Some(v.trim()),
            ("version", other) => {
                return Err(ApiError::bad_request(format!(
                    "the solution's version must be a string like \"1.0.0.1\", got {other}"
                )));
            }
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "the simulator updates only the version of a solution, not '{other}'"
                )));
            }
        }
    }
    let version = version.ok_or_else(|| {
        ApiError::bad_request(
            "the solution update names no column; send {\"version\": \"1.0.0.1\"}",
        )
    })?;
    let parsed = slipway_solution::Version::parse(version).map_err(|e| {
        ApiError::bad_request(format!(
            "'{version}' is not a valid solution version ({e}); use major.minor.build.revision, e.g. 1.0.0.1"
        ))
    })?;
    // One writer of a solution's zip at a time, as imports.
    let _one_at_a_time = state.import_lock.lock().await;
    let installed =
        state.store.installed_by_id(env, id).await?.ok_or_else(|| {
            ApiError::not_found(format!("solution With Id = {id} Does Not Exist"))
        })?;
    if installed.managed {
        return Err(ApiError::bad_request(format!(
            "The solution {} is managed and its version cannot be updated; a managed solution's version changes \
             by importing a newer version, update it in the environment where it is developed",
            installed.unique_name
        )));
    }
    let zip = installed_zip(&state, env, &installed.unique_name).await?;
    let zip = slipway_solution::reversion(&zip, &parsed, &slipway_solution::Limits::default())
        .map_err(ApiError::internal)?;
    state
        .store
        .set_version(env, &installed.unique_name, version, &zip)
        .await?;
    tracing::info!(env, solution = %installed.unique_name, from = %installed.version, to = version, "solution version updated");
    Ok(StatusCode::NO_CONTENT)
}

fn parse_body<'a, T: Deserialize<'a>>(action: &str, body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the {action} request body is not valid: {e}")))
}

fn decode_file(b64: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(b64)
        .map_err(|e| ApiError::bad_request(format!("CustomizationFile is not base64: {e}")))
}

async fn export_solution(
    state: &AppState,
    rt: &EnvRuntime,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ExportBody {
        solution_name: String,
        #[serde(default)]
        managed: bool,
    }
    let req: ExportBody = parse_body("ExportSolution", body)?;
    let env = rt.name.as_str();
    let installed = state
        .store
        .installed(env, &req.solution_name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "solution With UniqueName = {} Does Not Exist",
                req.solution_name
            ))
        })?;
    if installed.managed {
        return Err(ApiError::bad_request(format!(
            "The solution {} is managed and cannot be exported; export it from the environment where it is developed",
            installed.unique_name
        )));
    }
    let zip = installed_zip(state, env, &installed.unique_name).await?;
    let zip = if req.managed {
        engine::as_managed(&zip).map_err(ApiError::internal)?
    } else {
        zip
    };
    Ok(Json(json!({
        "@odata.context": context(headers, env, "Microsoft.Dynamics.CRM.ExportSolutionResponse"),
        "ExportSolutionFile": STANDARD.encode(&zip),
    })))
}

/// Borrows the base64 text from the request body (no copy unless escaped).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileBody<'a> {
    #[serde(borrow)]
    customization_file: Cow<'a, str>,
}

async fn stage_solution(
    state: &AppState,
    rt: &EnvRuntime,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let req: FileBody = parse_body("StageSolution", body)?;
    let zip = decode_file(&req.customization_file)?;
    let env = rt.name.as_str();
    let mut details = Value::Null;
    let outcome = match engine::read_solution(&zip) {
        Err(refusal) => Err(refusal),
        Ok(solution) => {
            let previous = state.store.installed(env, &solution.unique_name).await?;
            details = json!({
                "SolutionUniqueName": solution.unique_name,
                "SolutionFriendlyName": solution.localized_names.first().map(|n| n.description.clone()),
                "SolutionVersion": solution.version.to_string(),
                "IsManaged": solution.managed,
                "PublisherUniqueName": solution.publisher.unique_name,
                "PreviousSolutionUniqueName": previous.as_ref().map(|p| p.unique_name.clone()),
                "PreviousSolutionVersion": previous.as_ref().map(|p| p.version.clone()),
                "PreviousIsManaged": previous.as_ref().map(|p| p.managed),
            });
            engine::plan_import(
                &state.store,
                env,
                &rt.platform,
                &zip,
                &solution,
                &ImportOptions::default(),
            )
            .await
            .map(|_| ())
        }
    };
    let (status, results, missing) = match outcome {
        Ok(()) => ("Passed", Vec::new(), Vec::new()),
        Err(Refusal {
            code,
            message,
            missing,
        }) => {
            let error_code = i64::from_str_radix(code.trim_start_matches("0x"), 16)
                .map(|c| c - (1i64 << 32))
                .unwrap_or(0);
            let missing: Vec<Value> = missing
                .iter()
                .map(|m| {
                    json!({
                        "RequiredComponentType": m.required.component_type.to_string(),
                        "RequiredComponentSchemaName": m.required.schema_name,
                        "RequiredComponentId": m.required.id,
                        "RequiredComponentDisplayName": m.required.display_name,
                        "RequiredComponentParentDisplayName": m.required.parent_display_name,
                        "DependentComponentType": m.dependent.component_type.to_string(),
                        "DependentComponentSchemaName": m.dependent.schema_name,
                        "DependentComponentId": m.dependent.id,
                        "DependentComponentDisplayName": m.dependent.display_name,
                        "DependentComponentParentDisplayName": m.dependent.parent_display_name,
                        "CanResolveMissingDependency": false,
                    })
                })
                .collect();
            let result = json!({
                "SolutionValidationResultType": "Error",
                "Message": message,
                "ErrorCode": error_code,
                "AdditionalInfo": null,
            });
            ("Failed", vec![result], missing)
        }
    };
    Ok(Json(json!({
        "@odata.context": context(headers, env, "Microsoft.Dynamics.CRM.StageSolutionResponse"),
        "StageSolutionResults": {
            "StageSolutionUploadId": Uuid::new_v4(),
            "StageSolutionStatus": status,
            "SolutionValidationResults": results,
            "MissingDependencies": missing,
            "SolutionDetails": details,
            "SolutionComponentsDetails": [],
        }
    })))
}

async fn import_solution_async(
    state: &Arc<AppState>,
    rt: &Arc<EnvRuntime>,
    headers: &HeaderMap,
    body: &[u8],
    acting: ActingFor,
) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ImportBody<'a> {
        #[serde(borrow)]
        customization_file: Cow<'a, str>,
        #[serde(default)]
        holding_solution: Option<bool>,
        #[serde(default)]
        import_job_id: Option<Uuid>,
        #[serde(default)]
        component_parameters: Vec<Value>,
    }
    let req: ImportBody = parse_body("ImportSolutionAsync", body)?;
    let zip = decode_file(&req.customization_file)?;
    let component_parameters = req
        .component_parameters
        .into_iter()
        .map(|p| {
            let kind = p.get("@odata.type").and_then(Value::as_str).unwrap_or("").to_string();
            serde_json::from_value::<ComponentParameter>(p).map_err(|e| {
                ApiError::bad_request(format!(
                    "ComponentParameters entry of type {kind:?} is not usable ({e}); the simulator takes \
                     Microsoft.Dynamics.CRM.environmentvariablevalue {{schemaname, value}} and \
                     Microsoft.Dynamics.CRM.connectionreference {{connectionreferencelogicalname, connectionid}}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = ImportOptions {
        holding_solution: req.holding_solution.unwrap_or(false),
        component_parameters,
    };
    let env = rt.name.clone();
    // Recording the operation and starting its import happen in a task of
    // their own: a caller that disconnects (a killed importer) drops this
    // handler, but never leaves an operation recorded whose import never
    // runs (Dataverse does not cancel an import when its caller goes).
    let job = req.import_job_id;
    // One reading of the faults: the delay recorded (for the import job's
    // progress) is the one the import waits.
    let faults = rt.faults();
    let recorded = {
        let state = state.clone();
        let rt = rt.clone();
        let env = env.clone();
        tokio::spawn(async move {
            let (op_id, created) = state
                .store
                .create_import_operation(&env, job, acting, faults.import_delay_ms)
                .await?;
            if created {
                tokio::spawn(async move {
                    let failure = run_import(&state, &rt, op_id, &faults, &zip, &options, acting)
                        .await
                        .err();
                    if let Err(e) = state
                        .store
                        .complete_operation(op_id, failure.as_deref())
                        .await
                    {
                        tracing::error!(error = %e, id = %op_id, "cannot record the end of an import");
                    }
                });
            }
            Ok::<_, sqlx::Error>(op_id)
        })
    };
    let op_id = match recorded.await {
        Ok(recorded) => recorded?,
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::error::codes::GENERIC,
                format!("the import could not be recorded: {e}"),
            ));
        }
    };
    Ok(Json(json!({
        "@odata.context": context(headers, &env, "Microsoft.Dynamics.CRM.ImportSolutionAsyncResponse"),
        "AsyncOperationId": op_id,
        "ImportJobKey": req.import_job_id.map(|j| j.to_string()),
    })))
}

/// `DeleteAndPromote` {UniqueName}: the holding solution replaces the base.
async fn delete_and_promote(
    state: &AppState,
    rt: &EnvRuntime,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct PromoteBody {
        unique_name: String,
    }
    let req: PromoteBody = parse_body("DeleteAndPromote", body)?;
    let env = rt.name.as_str();
    let name = req.unique_name.as_str();
    let _one_at_a_time = state.import_lock.lock().await;
    engine::check_promote(&state.store, env, name)
        .await
        .map_err(|r| {
            let status = if r.code == codes::OBJECT_DOES_NOT_EXIST {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(status, r.code, r.message)
        })?;
    let id = state
        .store
        .promote(env, name, &engine::holding_name(name))
        .await?;
    tracing::info!(env, solution = name, "holding solution promoted");
    Ok(Json(json!({
        "@odata.context": context(headers, env, "Microsoft.Dynamics.CRM.DeleteAndPromoteResponse"),
        "SolutionId": id,
    })))
}

/// The body of import operation `op_id`: the package read (its import job
/// names the solution), the delay, an injected failure, then the real rules.
async fn run_import(
    state: &AppState,
    rt: &EnvRuntime,
    op_id: Uuid,
    faults: &Faults,
    zip: &[u8],
    options: &ImportOptions,
    acting: ActingFor,
) -> Result<(), String> {
    let solution = engine::read_solution(zip);
    if let Ok(solution) = &solution
        && let Err(e) = state
            .store
            .set_import_solution(op_id, &solution.unique_name)
            .await
    {
        // Only the import job's `solutionname` misses it.
        tracing::warn!(error = %e, id = %op_id, "cannot record the solution of an import");
    }
    tokio::time::sleep(Duration::from_millis(faults.import_delay_ms)).await;
    if let Some(message) = &faults.fail_imports_with {
        return Err(message.clone());
    }
    let solution = solution.map_err(|r| r.message)?;
    let _one_at_a_time = state.import_lock.lock().await;
    install_read(
        &state.store,
        &rt.name,
        &rt.platform,
        zip,
        &solution,
        options,
        acting,
    )
    .await
    .map(|_| ())
    .map_err(|r| r.message)
}

/// Checks and applies one import made for `acting` (used by the API and by
/// seeding).
pub(crate) async fn install(
    store: &Store,
    env: &str,
    platform: &Platform,
    zip: &[u8],
    options: &ImportOptions,
    acting: ActingFor,
) -> Result<String, Refusal> {
    let solution = engine::read_solution(zip)?;
    install_read(store, env, platform, zip, &solution, options, acting).await
}

/// [`install`] of a package already read into `solution`.
async fn install_read(
    store: &Store,
    env: &str,
    platform: &Platform,
    zip: &[u8],
    solution: &Solution,
    options: &ImportOptions,
    acting: ActingFor,
) -> Result<String, Refusal> {
    let write = engine::plan_import(store, env, platform, zip, solution, options).await?;
    store.apply_import(&write, acting).await?;
    tracing::info!(env, solution = %solution.unique_name, version = %solution.version, "solution imported");
    Ok(solution.unique_name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_serves_a_solution_publisher_only() {
        assert_eq!(
            parse_expand("solutions", "publisherid").unwrap(),
            PUBLISHER_COLUMNS.to_vec()
        );
        assert_eq!(
            parse_expand("solutions", "publisherid($select=friendlyname, uniquename)").unwrap(),
            ["friendlyname", "uniquename"]
        );
        assert!(parse_expand("solutions", "publisherid($select=address1_city)").is_err());
        assert!(parse_expand("solutions", "publisherid($top=1)").is_err());
        assert!(parse_expand("solutions", "publisherid($select=uniquename").is_err());
        assert!(parse_expand("solutions", "organizationid").is_err());
        assert!(parse_expand("connections", "publisherid").is_err());

        let row: Map<String, Value> =
            serde_json::from_value(json!({"uniquename": "ContosoApp"})).unwrap();
        let publishers = [(
            "contosoapp".to_owned(),
            Some("contoso".to_owned()),
            Some("Contoso Ltd".to_owned()),
        )];
        let expanded = publisher_of(&row, &publishers, &PUBLISHER_COLUMNS);
        assert_eq!(expanded["uniquename"], "contoso");
        assert_eq!(expanded["friendlyname"], "Contoso Ltd");
        assert_eq!(
            expanded["publisherid"],
            publisher_of(&row, &publishers, &["publisherid"])["publisherid"],
            "a publisher's id is stable"
        );
        assert_eq!(publisher_of(&row, &[], &PUBLISHER_COLUMNS), Value::Null);
    }

    #[test]
    fn filters_parse_strings_with_quotes_and_literals() {
        let c = parse_filter("uniquename eq 'O''Neil' and ismanaged eq true").unwrap();
        assert_eq!(
            c,
            vec![
                Condition {
                    field: "uniquename".into(),
                    value: json!("O'Neil")
                },
                Condition {
                    field: "ismanaged".into(),
                    value: json!(true)
                },
            ]
        );
        let g = parse_filter("msdyn_solutionid eq 7C1F0E2A-0000-4000-8000-00000000ABCD").unwrap();
        assert_eq!(g[0].value, json!("7c1f0e2a-0000-4000-8000-00000000abcd"));
        assert!(parse_filter("msdyn_solutionid eq not-a-guid").is_err());
        assert!(parse_filter("contains(uniquename,'x')").is_err());
        assert!(parse_filter("uniquename eq 'open").is_err());
        assert!(parse_filter("a eq 1 or b eq 2").is_err());
    }

    #[test]
    fn select_refuses_unknown_columns() {
        let row: Map<String, Value> = json!({"a": 1, "b": 2}).as_object().unwrap().clone();
        assert_eq!(
            Value::Object(select(row.clone(), Some(&"b".to_string()), "x").unwrap()),
            json!({"b": 2})
        );
        let e = select(row, Some(&"c".to_string()), "solution").unwrap_err();
        assert!(e.message.contains("'c'"));
    }
}
