//! The bounded zip layer: validates entry names once, looks entries up
//! case-insensitively, and inflates through a private `EntryReader`, which counts the
//! bytes actually produced (headers are never trusted) and stops at the
//! [`Limits`] for one entry, for the whole package and for the compression ratio.

use std::collections::HashMap;
use std::io::{self, Read, Seek};

use sha2::{Digest, Sha256};
use zip::ZipArchive;
use zip::result::ZipError;

use crate::error::SolutionError;

/// Caps that bound memory and time on hostile input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Most entries a package may hold.
    pub max_entries: usize,
    /// Most bytes one entry may inflate to.
    pub max_entry_bytes: u64,
    /// Most bytes all entries together may inflate to.
    pub max_total_bytes: u64,
    /// Most inflated bytes per compressed byte of one entry (beyond the first
    /// [`RATIO_GRACE_BYTES`], so tiny highly repetitive files stay legal).
    pub max_ratio: u64,
    /// Deepest XML element nesting accepted.
    pub max_xml_depth: usize,
}

/// Bytes an entry may inflate to before the ratio cap applies.
pub const RATIO_GRACE_BYTES: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 100_000,
            max_entry_bytes: 512 * 1024 * 1024,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_ratio: 200,
            max_xml_depth: 256,
        }
    }
}

/// A validated archive. `names[i]` is entry `i`'s name as written, with `\`
/// turned into `/`.
pub(crate) struct Archive<R> {
    zip: ZipArchive<R>,
    pub(crate) names: Vec<String>,
    by_lower: HashMap<String, usize>,
    limits: Limits,
    total: u64,
}

pub(crate) fn zip_error(entry: Option<&str>, e: ZipError) -> SolutionError {
    let message = match e {
        ZipError::CompressionMethodNotSupported(m) => format!(
            "compression method {} ({m}) is not supported; solution zips use deflate (re-export the solution, or re-zip it with deflate)",
            zip::CompressionMethod::name_from_u16(m)
        ),
        ZipError::InvalidArchive(ref m) if m.contains("EOCD") => {
            "not a zip file, or a truncated one (no end of central directory); re-export or re-download the solution".to_owned()
        }
        ZipError::InvalidPassword => {
            "the entry is encrypted; solution zips are never encrypted, re-export the solution".to_owned()
        }
        e => e.to_string(),
    };
    SolutionError::Zip {
        entry: entry.map(str::to_owned),
        message,
    }
}

impl<R: Read + Seek> Archive<R> {
    /// Reads the central directory and refuses unsafe, duplicate or too many entries.
    pub(crate) fn new(reader: R, limits: &Limits) -> Result<Self, SolutionError> {
        let zip = ZipArchive::new(reader).map_err(|e| zip_error(None, e))?;
        if zip.len() > limits.max_entries {
            return Err(SolutionError::LimitExceeded {
                entry: "zip central directory".into(),
                what: format!("{} entries", zip.len()),
                limit: limits.max_entries as u64,
            });
        }
        let mut names = Vec::with_capacity(zip.len());
        let mut by_lower = HashMap::with_capacity(zip.len());
        for (i, name) in zip.file_names().enumerate() {
            let name = name.map_err(|e| zip_error(None, e))?.replace('\\', "/");
            check_name(&name)?;
            if by_lower.insert(name.to_lowercase(), i).is_some() {
                return Err(SolutionError::DuplicateEntry { name });
            }
            names.push(name);
        }
        if zip.has_duplicate_names() {
            // The zip crate folds exact duplicates into one index; the count tells.
            return Err(SolutionError::DuplicateEntry {
                name: "(an entry named twice in the central directory)".into(),
            });
        }
        Ok(Archive {
            zip,
            names,
            by_lower,
            limits: limits.clone(),
            total: 0,
        })
    }

    /// Index of the entry with this name, compared case-insensitively.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_lowercase()).copied()
    }

    /// Opens entry `i` for bounded inflation.
    pub(crate) fn entry(
        &mut self,
        i: usize,
        hash: bool,
    ) -> Result<EntryReader<'_, R>, SolutionError> {
        let name = self.names.get(i).cloned().unwrap_or_default();
        let file = self
            .zip
            .by_index(i)
            .map_err(|e| zip_error(Some(&name), e))?;
        let compressed = file.compressed_size();
        Ok(EntryReader {
            file,
            name,
            read: 0,
            compressed,
            total: &mut self.total,
            limits: &self.limits,
            hasher: hash.then(Sha256::new),
        })
    }

    /// The underlying zip, for raw copies.
    pub(crate) fn zip_mut(&mut self) -> &mut ZipArchive<R> {
        &mut self.zip
    }
}

/// Refuses absolute names, `..` components, drive letters and NUL.
fn check_name(name: &str) -> Result<(), SolutionError> {
    let unsafe_name = name.is_empty()
        || name.contains('\0')
        || name.starts_with('/')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split('/').any(|c| c == "..");
    if unsafe_name {
        return Err(SolutionError::UnsafeEntryName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Inflates one entry, counting real output against the limits and
/// optionally hashing it.
pub(crate) struct EntryReader<'a, R: Read> {
    file: zip::read::ZipFile<'a, R>,
    pub(crate) name: String,
    read: u64,
    compressed: u64,
    total: &'a mut u64,
    limits: &'a Limits,
    hasher: Option<Sha256>,
}

impl<R: Read> EntryReader<'_, R> {
    fn limit(&self, what: String, limit: u64) -> io::Error {
        io::Error::other(SolutionError::LimitExceeded {
            entry: self.name.clone(),
            what,
            limit,
        })
    }

    /// Hex sha256 of everything read so far (call after reading to the end).
    pub(crate) fn finish_hash(self) -> Option<String> {
        self.hasher.map(|h| hex::encode(h.finalize()))
    }

    /// Reads the rest of the entry, hashing it, without keeping it;
    /// `scratch` is a reusable buffer (at least a few KiB).
    pub(crate) fn drain(&mut self, scratch: &mut [u8]) -> Result<(), SolutionError> {
        loop {
            match self.read(scratch) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_to_solution(e, &self.name)),
            }
        }
    }
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        *self.total += n as u64;
        if self.read > self.limits.max_entry_bytes {
            return Err(self.limit(
                format!("entry inflates past {} bytes", self.limits.max_entry_bytes),
                self.limits.max_entry_bytes,
            ));
        }
        if *self.total > self.limits.max_total_bytes {
            return Err(self.limit(
                format!(
                    "package inflates past {} bytes in total",
                    self.limits.max_total_bytes
                ),
                self.limits.max_total_bytes,
            ));
        }
        let allowed = self
            .compressed
            .max(1)
            .saturating_mul(self.limits.max_ratio)
            .saturating_add(RATIO_GRACE_BYTES);
        if self.read > allowed {
            return Err(self.limit(
                format!(
                    "compression ratio above {} ({} compressed bytes inflate past {})",
                    self.limits.max_ratio, self.compressed, self.read
                ),
                self.limits.max_ratio,
            ));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Turns an I/O error met while inflating back into the [`SolutionError`] it
/// carries (limits), or into a zip / encoding error naming the entry.
pub(crate) fn io_to_solution(e: io::Error, entry: &str) -> SolutionError {
    match e.downcast::<SolutionError>() {
        Ok(se) => se,
        Err(e) => match e.downcast::<ZipError>() {
            // the zip crate opens decompressors lazily and reports through io
            Ok(ze) => zip_error(Some(entry), ze),
            Err(e) => SolutionError::Zip {
                entry: Some(entry.to_owned()),
                message: e.to_string(),
            },
        },
    }
}
