//! `dify bundle …`: create and edit plugin bundles (`.difybndl`).
//!
//! A bundle is a directory (`manifest.yaml`, `_assets/`, `README*`) or a zip file with the same
//! layout, edited in place. The bundle model, dependency patterns and (de)serialisation are
//! `dify-package`'s [`dify_package::bundle`]; this module adds the command-line behaviour:
//! upstream messages, profile prompts, in-place saving of both forms, and analysis output.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use dify_package::bundle::{Bundle, BundleError, BundleManifest, Dependency};
use dify_package::DecodeLimits;
use serde::Serialize;

use crate::commands::plugin::init::{validate_author, validate_name, validate_version};
use crate::commands::source::{package_error, problems_error};
use crate::error::{CliError, CliResult};
use crate::output::{LogLine, Render, TextOutput};
use crate::templates;

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
        validate_name(&name)
            .map_err(|e| CliError::usage(e.message.replace("plugin name", "bundle name"), "pass --name, e.g. --name my_bundle"))?;
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
            return Err(CliError::usage(
                "input ended before all questions were answered",
                "pass --name, --author and --description instead",
            ));
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

/// A bundle opened from a directory or a zip file, saved back to the same place.
struct OpenBundle {
    location: Location,
    bundle: Bundle,
    /// `_assets/…` files present when a directory was opened (to delete removed ones on save).
    original_assets: BTreeSet<String>,
}

enum Location {
    Dir(PathBuf),
    Zip(PathBuf),
}

fn asset_names(bundle: &Bundle) -> BTreeSet<String> {
    bundle.files().map(|(n, _)| n).filter(|n| n.starts_with("_assets/")).map(str::to_string).collect()
}

fn bundle_error(context: &str, e: BundleError) -> CliError {
    match e {
        BundleError::Package(p) => package_error(context, &p),
        BundleError::InvalidGithubPattern(_) => CliError::usage(
            "invalid github repo pattern",
            "use <owner>/<repo>:<version>/<asset>, e.g. acme/my-plugin:1.0.0/my-plugin.difypkg",
        ),
        BundleError::InvalidMarketplacePattern(_) => {
            CliError::usage("invalid marketplace pattern", "use <organization>/<plugin>:<version>, e.g. langgenius/openai:0.0.19")
        }
        BundleError::InvalidVersion(v) => CliError::usage(
            format!("invalid target version {v:?}"),
            "use three numeric parts with an optional suffix, e.g. 1.2.3 or 1.2.3-beta",
        ),
        BundleError::IndexOutOfRange { index, len } => CliError::usage(
            format!("index {index} out of range: the bundle has {len} dependencies"),
            "use the 0-based index shown by `dify bundle analyze`",
        ),
    }
}

fn load(path: &Path) -> CliResult<OpenBundle> {
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::generic(format!("failed to load bundle packager: {}: {e}", path.display()), "pass a bundle directory or .difybndl file")
    })?;
    if meta.is_dir() {
        let bundle = Bundle::from_dir(path).map_err(|e| package_error("failed to load bundle packager", &e))?;
        let original_assets = asset_names(&bundle);
        Ok(OpenBundle { location: Location::Dir(path.to_path_buf()), bundle, original_assets })
    } else {
        let bytes = std::fs::read(path).map_err(|e| CliError::io("read", path, e))?;
        let bundle =
            Bundle::from_bytes(&bytes, &DecodeLimits::for_bundle()).map_err(|e| package_error("failed to load bundle packager", &e))?;
        Ok(OpenBundle { location: Location::Zip(path.to_path_buf()), bundle, original_assets: BTreeSet::new() })
    }
}

impl OpenBundle {
    fn manifest(&self) -> &BundleManifest {
        &self.bundle.manifest
    }

    fn save(&self) -> CliResult<()> {
        match &self.location {
            Location::Zip(path) => {
                let bytes = self.bundle.to_bytes().map_err(|e| package_error("failed to save bundle packager", &e))?;
                std::fs::write(path, bytes).map_err(|e| CliError::io("write", path, e))
            }
            Location::Dir(dir) => {
                self.bundle.write_dir(dir).map_err(|e| package_error("failed to save bundle packager", &e))?;
                for gone in self.original_assets.difference(&asset_names(&self.bundle)) {
                    let path = dir.join(gone);
                    std::fs::remove_file(&path).map_err(|e| CliError::io("remove", &path, e))?;
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

fn change(message: &'static str, path: &Path, open: &OpenBundle) -> BundleChange {
    BundleChange {
        message,
        bundle: path.to_path_buf(),
        version: open.manifest().version.clone(),
        dependencies: open.manifest().dependencies.clone(),
    }
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
        return Err(CliError::generic(
            format!("directory {} already exists", dir.display()),
            "choose another --name or remove the directory",
        ));
    }
    let mut bundle = Bundle::new(BundleManifest::new(&profile.name, &profile.author, &profile.description));
    let readme = templates::BUNDLE_README
        .replace("{{bundle_name}}", &profile.name)
        .replace("{{author}}", &profile.author)
        .replace("{{version}}", &bundle.manifest.version)
        .replace("{{date}}", &chrono::Utc::now().format("%Y-%m-%d").to_string())
        .replace("{{description}}", &profile.description);
    bundle.set_file("README.md", readme.into_bytes());
    bundle.set_file(&format!("_assets/{}", bundle.manifest.icon), templates::BUNDLE_ICON.as_bytes().to_vec());
    let result = (|| {
        bundle.write_dir(&dir).map_err(|e| package_error("failed to create bundle", &e))?;
        let workflows = dir.join(".github/workflows");
        std::fs::create_dir_all(&workflows).map_err(|e| CliError::io("create directory", &workflows, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(InitResult { directory: dir, name: profile.name.clone() })
}

/// Replace name, labels, author and description.
pub fn regenerate(path: &Path, profile: &Profile) -> CliResult<BundleChange> {
    let mut open = load(path)?;
    let fresh = BundleManifest::new(&profile.name, &profile.author, &profile.description);
    let m = &mut open.bundle.manifest;
    m.name = fresh.name;
    m.labels = fresh.labels;
    m.author = fresh.author;
    m.description = fresh.description;
    open.save()?;
    Ok(change("successfully regenerated bundle", path, &open))
}

pub fn append_github(path: &Path, pattern: &str) -> CliResult<BundleChange> {
    let mut open = load(path)?;
    open.bundle.append_github(pattern).map_err(|e| bundle_error("failed to add github dependency", e))?;
    open.save()?;
    Ok(change("successfully added github dependency", path, &open))
}

pub fn append_marketplace(path: &Path, pattern: &str) -> CliResult<BundleChange> {
    let mut open = load(path)?;
    open.bundle.append_marketplace(pattern).map_err(|e| bundle_error("failed to add marketplace dependency", e))?;
    open.save()?;
    Ok(change("successfully added marketplace dependency", path, &open))
}

/// Embed a `.difypkg` as `_assets/<checksum>`; the same package cannot be added twice.
pub fn append_package(path: &Path, package_path: &Path) -> CliResult<BundleChange> {
    let bytes = std::fs::read(package_path).map_err(|e| CliError::io("read", package_path, e))?;
    let mut open = load(path)?;
    let before = open.manifest().dependencies.clone();
    let checksum = open
        .bundle
        .append_package(bytes, &DecodeLimits::default())
        .map_err(|e| bundle_error("failed to append package dependency", e))?;
    let already = before.iter().any(|d| matches!(d, Dependency::Package(p) if p.path == checksum));
    if already {
        return Err(CliError::generic(
            format!("package {checksum} is already in the bundle"),
            "each package can be added once; see `dify bundle analyze`",
        ));
    }
    open.save()?;
    Ok(change("successfully added package dependency", path, &open))
}

pub fn remove(path: &Path, index: usize) -> CliResult<BundleChange> {
    let mut open = load(path)?;
    open.bundle.remove_dependency(index).map_err(|e| bundle_error("failed to remove dependency", e))?;
    open.save()?;
    Ok(change("successfully removed dependency", path, &open))
}

pub fn bump(path: &Path, target_version: &str) -> CliResult<BundleChange> {
    validate_version(target_version, "target version")?;
    let mut open = load(path)?;
    open.bundle.bump_version(target_version).map_err(|e| bundle_error("failed to parse target version", e))?;
    open.save()?;
    Ok(change("successfully bumped bundle version", path, &open))
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

/// The manifest rules plus: the icon and every embedded package are present.
fn check_exportable(bundle: &Bundle) -> CliResult<()> {
    bundle.manifest.validate().map_err(|p| problems_error("failed to export bundle", &p))?;
    let assets = asset_names(bundle);
    let icon = format!("_assets/{}", bundle.manifest.icon);
    if !assets.contains(&icon) {
        return Err(CliError::generic(
            format!("failed to export bundle: icon {:?} not found in _assets/", bundle.manifest.icon),
            "add the icon file under _assets/",
        ));
    }
    for d in &bundle.manifest.dependencies {
        if let Dependency::Package(p) = d {
            if bundle.package_bytes(p).is_none() {
                return Err(CliError::generic(
                    format!("failed to export bundle: package {} not found in _assets/", p.path),
                    "remove the dependency and append the package again",
                ));
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
    let open = load(path)?;
    check_exportable(&open.bundle)?;
    let bytes = open.bundle.to_bytes().map_err(|e| package_error("failed to export bundle", &e))?;
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
            let mut line = match &d.dependency {
                Dependency::Github(g) => LogLine::info("github dependency").field("pattern", &g.repo_pattern),
                Dependency::Marketplace(m) => LogLine::info("marketplace dependency").field("pattern", &m.marketplace_pattern),
                Dependency::Package(p) if d.missing => LogLine::error("package not found").field("path", &p.path),
                Dependency::Package(p) => LogLine::info("package dependency").field("path", &p.path),
            };
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

pub fn analyze(path: &Path) -> CliResult<Analysis> {
    let open = load(path)?;
    let dependencies = open
        .manifest()
        .dependencies
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let (parts, size, missing) = match d {
                Dependency::Github(g) => {
                    (BTreeMap::from([("repo", g.repo_url()), ("release", g.release()), ("asset", g.asset())]), None, false)
                }
                Dependency::Marketplace(m) => {
                    (BTreeMap::from([("organization", m.organization()), ("plugin", m.plugin()), ("version", m.version())]), None, false)
                }
                Dependency::Package(p) => {
                    let size = open.bundle.package_bytes(p).map(|b| b.len() as u64);
                    (BTreeMap::new(), size, size.is_none())
                }
            };
            AnalyzedDependency { index, dependency: d.clone(), parts, size, missing }
        })
        .collect();
    Ok(Analysis { name: open.manifest().name.clone(), version: open.manifest().version.clone(), dependencies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_is_validated() {
        let p = ProfileInput { name: Some("b".into()), author: Some("a".into()), description: Some("d".into()) };
        assert!(p.resolve().is_ok());
        let bad = ProfileInput { name: Some("B B".into()), ..p.clone() };
        assert_eq!(bad.resolve().unwrap_err().exit_status(), 2);
        let none = ProfileInput { description: Some(" ".into()), ..p };
        assert_eq!(none.resolve().unwrap_err().exit_status(), 2);
        let asked =
            ask_profile("\nme\nstuff\n".as_bytes(), Vec::new(), ProfileInput { name: Some("x".into()), ..Default::default() }).unwrap();
        assert_eq!(asked.resolve().unwrap(), Profile { name: "x".into(), author: "me".into(), description: "stuff".into() });
        assert_eq!(ask_profile("".as_bytes(), Vec::new(), ProfileInput::default()).unwrap_err().exit_status(), 2);
    }

    #[test]
    fn bundle_errors_map_to_usage_with_hints() {
        let e = bundle_error("x", BundleError::IndexOutOfRange { index: 3, len: 1 });
        assert_eq!(e.exit_status(), 2);
        assert!(e.hint.contains("analyze"));
        assert_eq!(bundle_error("x", BundleError::InvalidGithubPattern("p".into())).exit_status(), 2);
    }

    #[test]
    fn default_output_does_not_double_the_extension() {
        assert_eq!(default_output_path(Path::new("a/kit")).unwrap(), PathBuf::from("kit.difybndl"));
        assert_eq!(default_output_path(Path::new("kit.difybndl")).unwrap(), PathBuf::from("kit.difybndl"));
        assert_eq!(default_output_path(Path::new(".")).unwrap_err().exit_status(), 2);
    }
}
