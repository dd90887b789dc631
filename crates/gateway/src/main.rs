//! `slipway-gateway`: the HTTP API, run as its own process; and
//! `slipway-gateway create-token`, which creates the first admin's token
//! straight in the database (there is nobody yet to call the API).

use anyhow::Context as _;
use clap::Parser as _;
use slipway_service::args::ServiceArgs;
use slipway_service::config::Config;
use slipway_store::AccessRole;

/// Slipway's gateway: the HTTP API and the one writer of the database.
#[derive(Debug, clap::Parser)]
#[command(name = "slipway-gateway", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create an API token in the database and print it (once), granting
    /// its user the given roles. Bootstraps the first admin:
    /// `slipway-gateway create-token --subject alice --role admin`.
    CreateToken {
        /// The user the token authenticates as.
        #[arg(long)]
        subject: String,
        /// Roles to grant the user: admin, maker, approver (repeatable).
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<AccessRole>,
        /// Groups the user is taken to belong to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// What the token is for.
        #[arg(long, default_value = "bootstrap")]
        name: String,
        /// Days until it expires (1 to 3650).
        #[arg(long, default_value_t = slipway_gateway::admin::DEFAULT_TOKEN_DAYS)]
        expires_in_days: u32,
    },
}

fn parse_role(name: &str) -> Result<AccessRole, String> {
    AccessRole::parse(name).ok_or_else(|| format!("`{name}` is not admin, maker or approver"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(args.service.config.as_deref())?;
    let _telemetry = slipway_service::telemetry::init("slipway-gateway", &config.telemetry)?;
    let store = slipway_store::Store::connect(&config.database.url)
        .await
        .with_context(|| "cannot open the database at database.url")?;
    if let Some(Command::CreateToken {
        subject,
        roles,
        groups,
        name,
        expires_in_days,
    }) = args.command
    {
        let request = slipway_gateway::admin::TokenRequest {
            name,
            subject,
            groups,
            roles,
            expires_in_days: Some(expires_in_days),
        };
        let created =
            slipway_gateway::admin::issue_token(&store, "slipway-gateway create-token", request)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", created.token);
        eprintln!(
            "token {} for {} created; it is shown only now, store it (e.g. `slipway profile set --token ...`)",
            created.api_token.display_prefix, created.api_token.subject
        );
        return Ok(());
    }
    let shutdown = slipway_service::shutdown::on_signal();
    let bus = slipway_bus::Bus::connect(&config.bus)
        .await
        .context("cannot connect to the bus")?;
    slipway_gateway::run(&config, store, bus, shutdown, |addr| {
        // Tests and scripts read the bound address from this line.
        println!("listening on http://{addr}");
    })
    .await
}
