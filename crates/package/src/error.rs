//! The error type of the package codec: one variant per way a package can be refused, so callers
//! (and tests) can tell a zip slip from a zip bomb without parsing messages.

/// Why a package or bundle could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("invalid difypkg archive: {0}")]
    InvalidArchive(String),
    #[error("difypkg archive is truncated")]
    Truncated,
    #[error("entry {name:?} escapes the package root")]
    PathTraversal { name: String },
    #[error("entry {name:?} has an absolute path")]
    AbsolutePath { name: String },
    #[error("entry {name:?} is a symbolic link")]
    Symlink { name: String },
    #[error("entry {name:?} appears more than once")]
    DuplicateEntry { name: String },
    #[error("entry name is not valid UTF-8")]
    NonUtf8Name { raw: Vec<u8> },
    #[error("entry {name:?} has an invalid name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("plugin package size is too large, please ensure the uncompressed size is less than {limit} bytes")]
    UncompressedSizeExceeded { limit: u64 },
    #[error("plugin directory is larger than {limit} bytes; largest files: {}", format_largest(.largest))]
    DirectoryTooLarge { limit: u64, largest: Vec<(String, u64)> },
    #[error("entry {name:?} has a compression ratio of {ratio}, above the limit {limit}")]
    CompressionRatioExceeded { name: String, ratio: u64, limit: u64 },
    #[error("archive has {count} entries, above the limit {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("entry {name:?} is corrupt: {reason}")]
    CorruptEntry { name: String, reason: String },
    #[error("entry {name:?} is not supported: {reason}")]
    UnsupportedEntry { name: String, reason: String },
    #[error("manifest.yaml not found")]
    MissingManifest,
    #[error("file {path:?} referenced by {referenced_by:?} not found")]
    MissingReferencedFile { path: String, referenced_by: String },
    #[error("failed to decode {path}: {message}")]
    InvalidYaml { path: String, message: String },
    #[error("invalid plugin unique identifier: {0}")]
    Identifier(#[from] dify_protocol::IdentifierError),
    #[error("en_US readme not found")]
    ReadmeNotFound,
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<std::io::Error> for PackageError {
    fn from(error: std::io::Error) -> Self {
        PackageError::Io(error.to_string())
    }
}

fn format_largest(largest: &[(String, u64)]) -> String {
    largest
        .iter()
        .enumerate()
        .map(|(i, (name, size))| format!("{}. name: {name}, size: {size} bytes", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}
