//! `slipway pipeline list`: the pipelines shared with the caller, their
//! stages in order and what can be deployed where, like
//! `pac pipeline list`. Also the stage lookup `slipway deploy --stage` and
//! `slipway admin stage` share.

use anyhow::bail;
use serde_json::Value;

use crate::client::{Client, GatewayArg, find_one, runtime, text};

/// `slipway pipeline ...`
#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    command: PipelineCommand,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

#[derive(Debug, clap::Subcommand)]
enum PipelineCommand {
    /// The pipelines shared with you: their source environments, stages in
    /// order (targets, previous stage, approval) and what can be deployed where.
    #[command(
        after_help = "Examples:\n  slipway pipeline list\n  slipway pipeline list --pipeline \"Demo pipeline\"\n  slipway pipeline list -o json    (the API's pipeline objects)"
    )]
    List {
        /// Only this pipeline (name or id).
        #[arg(long)]
        pipeline: Option<String>,
    },
}

pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    runtime()?.block_on(async {
        match args.command {
            PipelineCommand::List { pipeline } => list(&client, pipeline.as_deref()).await,
        }
    })
}

async fn list(client: &Client, only: Option<&str>) -> anyhow::Result<()> {
    let mut pipelines = client.pipelines().await?;
    if let Some(key) = only {
        let found = find_one(&pipelines, "pipeline", key, LIST_HINT)?.clone();
        pipelines = vec![found];
    }
    client.print(&Value::Array(pipelines.clone()), || {
        if pipelines.is_empty() {
            return "no pipeline is shared with you; an admin shares one with `slipway admin share add`".into();
        }
        pipelines
            .iter()
            .map(describe_pipeline)
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// The hint of errors about pipelines and stages the caller cannot find.
pub const LIST_HINT: &str = "`slipway pipeline list` shows them";

fn names(envs: &Value) -> String {
    let names: Vec<&str> = envs
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| text(e, "name"))
        .collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// The name of the stage with id `id` in `pipeline`.
fn stage_name<'a>(pipeline: &'a Value, id: &'a str) -> &'a str {
    pipeline["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == id)
        .map_or(id, |s| text(s, "name"))
}

/// A pipeline as a small tree:
///
/// ```text
/// Demo pipeline  (id ...)
///   dev to test to prod
///   sources: dev
///   stages:
///     test  -> test    (id ...)
///     prod  -> prod    after test, approval required  (id ...)
///   deploys: from dev: stage test -> test; stage prod (after test) -> prod
/// ```
pub fn describe_pipeline(p: &Value) -> String {
    let mut out = format!("{}  (id {})\n", text(p, "name"), text(p, "id"));
    if let Some(d) = p["description"].as_str().filter(|d| !d.is_empty()) {
        out.push_str(&format!("  {d}\n"));
    }
    out.push_str(&format!(
        "  sources: {}\n",
        names(&p["source_environments"])
    ));
    if p["allow_redeploy_older"] == true {
        out.push_str("  older versions may be redeployed\n");
    }
    let stages = p["stages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if stages.is_empty() {
        out.push_str("  stages: none yet (an admin adds one with `slipway admin stage add`)\n");
    } else {
        out.push_str("  stages:\n");
        let rows: Vec<Vec<String>> = stages
            .iter()
            .map(|s| {
                vec![
                    format!("    {}", text(s, "name")),
                    format!("-> {}", names(&s["targets"])),
                    stage_notes(p, s).join(", "),
                    format!("(id {})", text(s, "id")),
                ]
            })
            .collect();
        for line in crate::client::table(&["", "", "", ""], &rows)
            .lines()
            .skip(1)
        {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("  deploys: {}\n", deploys(p)));
    }
    if let Some(shares) = p["shares"].as_array().filter(|s| !s.is_empty()) {
        let shares: Vec<String> = shares
            .iter()
            .map(|s| format!("{} {}", text(s, "kind"), text(s, "name")))
            .collect();
        out.push_str(&format!("  shared with: {}\n", shares.join(", ")));
    }
    out
}

/// What sets a stage apart: its previous stage, approval, gates, who deploys.
fn stage_notes(p: &Value, s: &Value) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(prev) = s["previous_stage_id"].as_str() {
        notes.push(format!("after {}", stage_name(p, prev)));
    }
    if s["approval_required"] == true {
        notes.push("approval required".into());
    }
    if s["pre_export_gate"] == true {
        notes.push("pre-export gate".into());
    }
    if s["pre_deployment_gate"] == true {
        notes.push("pre-deployment gate".into());
    }
    match s["deploy_as"]["mode"].as_str() {
        Some("service_principal") => notes.push(format!(
            "deploys as app {}",
            text(&s["deploy_as"], "application_id")
        )),
        Some("user") => notes.push(format!("deploys as {}", text(&s["deploy_as"], "user"))),
        _ => {}
    }
    notes
}

/// "from dev: stage test -> test; stage prod (after test) -> prod"
pub fn deploys(p: &Value) -> String {
    let stages: Vec<String> = p["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut notes = Vec::new();
            if let Some(prev) = s["previous_stage_id"].as_str() {
                notes.push(format!("after {}", stage_name(p, prev)));
            }
            if s["approval_required"] == true {
                notes.push("approval required".into());
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            format!(
                "stage {}{notes} -> {}",
                text(s, "name"),
                names(&s["targets"])
            )
        })
        .collect();
    format!(
        "from {}: {}",
        names(&p["source_environments"]),
        stages.join("; ")
    )
}

/// The one stage `stage` (name or id) names among `pipelines`, within the
/// pipeline `pipeline` (name or id) when given.
pub fn find_stage<'a>(
    pipelines: &'a [Value],
    pipeline: Option<&str>,
    stage: &str,
) -> anyhow::Result<(&'a Value, &'a Value)> {
    let within: Vec<&Value> = match pipeline {
        Some(key) => vec![find_one(pipelines, "pipeline", key, LIST_HINT)?],
        None => pipelines.iter().collect(),
    };
    let mut found = Vec::new();
    for p in &within {
        let stages = p["stages"].as_array().into_iter().flatten();
        let by_id: Vec<&Value> = stages
            .clone()
            .filter(|s| {
                s["id"]
                    .as_str()
                    .is_some_and(|id| id.eq_ignore_ascii_case(stage))
            })
            .collect();
        let matching = if by_id.is_empty() {
            stages.filter(|s| s["name"] == stage).collect()
        } else {
            by_id
        };
        found.extend(matching.into_iter().map(|s| (*p, s)));
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => match pipeline {
            Some(_) => {
                let p = within.first().copied().unwrap_or(&Value::Null);
                let stages: Vec<&str> = p["stages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| text(s, "name"))
                    .collect();
                bail!(
                    "pipeline {} has no stage {stage}; its stages: {}",
                    text(p, "name"),
                    if stages.is_empty() {
                        "none".into()
                    } else {
                        stages.join(", ")
                    }
                )
            }
            None => bail!("no stage {stage} in the pipelines shared with you; {LIST_HINT}"),
        },
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|(p, _)| format!("{} ({})", text(p, "name"), text(p, "id")))
                .collect();
            bail!(
                "stage {stage} is in several pipelines: {}; choose one with --pipeline NAME|ID",
                names.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn demo() -> Value {
        json!({
            "id": "p1", "name": "Demo", "description": "", "allow_redeploy_older": false,
            "source_environments": [{"id": "e1", "name": "dev"}],
            "stages": [
                {"id": "s1", "name": "test", "previous_stage_id": null, "targets": [{"id": "e2", "name": "test"}],
                 "approval_required": false, "deploy_as": {"mode": "environment"}},
                {"id": "s2", "name": "prod", "previous_stage_id": "s1", "targets": [{"id": "e3", "name": "prod"}],
                 "approval_required": true, "deploy_as": {"mode": "environment"}}
            ],
            "shares": []
        })
    }

    #[test]
    fn deploys_says_what_goes_where() {
        assert_eq!(
            deploys(&demo()),
            "from dev: stage test -> test; stage prod (after test, approval required) -> prod"
        );
        let text = describe_pipeline(&demo());
        assert!(text.contains("sources: dev"), "{text}");
        assert!(text.contains("after test, approval required"), "{text}");
    }

    #[test]
    fn stages_resolve_by_name_or_id_and_ambiguity_asks_for_the_pipeline() {
        let mut other = demo();
        other["id"] = json!("p2");
        other["name"] = json!("Other");
        other["stages"][0]["id"] = json!("s3");
        other["stages"][1]["id"] = json!("s4");
        let pipelines = vec![demo(), other];
        let (p, s) = find_stage(&pipelines, None, "s4").unwrap();
        assert_eq!(
            (p["name"].as_str(), s["name"].as_str()),
            (Some("Other"), Some("prod"))
        );
        let err = find_stage(&pipelines, None, "prod")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Demo (p1), Other (p2)") && err.contains("--pipeline"),
            "{err}"
        );
        let (p, _) = find_stage(&pipelines, Some("Other"), "prod").unwrap();
        assert_eq!(p["id"], "p2");
        let err = find_stage(&pipelines, None, "uat").unwrap_err().to_string();
        assert_eq!(
            err,
            "no stage uat in the pipelines shared with you; `slipway pipeline list` shows them"
        );
        let err = find_stage(&pipelines, Some("Demo"), "uat")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "pipeline Demo has no stage uat; its stages: test, prod"
        );
    }
}
