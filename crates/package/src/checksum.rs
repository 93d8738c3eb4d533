//! The package checksum: SHA-256 over, for each file in byte-wise sorted path order,
//! SHA-256(path) ‖ SHA-256(content); lowercase hex. Independent of compression, timestamps,
//! archive order and the ZIP comment.

use sha2::{Digest, Sha256};

/// Computes the checksum of a set of `(path, content)` files. Contents are hashed in place,
/// never copied.
pub fn checksum_files<'a, I>(files: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let hashed: Vec<(&str, [u8; 32])> = files.into_iter().map(|(path, content)| (path, Sha256::digest(content).into())).collect();
    // `str` ordering is byte-wise, like Go's sort.Strings.
    checksum_from_hashes(hashed.iter().map(|(path, hash)| (*path, hash)))
}

/// The SHA-256 of each content, in order. Computed once per package and shared by the checksum
/// and the signature check.
pub fn content_hashes<'a, I>(contents: I) -> Vec<[u8; 32]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    contents.into_iter().map(|content| Sha256::digest(content).into()).collect()
}

/// The checksum from paths and their precomputed content hashes.
pub fn checksum_from_hashes<'a, I>(files: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a [u8; 32])>,
{
    let mut hashed: Vec<(&str, &[u8; 32])> = files.into_iter().collect();
    hashed.sort_by(|a, b| a.0.cmp(b.0));
    let mut outer = Sha256::new();
    for (path, content_hash) in hashed {
        outer.update(Sha256::digest(path.as_bytes()));
        outer.update(content_hash);
    }
    hex::encode(outer.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_path_sensitive() {
        let a = checksum_files([("a", b"1".as_slice()), ("b", b"2".as_slice())]);
        let b = checksum_files([("b", b"2".as_slice()), ("a", b"1".as_slice())]);
        assert_eq!(a, b);
        let renamed = checksum_files([("a", b"1".as_slice()), ("c", b"2".as_slice())]);
        assert_ne!(a, renamed);
        assert_eq!(a.len(), 64);
        // Empty set: SHA-256 of the empty string.
        assert_eq!(checksum_files(std::iter::empty()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
