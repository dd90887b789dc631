//! `slipway-gateway`: the HTTP API, run as its own process.

use anyhow::Context as _;
use slipway_service::args::ServiceArgs;
use slipway_service::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ServiceArgs::parse_for(
        "slipway-gateway",
        "Slipway's gateway: the HTTP API and the one writer of the database",
    );
    let config = Config::load(args.config.as_deref())?;
    let _telemetry = slipway_service::telemetry::init("slipway-gateway", &config.telemetry)?;
    let shutdown = slipway_service::shutdown::on_signal();
    let store = slipway_store::Store::connect(&config.database.url)
        .await
        .with_context(|| "cannot open the database at database.url")?;
    let bus = slipway_bus::Bus::connect(&config.bus)
        .await
        .context("cannot connect to the bus")?;
    slipway_gateway::run(&config, store, bus, shutdown, |addr| {
        // Tests and scripts read the bound address from this line.
        println!("listening on http://{addr}");
    })
    .await
}
