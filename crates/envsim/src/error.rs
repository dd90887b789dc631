//! Errors: [`SimError`] for starting the simulator, [`ApiError`] for answers
//! in Dataverse's OData error format.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the simulator could not start or persist.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is unusable.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The SQLite database failed.
    #[error("simulator database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be created or upgraded.
    #[error("cannot migrate the simulator database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file could not be opened or created.
    #[error(
        "cannot open the simulator database {path}: {error}; check that its directory exists and is writable, or use --data :memory:"
    )]
    Open {
        /// The file.
        path: String,
        /// Why (kept in the message, not as a source, so it prints once).
        error: sqlx::Error,
    },
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {error}; choose another address with --listen or `listen` (port 0 picks a free one)"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// Binding or serving failed.
    #[error("simulator i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A solution listed in the config could not be installed.
    #[error("cannot install seed solution {path} into environment {env}: {message}")]
    Seed {
        /// Environment name.
        env: String,
        /// Zip path.
        path: String,
        /// Why (the import failure message).
        message: String,
    },
}

/// Dataverse error codes the simulator answers with. Where we know the real
/// code for the situation we use it; otherwise the generic `0x80040216`.
pub mod codes {
    /// Generic platform error ("An unexpected error occurred").
    pub const GENERIC: &str = "0x80040216";
    /// The record does not exist.
    pub const OBJECT_DOES_NOT_EXIST: &str = "0x80040217";
    /// OData query syntax error.
    pub const QUERY_SYNTAX: &str = "0x80060888";
    /// Service protection: number of requests exceeded the limit.
    pub const THROTTLED: &str = "0x80072322";
    /// Solution import: some dependencies are missing (ErrorCode -2147188707).
    pub const MISSING_DEPENDENCIES: &str = "0x8004801d";
}

/// An answer in Dataverse's OData error format:
/// `{"error":{"code":"0x80040216","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Dataverse error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// `Retry-After` seconds (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with the generic code.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::GENERIC, message)
    }

    /// 404 "does not exist".
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::OBJECT_DOES_NOT_EXIST, message)
    }

    /// 401: no valid bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::GENERIC, message)
    }

    /// 500, for simulator-internal failures (details logged, not hidden: this
    /// is a development tool).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(%message, "simulator internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::GENERIC,
            format!("simulator internal error: {message}"),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
