#![allow(clippy::unwrap_used)]
//! Every behaviour runs against a fresh local folder store and an in-memory
//! store through the same test body.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use slipway_artifacts::{ArtifactError, ArtifactId, ArtifactStore};
use tempfile::TempDir;

/// A store under test plus raw access to what it wrote, to count and damage objects.
struct Fixture {
    store: ArtifactStore,
    raw: Arc<dyn ObjectStore>,
    /// Set for the local store: the folder it lives in.
    dir: Option<TempDir>,
}

impl Fixture {
    async fn local() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        let store = ArtifactStore::open(&url).await.unwrap();
        let raw = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("store"))
                .unwrap(),
        );
        Fixture {
            store,
            raw,
            dir: Some(dir),
        }
    }

    fn memory() -> Fixture {
        let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = ArtifactStore::new(raw.clone(), Path::default());
        Fixture {
            store,
            raw,
            dir: None,
        }
    }

    async fn object_count(&self) -> usize {
        self.raw
            .list(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len()
    }

    /// Replaces an artifact's stored bytes, as a failing disk or a bad actor would.
    async fn corrupt(&self, id: &ArtifactId, bytes: &'static [u8]) {
        let rel = format!("sha256/{}/{}", &id.as_str()[..2], id);
        match &self.dir {
            Some(dir) => std::fs::write(dir.path().join("store").join(rel), bytes).unwrap(),
            None => {
                self.raw.put(&Path::from(rel), bytes.into()).await.unwrap();
            }
        }
    }
}

/// Runs one async test body against both backends.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn local() {
                ($body)(Fixture::local().await).await
            }
            #[tokio::test]
            async fn memory() {
                ($body)(Fixture::memory()).await
            }
        }
    };
}

fn big_body() -> Bytes {
    (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

both!(round_trip_multi_mb, |f: Fixture| async move {
    let body = big_body();
    let id = f.store.put(body.clone()).await.unwrap();
    assert_eq!(id, ArtifactId::of(&body));
    assert!(f.store.exists(&id).await.unwrap());
    assert_eq!(f.store.size(&id).await.unwrap(), body.len() as u64);
    assert_eq!(f.store.get(&id).await.unwrap(), body);
});

both!(same_bytes_twice_one_object, |f: Fixture| async move {
    let first = f
        .store
        .put(Bytes::from_static(b"solution zip"))
        .await
        .unwrap();
    let second = f
        .store
        .put(Bytes::from_static(b"solution zip"))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(f.object_count().await, 1);
    let paths: Vec<_> = f
        .raw
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        paths,
        vec![format!("sha256/{}/{}", &first.as_str()[..2], first)]
    );
});

both!(unknown_id_is_not_found, |f: Fixture| async move {
    let id = ArtifactId::of(b"never stored");
    assert!(
        matches!(f.store.get(&id).await, Err(ArtifactError::NotFound { id: ref got }) if *got == id)
    );
    assert!(matches!(
        f.store.size(&id).await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert!(!f.store.exists(&id).await.unwrap());
});

both!(corrupt_object_is_refused, |f: Fixture| async move {
    let id = f
        .store
        .put(Bytes::from_static(b"the real artifact"))
        .await
        .unwrap();
    f.corrupt(&id, b"tampered").await;
    let err = f.store.get(&id).await.unwrap_err();
    match &err {
        ArtifactError::Corrupt { id: got, actual } => {
            assert_eq!(got, &id);
            assert_eq!(actual, &ArtifactId::of(b"tampered"));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(id.as_str()) && message.contains(ArtifactId::of(b"tampered").as_str()),
        "{message}"
    );
});

#[test]
fn invalid_ids_are_refused() {
    let upper = ArtifactId::of(b"x").as_str().to_uppercase();
    let non_hex = format!("{}g", &ArtifactId::of(b"x").as_str()[..63]);
    for bad in [
        "../etc/passwd",
        upper.as_str(),
        "abc123",
        non_hex.as_str(),
        "",
    ] {
        let err = bad.parse::<ArtifactId>().unwrap_err();
        assert!(
            matches!(err, ArtifactError::InvalidId { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("64 lowercase hex"), "{err}");
    }
    let good = ArtifactId::of(b"x");
    assert_eq!(good.as_str().parse::<ArtifactId>().unwrap(), good);
}

#[tokio::test]
async fn unsupported_scheme_names_the_supported_ones() {
    for url in ["ftp://host/dir", "gs://bucket", "file://relative/dir", ""] {
        let err = ArtifactStore::open(url).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ArtifactError::UnsupportedUrl { .. }),
            "{url}: {message}"
        );
        for scheme in ["file://", "memory://", "s3://"] {
            assert!(message.contains(scheme), "{url}: {message}");
        }
    }
}

#[cfg(not(feature = "s3"))]
#[tokio::test]
async fn s3_without_the_feature_says_how_to_enable_it() {
    let err = ArtifactStore::open("s3://bucket/prefix").await.unwrap_err();
    assert!(matches!(err, ArtifactError::S3NotEnabled { .. }), "{err:?}");
    assert!(err.to_string().contains("`s3` feature"), "{err}");
}

#[tokio::test]
async fn local_store_survives_reopening_from_a_plain_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b");
    let path = path.to_str().unwrap();
    let id = {
        let store = ArtifactStore::open(path).await.unwrap();
        store
            .put(Bytes::from_static(b"kept across restarts"))
            .await
            .unwrap()
    };
    let reopened = ArtifactStore::open(&format!("file://{path}"))
        .await
        .unwrap();
    assert_eq!(
        reopened.get(&id).await.unwrap(),
        Bytes::from_static(b"kept across restarts")
    );
}

#[tokio::test]
async fn memory_url_opens_an_empty_store() {
    let store = ArtifactStore::open("memory://").await.unwrap();
    let id = ArtifactId::of(b"y");
    assert!(!store.exists(&id).await.unwrap());
    assert_eq!(store.put(Bytes::from_static(b"y")).await.unwrap(), id);
    assert!(store.exists(&id).await.unwrap());
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_url_builds_a_store_and_refuses_a_missing_bucket() {
    // Building needs no network; credentials are read lazily from AWS_* variables.
    ArtifactStore::open("s3://artifacts/slipway/")
        .await
        .unwrap();
    let err = ArtifactStore::open("s3://").await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::UnsupportedUrl { .. }),
        "{err:?}"
    );
}
