//! What changes between two packages (or between the installed components of
//! an environment and a package): components added, removed and changed (by
//! the digest of their files), connection references and environment
//! variables added or removed.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{Component, ComponentKey, ConnectionReference, EnvironmentVariable, Solution};
use crate::version::Version;

/// The differences, each list sorted by key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SolutionDiff {
    /// Versions (old, new); `None` on the old side when diffing against installed components.
    pub old_version: Option<Version>,
    pub new_version: Option<Version>,
    /// Unique names (old, new); they differ when two different solutions are compared.
    pub old_unique_name: Option<String>,
    pub new_unique_name: Option<String>,
    pub components_added: Vec<ComponentKey>,
    pub components_removed: Vec<ComponentKey>,
    /// Present on both sides with different file contents.
    pub components_changed: Vec<ComponentKey>,
    /// True when customizations.xml differs (tables, forms, views... live there).
    pub customizations_changed: bool,
    pub connection_references_added: Vec<ConnectionReference>,
    pub connection_references_removed: Vec<ConnectionReference>,
    pub environment_variables_added: Vec<EnvironmentVariable>,
    pub environment_variables_removed: Vec<EnvironmentVariable>,
}

impl SolutionDiff {
    /// True when nothing at all differs (versions aside).
    pub fn is_empty(&self) -> bool {
        self.components_added.is_empty()
            && self.components_removed.is_empty()
            && self.components_changed.is_empty()
            && !self.customizations_changed
            && self.connection_references_added.is_empty()
            && self.connection_references_removed.is_empty()
            && self.environment_variables_added.is_empty()
            && self.environment_variables_removed.is_empty()
    }
}

/// Items of `a` whose key is not among `b`'s keys, sorted by key.
fn missing_from<T: Clone>(a: &[T], b: &[T], key: impl Fn(&T) -> String) -> Vec<T> {
    let keys: HashSet<String> = b.iter().map(&key).collect();
    let mut out: Vec<T> = a
        .iter()
        .filter(|x| !keys.contains(&key(x)))
        .cloned()
        .collect();
    out.sort_by_key(|x| key(x));
    out
}

fn sorted(mut v: Vec<ComponentKey>) -> Vec<ComponentKey> {
    v.sort();
    v.dedup();
    v
}

/// Compares two packages. Changed components need digests on both sides:
/// read the packages with [`Solution::open`] / [`Solution::from_bytes`]
/// (not `open_facts`), else `components_changed` stays empty.
pub fn diff(old: &Solution, new: &Solution) -> SolutionDiff {
    let old_c: HashMap<&ComponentKey, &Component> =
        old.components.iter().map(|c| (&c.key, c)).collect();
    let new_c: HashMap<&ComponentKey, &Component> =
        new.components.iter().map(|c| (&c.key, c)).collect();
    let cref = |c: &ConnectionReference| c.logical_name.to_ascii_lowercase();
    let evar = |e: &EnvironmentVariable| e.schema_name.to_ascii_lowercase();
    SolutionDiff {
        old_version: Some(old.version.clone()),
        new_version: Some(new.version.clone()),
        old_unique_name: Some(old.unique_name.clone()),
        new_unique_name: Some(new.unique_name.clone()),
        components_added: sorted(
            new_c
                .keys()
                .filter(|k| !old_c.contains_key(*k))
                .map(|k| (*k).clone())
                .collect(),
        ),
        components_removed: sorted(
            old_c
                .keys()
                .filter(|k| !new_c.contains_key(*k))
                .map(|k| (*k).clone())
                .collect(),
        ),
        components_changed: sorted(
            new_c
                .iter()
                .filter(|(k, c)| {
                    old_c.get(*k).is_some_and(|o| {
                        o.sha256.is_some() && c.sha256.is_some() && o.sha256 != c.sha256
                    })
                })
                .map(|(k, _)| (*k).clone())
                .collect(),
        ),
        customizations_changed: old.customizations_sha256 != new.customizations_sha256,
        connection_references_added: missing_from(
            &new.connection_references,
            &old.connection_references,
            cref,
        ),
        connection_references_removed: missing_from(
            &old.connection_references,
            &new.connection_references,
            cref,
        ),
        environment_variables_added: missing_from(
            &new.environment_variables,
            &old.environment_variables,
            evar,
        ),
        environment_variables_removed: missing_from(
            &old.environment_variables,
            &new.environment_variables,
            evar,
        ),
    }
}

/// Compares the components installed in an environment (as keys) with a
/// package: what the import would add, and what an upgrade would remove.
/// Changes cannot be told without the installed files, so `components_changed`
/// stays empty.
pub fn diff_installed(installed: &[ComponentKey], new: &Solution) -> SolutionDiff {
    let inst: HashSet<&ComponentKey> = installed.iter().collect();
    let keys: HashSet<&ComponentKey> = new.components.iter().map(|c| &c.key).collect();
    SolutionDiff {
        new_version: Some(new.version.clone()),
        new_unique_name: Some(new.unique_name.clone()),
        components_added: sorted(
            keys.iter()
                .filter(|k| !inst.contains(*k))
                .map(|k| (*k).clone())
                .collect(),
        ),
        components_removed: sorted(
            inst.iter()
                .filter(|k| !keys.contains(*k))
                .map(|k| (*k).clone())
                .collect(),
        ),
        ..SolutionDiff::default()
    }
}
