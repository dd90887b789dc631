//! Names of the exchanges and queues, derived from `bus.prefix`.
//!
//! ```text
//! {prefix}.commands              direct exchange, routing key = role name
//!   -> {prefix}.{role}           one durable queue per worker role
//! {prefix}.events                topic exchange, routing key = {service}.{status}
//!   -> {prefix}.gateway.events   the gateway's event queue, bound "#"
//! {queue}.retry.{ms}ms           TTL queue per backoff tier, dead-lettered back to {queue}
//! {queue}.parked                 messages that keep failing, with `x-slipway-reason`
//! ```
//!
//! Retry uses one queue per fixed delay rather than per-message expiration:
//! RabbitMQ only expires messages at the head of a queue, so with mixed
//! per-message TTLs a long delay would hold back shorter ones behind it
//! (head-of-line blocking). In a fixed-TTL queue every message has the same
//! delay, so FIFO order is expiry order. The TTL is part of the queue's name,
//! so changing the backoff settings declares new queues instead of failing
//! with PRECONDITION_FAILED on the old ones.

use std::time::Duration;

use slipway_messages::{Role, StepStatus};

/// A queue the bus consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// A worker role's command queue.
    Role(Role),
    /// The gateway's event queue (every run event).
    Events,
}

impl QueueName {
    /// Every consumable queue.
    pub const ALL: [QueueName; 4] = [
        QueueName::Role(Role::Exporter),
        QueueName::Role(Role::Validator),
        QueueName::Role(Role::Importer),
        QueueName::Events,
    ];
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueName::Role(role) => f.write_str(role.as_str()),
            QueueName::Events => f.write_str("gateway.events"),
        }
    }
}

/// Builds the broker names for one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn commands_exchange(&self) -> String {
        format!("{}.commands", self.prefix)
    }

    pub(crate) fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub(crate) fn queue(&self, queue: QueueName) -> String {
        format!("{}.{queue}", self.prefix)
    }

    pub(crate) fn parked(&self, queue: QueueName) -> String {
        format!("{}.parked", self.queue(queue))
    }

    pub(crate) fn retry(&self, queue: QueueName, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.queue(queue), delay.as_millis())
    }
}

/// The routing key of a run event on the topic exchange: `{service}.{status}`.
pub(crate) fn event_routing_key(service: &str, status: StepStatus) -> String {
    let status = match status {
        StepStatus::Started => "started",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Retrying => "retrying",
        StepStatus::Failed => "failed",
    };
    format!("{service}.{status}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("slipway");
        assert_eq!(names.commands_exchange(), "slipway.commands");
        assert_eq!(names.events_exchange(), "slipway.events");
        assert_eq!(
            names.queue(QueueName::Role(Role::Exporter)),
            "slipway.exporter"
        );
        assert_eq!(names.queue(QueueName::Events), "slipway.gateway.events");
        assert_eq!(
            names.parked(QueueName::Role(Role::Importer)),
            "slipway.importer.parked"
        );
        assert_eq!(
            names.retry(QueueName::Role(Role::Validator), Duration::from_millis(400)),
            "slipway.validator.retry.400ms"
        );
    }
}
