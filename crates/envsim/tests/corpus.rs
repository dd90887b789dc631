//! Imports every real solution of the reference corpus into its own empty
//! simulated environment: those with missing dependencies must fail listing
//! them in Dataverse's wording, the others must install and export back
//! byte for byte. Run with
//! `SLIPWAY_CORPUS=/work/shared/corpus cargo test -p slipway-envsim --features corpus --test corpus`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;
use slipway_envsim::EnvSim;

fn corpus() -> PathBuf {
    let dir = std::env::var_os("SLIPWAY_CORPUS").unwrap_or_else(|| {
        panic!(
            "SLIPWAY_CORPUS is not set: point it at the corpus folder (solutions/, expected.json), \
             e.g. SLIPWAY_CORPUS=/work/shared/corpus"
        )
    });
    PathBuf::from(dir)
}

#[tokio::test]
async fn corpus_solutions_import_or_fail_on_their_missing_dependencies() {
    let dir = corpus();
    let expected: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    assert!(
        expected.len() >= 60,
        "the corpus looks incomplete: {}",
        expected.len()
    );

    let mut config = config();
    config.environments = (0..expected.len())
        .map(|i| environment(&format!("c{i}")))
        .collect();
    let sim = EnvSim::start(config).await.unwrap();

    let (mut refused, mut installed) = (0, 0);
    for (i, (file, facts)) in expected.iter().enumerate() {
        let zip = std::fs::read(dir.join("solutions").join(file)).unwrap();
        let c = client(&sim, &format!("c{i}"));
        let name = facts["unique_name"].as_str().unwrap();
        let missing = facts["missing_dependencies"].as_u64().unwrap();
        if missing > 0 {
            let message = import_error(&c, zip).await;
            assert!(
                message.starts_with(&format!(
                    "The following solution cannot be imported: {name}. Some dependencies are missing."
                )),
                "{file}: {message}"
            );
            let listed = message.matches("<MissingDependency>").count() as u64;
            assert!(
                (1..=missing).contains(&listed),
                "{file}: {listed} of {missing} listed"
            );
            assert!(c.solution(name).await.unwrap().is_none(), "{file}");
            refused += 1;
        } else {
            import(&c, zip.clone())
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let row = c.solution(name).await.unwrap().unwrap();
            assert_eq!(row.version, facts["version"].as_str().unwrap(), "{file}");
            assert_eq!(
                row.is_managed,
                facts["managed"].as_bool().unwrap(),
                "{file}"
            );
            if !row.is_managed {
                assert_eq!(c.export_solution(name, false).await.unwrap(), zip, "{file}");
            }
            let refs = facts["connection_references"].as_object().unwrap();
            assert_eq!(
                c.connection_references().await.unwrap().len(),
                refs.len(),
                "{file}"
            );
            let vars = facts["environment_variables"].as_object().unwrap();
            assert_eq!(
                c.environment_variable_definitions().await.unwrap().len(),
                vars.len(),
                "{file}"
            );
            installed += 1;
        }
    }
    println!("corpus: {installed} installed, {refused} refused for missing dependencies");
    assert!(refused > 0 && installed > 0);
}
