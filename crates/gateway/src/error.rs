//! The API's one error type. Every answer names the problem and, where it
//! can, the fix; a 500 is logged with its cause and the client sees only
//! that it happened. Answers to unknown ids and to resources the caller may
//! not see are the same 404, so the API never reveals what exists.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One field of a request that is unusable, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path in the request, e.g. `stages[0].name` or
    /// `policies.deployment_windows[1].start`.
    pub field: String,
    pub reason: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in one line.
    pub error: String,
    /// For 422: every unusable field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// Errors of the HTTP layer; each variant documents its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON at all.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's roles do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing with this id that the caller may see.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 422: one or more fields are unusable.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// 502: an environment the gateway asked on the caller's behalf did
    /// not answer, or answered with an error.
    #[error("{0}")]
    BadGateway(String),
    /// 503: a part the gateway depends on does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged with its cause; the client sees only that it happened.
    #[error("internal error; the gateway's log has the details")]
    Internal(#[from] anyhow::Error),
}

fn describe(fields: &[FieldError]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("`{}`: {}", f.field, f.reason))
        .collect();
    parts.join("; ")
}

impl ApiError {
    /// A 422 for one field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError {
            field: field.into(),
            reason: reason.into(),
        }])
    }

    /// The 404 for anything unknown or not visible to the caller.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("no {what} with id {id}"))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "request failed");
        }
        let status = self.status();
        let fields = match &self {
            ApiError::Invalid(fields) => fields.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: self.to_string(),
            fields,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"slipway\""),
            );
        }
        response
    }
}

impl From<slipway_store::StoreError> for ApiError {
    fn from(err: slipway_store::StoreError) -> Self {
        use slipway_store::StoreError;
        match err {
            StoreError::DuplicateRun(id) => {
                ApiError::Conflict(format!("a deployment with id {id} already exists"))
            }
            StoreError::NotFound { what, id } => {
                ApiError::NotFound(format!("no {what} with id {id}"))
            }
            StoreError::Invalid { field, reason } => ApiError::invalid(field, reason),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            // A race the rules' own checks could not see (another replica
            // wrote the same name a moment before).
            StoreError::Database(err)
                if err
                    .as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                ApiError::Conflict(
                    "something with the same name or key was just created; reload and try again"
                        .into(),
                )
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A JSON body parsed with the path of the first unusable field: 422 naming
/// that field (`stages[0].target_environment_ids`), or 400 when the body is
/// not JSON at all.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        parse_body(&bytes).map(Body)
    }
}

/// [`Body`]'s parsing, also for optional bodies.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
    let value = match parsed {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(not_json(&inner));
            }
            // serde's message already names a missing or unknown field.
            let field = if path == "." { "body".to_owned() } else { path };
            return Err(ApiError::invalid(field, strip_position(&inner.to_string())));
        }
    };
    // Trailing characters after the JSON value.
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn not_json(err: &serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!(
        "the body is not valid JSON ({err}); send a JSON object with content-type application/json"
    ))
}

/// [`parse_body`] for routes whose body may be left out: an empty body is
/// `T::default()`.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

/// serde_json appends " at line 1 column 42", which means nothing to a
/// caller who sent the JSON from a form.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
