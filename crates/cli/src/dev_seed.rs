//! What `slipway dev` sets up on a fresh data folder, so a newcomer can
//! deploy at once: the simulator's environments registered (the first as
//! the development environment, the others as targets), a pipeline through
//! them in order, shared with the demo maker, and two API tokens (admin and
//! maker). Tokens are stored hashed like any other; their plaintext is kept
//! in `DATA_DIR/tokens.json` (owner-only) so a restart can print them again.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use slipway_gateway::admin::{TokenRequest, issue_token};
use slipway_store::{
    AccessRole, EnvironmentKind, NewEnvironment, NewPipeline, Principal, StageSettings, StageSpec,
    Store,
};

/// Who changes things during seeding, in the audit log.
const SEEDER: &str = "slipway dev";
pub const DEMO_PIPELINE: &str = "Demo pipeline";

/// The demo tokens, as printed at start.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevTokens {
    pub admin: String,
    pub maker: String,
}

/// Registers environments and the demo pipeline when the database has no
/// environment yet; returns the demo tokens (created when missing).
pub async fn seed(
    store: &Store,
    data_dir: &Path,
    environments: &[(String, String)],
    max_stages: usize,
) -> anyhow::Result<DevTokens> {
    if store.list_environments().await?.is_empty() && !environments.is_empty() {
        seed_pipeline(store, data_dir, environments, max_stages).await?;
    }
    // The simulator may listen elsewhere than last time (`--envsim-listen`).
    for (name, url) in environments {
        if let Some(env) = store.environment_by_name(name).await?
            && env.url != *url
        {
            let patch = slipway_store::EnvironmentPatch {
                url: Some(url.clone()),
                ..Default::default()
            };
            store.update_environment(SEEDER, env.id, &patch).await?;
        }
    }
    tokens(store, data_dir).await
}

async fn seed_pipeline(
    store: &Store,
    data_dir: &Path,
    environments: &[(String, String)],
    max_stages: usize,
) -> anyhow::Result<()> {
    // The simulator's static token, referenced, never stored.
    let token_file = std::path::absolute(data_dir.join("envsim-token"))
        .context("cannot resolve the data directory")?;
    std::fs::write(&token_file, "slipway-dev\n")
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    let credentials = serde_json::json!({
        "kind": "static_token",
        "token_ref": format!("file:{}", token_file.display()),
    });
    let mut ids = Vec::new();
    for (i, (name, url)) in environments.iter().enumerate() {
        let env = store
            .create_environment(
                SEEDER,
                &NewEnvironment {
                    name: name.clone(),
                    url: url.clone(),
                    kind: if i == 0 {
                        EnvironmentKind::Development
                    } else {
                        EnvironmentKind::Target
                    },
                    credentials: credentials.clone(),
                },
            )
            .await?;
        ids.push(env.id);
    }
    let Some((source, targets)) = ids.split_first() else {
        return Ok(());
    };
    let pipeline = store
        .create_pipeline(
            SEEDER,
            &NewPipeline {
                name: DEMO_PIPELINE.into(),
                description: "dev to test to prod, set up by slipway dev".into(),
                allow_redeploy_older: false,
                source_environment_ids: vec![*source],
            },
        )
        .await?;
    let mut previous = None;
    for (target, (name, _)) in targets.iter().zip(&environments[1..]) {
        let stage = store
            .add_stage(
                SEEDER,
                pipeline.id,
                &StageSpec {
                    name: name.clone(),
                    previous_stage_id: previous,
                    target_ids: vec![*target],
                    settings: StageSettings::default(),
                },
                max_stages,
            )
            .await?;
        previous = Some(stage.id);
    }
    store
        .share_pipeline(SEEDER, pipeline.id, &Principal::user("maker"))
        .await?;
    Ok(())
}

async fn tokens(store: &Store, data_dir: &Path) -> anyhow::Result<DevTokens> {
    let path = data_dir.join("tokens.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(saved) = serde_json::from_str::<DevTokens>(&text)
    {
        let now = time::OffsetDateTime::now_utc();
        let valid = |t: &str| {
            let hash = slipway_auth::hash_api_token(t);
            async move { store.authenticate_api_token(&hash, now).await }
        };
        if valid(&saved.admin).await?.is_some() && valid(&saved.maker).await?.is_some() {
            return Ok(saved);
        }
    }
    let issue = |subject: &str, role: AccessRole| TokenRequest {
        name: format!("slipway dev {subject}"),
        subject: subject.into(),
        groups: Vec::new(),
        roles: vec![role],
        expires_in_days: Some(slipway_gateway::admin::MAX_TOKEN_DAYS),
    };
    let admin = issue_token(store, SEEDER, issue("admin", AccessRole::Admin))
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the admin token: {e}"))?;
    let maker = issue_token(store, SEEDER, issue("maker", AccessRole::Maker))
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the maker token: {e}"))?;
    let tokens = DevTokens {
        admin: admin.token,
        maker: maker.token,
    };
    crate::profile::write_private(&path, &serde_json::to_string_pretty(&tokens)?)?;
    Ok(tokens)
}
