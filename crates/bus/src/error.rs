//! What can go wrong on the bus, and what a handler reports back to it.

/// A bus operation that failed. Each message says what failed and, where it
/// can, what to do.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "cannot connect to RabbitMQ at {url}: {source}; start it (`rabbitmq-server -detached`) or fix `bus.url`"
    )]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error(
        "cannot declare {what}: {source}; if it already exists with other settings, delete it or choose another `bus.prefix`"
    )]
    Topology {
        what: String,
        #[source]
        source: lapin::Error,
    },
    #[error("{action} failed: {source}")]
    Broker {
        action: String,
        #[source]
        source: lapin::Error,
    },
    #[error("the broker refused (nacked) the message published to {target}")]
    Nacked { target: String },
    #[error(
        "no queue is bound to exchange `{exchange}` for routing key `{routing_key}`; the message was returned, is the topology declared?"
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error("a batch consumer takes 1 to {limit} messages per batch, got max_batch = {max_batch}")]
    InvalidBatch { max_batch: usize, limit: usize },
    #[error("the broker did not confirm the message published to {target} within {timeout_ms} ms")]
    ConfirmTimeout { target: String, timeout_ms: u64 },
}

impl BusError {
    /// Errors that a reconnect may cure (as opposed to a refusal by the broker).
    pub(crate) fn is_connection_problem(&self) -> bool {
        matches!(self, BusError::Connect { .. } | BusError::Broker { .. })
    }
}

/// Why a handler could not process a message; the bus decides what happens next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (timeouts, 429, 5xx): retried with backoff, parked after
    /// `max_attempts`.
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (bad input, refused by the target): parked at once.
    #[error("{0}")]
    Permanent(String),
}
