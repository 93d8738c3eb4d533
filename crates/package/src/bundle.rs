//! Bundles (`.difybndl`, docs/packaging.md §4): a manifest listing plugin dependencies
//! (GitHub release, marketplace, or an embedded package stored as `_assets/<checksum>`), an icon,
//! and README files.
//!
//! Owns the bundle manifest types, dependency pattern rules, reading and writing bundles from
//! bytes or a directory, and the edit operations the CLI needs (append, remove, bump).
//! Must not: install, download or verify the embedded packages (the caller decodes them).

use std::collections::BTreeMap;
use std::path::Path;

use dify_protocol::manifest::{I18nObject, Problem, PLUGIN_TAGS, VERSION_REGEX};
use once_cell::sync::Lazy;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::archive::{read_archive, write_archive};
use crate::error::PackageError;
use crate::limits::DecodeLimits;
use crate::load::{decode_yaml, MANIFEST_PATH};
use crate::package::Package;

const VERSION: &str = r"[0-9]{1,4}(\.[0-9]{1,4}){2}(-[0-9A-Za-z_]{1,16})?";
const VERSION_X: &str = r"([0-9]{1,4}|[xX])";

/// Version constraints accepted in dependency patterns: `[~^]V`, `X.X.X` with wildcards, `V-V`.
fn dependency_version_pattern() -> String {
    format!(r"([~^]?{VERSION}|{VERSION_X}(\.{VERSION_X}){{2}}|{VERSION}-{VERSION})")
}

static GITHUB_PATTERN: Lazy<Regex> = Lazy::new(|| {
    Regex::new(&format!(r"^[a-z0-9_-]{{1,64}}/[a-z0-9_-]{{1,128}}:{}/[^/]+$", dependency_version_pattern())).expect("valid regex")
});
static MARKETPLACE_PATTERN: Lazy<Regex> =
    Lazy::new(|| Regex::new(&format!(r"^[a-z0-9_-]{{1,64}}/[a-z0-9_-]{{1,128}}:{}$", dependency_version_pattern())).expect("valid regex"));
static BUNDLE_NAME: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-z0-9_-]{1,128}$").expect("valid regex"));
static BUNDLE_AUTHOR: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-z0-9_-]{1,64}$").expect("valid regex"));

/// Why a bundle operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("invalid github repo pattern: {0}")]
    InvalidGithubPattern(String),
    #[error("invalid marketplace pattern: {0}")]
    InvalidMarketplacePattern(String),
    #[error("invalid version: {0}")]
    InvalidVersion(String),
    #[error("dependency index {index} out of range ({len} dependencies)")]
    IndexOutOfRange { index: usize, len: usize },
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// `{type: github, value: {repo_pattern}}`: `owner/repo:version/asset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubDependency {
    pub repo_pattern: String,
}

fn split_pattern(pattern: &str) -> Vec<&str> {
    pattern.split(':').flat_map(|part| part.split('/')).collect()
}

impl GithubDependency {
    pub fn new(pattern: &str) -> Result<Self, BundleError> {
        if !is_valid_github_pattern(pattern) {
            return Err(BundleError::InvalidGithubPattern(pattern.to_owned()));
        }
        Ok(Self { repo_pattern: pattern.to_owned() })
    }

    /// `https://github.com/<owner>/<repo>`.
    pub fn repo_url(&self) -> String {
        let parts = split_pattern(&self.repo_pattern);
        if parts.len() < 3 {
            return String::new();
        }
        format!("https://github.com/{}/{}", parts[0], parts[1])
    }

    /// `<owner>/<repo>`.
    pub fn github_repo(&self) -> String {
        let parts = split_pattern(&self.repo_pattern);
        if parts.len() < 3 {
            return String::new();
        }
        format!("{}/{}", parts[0], parts[1])
    }

    /// The version part.
    pub fn release(&self) -> String {
        split_pattern(&self.repo_pattern).get(2).map(|s| s.to_string()).unwrap_or_default()
    }

    /// The asset file name.
    pub fn asset(&self) -> String {
        split_pattern(&self.repo_pattern).get(3).map(|s| s.to_string()).unwrap_or_default()
    }
}

/// `{type: marketplace, value: {marketplace_pattern}}`: `org/plugin:version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketplaceDependency {
    pub marketplace_pattern: String,
}

impl MarketplaceDependency {
    pub fn new(pattern: &str) -> Result<Self, BundleError> {
        if !is_valid_marketplace_pattern(pattern) {
            return Err(BundleError::InvalidMarketplacePattern(pattern.to_owned()));
        }
        Ok(Self { marketplace_pattern: pattern.to_owned() })
    }

    pub fn organization(&self) -> String {
        split_pattern(&self.marketplace_pattern).first().map(|s| s.to_string()).unwrap_or_default()
    }

    pub fn plugin(&self) -> String {
        split_pattern(&self.marketplace_pattern).get(1).map(|s| s.to_string()).unwrap_or_default()
    }

    pub fn version(&self) -> String {
        split_pattern(&self.marketplace_pattern).get(2).map(|s| s.to_string()).unwrap_or_default()
    }
}

/// `{type: package, value: {path}}`: the checksum-named file under `_assets/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDependency {
    pub path: String,
}

/// One dependency of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Dependency {
    Github(GithubDependency),
    Marketplace(MarketplaceDependency),
    Package(PackageDependency),
}

/// The bundle `manifest.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub name: String,
    pub labels: I18nObject,
    pub description: I18nObject,
    pub icon: String,
    pub version: String,
    pub author: String,
    /// Always `bundle`.
    #[serde(rename = "type")]
    pub manifest_type: String,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    /// Never null in JSON.
    #[serde(default, deserialize_with = "tags_or_null")]
    pub tags: Vec<String>,
}

fn tags_or_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}

impl BundleManifest {
    /// A fresh manifest as `dify bundle init` writes it.
    pub fn new(name: &str, author: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            labels: I18nObject::all(name),
            description: I18nObject::all(description),
            icon: "icon.svg".to_owned(),
            version: "0.0.1".to_owned(),
            author: author.to_owned(),
            manifest_type: "bundle".to_owned(),
            dependencies: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// Every rule the bundle tools enforce; returns all problems found.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if !BUNDLE_NAME.is_match(&self.name) {
            problems.push(Problem::new("name", "must match ^[a-z0-9_-]{1,128}$"));
        }
        if !BUNDLE_AUTHOR.is_match(&self.author) {
            problems.push(Problem::new("author", "must match ^[a-z0-9_-]{1,64}$"));
        }
        if self.labels.en_us.is_empty() {
            problems.push(Problem::new("labels.en_US", "is required"));
        }
        if self.description.en_us.is_empty() {
            problems.push(Problem::new("description.en_US", "is required"));
        }
        if self.icon.is_empty() {
            problems.push(Problem::new("icon", "is required"));
        }
        if !VERSION_REGEX.is_match(&self.version) {
            problems.push(Problem::new("version", format!("{:?} is not a valid version", self.version)));
        }
        if self.manifest_type != "bundle" {
            problems.push(Problem::new("type", "must be \"bundle\""));
        }
        for (index, dependency) in self.dependencies.iter().enumerate() {
            match dependency {
                Dependency::Github(github) if !is_valid_github_pattern(&github.repo_pattern) => {
                    problems.push(Problem::new(format!("dependencies[{index}].value.repo_pattern"), "invalid github repo pattern"))
                }
                Dependency::Marketplace(market) if !is_valid_marketplace_pattern(&market.marketplace_pattern) => {
                    problems.push(Problem::new(format!("dependencies[{index}].value.marketplace_pattern"), "invalid marketplace pattern"))
                }
                Dependency::Package(package) if package.path.is_empty() => {
                    problems.push(Problem::new(format!("dependencies[{index}].value.path"), "is required"))
                }
                _ => {}
            }
        }
        for (index, tag) in self.tags.iter().enumerate() {
            if !PLUGIN_TAGS.contains(&tag.as_str()) {
                problems.push(Problem::new(format!("tags[{index}]"), format!("{tag:?} is not a valid tag")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

pub fn is_valid_github_pattern(pattern: &str) -> bool {
    GITHUB_PATTERN.is_match(pattern)
}

pub fn is_valid_marketplace_pattern(pattern: &str) -> bool {
    MARKETPLACE_PATTERN.is_match(pattern)
}

/// A bundle: manifest plus files (`_assets/…` and root `README*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub manifest: BundleManifest,
    /// Paths relative to the bundle root, excluding `manifest.yaml`.
    files: BTreeMap<String, Vec<u8>>,
}

fn is_bundle_file(name: &str) -> bool {
    name.starts_with("_assets/") || (!name.contains('/') && name.starts_with("README"))
}

impl Bundle {
    pub fn new(manifest: BundleManifest) -> Self {
        Self { manifest, files: BTreeMap::new() }
    }

    /// Decodes a `.difybndl` within `limits` (see [`DecodeLimits::for_bundle`]).
    pub fn from_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<Bundle, PackageError> {
        let archive = read_archive(bytes, limits)?;
        let mut manifest = None;
        let mut files = BTreeMap::new();
        for entry in archive.entries {
            if entry.name == MANIFEST_PATH {
                manifest = Some(decode_yaml::<BundleManifest>(MANIFEST_PATH, &entry.data)?);
            } else if is_bundle_file(&entry.name) {
                files.insert(entry.name, entry.data);
            }
        }
        Ok(Bundle { manifest: manifest.ok_or(PackageError::MissingManifest)?, files })
    }

    /// Reads a bundle directory: `manifest.yaml`, everything under `_assets/`, root `README*`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Bundle, PackageError> {
        let dir = dir.as_ref();
        let manifest_bytes = std::fs::read(dir.join(MANIFEST_PATH)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PackageError::MissingManifest,
            _ => e.into(),
        })?;
        let manifest = decode_yaml::<BundleManifest>(MANIFEST_PATH, &manifest_bytes)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("README") && entry.file_type()?.is_file() {
                files.insert(name, std::fs::read(entry.path())?);
            }
        }
        let assets = dir.join("_assets");
        if assets.is_dir() {
            collect_files(&assets, "_assets", &mut files)?;
        }
        Ok(Bundle { manifest, files })
    }

    /// Writes the bundle as a directory (manifest, assets, READMEs).
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), PackageError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir.join("_assets"))?;
        std::fs::write(dir.join(MANIFEST_PATH), self.manifest_yaml()?)?;
        for (name, data) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, data)?;
        }
        Ok(())
    }

    /// The manifest as YAML.
    pub fn manifest_yaml(&self) -> Result<String, PackageError> {
        serde_yaml_ng::to_string(&self.manifest)
            .map_err(|e| PackageError::InvalidYaml { path: MANIFEST_PATH.into(), message: e.to_string() })
    }

    /// The `.difybndl` bytes: manifest first, then assets, then READMEs.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PackageError> {
        let manifest = self.manifest_yaml()?;
        let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST_PATH, manifest.as_bytes())];
        entries.extend(self.files.iter().filter(|(n, _)| n.starts_with("_assets/")).map(|(n, d)| (n.as_str(), d.as_slice())));
        entries.extend(self.files.iter().filter(|(n, _)| !n.starts_with("_assets/")).map(|(n, d)| (n.as_str(), d.as_slice())));
        write_archive(entries, &[])
    }

    /// All carried files except the manifest.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, d)| (n.as_str(), d.as_slice()))
    }

    /// Adds or replaces a carried file (`_assets/…` or a root `README*`).
    pub fn set_file(&mut self, name: &str, data: Vec<u8>) {
        self.files.insert(name.to_owned(), data);
    }

    /// The bytes of an embedded package.
    pub fn package_bytes(&self, dependency: &PackageDependency) -> Option<&[u8]> {
        self.files.get(&format!("_assets/{}", dependency.path)).map(Vec::as_slice)
    }

    /// Decodes an embedded package `.difypkg` and adds it as `_assets/<checksum>` with a
    /// `package` dependency.
    pub fn append_package(&mut self, package_bytes: Vec<u8>, limits: &DecodeLimits) -> Result<String, BundleError> {
        let package = Package::from_bytes(package_bytes, limits)?;
        let checksum = package.checksum();
        let bytes = package.raw_bytes().map(<[u8]>::to_vec).unwrap_or_default();
        self.files.insert(format!("_assets/{checksum}"), bytes);
        self.manifest.dependencies.push(Dependency::Package(PackageDependency { path: checksum.clone() }));
        Ok(checksum)
    }

    pub fn append_github(&mut self, pattern: &str) -> Result<(), BundleError> {
        self.manifest.dependencies.push(Dependency::Github(GithubDependency::new(pattern)?));
        Ok(())
    }

    pub fn append_marketplace(&mut self, pattern: &str) -> Result<(), BundleError> {
        self.manifest.dependencies.push(Dependency::Marketplace(MarketplaceDependency::new(pattern)?));
        Ok(())
    }

    /// Removes the dependency at `index` (0-based) and, for a package, its asset.
    pub fn remove_dependency(&mut self, index: usize) -> Result<Dependency, BundleError> {
        let len = self.manifest.dependencies.len();
        if index >= len {
            return Err(BundleError::IndexOutOfRange { index, len });
        }
        let removed = self.manifest.dependencies.remove(index);
        if let Dependency::Package(package) = &removed {
            self.files.remove(&format!("_assets/{}", package.path));
        }
        Ok(removed)
    }

    /// Sets the bundle version (`dify bundle bump`).
    pub fn bump_version(&mut self, version: &str) -> Result<(), BundleError> {
        if !VERSION_REGEX.is_match(version) {
            return Err(BundleError::InvalidVersion(version.to_owned()));
        }
        self.manifest.version = version.to_owned();
        Ok(())
    }
}

fn collect_files(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) -> Result<(), PackageError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}/{name}");
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            collect_files(&entry.path(), &relative, out)?;
        } else if file_type.is_file() {
            out.insert(relative, std::fs::read(entry.path())?);
        }
    }
    Ok(())
}
