//! `slipway`: the command line for makers, developers and operators.
//!
//! - `slipway dev`: the whole pipeline in one process on embedded defaults
//!   (in-process bus, SQLite), for trying Slipway and for development.
//! - `slipway pipeline list`, `slipway deploy`, `slipway runs`: see the
//!   pipelines shared with you, deploy through their stages, follow,
//!   cancel and retry deployments, supply the settings they wait for;
//!   approvers approve, reject and complete gates (`slipway runs approvals`).
//! - `slipway artifacts download`: a run's solution zip, as imported.
//! - `slipway admin ...`: environments, pipelines, stages, sharing, roles,
//!   API tokens, the audit log and webhooks (the gateway's admin API).
//! - `slipway solution inspect|diff`, `slipway settings create`: work on
//!   solution zips locally, no server needed.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin_cmd;
mod artifact_cmd;
mod client;
mod deploy_cmd;
mod dev;
mod dev_seed;
mod pipeline_cmd;
mod profile;
mod solution_cmd;
mod webhook_cmd;

use clap::{Parser, Subcommand};

/// Slipway: deployment pipelines for Power Platform solutions.
#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about,
    after_help = "Examples:\n  \
slipway dev\n  \
slipway pipeline list\n  \
slipway deploy --solution Contoso --stage test --wait\n  \
slipway runs\n  \
slipway runs approvals\n  \
slipway runs approve ID --comment \"go\"\n  \
slipway runs settings ID --settings settings.json --wait\n  \
slipway runs retry ID --wait\n  \
slipway artifacts download ID --out Contoso.zip\n  \
slipway admin env list\n  \
slipway admin webhook list\n\
Commands: dev; pipeline list; deploy; runs list|show|cancel|approvals|approve|reject|gate|settings|retry; \
artifacts download; admin env|pipeline|stage|share|role|token|audit|webhook; whoami; \
solution inspect|diff; settings create; profile; completions.\n\
Exit codes: 0 success; 1 the command failed (a deployment that did not succeed, \
an unreachable gateway, a refused token or role, an unknown name or id, a run not in a state \
that allows the action, a broken audit chain, an environment that fails its check, a bad file, \
a file that exists without --force); 2 bad arguments (also an id that is not a uuid).\n\
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
    /// The pipelines shared with you: stages, targets, what can be deployed where.
    Pipeline(pipeline_cmd::PipelineArgs),
    /// Deploy a solution through a pipeline stage (admins: or from one
    /// environment straight to another).
    Deploy(deploy_cmd::DeployArgs),
    /// Deployments: list, show, cancel, retry, supply settings; approvers:
    /// approvals, approve, reject, gates.
    Runs(deploy_cmd::RunsArgs),
    /// A run's artifact: download the solution zip it validated and imported.
    Artifacts(artifact_cmd::ArtifactsArgs),
    /// Administer the gateway: environments, pipelines, stages, sharing,
    /// roles, API tokens, the audit log, webhooks.
    Admin(admin_cmd::AdminArgs),
    /// Who the gateway takes your token for, and your roles.
    Whoami(admin_cmd::WhoamiArgs),
    /// Read solution zips: a summary, or what changes between two.
    #[command(subcommand)]
    Solution(solution_cmd::SolutionCommand),
    /// Deployment settings files (connection references, environment variables).
    #[command(subcommand)]
    Settings(solution_cmd::SettingsCommand),
    /// Save the gateway URL and token the gateway commands use.
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
        Command::Artifacts(mut args) => {
            args.gateway.json = json;
            artifact_cmd::run(args)
        }
        Command::Pipeline(mut args) => {
            args.gateway.json = json;
            pipeline_cmd::run(args)
        }
        Command::Admin(mut args) => {
            args.gateway.json = json;
            admin_cmd::run(args)
        }
        Command::Whoami(mut args) => {
            args.gateway.json = json;
            admin_cmd::run_whoami(args)
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
            if err.downcast_ref::<client::UsageError>().is_some() {
                // Like clap's own argument errors.
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
