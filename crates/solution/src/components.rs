//! Which zip entries make up which component, decided from entry names (the
//! packager's folder conventions) and the root components:
//!
//! | entries | component |
//! | --- | --- |
//! | `Workflows/<Name>-<GUID>.json` | the root component whose id is GUID, else `29:<guid>` |
//! | `CanvasApps/<schema>_DocumentUri.msapp`, `_BackgroundImageUri`, `_AdditionalUris*` | root component whose schema name prefixes the file, else `300:<schema>` |
//! | `WebResources/<name><GUID>` | root component with that id, else `61:<name>` |
//! | `Connector/<name>_<part>.<ext>` | root component whose schema name prefixes the file, else `372:<name>` |
//! | `environmentvariabledefinitions/<schema>/...` | `380:<schema>` |
//! | `PluginAssemblies/<name>-<GUID>/...` | root component with that id, else `91:<name-guid>` |
//! | `<folder>/<sub>/...` (bots, botcomponents, customapis, aiplugins, ...) | root component whose schema name or id is `<sub>`, else `<folder>:<sub>` (type is the folder name, lowercase) |
//! | `<folder>/<file>` | `<folder>:<file>` |
//! | other root-level files | `file:<name>` |
//!
//! solution.xml, customizations.xml and `[Content_Types].xml` belong to no
//! component; components that live only inside customizations.xml (tables,
//! forms, views, option sets...) have no files and an empty-input digest.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::model::{Component, ComponentKey, ComponentType, RootComponent, normalize_id};

/// The entries at the root of every package that belong to no component.
pub(crate) fn is_package_file(name: &str) -> bool {
    ["solution.xml", "customizations.xml", "[content_types].xml"]
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

/// A trailing `8-4-4-4-12` guid in `s`, lowercase, and the text before it.
fn trailing_guid(s: &str) -> Option<(&str, String)> {
    let n = s.len();
    if n < 36 || !s.is_char_boundary(n - 36) {
        return None;
    }
    let (head, g) = s.split_at(n - 36);
    let ok = g.bytes().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    ok.then(|| (head.trim_end_matches(['-', '_']), g.to_ascii_lowercase()))
}

fn stem(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(s, _)| s)
}

/// Assigns entries to components.
pub(crate) struct Mapper<'a> {
    roots: &'a [RootComponent],
}

impl<'a> Mapper<'a> {
    pub(crate) fn new(roots: &'a [RootComponent]) -> Self {
        Mapper { roots }
    }

    fn by_id(&self, guid: &str) -> Option<ComponentKey> {
        self.roots
            .iter()
            .find(|r| r.id.as_deref() == Some(guid))
            .and_then(RootComponent::key)
    }

    fn by_schema(&self, s: &str) -> Option<ComponentKey> {
        self.roots
            .iter()
            .find(|r| {
                r.schema_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(s))
                    || r.id.as_deref() == Some(&normalize_id(s))
            })
            .and_then(RootComponent::key)
    }

    /// Longest schema name of a root component of type `code` that prefixes `file` followed by `_`.
    fn by_prefix(&self, code: u32, file: &str) -> Option<ComponentKey> {
        let lower = file.to_ascii_lowercase();
        self.roots
            .iter()
            .filter(|r| r.component_type == ComponentType::Code(code))
            .filter_map(|r| r.schema_name.as_ref().map(|s| (r, s.to_ascii_lowercase())))
            .filter(|(_, s)| {
                lower
                    .strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.starts_with('_'))
            })
            .max_by_key(|(_, s)| s.len())
            .and_then(|(r, _)| r.key())
    }

    /// The component an entry belongs to; `None` for the package files.
    pub(crate) fn owner(&self, name: &str) -> Option<ComponentKey> {
        if is_package_file(name) {
            return None;
        }
        let segs: Vec<&str> = name.split('/').filter(|s| !s.is_empty()).collect();
        let key = |t: ComponentType, n: &str| ComponentKey::new(t, n);
        Some(match segs.as_slice() {
            [] => return None,
            [file] => key(ComponentType::Name("file".into()), file),
            [folder, rest @ ..] => {
                let folder_l = folder.to_ascii_lowercase();
                let first = rest[0];
                let single = rest.len() == 1;
                match folder_l.as_str() {
                    "workflows" => match trailing_guid(stem(first)) {
                        Some((_, g)) => self
                            .by_id(&g)
                            .unwrap_or_else(|| key(ComponentType::Code(29), &g)),
                        None => key(ComponentType::Code(29), stem(first)),
                    },
                    "canvasapps" if single => self.by_prefix(300, first).unwrap_or_else(|| {
                        let base = ["_DocumentUri", "_BackgroundImageUri", "_AdditionalUris"]
                            .iter()
                            .filter_map(|m| first.find(m))
                            .min()
                            .map_or(stem(first), |i| &first[..i]);
                        key(ComponentType::Code(300), base)
                    }),
                    "webresources" => {
                        let flat = rest.join("/");
                        match trailing_guid(&flat) {
                            Some((head, g)) => self
                                .by_id(&g)
                                .unwrap_or_else(|| key(ComponentType::Code(61), head)),
                            None => key(ComponentType::Code(61), &flat),
                        }
                    }
                    "connector" if single => self
                        .by_prefix(372, first)
                        .or_else(|| self.by_prefix(371, first))
                        .unwrap_or_else(|| {
                            let s = stem(first);
                            key(
                                ComponentType::Code(372),
                                s.rsplit_once('_').map_or(s, |(h, _)| h),
                            )
                        }),
                    "environmentvariabledefinitions" => key(ComponentType::Code(380), first),
                    _ => {
                        let found = trailing_guid(first)
                            .and_then(|(_, g)| self.by_id(&g))
                            .or_else(|| self.by_schema(first));
                        found.unwrap_or_else(|| {
                            let t = if folder_l == "pluginassemblies" {
                                ComponentType::Code(91)
                            } else {
                                ComponentType::Name(folder_l.clone())
                            };
                            key(t, first)
                        })
                    }
                }
            }
        })
    }
}

/// Builds the component list: root components first (in manifest order),
/// then components found only through their files (in zip order), each with
/// its files and digest. `files` holds (entry name, hex sha256) in zip order;
/// a component gets a digest only when every one of its files has one.
pub(crate) fn build(
    roots: &[RootComponent],
    files: &[(String, Option<String>)],
    digests: bool,
) -> Vec<Component> {
    let mapper = Mapper::new(roots);
    let mut order: Vec<ComponentKey> = Vec::new();
    let mut members: HashMap<ComponentKey, Vec<usize>> = HashMap::new();
    for key in roots.iter().filter_map(RootComponent::key) {
        if !members.contains_key(&key) {
            members.insert(key.clone(), Vec::new());
            order.push(key);
        }
    }
    for (i, (name, _)) in files.iter().enumerate() {
        if let Some(key) = mapper.owner(name) {
            let list = members.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Vec::new()
            });
            list.push(i);
        }
    }
    order
        .into_iter()
        .map(|key| {
            let idx = members.remove(&key).unwrap_or_default();
            let mut sorted: Vec<&(String, Option<String>)> =
                idx.iter().map(|&i| &files[i]).collect();
            sorted.sort_by_key(|(n, _)| n.to_ascii_lowercase());
            let mut h = Sha256::new();
            let mut complete = digests;
            for (n, d) in sorted {
                h.update(n.to_ascii_lowercase().as_bytes());
                h.update([0]);
                complete &= d.is_some();
                h.update(d.as_deref().unwrap_or_default().as_bytes());
                h.update([0]);
            }
            Component {
                key,
                files: idx.iter().map(|&i| files[i].0.clone()).collect(),
                sha256: complete.then(|| hex::encode(h.finalize())),
            }
        })
        .collect()
}
