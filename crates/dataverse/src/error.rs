//! The one error type of the client.

use serde::Deserialize;
use uuid::Uuid;

use crate::types::AsyncStatus;

/// Everything that can go wrong talking to a Dataverse environment.
#[derive(Debug, thiserror::Error)]
pub enum DataverseError {
    /// The client configuration cannot work (bad URL, empty secret...).
    #[error("invalid dataverse client configuration: {0}")]
    Config(String),

    /// Dataverse answered with its OData error JSON
    /// (`{"error":{"code":"0x80040216","message":"..."}}`).
    #[error("dataverse returned {status} ({code}): {message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// Dataverse error code, e.g. `0x80040217`.
        code: String,
        /// Dataverse's own message.
        message: String,
    },

    /// A non-success answer without an OData error body (a proxy, a gateway).
    #[error("dataverse returned {status} without an OData error body: {body}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The start of the body, for diagnosis.
        body: String,
    },

    /// The token endpoint refused or could not be reached.
    #[error("could not get an access token from {url}: {message}")]
    Auth {
        /// Token endpoint.
        url: String,
        /// What the endpoint said (`error_description`) or the transport error.
        message: String,
    },

    /// The request never got an answer (connection refused, timeout), after
    /// the configured retries.
    #[error("request to {url} failed after {attempts} attempt(s): {source}")]
    Transport {
        /// Requested URL.
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },

    /// Dataverse answered 429 with a `Retry-After` longer than the client is
    /// configured to wait.
    #[error(
        "dataverse throttled the request and asks to retry after {retry_after_secs}s, longer than the configured maximum; retry later"
    )]
    Throttled {
        /// Seconds Dataverse asked to wait.
        retry_after_secs: u64,
    },

    /// A success answer whose body is not what the Web API documents.
    #[error("could not read the response of {what}: {message}")]
    Decode {
        /// The call whose answer could not be read.
        what: String,
        /// Why.
        message: String,
    },

    /// An asynchronous operation (an import) ended without success.
    #[error("asynchronous operation {id} ended {status}: {message}")]
    AsyncOperationFailed {
        /// `asyncoperationid`.
        id: Uuid,
        /// Final status (failed or canceled).
        status: AsyncStatus,
        /// Dataverse's message (`message`, else `friendlymessage`).
        message: String,
    },

    /// The user or application user to act for is not in the environment
    /// (or cannot be impersonated there).
    #[error("{0}")]
    UnknownCaller(String),

    /// Polling gave up before the asynchronous operation ended.
    #[error(
        "gave up waiting for asynchronous operation {id} after {waited_secs}s; it is still {status}"
    )]
    AsyncOperationTimeout {
        /// `asyncoperationid`.
        id: Uuid,
        /// Status at the last poll.
        status: AsyncStatus,
        /// Seconds waited.
        waited_secs: u64,
    },
}

impl DataverseError {
    /// The Dataverse error code (`0x...`) when Dataverse gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status when Dataverse answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (throttling, 5xx, no answer).
    /// Callers that queue work use this to choose between retry and failure.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Throttled { .. } => true,
            Self::Api { status, .. } | Self::Http { status, .. } => {
                *status == 429 || *status >= 500
            }
            _ => false,
        }
    }

    /// Builds the error for a non-success response body.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: ODataError,
        }
        #[derive(Deserialize)]
        struct ODataError {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => Self::Api {
                status,
                code: error.code,
                message: error.message,
            },
            Err(_) => Self::Http {
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_error_body_becomes_a_typed_error() {
        let e = DataverseError::from_response(
            404,
            br#"{"error":{"code":"0x80040217","message":"solution With Id = x Does Not Exist"}}"#,
        );
        assert_eq!(e.code(), Some("0x80040217"));
        assert_eq!(e.status(), Some(404));
        assert!(!e.is_transient());
        assert!(e.to_string().contains("Does Not Exist"));
    }

    #[test]
    fn other_bodies_are_kept_as_text() {
        let e = DataverseError::from_response(502, b"<html>bad gateway</html>");
        assert!(matches!(e, DataverseError::Http { status: 502, .. }));
        assert!(e.is_transient());
    }
}
