//! The simulator's import semantics with the real solution zips of the
//! reference corpus (re-versioned with `slipway_solution::reversion`, turned
//! managed by the simulator's own `ExportSolution`, or with one root
//! component dropped where a rule needs another version). Run with
//! `SLIPWAY_CORPUS=/work/shared/corpus cargo test --workspace --test corpus`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use slipway_dataverse::{Client, ComponentParameter, ImportRequest};
use slipway_envsim::config::EnvironmentConfig;
use slipway_envsim::{EnvSim, Running};
use slipway_solution::{ComponentType, Limits, Solution, Version, VersionPart};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};

fn corpus() -> PathBuf {
    let dir = std::env::var_os("SLIPWAY_CORPUS").unwrap_or_else(|| {
        panic!(
            "SLIPWAY_CORPUS is not set: point it at the corpus folder (solutions/, expected.json), \
             e.g. SLIPWAY_CORPUS=/work/shared/corpus"
        )
    });
    PathBuf::from(dir)
}

/// `expected.json`: file name -> facts (unique_name, version, managed,
/// missing_dependencies, connection_references, environment_variables).
fn expected() -> serde_json::Map<String, Value> {
    let facts: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(corpus().join("expected.json")).unwrap()).unwrap();
    assert!(
        facts.len() >= 60,
        "the corpus looks incomplete: {}",
        facts.len()
    );
    facts
}

fn read_zip(file: &str) -> Vec<u8> {
    std::fs::read(corpus().join("solutions").join(file)).unwrap()
}

fn parse(zip: &[u8]) -> Solution {
    Solution::from_bytes(zip, &Limits::default()).unwrap()
}

fn reversioned(zip: &[u8], version: &Version) -> Vec<u8> {
    slipway_solution::reversion(zip, version, &Limits::default()).unwrap()
}

/// The corpus zips that install into an empty environment.
fn installable(facts: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    facts
        .iter()
        .filter(|(_, f)| f["missing_dependencies"].as_u64() == Some(0))
        .map(|(file, f)| (file.clone(), f["unique_name"].as_str().unwrap().to_string()))
        .collect()
}

/// One simulator with an environment per name (each with the common connections).
async fn simulator(envs: impl IntoIterator<Item = EnvironmentConfig>) -> Running {
    let mut config = config();
    config.environments = envs.into_iter().collect();
    EnvSim::start(config).await.unwrap()
}

/// Rewrites solution.xml of a zip (other entries copied raw).
fn edit_manifest(zip: &[u8], edit: impl Fn(String) -> String) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let name = archive.name_for_index(i).unwrap().unwrap().to_string();
        if !name.eq_ignore_ascii_case("solution.xml") {
            out.raw_copy_file(archive.by_index_raw(i).unwrap()).unwrap();
            continue;
        }
        let mut bytes = Vec::new();
        archive
            .by_index(i)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(edit(text).as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// The package without the `<RootComponent>` whose schemaName (or id) is `name`.
fn drop_root_component(zip: &[u8], name: &str) -> Vec<u8> {
    edit_manifest(zip, |text| {
        let lower = text.to_ascii_lowercase();
        let needle = name.to_ascii_lowercase();
        let at = lower
            .match_indices("<rootcomponent ")
            .map(|(i, _)| i)
            .find(|&i| {
                let end = i + lower[i..].find("/>").unwrap();
                lower[i..end].contains(&format!("\"{needle}\""))
                    || lower[i..end].contains(&format!("\"{{{needle}}}\""))
            })
            .unwrap_or_else(|| panic!("no root component {name}"));
        let end = at + lower[at..].find("/>").unwrap() + 2;
        format!("{}{}", &text[..at], &text[end..])
    })
}

/// The package under another unique name.
fn renamed(zip: &[u8], from: &str, to: &str) -> Vec<u8> {
    edit_manifest(zip, |text| {
        text.replacen(
            &format!("<UniqueName>{from}</UniqueName>"),
            &format!("<UniqueName>{to}</UniqueName>"),
            1,
        )
    })
}

/// A managed solution that needs `required` (type code, schema name).
fn consumer(name: &str, required: (u32, &str), provider: &str) -> Vec<u8> {
    SolutionZip::new(name, "1.0.0.0")
        .publisher("contoso", "cts")
        .managed(true)
        .root_component(1, &format!("cts_{}", name.to_ascii_lowercase()))
        .missing_dependency(
            DepEnd::new(&required.0.to_string(), required.1).solution(&format!("{provider} (1.0)")),
            DepEnd::new("1", &format!("cts_{}", name.to_ascii_lowercase())),
        )
        .build()
}

fn code(t: &ComponentType) -> Option<u32> {
    match t {
        ComponentType::Code(c) => Some(*c),
        ComponentType::Name(_) => None,
    }
}

#[tokio::test]
async fn corpus_solutions_import_or_fail_on_their_missing_dependencies() {
    let expected = expected();
    let sim = simulator((0..expected.len()).map(|i| environment(&format!("c{i}")))).await;

    let (mut refused, mut installed) = (0, 0);
    for (i, (file, facts)) in expected.iter().enumerate() {
        let zip = read_zip(file);
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

/// Every corpus solution whose missing dependencies name their components
/// by type code fails, then installs once solutions providing those
/// components (one per `solution="Name (..)"`) are installed.
#[tokio::test]
async fn real_solutions_with_missing_dependencies_install_once_their_providers_are() {
    let expected = expected();
    let candidates: Vec<(String, Vec<u8>, Solution)> = expected
        .iter()
        .filter(|(_, f)| f["missing_dependencies"].as_u64().unwrap() > 0)
        .map(|(file, _)| {
            let zip = read_zip(file);
            let s = parse(&zip);
            (file.clone(), zip, s)
        })
        .filter(|(_, _, s)| {
            s.missing_dependencies
                .iter()
                .all(|m| code(&m.required.component_type).is_some() && m.required.key().is_some())
        })
        .collect();
    assert!(
        candidates.len() >= 5,
        "only {} candidates",
        candidates.len()
    );
    let sim = simulator((0..candidates.len()).map(|i| environment(&format!("d{i}")))).await;

    for (i, (file, zip, solution)) in candidates.iter().enumerate() {
        let c = client(&sim, &format!("d{i}"));
        let staged = c.stage_solution(&Bytes::from(zip.clone())).await.unwrap();
        assert_eq!(
            staged.stage_solution_status.as_deref(),
            Some("Failed"),
            "{file}"
        );
        assert!(!staged.missing_dependencies.is_empty(), "{file}");
        let message = import_error(&c, zip.clone()).await;
        assert!(
            message.contains("Some dependencies are missing"),
            "{file}: {message}"
        );

        // One provider per solution the dependencies name.
        let mut providers: BTreeMap<String, SolutionZip> = BTreeMap::new();
        for m in &solution.missing_dependencies {
            let provider = m
                .required
                .solution
                .as_deref()
                .and_then(|s| s.split(" (").next())
                .unwrap_or("MissingProvider")
                .to_string();
            let z = providers
                .remove(&provider)
                .unwrap_or_else(|| SolutionZip::new(&provider, "1.0.0.0").managed(true));
            let t = code(&m.required.component_type).unwrap();
            let z = match (&m.required.schema_name, &m.required.id) {
                (Some(schema), _) => z.root_component(t, schema),
                (None, Some(id)) => z.root_component_id(t, id),
                (None, None) => unreachable!("filtered above"),
            };
            providers.insert(provider, z);
        }
        for (name, provider) in &providers {
            import(&c, provider.build())
                .await
                .unwrap_or_else(|e| panic!("{file}: provider {name}: {e}"));
        }
        let staged = c.stage_solution(&Bytes::from(zip.clone())).await.unwrap();
        assert_eq!(
            staged.stage_solution_status.as_deref(),
            Some("Passed"),
            "{file}: {staged:?}"
        );
        import(&c, zip.clone())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            c.solution(&solution.unique_name).await.unwrap().is_some(),
            "{file}"
        );
    }
}

/// Every installable corpus solution: a lower version is refused, the same
/// version and a higher one are accepted.
#[tokio::test]
async fn real_solutions_refuse_downgrades_and_take_upgrades() {
    let facts = expected();
    let files = installable(&facts);
    let sim = simulator((0..files.len()).map(|i| environment(&format!("v{i}")))).await;
    for (i, (file, name)) in files.iter().enumerate() {
        let c = client(&sim, &format!("v{i}"));
        let zip = read_zip(file);
        let version = parse(&zip).version;
        import(&c, zip.clone())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));

        let lower = Version::parse("0.9.0.0").unwrap();
        assert!(lower < version, "{file}: {version}");
        let message = import_error(&c, reversioned(&zip, &lower)).await;
        assert!(
            message.contains("(0.9.0.0) is lower than the installed version"),
            "{file}: {message}"
        );
        import(&c, zip.clone())
            .await
            .unwrap_or_else(|e| panic!("{file}: same version: {e}"));
        let higher = version.bump(VersionPart::Minor);
        import(&c, reversioned(&zip, &higher))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            c.solution(name).await.unwrap().unwrap().version,
            higher.to_string(),
            "{file}"
        );
    }
}

/// Every installable unmanaged corpus solution: its managed build (the
/// simulator's managed export) cannot update the unmanaged install, nor
/// install its components under another name; it installs where nothing
/// unmanaged is in the way.
#[tokio::test]
async fn real_managed_packages_cannot_overwrite_unmanaged_ones() {
    let facts = expected();
    let files: Vec<_> = installable(&facts)
        .into_iter()
        .filter(|(file, _)| facts[file]["managed"] == false)
        .collect();
    assert!(files.len() >= 30);
    let sim = simulator(
        (0..files.len())
            .flat_map(|i| [environment(&format!("u{i}")), environment(&format!("m{i}"))]),
    )
    .await;
    for (i, (file, name)) in files.iter().enumerate() {
        let dev = client(&sim, &format!("u{i}"));
        let zip = read_zip(file);
        import(&dev, zip.clone())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let managed = dev.export_solution(name, true).await.unwrap();
        let managed = reversioned(&managed, &parse(&zip).version.bump(VersionPart::Build));
        assert!(parse(&managed).managed, "{file}");

        let message = import_error(&dev, managed.clone()).await;
        assert!(
            message.contains("already installed on this system as an unmanaged solution")
                && message.contains("Import can only update solutions when the modes match"),
            "{file}: {message}"
        );
        let message = import_error(&dev, renamed(&managed, name, "SlipwayCopy")).await;
        assert!(
            message.starts_with("A managed solution cannot overwrite the")
                && message.contains("unmanaged base instance")
                && message.contains(&format!("installed by unmanaged solution {name}")),
            "{file}: {message}"
        );
        let installed = dev.solution(name).await.unwrap().unwrap();
        assert!(!installed.is_managed, "{file}");

        let prod = client(&sim, &format!("m{i}"));
        import(&prod, managed)
            .await
            .unwrap_or_else(|e| panic!("{file}: managed into an empty environment: {e}"));
        assert!(
            prod.solution(name).await.unwrap().unwrap().is_managed,
            "{file}"
        );
    }
}

/// The corpus' managed solution (PromptManager) upgraded to a version that
/// drops a table: refused while another solution needs the table, accepted
/// otherwise, after which the table is gone.
#[tokio::test]
async fn a_real_managed_upgrade_removes_the_components_it_dropped() {
    let zip = read_zip("prompt-library--PromptManager_1_0_0_6_managed.zip");
    let v1 = parse(&zip);
    assert!(v1.managed);
    let dropped = "cr84c_newtable3";
    let v2 = reversioned(
        &drop_root_component(&zip, dropped),
        &v1.version.bump(VersionPart::Revision),
    );
    let keys = slipway_envsim::engine::registered_keys(&parse(&v2));
    assert!(!keys.contains(&("1".to_string(), dropped.to_string())));
    let env = |name: &str| EnvironmentConfig {
        platform_solutions: vec!["AppModuleWebResources".into()],
        ..environment(name)
    };
    let sim = simulator([env("blocked"), env("free"), env("held"), env("free2")]).await;

    let c = client(&sim, "blocked");
    import(&c, zip.clone()).await.unwrap();
    import(&c, consumer("TableUser", (1, dropped), "PromptManager"))
        .await
        .unwrap();
    let message = import_error(&c, v2.clone()).await;
    assert!(
        message.contains(dropped) && message.contains("TableUser"),
        "{message}"
    );
    assert_eq!(
        c.solution("PromptManager").await.unwrap().unwrap().version,
        "1.0.0.6"
    );

    let c = client(&sim, "free");
    import(&c, zip.clone()).await.unwrap();
    import(&c, v2.clone()).await.unwrap();
    assert_eq!(
        c.solution("PromptManager").await.unwrap().unwrap().version,
        "1.0.0.7"
    );
    let message = import_error(&c, consumer("TableUser", (1, dropped), "PromptManager")).await;
    assert!(
        message.contains(&format!("schemaName=\"{dropped}\"")),
        "{message}"
    );
    import(
        &c,
        consumer("KeptUser", (1, "cr84c_newtable2"), "PromptManager"),
    )
    .await
    .unwrap();

    // The same upgrade staged as a holding solution: both versions are
    // installed until DeleteAndPromote, which is refused while the dropped
    // table is needed and drops it once it is not.
    let c = client(&sim, "held");
    import(&c, zip.clone()).await.unwrap();
    let mut staged = ImportRequest::new(Bytes::from(v2));
    staged.holding_solution = true;
    c.import_solution(&staged).await.unwrap();
    let held = c.solution("PromptManager_Upgrade").await.unwrap().unwrap();
    assert_eq!(held.version, "1.0.0.7");
    import(&c, consumer("TableUser", (1, dropped), "PromptManager"))
        .await
        .unwrap();
    let err = c.delete_and_promote("PromptManager").await.unwrap_err();
    assert!(err.to_string().contains("TableUser"), "{err}");

    let c = client(&sim, "free2");
    import(&c, zip.clone()).await.unwrap();
    c.import_solution(&staged).await.unwrap();
    c.delete_and_promote("PromptManager").await.unwrap();
    assert_eq!(
        c.solution("PromptManager").await.unwrap().unwrap().version,
        "1.0.0.7"
    );
    let message = import_error(&c, consumer("TableUser", (1, dropped), "PromptManager")).await;
    assert!(
        message.contains(&format!("schemaName=\"{dropped}\"")),
        "{message}"
    );
}

/// Every installable corpus solution with multiple root components, as a
/// managed package: an upgrade that drops one root component unregisters it.
#[tokio::test]
async fn real_managed_upgrades_drop_what_the_new_version_no_longer_has() {
    let facts = expected();
    let files: Vec<(String, String, Vec<u8>)> = installable(&facts)
        .into_iter()
        .filter(|(file, _)| facts[file]["root_components"].as_u64().unwrap_or(0) >= 2)
        .map(|(file, name)| {
            let zip = read_zip(&file);
            (file, name, zip)
        })
        .collect();
    assert!(files.len() >= 5, "only {}", files.len());
    let sim = simulator(
        (0..files.len())
            .flat_map(|i| [environment(&format!("s{i}")), environment(&format!("g{i}"))]),
    )
    .await;
    let mut upgraded = 0;
    for (i, (file, name, zip)) in files.iter().enumerate() {
        // Managed build of the real package, from an unmanaged install.
        let dev = client(&sim, &format!("s{i}"));
        import(&dev, zip.clone())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let managed = dev.export_solution(name, true).await.unwrap().to_vec();
        let c = client(&sim, &format!("g{i}"));
        let v1 = parse(&managed);
        let keys = slipway_envsim::engine::registered_keys(&v1);
        // A root component that only the manifest registers (no package file).
        let Some((t, n, written)) = v1.root_components.iter().find_map(|r| {
            let t = code(&r.component_type)?;
            let written = r.schema_name.clone().or_else(|| r.id.clone())?;
            let key = r.key()?;
            let v2 = parse(&drop_root_component(&managed, &written));
            let gone = !slipway_envsim::engine::registered_keys(&v2)
                .contains(&(key.component_type.to_string(), key.name.clone()));
            gone.then_some((t, key.name, written))
        }) else {
            continue;
        };
        assert!(keys.contains(&(t.to_string(), n.clone())), "{file}");
        import(&c, managed.clone())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let v2 = reversioned(
            &drop_root_component(&managed, &written),
            &v1.version.bump(VersionPart::Revision),
        );
        import(&c, v2)
            .await
            .unwrap_or_else(|e| panic!("{file}: upgrade: {e}"));
        let message = import_error(&c, consumer("Needs", (t, &n), name)).await;
        assert!(
            message.contains("Some dependencies are missing"),
            "{file}: {message}"
        );
        upgraded += 1;
    }
    assert!(upgraded >= 5, "only {upgraded} upgrades exercised");
}

/// Every installable corpus solution with environment variables or
/// connection references: `ComponentParameters` set every variable and bind
/// every reference to a connection of its connector.
#[tokio::test]
async fn component_parameters_set_real_variables_and_bind_real_references() {
    let facts = expected();
    let mut cases = Vec::new();
    for (file, _) in installable(&facts) {
        let zip = read_zip(&file);
        let s = parse(&zip);
        if !s.environment_variables.is_empty() || !s.connection_references.is_empty() {
            cases.push((file, zip, s));
        }
    }
    assert!(cases.len() >= 10, "only {}", cases.len());
    // One connection per connector the corpus uses, in every environment.
    let connection_of = |connector: &str| {
        format!(
            "conn-{}",
            connector.rsplit('/').next().unwrap().to_ascii_lowercase()
        )
    };
    let connectors: BTreeMap<String, String> = cases
        .iter()
        .flat_map(|(_, _, s)| s.connection_references.iter())
        .map(|r| (connection_of(&r.connector_id), r.connector_id.clone()))
        .collect();
    let sim = simulator((0..cases.len()).map(|i| {
        let mut e = environment(&format!("p{i}"));
        e.connections = connectors
            .iter()
            .map(|(id, connector)| connection(id, connector, "Connected"))
            .collect();
        e
    }))
    .await;

    for (i, (file, zip, s)) in cases.iter().enumerate() {
        let c: Client = client(&sim, &format!("p{i}"));
        let mut request = ImportRequest::new(Bytes::from(zip.clone()));
        let mut wanted = BTreeMap::new();
        for v in &s.environment_variables {
            let value = match v.kind.code() {
                100000001 => "42".to_string(),
                100000002 => "yes".to_string(),
                100000003 => "{\"slipway\":true}".to_string(),
                _ => format!("https://example.test/{}", v.schema_name),
            };
            wanted.insert(v.schema_name.to_ascii_lowercase(), value.clone());
            request
                .component_parameters
                .push(ComponentParameter::EnvironmentVariableValue {
                    schema_name: v.schema_name.clone(),
                    value,
                });
        }
        for r in &s.connection_references {
            request
                .component_parameters
                .push(ComponentParameter::ConnectionReference {
                    logical_name: r.logical_name.clone(),
                    connection_id: connection_of(&r.connector_id),
                });
        }
        c.import_solution(&request)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));

        let values: BTreeMap<String, String> = c
            .environment_variable_values()
            .await
            .unwrap()
            .into_iter()
            .map(|v| {
                (
                    v.schema_name.to_ascii_lowercase(),
                    v.value.unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(values, wanted, "{file}");
        let refs = c.connection_references().await.unwrap();
        assert_eq!(refs.len(), s.connection_references.len(), "{file}");
        for r in refs {
            let connector = r.connector_id.clone().unwrap_or_default();
            assert_eq!(
                r.connection_id.as_deref(),
                Some(connection_of(&connector).as_str()),
                "{file}: {}",
                r.logical_name
            );
        }
    }
}
