//! Blob storage: one trait for every byte that must outlive a node (uploaded packages, assets,
//! bundles), with a local-directory implementation. Object stores (`super::object`) plug in behind
//! the same trait.
//!
//! Keys are relative, `/`-separated paths; implementations must reject keys that escape their root.
//! Writes are atomic: a reader sees the old bytes or the new bytes, never a partial file or object.
//! Besides the in-memory `put`/`get`, the trait streams between a blob and a local file
//! (`put_file`/`get_to_file`) so large blobs need not be held in memory whole.

use std::path::{Component, Path, PathBuf};

use futures::future::BoxFuture;
use std::future::Future;

/// A blob storage failure.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    #[error("storage I/O error on {key}: {source}")]
    Io { key: String, source: std::io::Error },
    #[error("object storage error on {key}: {source}")]
    Object { key: String, source: Box<object_store::Error> },
}

/// Rejects keys that are empty, contain `\\` or have `.`/`..`/absolute components.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let rel = Path::new(key);
    if key.is_empty() || key.contains('\\') || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(BlobError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// Writes `target` through a temporary file beside it that `fill` writes and that is renamed over
/// `target` only when `fill` succeeded (and removed otherwise).
pub(crate) async fn write_atomically<F, Fut>(target: &Path, key: &str, fill: F) -> Result<(), BlobError>
where
    F: FnOnce(tokio::fs::File) -> Fut,
    Fut: Future<Output = std::io::Result<tokio::fs::File>>,
{
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io_err(key))?;
    }
    let tmp = target.with_file_name(format!(
        ".{}.{}.tmp",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        uuid::Uuid::new_v4().simple()
    ));
    let write = async {
        let file = tokio::fs::File::create(&tmp).await?;
        let file = fill(file).await?;
        file.sync_all().await?;
        tokio::fs::rename(&tmp, target).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_err(key)(e));
    }
    Ok(())
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
    /// Stores the content of the local file `file` under `key`. Object stores stream it in parts;
    /// this default reads it whole.
    fn put_file<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let bytes = tokio::fs::read(file).await.map_err(io_err(key))?;
            self.put(key, &bytes).await
        })
    }
    /// Writes the value of `key` into the local file `file` (atomically); `false` when `key` is absent.
    /// Object stores stream it; this default reads it whole.
    fn get_to_file<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let Some(bytes) = self.get(key).await? else { return Ok(false) };
            write_atomically(file, key, |mut out| async move {
                tokio::io::AsyncWriteExt::write_all(&mut out, &bytes).await?;
                Ok(out)
            })
            .await?;
            Ok(true)
        })
    }
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

    pub(crate) fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_err(key: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { key: key.to_string(), source }
}

impl BlobStore for LocalBlobStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            write_atomically(&path, key, |mut file| async move {
                tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
                Ok(file)
            })
            .await
        })
    }

    fn put_file<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            write_atomically(&path, key, |mut out| async move {
                let mut source = tokio::fs::File::open(file).await?;
                tokio::io::copy(&mut source, &mut out).await?;
                Ok(out)
            })
            .await
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let mut source = match tokio::fs::File::open(&path).await {
                Ok(source) if source.metadata().await.is_ok_and(|m| m.is_file()) => source,
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_err(key)(e)),
            };
            write_atomically(file, key, |mut out| async move {
                tokio::io::copy(&mut source, &mut out).await?;
                Ok(out)
            })
            .await?;
            Ok(true)
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
    async fn files_stream_in_and_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().join("root"));
        let source = dir.path().join("source.bin");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &content).unwrap();
        store.put_file("p/big.bin", &source).await.unwrap();
        assert_eq!(store.get("p/big.bin").await.unwrap().as_deref(), Some(&content[..]));
        let target = dir.path().join("out/copy.bin");
        assert!(store.get_to_file("p/big.bin", &target).await.unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), content);
        assert!(!store.get_to_file("p/missing.bin", &dir.path().join("none.bin")).await.unwrap());
        assert!(!dir.path().join("none.bin").exists());
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
