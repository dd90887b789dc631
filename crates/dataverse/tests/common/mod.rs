//! What the simulator tests of single client calls share.

use std::time::Duration;

use slipway_dataverse::{Client, ClientConfig, Credentials};
use slipway_envsim::config::EnvironmentConfig;
use slipway_envsim::{Config, EnvSim, Running};

/// A simulator with only `dev`, and a client of it with the dev token that
/// polls imports every 20 ms.
pub async fn dev_only() -> (Running, Client) {
    let mut config = Config::in_memory();
    config.dev_tokens = vec!["dev-token".into()];
    config.environments = vec![EnvironmentConfig::new("dev")];
    let sim = EnvSim::start(config).await.unwrap();
    let mut c = ClientConfig::new(
        sim.env_url("dev"),
        Credentials::StaticToken("dev-token".into()),
    );
    c.poll_interval = Duration::from_millis(20);
    c.poll_timeout = Some(Duration::from_secs(30));
    let client = Client::new(c).unwrap();
    (sim, client)
}
