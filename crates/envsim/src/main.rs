//! `slipway-envsim --config FILE [--listen ADDR] [--data FILE]`: serves the
//! simulated environments of a config file until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use slipway_envsim::{Config, DataLocation, EnvSim};

/// A Dataverse-compatible environment simulator.
#[derive(Debug, Parser)]
#[command(name = "slipway-envsim", version)]
struct Args {
    /// The TOML configuration (environments, connections, clients, seed solutions, faults).
    #[arg(long, env = "SLIPWAY_ENVSIM_CONFIG")]
    config: PathBuf,
    /// Address to listen on (overrides `listen`; default 127.0.0.1:7070).
    #[arg(long, env = "SLIPWAY_ENVSIM_LISTEN")]
    listen: Option<SocketAddr>,
    /// SQLite file holding the state, or ":memory:" (overrides `data`).
    #[arg(long, env = "SLIPWAY_ENVSIM_DATA")]
    data: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut config =
        Config::from_file(&args.config).context("cannot load the simulator configuration")?;
    if let Some(data) = args.data {
        config.data = DataLocation::from(data);
    }
    config.listen = Some(
        args.listen
            .or(config.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070))),
    );
    let running = EnvSim::start(config)
        .await
        .context("starting the environment simulator")?;
    println!("slipway-envsim listening on {}", running.base_url());
    shutdown_signal().await;
    running.shutdown().await.context("stopping the simulator")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
