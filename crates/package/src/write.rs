//! Writing `.difypkg` archives the way the Go packager does: files only, sorted by path
//! (byte-wise), deflate, zero modification time, empty comment.
//! Must not: generate files (e.g. `requirements.txt` from `uv.lock`) — callers add them.

use std::path::Path;

use crate::archive::write_archive;
use crate::error::PackageError;
use crate::limits::DecodeLimits;
use crate::package::read_plugin_dir;

/// Writes the given files as a package, sorted by path.
pub fn package_files<'a, I>(files: I) -> Result<Vec<u8>, PackageError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    for pair in files.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(PackageError::DuplicateEntry { name: pair[0].0.to_owned() });
        }
    }
    write_archive(files, &[])
}

/// Packages a plugin directory (honouring `.difyignore`) with the default 50 MiB limit on the
/// total uncompressed size.
pub fn package_dir(dir: impl AsRef<Path>) -> Result<Vec<u8>, PackageError> {
    package_dir_with_limit(dir, DecodeLimits::default().max_uncompressed_size)
}

/// Packages a plugin directory with an explicit limit (bytes) on the total uncompressed size;
/// over the limit the error lists the five largest files.
pub fn package_dir_with_limit(dir: impl AsRef<Path>, max_size: u64) -> Result<Vec<u8>, PackageError> {
    let entries = read_plugin_dir(dir.as_ref(), &DecodeLimits::with_max_uncompressed_size(max_size))?;
    package_files(entries.iter().map(|e| (e.name.as_str(), e.data.as_slice())))
}
