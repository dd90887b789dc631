//! `slipway-importer`: the importer worker, run as its own process. Scale it by
//! running more of them: they compete for the same queue.

use std::path::PathBuf;

use clap::Parser;

/// Imports an artifact into its target environment.
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
    slipway_service::worker::main("slipway-importer", args.config.as_deref(), slipway_importer::ImporterStep::default()).await
}
