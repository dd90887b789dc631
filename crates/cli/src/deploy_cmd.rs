//! `slipway deploy` and `slipway runs`: the gateway from the command line,
//! like `pac pipeline deploy --wait`, with JSON output on request.
//!
//! A deployment goes through a pipeline's stage (`--stage`, found by name
//! or id among the pipelines shared with the caller); admins may still
//! deploy straight from one environment to another (`--from --to`).
//! What happens to a run afterwards is here too: approve or reject it,
//! complete its gates, supply the settings it waits for, retry it.
//!
//! `--wait` prints each step as it happens; on a terminal a bar on stderr
//! shows the import running: its percentage when the target environment
//! reports one (the run's `import_progress`, from the import job), else a
//! spinner with how often the import was checked. Without a terminal, each
//! new whole percentage is a line (`import 40 %`).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::client::{
    ApiFailure, Client, GatewayArg, hint_not_found, id_arg, id_of, runtime, table, text,
};
use crate::pipeline_cmd::find_stage;

/// `slipway deploy`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
slipway deploy --solution Contoso --stage test --wait\n  \
slipway deploy --solution Contoso --stage prod --pipeline \"Demo pipeline\" --from dev --new-version 1.2.0.0\n  \
slipway deploy --solution Contoso --stage test --settings settings.json --output json\n  \
slipway deploy --solution Contoso --stage prod --notes \"fixes #42\" --at 2026-11-27T22:00:00Z\n  \
slipway deploy --solution Contoso --stage prod --dry-run --wait    (validate against prod, no import)\n  \
slipway deploy --solution Contoso --stage test --current-version 1.0.0.3    (refused if dev has another version)\n  \
slipway deploy --solution Contoso --stage regions --wait    (a stage with several targets: one run each)\n  \
slipway deploy --solution Contoso --stage regions --target prod-us\n  \
slipway deploy --solution Contoso --from dev --to test --wait    (admins: no pipeline)\n\
`slipway pipeline list` shows the stages you may deploy to. A stage with several targets deploys to all of them \
(one run each, printed one a line; --wait follows every one) unless --target names one. \
With --wait each step is shown as it happens \
(on a terminal, a bar while the import runs); a run waiting for someone says what for and the command that gives it.")]
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
    /// The environment to import into [with --stage: every target of the
    /// stage, one run each].
    #[arg(
        long = "to",
        visible_alias = "target",
        value_name = "ENV",
        required_unless_present = "stage"
    )]
    target: Option<String>,
    /// The version the solution has in the source environment now (like
    /// `pac pipeline deploy --currentVersion`): the deployment is refused
    /// before it starts if the source has another, e.g. because someone
    /// changed it since you looked.
    #[arg(long, value_name = "VERSION", value_parser = solution_version)]
    current_version: Option<String>,
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
    /// Validate only: export (or reuse the artifact) and validate against
    /// the target, never import; the run succeeds when validation passes.
    #[arg(long)]
    dry_run: bool,
    /// Follow the deployment to its end, each step as it happens; exit 1
    /// unless it succeeds.
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
slipway runs cancel 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --reason \"wrong version\"\n  \
slipway runs approvals            (the deployments waiting for you to approve)\n  \
slipway runs approve 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --comment \"go\"\n  \
slipway runs reject 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --comment \"not during the freeze\"\n  \
slipway runs settings 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --settings settings.json --wait\n  \
slipway runs retry 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --wait\n  \
slipway runs gate 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 pre-deployment --status succeeded"
)]
pub struct RunsArgs {
    /// A deployment id: show it with its history. Without: list the latest.
    #[arg(value_parser = run_id)]
    id: Option<String>,
    #[command(subcommand)]
    command: Option<RunsCommand>,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

/// Where run ids are listed, for errors about them.
pub const RUNS_HINT: &str = "`slipway runs list` shows the deployments you may see";

/// A deployment id (clap value parser).
pub fn run_id(value: &str) -> Result<String, String> {
    id_arg(value, "a deployment", RUNS_HINT)
}

#[derive(Debug, clap::Subcommand)]
enum RunsCommand {
    /// The latest deployments you may see, newest first.
    #[command(
        after_help = "Examples:\n  slipway runs list\n  slipway runs list --limit 200 -o json"
    )]
    List {
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// One deployment with its history (JSON: `{"run": ..., "history": [...]}`).
    #[command(after_help = "Examples:\n  \
slipway runs show 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  \
slipway runs show 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 -o json")]
    Show {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
    },
    /// Cancel a deployment that has not started importing.
    #[command(after_help = "Examples:\n  \
slipway runs cancel 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --reason \"wrong version\"")]
    Cancel {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// Why, for the run's history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The deployments waiting for approval that you may decide (approvers; admins: all).
    #[command(
        after_help = "Examples:\n  slipway runs approvals\n  slipway runs approvals -o json\n\
Approve with `slipway runs approve ID`, reject with `slipway runs reject ID --comment TEXT`."
    )]
    Approvals,
    /// Approve a deployment waiting for approval (approvers; never your own).
    #[command(after_help = "Examples:\n  \
slipway runs approve 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  \
slipway runs approve 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --comment \"checked with the business\" -o json\n\
`slipway runs approvals` lists the deployments waiting for you.")]
    Approve {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// Shown to the maker and kept with the run.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a deployment waiting for approval: it fails with your comment.
    #[command(after_help = "Examples:\n  \
slipway runs reject 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --comment \"not during the freeze\"")]
    Reject {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// Why, for the maker (required).
        #[arg(long)]
        comment: String,
    },
    /// Run a failed or canceled deployment again, as a new run (reusing its artifact).
    #[command(after_help = "Examples:\n  \
slipway runs retry 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  \
slipway runs retry 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --wait")]
    Retry {
        /// The failed or canceled deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// Follow the new run to its end; exit 1 unless it succeeds.
        #[arg(long)]
        wait: bool,
    },
    /// Supply the deployment settings a run waits for (state
    /// awaiting_settings); it is validated again.
    #[command(after_help = "Examples:\n  \
slipway runs settings 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --settings settings.json\n  \
slipway runs settings 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --settings settings.json --wait\n\
`slipway runs show ID` lists what is missing; `slipway settings create` writes a settings file.")]
    Settings {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// The deployment settings file (replaces the run's settings).
        #[arg(long, visible_alias = "settings-file", value_name = "FILE")]
        settings: PathBuf,
        /// Follow the run to its end; exit 1 unless it succeeds.
        #[arg(long)]
        wait: bool,
    },
    /// Complete a run's gate as an external system would (approvers).
    #[command(after_help = "Examples:\n  \
slipway runs gate 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 pre-export --status succeeded\n  \
slipway runs gate 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 pre-deployment --status failed --comment \"change ticket not approved\"")]
    Gate {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// Which gate.
        #[arg(value_enum)]
        gate: GateName,
        /// succeeded lets the run go on; failed fails it with the comment.
        #[arg(long, value_enum)]
        status: GateStatus,
        /// Kept with the run; the reason when failed.
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GateName {
    /// Before the export.
    #[value(alias = "pre_export")]
    PreExport,
    /// Before the import.
    #[value(alias = "pre_deployment")]
    PreDeployment,
    /// The approval (same as `runs approve` / `runs reject`).
    Approval,
}

impl GateName {
    /// The name in the gateway's route.
    fn as_str(self) -> &'static str {
        match self {
            GateName::PreExport => "pre_export",
            GateName::PreDeployment => "pre_deployment",
            GateName::Approval => "approval",
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GateStatus {
    Succeeded,
    Failed,
}

pub fn run_deploy(args: DeployArgs) -> anyhow::Result<()> {
    runtime()?.block_on(deploy(args))
}

pub fn run_runs(args: RunsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(runs(args))
}

fn solution_version(value: &str) -> Result<String, String> {
    slipway_solution::Version::parse(value)
        .map(|_| value.trim().to_owned())
        .map_err(|e| format!("`{value}` is not a solution version ({e}), e.g. 1.0.0.3"))
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
    if args.dry_run {
        body["dry_run"] = json!(true);
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
            if let Some(expected) = &args.current_version {
                let env = pipeline["source_environments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == source.as_str())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "environment {source} is not a source of pipeline {}; deploy from one of its sources (`slipway pipeline list`)",
                            text(pipeline, "name")
                        )
                    })?;
                check_current_version(&client, id_of(env)?, &source, &args.solution, expected)
                    .await?;
            }
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
            if let (Some(expected), Some(source)) = (&args.current_version, &args.source) {
                let envs = client.environments().await?;
                let env = envs
                    .iter()
                    .find(|e| e["name"] == source.as_str())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "no environment is named {source}; `slipway admin env list` shows them"
                        )
                    })?;
                check_current_version(&client, id_of(env)?, source, &args.solution, expected)
                    .await?;
            }
            body["source_environment"] = json!(args.source);
            body["target_environment"] = json!(args.target);
        }
    }
    let run = match client.post(&["api", "v1", "deployments"], &body).await {
        Ok(run) => run,
        Err(err) => return Err(raw_deploy_hint(err, args.stage.is_none())),
    };
    let fan_out: Vec<String> = run["fan_out"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    if !fan_out.is_empty() {
        return fanned_out(&client, run, &fan_out, &through, args.wait).await;
    }
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
    wait_for_end(&client, &id).await
}

/// Refuses to deploy `solution` when the source environment `env_id`
/// (named `source`) has it at another version than `expected`
/// (`--current-version`).
async fn check_current_version(
    client: &Client,
    env_id: &str,
    source: &str,
    solution: &str,
    expected: &str,
) -> anyhow::Result<()> {
    let listed = client
        .get(&["api", "v1", "environments", env_id, "solutions"])
        .await?;
    let installed = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| text(s, "unique_name").eq_ignore_ascii_case(solution))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "solution {solution} is not in environment {source}; check the unique name (not the display name)"
            )
        })?;
    let current = text(installed, "version");
    let same = match (
        slipway_solution::Version::parse(current),
        slipway_solution::Version::parse(expected),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => current == expected,
    };
    if !same {
        bail!(
            "solution {solution} has version {current} in {source}, not {expected} (--current-version); \
             it changed since you looked: check what changed, then deploy with --current-version {current}"
        );
    }
    Ok(())
}

/// A deployment that fanned out to every target of its stage: `first` is
/// the submit's answer, `others` the ids of the other runs. Prints each run
/// on a line (JSON: all of them, a list); with `wait`, follows each to its
/// end and fails unless all succeeded, naming the targets that did not.
async fn fanned_out(
    client: &Client,
    mut first: Value,
    others: &[String],
    through: &str,
    wait: bool,
) -> anyhow::Result<()> {
    if let Some(fields) = first.as_object_mut() {
        fields.remove("fan_out");
    }
    let mut runs = vec![first];
    for id in others {
        runs.push(client.get(&["api", "v1", "deployments", id]).await?);
    }
    let d = &runs[0]["deployment"];
    let header = format!(
        "{} from {} to {} targets{through}:",
        text(d, "solution_name"),
        text(d, "source_environment"),
        runs.len()
    );
    let lines: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "  {}  {}",
                text(r, "id"),
                text(&r["deployment"], "target_environment")
            )
        })
        .collect();
    if !wait {
        client.print(&Value::Array(runs.clone()), || {
            format!(
                "deployment requested: {header}\n{}\nfollow each with `slipway runs ID`",
                lines.join("\n")
            )
        });
        return Ok(());
    }
    if !client.json {
        println!("deployment of {header}\n{}", lines.join("\n"));
    }
    let mut ended = Vec::with_capacity(runs.len());
    for run in &runs {
        let id = id_of(run)?;
        if !client.json {
            println!(
                "deployment {id} to {}:",
                text(&run["deployment"], "target_environment")
            );
        }
        ended.push(follow(client, id).await?);
    }
    if client.json {
        println!("{:#}", Value::Array(ended.clone()));
    }
    let failed: Vec<&Value> = ended.iter().filter(|r| r["state"] != "succeeded").collect();
    if failed.is_empty() {
        if !client.json {
            println!("all {} deployments succeeded", ended.len());
        }
        return Ok(());
    }
    if !client.json {
        for run in &failed {
            let problems = validation_problems(run);
            if !problems.is_empty() {
                println!(
                    "validation in {} found:",
                    text(&run["deployment"], "target_environment")
                );
                for p in &problems {
                    println!("  - {p}");
                }
            }
        }
    }
    let why: Vec<String> = failed
        .iter()
        .map(|r| {
            format!(
                "{} {} ({}): {}",
                text(&r["deployment"], "target_environment"),
                r["state"].as_str().unwrap_or("ended"),
                text(r, "id"),
                one_line(r["reason"].as_str().unwrap_or("no reason given"))
            )
        })
        .collect();
    bail!(
        "{} of {} deployments did not succeed: {}; `slipway runs ID` shows a run's history",
        failed.len(),
        ended.len(),
        why.join("; ")
    )
}

/// Follows run `id` to its end (see [`follow`]), prints it (JSON), and
/// fails unless it succeeded, listing what its validation found.
async fn wait_for_end(client: &Client, id: &str) -> anyhow::Result<()> {
    let run = follow(client, id).await?;
    if client.json {
        println!("{run:#}");
    }
    match run["state"].as_str() {
        Some("succeeded") => Ok(()),
        state => {
            if !client.json {
                let problems = validation_problems(&run);
                if !problems.is_empty() {
                    println!("validation found:");
                    for p in &problems {
                        println!("  - {p}");
                    }
                }
            }
            bail!(
                "deployment {id} {}: {}; `slipway runs {id}` shows its history",
                state.unwrap_or("ended"),
                one_line(run["reason"].as_str().unwrap_or("no reason given"))
            )
        }
    }
}

/// `text` on one line (a reason may span several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the run's latest validation found wrong, one line each: the
/// version, missing dependencies, the target's errors, connection
/// references and environment variables with a problem, policy violations.
fn validation_problems(run: &Value) -> Vec<String> {
    let v = &run["validation"];
    let items = |key: &str| v[key].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(p) = v["version_problem"].as_str() {
        out.push(format!("version: {p}"));
    }
    for m in items("missing_dependencies") {
        let by = m["required_by"]
            .as_str()
            .map(|b| format!(" (needed by {b})"))
            .unwrap_or_default();
        out.push(format!(
            "missing {} {}{by}",
            text(m, "required_type"),
            text(m, "required")
        ));
    }
    for e in items("errors") {
        if let Some(e) = e.as_str() {
            out.push(e.to_owned());
        }
    }
    for c in items("connection_references") {
        if let Some(p) = c["problem"].as_str() {
            out.push(format!(
                "connection reference {}: {p}",
                text(c, "logical_name")
            ));
        }
    }
    for e in items("environment_variables") {
        if let Some(p) = e["problem"].as_str() {
            out.push(format!(
                "environment variable {}: {p}",
                text(e, "schema_name")
            ));
        }
    }
    for p in items("policy_violations") {
        out.push(format!(
            "policy {}: {}",
            text(p, "policy"),
            text(p, "message")
        ));
    }
    out.iter().map(|p| one_line(p)).collect()
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
    let run = client
        .get(&["api", "v1", "deployments", id])
        .await
        .map_err(|e| hint_not_found(e, RUNS_HINT))?;
    let mut progress = Progress::new(client.json, text(&run["deployment"], "target_environment"));
    let mut shown = 0;
    let mut last_state = String::new();
    loop {
        let history = client
            .get(&["api", "v1", "deployments", id, "events"])
            .await?;
        let entries = history.as_array().map(Vec::as_slice).unwrap_or_default();
        for entry in entries.iter().skip(shown) {
            progress.entry(entry);
        }
        shown = shown.max(entries.len());
        let run = client.get(&["api", "v1", "deployments", id]).await?;
        progress.import_progress(&run);
        let state = text(&run, "state");
        if state != last_state {
            if let Some(why) = waiting_for(state, id) {
                progress.line(&format!(
                    "  (waiting for {why}; Ctrl-C stops following, the deployment goes on: `slipway runs {id}`)"
                ));
                if state == "awaiting_settings" {
                    for p in validation_problems(&run) {
                        progress.line(&format!("    - {p}"));
                    }
                }
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
                    progress.entry(entry);
                }
            }
            progress.finish();
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How `--wait` shows a run as it goes: one line per history entry on
/// stdout, nothing in JSON mode; while the import runs, a bar on stderr
/// when stderr is a terminal (with the percentage once the environment
/// gives one), else a line per check of the import and per new whole
/// percentage.
struct Progress {
    json: bool,
    /// Draw a bar (stderr is a terminal, text mode).
    live: bool,
    /// The run's target environment, for the bar.
    target: String,
    bar: Option<indicatif::ProgressBar>,
    checks: ImportChecks,
    /// The import's start was shown and its end not yet.
    importing: bool,
    /// The whole percentage last shown, if any.
    shown_percent: Option<u64>,
}

impl Progress {
    fn new(json: bool, target: &str) -> Progress {
        Progress {
            json,
            live: !json && std::io::stderr().is_terminal(),
            target: target.to_owned(),
            bar: None,
            checks: ImportChecks::default(),
            importing: false,
            shown_percent: None,
        }
    }

    /// Shows the import's percentage from `run`'s `import_progress`, when
    /// the import runs and the environment gave a new whole percentage: on
    /// the bar, or as a line.
    fn import_progress(&mut self, run: &Value) {
        if self.json || !self.importing || run["state"] != "importing" {
            return;
        }
        let progress = &run["import_progress"];
        let Some(percent) = import_percent(progress) else {
            return;
        };
        if self.shown_percent == Some(percent) {
            return;
        }
        self.shown_percent = Some(percent);
        match &self.bar {
            Some(bar) => {
                if bar.length().is_none() {
                    if let Some(style) = percent_style(&self.target) {
                        bar.set_style(style);
                    }
                    bar.set_length(100);
                }
                bar.set_position(percent);
            }
            None => self.line(&format!(
                "  {}     import {percent} %",
                progress["updated_at"].as_str().unwrap_or("-")
            )),
        }
    }

    /// Prints `line` on stdout (above the bar, if one is drawn).
    fn line(&self, line: &str) {
        if self.json {
            return;
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn entry(&mut self, e: &Value) {
        if self.json {
            return;
        }
        let import = e["kind"] == "event" && e["step"] == "import";
        match self.checks.check(e) {
            Some(n) => match &self.bar {
                Some(bar) => bar.set_message(format!("checked {n} time{}", plural(n))),
                None => self.line(&format!("  {}", describe_check(e, n))),
            },
            None if import && e["status"] == "started" => {
                self.line(&format!("  {}", describe(e)));
                self.importing = true;
                if self.live {
                    self.bar = Some(import_bar(&self.target));
                }
            }
            None => {
                if import || (e["kind"] == "transition" && e["state"] != "importing") {
                    // The import ended, or the run moved on (failed).
                    self.importing = false;
                    self.finish();
                }
                self.line(&format!("  {}", describe(e)));
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Tells the checks of a running import in a run's history: the importer
/// reports `import started` when the step starts, then again each time it
/// checks the running import (the percentage it may read then is on the
/// run, see [`Progress::import_progress`]).
#[derive(Debug, Default)]
struct ImportChecks {
    started: u32,
}

impl ImportChecks {
    /// `Some(n)` when `e` is the n-th check of the running import.
    fn check(&mut self, e: &Value) -> Option<u32> {
        if e["kind"] == "event" && e["step"] == "import" && e["status"] == "started" {
            self.started += 1;
            (self.started > 1).then(|| self.started - 1)
        } else {
            None
        }
    }

    /// `e` on one line, a check of the import told as such.
    fn describe(&mut self, e: &Value) -> String {
        match self.check(e) {
            Some(n) => describe_check(e, n),
            None => describe(e),
        }
    }
}

/// A spinner with the time the import has been running, on stderr.
fn import_bar(target: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "  {{spinner}} importing into {target}  {{elapsed_precise}}  {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar.set_message("started");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The whole percentage (0 to 100) of a run's `import_progress`, when the
/// environment gave one.
fn import_percent(progress: &Value) -> Option<u64> {
    let percent = progress["percent"].as_f64()?;
    // Clamped, so the cast cannot wrap.
    Some(percent.clamp(0.0, 100.0).round() as u64)
}

/// The import bar once the percentage is known.
fn percent_style(target: &str) -> Option<indicatif::ProgressStyle> {
    indicatif::ProgressStyle::with_template(&format!(
        "  {{spinner}} importing into {target}  [{{bar:30}}] {{pos:>3}} %  {{elapsed_precise}}  {{msg}}"
    ))
    .ok()
    .map(|style| style.progress_chars("=> "))
}

/// A check of a running import, on one line.
fn describe_check(e: &Value, check: u32) -> String {
    format!(
        "{}     import running (check {check}, {})",
        text(e, "at"),
        e["instance"]
            .as_str()
            .or(e["service"].as_str())
            .unwrap_or("-"),
    )
}

/// What a run in `state` waits for, when it waits for someone, and the
/// command that gives it.
fn waiting_for(state: &str, id: &str) -> Option<String> {
    Some(match state {
        "awaiting_pre_export" => {
            format!("the pre-export gate: `slipway runs gate {id} pre-export --status succeeded`")
        }
        "awaiting_settings" => {
            format!("deployment settings: `slipway runs settings {id} --settings FILE`")
        }
        "awaiting_approval" => format!("an approver: `slipway runs approve {id}`"),
        "awaiting_pre_deployment" => format!(
            "the pre-deployment gate: `slipway runs gate {id} pre-deployment --status succeeded`"
        ),
        "scheduled" => "its scheduled time".to_owned(),
        _ => return None,
    })
}

async fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    let command = match (args.command, args.id) {
        (Some(command), _) => command,
        (None, Some(id)) => RunsCommand::Show { id },
        (None, None) => RunsCommand::List { limit: 50 },
    };
    let not_found = |e| hint_not_found(e, RUNS_HINT);
    match command {
        RunsCommand::Show { id } => show(&client, &id).await.map_err(not_found),
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
            let run = act(&client, &id, "cancel", &json!({ "reason": reason })).await?;
            client.print(&run, || format!("deployment {id} {}", text(&run, "state")));
            Ok(())
        }
        RunsCommand::Approvals => {
            let list = client.get(&["api", "v1", "approvals"]).await?;
            client.print(&list, || {
                let rows: Vec<Vec<String>> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|run| {
                        let mut r = row(run);
                        r[1] = run["deployment"]["notes"]
                            .as_str()
                            .map_or_else(|| "-".into(), one_line);
                        r
                    })
                    .collect();
                if rows.is_empty() {
                    return "no deployment waits for your approval".into();
                }
                table(
                    &["ID", "NOTES", "SOLUTION", "FROM -> TO", "BY", "CREATED"],
                    &rows,
                )
            });
            Ok(())
        }
        RunsCommand::Approve { id, comment } => {
            let run = act(&client, &id, "approve", &json!({ "comment": comment })).await?;
            client.print(&run, || {
                format!(
                    "approved deployment {id}; it is {} now: `slipway runs {id}`",
                    text(&run, "state")
                )
            });
            Ok(())
        }
        RunsCommand::Reject { id, comment } => {
            let run = act(&client, &id, "reject", &json!({ "comment": comment })).await?;
            client.print(&run, || {
                format!("rejected deployment {id}; it is {}", text(&run, "state"))
            });
            Ok(())
        }
        RunsCommand::Gate {
            id,
            gate,
            status,
            comment,
        } => {
            let body = json!({
                "status": match status {
                    GateStatus::Succeeded => "completed",
                    GateStatus::Failed => "rejected",
                },
                "comment": comment,
            });
            let run = client
                .post(
                    &["api", "v1", "deployments", &id, "gates", gate.as_str()],
                    &body,
                )
                .await
                .map_err(not_found)?;
            client.print(&run, || {
                format!(
                    "the {} gate of deployment {id} {}; it is {} now",
                    gate.as_str().replace('_', "-"),
                    match status {
                        GateStatus::Succeeded => "passed",
                        GateStatus::Failed => "failed",
                    },
                    text(&run, "state")
                )
            });
            Ok(())
        }
        RunsCommand::Retry { id, wait } => {
            let run = act(&client, &id, "retry", &json!({})).await?;
            let new_id = id_of(&run)?.to_owned();
            if !wait {
                client.print(&run, || {
                    format!(
                        "deployment {id} runs again as {new_id}; follow it with `slipway runs {new_id}`"
                    )
                });
                return Ok(());
            }
            if !client.json {
                println!("deployment {id} runs again as {new_id}");
            }
            wait_for_end(&client, &new_id).await
        }
        RunsCommand::Settings { id, settings, wait } => {
            let settings = read_settings(&settings)?;
            let run = client
                .put(
                    &["api", "v1", "deployments", &id, "settings"],
                    &json!({ "settings": settings }),
                )
                .await
                .map_err(not_found)?;
            if !wait {
                client.print(&run, || {
                    format!(
                        "settings supplied; deployment {id} is {} again: `slipway runs {id}`",
                        text(&run, "state")
                    )
                });
                return Ok(());
            }
            if !client.json {
                println!("settings supplied; deployment {id} is validated again");
            }
            wait_for_end(&client, &id).await
        }
    }
}

/// POST /api/v1/deployments/{id}/{action}.
async fn act(client: &Client, id: &str, action: &str, body: &Value) -> anyhow::Result<Value> {
    client
        .post(&["api", "v1", "deployments", id, action], body)
        .await
        .map_err(|e| hint_not_found(e, RUNS_HINT))
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
        if let Some(before) = run["source_version"].as_str() {
            out.push_str(&format!(
                "\nsource: {} had version {before} before the export",
                text(&run["deployment"], "source_environment")
            ));
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
        if let Some(why) = waiting_for(text(&run, "state"), id) {
            out.push_str(&format!("\nwaiting for {why}"));
        }
        for p in validation_problems(&run) {
            out.push_str(&format!("\n  - {p}"));
        }
        let mut checks = ImportChecks::default();
        for entry in history.as_array().into_iter().flatten() {
            out.push_str(&format!("\n  {}", checks.describe(entry)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_import_starts_are_checks_of_the_running_import() {
        let started = json!({"kind": "event", "step": "import", "status": "started", "at": "t", "instance": "vm:1"});
        let moved = json!({"kind": "transition", "state": "importing", "at": "t"});
        let mut checks = ImportChecks::default();
        assert_eq!(checks.check(&started), None, "the step starting");
        assert_eq!(checks.check(&moved), None);
        assert_eq!(checks.check(&started), Some(1));
        assert_eq!(
            checks.describe(&started),
            "t     import running (check 2, vm:1)"
        );
    }

    #[test]
    fn the_import_percentage_is_whole_and_within_0_to_100() {
        let p = |v: Value| import_percent(&json!({ "percent": v }));
        assert_eq!(p(json!(39.6)), Some(40));
        assert_eq!(p(json!(0)), Some(0));
        assert_eq!(p(json!(100.0)), Some(100));
        assert_eq!(p(json!(130.0)), Some(100));
        assert_eq!(p(json!(-2.0)), Some(0));
        assert_eq!(p(Value::Null), None, "the environment gave none");
        assert_eq!(import_percent(&Value::Null), None, "no import yet");
        assert!(percent_style("test").is_some(), "the bar's template parses");
    }

    #[test]
    fn validation_problems_are_one_line_each() {
        let run = json!({"validation": {
            "version_problem": "version 1.0 is not higher than 2.0",
            "missing_dependencies": [{"required_type": "Entity", "required": "Account", "required_by": "Order"}],
            "errors": ["the target\nsaid no"],
            "connection_references": [{"logical_name": "cts_ok"}, {"logical_name": "cts_mail", "problem": "no connection"}],
            "environment_variables": [{"schema_name": "cts_Url", "problem": "needs a value"}],
            "policy_violations": [{"policy": "managed_only", "message": "only managed solutions"}],
        }});
        assert_eq!(
            validation_problems(&run),
            [
                "version: version 1.0 is not higher than 2.0",
                "missing Entity Account (needed by Order)",
                "the target said no",
                "connection reference cts_mail: no connection",
                "environment variable cts_Url: needs a value",
                "policy managed_only: only managed solutions",
            ]
        );
        assert!(validation_problems(&json!({"validation": null})).is_empty());
    }

    #[test]
    fn waiting_runs_name_the_command_that_moves_them() {
        let id = "01a21c8b-dd04-709d-9f1e-a8b3ae2a5080";
        assert!(
            waiting_for("awaiting_settings", id)
                .unwrap()
                .contains(&format!("slipway runs settings {id} --settings FILE"))
        );
        assert!(
            waiting_for("awaiting_pre_deployment", id)
                .unwrap()
                .contains("pre-deployment --status succeeded")
        );
        assert_eq!(waiting_for("importing", id), None);
    }
}
