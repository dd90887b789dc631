//! Errors of the reader. Every variant names the problem and, where possible,
//! the fix; none of them is ever a panic.

use thiserror::Error;

/// Why a solution package could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SolutionError {
    /// The zip is readable but holds no `solution.xml` at its root.
    #[error(
        "not a solution package: {reason}; export the solution from Dataverse (or `pac solution pack`) and pass that zip"
    )]
    NotASolution { reason: String },
    /// The zip container itself is corrupt, truncated, encrypted or uses an unsupported method.
    #[error("corrupt or unsupported zip{}: {message}", entry_suffix(.entry))]
    Zip {
        entry: Option<String>,
        message: String,
    },
    /// An XML entry is malformed or uses a forbidden construct (DOCTYPE, entities).
    #[error("invalid xml in {entry}: {message}")]
    Xml { entry: String, message: String },
    /// A configured [`crate::Limits`] value was exceeded.
    #[error(
        "limit exceeded in {entry}: {what} (limit {limit}); refusing the package, raise the limit only if the file is trusted"
    )]
    LimitExceeded {
        entry: String,
        what: String,
        limit: u64,
    },
    /// An entry name is absolute, climbs out with `..`, or holds a NUL.
    #[error(
        "unsafe entry name {name:?}: absolute paths, `..` and NUL are not allowed in a solution zip"
    )]
    UnsafeEntryName { name: String },
    /// Two entries have the same name (compared case-insensitively).
    #[error(
        "duplicate entry {name:?}: a solution zip must name each entry once (names compare case-insensitively)"
    )]
    DuplicateEntry { name: String },
    /// Text that is not valid UTF-8 (or JSON that is not valid).
    #[error("bad encoding in {entry}: {message}; solution files must be UTF-8")]
    Encoding { entry: String, message: String },
    /// A required element or attribute is absent or empty.
    #[error("missing {element} in {entry}")]
    MissingElement { entry: String, element: String },
    /// An element holds a value that cannot be understood.
    #[error("invalid value in {entry}: {message}")]
    InvalidValue { entry: String, message: String },
    /// Reading the file from disk failed. (The I/O error is part of the
    /// message rather than a `source`, so error chains print it once.)
    #[error("cannot open {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

fn entry_suffix(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(" (entry {e})"))
        .unwrap_or_default()
}

/// Why a version string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    /// Empty text.
    #[error("empty version; expected numbers separated by dots such as 1.0.0.1")]
    Empty,
    /// More than four parts.
    #[error("version {0:?} has more than four parts; expected major.minor[.build[.revision]]")]
    TooManyParts(String),
    /// Fewer than two parts.
    #[error("version {0:?} has only one part; expected at least major.minor such as 1.0")]
    TooFewParts(String),
    /// A part that is not a non-negative integer.
    #[error("version {version:?} has a part {part:?} that is not a non-negative integer")]
    BadPart { version: String, part: String },
}
