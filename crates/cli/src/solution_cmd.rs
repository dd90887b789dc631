//! `slipway solution inspect|diff` and `slipway settings create`: local work
//! on solution zips with `slipway-solution`; no server, no network.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use slipway_solution::diff::{SolutionDiff, diff, diff_installed};
use slipway_solution::{
    ComponentKey, ComponentType, DependencyEnd, Limits, Solution, SolutionError, settings,
};

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
        /// The solution zip before, or a `.json` file listing the components
        /// installed in an environment: an array of `"type:name"` strings or
        /// `{"component_type": 1, "name": "cts_order"}` objects.
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
impl SolutionCommand {
    /// The command with `--json` also set when the global `--output json` is.
    pub fn with_json(self, global_json: bool) -> SolutionCommand {
        match self {
            SolutionCommand::Inspect { file, json } => SolutionCommand::Inspect {
                file,
                json: json || global_json,
            },
            SolutionCommand::Diff { old, new, json } => SolutionCommand::Diff {
                old,
                new,
                json: json || global_json,
            },
        }
    }
}

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

/// Adds the path to reader errors; an unopenable file already names it.
fn with_path(path: &Path, r: Result<Solution, SolutionError>) -> anyhow::Result<Solution> {
    r.map_err(|e| match e {
        SolutionError::Io { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("cannot read solution {}", path.display())),
    })
}

/// Reads every entry (digests included): what diffs need.
fn open(path: &Path) -> anyhow::Result<Solution> {
    with_path(path, Solution::open(path, &Limits::default()))
}

/// Reads only the entries facts come from: enough for a summary or settings.
fn open_facts(path: &Path) -> anyhow::Result<Solution> {
    with_path(path, Solution::open_facts(path, &Limits::default()))
}

/// Prints the summary of one solution zip (text, or JSON with `json`).
pub fn run_inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    print_out(&inspect_output(path, json)?)
}

/// Prints what changes between two solution zips.
pub fn run_diff(old: &Path, new: &Path, json: bool) -> anyhow::Result<()> {
    print_out(&diff_output(old, new, json)?)
}

/// Prints `text` and a newline; a closed pipe (`| head`) ends output quietly
/// instead of panicking like `println!`.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Writes the deployment settings of a solution zip to `out`, or stdout.
pub fn run_settings_create(zip: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let text = settings::to_json_string(&open_facts(zip)?);
    match out {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write settings file {}", path.display()))?,
        None => print_out(&text)?,
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

/// `Entity (1)`, `Workflow (29)`, `CustomAPI`, or the bare code when unknown.
fn type_label(t: &ComponentType) -> String {
    match (t, t.label()) {
        (ComponentType::Code(c), Some(l)) => format!("{l} ({c})"),
        (_, Some(l)) => l.to_owned(),
        (t, None) => t.to_string(),
    }
}

/// One end of a missing dependency: type, name, display name, solution.
fn end(e: &DependencyEnd) -> String {
    let name = e
        .schema_name
        .as_deref()
        .or(e.id.as_deref())
        .or(e.display_name.as_deref())
        .unwrap_or("(unnamed)");
    let mut s = format!("{} {name}", type_label(&e.component_type));
    if let Some(d) = e.display_name.as_deref().filter(|d| *d != name) {
        let _ = write!(s, " \"{d}\"");
    }
    if let Some(p) = e
        .parent_display_name
        .as_ref()
        .or(e.parent_schema_name.as_ref())
    {
        let _ = write!(s, " on {p}");
    }
    match (&e.solution, &e.package) {
        (Some(sol), Some(pkg)) if pkg != sol => {
            let _ = write!(s, " from solution {sol}, package {pkg}");
        }
        (Some(sol), _) => {
            let _ = write!(s, " from solution {sol}");
        }
        (None, Some(pkg)) => {
            let _ = write!(s, " from package {pkg}");
        }
        (None, None) => {}
    }
    s
}

/// A value for display: quoted, and shortened past 80 characters.
fn shown(v: &str) -> String {
    const MAX: usize = 80;
    match v.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}... ({} chars)", &v[..i], v.chars().count()),
        None => format!("{v:?}"),
    }
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
    let files = |k: Option<ComponentKey>| {
        k.and_then(|k| s.components.iter().find(|c| c.key == k))
            .map_or(&[][..], |c| c.files.as_slice())
    };
    let _ = writeln!(o, "\nRoot components ({}):", s.root_components.len());
    for r in &s.root_components {
        let name = match (&r.schema_name, &r.id) {
            (Some(n), Some(id)) => format!("{n} {{{id}}}"),
            (Some(n), None) => n.clone(),
            (None, Some(id)) => format!("{{{id}}}"),
            (None, None) => "(unnamed)".to_owned(),
        };
        let mut line = format!("  {:<36} {name}", type_label(&r.component_type));
        match r.behavior {
            Some(1) => line.push_str("  (without subcomponents)"),
            Some(2) => line.push_str("  (shell only)"),
            _ => {}
        }
        match files(r.key()) {
            [] => {}
            [one] => {
                let _ = write!(line, "  file {one}");
            }
            many => {
                let _ = write!(line, "  {} files", many.len());
            }
        }
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(
        o,
        "\nMissing dependencies ({}):",
        s.missing_dependencies.len()
    );
    for m in &s.missing_dependencies {
        let _ = writeln!(o, "  requires {}", end(&m.required));
        let _ = writeln!(o, "      for {}", end(&m.dependent));
    }
    let _ = writeln!(
        o,
        "\nConnection references ({}):",
        s.connection_references.len()
    );
    for c in &s.connection_references {
        let display = c
            .display_name
            .as_deref()
            .filter(|d| *d != c.logical_name)
            .map(|d| format!(" \"{d}\""))
            .unwrap_or_default();
        let _ = writeln!(o, "  {}{display}  ->  {}", c.logical_name, c.connector_id);
    }
    let _ = writeln!(
        o,
        "\nEnvironment variables ({}):",
        s.environment_variables.len()
    );
    for e in &s.environment_variables {
        let display = e
            .display_name
            .as_deref()
            .filter(|d| *d != e.schema_name)
            .map(|d| format!(" \"{d}\""))
            .unwrap_or_default();
        let mut line = format!("  {}{display}  {}", e.schema_name, e.kind);
        if e.required {
            line.push_str("  required");
        }
        if let Some(d) = &e.default_value {
            let _ = write!(line, "  default={}", shown(d));
        }
        if let Some(c) = &e.current_value {
            let _ = write!(line, "  current={}", shown(c));
        }
        if let Some(api) = &e.api_id {
            let _ = write!(line, "  api={api}");
        }
        if let Some(k) = &e.parameter_key {
            let _ = write!(line, "  parameter={k}");
        }
        if let Some(p) = &e.parent {
            let _ = write!(line, "  parent={p}");
        }
        let _ = writeln!(o, "{line}");
    }
    let other: Vec<_> = s
        .components
        .iter()
        .filter(|c| !c.files.is_empty())
        .filter(|c| {
            !s.root_components
                .iter()
                .any(|r| r.key().as_ref() == Some(&c.key))
        })
        .collect();
    if !other.is_empty() {
        let _ = writeln!(o, "\nOther components with files ({}):", other.len());
        for c in other {
            let files = match c.files.as_slice() {
                [one] => format!("file {one}"),
                many => format!("{} files", many.len()),
            };
            let _ = writeln!(
                o,
                "  {:<36} {}  {files}",
                type_label(&c.key.component_type),
                c.key.name
            );
        }
    }
    o.trim_end().to_owned()
}

/// Reads a list of installed components: `["1:cts_order", ...]` or
/// `[{"component_type": 1, "name": "cts_order"}, ...]`.
fn installed_components(path: &Path) -> anyhow::Result<Vec<ComponentKey>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Item {
        Text(String),
        Key(ComponentKey),
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let items: Vec<Item> = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a list of installed components; expected [\"1:cts_order\", ...] or [{{\"component_type\": 1, \"name\": \"cts_order\"}}, ...]",
            path.display()
        )
    })?;
    items
        .into_iter()
        .map(|i| match i {
            Item::Key(k) => Ok(ComponentKey::new(k.component_type, &k.name)),
            Item::Text(t) => match t.split_once(':') {
                Some((ty, name)) if !ty.trim().is_empty() && !name.trim().is_empty() => {
                    Ok(ComponentKey::new(ComponentType::parse(ty), name))
                }
                _ => anyhow::bail!(
                    "installed component {t:?} in {} is not \"type:name\" (e.g. \"1:cts_order\")",
                    path.display()
                ),
            },
        })
        .collect()
}

fn diff_output(old: &Path, new: &Path, json: bool) -> anyhow::Result<String> {
    let is_json = old
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let d = if is_json {
        diff_installed(&installed_components(old)?, &open(new)?)
    } else {
        diff(&open(old)?, &open(new)?)
    };
    if json {
        return Ok(serde_json::to_string_pretty(&d)?);
    }
    Ok(diff_text(&d))
}

fn diff_text(d: &SolutionDiff) -> String {
    let mut o = String::new();
    if let (Some(a), Some(b)) = (&d.old_unique_name, &d.new_unique_name)
        && !a.eq_ignore_ascii_case(b)
    {
        let _ = writeln!(o, "Note: these are different solutions: {a} -> {b}");
    }
    match (&d.old_version, &d.new_version) {
        (Some(a), Some(b)) if b < a => {
            let _ = writeln!(
                o,
                "Version: {a} -> {b} (lower: Dataverse refuses to import a lower version over a higher one)"
            );
        }
        (Some(a), Some(b)) => {
            let _ = writeln!(o, "Version: {a} -> {b}");
        }
        (None, Some(b)) => {
            let _ = writeln!(o, "Version: {b} (against installed components)");
        }
        _ => {}
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
    let keys = |v: &[ComponentKey]| {
        v.iter()
            .map(|k| format!("{:<36} {}", type_label(&k.component_type), k.name))
            .collect::<Vec<_>>()
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
    use slipway_testkit::solution_zip::{DepEnd, SolutionZip};

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
        let zip = SolutionZip::new("Orders", "1.0.0.1")
            .publisher("contoso", "cts")
            .root_component(1, "cts_order")
            .connection_reference_named(
                "cts_sp",
                "SharePoint",
                "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
            )
            .env_var(
                "cts_Url",
                100000000,
                Some("https://a"),
                Some("https://prod"),
            )
            .data_source_env_var(
                "cts_List",
                "/providers/microsoft.powerapps/apis/shared_sharepointonline",
                "table",
                Some("cts_Site"),
            )
            .missing_dependency(
                DepEnd::new("61", "msdyn_/icon.png").solution("AppModuleWebResources (2.5)"),
                DepEnd::new("80", "cts_app").display_name("Orders App"),
            )
            .flow("Sync", "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e", "{}")
            .build();
        let p = write(dir.path(), "s.zip", zip);
        let text = inspect_output(&p, false).unwrap();
        for want in [
            "Solution     Orders",
            "1.0.0.1  unmanaged",
            "Entity (1)                           cts_order",
            "file Workflows/Sync-6B53C887-0D6A-4C7E-9E2B-1F1B2E3C4D5E.json",
            "requires WebResource (61) msdyn_/icon.png from solution AppModuleWebResources (2.5)\n      for AppModule (80) cts_app \"Orders App\"",
            "cts_sp \"SharePoint\"  ->  /providers/Microsoft.PowerApps/apis/shared_sharepointonline",
            "cts_Url  string  default=\"https://a\"  current=\"https://prod\"",
            "cts_List  data_source  api=/providers/microsoft.powerapps/apis/shared_sharepointonline  parameter=table  parent=cts_Site",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn diff_against_installed_components_from_a_json_list() {
        let dir = tempfile::tempdir().unwrap();
        let new = write(dir.path(), "new.zip", sample("1.0.0.2", "{}"));
        let installed = dir.path().join("installed.json");
        std::fs::write(
            &installed,
            r#"["1:cts_order", {"component_type": 1, "name": "cts_Gone"}]"#,
        )
        .unwrap();
        let text = diff_output(&installed, &new, false).unwrap();
        assert!(
            text.contains("Version: 1.0.0.2 (against installed components)"),
            "{text}"
        );
        assert!(
            text.contains(
                "Components removed (1):\n  Entity (1)                           cts_gone"
            ),
            "{text}"
        );
        assert!(!text.contains("cts_order"), "{text}");
        std::fs::write(&installed, r#"["cts_order"]"#).unwrap();
        let err = format!("{:#}", diff_output(&installed, &new, false).unwrap_err());
        assert!(err.contains("is not \"type:name\""), "{err}");
    }

    #[test]
    fn a_missing_file_is_one_line_naming_it_once() {
        let err = format!(
            "{:#}",
            inspect_output(Path::new("/no/such.zip"), false).unwrap_err()
        );
        assert_eq!(
            err,
            "cannot open /no/such.zip: No such file or directory (os error 2)"
        );
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
            text.contains(
                "Components changed (1):\n  Workflow (29)                        6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e"
            ),
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
        let back = diff_output(&new, &old, false).unwrap();
        assert!(back.contains("1.0.0.2 -> 1.0.0.1 (lower:"), "{back}");
        let other = write(
            dir.path(),
            "other.zip",
            SolutionZip::new("Invoices", "1.0").build(),
        );
        let text = diff_output(&old, &other, false).unwrap();
        assert!(
            text.contains("different solutions: Orders -> Invoices"),
            "{text}"
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
