//! `slipway solution inspect|diff` and `slipway settings create`: local work
//! on solution zips with `slipway-solution`; no server, no network.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use slipway_solution::diff::{SolutionDiff, diff};
use slipway_solution::{DependencyEnd, Limits, Solution, settings};

/// `slipway solution ...`
#[derive(Debug, Subcommand)]
pub enum SolutionCommand {
    /// Summarize a solution zip: name, version, publisher, components,
    /// missing dependencies, connection references, environment variables.
    Inspect {
        /// The solution zip.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what changes from OLD to NEW: components added, removed and
    /// changed, connection references and environment variables added or removed.
    Diff {
        /// The solution zip before.
        old: PathBuf,
        /// The solution zip after.
        new: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `slipway settings ...`
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Write the deployment settings file `pac solution create-settings` writes.
    Create {
        /// The solution zip to read.
        #[arg(long = "solution-zip")]
        solution_zip: PathBuf,
        /// Where to write the settings; standard output when absent.
        #[arg(long = "settings-file")]
        settings_file: Option<PathBuf>,
    },
}

/// Runs a `slipway solution` subcommand.
pub fn run_solution(cmd: SolutionCommand) -> anyhow::Result<()> {
    match cmd {
        SolutionCommand::Inspect { file, json } => run_inspect(&file, json),
        SolutionCommand::Diff { old, new, json } => run_diff(&old, &new, json),
    }
}

/// Runs a `slipway settings` subcommand.
pub fn run_settings(cmd: SettingsCommand) -> anyhow::Result<()> {
    match cmd {
        SettingsCommand::Create {
            solution_zip,
            settings_file,
        } => run_settings_create(&solution_zip, settings_file.as_deref()),
    }
}

/// Reads every entry (digests included): what diffs need.
fn open(path: &Path) -> anyhow::Result<Solution> {
    Solution::open(path, &Limits::default())
        .with_context(|| format!("cannot read solution {}", path.display()))
}

/// Reads only the entries facts come from: enough for a summary or settings.
fn open_facts(path: &Path) -> anyhow::Result<Solution> {
    Solution::open_facts(path, &Limits::default())
        .with_context(|| format!("cannot read solution {}", path.display()))
}

/// Prints the summary of one solution zip (text, or JSON with `json`).
pub fn run_inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    println!("{}", inspect_output(path, json)?);
    Ok(())
}

/// Prints what changes between two solution zips.
pub fn run_diff(old: &Path, new: &Path, json: bool) -> anyhow::Result<()> {
    println!("{}", diff_output(old, new, json)?);
    Ok(())
}

/// Writes the deployment settings of a solution zip to `out`, or stdout.
pub fn run_settings_create(zip: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let text = settings::to_json_string(&open_facts(zip)?);
    match out {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write settings file {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// The JSON object `inspect --json` prints: every field of [`Solution`] (in
/// declaration order) plus `publisher_prefix` at the top level.
#[derive(serde::Serialize)]
struct InspectJson<'a> {
    #[serde(flatten)]
    solution: &'a Solution,
    publisher_prefix: &'a str,
}

fn inspect_output(path: &Path, json: bool) -> anyhow::Result<String> {
    let s = open_facts(path)?;
    if json {
        let out = InspectJson {
            solution: &s,
            publisher_prefix: &s.publisher.customization_prefix,
        };
        return serde_json::to_string_pretty(&out).context("cannot serialize the solution");
    }
    Ok(summary(&s))
}

fn end(e: &DependencyEnd) -> String {
    let name = e.schema_name.as_deref().or(e.id.as_deref()).unwrap_or("?");
    let mut s = format!("{} {name}", e.component_type);
    if let Some(sol) = &e.solution {
        let _ = write!(s, " [{sol}]");
    }
    s
}

/// The readable summary of a solution.
fn summary(s: &Solution) -> String {
    let mut o = String::new();
    let display = s
        .localized_names
        .first()
        .map(|n| format!(" ({})", n.description))
        .unwrap_or_default();
    let _ = writeln!(o, "Solution     {}{display}", s.unique_name);
    let _ = writeln!(
        o,
        "Version      {}  {}{}",
        s.version,
        if s.managed { "managed" } else { "unmanaged" },
        s.package_version
            .as_deref()
            .map(|p| format!("  (package format {p})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "Publisher    {} (prefix {})",
        s.publisher.unique_name, s.publisher.customization_prefix
    );
    let _ = writeln!(o, "\nRoot components ({}):", s.root_components.len());
    for r in &s.root_components {
        let name = r.schema_name.as_deref().or(r.id.as_deref()).unwrap_or("?");
        let _ = writeln!(o, "  {:<8} {name}", r.component_type.to_string());
    }
    let _ = writeln!(
        o,
        "\nMissing dependencies ({}):",
        s.missing_dependencies.len()
    );
    for m in &s.missing_dependencies {
        let _ = writeln!(
            o,
            "  {}  needed by  {}",
            end(&m.required),
            end(&m.dependent)
        );
    }
    let _ = writeln!(
        o,
        "\nConnection references ({}):",
        s.connection_references.len()
    );
    for c in &s.connection_references {
        let _ = writeln!(o, "  {}  ->  {}", c.logical_name, c.connector_id);
    }
    let _ = writeln!(
        o,
        "\nEnvironment variables ({}):",
        s.environment_variables.len()
    );
    for e in &s.environment_variables {
        let mut line = format!("  {}  {}", e.schema_name, e.kind);
        if e.required {
            line.push_str("  required");
        }
        if let Some(d) = &e.default_value {
            let _ = write!(line, "  default={d:?}");
        }
        if let Some(c) = &e.current_value {
            let _ = write!(line, "  current={c:?}");
        }
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(
        o,
        "\nComponents with files ({}):",
        s.components.iter().filter(|c| !c.files.is_empty()).count()
    );
    for c in s.components.iter().filter(|c| !c.files.is_empty()) {
        let _ = writeln!(o, "  {}  ({} files)", c.key, c.files.len());
    }
    o.trim_end().to_owned()
}

fn diff_output(old: &Path, new: &Path, json: bool) -> anyhow::Result<String> {
    let d = diff(&open(old)?, &open(new)?);
    if json {
        return Ok(serde_json::to_string_pretty(&d)?);
    }
    Ok(diff_text(&d))
}

fn diff_text(d: &SolutionDiff) -> String {
    let mut o = String::new();
    if let (Some(a), Some(b)) = (&d.old_version, &d.new_version) {
        let _ = writeln!(o, "Version: {a} -> {b}");
    }
    if d.is_empty() {
        o.push_str("No component, connection reference or environment variable changes");
        return o;
    }
    let mut section = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(o, "{title} ({}):", items.len());
            for i in items {
                let _ = writeln!(o, "  {i}");
            }
        }
    };
    let keys = |v: &[slipway_solution::ComponentKey]| {
        v.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    section("Components added", keys(&d.components_added));
    section("Components removed", keys(&d.components_removed));
    section("Components changed", keys(&d.components_changed));
    section(
        "Connection references added",
        d.connection_references_added
            .iter()
            .map(|c| format!("{} -> {}", c.logical_name, c.connector_id))
            .collect(),
    );
    section(
        "Connection references removed",
        d.connection_references_removed
            .iter()
            .map(|c| c.logical_name.clone())
            .collect(),
    );
    section(
        "Environment variables added",
        d.environment_variables_added
            .iter()
            .map(|e| format!("{} ({})", e.schema_name, e.kind))
            .collect(),
    );
    section(
        "Environment variables removed",
        d.environment_variables_removed
            .iter()
            .map(|e| e.schema_name.clone())
            .collect(),
    );
    if d.customizations_changed {
        o.push_str("customizations.xml changed (tables, forms, views or other definitions)\n");
    }
    o.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use slipway_testkit::solution_zip::SolutionZip;

    fn write(dir: &Path, name: &str, zip: Vec<u8>) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, zip).unwrap();
        p
    }

    fn sample(version: &str, flow: &str) -> Vec<u8> {
        SolutionZip::new("Orders", version)
            .publisher("contoso", "cts")
            .root_component(1, "cts_order")
            .connection_reference(
                "cts_sp",
                "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
            )
            .env_var("cts_Url", 100000000, Some("https://a"), None)
            .flow("Sync", "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e", flow)
            .build()
    }

    #[test]
    fn inspect_json_has_the_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.zip", sample("1.0.0.1", "{}"));
        let v: serde_json::Value =
            serde_json::from_str(&inspect_output(&p, true).unwrap()).unwrap();
        assert_eq!(v["unique_name"], "Orders");
        assert_eq!(v["version"], "1.0.0.1");
        assert_eq!(v["managed"], false);
        assert_eq!(v["publisher_prefix"], "cts");
        assert_eq!(v["root_components"].as_array().unwrap().len(), 2);
        assert!(v["missing_dependencies"].as_array().unwrap().is_empty());
        assert_eq!(v["connection_references"][0]["logical_name"], "cts_sp");
        assert_eq!(
            v["connection_references"][0]["connector_id"],
            "/providers/Microsoft.PowerApps/apis/shared_sharepointonline"
        );
        assert_eq!(v["environment_variables"][0]["schema_name"], "cts_Url");
        assert_eq!(v["environment_variables"][0]["type"], "string");
    }

    #[test]
    fn inspect_text_names_the_solution_and_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.zip", sample("1.0.0.1", "{}"));
        let text = inspect_output(&p, false).unwrap();
        assert!(text.contains("Solution     Orders"), "{text}");
        assert!(text.contains("1.0.0.1  unmanaged"), "{text}");
        assert!(
            text.contains(
                "cts_sp  ->  /providers/Microsoft.PowerApps/apis/shared_sharepointonline"
            ),
            "{text}"
        );
        assert!(text.contains("cts_Url  string"), "{text}");
    }

    #[test]
    fn inspect_refuses_a_non_solution_with_the_path_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "data.zip",
            slipway_testkit::solution_zip::zip_of(&[("data.xml".into(), b"<x/>".to_vec())], false),
        );
        let err = format!("{:#}", inspect_output(&p, false).unwrap_err());
        assert!(
            err.contains("data.zip") && err.contains("not a solution package"),
            "{err}"
        );
    }

    #[test]
    fn diff_shows_the_changed_flow() {
        let dir = tempfile::tempdir().unwrap();
        let old = write(dir.path(), "old.zip", sample("1.0.0.1", "{\"v\":1}"));
        let new = write(dir.path(), "new.zip", sample("1.0.0.2", "{\"v\":2}"));
        let text = diff_output(&old, &new, false).unwrap();
        assert!(text.contains("Version: 1.0.0.1 -> 1.0.0.2"), "{text}");
        assert!(
            text.contains("Components changed (1):\n  29:6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e"),
            "{text}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&diff_output(&old, &new, true).unwrap()).unwrap();
        assert_eq!(
            v["components_changed"][0]["name"],
            "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e"
        );
        assert!(
            diff_output(&old, &old, false)
                .unwrap()
                .contains("No component")
        );
    }

    #[test]
    fn settings_create_writes_the_pac_file() {
        let dir = tempfile::tempdir().unwrap();
        let zip = write(dir.path(), "s.zip", sample("1.0.0.1", "{}"));
        let out = dir.path().join("settings.json");
        run_settings_create(&zip, Some(&out)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "EnvironmentVariables": [{"SchemaName": "cts_Url", "Value": ""}],
                "ConnectionReferences": [{"LogicalName": "cts_sp", "ConnectionId": "",
                    "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sharepointonline"}]
            })
        );
    }
}
