//! The `.difypkg` / `.difybndl` codec: decode (from bytes or a plugin directory), resolve the
//! declaration, checksum, validate, sign and verify, write packages and bundles.
//!
//! Architecture invariant: no tokio, no network, no daemon types. Every input is untrusted: bad
//! archives produce a [`PackageError`] variant, never a panic.

mod archive;
pub mod bundle;
mod checksum;
mod error;
mod glob;
mod ignore;
mod limits;
mod load;
mod package;
pub mod signature;
pub mod validate;
pub mod write;

pub use archive::{read_archive, read_comment, write_archive, Archive, ArchiveEntry};
pub use checksum::checksum_files;
pub use error::PackageError;
pub use glob::go_path_match;
pub use ignore::IgnoreRules;
pub use limits::{DecodeLimits, DEFAULT_MAX_UNCOMPRESSED_SIZE};
pub use package::{ignore_rules_for, list_plugin_dir, Package};
pub use signature::{PrivateKey, PublicKey, SignatureError, Verification, VERIFICATION_FILE};
