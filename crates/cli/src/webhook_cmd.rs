//! `slipway admin webhook ...`: the outgoing webhooks that tell external
//! systems what runs do (OnDeploymentRequested ... OnDeploymentCompleted),
//! and their deliveries. The signing secret is never sent nor stored: a
//! webhook names where the gateway reads it (`env:NAME` or `file:/path`).

use serde_json::{Value, json};

use crate::client::{Client, find_one, hint_not_found, id_of, looks_like_id, table, text};
use crate::pipeline_cmd::LIST_HINT;

const WEBHOOK_HINT: &str = "`slipway admin webhook list` shows them";

/// The events a webhook may receive, in the order a run raises them.
const EVENTS: [&str; 6] = [
    "OnDeploymentRequested",
    "OnPreExportStarted",
    "OnApprovalStarted",
    "OnPreDeploymentStarted",
    "OnDeploymentStarted",
    "OnDeploymentCompleted",
];

/// An event name, any case, as the gateway spells it.
fn event(value: &str) -> Result<String, String> {
    EVENTS
        .iter()
        .find(|e| e.eq_ignore_ascii_case(value.trim()))
        .map(|e| (*e).to_owned())
        .ok_or_else(|| format!("`{value}` is not an event; one of: {}", EVENTS.join(", ")))
}

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Every webhook: where it posts, which events, which pipeline.
    #[command(
        after_help = "Examples:\n  slipway admin webhook list\n  slipway admin webhook list -o json"
    )]
    List,
    /// Register a webhook; it receives the events of runs that move from now on.
    #[command(after_help = "Examples:\n  \
slipway admin webhook create --url https://hooks.contoso.com/slipway --secret-ref env:SLIPWAY_HOOK_SECRET\n  \
slipway admin webhook create --url https://hooks.contoso.com/prod --pipeline Contoso \\\n    \
--event OnApprovalStarted --event OnDeploymentCompleted --secret-ref file:/run/secrets/hook -o json\n\
Each delivery is signed: X-Slipway-Signature: sha256=HMAC-SHA256(secret, \"<X-Slipway-Timestamp>.<body>\"). \
The gateway reads the secret where --secret-ref says, at each attempt; give the receiver the same secret.")]
    Create {
        /// Where to post: https, or http to this machine (127.0.0.1, localhost).
        #[arg(long)]
        url: String,
        /// An event to receive (repeatable) [default: every event].
        #[arg(long = "event", value_name = "EVENT", value_parser = event)]
        events: Vec<String>,
        /// Only runs of this pipeline (name or id) [default: every run].
        #[arg(long)]
        pipeline: Option<String>,
        /// Where the gateway reads the signing secret: `env:NAME` or `file:/path` (never the secret itself).
        #[arg(long, value_name = "REF")]
        secret_ref: String,
    },
    /// Remove a webhook; its pending deliveries are never sent.
    #[command(
        after_help = "Examples:\n  slipway admin webhook delete 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  slipway admin webhook delete https://hooks.contoso.com/slipway"
    )]
    Delete {
        /// The webhook's id, or its URL when only one posts there.
        webhook: String,
    },
    /// A webhook's deliveries, newest first: delivered, pending, or failed with the last error.
    #[command(after_help = "Examples:\n  \
slipway admin webhook deliveries 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  \
slipway admin webhook deliveries https://hooks.contoso.com/slipway --limit 20 -o json")]
    Deliveries {
        /// The webhook's id, or its URL when only one posts there.
        webhook: String,
        /// At most this many (1 to 1000) [default: 100].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
}

pub async fn run(client: &Client, cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::List => {
            let hooks = webhooks(client).await?;
            client.print(&Value::Array(hooks.clone()), || {
                if hooks.is_empty() {
                    return "no webhooks yet; register one with `slipway admin webhook create`"
                        .into();
                }
                let rows: Vec<Vec<String>> = hooks
                    .iter()
                    .map(|h| {
                        vec![
                            text(h, "id").into(),
                            text(h, "url").into(),
                            events_of(h),
                            h["pipeline_id"].as_str().unwrap_or("all").into(),
                            text(h, "secret_ref").into(),
                        ]
                    })
                    .collect();
                table(&["ID", "URL", "EVENTS", "PIPELINE", "SECRET REF"], &rows)
            });
        }
        WebhookCommand::Create {
            url,
            events,
            pipeline,
            secret_ref,
        } => {
            let mut body = json!({"url": url, "secret_ref": secret_ref});
            if !events.is_empty() {
                body["events"] = json!(events);
            }
            if let Some(p) = pipeline {
                let id = if looks_like_id(&p) {
                    p
                } else {
                    let pipelines = client.pipelines().await?;
                    id_of(find_one(&pipelines, "pipeline", &p, LIST_HINT)?)?.to_owned()
                };
                body["pipeline_id"] = json!(id);
            }
            let hook = client.post(&["api", "v1", "webhooks"], &body).await?;
            client.print(&hook, || {
                let mut out = format!(
                    "registered webhook {} to {} for {} ({}); it signs with the secret at {}",
                    text(&hook, "id"),
                    text(&hook, "url"),
                    events_of(&hook),
                    hook["pipeline_id"]
                        .as_str()
                        .map_or_else(|| "every pipeline".to_owned(), |p| format!("pipeline {p}")),
                    text(&hook, "secret_ref"),
                );
                // A gateway that makes the secret itself shows it this once.
                if let Some(secret) = hook["secret"].as_str() {
                    out.push_str(&format!(
                        "\nsecret: {secret}\nStore it now: it is shown only this once."
                    ));
                }
                out
            });
        }
        WebhookCommand::Delete { webhook } => {
            let hook = find_webhook(client, &webhook).await?;
            let id = id_of(&hook)?;
            client
                .delete(&["api", "v1", "webhooks", id])
                .await
                .map_err(|e| hint_not_found(e, WEBHOOK_HINT))?;
            client.print(&hook, || {
                format!("deleted webhook {id} to {}", text(&hook, "url"))
            });
        }
        WebhookCommand::Deliveries { webhook, limit } => {
            let id = if looks_like_id(&webhook) {
                webhook
            } else {
                id_of(&find_webhook(client, &webhook).await?)?.to_owned()
            };
            let query: Vec<(&str, String)> = limit
                .map(|l| ("limit", l.to_string()))
                .into_iter()
                .collect();
            let deliveries = client
                .get_query(&["api", "v1", "webhooks", &id, "deliveries"], &query)
                .await
                .map_err(|e| hint_not_found(e, WEBHOOK_HINT))?;
            client.print(&deliveries, || {
                let rows: Vec<Vec<String>> = deliveries
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let when = d["delivered_at"]
                            .as_str()
                            .or(d["next_attempt_at"].as_str())
                            .unwrap_or("-");
                        vec![
                            d["id"].to_string(),
                            text(d, "event").into(),
                            text(d, "run_id").into(),
                            text(d, "status").into(),
                            d["attempts"].to_string(),
                            when.into(),
                            text(d, "last_error").into(),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    return format!("webhook {id} has no deliveries yet");
                }
                table(
                    &[
                        "ID",
                        "EVENT",
                        "RUN",
                        "STATUS",
                        "ATTEMPTS",
                        "DELIVERED / NEXT",
                        "LAST ERROR",
                    ],
                    &rows,
                )
            });
        }
    }
    Ok(())
}

async fn webhooks(client: &Client) -> anyhow::Result<Vec<Value>> {
    match client.get(&["api", "v1", "webhooks"]).await? {
        Value::Array(items) => Ok(items),
        other => anyhow::bail!("the gateway answered {other} where a list was expected"),
    }
}

/// The webhook whose id is `key`, or the only one posting to the URL `key`.
async fn find_webhook(client: &Client, key: &str) -> anyhow::Result<Value> {
    let hooks = webhooks(client).await?;
    // `find_one` matches ids, then names: the URL stands in for a name.
    let named: Vec<Value> = hooks
        .into_iter()
        .map(|mut h| {
            h["name"] = h["url"].clone();
            h
        })
        .collect();
    let mut found = find_one(&named, "webhook", key, WEBHOOK_HINT)?.clone();
    if let Some(obj) = found.as_object_mut() {
        obj.remove("name");
    }
    Ok(found)
}

/// The webhook's events, `all` when it receives every one.
fn events_of(hook: &Value) -> String {
    let events: Vec<&str> = hook["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if events.is_empty() || events.len() == EVENTS.len() {
        "all events".into()
    } else {
        events.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_as_the_gateway_spells_them() {
        assert_eq!(
            event("ondeploymentcompleted").unwrap(),
            "OnDeploymentCompleted"
        );
        let err = event("OnDeployed").unwrap_err();
        assert!(err.contains("OnDeploymentRequested"), "{err}");
    }
}
