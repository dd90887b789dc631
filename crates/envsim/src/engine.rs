//! Import semantics of a real environment, applied to a solution read with
//! `slipway-solution`. See the crate docs for the rules and where the
//! simulator simplifies.

use std::collections::{BTreeSet, HashSet};
use std::io::{Cursor, Read, Write};

use quick_xml::escape::escape;
use serde::Deserialize;
use slipway_solution::{ComponentKey, ComponentType, DependencyEnd, Limits, Solution, Version};

use crate::config::ConnectionConfig;
use crate::error::codes;
use crate::store::{EnvVarDefinition, ImportWrite, Key, Store};

/// Why an import (or a stage) is refused: Dataverse's code and message, and
/// the missing dependencies when that is the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Dataverse error code.
    pub code: &'static str,
    /// Message in Dataverse's wording where we know it.
    pub message: String,
    /// The unresolved `MissingDependency` entries, for `StageSolution`.
    pub missing: Vec<slipway_solution::MissingDependency>,
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Self::new(format!("simulator database error: {e}"))
    }
}

impl Refusal {
    fn new(message: impl Into<String>) -> Self {
        Self {
            code: codes::GENERIC,
            message: message.into(),
            missing: Vec::new(),
        }
    }
}

/// One `ComponentParameters` entry the simulator understands.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "@odata.type")]
pub enum ComponentParameter {
    /// Sets an environment variable's value.
    #[serde(rename = "Microsoft.Dynamics.CRM.environmentvariablevalue")]
    EnvironmentVariableValue {
        /// `schemaname`.
        schemaname: String,
        /// `value`.
        value: String,
    },
    /// Binds a connection reference to a connection.
    #[serde(rename = "Microsoft.Dynamics.CRM.connectionreference")]
    ConnectionReference {
        /// `connectionreferencelogicalname`.
        connectionreferencelogicalname: String,
        /// `connectionid`.
        connectionid: String,
    },
}

/// The options of one import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `HoldingSolution`: stage as `<name>_Upgrade` for `DeleteAndPromote`.
    pub holding_solution: bool,
    /// `ComponentParameters`.
    pub component_parameters: Vec<ComponentParameter>,
}

/// What the platform of one environment provides beyond installed solutions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Platform {
    /// Unique names of first-party solutions taken as present.
    pub solutions: Vec<String>,
    /// The platform's version; newer `SolutionPackageVersion`s are refused.
    pub version: Option<Version>,
}

impl Platform {
    /// The platform an environment's configuration describes.
    pub fn of(env: &crate::config::EnvironmentConfig) -> Self {
        Self {
            solutions: env.platform_solutions.clone(),
            version: env
                .platform_version
                .as_deref()
                .and_then(|v| Version::parse(v).ok()),
        }
    }
}

/// Reads a zip as a solution, with a Dataverse-like refusal when it is not one.
pub fn read_solution(zip: &[u8]) -> Result<Solution, Refusal> {
    Solution::from_bytes(zip, &Limits::default()).map_err(|e| {
        Refusal::new(format!(
            "The import file is not a valid solution package: {e}"
        ))
    })
}

fn key_of(k: &ComponentKey) -> Key {
    (
        k.component_type.to_string().to_ascii_lowercase(),
        k.name.clone(),
    )
}

/// The key a dependency end resolves to; ends with neither schema name nor
/// id fall back to their display name so they are still reported.
fn end_key(end: &DependencyEnd) -> Option<Key> {
    end.key().map(|k| key_of(&k)).or_else(|| {
        end.display_name
            .as_ref()
            .map(|d| key_of(&ComponentKey::new(end.component_type.clone(), d)))
    })
}

/// Every component key a solution registers when installed: root components,
/// the components found in the package, environment variable definitions
/// (type 380) and connection references (type `connectionreference`).
pub fn registered_keys(s: &Solution) -> BTreeSet<Key> {
    let mut keys: BTreeSet<Key> = s
        .root_components
        .iter()
        .filter_map(|r| r.key())
        .chain(s.components.iter().map(|c| c.key.clone()))
        .map(|k| key_of(&k))
        .collect();
    for v in &s.environment_variables {
        keys.insert(key_of(&ComponentKey::new(
            ComponentType::Code(380),
            &v.schema_name,
        )));
    }
    for c in &s.connection_references {
        keys.insert(key_of(&ComponentKey::new(
            ComponentType::Name("connectionreference".into()),
            &c.logical_name,
        )));
    }
    keys
}

/// Dataverse's name of a component type code, for messages (the code itself
/// when it is not a common one).
fn component_type_name(code: &str) -> String {
    let name = match code {
        "1" => "Entity",
        "2" => "Attribute",
        "3" => "Relationship",
        "9" => "OptionSet",
        "20" => "Role",
        "24" => "Form",
        "26" => "SavedQuery",
        "29" => "Workflow",
        "59" => "SavedQueryVisualization",
        "60" => "SystemForm",
        "61" => "WebResource",
        "62" => "SiteMap",
        "66" => "CustomControl",
        "80" => "AppModule",
        "90" => "PluginType",
        "91" => "PluginAssembly",
        "92" => "SDKMessageProcessingStep",
        "300" => "CanvasApp",
        "372" => "Connector",
        "380" => "EnvironmentVariableDefinition",
        "381" => "EnvironmentVariableValue",
        other => return format!("type {other}"),
    };
    name.to_string()
}

/// `solution="Name (1.2.3)"` -> `Name`.
fn solution_unique_name(s: &str) -> &str {
    s.split(" (").next().unwrap_or(s).trim()
}

/// The last segment of a connector id, compared case-insensitively
/// (`/providers/Microsoft.PowerApps/apis/shared_office365` -> `shared_office365`).
fn connector_name(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_ascii_lowercase()
}

fn xml_end(tag: &str, e: &DependencyEnd) -> String {
    let mut s = format!("<{tag} type=\"{}\"", escape(e.component_type.to_string()));
    let attrs = [
        ("schemaName", &e.schema_name),
        ("displayName", &e.display_name),
        ("parentDisplayName", &e.parent_display_name),
        ("solution", &e.solution),
    ];
    for (name, value) in attrs {
        if let Some(v) = value {
            s.push_str(&format!(" {name}=\"{}\"", escape(v.as_str())));
        }
    }
    if let Some(id) = &e.id {
        s.push_str(&format!(" id=\"{{{}}}\"", escape(id.as_str())));
    }
    s.push_str(" />");
    s
}

/// Dataverse's message for an import refused for missing dependencies.
pub fn missing_dependencies_message(
    solution: &str,
    missing: &[slipway_solution::MissingDependency],
) -> String {
    let mut xml = String::from("<MissingDependencies>");
    for m in missing {
        xml.push_str("<MissingDependency>");
        xml.push_str(&xml_end("Required", &m.required));
        xml.push_str(&xml_end("Dependent", &m.dependent));
        xml.push_str("</MissingDependency>");
    }
    xml.push_str("</MissingDependencies>");
    format!(
        "The following solution cannot be imported: {solution}. Some dependencies are missing. \
         The missing dependencies are : {xml} , ProductUpdatesOnly : False"
    )
}

/// Checks an import against the environment and, when it is acceptable,
/// returns what to write. The rules, in order:
///
/// 1. packages exported from a newer platform than the configured
///    `platform_version` are refused;
/// 2. the installed and imported solution must both be managed or both
///    unmanaged (Dataverse's "Import can only update solutions when the modes
///    match");
/// 3. a lower version than the installed one is refused;
/// 4. a holding import needs the solution installed as managed, a managed
///    package of a higher version and no other pending holding solution (and
///    nothing but `DeleteAndPromote` may follow a pending one); a managed
///    package may not contain a component an unmanaged solution registered;
/// 5. every `MissingDependency` of the package must resolve: a component
///    registered by another installed solution (by `ComponentKey`), or one
///    whose `solution="Name (..)"` is a configured platform solution;
/// 6. an upgrade (managed over managed) must not remove a component another
///    installed solution requires;
/// 7. `ComponentParameters` must name environment variables and connection
///    references the package or environment defines, values must fit the
///    variable's type, and a connection reference must be bound to an
///    existing connection of its connector whose status is `Connected`.
pub(crate) async fn plan_import<'z>(
    store: &Store,
    env: &str,
    platform: &Platform,
    zip: &'z [u8],
    solution: &Solution,
    options: &ImportOptions,
) -> Result<ImportWrite<'z>, Refusal> {
    let name = solution.unique_name.as_str();
    if let (Some(platform_version), Some(written)) = (&platform.version, &solution.package_version)
        && Version::parse(written).is_ok_and(|v| v > *platform_version)
    {
        return Err(Refusal::new(format!(
            "Solution {name} was exported from a newer version of Dataverse (SolutionPackageVersion \
             {written}) than this environment runs ({platform_version}); import it into an \
             environment at that version or later"
        )));
    }
    let installed = store.installed(env, name).await?;
    if let Some(i) = &installed {
        if i.managed != solution.managed {
            let (was, now) = if i.managed {
                ("a managed", "unmanaged")
            } else {
                ("an unmanaged", "managed")
            };
            return Err(Refusal::new(format!(
                "The solution is already installed on this system as {was} solution and the package \
                 supplied is attempting to install it in {now} mode. Import can only update solutions \
                 when the modes match. Uninstall the current package and try again."
            )));
        }
        if let Ok(v) = Version::parse(&i.version)
            && solution.version < v
        {
            return Err(Refusal::new(format!(
                "Solution {name} cannot be imported: the version being imported ({}) is lower than \
                 the installed version ({}). Import a version that is higher than the existing solution.",
                solution.version, i.version
            )));
        }
    }

    // Holding solutions: `<name>_Upgrade`, staged beside the installed
    // managed version until `DeleteAndPromote`.
    let holding_name = holding_name(name);
    let pending = store.installed(env, &holding_name).await?.is_some();
    if options.holding_solution {
        let Some(base) = installed.as_ref().filter(|i| i.managed && solution.managed) else {
            return Err(Refusal::new(format!(
                "Solution {name} cannot be imported as a holding solution: HoldingSolution stages an \
                 upgrade of a managed solution that is installed; install {name} as managed first, \
                 or import without HoldingSolution"
            )));
        };
        if Version::parse(&base.version).is_ok_and(|v| solution.version <= v) {
            return Err(Refusal::new(format!(
                "The import solution must have a higher version than the existing solution it is \
                 upgrading: {name} {} is installed, the package is {}",
                base.version, solution.version
            )));
        }
    }
    if pending {
        return Err(Refusal::new(format!(
            "Solution {name} has a pending upgrade (holding solution {holding_name}); apply it with \
             DeleteAndPromote before importing {name} again"
        )));
    }
    // The solution row this import writes.
    let target = if options.holding_solution {
        holding_name.as_str()
    } else {
        name
    };

    let components = store.components(env).await?;
    let own_keys = registered_keys(solution);

    // A managed package must not take over components with an unmanaged base.
    if solution.managed {
        let unmanaged = store.unmanaged_solutions(env).await?;
        let clash = components.iter().find(|(owner, k)| {
            !owner.eq_ignore_ascii_case(target)
                && own_keys.contains(k)
                && unmanaged.iter().any(|u| u.eq_ignore_ascii_case(owner))
        });
        if let Some((owner, (t, n))) = clash {
            let kind = component_type_name(t);
            return Err(Refusal::new(format!(
                "A managed solution cannot overwrite the {kind} component {n} which has an unmanaged \
                 base instance (installed by unmanaged solution {owner}). The most likely scenario \
                 for this error is that an unmanaged solution has installed a new unmanaged {kind} \
                 component on the target system, and now a managed solution is trying to install \
                 that same {kind} component as managed. This will cause an invalid layering of \
                 solutions on the target system and is not allowed."
            )));
        }
    }

    // Dependencies.
    let present: HashSet<&Key> = components
        .iter()
        .filter(|(owner, _)| !owner.eq_ignore_ascii_case(target))
        .map(|(_, k)| k)
        .chain(own_keys.iter())
        .collect();
    let missing: Vec<_> = solution
        .missing_dependencies
        .iter()
        .filter(|m| {
            let platform = m.required.solution.as_deref().is_some_and(|s| {
                let s = solution_unique_name(s);
                platform.solutions.iter().any(|p| p.eq_ignore_ascii_case(s))
            });
            !platform && !end_key(&m.required).is_some_and(|k| present.contains(&k))
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Refusal {
            code: codes::MISSING_DEPENDENCIES,
            message: missing_dependencies_message(name, &missing),
            missing,
        });
    }

    // Upgrade must not remove what others require.
    let upgrade = installed.as_ref().is_some_and(|i| i.managed)
        && solution.managed
        && !options.holding_solution;
    if upgrade {
        check_removals(store, env, name, &components, &own_keys, &[name]).await?;
    }

    let (env_var_values, connection_bindings) =
        check_parameters(store, env, solution, options).await?;

    let requirements = solution
        .missing_dependencies
        .iter()
        .filter_map(|m| end_key(&m.required))
        .collect();
    Ok(ImportWrite {
        env: env.to_string(),
        unique_name: target.to_string(),
        friendly_name: solution
            .localized_names
            .first()
            .map(|n| n.description.clone()),
        version: solution.version.to_string(),
        managed: solution.managed,
        publisher: solution.publisher.unique_name.clone(),
        publisher_friendly_name: solution
            .publisher
            .localized_names
            .first()
            .map(|n| n.description.clone()),
        zip,
        replace_components: upgrade,
        components: own_keys,
        requirements,
        env_var_definitions: solution
            .environment_variables
            .iter()
            .map(|v| EnvVarDefinition {
                schema_name: v.schema_name.clone(),
                display_name: v.display_name.clone(),
                kind: i64::from(v.kind.code()),
                default_value: v.default_value.clone(),
                required: v.required,
            })
            .collect(),
        env_var_values,
        packaged_env_var_values: solution
            .environment_variables
            .iter()
            .filter_map(|v| Some((v.schema_name.clone(), v.current_value.clone()?)))
            .collect(),
        connection_references: solution
            .connection_references
            .iter()
            .map(|c| {
                (
                    c.logical_name.clone(),
                    c.display_name.clone(),
                    c.connector_id.clone(),
                )
            })
            .collect(),
        connection_bindings,
    })
}

/// The name of the holding solution that stages an upgrade of `name`.
pub fn holding_name(name: &str) -> String {
    format!("{name}_Upgrade")
}

/// Refuses an upgrade of `name` to a version registering `new_keys` when a
/// component it would drop is required by a solution other than `except`.
async fn check_removals(
    store: &Store,
    env: &str,
    name: &str,
    components: &[(String, Key)],
    new_keys: &BTreeSet<Key>,
    except: &[&str],
) -> Result<(), Refusal> {
    let requirements = store.requirements(env).await?;
    let removed: Vec<&Key> = components
        .iter()
        .filter(|(owner, k)| owner.eq_ignore_ascii_case(name) && !new_keys.contains(k))
        .map(|(_, k)| k)
        .collect();
    let blocked: Vec<String> = requirements
        .iter()
        .filter(|(owner, k)| {
            !except.iter().any(|e| owner.eq_ignore_ascii_case(e)) && removed.contains(&k)
        })
        .map(|(owner, (t, n))| format!("component {n} (type {t}) is required by solution {owner}"))
        .collect();
    if blocked.is_empty() {
        Ok(())
    } else {
        Err(Refusal::new(format!(
            "Solution {name} cannot be upgraded: the new version removes components that other \
             solutions depend on: {}. Remove those dependencies first.",
            blocked.join("; ")
        )))
    }
}

/// `DeleteAndPromote`: checks that `name` has a holding solution and that
/// the components the holding version drops are not required elsewhere.
pub(crate) async fn check_promote(store: &Store, env: &str, name: &str) -> Result<(), Refusal> {
    let holding = holding_name(name);
    if store.installed(env, &holding).await?.is_none() {
        return Err(Refusal {
            code: codes::OBJECT_DOES_NOT_EXIST,
            message: format!(
                "Solution {name} has no holding solution {holding} to promote; import the new \
                 version with HoldingSolution first"
            ),
            missing: Vec::new(),
        });
    }
    let components = store.components(env).await?;
    let new_keys: BTreeSet<Key> = components
        .iter()
        .filter(|(owner, _)| owner.eq_ignore_ascii_case(&holding))
        .map(|(_, k)| k.clone())
        .collect();
    check_removals(store, env, name, &components, &new_keys, &[name, &holding]).await
}

type Parameters = (Vec<(String, String)>, Vec<(String, String)>);

async fn check_parameters(
    store: &Store,
    env: &str,
    solution: &Solution,
    options: &ImportOptions,
) -> Result<Parameters, Refusal> {
    let name = &solution.unique_name;
    let mut values = Vec::new();
    let mut bindings = Vec::new();
    let mut var_types: Vec<(String, i64)> = solution
        .environment_variables
        .iter()
        .map(|v| (v.schema_name.clone(), i64::from(v.kind.code())))
        .collect();
    let mut refs: Vec<(String, String)> = solution
        .connection_references
        .iter()
        .map(|c| (c.logical_name.clone(), c.connector_id.clone()))
        .collect();
    let needs_vars = options
        .component_parameters
        .iter()
        .any(|p| matches!(p, ComponentParameter::EnvironmentVariableValue { .. }));
    if needs_vars {
        var_types.extend(store.env_var_types(env).await?);
    }
    let mut connections: Option<Vec<ConnectionConfig>> = None;
    for p in &options.component_parameters {
        match p {
            ComponentParameter::EnvironmentVariableValue { schemaname, value } => {
                let Some((_, kind)) = var_types
                    .iter()
                    .find(|(s, _)| s.eq_ignore_ascii_case(schemaname))
                else {
                    return Err(Refusal::new(format!(
                        "ComponentParameters sets environment variable {schemaname}, which neither \
                         solution {name} nor the environment defines"
                    )));
                };
                check_value(schemaname, *kind, value)?;
                values.push((schemaname.clone(), value.clone()));
            }
            ComponentParameter::ConnectionReference {
                connectionreferencelogicalname: logical,
                connectionid,
            } => {
                if refs.len() == solution.connection_references.len() {
                    refs.extend(store.connection_reference_connectors(env).await?);
                }
                let Some((_, connector)) =
                    refs.iter().find(|(l, _)| l.eq_ignore_ascii_case(logical))
                else {
                    return Err(Refusal::new(format!(
                        "ComponentParameters binds connection reference {logical}, which neither \
                         solution {name} nor the environment defines"
                    )));
                };
                if connections.is_none() {
                    connections = Some(store.connections(env).await?);
                }
                let available = connections.as_deref().unwrap_or_default();
                let Some(conn) = available.iter().find(|c| c.id == *connectionid) else {
                    let ids: Vec<&str> = available
                        .iter()
                        .filter(|c| connector_name(&c.connector_id) == connector_name(connector))
                        .map(|c| c.id.as_str())
                        .collect();
                    return Err(Refusal::new(format!(
                        "connection reference {logical}: connection {connectionid} does not exist in \
                         environment {env}; {}",
                        if ids.is_empty() {
                            format!("create a connection for connector {connector} first")
                        } else {
                            format!("connections of connector {connector}: {}", ids.join(", "))
                        }
                    )));
                };
                if connector_name(&conn.connector_id) != connector_name(connector) {
                    return Err(Refusal::new(format!(
                        "connection reference {logical} needs a connection of connector {connector}, \
                         but connection {connectionid} is of connector {}",
                        conn.connector_id
                    )));
                }
                if !conn.status.eq_ignore_ascii_case("connected") {
                    return Err(Refusal::new(format!(
                        "connection reference {logical}: connection {connectionid} is in status {}; \
                         fix the connection or bind another one",
                        conn.status
                    )));
                }
                bindings.push((logical.clone(), connectionid.clone()));
            }
        }
    }
    Ok((values, bindings))
}

/// Values must fit the definition's type (codes 100000000..100000005).
fn check_value(schema: &str, kind: i64, value: &str) -> Result<(), Refusal> {
    let ok = match kind {
        100000001 => value.trim().parse::<f64>().is_ok(),
        100000002 => ["yes", "no", "true", "false"]
            .iter()
            .any(|b| b.eq_ignore_ascii_case(value.trim())),
        100000003 => serde_json::from_str::<serde_json::Value>(value).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let kind = match kind {
            100000001 => "a number",
            100000002 => "a boolean (yes or no)",
            _ => "JSON",
        };
        Err(Refusal::new(format!(
            "environment variable {schema} must be {kind}, got {value:?}"
        )))
    }
}

/// A copy of an unmanaged solution zip marked `<Managed>1</Managed>`: the
/// simulator's managed export (other entries are copied raw, byte for byte).
pub fn as_managed(zip: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))
        .map_err(|e| format!("stored zip is unreadable: {e}"))?;
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(zip.len())));
    let mut rewritten = false;
    for i in 0..archive.len() {
        let is_manifest = archive
            .name_for_index(i)
            .and_then(Result::ok)
            .is_some_and(|n| n.eq_ignore_ascii_case("solution.xml"));
        if !is_manifest {
            let entry = archive.by_index_raw(i).map_err(|e| e.to_string())?;
            out.raw_copy_file(entry).map_err(|e| e.to_string())?;
            continue;
        }
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().map_err(|e| e.to_string())?.to_string();
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| format!("solution.xml is not text: {e}"))?;
        let start = text
            .find("<Managed>")
            .ok_or("solution.xml has no <Managed> element")?;
        let end = text[start..]
            .find("</Managed>")
            .ok_or("solution.xml has no </Managed>")?
            + start;
        text.replace_range(start..end, "<Managed>1");
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        out.start_file(name, options).map_err(|e| e.to_string())?;
        out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        rewritten = true;
    }
    if !rewritten {
        return Err("stored zip has no solution.xml".into());
    }
    out.finish()
        .map(Cursor::into_inner)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(t: &str, schema: &str) -> DependencyEnd {
        DependencyEnd {
            component_type: ComponentType::parse(t),
            schema_name: Some(schema.into()),
            id: None,
            display_name: Some(format!("{schema} & co")),
            parent_display_name: None,
            parent_schema_name: None,
            solution: Some("Active".into()),
            package: None,
        }
    }

    #[test]
    fn missing_dependency_message_uses_dataverse_wording_and_escapes() {
        let m = slipway_solution::MissingDependency {
            required: end("1", "cat_request"),
            dependent: end("1", "cat_customer"),
        };
        let msg = missing_dependencies_message("ArchitectureReview", &[m]);
        assert!(msg.starts_with(
            "The following solution cannot be imported: ArchitectureReview. Some dependencies are missing. The missing dependencies are : <MissingDependencies><MissingDependency><Required type=\"1\" schemaName=\"cat_request\" displayName=\"cat_request &amp; co\""
        ), "{msg}");
        assert!(msg.ends_with("</MissingDependencies> , ProductUpdatesOnly : False"));
    }

    #[test]
    fn values_must_fit_their_type() {
        assert!(check_value("n", 100000001, "4.5").is_ok());
        assert!(check_value("n", 100000001, "four").is_err());
        assert!(check_value("b", 100000002, "yes").is_ok());
        assert!(check_value("b", 100000002, "maybe").is_err());
        assert!(check_value("j", 100000003, "{\"a\":1}").is_ok());
        assert!(check_value("j", 100000003, "{a").is_err());
        assert!(check_value("s", 100000000, "anything").is_ok());
    }

    #[test]
    fn connector_ids_compare_by_last_segment() {
        assert_eq!(
            connector_name("/providers/Microsoft.PowerApps/apis/shared_Office365"),
            connector_name("shared_office365")
        );
        assert_eq!(
            solution_unique_name("AppModuleWebResources (2.5)"),
            "AppModuleWebResources"
        );
    }
}
