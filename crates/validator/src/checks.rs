//! The rules, applied to what was already read from the artifact and the
//! target: no I/O here, so every rule is unit-tested on its own.

use std::collections::HashMap;

use serde_json::Value;
use slipway_dataverse::{
    Connection, ConnectionReferenceRecord, EnvironmentVariableValue, InstalledSolution,
    SolutionComponentSummary, StageSolutionResults,
};
use slipway_messages::{
    ConnectionCandidate, ConnectionReferenceCheck, EnvironmentVariableCheck, MissingDependency,
    ValidationReport, Verdict,
};
use slipway_policy::connector_short_name;
use slipway_solution::{
    Component, ComponentKey, ComponentType, ConnectionReference, EnvironmentVariable,
    EnvironmentVariableType, Solution, Version,
};

/// What the maker supplied in the deployment settings (the
/// `pac solution create-settings` JSON), keyed by lowercase name. Empty
/// values count as not supplied: pac writes them empty for the maker to fill.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    connections: HashMap<String, String>,
    values: HashMap<String, String>,
}

/// `obj[key]`, the key compared ignoring ASCII case.
fn get_ci<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

const SETTINGS_SHAPE: &str = r#"{"EnvironmentVariables":[{"SchemaName":..,"Value":..}],"ConnectionReferences":[{"LogicalName":..,"ConnectionId":..,"ConnectorId":..}]}"#;

impl Settings {
    /// Reads the settings; `Err` says what is not in pac's shape.
    pub(crate) fn parse(settings: Option<&Value>) -> Result<Settings, String> {
        let mut out = Settings::default();
        let obj = match settings {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(format!(
                    "the deployment settings are not a JSON object; use the `pac solution create-settings` shape {SETTINGS_SHAPE}"
                ));
            }
        };
        for (i, entry) in entries(obj, "ConnectionReferences")?.iter().enumerate() {
            let name = text_field(entry, "LogicalName").ok_or_else(|| {
                format!("ConnectionReferences[{i}] of the deployment settings has no LogicalName")
            })?;
            if let Some(id) = text_field(entry, "ConnectionId").filter(|v| !v.trim().is_empty()) {
                out.connections
                    .insert(name.to_ascii_lowercase(), id.trim().to_owned());
            }
        }
        for (i, entry) in entries(obj, "EnvironmentVariables")?.iter().enumerate() {
            let name = text_field(entry, "SchemaName").ok_or_else(|| {
                format!("EnvironmentVariables[{i}] of the deployment settings has no SchemaName")
            })?;
            if let Some(value) = text_field(entry, "Value").filter(|v| !v.is_empty()) {
                out.values.insert(name.to_ascii_lowercase(), value);
            }
        }
        Ok(out)
    }
}

fn entries<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a [Value], String> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!(
            "{key} in the deployment settings is not a list; use the `pac solution create-settings` shape {SETTINGS_SHAPE}"
        )),
    }
}

/// A field as text: strings as they are, numbers and booleans written out
/// (a maker may write `"Value": 5`), anything else `None`.
fn text_field(entry: &Value, key: &str) -> Option<String> {
    match get_ci(entry.as_object()?, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The version rule. A managed import can neither update an unmanaged
/// install nor be updated by an unmanaged one; the artifact must be higher
/// than what is installed unless the pipeline allows redeploying older
/// versions (equal or lower).
pub(crate) fn version_problem(
    solution: &Solution,
    installed: Option<&InstalledSolution>,
    target: &str,
    allow_older_version: bool,
) -> Option<String> {
    let installed = installed?;
    let name = &solution.unique_name;
    if installed.is_managed != solution.managed {
        return Some(if installed.is_managed {
            format!(
                "{name} is installed managed in {target}, and this artifact is unmanaged; deploy the managed export"
            )
        } else {
            format!(
                "{name} is installed unmanaged in {target}, and a managed import cannot upgrade an unmanaged solution; delete the unmanaged {name} from {target} first (its components stay if another solution holds them)"
            )
        });
    }
    let Ok(current) = Version::parse(&installed.version) else {
        return Some(format!(
            "{target} reports version {:?} for {name}, which is not a version Slipway can compare; check the solution in {target}",
            installed.version
        ));
    };
    (solution.version <= current && !allow_older_version).then(|| {
        format!(
            "version {} is not higher than {} installed in {target}; raise the version, or ask an admin to allow redeploying older versions on this pipeline",
            solution.version, installed.version
        )
    })
}

/// The code Dataverse gives an import refused for missing dependencies
/// (0x8004801D as a signed 32-bit number, as `ErrorCode` carries it).
const MISSING_DEPENDENCIES_CODE: i64 = 0x8004_801D - (1 << 32);

/// `StageSolution`'s missing dependencies and errors, in the report's terms.
/// The error that only restates the missing dependencies is left out: the
/// list says it better.
pub(crate) fn staging_findings(
    staged: &StageSolutionResults,
) -> (Vec<MissingDependency>, Vec<String>) {
    let missing: Vec<MissingDependency> = staged
        .missing_dependencies
        .iter()
        .map(missing_dependency)
        .collect();
    let errors = staged
        .errors()
        .filter(|e| {
            missing.is_empty()
                || !(e.error_code == MISSING_DEPENDENCIES_CODE
                    || e.error_code == MISSING_DEPENDENCIES_CODE + (1 << 32))
        })
        .map(|e| {
            if e.message.trim().is_empty() {
                format!("error {:#x} without a message", e.error_code & 0xffff_ffff)
            } else {
                e.message.trim().to_owned()
            }
        })
        .collect();
    (missing, errors)
}

fn first_named(candidates: [&Option<String>; 3]) -> Option<String> {
    candidates
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

fn missing_dependency(m: &slipway_dataverse::MissingDependency) -> MissingDependency {
    let required_type = m
        .required_component_type
        .as_deref()
        .map(|t| {
            let parsed = ComponentType::parse(t);
            parsed.label().unwrap_or(t.trim()).to_owned()
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "component".to_owned());
    MissingDependency {
        required_type,
        required: first_named([
            &m.required_component_display_name,
            &m.required_component_schema_name,
            &m.required_component_id,
        ])
        .unwrap_or_else(|| "an unnamed component".to_owned()),
        required_by: first_named([
            &m.dependent_component_display_name,
            &m.dependent_component_schema_name,
            &m.dependent_component_id,
        ]),
    }
}

/// Each connection reference of the solution, the connection it will use,
/// and why it cannot (if so). Candidates are the target's connected
/// connections of the reference's connector: what the maker can pick.
pub(crate) fn check_connection_references(
    refs: &[ConnectionReference],
    settings: &Settings,
    bound: &[ConnectionReferenceRecord],
    connections: Option<&[Connection]>,
    target: &str,
) -> Vec<ConnectionReferenceCheck> {
    refs.iter()
        .map(|r| {
            let needs = connector_short_name(&r.connector_id);
            let candidates: Vec<ConnectionCandidate> = connections
                .unwrap_or_default()
                .iter()
                .filter(|c| {
                    connector_short_name(&c.connector_id) == needs && is_connected(c)
                })
                .map(|c| ConnectionCandidate {
                    id: c.id.clone(),
                    display_name: c.display_name.clone(),
                })
                .collect();
            let chosen = settings
                .connections
                .get(&r.logical_name.to_ascii_lowercase())
                .cloned()
                .or_else(|| {
                    bound
                        .iter()
                        .find(|b| b.logical_name.eq_ignore_ascii_case(&r.logical_name))
                        .and_then(|b| b.connection_id.clone())
                        .filter(|id| !id.trim().is_empty())
                });
            let problem = match (&chosen, connections) {
                // The target does not list its connections: a chosen id is
                // taken on trust (the report warns), none is still missing.
                (None, None) => Some(format!(
                    "needs a connection; {target} does not list its connections to Slipway, so set the id of an existing {needs} connection as ConnectionId of {} in the deployment settings",
                    r.logical_name
                )),
                (Some(_), None) => None,
                (None, Some(_)) if candidates.is_empty() => Some(format!(
                    "needs a connection, and {target} has no connected {needs} connection; create one in {target}, then set its id as ConnectionId of {} in the deployment settings",
                    r.logical_name
                )),
                (None, Some(_)) => Some(format!(
                    "needs a connection; pick one of the {needs} candidates and set it as ConnectionId of {} in the deployment settings",
                    r.logical_name
                )),
                (Some(id), Some(connections)) => match connections.iter().find(|c| c.id == *id) {
                    None => Some(format!(
                        "no connection {id} in {target}; pick one of the {needs} candidates"
                    )),
                    Some(c) if connector_short_name(&c.connector_id) != needs => Some(format!(
                        "connection {id} is a {} connection; this reference needs {needs}",
                        connector_short_name(&c.connector_id)
                    )),
                    Some(c) if !is_connected(c) => Some(format!(
                        "connection {id} is in status {} in {target}, not Connected; repair it or pick another {needs} connection",
                        c.status
                    )),
                    Some(_) => None,
                },
            };
            ConnectionReferenceCheck {
                logical_name: r.logical_name.clone(),
                display_name: r.display_name.clone(),
                connector_id: r.connector_id.clone(),
                connection_id: chosen,
                problem,
                candidates,
            }
        })
        .collect()
}

fn is_connected(c: &Connection) -> bool {
    c.status.trim().eq_ignore_ascii_case("connected")
}

/// Each environment variable of the solution, where its value comes from,
/// and whether that value fits its type. Order: the deployment settings,
/// the value already set in the target (`current`), then the package's own
/// value or the definition's default (`default`).
pub(crate) fn check_environment_variables(
    vars: &[EnvironmentVariable],
    settings: &Settings,
    current: &[EnvironmentVariableValue],
    target: &str,
) -> Vec<EnvironmentVariableCheck> {
    vars.iter()
        .map(|v| {
            let from_settings = settings
                .values
                .get(&v.schema_name.to_ascii_lowercase())
                .map(|value| {
                    (
                        "settings",
                        "the value in the deployment settings".to_owned(),
                        value.clone(),
                    )
                });
            let from_target = || {
                current
                    .iter()
                    .find(|c| c.schema_name.eq_ignore_ascii_case(&v.schema_name))
                    .and_then(|c| c.value.clone())
                    .filter(|value| !value.is_empty())
                    .map(|value| ("current", format!("the value set in {target}"), value))
            };
            let from_package = || {
                [&v.current_value, &v.default_value]
                    .into_iter()
                    .flatten()
                    .find(|value| !value.is_empty())
                    .map(|value| {
                        (
                            "default",
                            "the solution's default value".to_owned(),
                            value.clone(),
                        )
                    })
            };
            let found = from_settings.or_else(from_target).or_else(from_package);
            let (value_source, problem) = match found {
                None => (
                    None,
                    Some(format!(
                        "needs a value; set Value of {} in the deployment settings{}",
                        v.schema_name,
                        type_hint(v.kind)
                    )),
                ),
                Some((source, said, value)) => (
                    Some(source.to_owned()),
                    check_value(v.kind, &value)
                        .err()
                        .map(|why| format!("{said} {why}")),
                ),
            };
            EnvironmentVariableCheck {
                schema_name: v.schema_name.clone(),
                display_name: v.display_name.clone(),
                type_name: v.kind.as_str().to_owned(),
                value_source,
                problem,
            }
        })
        .collect()
}

fn type_hint(kind: EnvironmentVariableType) -> &'static str {
    match kind {
        EnvironmentVariableType::Number => " (a number)",
        EnvironmentVariableType::Boolean => " (yes or no)",
        EnvironmentVariableType::Json => " (JSON)",
        EnvironmentVariableType::Secret => " (an Azure Key Vault secret reference)",
        EnvironmentVariableType::String | EnvironmentVariableType::DataSource => "",
    }
}

/// A value as short, quoted text for a message (values may be long).
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(60).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

const SECRET_FORMAT: &str = "/subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{name}";

/// Whether `value` fits the type, as Dataverse stores it; `Err` ends a
/// sentence that starts with where the value came from. Secret values are
/// never repeated back.
pub(crate) fn check_value(kind: EnvironmentVariableType, value: &str) -> Result<(), String> {
    match kind {
        EnvironmentVariableType::Number => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|_| ())
            .ok_or_else(|| format!("is not a number: {}", shown(value))),
        EnvironmentVariableType::Boolean => ["yes", "no", "true", "false"]
            .iter()
            .any(|b| b.eq_ignore_ascii_case(value.trim()))
            .then_some(())
            .ok_or_else(|| format!("is not yes or no: {}", shown(value))),
        EnvironmentVariableType::Json => serde_json::from_str::<Value>(value)
            .map(|_| ())
            .map_err(|e| format!("is not valid JSON ({e})")),
        EnvironmentVariableType::Secret => {
            if is_key_vault_reference(value.trim()) {
                Ok(())
            } else {
                Err(format!(
                    "must be an Azure Key Vault secret reference {SECRET_FORMAT}"
                ))
            }
        }
        EnvironmentVariableType::String | EnvironmentVariableType::DataSource => {
            if value.trim().is_empty() {
                Err("is blank".to_owned())
            } else {
                Ok(())
            }
        }
    }
}

/// `/subscriptions/{guid}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{name}`,
/// fixed segments compared ignoring case, the others non-blank.
fn is_key_vault_reference(value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').collect();
    let [
        "",
        subscriptions,
        subscription,
        resource_groups,
        group,
        providers,
        provider,
        vaults,
        vault,
        secrets,
        secret,
    ] = parts.as_slice()
    else {
        return false;
    };
    let fixed = [
        (subscriptions, "subscriptions"),
        (resource_groups, "resourceGroups"),
        (providers, "providers"),
        (provider, "Microsoft.KeyVault"),
        (vaults, "vaults"),
        (secrets, "secrets"),
    ];
    fixed
        .iter()
        .all(|(got, want)| got.eq_ignore_ascii_case(want))
        && uuid::Uuid::parse_str(subscription).is_ok()
        && [group, vault, secret]
            .iter()
            .all(|s| !s.trim().is_empty() && s.trim() == **s)
}

/// The installed components as the keys packages use: type code (or name)
/// with the schema name, else the object id.
pub(crate) fn installed_keys(rows: &[SolutionComponentSummary]) -> Vec<ComponentKey> {
    rows.iter()
        .filter_map(|r| {
            let component_type = match r.type_code() {
                Some(code) => ComponentType::Code(code),
                None => ComponentType::parse(r.component_type_name.as_deref()?),
            };
            let name = first_named([&r.schema_name, &r.object_id, &None])?;
            Some(ComponentKey::new(component_type, &name))
        })
        .collect()
}

/// The component diff against what the target has installed (empty when
/// the solution is not installed: everything is added). Connection
/// references count as components, as Dataverse registers them.
pub(crate) fn diff(installed: &[ComponentKey], solution: &Solution) -> Value {
    let mut new = solution.clone();
    for r in &solution.connection_references {
        let key = ComponentKey::new(
            ComponentType::Name("connectionreference".into()),
            &r.logical_name,
        );
        if !new.components.iter().any(|c| c.key == key) {
            new.components.push(Component {
                key,
                files: Vec::new(),
                sha256: None,
            });
        }
    }
    serde_json::to_value(slipway_solution::diff::diff_installed(installed, &new))
        .unwrap_or(Value::Null)
}

/// Failed for what settings cannot fix, NeedsSettings for what they can.
pub(crate) fn verdict(report: &ValidationReport) -> Verdict {
    if !report.missing_dependencies.is_empty()
        || !report.errors.is_empty()
        || report.version_problem.is_some()
        || !report.policy_violations.is_empty()
    {
        Verdict::Failed
    } else if report
        .connection_references
        .iter()
        .any(|c| c.problem.is_some())
        || report
            .environment_variables
            .iter()
            .any(|v| v.problem.is_some())
    {
        Verdict::NeedsSettings
    } else {
        Verdict::Passed
    }
}

/// A maker's word for a component type.
fn maker_word(required_type: &str) -> String {
    let word = match required_type {
        "Entity" => "table",
        "Attribute" => "column",
        "Relationship" | "EntityRelationship" => "relationship",
        "OptionSet" => "choice",
        "Role" => "security role",
        "Form" | "SystemForm" => "form",
        "SavedQuery" => "view",
        "Workflow" => "flow or process",
        "WebResource" => "web resource",
        "SiteMap" => "site map",
        "AppModule" => "model-driven app",
        "PluginAssembly" => "plug-in assembly",
        "PluginType" => "plug-in",
        "CanvasApp" => "canvas app",
        "Connector" => "custom connector",
        "EnvironmentVariableDefinition" => "environment variable",
        other => other,
    };
    word.to_owned()
}

/// Items joined by ", ", at most `max`, then "and N more".
fn listed(items: Vec<String>, max: usize) -> String {
    let more = items.len().saturating_sub(max);
    let mut text = items.into_iter().take(max).collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line saying why a validation failed, in a maker's words.
pub(crate) fn failure_summary(report: &ValidationReport, target: &str) -> String {
    let mut parts = Vec::new();
    if !report.missing_dependencies.is_empty() {
        let items = report
            .missing_dependencies
            .iter()
            .map(|m| {
                let mut s = format!("{} {}", maker_word(&m.required_type), m.required);
                if let Some(by) = &m.required_by {
                    s.push_str(&format!(" (needed by {by})"));
                }
                s
            })
            .collect();
        parts.push(format!(
            "{} in {target}: {}",
            plural(
                report.missing_dependencies.len(),
                "missing dependency",
                "missing dependencies"
            ),
            listed(items, 5)
        ));
    }
    if let Some(v) = &report.version_problem {
        parts.push(v.clone());
    }
    for p in &report.policy_violations {
        parts.push(format!("policy {}: {}", p.policy, p.message));
    }
    if let Some(first) = report.errors.first() {
        let mut text: String = first.chars().take(300).collect();
        if text.len() < first.len() {
            text.push('…');
        }
        let more = report.errors.len() - 1;
        parts.push(if more == 0 {
            format!("{target} refused the solution: {text}")
        } else {
            format!(
                "{target} refused the solution: {text} (and {})",
                plural(more, "more error", "more errors")
            )
        });
    }
    if parts.is_empty() {
        return "validation failed".to_owned();
    }
    // Dataverse messages may span lines; the summary is one.
    parts
        .join("; ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
