//! `slipway-exporter`: the exporter worker, run as its own process. Scale it by
//! running more of them: they compete for the same queue.

use std::path::PathBuf;

use clap::Parser;

/// Exports a solution from its source environment and stores the artifact.
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
    slipway_service::worker::main("slipway-exporter", args.config.as_deref(), slipway_exporter::ExporterStep::default()).await
}
