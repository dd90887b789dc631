//! `slipway deploy` and `slipway runs`: the gateway from the command line,
//! like `pac pipeline deploy --wait`, with JSON output on request.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Where the gateway is.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArg {
    /// The gateway's base URL [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, env = "SLIPWAY_URL")]
    gateway: Option<String>,
    /// A bearer token for the gateway [default: the profile's].
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Set from the global `--output json`.
    #[arg(skip)]
    pub json: bool,
}

/// `slipway deploy`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  slipway deploy --solution Contoso --from dev --to test --wait\n  slipway deploy --solution Contoso --from dev --to test --settings-file settings.json --output json"
)]
pub struct DeployArgs {
    /// Unique name of the solution in the source environment.
    #[arg(long)]
    solution: String,
    /// The environment to export from.
    #[arg(long = "from")]
    source: String,
    /// The environment to import into.
    #[arg(long = "to")]
    target: String,
    /// The version the artifact gets.
    #[arg(long)]
    version: Option<String>,
    /// A deployment settings file (`slipway settings create` writes one).
    #[arg(long)]
    settings_file: Option<PathBuf>,
    /// Follow the deployment to its end; exit 1 unless it succeeds.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

/// `slipway runs`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  slipway runs\n  slipway runs 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --output json"
)]
pub struct RunsArgs {
    /// A deployment id: show it with its history. Without: list the latest.
    id: Option<String>,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

struct Gateway {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Gateway {
    fn new(arg: &GatewayArg) -> anyhow::Result<Gateway> {
        // reqwest is built without a default TLS provider; ring is the
        // workspace's. A second install attempt is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Flags and environment first, then the profile, then the default.
        let profile = crate::profile::load()?;
        let base = arg
            .gateway
            .clone()
            .or(profile.url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        Ok(Gateway {
            base: base.trim_end_matches('/').to_owned(),
            token: arg.token.clone().or(profile.token),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("cannot build an HTTP client")?,
        })
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the
    /// gateway's own message.
    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the gateway at {}; is it running (`slipway dev`)?",
                self.base
            )
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned);
            bail!("the gateway answered {status}: {message}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run_deploy(args: DeployArgs) -> anyhow::Result<()> {
    runtime()?.block_on(deploy(args))
}

pub fn run_runs(args: RunsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(runs(args))
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let gw = Gateway::new(&args.gateway)?;
    let settings = match &args.settings_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')).with_context(
                    || format!("{} is not a JSON deployment settings file", path.display()),
                )?,
            )
        }
        None => None,
    };
    let body = json!({
        "solution_name": args.solution,
        "source_environment": args.source,
        "target_environment": args.target,
        "version": args.version,
        "settings": settings,
    });
    let run = gw
        .call(
            gw.http
                .post(format!("{}/api/v1/deployments", gw.base))
                .json(&body),
        )
        .await?;
    let id = run["id"]
        .as_str()
        .context("the gateway answered without a run id")?
        .to_owned();
    if !args.wait {
        if args.gateway.json {
            println!("{run:#}");
        } else {
            println!("deployment {id} requested; follow it with `slipway runs {id}`");
        }
        return Ok(());
    }
    if !args.gateway.json {
        println!(
            "deployment {id}: {} from {} to {}",
            body["solution_name"], args.source, args.target
        );
    }
    let mut shown = 0;
    let run = loop {
        let history = gw.get(&format!("/api/v1/deployments/{id}/events")).await?;
        let entries = history.as_array().map(Vec::as_slice).unwrap_or_default();
        if !args.gateway.json {
            for entry in entries.iter().skip(shown) {
                println!("  {}", describe(entry));
            }
        }
        shown = shown.max(entries.len());
        let run = gw.get(&format!("/api/v1/deployments/{id}")).await?;
        if matches!(
            run["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if args.gateway.json {
        println!("{run:#}");
    }
    match run["state"].as_str() {
        Some("succeeded") => Ok(()),
        state => bail!(
            "deployment {id} {}: {}",
            state.unwrap_or("ended"),
            run["reason"].as_str().unwrap_or("no reason given")
        ),
    }
}

async fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let gw = Gateway::new(&args.gateway)?;
    match &args.id {
        Some(id) => {
            let run = gw.get(&format!("/api/v1/deployments/{id}")).await?;
            let history = gw.get(&format!("/api/v1/deployments/{id}/events")).await?;
            if args.gateway.json {
                println!("{:#}", json!({"run": run, "history": history}));
                return Ok(());
            }
            println!("{}", summary(&run));
            if let Some(reason) = run["reason"].as_str() {
                println!("reason: {reason}");
            }
            for entry in history.as_array().into_iter().flatten() {
                println!("  {}", describe(entry));
            }
        }
        None => {
            let list = gw.get("/api/v1/deployments").await?;
            if args.gateway.json {
                println!("{list:#}");
                return Ok(());
            }
            for run in list.as_array().into_iter().flatten() {
                println!("{}", summary(run));
            }
        }
    }
    Ok(())
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// `id  state  solution  dev -> test  created`
fn summary(run: &Value) -> String {
    let d = &run["deployment"];
    format!(
        "{}  {:<10}  {}  {} -> {}  {}",
        text(run, "id"),
        text(run, "state"),
        text(d, "solution_name"),
        text(d, "source_environment"),
        text(d, "target_environment"),
        text(run, "created_at"),
    )
}

/// One history entry on one line.
fn describe(e: &Value) -> String {
    let at = text(e, "at");
    let detail = e["detail"]
        .as_str()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    if e["kind"] == "transition" {
        format!("{at}  -> {}{detail}", text(e, "state"))
    } else {
        format!(
            "{at}     {} {} ({}){detail}",
            text(e, "step"),
            text(e, "status"),
            e["instance"]
                .as_str()
                .or(e["service"].as_str())
                .unwrap_or("-"),
        )
    }
}
