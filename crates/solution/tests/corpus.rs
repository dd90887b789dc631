//! Checks the reader against a corpus of real solution zips and an
//! independent reading of them (`expected.json`). Needs SLIPWAY_CORPUS to
//! point at a folder with `solutions/`, `not-solutions/` and `expected.json`;
//! run with `SLIPWAY_CORPUS=/path cargo test --workspace --test corpus`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use slipway_solution::{Limits, Solution, SolutionError};

fn corpus() -> PathBuf {
    let dir = std::env::var_os("SLIPWAY_CORPUS").unwrap_or_else(|| {
        panic!("SLIPWAY_CORPUS is not set: point it at the corpus folder (solutions/, not-solutions/, expected.json), e.g. SLIPWAY_CORPUS=/work/shared/corpus")
    });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("expected.json").is_file(),
        "SLIPWAY_CORPUS={} has no expected.json; point it at the corpus folder",
        dir.display()
    );
    dir
}

fn zips(dir: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")))
        .collect();
    v.sort();
    v
}

#[test]
fn every_corpus_solution_gives_the_expected_facts() {
    let dir = corpus();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let files = zips(dir.join("solutions"));
    assert_eq!(
        files.len(),
        expected.as_object().unwrap().len(),
        "every expected entry has a zip"
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let exp = &expected[&name];
        assert!(exp.is_object(), "{name} is not in expected.json");
        let s = match Solution::open(path, &Limits::default()) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let crefs: BTreeMap<String, String> = s
            .connection_references
            .iter()
            .map(|c| (c.logical_name.clone(), c.connector_id.clone()))
            .collect();
        let evars: BTreeMap<String, String> = s
            .environment_variables
            .iter()
            .map(|e| (e.schema_name.clone(), e.kind.as_str().to_owned()))
            .collect();
        let got = serde_json::json!({
            "unique_name": s.unique_name,
            "version": s.version.as_written(),
            "managed": s.managed,
            "publisher_prefix": s.publisher.customization_prefix,
            "root_components": s.root_components.len(),
            "missing_dependencies": s.missing_dependencies.len(),
            "connection_references": crefs,
            "environment_variables": evars,
        });
        if &got != exp {
            failures.push(format!("{name}:\n  expected {exp}\n  got      {got}"));
        }
        let facts = Solution::open_facts(path, &Limits::default()).unwrap();
        assert_eq!(
            (
                &facts.connection_references,
                &facts.environment_variables,
                facts.components.len()
            ),
            (
                &s.connection_references,
                &s.environment_variables,
                s.components.len()
            ),
            "{name}: facts mode agrees with a full read"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus solutions differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!(
        "{}/{} corpus solutions match expected.json",
        files.len(),
        files.len()
    );
}

#[test]
fn every_corpus_non_solution_is_refused() {
    let files = zips(corpus().join("not-solutions"));
    assert!(!files.is_empty(), "not-solutions/ is empty");
    for path in files {
        let err = Solution::open(&path, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, SolutionError::NotASolution { .. }),
            "{}: {err}",
            path.display()
        );
        assert!(err.to_string().contains("not a solution package"), "{err}");
    }
}

#[test]
fn reversioning_every_corpus_solution_changes_only_its_version() {
    use std::io::{Cursor, Read};
    let raw = |zip: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut a = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..a.len())
            .map(|i| {
                let mut f = a.by_index_raw(i).unwrap();
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                (f.name().unwrap().into_owned(), b)
            })
            .collect()
    };
    for path in zips(corpus().join("solutions")) {
        let bytes = std::fs::read(&path).unwrap();
        let old = Solution::from_bytes(&bytes, &Limits::default()).unwrap();
        let bumped = old.version.bump(slipway_solution::VersionPart::Revision);
        let new_bytes = slipway_solution::reversion(&bytes, &bumped, &Limits::default()).unwrap();
        let new = Solution::from_bytes(&new_bytes, &Limits::default()).unwrap();
        assert_eq!(new.version, bumped, "{}", path.display());
        assert_eq!(
            Solution {
                version: old.version.clone(),
                ..new
            },
            old,
            "{}: only the version differs",
            path.display()
        );
        let (a, b) = (raw(&bytes), raw(&new_bytes));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0, y.0, "{}: same order", path.display());
            if !x.0.eq_ignore_ascii_case("solution.xml") {
                assert!(x.1 == y.1, "{}: {} copied raw", path.display(), x.0);
            }
        }
    }
}
