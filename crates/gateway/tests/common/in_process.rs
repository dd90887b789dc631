//! A gateway and the three worker steps started inside a test's process.
//! Shared by the gateway's tests and, included by path, the CLI's: it cannot
//! live in slipway-testkit, which the gateway and the workers' own tests
//! depend on.

use slipway_bus::{Bus, BusConfig, Transport};
use slipway_service::config::Config;
use slipway_service::shutdown::CancellationToken;
use slipway_store::Store;

/// The in-process bus, retrying quickly so failing steps end runs fast.
pub fn bus_config() -> BusConfig {
    BusConfig {
        transport: Transport::InProcess,
        retry_base_ms: 10,
        retry_max_ms: 20,
        max_attempts: 3,
        ..BusConfig::default()
    }
}

/// Issues an admin API token straight into `store`, as bootstrap does.
pub async fn admin_token(store: &Store, name: &str, subject: &str) -> String {
    slipway_gateway::admin::issue_token(
        store,
        "bootstrap",
        slipway_gateway::admin::TokenRequest {
            name: name.into(),
            subject: subject.into(),
            groups: vec![],
            roles: vec![slipway_store::AccessRole::Admin],
            expires_in_days: None,
        },
    )
    .await
    .unwrap()
    .token
}

/// Runs the exporter, validator and importer on `bus` until `shutdown`.
pub async fn spawn_workers(bus: &Bus, config: &Config, shutdown: &CancellationToken) {
    use slipway_service::worker::serve;
    tokio::spawn(serve(
        bus.clone(),
        slipway_exporter::ExporterStep::from_config(config)
            .await
            .unwrap(),
        shutdown.clone(),
    ));
    tokio::spawn(serve(
        bus.clone(),
        slipway_validator::ValidatorStep::from_config(config)
            .await
            .unwrap(),
        shutdown.clone(),
    ));
    tokio::spawn(serve(
        bus.clone(),
        slipway_importer::ImporterStep::from_config(config)
            .await
            .unwrap(),
        shutdown.clone(),
    ));
}

/// Runs the gateway until `shutdown`; returns its base URL once it listens,
/// and the task that ends with its result.
pub async fn spawn_gateway(
    config: Config,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        slipway_gateway::run(&config, store, bus, shutdown, move |addr| {
            let _ = tx.send(addr);
        })
        .await
    });
    let addr = rx.await.unwrap();
    (format!("http://{addr}"), task)
}
