//! One pass over the package: the manifest first, then every other entry in
//! zip order, each inflated once through the bounded [`EntryReader`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use crate::archive::{Archive, Limits, io_to_solution};
use crate::components;
use crate::customizations::read_connection_references;
use crate::envvars::{read_definition, read_value};
use crate::error::SolutionError;
use crate::manifest::read_manifest;
use crate::model::Solution;

/// How much of a package [`Solution::from_reader_mode`] inflates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Every entry, each hashed: components carry digests, so diffs can tell
    /// changed components; every entry's data is checked.
    Full,
    /// Only the entries facts come from (solution.xml, customizations.xml,
    /// environment variables); components carry no digests.
    Facts,
}

const BUF: usize = 64 * 1024;
/// Largest `environmentvariablevalues.json` read into memory (values are short strings).
const MAX_VALUE_JSON: u64 = 4 * 1024 * 1024;

/// What kind of package-level entry a name is.
enum Kind<'a> {
    Manifest,
    Customizations,
    EnvDefinition { folder: &'a str },
    EnvValue { folder: &'a str },
    Directory,
    Other,
}

fn kind(name: &str) -> Kind<'_> {
    if name.ends_with('/') {
        return Kind::Directory;
    }
    if name.eq_ignore_ascii_case("solution.xml") {
        return Kind::Manifest;
    }
    if name.eq_ignore_ascii_case("customizations.xml") {
        return Kind::Customizations;
    }
    let segs: Vec<&str> = name.split('/').collect();
    match segs.as_slice() {
        [top, folder, file] if top.eq_ignore_ascii_case("environmentvariabledefinitions") => {
            if file.eq_ignore_ascii_case("environmentvariabledefinition.xml") {
                Kind::EnvDefinition { folder }
            } else if file.eq_ignore_ascii_case("environmentvariablevalues.json") {
                Kind::EnvValue { folder }
            } else {
                Kind::Other
            }
        }
        _ => Kind::Other,
    }
}

fn not_a_solution<R>(archive: &Archive<R>) -> SolutionError {
    let names = &archive.names;
    let has = |n: &str| names.iter().any(|x| x.eq_ignore_ascii_case(n));
    let reason = if let Some(nested) = names
        .iter()
        .find(|n| n.to_ascii_lowercase().ends_with("/solution.xml"))
    {
        format!(
            "solution.xml is not at the root but at {nested}; zip the contents of that folder instead"
        )
    } else if has("data.xml") || has("data_schema.xml") {
        "no solution.xml at the root; data.xml/data_schema.xml make this configuration-migration data, import it with the data migration tool".to_owned()
    } else if names.is_empty() {
        "the zip is empty".to_owned()
    } else {
        let sample: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        format!(
            "no solution.xml at the root (the zip holds {} entries, e.g. {})",
            names.len(),
            sample.join(", ")
        )
    };
    SolutionError::NotASolution { reason }
}

impl Solution {
    /// Reads a solution zip from disk.
    pub fn open(path: impl AsRef<Path>, limits: &Limits) -> Result<Solution, SolutionError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|error| SolutionError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Solution::from_reader(BufReader::new(file), limits)
    }

    /// Reads a solution zip held in memory.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Solution, SolutionError> {
        Solution::from_reader(Cursor::new(bytes), limits)
    }

    /// Reads the facts of a solution zip on disk without inflating the
    /// entries no fact comes from (flows, apps, web resources...): much
    /// faster on large packages, but components carry no digests, and
    /// corruption inside those entries goes unnoticed. What `inspect` uses.
    pub fn open_facts(path: impl AsRef<Path>, limits: &Limits) -> Result<Solution, SolutionError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|error| SolutionError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Solution::from_reader_mode(BufReader::new(file), limits, ReadMode::Facts)
    }

    /// Reads a solution zip from any seekable source (every entry, with digests).
    pub fn from_reader<R: Read + Seek>(
        reader: R,
        limits: &Limits,
    ) -> Result<Solution, SolutionError> {
        Solution::from_reader_mode(reader, limits, ReadMode::Full)
    }

    /// Reads a solution zip from any seekable source, as much as `mode` says.
    pub fn from_reader_mode<R: Read + Seek>(
        reader: R,
        limits: &Limits,
        mode: ReadMode,
    ) -> Result<Solution, SolutionError> {
        let digests = mode == ReadMode::Full;
        let mut archive = Archive::new(reader, limits)?;
        let Some(manifest_idx) = archive.find("solution.xml") else {
            return Err(not_a_solution(&archive));
        };
        let depth = limits.max_xml_depth;
        let manifest = {
            let entry = archive.entry(manifest_idx, false)?;
            let name = entry.name.clone();
            read_manifest(BufReader::with_capacity(BUF, entry), &name, depth)?
        };

        let mut connection_references = Vec::new();
        let mut customizations_sha256 = None;
        let mut env_vars = Vec::new();
        let mut env_values: HashMap<String, Option<String>> = HashMap::new();
        let mut files: Vec<(String, Option<String>)> = Vec::new();
        let mut scratch = vec![0u8; BUF];
        for i in 0..archive.names.len() {
            let name = archive.names[i].clone();
            let mut entry = match kind(&name) {
                Kind::Manifest | Kind::Directory => continue,
                Kind::Other if !digests => {
                    files.push((name, None));
                    continue;
                }
                _ => archive.entry(i, digests)?,
            };
            match kind(&name) {
                Kind::Customizations => {
                    let buffered = BufReader::with_capacity(BUF, &mut entry);
                    connection_references = read_connection_references(buffered, &name, depth)?;
                    if digests {
                        entry.drain(&mut scratch)?;
                        customizations_sha256 = entry.finish_hash();
                    }
                    continue;
                }
                Kind::EnvDefinition { folder } => {
                    let buffered = BufReader::with_capacity(BUF, &mut entry);
                    env_vars.push((
                        folder.to_ascii_lowercase(),
                        read_definition(buffered, &name, folder, depth)?,
                    ));
                    if digests {
                        entry.drain(&mut scratch)?;
                    }
                }
                Kind::EnvValue { folder } => {
                    let mut bytes = Vec::new();
                    (&mut entry)
                        .take(MAX_VALUE_JSON + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| io_to_solution(e, &name))?;
                    if bytes.len() as u64 > MAX_VALUE_JSON {
                        return Err(SolutionError::LimitExceeded {
                            entry: name,
                            what: format!(
                                "environment variable value file larger than {MAX_VALUE_JSON} bytes"
                            ),
                            limit: MAX_VALUE_JSON,
                        });
                    }
                    env_values.insert(folder.to_ascii_lowercase(), read_value(&bytes, &name)?);
                }
                _ => entry.drain(&mut scratch)?,
            }
            files.push((name, entry.finish_hash()));
        }
        let environment_variables = env_vars
            .into_iter()
            .map(|(folder, mut var)| {
                var.current_value = env_values.remove(&folder).flatten();
                var
            })
            .collect();
        let components = components::build(&manifest.root_components, &files, digests);
        Ok(Solution {
            unique_name: manifest.unique_name,
            localized_names: manifest.localized_names,
            version: manifest.version,
            managed: manifest.managed,
            publisher: manifest.publisher,
            package_version: manifest.package_version,
            root_components: manifest.root_components,
            missing_dependencies: manifest.missing_dependencies,
            connection_references,
            environment_variables,
            components,
            customizations_sha256,
        })
    }
}
