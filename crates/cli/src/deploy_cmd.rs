//! `slipway deploy` and `slipway runs`: the gateway from the command line,
//! like `pac pipeline deploy --wait`, with JSON output on request.
//!
//! A deployment goes through a pipeline's stage (`--stage`, found by name
//! or id among the pipelines shared with the caller); admins may still
//! deploy straight from one environment to another (`--from --to`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::client::{ApiFailure, Client, GatewayArg, id_of, runtime, table, text};
use crate::pipeline_cmd::find_stage;

/// `slipway deploy`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
slipway deploy --solution Contoso --stage test --wait\n  \
slipway deploy --solution Contoso --stage prod --pipeline \"Demo pipeline\" --from dev --new-version 1.2.0.0\n  \
slipway deploy --solution Contoso --stage test --settings settings.json --output json\n  \
slipway deploy --solution Contoso --stage prod --notes \"fixes #42\" --at 2026-11-27T22:00:00Z\n  \
slipway deploy --solution Contoso --from dev --to test --wait    (admins: no pipeline)\n\
`slipway pipeline list` shows the stages you may deploy to.")]
pub struct DeployArgs {
    /// Unique name of the solution in the source environment.
    #[arg(long)]
    solution: String,
    /// The pipeline stage to deploy to, by name or id.
    #[arg(long)]
    stage: Option<String>,
    /// The pipeline of the stage (name or id), when several have a stage of that name.
    #[arg(long, requires = "stage")]
    pipeline: Option<String>,
    /// The environment to export from [with --stage: the pipeline's source,
    /// when it has only one].
    #[arg(long = "from", required_unless_present = "stage")]
    source: Option<String>,
    /// The environment to import into [with --stage: the stage's target,
    /// when it has only one].
    #[arg(long = "to", required_unless_present = "stage")]
    target: Option<String>,
    /// The version the artifact gets.
    #[arg(
        long = "new-version",
        visible_alias = "version",
        value_name = "VERSION"
    )]
    version: Option<String>,
    /// A deployment settings file (`slipway settings create` writes one).
    #[arg(
        long = "settings",
        visible_alias = "settings-file",
        value_name = "FILE"
    )]
    settings: Option<PathBuf>,
    /// Deployment notes, shown to approvers and kept with the run.
    #[arg(long)]
    notes: Option<String>,
    /// Import no earlier than this time (RFC 3339, e.g. 2026-11-27T22:00:00Z) [default: now].
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    at: Option<String>,
    /// Follow the deployment to its end; exit 1 unless it succeeds.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

/// `slipway runs`.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
slipway runs                      (the latest deployments; same as `slipway runs list`)\n  \
slipway runs list --limit 200 -o json\n  \
slipway runs 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --output json    (same as `runs show ID`)\n  \
slipway runs cancel 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --reason \"wrong version\""
)]
pub struct RunsArgs {
    /// A deployment id: show it with its history. Without: list the latest.
    id: Option<String>,
    #[command(subcommand)]
    command: Option<RunsCommand>,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

#[derive(Debug, clap::Subcommand)]
enum RunsCommand {
    /// The latest deployments you may see, newest first.
    List {
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// One deployment with its history (JSON: `{"run": ..., "history": [...]}`).
    Show {
        /// The deployment's id.
        id: String,
    },
    /// Cancel a deployment that has not started importing.
    Cancel {
        /// The deployment's id.
        id: String,
        /// Why, for the run's history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

pub fn run_deploy(args: DeployArgs) -> anyhow::Result<()> {
    runtime()?.block_on(deploy(args))
}

pub fn run_runs(args: RunsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(runs(args))
}

fn rfc3339(value: &str) -> Result<String, String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|_| value.to_owned())
        .map_err(|e| format!("`{value}` is not an RFC 3339 time ({e}), e.g. 2026-11-27T22:00:00Z"))
}

fn read_settings(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the settings file {}", path.display()))?;
    serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')).with_context(|| {
        format!(
            "{} is not a JSON deployment settings file; `slipway settings create` writes one",
            path.display()
        )
    })
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    let settings = args.settings.as_deref().map(read_settings).transpose()?;
    let mut body = json!({
        "solution_name": args.solution,
        "version": args.version,
        "settings": settings,
    });
    // Sent only when given, so a gateway without these fields still takes
    // every other deployment.
    if let Some(notes) = &args.notes {
        body["notes"] = json!(notes);
    }
    if let Some(at) = &args.at {
        body["scheduled_at"] = json!(at);
    }
    let mut through = String::new();
    match &args.stage {
        Some(stage_key) => {
            let pipelines = client.pipelines().await?;
            let (pipeline, stage) = find_stage(&pipelines, args.pipeline.as_deref(), stage_key)?;
            let source = match &args.source {
                Some(s) => s.clone(),
                None => only_source(pipeline)?,
            };
            body["pipeline_id"] = json!(id_of(pipeline)?);
            body["stage_id"] = json!(id_of(stage)?);
            body["source_environment"] = json!(source);
            if let Some(target) = &args.target {
                body["target_environment"] = json!(target);
            }
            through = format!(
                " (pipeline {}, stage {})",
                text(pipeline, "name"),
                text(stage, "name")
            );
        }
        None => {
            body["source_environment"] = json!(args.source);
            body["target_environment"] = json!(args.target);
        }
    }
    let run = match client.post(&["api", "v1", "deployments"], &body).await {
        Ok(run) => run,
        Err(err) => return Err(raw_deploy_hint(err, args.stage.is_none())),
    };
    let id = id_of(&run)?.to_owned();
    let d = &run["deployment"];
    if !args.wait {
        client.print(&run, || {
            format!(
                "deployment {id} requested: {} from {} to {}{through}; follow it with `slipway runs {id}`",
                text(d, "solution_name"),
                text(d, "source_environment"),
                text(d, "target_environment"),
            )
        });
        return Ok(());
    }
    if !client.json {
        println!(
            "deployment {id}: {} from {} to {}{through}",
            text(d, "solution_name"),
            text(d, "source_environment"),
            text(d, "target_environment"),
        );
    }
    let run = follow(&client, &id).await?;
    if client.json {
        println!("{run:#}");
    }
    match run["state"].as_str() {
        Some("succeeded") => Ok(()),
        state => bail!(
            "deployment {id} {}: {}; `slipway runs {id}` shows its history",
            state.unwrap_or("ended"),
            run["reason"].as_str().unwrap_or("no reason given")
        ),
    }
}

/// The pipeline's one source environment; an error asking for `--from`
/// when there are several or none.
fn only_source(pipeline: &Value) -> anyhow::Result<String> {
    let sources: Vec<&str> = pipeline["source_environments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| text(e, "name"))
        .collect();
    match sources.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => bail!(
            "pipeline {} has no source environment to deploy from; an admin links one with `slipway admin pipeline update \"{}\" --source ENV`",
            text(pipeline, "name"),
            text(pipeline, "name")
        ),
        several => bail!(
            "pipeline {} deploys from several environments ({}); choose one with --from",
            text(pipeline, "name"),
            several.join(", ")
        ),
    }
}

/// The gateway names request fields; say which flag sets them. A maker's
/// deployment without `--stage` is refused for want of a pipeline.
fn raw_deploy_hint(err: anyhow::Error, raw: bool) -> anyhow::Error {
    let Some(f) = err.downcast_ref::<ApiFailure>() else {
        return err;
    };
    let has = |name: &str| f.fields.iter().any(|field| field == name);
    if raw && has("pipeline_id") {
        return anyhow::anyhow!(
            "only admins deploy without a pipeline; give --stage NAME (`slipway pipeline list` shows the stages shared with you)"
        );
    }
    let flag = if has("source_environment") {
        "--from ENV"
    } else if has("target_environment") {
        "--to ENV"
    } else {
        return err;
    };
    let message = format!("{err}; choose with {flag}");
    anyhow::anyhow!(message)
}

/// Prints the run's history as it grows (text mode) until it ends; returns
/// the finished run.
async fn follow(client: &Client, id: &str) -> anyhow::Result<Value> {
    let mut shown = 0;
    let mut last_state = String::new();
    loop {
        let history = client
            .get(&["api", "v1", "deployments", id, "events"])
            .await?;
        let entries = history.as_array().map(Vec::as_slice).unwrap_or_default();
        if !client.json {
            for entry in entries.iter().skip(shown) {
                println!("  {}", describe(entry));
            }
        }
        shown = shown.max(entries.len());
        let run = client.get(&["api", "v1", "deployments", id]).await?;
        let state = text(&run, "state");
        if !client.json && state != last_state {
            if let Some(why) = waiting_for(state) {
                println!(
                    "  (waiting for {why}; Ctrl-C stops following, the deployment goes on: `slipway runs {id}`)"
                );
            }
            last_state = state.to_owned();
        }
        if matches!(
            run["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            // Events that landed between the two reads.
            if !client.json {
                let history = client
                    .get(&["api", "v1", "deployments", id, "events"])
                    .await?;
                for entry in history.as_array().into_iter().flatten().skip(shown) {
                    println!("  {}", describe(entry));
                }
            }
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a run in `state` waits for, when it waits for someone.
fn waiting_for(state: &str) -> Option<&'static str> {
    match state {
        "awaiting_pre_export" => Some("the pre-export gate"),
        "awaiting_settings" => Some("deployment settings"),
        "awaiting_approval" => Some("an approver"),
        "awaiting_pre_deployment" => Some("the pre-deployment gate"),
        "scheduled" => Some("its scheduled time"),
        _ => None,
    }
}

async fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    let command = match (args.command, args.id) {
        (Some(command), _) => command,
        (None, Some(id)) => RunsCommand::Show { id },
        (None, None) => RunsCommand::List { limit: 50 },
    };
    match command {
        RunsCommand::Show { id } => show(&client, &id).await,
        RunsCommand::List { limit } => {
            let list = client
                .get_query(
                    &["api", "v1", "deployments"],
                    &[("limit", limit.to_string())],
                )
                .await?;
            client.print(&list, || {
                let rows: Vec<Vec<String>> =
                    list.as_array().into_iter().flatten().map(row).collect();
                if rows.is_empty() {
                    return "no deployments yet; start one with `slipway deploy`".into();
                }
                table(
                    &["ID", "STATE", "SOLUTION", "FROM -> TO", "BY", "CREATED"],
                    &rows,
                )
            });
            Ok(())
        }
        RunsCommand::Cancel { id, reason } => {
            let run = client
                .post(
                    &["api", "v1", "deployments", &id, "cancel"],
                    &json!({ "reason": reason }),
                )
                .await?;
            client.print(&run, || format!("deployment {id} {}", text(&run, "state")));
            Ok(())
        }
    }
}

async fn show(client: &Client, id: &str) -> anyhow::Result<()> {
    let run = client.get(&["api", "v1", "deployments", id]).await?;
    let history = client
        .get(&["api", "v1", "deployments", id, "events"])
        .await?;
    let both = json!({"run": run, "history": history});
    client.print(&both, || {
        let mut out = summary(&run);
        if let Some(reason) = run["reason"].as_str() {
            out.push_str(&format!("\nreason: {reason}"));
        }
        if let Some(version) = run["artifact"]["version"].as_str() {
            out.push_str(&format!("\nartifact: version {version}"));
        }
        if let Some(verdict) = run["validation"]["verdict"].as_str() {
            let errors = run["validation"]["errors"].as_array().map_or(0, Vec::len);
            out.push_str(&format!("\nvalidation: {verdict} ({errors} errors)"));
        }
        if let Some(at) = run["gates"]["scheduled_at"].as_str() {
            out.push_str(&format!("\nscheduled: {at}"));
        }
        if let Some(notes) = run["deployment"]["notes"].as_str() {
            out.push_str(&format!("\nnotes: {notes}"));
        }
        for entry in history.as_array().into_iter().flatten() {
            out.push_str(&format!("\n  {}", describe(entry)));
        }
        out
    });
    Ok(())
}

fn row(run: &Value) -> Vec<String> {
    let d = &run["deployment"];
    vec![
        text(run, "id").into(),
        text(run, "state").into(),
        text(d, "solution_name").into(),
        format!(
            "{} -> {}",
            text(d, "source_environment"),
            text(d, "target_environment")
        ),
        text(run, "requested_by").into(),
        text(run, "created_at").into(),
    ]
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
