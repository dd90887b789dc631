//! `slipway admin ...`: environments, pipelines, stages, sharing, roles,
//! API tokens, the audit log and webhooks (`crate::webhook_cmd`), each a
//! thin layer over the gateway's admin routes. Environments, pipelines,
//! stages and tokens are named by name or id; names are resolved to ids
//! through the list endpoints. With
//! `-o json` each command prints the API's object (for deletions: the
//! object as it was before).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::client::{Client, GatewayArg, find_one, id_of, looks_like_id, runtime, table, text};
use crate::pipeline_cmd::{LIST_HINT, describe_pipeline, find_stage};

const ENV_HINT: &str = "`slipway admin env list` shows them";
const TOKEN_HINT: &str = "`slipway admin token list` shows them";

/// `slipway admin ...`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
slipway admin env add --name dev --url https://contoso-dev.crm4.dynamics.com --kind development --token-ref env:DEV_TOKEN\n  \
slipway admin pipeline create --name Contoso --source dev\n  \
slipway admin stage add --pipeline Contoso --name test --target test\n  \
slipway admin share add --pipeline Contoso --group makers\n  \
slipway admin token create --subject ci --role maker\n  \
slipway admin audit verify\n  \
slipway admin webhook create --url https://hooks.contoso.com/slipway --secret-ref env:HOOK_SECRET\n\
All but `pipeline show` need the admin role.")]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Dataverse environments: register, change, check (WhoAmI), remove.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Pipelines: create, change, show, delete.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// A pipeline's stages: add, change, delete.
    #[command(subcommand)]
    Stage(StageCommand),
    /// Who a pipeline is shared with (who may deploy through it).
    #[command(subcommand)]
    Share(ShareCommand),
    /// Role grants: admin, maker, approver, to users or groups.
    #[command(subcommand)]
    Role(RoleCommand),
    /// API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The hash-chained audit log: read it, verify it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Outgoing webhooks (run events to external systems): create, list, delete, deliveries.
    #[command(subcommand)]
    Webhook(crate::webhook_cmd::WebhookCommand),
}

// ---------------------------------------------------------------- arguments

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EnvKind {
    /// Makers build here; pipelines deploy from it.
    Development,
    /// Pipelines deploy to it.
    Target,
}

impl EnvKind {
    fn as_str(self) -> &'static str {
        match self {
            EnvKind::Development => "development",
            EnvKind::Target => "target",
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Role {
    Admin,
    Maker,
    Approver,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Maker => "maker",
            Role::Approver => "approver",
        }
    }
}

/// An environment's credentials, by reference: a static token, or an app
/// registration's client secret.
#[derive(Debug, clap::Args)]
struct CredentialArgs {
    /// A bearer token used as is (development only): `env:NAME` or `file:/path`.
    #[arg(long, value_name = "REF", conflicts_with_all = ["token_url", "client_id", "client_secret_ref", "scope"])]
    token_ref: Option<String>,
    /// OAuth token endpoint, e.g. https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token.
    #[arg(long, value_name = "URL", requires_all = ["client_id", "client_secret_ref"])]
    token_url: Option<String>,
    /// The app registration's application (client) id.
    #[arg(long, value_name = "ID", requires_all = ["token_url", "client_secret_ref"])]
    client_id: Option<String>,
    /// Where the client secret is: `env:NAME` or `file:/path` (never the secret itself).
    #[arg(long, value_name = "REF", requires_all = ["token_url", "client_id"])]
    client_secret_ref: Option<String>,
    /// The scope [default: <environment url>/.default].
    #[arg(long, requires = "token_url")]
    scope: Option<String>,
}

impl CredentialArgs {
    /// The `credentials` JSON, when any was given.
    fn to_json(&self) -> Option<Value> {
        if let Some(token_ref) = &self.token_ref {
            return Some(json!({"kind": "static_token", "token_ref": token_ref}));
        }
        let (Some(token_url), Some(client_id), Some(secret)) =
            (&self.token_url, &self.client_id, &self.client_secret_ref)
        else {
            return None;
        };
        let mut c = json!({
            "kind": "client_secret",
            "token_url": token_url,
            "client_id": client_id,
            "client_secret_ref": secret,
        });
        if let Some(scope) = &self.scope {
            c["scope"] = json!(scope);
        }
        Some(c)
    }
}

#[derive(Debug, clap::Subcommand)]
enum EnvCommand {
    /// Every registered environment with its check status.
    #[command(after_help = "Examples:\n  slipway admin env list\n  slipway admin env list -o json")]
    List,
    /// One environment: URL, kind, credentials (references only), last check.
    #[command(
        after_help = "Examples:\n  slipway admin env show dev\n  slipway admin env show 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 -o json"
    )]
    Show {
        /// The environment's name or id.
        env: String,
    },
    /// Register an environment; the gateway checks it (WhoAmI) in the background.
    #[command(
        group(clap::ArgGroup::new("credentials").required(true).args(["token_ref", "token_url"])),
        after_help = "Examples:\n  \
slipway admin env add --name dev --url https://contoso-dev.crm4.dynamics.com --kind development --token-ref env:DEV_TOKEN\n  \
slipway admin env add --name prod --url https://contoso.crm4.dynamics.com --kind target \\\n    \
--token-url https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token --client-id <app id> --client-secret-ref file:/run/secrets/prod\n\
Secrets are never stored: give where they are (env:NAME or file:/path on the gateway and worker hosts)."
    )]
    Add {
        /// A unique name, e.g. dev, test, prod.
        #[arg(long)]
        name: String,
        /// The environment URL, e.g. https://contoso.crm4.dynamics.com.
        #[arg(long)]
        url: String,
        /// development (deployed from) or target (deployed to).
        #[arg(long, value_enum)]
        kind: EnvKind,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Change an environment; a new URL or new credentials are checked again.
    #[command(after_help = "Examples:\n  \
slipway admin env update dev --url https://contoso-dev2.crm4.dynamics.com\n  \
slipway admin env update prod --token-ref env:PROD_TOKEN\n  \
slipway admin env update test --name uat")]
    Update {
        /// The environment's name or id.
        env: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// A new kind.
        #[arg(long, value_enum)]
        kind: Option<EnvKind>,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Remove an environment no pipeline uses.
    #[command(after_help = "Examples:\n  slipway admin env delete old-test")]
    Delete {
        /// The environment's name or id.
        env: String,
    },
    /// Check an environment now (WhoAmI with its credentials); exit 1 when the check fails.
    #[command(
        after_help = "Examples:\n  slipway admin env validate prod\n  slipway admin env validate prod -o json"
    )]
    Validate {
        /// The environment's name or id.
        env: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum PipelineCommand {
    /// Create a pipeline; add its stages with `slipway admin stage add`.
    #[command(after_help = "Examples:\n  \
slipway admin pipeline create --name Contoso --source dev\n  \
slipway admin pipeline create --name Contoso --description \"Contoso apps\" --source dev --source dev-emea --allow-redeploy-older")]
    Create {
        /// A unique name.
        #[arg(long)]
        name: String,
        /// What the pipeline is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Allow deploying a version older than the one installed.
        #[arg(long)]
        allow_redeploy_older: bool,
        /// A development environment makers deploy from (name or id; repeatable; at least one).
        #[arg(long = "source", value_name = "ENV", required = true)]
        sources: Vec<String>,
    },
    /// Change a pipeline's name, description, redeploy rule or sources.
    #[command(after_help = "Examples:\n  \
slipway admin pipeline update Contoso --description \"Contoso apps, EMEA\"\n  \
slipway admin pipeline update Contoso --source dev --source dev-emea    (replaces the sources)\n  \
slipway admin pipeline update Contoso --allow-redeploy-older=false")]
    Update {
        /// The pipeline's name or id.
        pipeline: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// Allow (or, with =false, refuse) deploying older versions.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
        allow_redeploy_older: Option<bool>,
        /// The development environments to deploy from, replacing the current ones (repeatable).
        #[arg(long = "source", value_name = "ENV")]
        sources: Vec<String>,
    },
    /// A pipeline with its stages and shares.
    #[command(
        after_help = "Examples:\n  slipway admin pipeline show Contoso\n  slipway admin pipeline show Contoso -o json"
    )]
    Show {
        /// The pipeline's name or id.
        pipeline: String,
    },
    /// Delete a pipeline with its stages and shares (its runs are kept).
    #[command(after_help = "Examples:\n  slipway admin pipeline delete Contoso")]
    Delete {
        /// The pipeline's name or id.
        pipeline: String,
    },
}

/// Stage settings common to `stage add` and `stage update`.
#[derive(Debug, clap::Args)]
struct StageOptions {
    /// An approver must approve each deployment first (=false to turn off).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    approval_required: Option<bool>,
    /// An external gate must pass before the export (=false to turn off).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pre_export_gate: Option<bool>,
    /// An external gate must pass before the import (=false to turn off).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pre_deployment_gate: Option<bool>,
    /// Import as this service principal (application id).
    #[arg(long, value_name = "APP_ID", conflicts_with_all = ["deploy_as_user", "deploy_as_environment"])]
    deploy_as_app: Option<String>,
    /// Import as this user.
    #[arg(long, value_name = "USER", conflicts_with = "deploy_as_environment")]
    deploy_as_user: Option<String>,
    /// Import with the target environment's own credentials (the default).
    #[arg(long)]
    deploy_as_environment: bool,
    /// The stage's policies: a JSON file (allowed_connectors, blocked_connectors,
    /// managed_only, max_artifact_bytes, deployment_windows, require_notes).
    #[arg(long, value_name = "FILE")]
    policies: Option<PathBuf>,
}

impl StageOptions {
    /// Writes the given options over `req` (a stage request).
    fn apply(&self, req: &mut Value) -> anyhow::Result<()> {
        for (field, value) in [
            ("approval_required", self.approval_required),
            ("pre_export_gate", self.pre_export_gate),
            ("pre_deployment_gate", self.pre_deployment_gate),
        ] {
            if let Some(v) = value {
                req[field] = json!(v);
            }
        }
        if let Some(app) = &self.deploy_as_app {
            req["deploy_as"] = json!({"mode": "service_principal", "application_id": app});
        } else if let Some(user) = &self.deploy_as_user {
            req["deploy_as"] = json!({"mode": "user", "user": user});
        } else if self.deploy_as_environment {
            req["deploy_as"] = json!({"mode": "environment"});
        }
        if let Some(path) = &self.policies {
            req["policies"] = read_policies(path)?;
        }
        Ok(())
    }
}

fn read_policies(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policies file {}", path.display()))?;
    let value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{} is not JSON", path.display()))?;
    if !value.is_object() {
        bail!(
            "{} must hold a JSON object, e.g. {{\"managed_only\": true, \"blocked_connectors\": [\"shared_twitter\"]}}",
            path.display()
        );
    }
    Ok(value)
}

#[derive(Debug, clap::Subcommand)]
enum StageCommand {
    /// Add a stage to a pipeline.
    #[command(after_help = "Examples:\n  \
slipway admin stage add --pipeline Contoso --name test --target test\n  \
slipway admin stage add --pipeline Contoso --name prod --after test --target prod --approval-required --policies prod-policies.json\n  \
slipway admin stage add --pipeline Contoso --name regions --after test --target prod-emea --target prod-us --deploy-as-app 7f3c...")]
    Add {
        /// The pipeline's name or id.
        #[arg(long)]
        pipeline: String,
        /// The stage's name, unique in the pipeline.
        #[arg(long)]
        name: String,
        /// The stage a deployment must have gone through first (name or id); none for a first stage.
        #[arg(long, value_name = "STAGE")]
        after: Option<String>,
        /// A target environment (name or id; repeatable).
        #[arg(long = "target", value_name = "ENV", required = true)]
        targets: Vec<String>,
        #[command(flatten)]
        options: StageOptions,
    },
    /// Change a stage; what is not given is kept.
    #[command(after_help = "Examples:\n  \
slipway admin stage update prod --pipeline Contoso --approval-required=false\n  \
slipway admin stage update prod --pipeline Contoso --target prod --target prod-us    (replaces the targets)\n  \
slipway admin stage update hotfix --pipeline Contoso --first")]
    Update {
        /// The stage's name or id.
        stage: String,
        /// The pipeline's name or id [needed when several pipelines have such a stage].
        #[arg(long)]
        pipeline: Option<String>,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new previous stage (name or id).
        #[arg(long, value_name = "STAGE")]
        after: Option<String>,
        /// Make it a first stage (no previous stage).
        #[arg(long, conflicts_with = "after")]
        first: bool,
        /// The target environments, replacing the current ones (repeatable).
        #[arg(long = "target", value_name = "ENV")]
        targets: Vec<String>,
        #[command(flatten)]
        options: StageOptions,
    },
    /// Delete a stage no other stage follows.
    #[command(after_help = "Examples:\n  slipway admin stage delete prod --pipeline Contoso")]
    Delete {
        /// The stage's name or id.
        stage: String,
        /// The pipeline's name or id [needed when several pipelines have such a stage].
        #[arg(long)]
        pipeline: Option<String>,
    },
}

/// A user or a group.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct PrincipalArg {
    /// A user name (a token's subject or the identity provider's user claim).
    #[arg(long)]
    user: Option<String>,
    /// A group name (a token's group or the identity provider's groups claim).
    #[arg(long)]
    group: Option<String>,
}

impl PrincipalArg {
    fn kind_and_name(&self) -> (&'static str, &str) {
        match (&self.user, &self.group) {
            (Some(user), _) => ("user", user),
            (None, Some(group)) => ("group", group),
            // clap requires one of the two.
            (None, None) => ("user", ""),
        }
    }

    fn to_json(&self) -> Value {
        let (kind, name) = self.kind_and_name();
        json!({"kind": kind, "name": name})
    }
}

#[derive(Debug, clap::Subcommand)]
enum ShareCommand {
    /// Share a pipeline with a user or group: they may deploy through it.
    #[command(
        after_help = "Examples:\n  slipway admin share add --pipeline Contoso --user alice\n  slipway admin share add --pipeline Contoso --group makers"
    )]
    Add {
        /// The pipeline's name or id.
        #[arg(long)]
        pipeline: String,
        #[command(flatten)]
        principal: PrincipalArg,
    },
    /// Stop sharing a pipeline with a user or group.
    #[command(
        after_help = "Examples:\n  slipway admin share remove --pipeline Contoso --user alice"
    )]
    Remove {
        /// The pipeline's name or id.
        #[arg(long)]
        pipeline: String,
        #[command(flatten)]
        principal: PrincipalArg,
    },
}

#[derive(Debug, clap::Subcommand)]
enum RoleCommand {
    /// Give a user or group a role.
    #[command(
        after_help = "Examples:\n  slipway admin role grant --user alice --role maker\n  slipway admin role grant --group release-managers --role approver"
    )]
    Grant {
        #[command(flatten)]
        principal: PrincipalArg,
        /// admin, maker or approver.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Take a role back (the last admin grant cannot be revoked).
    #[command(after_help = "Examples:\n  slipway admin role revoke --user alice --role maker")]
    Revoke {
        #[command(flatten)]
        principal: PrincipalArg,
        /// admin, maker or approver.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Every role grant.
    #[command(
        after_help = "Examples:\n  slipway admin role list\n  slipway admin role list -o json"
    )]
    List,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create an API token for a user (and grant them the roles); it is shown only once.
    #[command(after_help = "Examples:\n  \
slipway admin token create --subject maker --role maker\n  \
slipway admin token create --name ci-prod --subject ci --group release --role maker --expires-in-days 30 -o json\n\
The token is printed once; only its hash is kept.")]
    Create {
        /// What the token is for [default: "<subject> token"].
        #[arg(long)]
        name: Option<String>,
        /// The user the token authenticates as.
        #[arg(long)]
        subject: String,
        /// A group the user is taken to belong to (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// A role to grant the user (repeatable; kept when the token is revoked).
        #[arg(long = "role", value_enum, value_name = "ROLE")]
        roles: Vec<Role>,
        /// Days until it expires: 1 to 3650 [default: 90].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// Every token, active or not (never the tokens themselves).
    #[command(
        after_help = "Examples:\n  slipway admin token list\n  slipway admin token list -o json"
    )]
    List,
    /// Revoke a token at once.
    #[command(
        after_help = "Examples:\n  slipway admin token revoke 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  slipway admin token revoke ci-prod"
    )]
    Revoke {
        /// The token's id or name.
        #[arg(value_name = "TOKEN")]
        which: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Audit records, oldest first, filtered.
    #[command(after_help = "Examples:\n  \
slipway admin audit list --pipeline Contoso --since 7d\n  \
slipway admin audit list --actor alice --entity-kind api_token --limit 20 -o json\n  \
slipway admin audit list --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z\n\
--since and --until take an RFC 3339 time or an age like 90m, 24h, 7d.")]
    List {
        /// Only records of this pipeline (name or id).
        #[arg(long)]
        pipeline: Option<String>,
        /// Only changes by this user.
        #[arg(long)]
        actor: Option<String>,
        /// Only records about this kind of thing.
        #[arg(long, value_parser = ["environment", "pipeline", "stage", "share", "role_grant", "api_token", "run"])]
        entity_kind: Option<String>,
        /// Only records about this id.
        #[arg(long)]
        entity_id: Option<String>,
        /// From this time (inclusive): RFC 3339, or an age like 24h.
        #[arg(long, value_parser = parse_time)]
        since: Option<String>,
        /// Until this time (exclusive): RFC 3339, or an age like 1h.
        #[arg(long, value_parser = parse_time)]
        until: Option<String>,
        /// Only records after this sequence number (paging).
        #[arg(long)]
        after_seq: Option<i64>,
        /// At most this many records (1 to 1000) [default: 100].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Check the whole hash chain; exit 1 when a record was altered, removed or reordered.
    #[command(
        after_help = "Examples:\n  slipway admin audit verify\n  slipway admin audit verify -o json"
    )]
    Verify,
}

/// An RFC 3339 time as is, or an age (`90m`, `24h`, `7d`) as the time that long ago.
fn parse_time(value: &str) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(value, &Rfc3339).is_ok() {
        return Ok(value.to_owned());
    }
    let bad = || {
        format!(
            "`{value}` is neither an RFC 3339 time (2026-11-27T12:00:00Z) nor an age (90m, 24h, 7d)"
        )
    };
    let split = value.len().saturating_sub(1);
    let (number, unit) = (value.get(..split).ok_or_else(bad)?, value.get(split..));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        Some("s") => time::Duration::seconds(n),
        Some("m") => time::Duration::minutes(n),
        Some("h") => time::Duration::hours(n),
        Some("d") => time::Duration::days(n),
        _ => return Err(bad()),
    };
    (time::OffsetDateTime::now_utc() - age)
        .format(&Rfc3339)
        .map_err(|e| format!("cannot write the time {value} ago: {e}"))
}

// ---------------------------------------------------------------- running

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    runtime()?.block_on(async {
        match args.command {
            AdminCommand::Env(cmd) => env(&client, cmd).await,
            AdminCommand::Pipeline(cmd) => pipeline(&client, cmd).await,
            AdminCommand::Stage(cmd) => stage(&client, cmd).await,
            AdminCommand::Share(cmd) => share(&client, cmd).await,
            AdminCommand::Role(cmd) => role(&client, cmd).await,
            AdminCommand::Token(cmd) => token(&client, cmd).await,
            AdminCommand::Audit(cmd) => audit(&client, cmd).await,
            AdminCommand::Webhook(cmd) => crate::webhook_cmd::run(&client, cmd).await,
        }
    })
}

/// `slipway whoami`: who the gateway takes the token for, and their roles.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  slipway whoami\n  slipway whoami -o json")]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub gateway: GatewayArg,
}

pub fn run_whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    runtime()?.block_on(async {
        let me = client.get(&["api", "v1", "me"]).await?;
        client.print(&me, || {
            format!(
                "{} (roles: {}; groups: {}; by {}) on {}",
                text(&me, "subject"),
                joined(&me["roles"]),
                joined(&me["groups"]),
                text(&me, "authenticated_by"),
                client.base
            )
        });
        Ok(())
    })
}

/// A JSON array of strings as `a, b`, or `none`.
fn joined(values: &Value) -> String {
    let items: Vec<&str> = values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

async fn find_env(client: &Client, key: &str) -> anyhow::Result<Value> {
    let envs = client.environments().await?;
    Ok(find_one(&envs, "environment", key, ENV_HINT)?.clone())
}

/// Environment names or ids as ids; ids are taken as they are, names looked up.
async fn env_ids(client: &Client, keys: &[String]) -> anyhow::Result<Vec<String>> {
    if keys.iter().all(|k| looks_like_id(k)) {
        return Ok(keys.to_vec());
    }
    let envs = client.environments().await?;
    keys.iter()
        .map(|k| {
            let env = find_one(&envs, "environment", k, ENV_HINT)?;
            Ok(id_of(env)?.to_owned())
        })
        .collect()
}

async fn find_pipeline(client: &Client, key: &str) -> anyhow::Result<Value> {
    let pipelines = client.pipelines().await?;
    Ok(find_one(&pipelines, "pipeline", key, LIST_HINT)?.clone())
}

fn env_rows(envs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|e| {
            vec![
                text(e, "name").into(),
                text(e, "kind").into(),
                text(e, "validation_status").into(),
                text(e, "url").into(),
                text(e, "id").into(),
            ]
        })
        .collect();
    table(&["NAME", "KIND", "CHECK", "URL", "ID"], &rows)
}

fn describe_env(e: &Value) -> String {
    let c = &e["credentials"];
    let credentials = match c["kind"].as_str() {
        Some("static_token") => format!("static token from {}", text(c, "token_ref")),
        Some("client_secret") => format!(
            "client {} at {}, secret from {}{}",
            text(c, "client_id"),
            text(c, "token_url"),
            text(c, "client_secret_ref"),
            c["scope"]
                .as_str()
                .map(|s| format!(", scope {s}"))
                .unwrap_or_default()
        ),
        _ => c.to_string(),
    };
    let mut out = format!(
        "{}  (id {})\n  url:         {}\n  kind:        {}\n  credentials: {credentials}\n  check:       {}",
        text(e, "name"),
        text(e, "id"),
        text(e, "url"),
        text(e, "kind"),
        text(e, "validation_status"),
    );
    if let Some(at) = e["validated_at"].as_str() {
        out.push_str(&format!(" at {at}"));
    }
    if let Some(err) = e["validation_error"].as_str() {
        out.push_str(&format!("\n  error:       {err}"));
    }
    out
}

async fn env(client: &Client, cmd: EnvCommand) -> anyhow::Result<()> {
    match cmd {
        EnvCommand::List => {
            let envs = client.environments().await?;
            client.print(&Value::Array(envs.clone()), || {
                if envs.is_empty() {
                    "no environments yet; register one with `slipway admin env add`".into()
                } else {
                    env_rows(&envs)
                }
            });
        }
        EnvCommand::Show { env } => {
            let env = find_env(client, &env).await?;
            client.print(&env, || describe_env(&env));
        }
        EnvCommand::Add {
            name,
            url,
            kind,
            credentials,
        } => {
            let Some(credentials) = credentials.to_json() else {
                crate::client::usage!(
                    "give credentials: --token-ref REF, or --token-url, --client-id and --client-secret-ref"
                );
            };
            let body = json!({"name": name, "url": url, "kind": kind.as_str(), "credentials": credentials});
            let env = client.post(&["api", "v1", "environments"], &body).await?;
            client.print(&env, || {
                format!(
                    "registered environment {} (id {}); the gateway is checking it: `slipway admin env show {}`",
                    text(&env, "name"),
                    text(&env, "id"),
                    text(&env, "name")
                )
            });
        }
        EnvCommand::Update {
            env,
            name,
            url,
            kind,
            credentials,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(name) = name {
                patch.insert("name".into(), json!(name));
            }
            if let Some(url) = url {
                patch.insert("url".into(), json!(url));
            }
            if let Some(kind) = kind {
                patch.insert("kind".into(), json!(kind.as_str()));
            }
            if let Some(c) = credentials.to_json() {
                patch.insert("credentials".into(), c);
            }
            if patch.is_empty() {
                crate::client::usage!(
                    "nothing to change: give --name, --url, --kind or credentials (--token-ref, or --token-url --client-id --client-secret-ref)"
                );
            }
            let id = if looks_like_id(&env) {
                env
            } else {
                id_of(&find_env(client, &env).await?)?.to_owned()
            };
            let env = client
                .patch(&["api", "v1", "environments", &id], &Value::Object(patch))
                .await?;
            client.print(&env, || format!("updated\n{}", describe_env(&env)));
        }
        EnvCommand::Delete { env } => {
            let env = find_env(client, &env).await?;
            client
                .delete(&["api", "v1", "environments", id_of(&env)?])
                .await?;
            client.print(&env, || {
                format!(
                    "deleted environment {} (id {})",
                    text(&env, "name"),
                    text(&env, "id")
                )
            });
        }
        EnvCommand::Validate { env } => {
            let env = find_env(client, &env).await?;
            let checked = client
                .post(
                    &["api", "v1", "environments", id_of(&env)?, "validate"],
                    &json!({}),
                )
                .await?;
            client.print(&checked, || describe_env(&checked));
            if checked["validation_status"] != "success" {
                bail!(
                    "environment {} failed its check: {}; fix the URL or credentials with `slipway admin env update`",
                    text(&checked, "name"),
                    checked["validation_error"]
                        .as_str()
                        .unwrap_or("no reason given")
                );
            }
        }
    }
    Ok(())
}

async fn pipeline(client: &Client, cmd: PipelineCommand) -> anyhow::Result<()> {
    match cmd {
        PipelineCommand::Create {
            name,
            description,
            allow_redeploy_older,
            sources,
        } => {
            let source_ids = env_ids(client, &sources).await?;
            let body = json!({
                "name": name,
                "description": description,
                "allow_redeploy_older": allow_redeploy_older,
                "source_environment_ids": source_ids,
            });
            let p = client.post(&["api", "v1", "pipelines"], &body).await?;
            client.print(&p, || {
                format!(
                    "created\n{}add stages with `slipway admin stage add --pipeline \"{}\" --name NAME --target ENV`",
                    describe_pipeline(&p),
                    text(&p, "name")
                )
            });
        }
        PipelineCommand::Update {
            pipeline,
            name,
            description,
            allow_redeploy_older,
            sources,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(name) = name {
                patch.insert("name".into(), json!(name));
            }
            if let Some(d) = description {
                patch.insert("description".into(), json!(d));
            }
            if let Some(a) = allow_redeploy_older {
                patch.insert("allow_redeploy_older".into(), json!(a));
            }
            if !sources.is_empty() {
                patch.insert(
                    "source_environment_ids".into(),
                    json!(env_ids(client, &sources).await?),
                );
            }
            if patch.is_empty() {
                crate::client::usage!(
                    "nothing to change: give --name, --description, --allow-redeploy-older[=false] or --source"
                );
            }
            let p = find_pipeline(client, &pipeline).await?;
            let p = client
                .patch(
                    &["api", "v1", "pipelines", id_of(&p)?],
                    &Value::Object(patch),
                )
                .await?;
            client.print(&p, || format!("updated\n{}", describe_pipeline(&p)));
        }
        PipelineCommand::Show { pipeline } => {
            let p = find_pipeline(client, &pipeline).await?;
            let p = client.get(&["api", "v1", "pipelines", id_of(&p)?]).await?;
            client.print(&p, || describe_pipeline(&p));
        }
        PipelineCommand::Delete { pipeline } => {
            let p = find_pipeline(client, &pipeline).await?;
            client
                .delete(&["api", "v1", "pipelines", id_of(&p)?])
                .await?;
            client.print(&p, || {
                format!(
                    "deleted pipeline {} (id {})",
                    text(&p, "name"),
                    text(&p, "id")
                )
            });
        }
    }
    Ok(())
}

/// The id of the stage `key` (name or id) of `pipeline`.
fn stage_id_in(pipeline: &Value, key: &str) -> anyhow::Result<String> {
    let (_, stage) = find_stage(std::slice::from_ref(pipeline), None, key).map_err(|_| {
        let names: Vec<&str> = pipeline["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| text(s, "name"))
            .collect();
        anyhow::anyhow!(
            "pipeline {} has no stage {key}; its stages: {}",
            text(pipeline, "name"),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )
    })?;
    Ok(id_of(stage)?.to_owned())
}

async fn stage(client: &Client, cmd: StageCommand) -> anyhow::Result<()> {
    match cmd {
        StageCommand::Add {
            pipeline,
            name,
            after,
            targets,
            options,
        } => {
            let p = find_pipeline(client, &pipeline).await?;
            let previous = after.map(|a| stage_id_in(&p, &a)).transpose()?;
            let mut req = json!({
                "name": name,
                "previous_stage_id": previous,
                "target_environment_ids": env_ids(client, &targets).await?,
            });
            options.apply(&mut req)?;
            let stage = client
                .post(&["api", "v1", "pipelines", id_of(&p)?, "stages"], &req)
                .await?;
            client.print(&stage, || {
                format!(
                    "added stage {} (id {}) to pipeline {}",
                    text(&stage, "name"),
                    text(&stage, "id"),
                    text(&p, "name")
                )
            });
        }
        StageCommand::Update {
            stage,
            pipeline,
            name,
            after,
            first,
            targets,
            options,
        } => {
            let pipelines = client.pipelines().await?;
            let (p, current) = find_stage(&pipelines, pipeline.as_deref(), &stage)?;
            // PUT replaces the stage: start from what it is.
            let mut req = json!({
                "name": name.as_deref().unwrap_or(text(current, "name")),
                "previous_stage_id": current["previous_stage_id"],
                "target_environment_ids": current["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| t["id"].clone())
                    .collect::<Vec<_>>(),
                "approval_required": current["approval_required"],
                "pre_export_gate": current["pre_export_gate"],
                "pre_deployment_gate": current["pre_deployment_gate"],
                "deploy_as": current["deploy_as"],
                "policies": current["policies"],
            });
            if first {
                req["previous_stage_id"] = Value::Null;
            } else if let Some(after) = &after {
                req["previous_stage_id"] = json!(stage_id_in(p, after)?);
            }
            if !targets.is_empty() {
                req["target_environment_ids"] = json!(env_ids(client, &targets).await?);
            }
            options.apply(&mut req)?;
            // Fields the stage does not have (an older gateway) are left to their defaults.
            if let Some(obj) = req.as_object_mut() {
                obj.retain(|k, v| !v.is_null() || k == "previous_stage_id");
            }
            let updated = client
                .put(
                    &[
                        "api",
                        "v1",
                        "pipelines",
                        id_of(p)?,
                        "stages",
                        id_of(current)?,
                    ],
                    &req,
                )
                .await?;
            client.print(&updated, || {
                format!(
                    "updated stage {} of pipeline {}",
                    text(&updated, "name"),
                    text(p, "name")
                )
            });
        }
        StageCommand::Delete { stage, pipeline } => {
            let pipelines = client.pipelines().await?;
            let (p, s) = find_stage(&pipelines, pipeline.as_deref(), &stage)?;
            client
                .delete(&["api", "v1", "pipelines", id_of(p)?, "stages", id_of(s)?])
                .await?;
            client.print(s, || {
                format!(
                    "deleted stage {} of pipeline {}",
                    text(s, "name"),
                    text(p, "name")
                )
            });
        }
    }
    Ok(())
}

fn shares_line(p: &Value) -> String {
    let shares: Vec<String> = p["shares"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| format!("{} {}", text(s, "kind"), text(s, "name")))
        .collect();
    format!(
        "pipeline {} is shared with: {}",
        text(p, "name"),
        if shares.is_empty() {
            "nobody".into()
        } else {
            shares.join(", ")
        }
    )
}

async fn share(client: &Client, cmd: ShareCommand) -> anyhow::Result<()> {
    match cmd {
        ShareCommand::Add {
            pipeline,
            principal,
        } => {
            let p = find_pipeline(client, &pipeline).await?;
            let p = client
                .post(
                    &["api", "v1", "pipelines", id_of(&p)?, "shares"],
                    &principal.to_json(),
                )
                .await?;
            client.print(&p, || shares_line(&p));
        }
        ShareCommand::Remove {
            pipeline,
            principal,
        } => {
            let p = find_pipeline(client, &pipeline).await?;
            let id = id_of(&p)?;
            let (kind, name) = principal.kind_and_name();
            client
                .delete(&["api", "v1", "pipelines", id, "shares", kind, name])
                .await?;
            let p = client.get(&["api", "v1", "pipelines", id]).await?;
            client.print(&p, || shares_line(&p));
        }
    }
    Ok(())
}

async fn role(client: &Client, cmd: RoleCommand) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::Grant { principal, role } => {
            let grant = json!({"principal": principal.to_json(), "role": role.as_str()});
            let grant = client.post(&["api", "v1", "role-grants"], &grant).await?;
            let (kind, name) = principal.kind_and_name();
            client.print(&grant, || {
                format!("{kind} {name} has the role {}", role.as_str())
            });
        }
        RoleCommand::Revoke { principal, role } => {
            let (kind, name) = principal.kind_and_name();
            client
                .delete(&["api", "v1", "role-grants", kind, name, role.as_str()])
                .await?;
            let grant = json!({"principal": principal.to_json(), "role": role.as_str()});
            client.print(&grant, || {
                format!("{kind} {name} no longer has the role {}", role.as_str())
            });
        }
        RoleCommand::List => {
            let grants = client.get(&["api", "v1", "role-grants"]).await?;
            client.print(&grants, || {
                let rows: Vec<Vec<String>> = grants
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| {
                        vec![
                            text(&g["principal"], "kind").into(),
                            text(&g["principal"], "name").into(),
                            text(g, "role").into(),
                        ]
                    })
                    .collect();
                table(&["KIND", "NAME", "ROLE"], &rows)
            });
        }
    }
    Ok(())
}

/// active, revoked or expired.
fn token_state(t: &Value) -> &'static str {
    use time::format_description::well_known::Rfc3339;
    if !t["revoked_at"].is_null() {
        return "revoked";
    }
    let expired = t["expires_at"]
        .as_str()
        .and_then(|at| time::OffsetDateTime::parse(at, &Rfc3339).ok())
        .is_some_and(|at| at <= time::OffsetDateTime::now_utc());
    if expired { "expired" } else { "active" }
}

async fn token(client: &Client, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            subject,
            groups,
            roles,
            expires_in_days,
        } => {
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            let body = json!({
                "name": name.unwrap_or_else(|| format!("{subject} token")),
                "subject": subject,
                "groups": groups,
                "roles": roles,
                "expires_in_days": expires_in_days,
            });
            let created = client.post(&["api", "v1", "tokens"], &body).await?;
            let t = &created["api_token"];
            client.print(&created, || {
                format!(
                    "created token \"{}\" for {} (id {}, roles: {}, expires {}):\n{}\n\
                     Store it now: it is shown only this once. Use it with `slipway profile set --token <token>` or SLIPWAY_TOKEN.",
                    text(t, "name"),
                    text(t, "subject"),
                    text(t, "id"),
                    if roles.is_empty() {
                        "none granted now".into()
                    } else {
                        roles.join(", ")
                    },
                    text(t, "expires_at"),
                    text(&created, "token"),
                )
            });
        }
        TokenCommand::List => {
            let tokens = client.get(&["api", "v1", "tokens"]).await?;
            client.print(&tokens, || {
                let rows: Vec<Vec<String>> = tokens
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            text(t, "id").into(),
                            text(t, "name").into(),
                            text(t, "subject").into(),
                            format!("{}...", text(t, "display_prefix")),
                            token_state(t).into(),
                            text(t, "expires_at").into(),
                            text(t, "last_used_at").into(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "NAME",
                        "SUBJECT",
                        "PREFIX",
                        "STATE",
                        "EXPIRES",
                        "LAST USED",
                    ],
                    &rows,
                )
            });
        }
        TokenCommand::Revoke { which } => {
            let id = if looks_like_id(&which) {
                which
            } else {
                let tokens = match client.get(&["api", "v1", "tokens"]).await? {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                };
                id_of(find_one(&tokens, "token", &which, TOKEN_HINT)?)?.to_owned()
            };
            let t = client.delete(&["api", "v1", "tokens", &id]).await?;
            client.print(&t, || {
                format!(
                    "revoked token {} of {} (id {})",
                    text(&t, "name"),
                    text(&t, "subject"),
                    text(&t, "id")
                )
            });
        }
    }
    Ok(())
}

async fn audit(client: &Client, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List {
            pipeline,
            actor,
            entity_kind,
            entity_id,
            since,
            until,
            after_seq,
            limit,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(p) = pipeline {
                let id = if looks_like_id(&p) {
                    p
                } else {
                    id_of(&find_pipeline(client, &p).await?)?.to_owned()
                };
                query.push(("pipeline_id", id));
            }
            for (key, value) in [
                ("actor", actor),
                ("entity_kind", entity_kind),
                ("entity_id", entity_id),
                ("since", since),
                ("until", until),
                ("after_seq", after_seq.map(|s| s.to_string())),
                ("limit", limit.map(|l| l.to_string())),
            ] {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let records = client.get_query(&["api", "v1", "audit"], &query).await?;
            client.print(&records, || {
                let rows: Vec<Vec<String>> = records
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            r["seq"].to_string(),
                            text(r, "at").into(),
                            text(r, "actor").into(),
                            text(r, "action").into(),
                            text(r, "entity_kind").into(),
                            text(r, "entity_id").into(),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    return "no audit records match".into();
                }
                table(&["SEQ", "AT", "ACTOR", "ACTION", "KIND", "ENTITY"], &rows)
            });
        }
        AuditCommand::Verify => {
            let v = client.get(&["api", "v1", "audit", "verify"]).await?;
            if v["intact"] == true {
                client.print(&v, || {
                    format!(
                        "the audit log is intact: {} records, head #{} {}",
                        v["records"],
                        v["head_seq"],
                        text(&v, "head_hash")
                    )
                });
            } else {
                if client.json {
                    println!("{v:#}");
                }
                bail!(
                    "the audit log's hash chain is broken at record #{}: {}; restore the database from a backup and compare",
                    v["first_broken_seq"],
                    v["problem"].as_str().unwrap_or("no detail given")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_ages() {
        assert_eq!(
            parse_time("2026-11-27T12:00:00Z").unwrap(),
            "2026-11-27T12:00:00Z"
        );
        let ago = parse_time("24h").unwrap();
        let ago = time::OffsetDateTime::parse(&ago, &time::format_description::well_known::Rfc3339)
            .unwrap();
        let age = time::OffsetDateTime::now_utc() - ago;
        assert!(age >= time::Duration::hours(24) && age < time::Duration::hours(25));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("h").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn credentials_are_references() {
        let c = CredentialArgs {
            token_ref: None,
            token_url: Some("https://login/token".into()),
            client_id: Some("app".into()),
            client_secret_ref: Some("env:SECRET".into()),
            scope: None,
        };
        assert_eq!(
            c.to_json().unwrap(),
            json!({"kind": "client_secret", "token_url": "https://login/token", "client_id": "app", "client_secret_ref": "env:SECRET"})
        );
    }
}
