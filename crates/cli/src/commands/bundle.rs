//! `dify bundle …`: create and edit plugin bundles (`.difybndl`).
//!
//! A bundle is a directory (`manifest.yaml`, `_assets/`, `README*`) or a zip file with the same
//! layout, edited in place. Owns the bundle manifest model (name, labels, description, icon,
//! version, author, type, dependencies, tags), the github/marketplace dependency patterns, and
//! reading/writing both forms. Embedded plugin packages are decoded by `dify-package`, and the zip
//! container is written with its archive writer.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use dify_protocol::manifest::I18nObject;
use once_cell::sync::Lazy;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::commands::plugin::init::{validate_author, validate_name, validate_version, write_file};
use crate::commands::source::package_error;
use crate::error::{CliError, CliResult};
use crate::output::{LogLine, Render, TextOutput};
use crate::templates;

const VERSION_PART: &str = r"\d{1,4}(\.\d{1,4}){2}(-\w{1,16})?";

fn version_pattern() -> String {
    let x = r"(\d{1,4}|[xX])";
    format!(r"([~^]?{v}|{x}(\.{x}){{2}}|{v}-{v})", v = VERSION_PART)
}

static GITHUB_PATTERN: Lazy<Regex> = Lazy::new(|| {
    Regex::new(&format!(r"^[a-z0-9_-]{{1,64}}/[a-z0-9_-]{{1,128}}:{}/[^/]+$", version_pattern())).expect("static regex")
});
static MARKETPLACE_PATTERN: Lazy<Regex> =
    Lazy::new(|| Regex::new(&format!(r"^[a-z0-9_-]{{1,64}}/[a-z0-9_-]{{1,128}}:{}$", version_pattern())).expect("static regex"));

/// One bundle dependency (`{type, value}` in the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Dependency {
    Github { repo_pattern: String },
    Marketplace { marketplace_pattern: String },
    /// `path` is the checksum of the package stored as `_assets/<path>`.
    Package { path: String },
}

/// `manifest.yaml` of a bundle (field order as upstream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub name: String,
    pub labels: I18nObject,
    pub description: I18nObject,
    pub icon: String,
    pub version: String,
    pub author: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Name, author and description of a bundle, as entered (flags or prompts).
#[derive(Debug, Clone, Default)]
pub struct ProfileInput {
    pub name: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub author: String,
    pub description: String,
}

impl ProfileInput {
    pub fn resolve(&self) -> CliResult<Profile> {
        let name = self.name.clone().unwrap_or_default();
        let author = self.author.clone().unwrap_or_default();
        let description = self.description.clone().unwrap_or_default();
        validate_name(&name).map_err(|e| CliError::usage(e.message.replace("plugin name", "bundle name"), "pass --name, e.g. --name my_bundle"))?;
        validate_author(&author)?;
        if description.trim().is_empty() {
            return Err(CliError::usage("description cannot be empty", "pass --description \"what the bundle contains\""));
        }
        Ok(Profile { name, author, description })
    }
}

/// Ask for name, author and description on a terminal; given values are the defaults.
pub fn ask_profile<R: BufRead, W: Write>(mut input: R, mut output: W, defaults: ProfileInput) -> CliResult<ProfileInput> {
    let mut ask = |question: &str, default: Option<String>| -> CliResult<Option<String>> {
        let d = default.clone().unwrap_or_default();
        let shown = if d.is_empty() { String::new() } else { format!(" [{d}]") };
        write!(output, "{question}{shown}: ").and_then(|_| output.flush()).map_err(prompt_io)?;
        let mut line = String::new();
        if input.read_line(&mut line).map_err(prompt_io)? == 0 {
            return Err(CliError::usage("input ended before all questions were answered", "pass --name, --author and --description instead"));
        }
        let answer = line.trim();
        Ok(if answer.is_empty() { default } else { Some(answer.to_string()) })
    };
    Ok(ProfileInput {
        name: ask("Bundle name", defaults.name)?,
        author: ask("Author", defaults.author)?,
        description: ask("Description", defaults.description)?,
    })
}

fn prompt_io(e: std::io::Error) -> CliError {
    CliError::generic(format!("failed to read the answer: {e}"), "pass --name, --author and --description instead")
}

/// A loaded bundle: manifest, `_assets/` files and root `README*` files.
struct Bundle {
    location: Location,
    manifest: BundleManifest,
    assets: BTreeMap<String, Vec<u8>>,
    readmes: BTreeMap<String, Vec<u8>>,
    /// Assets that existed on disk when loaded (directory form), to delete removed ones.
    original_assets: Vec<String>,
}

enum Location {
    Dir(PathBuf),
    Zip(PathBuf),
}

fn parse_manifest(bytes: &[u8]) -> CliResult<BundleManifest> {
    serde_yaml_ng::from_slice(bytes).map_err(|e| {
        CliError::generic(format!("invalid bundle manifest.yaml: {e}"), "manifest.yaml needs name, labels, description, icon, version, author, type and dependencies")
    })
}

fn load(path: &Path) -> CliResult<Bundle> {
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::generic(format!("failed to load bundle packager: {}: {e}", path.display()), "pass a bundle directory or .difybndl file")
    })?;
    if meta.is_dir() {
        let manifest_path = path.join("manifest.yaml");
        let bytes = std::fs::read(&manifest_path).map_err(|e| CliError::io("read", &manifest_path, e))?;
        let manifest = parse_manifest(&bytes)?;
        let mut assets = BTreeMap::new();
        let assets_dir = path.join("_assets");
        if assets_dir.is_dir() {
            collect_files(&assets_dir, "", &mut assets)?;
        }
        let mut readmes = BTreeMap::new();
        for entry in std::fs::read_dir(path).map_err(|e| CliError::io("read", path, e))? {
            let entry = entry.map_err(|e| CliError::io("read", path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("README") && entry.path().is_file() {
                let data = std::fs::read(entry.path()).map_err(|e| CliError::io("read", &entry.path(), e))?;
                readmes.insert(name, data);
            }
        }
        let original_assets = assets.keys().cloned().collect();
        Ok(Bundle { location: Location::Dir(path.to_path_buf()), manifest, assets, readmes, original_assets })
    } else {
        let bytes = std::fs::read(path).map_err(|e| CliError::io("read", path, e))?;
        let archive = dify_package::read_archive(&bytes, &dify_package::DecodeLimits::for_bundle())
            .map_err(|e| package_error("failed to load bundle packager", &e))?;
        let mut manifest = None;
        let mut assets = BTreeMap::new();
        let mut readmes = BTreeMap::new();
        for entry in archive.entries {
            if entry.name == "manifest.yaml" {
                manifest = Some(parse_manifest(&entry.data)?);
            } else if let Some(asset) = entry.name.strip_prefix("_assets/") {
                assets.insert(asset.to_string(), entry.data);
            } else if entry.name.starts_with("README") && !entry.name.contains('/') {
                readmes.insert(entry.name, entry.data);
            }
        }
        let manifest = manifest.ok_or_else(|| CliError::generic("bundle has no manifest.yaml", "is this a .difybndl file?"))?;
        Ok(Bundle { location: Location::Zip(path.to_path_buf()), manifest, assets, readmes, original_assets: Vec::new() })
    }
}

fn collect_files(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) -> CliResult<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| CliError::io("read", dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, &rel, out)?;
        } else if path.is_file() {
            out.insert(rel, std::fs::read(&path).map_err(|e| CliError::io("read", &path, e))?);
        }
    }
    Ok(())
}

fn manifest_yaml(manifest: &BundleManifest) -> CliResult<String> {
    serde_yaml_ng::to_string(manifest)
        .map_err(|e| CliError::generic(format!("failed to serialise bundle manifest: {e}"), "this is a bug in the dify CLI; please report it"))
}

impl Bundle {
    /// The zip form: manifest first, then assets, then readmes.
    fn to_zip(&self) -> CliResult<Vec<u8>> {
        let manifest = manifest_yaml(&self.manifest)?;
        let asset_names: Vec<String> = self.assets.keys().map(|k| format!("_assets/{k}")).collect();
        let mut entries: Vec<(&str, &[u8])> = vec![("manifest.yaml", manifest.as_bytes())];
        for (name, (_, data)) in asset_names.iter().zip(self.assets.iter()) {
            entries.push((name.as_str(), data.as_slice()));
        }
        for (name, data) in &self.readmes {
            entries.push((name.as_str(), data.as_slice()));
        }
        dify_package::write_archive(entries, &[]).map_err(|e| package_error("failed to export bundle", &e))
    }

    fn save(&self) -> CliResult<()> {
        match &self.location {
            Location::Zip(path) => {
                let bytes = self.to_zip()?;
                std::fs::write(path, bytes).map_err(|e| CliError::io("write", path, e))
            }
            Location::Dir(dir) => {
                write_file(&dir.join("manifest.yaml"), manifest_yaml(&self.manifest)?.as_bytes())?;
                for (name, data) in &self.assets {
                    let path = dir.join("_assets").join(name);
                    if !self.original_assets.contains(name) {
                        write_file(&path, data)?;
                    }
                }
                for name in &self.original_assets {
                    if !self.assets.contains_key(name) {
                        let path = dir.join("_assets").join(name);
                        std::fs::remove_file(&path).map_err(|e| CliError::io("remove", &path, e))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A change made to a bundle, reported with upstream's message.
#[derive(Debug, Clone, Serialize)]
pub struct BundleChange {
    #[serde(skip)]
    message: &'static str,
    pub bundle: PathBuf,
    pub version: String,
    pub dependencies: Vec<Dependency>,
}

impl Render for BundleChange {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info(self.message)])
    }
}

fn change(message: &'static str, path: &Path, bundle: &Bundle) -> BundleChange {
    BundleChange {
        message,
        bundle: path.to_path_buf(),
        version: bundle.manifest.version.clone(),
        dependencies: bundle.manifest.dependencies.clone(),
    }
}

fn i18n(text: &str) -> I18nObject {
    I18nObject::all(text)
}

#[derive(Debug, Clone, Serialize)]
pub struct InitResult {
    pub directory: PathBuf,
    pub name: String,
}

impl Render for InitResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("bundle created successfully").field("directory", self.directory.display())])
    }
}

/// Create `<parent>/<name>/` with manifest.yaml, README.md, `_assets/icon.svg` and an empty
/// `.github/workflows/`.
pub fn init(parent: &Path, profile: &Profile) -> CliResult<InitResult> {
    let dir = parent.join(&profile.name);
    if dir.exists() {
        return Err(CliError::generic(format!("directory {} already exists", dir.display()), "choose another --name or remove the directory"));
    }
    let manifest = BundleManifest {
        name: profile.name.clone(),
        labels: i18n(&profile.name),
        description: i18n(&profile.description),
        icon: "icon.svg".into(),
        version: "0.0.1".into(),
        author: profile.author.clone(),
        kind: "bundle".into(),
        dependencies: Vec::new(),
        tags: Vec::new(),
    };
    let readme = templates::BUNDLE_README
        .replace("{{bundle_name}}", &profile.name)
        .replace("{{author}}", &profile.author)
        .replace("{{version}}", &manifest.version)
        .replace("{{date}}", &chrono::Utc::now().format("%Y-%m-%d").to_string())
        .replace("{{description}}", &profile.description);
    let result = (|| {
        write_file(&dir.join("manifest.yaml"), manifest_yaml(&manifest)?.as_bytes())?;
        write_file(&dir.join("README.md"), readme.as_bytes())?;
        write_file(&dir.join("_assets/icon.svg"), templates::BUNDLE_ICON.as_bytes())?;
        let workflows = dir.join(".github/workflows");
        std::fs::create_dir_all(&workflows).map_err(|e| CliError::io("create directory", &workflows, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(InitResult { directory: dir, name: profile.name.clone() })
}

pub fn regenerate(path: &Path, profile: &Profile) -> CliResult<BundleChange> {
    let mut bundle = load(path)?;
    bundle.manifest.name = profile.name.clone();
    bundle.manifest.labels = i18n(&profile.name);
    bundle.manifest.author = profile.author.clone();
    bundle.manifest.description = i18n(&profile.description);
    bundle.save()?;
    Ok(change("successfully regenerated bundle", path, &bundle))
}

pub fn append_github(path: &Path, pattern: &str) -> CliResult<BundleChange> {
    if !GITHUB_PATTERN.is_match(pattern) {
        return Err(CliError::usage(
            "invalid github repo pattern",
            "use <owner>/<repo>:<version>/<asset>, e.g. acme/my-plugin:1.0.0/my-plugin.difypkg",
        ));
    }
    let mut bundle = load(path)?;
    bundle.manifest.dependencies.push(Dependency::Github { repo_pattern: pattern.to_string() });
    bundle.save()?;
    Ok(change("successfully added github dependency", path, &bundle))
}

pub fn append_marketplace(path: &Path, pattern: &str) -> CliResult<BundleChange> {
    if !MARKETPLACE_PATTERN.is_match(pattern) {
        return Err(CliError::usage("invalid marketplace pattern", "use <organization>/<plugin>:<version>, e.g. langgenius/openai:0.0.19"));
    }
    let mut bundle = load(path)?;
    bundle.manifest.dependencies.push(Dependency::Marketplace { marketplace_pattern: pattern.to_string() });
    bundle.save()?;
    Ok(change("successfully added marketplace dependency", path, &bundle))
}

pub fn append_package(path: &Path, package_path: &Path) -> CliResult<BundleChange> {
    let bytes = std::fs::read(package_path).map_err(|e| CliError::io("read", package_path, e))?;
    let package = dify_package::Package::from_bytes(bytes.clone(), &dify_package::DecodeLimits::default())
        .map_err(|e| package_error("failed to append package dependency", &e))?;
    let checksum = package.checksum();
    let mut bundle = load(path)?;
    let dependency = Dependency::Package { path: checksum.clone() };
    if bundle.manifest.dependencies.contains(&dependency) {
        return Err(CliError::generic(
            format!("package {checksum} is already in the bundle"),
            "each package can be added once; see `dify bundle analyze`",
        ));
    }
    bundle.assets.insert(checksum, bytes);
    bundle.manifest.dependencies.push(dependency);
    bundle.save()?;
    Ok(change("successfully added package dependency", path, &bundle))
}

pub fn remove(path: &Path, index: usize) -> CliResult<BundleChange> {
    let mut bundle = load(path)?;
    let count = bundle.manifest.dependencies.len();
    if index >= count {
        return Err(CliError::usage(
            format!("index {index} out of range: the bundle has {count} dependencies"),
            "use the 0-based index shown by `dify bundle analyze`",
        ));
    }
    let removed = bundle.manifest.dependencies.remove(index);
    if let Dependency::Package { path: checksum } = &removed {
        let still_used = bundle.manifest.dependencies.iter().any(|d| matches!(d, Dependency::Package { path } if path == checksum));
        if !still_used {
            bundle.assets.remove(checksum);
        }
    }
    bundle.save()?;
    Ok(change("successfully removed dependency", path, &bundle))
}

pub fn bump(path: &Path, target_version: &str) -> CliResult<BundleChange> {
    validate_version(target_version, "target version")?;
    let mut bundle = load(path)?;
    bundle.manifest.version = target_version.to_string();
    bundle.save()?;
    Ok(change("successfully bumped bundle version", path, &bundle))
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageResult {
    pub output_path: PathBuf,
    pub size: u64,
}

impl Render for PackageResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("successfully packaged bundle").field("output_path", self.output_path.display())])
    }
}

/// Default output: `<basename>.difybndl` (an input already ending in `.difybndl` keeps its name).
pub fn default_output_path(path: &Path) -> CliResult<PathBuf> {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(base) if base != "." && base != ".." => {
            let stem = base.strip_suffix(".difybndl").unwrap_or(base);
            Ok(PathBuf::from(format!("{stem}.difybndl")))
        }
        _ => Err(CliError::usage(
            "invalid input path, you should specify the path outside of bundle directory",
            "run the command from the parent directory or pass -o",
        )),
    }
}

fn check_manifest(bundle: &Bundle) -> CliResult<()> {
    let m = &bundle.manifest;
    validate_name(&m.name).map_err(|e| CliError::generic(format!("failed to export bundle: {}", e.message), "fix name in manifest.yaml (or run `dify bundle regenerate`)"))?;
    validate_author(&m.author).map_err(|e| CliError::generic(format!("failed to export bundle: {}", e.message), "fix author in manifest.yaml"))?;
    validate_version(&m.version, "version").map_err(|e| CliError::generic(format!("failed to export bundle: {}", e.message), "set it with `dify bundle bump -t <version>`"))?;
    if m.kind != "bundle" {
        return Err(CliError::generic(format!("failed to export bundle: type must be \"bundle\", got {:?}", m.kind), "set type: bundle in manifest.yaml"));
    }
    if m.labels.en_us.is_empty() || m.description.en_us.is_empty() {
        return Err(CliError::generic("failed to export bundle: labels.en_US and description.en_US are required", "fill them in manifest.yaml"));
    }
    if !bundle.assets.contains_key(&m.icon) {
        return Err(CliError::generic(format!("failed to export bundle: icon {:?} not found in _assets/", m.icon), "add the icon file under _assets/"));
    }
    for d in &m.dependencies {
        if let Dependency::Package { path } = d {
            if !bundle.assets.contains_key(path) {
                return Err(CliError::generic(format!("failed to export bundle: package {path} not found in _assets/"), "remove the dependency and append the package again"));
            }
        }
    }
    Ok(())
}

pub fn package(path: &Path, output_path: Option<&Path>) -> CliResult<PackageResult> {
    let output_path = match output_path {
        Some(p) => p.to_path_buf(),
        None => default_output_path(path)?,
    };
    let bundle = load(path)?;
    check_manifest(&bundle)?;
    let bytes = bundle.to_zip()?;
    std::fs::write(&output_path, &bytes).map_err(|e| CliError::io("write", &output_path, e))?;
    Ok(PackageResult { output_path, size: bytes.len() as u64 })
}

/// One dependency with its parsed parts.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzedDependency {
    pub index: usize,
    #[serde(flatten)]
    pub dependency: Dependency,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<&'static str, String>,
    /// Size of the embedded package (package dependencies), `None` when it is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub name: String,
    pub version: String,
    pub dependencies: Vec<AnalyzedDependency>,
}

impl Render for Analysis {
    fn text(&self) -> TextOutput {
        if self.dependencies.is_empty() {
            return TextOutput::Log(vec![LogLine::info("no dependencies found")]);
        }
        let mut lines = Vec::new();
        for d in &self.dependencies {
            lines.push(LogLine::info("dependency").field("index", d.index));
            let line = match &d.dependency {
                Dependency::Github { repo_pattern } => LogLine::info("github dependency").field("pattern", repo_pattern),
                Dependency::Marketplace { marketplace_pattern } => LogLine::info("marketplace dependency").field("pattern", marketplace_pattern),
                Dependency::Package { path } if d.missing => LogLine::error("package not found").field("path", path),
                Dependency::Package { path } => LogLine::info("package dependency").field("path", path),
            };
            let mut line = line;
            for key in ["repo", "release", "asset", "organization", "plugin", "version"] {
                if let Some(v) = d.parts.get(key) {
                    line = line.field(key, v);
                }
            }
            if let Some(size) = d.size {
                line = line.field("size", size);
            }
            lines.push(line);
        }
        TextOutput::Log(lines)
    }
}

fn github_parts(pattern: &str) -> BTreeMap<&'static str, String> {
    let pieces: Vec<&str> = pattern.split(':').flat_map(|s| s.split('/')).collect();
    let mut parts = BTreeMap::new();
    if pieces.len() >= 3 {
        parts.insert("repo", format!("https://github.com/{}/{}", pieces[0], pieces[1]));
        parts.insert("release", pieces[2].to_string());
    }
    if pieces.len() >= 4 {
        parts.insert("asset", pieces[3].to_string());
    }
    parts
}

fn marketplace_parts(pattern: &str) -> BTreeMap<&'static str, String> {
    let mut parts = BTreeMap::new();
    if let Some((org, rest)) = pattern.split_once('/') {
        parts.insert("organization", org.to_string());
        if let Some((plugin, version)) = rest.split_once(':') {
            parts.insert("plugin", plugin.to_string());
            parts.insert("version", version.to_string());
        }
    }
    parts
}

pub fn analyze(path: &Path) -> CliResult<Analysis> {
    let bundle = load(path)?;
    let dependencies = bundle
        .manifest
        .dependencies
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let (parts, size, missing) = match d {
                Dependency::Github { repo_pattern } => (github_parts(repo_pattern), None, false),
                Dependency::Marketplace { marketplace_pattern } => (marketplace_parts(marketplace_pattern), None, false),
                Dependency::Package { path } => {
                    let size = bundle.assets.get(path).map(|a| a.len() as u64);
                    (BTreeMap::new(), size, size.is_none())
                }
            };
            AnalyzedDependency { index, dependency: d.clone(), parts, size, missing }
        })
        .collect();
    Ok(Analysis { name: bundle.manifest.name.clone(), version: bundle.manifest.version.clone(), dependencies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_upstream_regexes() {
        for ok in ["acme/my-plugin:1.0.0/my-plugin.difypkg", "a/b:^1.2.3/x", "a/b:1.x.X/x", "a/b:1.0.0-1.2.0/x"] {
            assert!(GITHUB_PATTERN.is_match(ok), "{ok}");
        }
        for bad in ["acme/my-plugin:1.0/x", "Acme/p:1.0.0/x", "a/b:1.0.0", "a/b:1.0.0/x/y"] {
            assert!(!GITHUB_PATTERN.is_match(bad), "{bad}");
        }
        assert!(MARKETPLACE_PATTERN.is_match("langgenius/openai:0.0.19"));
        assert!(MARKETPLACE_PATTERN.is_match("langgenius/openai:~0.0.19"));
        assert!(!MARKETPLACE_PATTERN.is_match("langgenius/openai"));
    }

    #[test]
    fn parts_are_parsed() {
        let g = github_parts("acme/my-plugin:1.0.0/my-plugin.difypkg");
        assert_eq!(g["repo"], "https://github.com/acme/my-plugin");
        assert_eq!(g["release"], "1.0.0");
        assert_eq!(g["asset"], "my-plugin.difypkg");
        let m = marketplace_parts("langgenius/openai:0.0.19");
        assert_eq!((m["organization"].as_str(), m["plugin"].as_str(), m["version"].as_str()), ("langgenius", "openai", "0.0.19"));
    }

    #[test]
    fn dependency_yaml_shape() {
        let d = vec![Dependency::Package { path: "abc".into() }, Dependency::Marketplace { marketplace_pattern: "a/b:1.0.0".into() }];
        let y = serde_yaml_ng::to_string(&d).unwrap();
        assert!(y.contains("type: package") && y.contains("path: abc") && y.contains("marketplace_pattern: a/b:1.0.0"), "{y}");
        let back: Vec<Dependency> = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn profile_is_validated() {
        let p = ProfileInput { name: Some("b".into()), author: Some("a".into()), description: Some("d".into()) };
        assert!(p.resolve().is_ok());
        let bad = ProfileInput { name: Some("B B".into()), ..p.clone() };
        assert_eq!(bad.resolve().unwrap_err().exit_status(), 2);
        let none = ProfileInput { description: Some(" ".into()), ..p };
        assert_eq!(none.resolve().unwrap_err().exit_status(), 2);
        let asked = ask_profile("\nme\nstuff\n".as_bytes(), Vec::new(), ProfileInput { name: Some("x".into()), ..Default::default() }).unwrap();
        assert_eq!(asked.resolve().unwrap(), Profile { name: "x".into(), author: "me".into(), description: "stuff".into() });
    }
}
