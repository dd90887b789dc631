//! Reads Dataverse solution packages (the zips `ExportSolution` and
//! `pac solution pack` produce) and answers what a deployment pipeline needs:
//! name, version, managed, publisher, root components, missing dependencies,
//! connection references, environment variables and which files make up each
//! component. It also re-versions a package, writes the deployment settings
//! file `pac solution create-settings` writes, and diffs two packages.
//!
//! Layout:
//! - [`archive`]: the bounded zip layer and [`Limits`]; every entry is inflated
//!   through a counting reader that enforces the per-entry, total and ratio
//!   caps on the bytes really produced (headers are never trusted); entry
//!   names are checked (no absolute paths, `..`, NUL or duplicates) and looked
//!   up case-insensitively.
//! - `xml` (private): a streaming quick-xml walker, no DOM; `manifest`
//!   (solution.xml), `customizations` (connection references), `envvars`
//!   (definitions and `environmentvariablevalues.json`) are visitors over it.
//! - `components` (private): maps entries to [`Component`]s by the packager's
//!   folder conventions (the mapping table is in this crate's README.md).
//! - `reader` (private): [`Solution::open`] and friends; [`ReadMode::Full`]
//!   inflates and hashes every entry (digests for diffs), [`ReadMode::Facts`]
//!   only the entries facts come from.
//! - [`version`]: [`Version`] parsing, ordering and bumping.
//! - [`reversion()`], [`settings`], [`diff`]: operations on packages.
//!
//! What it never does: no network, no database, no writes except the bytes it
//! returns; it never resolves XML entities or DTDs (any DOCTYPE is refused),
//! never builds a DOM, never keeps more than one entry's parse state in
//! memory, and never panics on input.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod archive;
mod components;
mod customizations;
pub mod diff;
mod envvars;
mod error;
mod manifest;
mod model;
mod reader;
pub mod reversion;
pub mod settings;
pub mod version;
mod xml;

pub use archive::Limits;
pub use error::{SolutionError, VersionError};
pub use model::{
    Component, ComponentKey, ComponentType, ConnectionReference, DependencyEnd,
    EnvironmentVariable, EnvironmentVariableType, LocalizedName, MissingDependency, Publisher,
    RootComponent, Solution,
};
pub use reader::ReadMode;
pub use reversion::reversion;
pub use version::{Version, VersionPart};
