//! Bus settings, deserialized by `slipway-service` from the `bus` config section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which transport carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// RabbitMQ over AMQP 0-9-1: the multi-process deployment.
    #[default]
    Amqp,
    /// Tokio queues inside one process: `slipway dev` and fast unit tests.
    InProcess,
}

/// How a process's publishes and consumers share AMQP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connections {
    /// One connection to publish on and one to consume on. The broker
    /// throttles a publishing connection (credit flow, memory alarms) by
    /// no longer reading from it, acks included; a consumer whose acks must
    /// get through while its process's publishes wait (the gateway's event
    /// queue) needs a connection of its own.
    Separate,
    /// One connection for both: half the broker-side processes and fewer
    /// socket writes per message (a confirm and the next delivery go out
    /// together). Right for consumers that publish before they ack (the
    /// workers): a throttled publish holds their job either way
    /// (ARCHITECTURE.md, Performance, has the measurement).
    Shared,
}

/// Bus settings. Every field has a default, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct BusConfig {
    pub transport: Transport,
    /// `amqp://user:password@host:port/vhost` (the default vhost is `%2f`).
    pub url: String,
    /// Names every exchange and queue (`{prefix}.commands`, `{prefix}.exporter`...),
    /// so several installations or tests can share a broker.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer: how many handlers may be
    /// under way at once. A worker bounds the steps actually running with
    /// `worker.concurrency`; the rest of its prefetch is jobs waiting for
    /// the broker's confirm of their next command, or for a slot. 256
    /// because that wait (a persistent publish, confirmed after RabbitMQ's
    /// disk write) is what limits a worker: the pipeline bench moved ~1,450
    /// deployments/s with 32, ~1,750 with 128, ~1,950 with 256
    /// (ARCHITECTURE.md, Performance); held deliveries are small.
    pub prefetch: u16,
    /// Deliveries of one message (the first included) before it is parked.
    pub max_attempts: u32,
    /// Retry backoff: `retry_base_ms * 2^(attempt-1)`, capped at `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long one publish waits for the broker's confirm.
    pub publish_timeout_ms: u64,
    /// Cap of the backoff between reconnect attempts.
    pub reconnect_max_ms: u64,
    /// How long a publish keeps retrying (reconnecting) while the broker is
    /// unreachable before it fails.
    pub publish_retry_ms: u64,
    /// How long shutdown waits for in-flight handlers before requeueing them.
    pub shutdown_grace_ms: u64,
    /// AMQP frame size (bytes) asked of the broker when `url` names no
    /// `frame_max`. lapin keeps 2 x 32 frames of buffer per connection, so
    /// RabbitMQ's default 128 KiB frames cost 8 MiB per connection (the
    /// gateway has two); longer messages are simply sent in several frames.
    pub frame_max: u32,
    /// Separate or shared connections for publishing and consuming; unset,
    /// each service chooses (the workers share one, the gateway keeps two).
    pub connections: Option<Connections>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            transport: Transport::Amqp,
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefix: "slipway".into(),
            prefetch: 256,
            max_attempts: 5,
            retry_base_ms: 200,
            retry_max_ms: 30_000,
            publish_timeout_ms: 5_000,
            reconnect_max_ms: 5_000,
            publish_retry_ms: 30_000,
            shutdown_grace_ms: 10_000,
            frame_max: 16_384,
            connections: None,
        }
    }
}

impl BusConfig {
    /// `url` with `frame_max` in its query unless it names one already.
    pub(crate) fn url_with_frame_max(&self) -> String {
        if self.url.contains("frame_max=") {
            return self.url.clone();
        }
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}frame_max={}", self.url, self.frame_max)
    }

    /// The wait before delivery `attempt + 1` after delivery `attempt` failed.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        Duration::from_millis(
            self.retry_base_ms
                .saturating_mul(factor)
                .min(self.retry_max_ms),
        )
    }

    /// The distinct retry delays in use (one AMQP retry queue each), shortest first.
    pub(crate) fn retry_tiers(&self) -> Vec<Duration> {
        let mut tiers: Vec<Duration> = (1..self.max_attempts.max(1))
            .map(|attempt| self.retry_delay(attempt))
            .collect();
        tiers.dedup();
        tiers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_is_asked_for_unless_the_url_names_one() {
        let mut config = BusConfig::default();
        assert!(
            config
                .url_with_frame_max()
                .ends_with("/%2f?frame_max=16384")
        );
        config.url = "amqp://h/v?heartbeat=10".into();
        assert_eq!(
            config.url_with_frame_max(),
            "amqp://h/v?heartbeat=10&frame_max=16384"
        );
        config.url = "amqp://h/v?frame_max=131072".into();
        assert_eq!(config.url_with_frame_max(), "amqp://h/v?frame_max=131072");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let config = BusConfig::default();
        assert_eq!(config.retry_delay(1), Duration::from_millis(200));
        assert_eq!(config.retry_delay(2), Duration::from_millis(400));
        assert_eq!(config.retry_delay(40), Duration::from_millis(30_000));
        assert_eq!(config.retry_delay(u32::MAX), Duration::from_millis(30_000));
    }

    #[test]
    fn one_tier_per_retry_until_the_cap() {
        let config = BusConfig {
            max_attempts: 12,
            retry_base_ms: 1_000,
            retry_max_ms: 4_000,
            ..BusConfig::default()
        };
        let tiers: Vec<u64> = config
            .retry_tiers()
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(tiers, [1_000, 2_000, 4_000]);
        let single = BusConfig {
            max_attempts: 1,
            ..BusConfig::default()
        };
        assert!(single.retry_tiers().is_empty());
    }

    #[test]
    fn config_names_transport_in_snake_case() {
        let config: BusConfig =
            serde_json::from_str(r#"{"transport":"in_process","prefetch":4}"#).unwrap();
        assert_eq!(config.transport, Transport::InProcess);
        assert_eq!(config.prefetch, 4);
        assert_eq!(config.max_attempts, 5);
    }
}
