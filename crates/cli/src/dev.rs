//! `slipway dev`: the whole pipeline in one process.
//!
//! The gateway and the three workers run as tasks of this process and pass
//! jobs over the in-process bus (same semantics as RabbitMQ: ack, retry,
//! park), with the database in a SQLite file, beside an embedded Dataverse
//! environment simulator. Everything it keeps lives in `--data-dir`, so a
//! restart picks up where it stopped. `--amqp URL` and `--database-url URL`
//! run the same against RabbitMQ and PostgreSQL.

use anyhow::Context as _;
use slipway_bus::{Bus, Transport};
use slipway_service::config::Config;

use slipway_service::args::ServiceArgs;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    config: ServiceArgs,
    /// Where the database and the simulator's state are kept.
    #[arg(long, default_value = ".slipway")]
    data_dir: std::path::PathBuf,
    /// Use RabbitMQ at this URL instead of the in-process bus.
    #[arg(long, value_name = "URL")]
    amqp: Option<String>,
    /// Use this database (`postgres://...`, `sqlite://...`) instead of
    /// `DATA_DIR/slipway.sqlite`.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Address of the HTTP API (overrides `gateway.listen`).
    #[arg(long)]
    listen: Option<String>,
    /// The environment simulator's configuration (TOML, see the
    /// slipway-envsim README); by default three demo environments
    /// dev, test and prod, kept in `DATA_DIR/envsim.sqlite`.
    #[arg(long)]
    envsim_config: Option<std::path::PathBuf>,
    /// Address of the environment simulator.
    #[arg(long, default_value = "127.0.0.1:7070")]
    envsim_listen: std::net::SocketAddr,
}

/// The demo environments of `slipway dev`.
const DEMO_ENVSIM: &str = include_str!("dev-envsim.toml");

/// The solutions installed in the demo development environment (built by
/// `slipway_testkit::demo`; a test keeps these files equal to it).
pub const DEMO_SOLUTIONS: [(&str, &[u8]); 3] = [
    ("ContosoCore.zip", include_bytes!("demo/ContosoCore.zip")),
    ("ContosoFlows.zip", include_bytes!("demo/ContosoFlows.zip")),
    ("ContosoTeams.zip", include_bytes!("demo/ContosoTeams.zip")),
];

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: DevArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    match args.amqp {
        Some(url) => {
            config.bus.transport = Transport::Amqp;
            config.bus.url = url;
        }
        None => config.bus.transport = Transport::InProcess,
    }
    if let Some(url) = args.database_url {
        config.database.url = url;
    } else if config.database.url == slipway_service::config::DatabaseConfig::default().url {
        // No database chosen anywhere: the embedded one, in the data directory.
        config.database.url = format!(
            "sqlite://{}?mode=rwc",
            args.data_dir.join("slipway.sqlite").display()
        );
    }
    if config.artifacts.url == slipway_service::config::ArtifactsConfig::default().url {
        // No store chosen anywhere: a folder in the data directory.
        config.artifacts.url = std::path::absolute(args.data_dir.join("artifacts"))
            .context("cannot resolve the data directory")?
            .display()
            .to_string();
    }
    if let Some(listen) = args.listen {
        config.gateway.listen = listen;
    }
    let _telemetry = slipway_service::telemetry::init("slipway-dev", &config.telemetry)?;
    let shutdown = slipway_service::shutdown::on_signal();
    let store = slipway_store::Store::connect(&config.database.url)
        .await
        .with_context(|| format!("cannot open the database {}", config.database.url))?;
    let bus = Bus::connect(&config.bus)
        .await
        .context("cannot start the bus")?;
    let mut sim_config = match &args.envsim_config {
        Some(path) => slipway_envsim::Config::from_file(path)?,
        None => {
            let mut demo = slipway_envsim::Config::from_toml(DEMO_ENVSIM)?;
            demo.data = slipway_envsim::DataLocation::File(args.data_dir.join("envsim.sqlite"));
            // The demo solutions, installed in dev (once: the simulator
            // skips a seed already installed at that version or higher).
            let folder = args.data_dir.join("demo-solutions");
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            if let Some(dev) = demo.environments.first_mut() {
                for (name, bytes) in DEMO_SOLUTIONS {
                    let path = std::path::absolute(folder.join(name))
                        .context("cannot resolve the data directory")?;
                    std::fs::write(&path, bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    dev.solutions
                        .push(slipway_envsim::config::SeedSolution { path });
                }
            }
            demo
        }
    };
    sim_config.listen = Some(args.envsim_listen);
    let envs: Vec<String> = sim_config
        .environments
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let sim = slipway_envsim::EnvSim::start(sim_config)
        .await
        .with_context(|| {
            format!(
                "cannot start the environment simulator on {} (move it with `--envsim-listen ADDR`)",
                args.envsim_listen
            )
        })?;
    let sim_urls: Vec<String> = envs
        .iter()
        .map(|e| format!("  {e}: {}", sim.env_url(e)))
        .collect();
    let registered: Vec<(String, String)> =
        envs.iter().map(|e| (e.clone(), sim.env_url(e))).collect();
    let tokens = crate::dev_seed::seed(
        &store,
        &args.data_dir,
        &registered,
        config.gateway.max_stages_per_pipeline,
    )
    .await
    .context("cannot set up the demo environments, pipeline and tokens")?;
    // Check each environment now that the simulator answers.
    let check_timeout =
        std::time::Duration::from_millis(config.gateway.environment_check_timeout_ms);
    for env in store.list_environments().await? {
        let store = store.clone();
        tokio::spawn(async move {
            let _ = slipway_gateway::admin::check_and_record(
                &store,
                check_timeout,
                &env,
                "slipway dev",
            )
            .await;
        });
    }

    use slipway_service::worker::serve as worker;
    let workers = [
        tokio::spawn(worker(
            bus.clone(),
            slipway_exporter::ExporterStep::from_config(&config).await?,
            shutdown.clone(),
        )),
        tokio::spawn(worker(
            bus.clone(),
            slipway_validator::ValidatorStep::from_config(&config).await?,
            shutdown.clone(),
        )),
        tokio::spawn(worker(
            bus.clone(),
            slipway_importer::ImporterStep::from_config(&config).await?,
            shutdown.clone(),
        )),
    ];
    let database = config.database.url.clone();
    let gateway = slipway_gateway::run(&config, store.clone(), bus, shutdown.clone(), move |addr| {
        println!(
            "slipway dev is up: gateway on http://{addr} (database {database})\n\
             web UI: http://{addr}/ui/ (sign in with a token below)\n\
             admin token: {admin}\n\
             maker token: {maker}\n\
             (kept in {tokens_file}; use one with `slipway profile set --url http://{addr} --token <token>`)\n\
             pipeline \"{pipeline}\" deploys {chain}\n\
             try:  slipway pipeline list    (or curl -H 'authorization: Bearer <token>' http://{addr}/api/v1/pipelines)\n\
             simulated Dataverse environments (bearer token `slipway-dev`):\n{sims}\n\
             stop with Ctrl-C",
            admin = tokens.admin,
            maker = tokens.maker,
            tokens_file = args.data_dir.join("tokens.json").display(),
            pipeline = crate::dev_seed::DEMO_PIPELINE,
            chain = envs.join(" -> "),
            sims = sim_urls.join("\n")
        );
    })
    .await;
    shutdown.cancel();
    if let Err(err) = sim.shutdown().await {
        tracing::warn!(error = %err, "the environment simulator did not stop cleanly");
    }
    for w in workers {
        w.await.context("a worker panicked")??;
    }
    gateway
}
