//! `dify plugin package <dir> [-o file] [--max-size MB]`: validate a plugin directory strictly and
//! write an unsigned `.difypkg`.
//!
//! Steps as upstream: decode the directory (honouring `.difyignore`), strict manifest validation
//! and icon checks, optionally generate `requirements.txt` from `uv.lock`, then write the sorted
//! zip within the size limit. The archive format itself is `dify-package`'s.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::commands::source::{package_error, problems_error};
use crate::error::{CliError, CliResult};
use crate::output::{LogLine, OutputFormat, Render, TextOutput};
use crate::progress::Spinner;

pub const DEFAULT_MAX_SIZE_MB: i64 = 50;

#[derive(Debug, Clone)]
pub struct PackageOptions {
    pub plugin_path: PathBuf,
    /// Default: `<basename of plugin_path>.difypkg` in the current directory.
    pub output_path: Option<PathBuf>,
    /// Limit on the total uncompressed size, in MB; non-positive means the default 50.
    pub max_size_mb: i64,
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageResult {
    pub output_path: PathBuf,
    pub plugin_unique_identifier: Option<String>,
    pub checksum: String,
    pub size: u64,
    /// True when `requirements.txt` was generated from `uv.lock`.
    pub generated_requirements: bool,
}

impl Render for PackageResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("plugin packaged successfully").field("output_path", self.output_path.display())])
    }
}

/// The output file when `-o` is absent: `<basename>.difypkg` in the current directory.
pub fn default_output_path(plugin_path: &Path) -> CliResult<PathBuf> {
    match plugin_path.file_name().and_then(|n| n.to_str()) {
        Some(base) if base != "." && base != ".." => Ok(PathBuf::from(format!("{base}.difypkg"))),
        _ => Err(CliError::usage(
            "invalid input path, you should specify the path outside of plugin directory",
            "run the command from the parent directory (dify plugin package ./my_plugin) or pass -o",
        )),
    }
}

pub fn run(opts: &PackageOptions) -> CliResult<PackageResult> {
    let output_path = match &opts.output_path {
        Some(p) => p.clone(),
        None => default_output_path(&opts.plugin_path)?,
    };
    let max_mb = if opts.max_size_mb <= 0 { DEFAULT_MAX_SIZE_MB } else { opts.max_size_mb };
    let max_bytes = (max_mb as u64).saturating_mul(1024 * 1024);
    let spinner = Spinner::start(opts.format, "packaging plugin");

    let limits = dify_package::DecodeLimits::with_max_uncompressed_size(max_bytes);
    let package = dify_package::Package::from_dir_with_limits(&opts.plugin_path, &limits)
        .map_err(|e| package_error("failed to package plugin", &e))?;
    dify_package::validate::strict(&package).map_err(|p| problems_error("failed to package plugin", &p))?;

    let mut files: Vec<(String, Vec<u8>)> = package.files().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
    let needs_generated = package.declaration().meta.runner.language == "python"
        && package.read_file("requirements.txt").is_none()
        && package.read_file("pyproject.toml").is_some()
        && package.read_file("uv.lock").is_some();
    if needs_generated {
        files.push(("requirements.txt".to_string(), requirements_from_uv_lock(&opts.plugin_path)?));
    }
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    if total > max_bytes {
        return Err(too_large(&files, max_bytes));
    }
    let bytes = dify_package::write::package_files(files.iter().map(|(n, d)| (n.as_str(), d.as_slice())))
        .map_err(|e| package_error("failed to package plugin", &e))?;
    let checksum = dify_package::checksum_files(files.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    if let Some(parent) = output_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io("create directory", parent, e))?;
    }
    std::fs::write(&output_path, &bytes).map_err(|e| CliError::io("write", &output_path, e))?;
    spinner.finish();

    let d = package.declaration();
    let identifier = dify_protocol::PluginUniqueIdentifier::from_parts(&d.author, &d.name, &d.version, &checksum)
        .ok()
        .map(|id| id.to_string());
    Ok(PackageResult {
        output_path,
        plugin_unique_identifier: identifier,
        checksum,
        size: bytes.len() as u64,
        generated_requirements: needs_generated,
    })
}

fn too_large(files: &[(String, Vec<u8>)], limit: u64) -> CliError {
    let mut largest: Vec<(&str, usize)> = files.iter().map(|(n, d)| (n.as_str(), d.len())).collect();
    largest.sort_by_key(|f| std::cmp::Reverse(f.1));
    let list: Vec<String> = largest
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, (n, s))| format!("{}. name: {n}, size: {s} bytes", i + 1))
        .collect();
    CliError::generic(
        format!(
            "plugin package size is too large, please ensure the uncompressed size is less than {limit} bytes; largest files: {}",
            list.join(", ")
        ),
        "remove large files (or list them in .difyignore), or raise --max-size",
    )
}

/// `uv export …` in the plugin directory; its stdout becomes the packaged requirements.txt.
fn requirements_from_uv_lock(plugin_dir: &Path) -> CliResult<Vec<u8>> {
    let uv = std::env::var_os("UV_PATH").filter(|v| !v.is_empty()).unwrap_or_else(|| "uv".into());
    let out = Command::new(&uv)
        .args([
            "export",
            "--frozen",
            "--format",
            "requirements.txt",
            "--no-group",
            "dev",
            "--no-emit-project",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
        ])
        .current_dir(plugin_dir)
        .output()
        .map_err(|e| {
            CliError::generic(
                format!("failed to run uv to generate requirements.txt: {e}"),
                "install uv (or set UV_PATH), or add a requirements.txt to the plugin",
            )
        })?;
    if !out.status.success() {
        return Err(CliError::generic(
            format!("uv export failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            "check pyproject.toml and uv.lock (uv lock), or add a requirements.txt",
        ));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_is_the_directory_name() {
        assert_eq!(default_output_path(Path::new("a/my_plugin/")).unwrap(), PathBuf::from("my_plugin.difypkg"));
        assert_eq!(default_output_path(Path::new(".")).unwrap_err().exit_status(), 2);
        assert_eq!(default_output_path(Path::new("/")).unwrap_err().exit_status(), 2);
    }

    #[test]
    fn too_large_lists_the_five_largest_files() {
        let files: Vec<(String, Vec<u8>)> = (1..=7).map(|i| (format!("f{i}"), vec![0u8; i * 10])).collect();
        let e = too_large(&files, 5);
        assert!(e.message.contains("1. name: f7, size: 70 bytes"), "{}", e.message);
        assert!(e.message.contains("5. name: f3"));
        assert!(!e.message.contains("f2,"));
    }
}
