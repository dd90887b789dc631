//! `slipway`: the command line for makers, developers and operators.
//!
//! - `slipway dev`: the whole pipeline in one process on embedded defaults
//!   (in-process bus, SQLite), for trying Slipway and for development.
//! - `slipway solution inspect|diff`, `slipway settings create`: work on
//!   solution zips locally, no server needed.

mod dev;
mod solution_cmd;

use clap::{Parser, Subcommand};

/// Slipway: deployment pipelines for Power Platform solutions.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway and all three workers in this process, on embedded
    /// defaults: no broker or database server needed.
    Dev(dev::DevArgs),
    /// Read solution zips: a summary, or what changes between two.
    #[command(subcommand)]
    Solution(solution_cmd::SolutionCommand),
    /// Deployment settings files (connection references, environment variables).
    #[command(subcommand)]
    Settings(solution_cmd::SettingsCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args),
        Command::Solution(cmd) => solution_cmd::run_solution(cmd),
        Command::Settings(cmd) => solution_cmd::run_settings(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
