//! Content-addressed artifact store: the exporter keeps each exported solution
//! zip here under the sha256 of its bytes, and every later stage reads the very
//! same bytes back by that id (the artifact that is validated is the artifact
//! that is imported, byte for byte).
//!
//! Backends come from [`object_store`]: a local folder (the default), memory
//! (tests) and, behind the `s3` feature, S3-compatible storage (AWS, MinIO).
//!
//! Layout: an artifact with id `abcd…` lives at `{prefix}/sha256/ab/abcd…`
//! (the first two hex digits fan the objects out over 256 folders).
//!
//! Writes are atomic: every backend's `put` either publishes the whole object
//! under its final name or nothing (the local store writes a staging file,
//! fsyncs it and renames it into place), so a crash never leaves a half-written
//! artifact under an id.
//!
//! Never: returns bytes whose sha256 does not match the id asked for (a
//! corrupted object is an error naming it); accepts an id that is not 64
//! lowercase hex digits (so an id can never be a path such as `../x`); deletes
//! or rewrites an artifact that is already stored.

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The URL forms [`ArtifactStore::open`] understands, for error messages.
const SUPPORTED: &str =
    "file:///absolute/dir, a plain directory path, memory://, s3://bucket/prefix (feature `s3`)";

/// A sha256 in lowercase hex: the name of an artifact. Parsing refuses
/// anything else, so an id is always safe to use as an object name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactId(String);

impl ArtifactId {
    /// The id `bytes` are stored under.
    pub fn of(bytes: &[u8]) -> ArtifactId {
        ArtifactId(hex::encode(Sha256::digest(bytes)))
    }

    /// The 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ArtifactId {
    type Err = ArtifactError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let is_sha256 = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_sha256 {
            Ok(ArtifactId(s.to_owned()))
        } else {
            Err(ArtifactError::InvalidId {
                given: s.to_owned(),
            })
        }
    }
}

impl TryFrom<String> for ArtifactId {
    type Error = ArtifactError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ArtifactId> for String {
    fn from(id: ArtifactId) -> String {
        id.0
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What can go wrong opening, writing or reading the store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The store URL has a scheme this build does not support.
    #[error("unsupported artifact store url `{url}`: use one of {SUPPORTED}")]
    UnsupportedUrl { url: String },
    /// An `s3://` URL given to a build without the `s3` feature.
    #[error(
        "artifact store url `{url}` needs S3 support: build slipway-artifacts with the `s3` feature"
    )]
    S3NotEnabled { url: String },
    /// The local store folder could not be created.
    #[error("cannot create artifact store folder `{dir}`: {source}")]
    CreateDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// No artifact is stored under this id.
    #[error("artifact {id} not found")]
    NotFound { id: ArtifactId },
    /// The stored bytes do not hash to their id: the object is damaged.
    #[error("artifact {id} is corrupt: its bytes hash to {actual}")]
    Corrupt { id: ArtifactId, actual: ArtifactId },
    /// A string that is not 64 lowercase hex digits was given as an id.
    #[error("invalid artifact id `{given}`: expected a sha256 as 64 lowercase hex digits")]
    InvalidId { given: String },
    /// The backend failed (I/O, network, permissions).
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
}

/// A content-addressed store of artifacts over any [`ObjectStore`]. Cheap to
/// clone (the backend is shared).
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ArtifactStore {
    /// Opens the store a URL names:
    /// - `file:///abs/dir` or a plain path: a local folder, created if absent;
    /// - `memory://`: an empty in-memory store (tests);
    /// - `s3://bucket/prefix` (feature `s3`): S3-compatible storage, with
    ///   credentials, region and endpoint from the usual `AWS_*` variables
    ///   (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for MinIO).
    ///
    /// Anything else is an error naming the supported forms.
    pub async fn open(url: &str) -> Result<ArtifactStore, ArtifactError> {
        if url == "memory://" {
            return Ok(Self::new(Arc::new(InMemory::new()), Path::default()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return open_s3(url, rest);
        }
        let dir = match url.strip_prefix("file://") {
            Some(dir) if dir.starts_with('/') => dir,
            None if !url.is_empty() && !url.contains("://") => url,
            _ => {
                return Err(ArtifactError::UnsupportedUrl {
                    url: url.to_owned(),
                });
            }
        };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| ArtifactError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        // fsync: an artifact is what gets deployed, durability beats write speed.
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Ok(Self::new(Arc::new(local), Path::default()))
    }

    /// Wraps an already built backend (e.g. one configured by the caller),
    /// keeping artifacts under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> ArtifactStore {
        ArtifactStore { store, prefix }
    }

    /// Stores `bytes` under their sha256 and returns it. Storing bytes that are
    /// already there is a no-op, so a redelivered export costs one lookup.
    pub async fn put(&self, bytes: Bytes) -> Result<ArtifactId, ArtifactError> {
        let id = ArtifactId::of(&bytes);
        if !self.exists(&id).await? {
            // Each backend's put is atomic (see the crate docs); two writers racing
            // on one id write identical bytes, so either winning is correct.
            self.store
                .put(&self.path(&id), PutPayload::from_bytes(bytes))
                .await?;
        }
        Ok(id)
    }

    /// Reads an artifact back after checking its bytes still hash to `id`.
    pub async fn get(&self, id: &ArtifactId) -> Result<Bytes, ArtifactError> {
        let bytes = match self.store.get(&self.path(id)).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ArtifactError::NotFound { id: id.clone() });
            }
            Err(other) => return Err(other.into()),
        };
        let actual = ArtifactId::of(&bytes);
        if &actual != id {
            return Err(ArtifactError::Corrupt {
                id: id.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Whether an artifact is stored under `id` (its bytes are not read).
    pub async fn exists(&self, id: &ArtifactId) -> Result<bool, ArtifactError> {
        match self.size(id).await {
            Ok(_) => Ok(true),
            Err(ArtifactError::NotFound { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// The stored size in bytes, without reading the artifact.
    pub async fn size(&self, id: &ArtifactId) -> Result<u64, ArtifactError> {
        match self.store.head(&self.path(id)).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => {
                Err(ArtifactError::NotFound { id: id.clone() })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// `{prefix}/sha256/{first two hex}/{id}`.
    fn path(&self, id: &ArtifactId) -> Path {
        self.prefix
            .clone()
            .join("sha256")
            .join(&id.as_str()[..2])
            .join(id.as_str())
    }
}

#[cfg(feature = "s3")]
fn open_s3(url: &str, rest: &str) -> Result<ArtifactStore, ArtifactError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ArtifactError::UnsupportedUrl {
            url: url.to_owned(),
        });
    }
    // reqwest is built without a TLS provider; the workspace uses ring.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()?;
    Ok(ArtifactStore::new(
        Arc::new(s3),
        Path::parse(prefix.trim_matches('/')).map_err(object_store::Error::from)?,
    ))
}

#[cfg(not(feature = "s3"))]
fn open_s3(url: &str, _rest: &str) -> Result<ArtifactStore, ArtifactError> {
    Err(ArtifactError::S3NotEnabled {
        url: url.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_known_bytes() {
        assert_eq!(
            ArtifactId::of(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn id_serializes_as_a_string_and_refuses_bad_ones() {
        let id = ArtifactId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ArtifactId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ArtifactId>("\"../etc/passwd\"").is_err());
    }
}
