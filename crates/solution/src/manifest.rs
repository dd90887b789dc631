//! solution.xml: the manifest (name, version, publisher, root components,
//! missing dependencies), read as a stream.

use std::io::BufRead;

use crate::error::SolutionError;
use crate::model::{
    ComponentType, DependencyEnd, LocalizedName, MissingDependency, Publisher, RootComponent,
    normalize_id,
};
use crate::version::Version;
use crate::xml::{Element, Visitor, walk};

/// What solution.xml says.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    pub unique_name: Option<String>,
    pub localized_names: Vec<LocalizedName>,
    pub version: Option<String>,
    pub managed: Option<String>,
    pub publisher: Publisher,
    pub package_version: Option<String>,
    pub root_components: Vec<RootComponent>,
    pub missing_dependencies: Vec<MissingDependency>,
    saw_manifest: bool,
    required: Option<DependencyEnd>,
    dependent: Option<DependencyEnd>,
    /// which end a `<package>` child belongs to
    in_end: Option<End>,
    /// `appName (version)` of the `<package>` being read
    package_attrs: Option<String>,
    entry: String,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Required,
    Dependent,
}

/// The parsed manifest fields that the rest of the crate needs.
pub(crate) struct ManifestFacts {
    pub unique_name: String,
    pub localized_names: Vec<LocalizedName>,
    pub version: Version,
    pub managed: bool,
    pub publisher: Publisher,
    pub package_version: Option<String>,
    pub root_components: Vec<RootComponent>,
    pub missing_dependencies: Vec<MissingDependency>,
}

fn localized(e: &Element<'_>) -> Result<Option<LocalizedName>, SolutionError> {
    let code = e
        .attr("languagecode")?
        .and_then(|c| c.trim().parse::<u32>().ok());
    let description = e.attr("description")?;
    Ok(code
        .zip(description)
        .map(|(language_code, description)| LocalizedName {
            language_code,
            description,
        }))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// One end of a missing dependency. The component is named by `schemaName`;
/// when the type is written as a name, by its alternate key instead:
/// `id.uniquename="x"` gives `x`, several `id.<attr>` attributes give
/// `attr=value,attr=value` (the platform's own notation for composite keys).
fn dependency_end(e: &Element<'_>) -> Result<DependencyEnd, SolutionError> {
    let ty = e.attr("type")?.unwrap_or_default();
    let alternate = e.attrs_with_prefix("id.")?;
    let alternate_name = match alternate.as_slice() {
        [] => None,
        [(k, v)] if k.eq_ignore_ascii_case("uniquename") => non_empty(Some(v.clone())),
        many => non_empty(Some(
            many.iter()
                .map(|(k, v)| format!("{k}={}", v.trim()))
                .collect::<Vec<_>>()
                .join(","),
        )),
    };
    Ok(DependencyEnd {
        component_type: ComponentType::parse(&ty),
        schema_name: non_empty(e.attr("schemaName")?).or(alternate_name),
        id: non_empty(e.attr("id")?).map(|i| normalize_id(&i)),
        display_name: non_empty(e.attr("displayName")?),
        parent_display_name: non_empty(e.attr("parentDisplayName")?),
        parent_schema_name: non_empty(e.attr("parentSchemaName")?),
        solution: non_empty(e.attr("solution")?),
        package: None,
    })
}

/// `<package appName="EnvironmentVariables" version="1.0.2406.4">text</package>`:
/// the text, else `appName (version)` from the attributes.
fn package_from_attrs(e: &Element<'_>) -> Result<Option<String>, SolutionError> {
    Ok(
        match (non_empty(e.attr("appName")?), non_empty(e.attr("version")?)) {
            (Some(a), Some(v)) => Some(format!("{a} ({v})")),
            (a, _) => a,
        },
    )
}

const MANIFEST: [&str; 2] = ["importexportxml", "solutionmanifest"];

impl Visitor for Manifest {
    fn start(&mut self, path: &[String], e: &Element<'_>) -> Result<bool, SolutionError> {
        let rel = if path.len() >= 2 && path[..2] == MANIFEST {
            &path[2..]
        } else {
            &[][..]
        };
        let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
        match (path.len(), rel.as_slice()) {
            (1, _) => {
                if path[0] != "importexportxml" {
                    return Err(SolutionError::MissingElement {
                        entry: self.entry.clone(),
                        element: format!("<ImportExportXml> root (found <{}>)", path[0]),
                    });
                }
                self.package_version = non_empty(e.attr("SolutionPackageVersion")?);
            }
            (2, []) if path[1] == "solutionmanifest" => self.saw_manifest = true,
            (_, ["uniquename"] | ["version"] | ["managed"]) => return Ok(true),
            (_, ["publisher", "uniquename"] | ["publisher", "customizationprefix"]) => {
                return Ok(true);
            }
            (_, ["localizednames", "localizedname"]) => self.localized_names.extend(localized(e)?),
            (_, ["publisher", "localizednames", "localizedname"]) => {
                self.publisher.localized_names.extend(localized(e)?)
            }
            (_, ["rootcomponents", "rootcomponent"]) => {
                let ty = e.attr("type")?.unwrap_or_default();
                self.root_components.push(RootComponent {
                    component_type: ComponentType::parse(&ty),
                    schema_name: non_empty(e.attr("schemaName")?),
                    id: non_empty(e.attr("id")?).map(|i| normalize_id(&i)),
                    behavior: e.attr("behavior")?.and_then(|b| b.trim().parse().ok()),
                });
            }
            (_, ["missingdependencies", "missingdependency"]) => {
                self.required = None;
                self.dependent = None;
            }
            (_, ["missingdependencies", "missingdependency", "required"]) => {
                self.required = Some(dependency_end(e)?);
                self.in_end = Some(End::Required);
            }
            (_, ["missingdependencies", "missingdependency", "dependent"]) => {
                self.dependent = Some(dependency_end(e)?);
                self.in_end = Some(End::Dependent);
            }
            (_, ["missingdependencies", "missingdependency", _, "package"]) => {
                self.package_attrs = package_from_attrs(e)?;
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    fn end(&mut self, path: &[String], text: Option<String>) -> Result<(), SolutionError> {
        if !(path.len() >= 2 && path[..2] == MANIFEST) {
            return Ok(());
        }
        let rel: Vec<&str> = path[2..].iter().map(String::as_str).collect();
        match rel.as_slice() {
            ["uniquename"] => self.unique_name = non_empty(text),
            ["version"] => self.version = non_empty(text),
            ["managed"] => self.managed = non_empty(text),
            ["publisher", "uniquename"] => {
                self.publisher.unique_name = text.unwrap_or_default().trim().to_owned()
            }
            ["publisher", "customizationprefix"] => {
                self.publisher.customization_prefix = text.unwrap_or_default().trim().to_owned()
            }
            ["missingdependencies", "missingdependency", _, "package"] => {
                let end = match self.in_end {
                    Some(End::Required) => self.required.as_mut(),
                    Some(End::Dependent) => self.dependent.as_mut(),
                    None => None,
                };
                let attrs = self.package_attrs.take();
                if let Some(end) = end {
                    end.package = non_empty(text).or(attrs);
                }
            }
            [
                "missingdependencies",
                "missingdependency",
                "required" | "dependent",
            ] => self.in_end = None,
            ["missingdependencies", "missingdependency"] => {
                match (self.required.take(), self.dependent.take()) {
                    (Some(required), Some(dependent)) => {
                        self.missing_dependencies.push(MissingDependency {
                            required,
                            dependent,
                        })
                    }
                    _ => {
                        return Err(SolutionError::MissingElement {
                            entry: self.entry.clone(),
                            element: "<Required> and <Dependent> in a <MissingDependency>".into(),
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Streams solution.xml and checks the required elements.
pub(crate) fn read_manifest<R: BufRead>(
    input: R,
    entry: &str,
    max_depth: usize,
) -> Result<ManifestFacts, SolutionError> {
    let mut m = Manifest {
        entry: entry.to_owned(),
        ..Manifest::default()
    };
    walk(input, entry, max_depth, &mut m)?;
    let missing = |element: &str| SolutionError::MissingElement {
        entry: entry.to_owned(),
        element: element.to_owned(),
    };
    if !m.saw_manifest {
        return Err(missing("<SolutionManifest>"));
    }
    let unique_name = m
        .unique_name
        .ok_or_else(|| missing("<SolutionManifest>/<UniqueName>"))?;
    let version_text = m
        .version
        .ok_or_else(|| missing("<SolutionManifest>/<Version>"))?;
    let version = Version::parse(&version_text).map_err(|e| SolutionError::InvalidValue {
        entry: entry.to_owned(),
        message: format!("<Version>: {e}"),
    })?;
    let managed = match m
        .managed
        .as_deref()
        .ok_or_else(|| missing("<SolutionManifest>/<Managed>"))?
    {
        "1" => true,
        // 2 ("both") appears only in unpacked sources; a zip holding it is
        // read as unmanaged, as `pac solution pack` defaults to.
        "0" | "2" => false,
        t if t.eq_ignore_ascii_case("true") => true,
        t if t.eq_ignore_ascii_case("false") => false,
        other => {
            return Err(SolutionError::InvalidValue {
                entry: entry.to_owned(),
                message: format!("<Managed> is {other:?}; expected 0 or 1"),
            });
        }
    };
    Ok(ManifestFacts {
        unique_name,
        localized_names: m.localized_names,
        version,
        managed,
        publisher: m.publisher,
        package_version: m.package_version,
        root_components: m.root_components,
        missing_dependencies: m.missing_dependencies,
    })
}
