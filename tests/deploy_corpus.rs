//! The real solutions of the reference corpus, end to end. The corpus is
//! kept outside the project; `.ci/run` passes its folder as
//! `SLIPWAY_CORPUS`. Every unmanaged solution in it that installs into an
//! empty environment is installed in dev, then deployed through Test and
//! Prod by the four services, with its connection references bound to
//! connections of the right connector and its environment variables given
//! values of their type.
//!
//! Not part of `cargo test --workspace` (`test = false`: a fresh clone has
//! no corpus); run it with
//! `SLIPWAY_CORPUS=/path/to/corpus cargo test --workspace --test deploy_corpus`.
#![allow(clippy::unwrap_used)]

mod e2e;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use e2e::id_of;
use serde_json::{Value, json};
use world::*;

/// What the corpus's independent reading says of one zip.
struct Real {
    file: String,
    unique_name: String,
    version: String,
    /// Connection reference logical name -> connector id.
    references: BTreeMap<String, String>,
    /// Environment variable schema name -> type.
    variables: BTreeMap<String, String>,
}

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("SLIPWAY_CORPUS").unwrap_or_else(|| {
        panic!(
            "SLIPWAY_CORPUS is not set: point it at the corpus folder (solutions/, expected.json), \
             e.g. SLIPWAY_CORPUS=/work/shared/corpus"
        )
    });
    PathBuf::from(dir)
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The unmanaged corpus solutions without missing dependencies.
fn installable() -> Vec<Real> {
    let path = corpus_dir().join("expected.json");
    let facts: serde_json::Map<String, Value> = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
    )
    .unwrap();
    let reals: Vec<Real> = facts
        .iter()
        .filter(|(_, f)| f["missing_dependencies"] == 0 && f["managed"] == false)
        .map(|(file, f)| Real {
            file: file.clone(),
            unique_name: f["unique_name"].as_str().unwrap().to_owned(),
            version: f["version"].as_str().unwrap().to_owned(),
            references: strings(&f["connection_references"]),
            variables: strings(&f["environment_variables"]),
        })
        .collect();
    // Two corpus zips can be the same solution (same unique name and
    // version, other content): deploying the second is a redeploy of
    // the same version, which the version rule refuses. Keep the first.
    let mut seen = BTreeSet::new();
    let reals: Vec<Real> = reals
        .into_iter()
        .filter(|r| seen.insert(r.unique_name.to_lowercase()))
        .collect();
    assert!(
        reals.len() >= 40,
        "the corpus looks incomplete: {}",
        reals.len()
    );
    reals
}

/// A value the validator accepts for a variable of `kind`.
fn value_of(kind: &str) -> &'static str {
    match kind {
        "number" | "decimal" => "42",
        "boolean" => "yes",
        "json" => r#"{"source": "corpus"}"#,
        "secret" => {
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/corpus/secrets/value"
        }
        _ => "https://contoso.sharepoint.com/sites/corpus",
    }
}

/// The deployment settings of `real` for target `env`: each reference
/// bound to that environment's connection of its connector.
fn settings(real: &Real, env: &str, connectors: &[String]) -> Value {
    let references: Vec<Value> = real
        .references
        .iter()
        .map(|(name, connector)| {
            let n = connectors.iter().position(|c| c == connector).unwrap();
            json!({"LogicalName": name, "ConnectionId": format!("{env}-{n}"), "ConnectorId": connector})
        })
        .collect();
    let variables: Vec<Value> = real
        .variables
        .iter()
        .map(|(name, kind)| json!({"SchemaName": name, "Value": value_of(kind)}))
        .collect();
    json!({"ConnectionReferences": references, "EnvironmentVariables": variables})
}

/// Deploys one solution through both stages; the problem, if any.
async fn through_test_and_prod(
    w: &World,
    pipe: &Pipe,
    real: &Real,
    connectors: &[String],
) -> Result<String, String> {
    let zip = std::fs::read(corpus_dir().join("solutions").join(&real.file))
        .map_err(|e| format!("{}: {e}", real.file))?;
    w.dataverse("dev")
        .import_solution(&slipway_dataverse::ImportRequest::new(zip.into()))
        .await
        .map_err(|e| format!("{}: installing in dev failed: {e}", real.file))?;
    let mut version = None;
    for (stage, env) in [(0, "test"), (1, "prod")] {
        let body = json!({"settings": settings(real, env, connectors), "notes": "corpus"});
        let (status, run) = w
            .deploy(&w.maker, request(pipe, stage, &real.unique_name, body))
            .await;
        if status != 202 {
            return Err(format!("{} to {env}: {status} {run}", real.file));
        }
        let id = id_of(&run);
        let run = w
            .cluster
            .wait_terminal(id, RUN_DEADLINE * 2)
            .await
            .map_err(|e| format!("{} to {env}: {e:#}", real.file))?;
        if run["state"] != "succeeded" {
            return Err(format!(
                "{} to {env} ended {}: {} (validation: {})",
                real.file, run["state"], run["reason"], run["validation"]
            ));
        }
        let installed = w
            .installed(env, &real.unique_name)
            .await
            .ok_or_else(|| format!("{} is not installed in {env}", real.file))?;
        if !installed.is_managed {
            return Err(format!("{} is unmanaged in {env}", real.file));
        }
        let expected = version.get_or_insert_with(|| installed.version.clone());
        if installed.version != *expected || installed.version == real.version {
            return Err(format!(
                "{} in {env} has version {}; dev had {}, test got {expected}",
                real.file, installed.version, real.version
            ));
        }
    }
    Ok(format!(
        "{} {} -> {}",
        real.unique_name,
        real.version,
        version.unwrap_or_default()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn real_solutions_deploy_through_test_and_prod() {
    let started = Instant::now();
    let reals = installable();
    let connectors: Vec<String> = reals
        .iter()
        .flat_map(|r| r.references.values().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let w = World::start_with(&[], &connectors).await;
    let pipe = w
        .pipeline("Corpus", &[("Test", "test"), ("Prod", "prod")], false)
        .await;
    // A few at a time: two cores run the four services and the simulator.
    let slots = tokio::sync::Semaphore::new(4);
    let results = futures::future::join_all(reals.iter().map(|real| async {
        let _slot = slots.acquire().await.unwrap();
        through_test_and_prod(&w, &pipe, real, &connectors).await
    }))
    .await;
    let (done, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    for line in done.iter().flatten() {
        eprintln!("deployed {line}");
    }
    let failed: Vec<String> = failed.into_iter().filter_map(Result::err).collect();
    assert!(
        failed.is_empty(),
        "{} of {} real solutions did not deploy:\n{}\n{}",
        failed.len(),
        reals.len(),
        failed.join("\n"),
        w.cluster.log_hint()
    );
    eprintln!(
        "{} real solutions through test and prod in {:?}",
        reals.len(),
        started.elapsed()
    );
    w.stop().await;
}
