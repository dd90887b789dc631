//! The command line every Slipway server process takes.

use std::path::PathBuf;

use clap::{CommandFactory as _, FromArgMatches as _};

/// `--config FILE` (or `SLIPWAY_CONFIG`): everything else is configuration.
#[derive(Debug, Clone, clap::Parser)]
pub struct ServiceArgs {
    /// A TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "SLIPWAY_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ServiceArgs {
    /// Parses the process's arguments for the binary `name`, whose `--help`
    /// says `about`. Exits with clap's message on bad arguments.
    pub fn parse_for(name: &'static str, about: &'static str) -> ServiceArgs {
        let matches = ServiceArgs::command()
            .name(name)
            .about(about)
            .version(env!("CARGO_PKG_VERSION"))
            .get_matches();
        ServiceArgs::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }
}
