//! `slipway-gateway`: the HTTP API, run as its own process.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use slipway_service::config::Config;

/// Slipway's gateway: the HTTP API and the one writer of the database.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "SLIPWAY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(args.config.as_deref())?;
    let _telemetry = slipway_service::telemetry::init("slipway-gateway", &config.telemetry)?;
    let shutdown = slipway_service::shutdown::on_signal();
    let store = slipway_store::Store::connect(&config.database.url)
        .await
        .with_context(|| "cannot open the database at database.url")?;
    let bus = slipway_bus::Bus::connect(&config.bus).await.context("cannot connect to the bus")?;
    slipway_gateway::run(&config, store, bus, shutdown, |addr| {
        // Tests and scripts read the bound address from this line.
        println!("listening on http://{addr}");
    })
    .await
}
