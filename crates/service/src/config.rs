//! Configuration shared by every Slipway process.
//!
//! Layers, later wins: built-in defaults < a TOML file (`--config FILE` or
//! the `SLIPWAY_CONFIG` variable) < environment variables named
//! `SLIPWAY__<SECTION>__<KEY>` (for example `SLIPWAY__BUS__URL`). Every key
//! is documented in `docs/configuration.md`; a test keeps that page and this
//! struct in step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slipway_bus::BusConfig;

/// The whole configuration. Each service reads the sections it needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub bus: BusConfig,
    pub database: DatabaseConfig,
    pub gateway: GatewayConfig,
    pub worker: WorkerConfig,
    pub auth: AuthConfig,
    pub artifacts: ArtifactsConfig,
    pub environments: EnvironmentsConfig,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` (readable, the default) or `json` (one object per line).
    pub log_format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `slipway_bus=debug,info`.
    pub log_filter: String,
    /// Base URL of an OTLP/HTTP collector (e.g. `http://127.0.0.1:4318`);
    /// spans are exported only when it is set.
    pub otlp_endpoint: Option<String>,
    /// `protobuf` (the default) or `json`, the OTLP/HTTP encoding.
    pub otlp_protocol: OtlpProtocol,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Protobuf,
        }
    }
}

/// How logs are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// OTLP/HTTP body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    Protobuf,
    Json,
}

/// The gateway's database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` in production, `sqlite://FILE?mode=rwc`
    /// (the embedded default) or `sqlite::memory:`.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://slipway.sqlite?mode=rwc".into(),
        }
    }
}

/// The gateway's HTTP server and outbox relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the HTTP API listens on; port 0 picks a free port.
    pub listen: String,
    /// How often the outbox relay looks for unpublished commands when it
    /// was not woken by a new run.
    pub outbox_poll_ms: u64,
    /// Most outbox rows relayed per round.
    pub outbox_batch: u32,
    /// How long a claimed outbox row stays reserved for one relay before
    /// another gateway replica may take it over.
    pub outbox_lease_ms: u64,
    /// Most run events applied in one database transaction; the event
    /// consumer takes what is queued up to this, in order.
    pub event_batch: usize,
    /// Most stages one pipeline may have.
    pub max_stages_per_pipeline: usize,
    /// How long checking an environment (WhoAmI) may take before it counts
    /// as failed.
    pub environment_check_timeout_ms: u64,
    /// Pause after a webhook delivery's first failed attempt; doubles after
    /// each further failure, up to `webhook_retry_max_ms`.
    pub webhook_retry_base_ms: u64,
    /// Longest pause between two attempts of a webhook delivery.
    pub webhook_retry_max_ms: u64,
    /// Attempts of a webhook delivery before it is left undelivered (with
    /// its last error, shown by the deliveries endpoint).
    pub webhook_max_attempts: u32,
    /// How long a webhook receiver may take to answer one attempt.
    pub webhook_timeout_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8080".into(),
            outbox_poll_ms: 500,
            outbox_batch: 100,
            outbox_lease_ms: 30_000,
            event_batch: 256,
            max_stages_per_pipeline: 7,
            environment_check_timeout_ms: 20_000,
            webhook_retry_base_ms: 1_000,
            webhook_retry_max_ms: 300_000,
            webhook_max_attempts: 10,
            webhook_timeout_ms: 10_000,
        }
    }
}

/// What the exporter, validator and importer share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// A step still running after this long reports `started`; a step done
    /// sooner reports only how it ended (its hand-over to the next step
    /// carries that report). `0`: every step reports `started` at once.
    pub started_event_after_ms: u64,
    /// Threads the worker runs its tasks on. `1`: one thread, no hand-overs
    /// between threads (a step mostly waits; zip parsing runs on separate
    /// blocking threads anyway). More only pays when steps do CPU work of
    /// their own; scaling out with replicas is the usual way.
    pub threads: usize,
    /// Steps the worker runs at once (at least 1). Deliveries beyond it
    /// (up to `bus.prefetch`) wait in the worker for a free slot. Separate
    /// from the prefetch because a finished step still holds its delivery
    /// until the broker confirms the next command: a deep prefetch keeps
    /// the pipeline full through that wait, while this bounds the real work
    /// (exports and imports in memory, calls to Dataverse) running at once.
    pub concurrency: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            started_event_after_ms: 200,
            threads: 1,
            concurrency: 32,
        }
    }
}

/// Who may call the gateway. API tokens (created by admins, stored hashed)
/// always work; OIDC/JWT bearer tokens work when the three `oidc_*` URLs
/// and audience are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The identity provider's issuer (`iss`), e.g.
    /// `https://login.microsoftonline.com/<tenant>/v2.0`.
    pub oidc_issuer: Option<String>,
    /// The audience (`aud`) tokens must be issued for: the gateway's app id.
    pub oidc_audience: Option<String>,
    /// Where the provider publishes its signing keys (JWKS).
    pub oidc_jwks_url: Option<String>,
    /// The claim listing the caller's groups.
    pub oidc_groups_claim: String,
    /// The claim naming the caller (`sub`, or `preferred_username`, `oid`).
    pub oidc_subject_claim: String,
    /// The client id browsers sign in as (the web UI's app registration);
    /// unset: browsers sign in with API tokens only.
    pub oidc_client_id: Option<String>,
    /// The scopes browsers ask for when they sign in.
    pub oidc_scope: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            oidc_issuer: None,
            oidc_audience: None,
            oidc_jwks_url: None,
            oidc_groups_claim: "groups".into(),
            oidc_subject_claim: "sub".into(),
            oidc_client_id: None,
            oidc_scope: "openid profile".into(),
        }
    }
}

/// Where exported solution files are kept (content-addressed). The
/// exporter writes, the validator and importer read, the gateway serves
/// downloads: all must see the same store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// A folder (`file:///var/lib/slipway/artifacts` or a plain path) or
    /// `s3://bucket/prefix` (with the `s3` feature; `AWS_*` variables).
    pub url: String,
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        ArtifactsConfig {
            url: "slipway-artifacts".into(),
        }
    }
}

/// How the workers talk to Dataverse environments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentsConfig {
    /// Timeout of one Web API request (imports are polled, not waited on).
    pub request_timeout_ms: u64,
    /// First pause between two polls of a running import; doubles up to
    /// `import_poll_max_ms`.
    pub import_poll_ms: u64,
    /// Longest pause between two polls of a running import.
    pub import_poll_max_ms: u64,
}

impl Default for EnvironmentsConfig {
    fn default() -> Self {
        EnvironmentsConfig {
            request_timeout_ms: 120_000,
            import_poll_ms: 2_000,
            import_poll_max_ms: 30_000,
        }
    }
}

/// A configuration that could not be loaded, naming the culprit.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration file {path} does not exist; pass an existing file or unset SLIPWAY_CONFIG"
    )]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
}

impl Config {
    /// Defaults, then `file` (or `SLIPWAY_CONFIG` when `file` is `None`),
    /// then `SLIPWAY__SECTION__KEY` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// [`Config::load`] with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| vars.get("SLIPWAY_CONFIG").map(PathBuf::from));
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Config::default())?);
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile { path });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env = config::Environment::with_prefix("SLIPWAY")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(vars));
        Ok(builder.add_source(env).build()?.try_deserialize()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.gateway.listen, "127.0.0.1:8080");
        assert_eq!(c.database.url, DatabaseConfig::default().url);
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            "[gateway]\nlisten = \"0.0.0.0:9000\"\noutbox_batch = 7\n[bus]\nprefetch = 3\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&path),
            env(&[
                ("SLIPWAY__GATEWAY__LISTEN", "0.0.0.0:9100"),
                ("SLIPWAY__BUS__MAX_ATTEMPTS", "9"),
                ("SLIPWAY__TELEMETRY__LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.gateway.listen, "0.0.0.0:9100");
        assert_eq!(c.gateway.outbox_batch, 7);
        assert_eq!(c.bus.prefetch, 3);
        assert_eq!(c.bus.max_attempts, 9);
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn config_file_can_come_from_slipway_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[database]\nurl = \"sqlite::memory:\"\n").unwrap();
        let c =
            Config::load_from(None, env(&[("SLIPWAY_CONFIG", path.to_str().unwrap())])).unwrap();
        assert_eq!(c.database.url, "sqlite::memory:");
    }

    #[test]
    fn unknown_keys_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[gateway]\nlisten_adress = \"x\"\n").unwrap();
        let err = Config::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_adress"), "{err}");
        let err = Config::load_from(Some(&dir.path().join("nope.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.toml"), "{err}");
    }

    /// Every key of every section appears in the one configuration reference.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut missing = Vec::new();
        for (section, keys) in value.as_object().unwrap() {
            for key in keys.as_object().unwrap().keys() {
                let name = format!("`{section}.{key}`");
                if !doc.contains(&name) {
                    missing.push(name);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "undocumented keys in docs/configuration.md: {missing:?}"
        );
    }

    /// docker-compose.yml and the Kubernetes manifests can't be run here (no
    /// Docker engine, no cluster), so this keeps their `SLIPWAY__SECTION__KEY`
    /// variables true to the real keys.
    #[test]
    fn deployment_files_use_only_real_keys() {
        let value = serde_json::to_value(Config::default()).unwrap();
        for (file, text) in [
            (
                "docker-compose.yml",
                include_str!("../../../docker-compose.yml"),
            ),
            (
                "deploy/k8s/slipway.yaml",
                include_str!("../../../deploy/k8s/slipway.yaml"),
            ),
        ] {
            let mut checked = 0;
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let Some(rest) = word.strip_prefix("SLIPWAY__") else {
                    continue;
                };
                let (section, key) = rest.split_once("__").unwrap_or((rest, ""));
                let (section, key) = (section.to_lowercase(), key.to_lowercase());
                assert!(
                    value.get(&section).and_then(|s| s.get(&key)).is_some(),
                    "{file} sets {word}, which is not a configuration key"
                );
                checked += 1;
            }
            assert!(checked >= 5, "{file} should configure the services");
        }
    }
}
