//! `slipway`: the command line for makers, developers and operators.
//!
//! - `slipway dev`: the whole pipeline in one process on embedded defaults
//!   (in-process bus, SQLite), for trying Slipway and for development.
//! - `slipway deploy`, `slipway runs`: submit and follow deployments on a
//!   gateway.
//! - `slipway solution inspect|diff`, `slipway settings create`: work on
//!   solution zips locally, no server needed.

mod deploy_cmd;
mod dev;
mod dev_seed;
mod profile;
mod solution_cmd;

use clap::{Parser, Subcommand};

/// Slipway: deployment pipelines for Power Platform solutions.
#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 the command failed (a deployment that did not succeed, \
an unreachable gateway, a bad file); 2 bad arguments.\n\
Environment: SLIPWAY_URL and SLIPWAY_TOKEN (override the profile: `slipway profile set`), \
SLIPWAY_PROFILE (the profile file), SLIPWAY_CONFIG."
)]
struct Cli {
    /// `text` for people, `json` for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway and all three workers in this process, on embedded
    /// defaults: no broker or database server needed.
    Dev(dev::DevArgs),
    /// Deploy a solution from one environment to another through a gateway.
    Deploy(deploy_cmd::DeployArgs),
    /// List deployments, or show one with its history.
    Runs(deploy_cmd::RunsArgs),
    /// Read solution zips: a summary, or what changes between two.
    #[command(subcommand)]
    Solution(solution_cmd::SolutionCommand),
    /// Deployment settings files (connection references, environment variables).
    #[command(subcommand)]
    Settings(solution_cmd::SettingsCommand),
    /// Save the gateway URL and token used by `deploy` and `runs`.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Print a shell completion script: `slipway completions bash > /etc/bash_completion.d/slipway`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    let result = match cli.command {
        Command::Dev(args) => dev::run(args),
        Command::Deploy(mut args) => {
            args.gateway.json = json;
            deploy_cmd::run_deploy(args)
        }
        Command::Runs(mut args) => {
            args.gateway.json = json;
            deploy_cmd::run_runs(args)
        }
        Command::Solution(cmd) => solution_cmd::run_solution(cmd.with_json(json)),
        Command::Profile(cmd) => profile::run(cmd, json),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "slipway",
                &mut std::io::stdout(),
            );
            Ok(())
        }
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
