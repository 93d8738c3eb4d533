//! Blob storage: one trait for every byte that must outlive a node (uploaded packages, assets,
//! bundles), with a local-directory implementation. Object stores plug in behind the same trait.
//!
//! Keys are relative, `/`-separated paths; implementations must reject keys that escape their root.
//! Writes are atomic: a reader sees the old bytes or the new bytes, never a partial file.

use std::path::{Component, Path, PathBuf};

use futures::future::BoxFuture;

/// A blob storage failure.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    #[error("storage I/O error on {key}: {source}")]
    Io { key: String, source: std::io::Error },
}

/// Where package bytes, assets and bundles live.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing any previous value atomically.
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>>;
    /// Reads the value of `key`; `None` when absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>>;
    /// Whether `key` holds a value.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, BlobError>>;
    /// Removes `key`; removing an absent key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;
}

/// Blob storage in a local directory (`PLUGIN_STORAGE_LOCAL_ROOT`).
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBlobStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        let rel = Path::new(key);
        if key.is_empty()
            || key.contains('\\')
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(BlobError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(rel))
    }
}

fn io_err(key: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { key: key.to_string(), source }
}

impl BlobStore for LocalBlobStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io_err(key))?;
            }
            // Write to a unique temporary file beside the target, flush it, then rename over it.
            let tmp = path.with_file_name(format!(
                ".{}.{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
                uuid::Uuid::new_v4().simple()
            ));
            let write = async {
                let mut file = tokio::fs::File::create(&tmp).await?;
                tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
                file.sync_all().await?;
                tokio::fs::rename(&tmp, &path).await
            };
            if let Err(e) = write.await {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io_err(key)(e));
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            match tokio::fs::read(&path).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => Ok(None),
                // A name this file system cannot hold (too long) names no stored value.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidFilename => Ok(None),
                Err(e) => Err(io_err(key)(e)),
            }
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            Ok(tokio::fs::metadata(&path).await.map(|m| m.is_file()).unwrap_or(false))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(key)(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path());
        assert_eq!(store.get("a/b.bin").await.unwrap(), None);
        store.put("a/b.bin", b"hello").await.unwrap();
        assert!(store.exists("a/b.bin").await.unwrap());
        assert_eq!(store.get("a/b.bin").await.unwrap().as_deref(), Some(&b"hello"[..]));
        store.put("a/b.bin", b"bye").await.unwrap();
        assert_eq!(store.get("a/b.bin").await.unwrap().as_deref(), Some(&b"bye"[..]));
        store.delete("a/b.bin").await.unwrap();
        store.delete("a/b.bin").await.unwrap();
        assert!(!store.exists("a/b.bin").await.unwrap());
    }

    #[tokio::test]
    async fn overlong_names_are_absent_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path());
        let key = format!("packages/a/{}:1.0.0@{}", "n".repeat(255), "0".repeat(64));
        assert_eq!(store.get(&key).await.unwrap(), None);
        assert!(!store.exists(&key).await.unwrap());
    }

    #[tokio::test]
    async fn escaping_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path());
        for key in ["../x", "/etc/passwd", "a/../../x", "", "a\\b"] {
            assert!(matches!(store.put(key, b"x").await, Err(BlobError::InvalidKey(_))), "{key}");
        }
    }
}
