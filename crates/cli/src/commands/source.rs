//! Opening what the user pointed at: a plugin directory or a `.difypkg` file, decoded by
//! `dify-package`, plus the mapping of package errors to CLI errors with hints.
//! Must not implement any part of the package format itself.

use std::path::Path;

use dify_package::{DecodeLimits, Package, PackageError};
use dify_protocol::manifest::Problem;

use crate::error::{CliError, CliResult};

/// Decode a plugin directory or `.difypkg` file.
pub fn open_plugin(path: &Path) -> CliResult<Package> {
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::generic(
            format!("failed to get plugin file stat {}: {e}", path.display()),
            "pass an existing plugin directory or .difypkg file",
        )
    })?;
    let decoded = if meta.is_dir() {
        Package::from_dir(path)
    } else {
        let bytes = std::fs::read(path).map_err(|e| CliError::io("read", path, e))?;
        Package::from_bytes(bytes, &DecodeLimits::default())
    };
    decoded.map_err(|e| package_error("your plugin is not a valid plugin", &e))
}

/// A package error as a CLI error with a hint fitting the cause.
pub fn package_error(context: &str, e: &PackageError) -> CliError {
    let hint = match e {
        PackageError::UncompressedSizeExceeded { .. } => {
            "remove large files (or list them in .difyignore), or raise --max-size".to_string()
        }
        PackageError::ReadmeNotFound => "add a README.md at the plugin root".to_string(),
        PackageError::Truncated | PackageError::InvalidArchive(_) | PackageError::CorruptEntry { .. } => {
            "the file is not a complete .difypkg; package the plugin again".to_string()
        }
        _ => "check manifest.yaml and the files it references".to_string(),
    };
    CliError::generic(format!("{context}: {e}"), hint)
}

/// Validation problems as one CLI error.
pub fn problems_error(context: &str, problems: &[Problem]) -> CliError {
    let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    CliError::generic(
        format!("{context}: {}", list.join("; ")),
        "fix the listed fields in manifest.yaml or the provider files, then run the command again",
    )
}
