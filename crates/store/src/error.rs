//! The store's error type.

use uuid::Uuid;

use crate::Backend;

/// Why a store operation failed. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database url must start with `postgres://`, `postgresql://` or `sqlite:` (e.g. `sqlite://slipway.db?mode=rwc`), got `{scheme}`"
    )]
    UnsupportedUrl { scheme: String },
    #[error(
        "cannot open the {backend} database: {source}; check the database url and that the server is running"
    )]
    Connect {
        backend: Backend,
        source: sqlx::Error,
    },
    #[error("applying the {backend} database migrations failed: {source}")]
    Migrate {
        backend: Backend,
        source: sqlx::migrate::MigrateError,
    },
    #[error("run {0} already exists; give the new run a fresh id")]
    DuplicateRun(Uuid),
    #[error(
        "the first command belongs to run {command_run}, not to the new run {run}; build it with the new run's id"
    )]
    CommandRunMismatch { run: Uuid, command_run: Uuid },
    #[error("apply_event and apply_events take `run_event` envelopes only, got `{kind}`")]
    NotAnEvent { kind: &'static str },
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("stored {what} is unreadable ({detail}); was the database written by a newer Slipway?")]
    Corrupt { what: &'static str, detail: String },
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: String },
    /// A field of an admin change breaks a rule; `reason` says which.
    #[error("`{field}`: {reason}")]
    Invalid { field: String, reason: String },
    /// The change clashes with what exists (a name taken, an environment in use).
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}
