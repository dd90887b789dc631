//! Shared helpers of the simulator's tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use slipway_dataverse::{
    AsyncOperation, Client, ClientConfig, Credentials, DataverseError, ImportRequest,
};
use slipway_envsim::config::{ConnectionConfig, EnvironmentConfig};
use slipway_envsim::{Config, Running};

pub const OUTLOOK: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";
pub const SHAREPOINT: &str = "/providers/Microsoft.PowerApps/apis/shared_sharepointonline";
pub const DEV_TOKEN: &str = "dev-token";

pub fn environment(name: &str) -> EnvironmentConfig {
    EnvironmentConfig {
        connections: vec![
            connection("outlook-1", OUTLOOK, "Connected"),
            connection("sharepoint-1", SHAREPOINT, "Connected"),
            connection("sharepoint-broken", SHAREPOINT, "Error"),
        ],
        ..EnvironmentConfig::new(name)
    }
}

pub fn connection(id: &str, connector: &str, status: &str) -> ConnectionConfig {
    ConnectionConfig {
        id: id.into(),
        connector_id: connector.into(),
        display_name: None,
        status: status.into(),
    }
}

/// In-memory state, one environment `test`, a dev token.
pub fn config() -> Config {
    let mut c = Config::in_memory();
    c.dev_tokens = vec![DEV_TOKEN.into()];
    c.environments = vec![environment("test")];
    c
}

pub fn client(sim: &Running, env: &str) -> Client {
    let mut c = ClientConfig::new(sim.env_url(env), Credentials::StaticToken(DEV_TOKEN.into()));
    c.poll_interval = Duration::from_millis(20);
    c.poll_timeout = Some(Duration::from_secs(30));
    c.retry.max_retries = 0;
    Client::new(c).unwrap()
}

pub async fn import(c: &Client, zip: Vec<u8>) -> Result<AsyncOperation, DataverseError> {
    c.import_solution(&ImportRequest::new(Bytes::from(zip)))
        .await
}

/// The message of a failed import.
pub async fn import_error(c: &Client, zip: Vec<u8>) -> String {
    match import(c, zip).await {
        Err(DataverseError::AsyncOperationFailed { message, .. }) => message,
        other => panic!("expected the import to fail, got {other:?}"),
    }
}

/// A plain HTTP client for raw requests (installs the TLS provider reqwest needs).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
