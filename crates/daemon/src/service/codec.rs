//! The daemon's narrow view of the package codec (`dify-package`): decode a package, verify its
//! signature, read a file from it, list a bundle's dependencies. Everything the services need from
//! the codec goes through these few functions, with errors flattened to text for the wire.

use dify_package::{DecodeLimits, Package, PublicKey};
use dify_protocol::api::{GithubBundleDependency, MarketplaceBundleDependency, PluginVerification};
use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use serde_json::Value;

/// What the daemon keeps from a decoded package.
pub struct DecodedPackage {
    pub declaration: PluginDeclaration,
    pub unique_identifier: PluginUniqueIdentifier,
    /// `_assets/` files: `(name relative to _assets/, bytes)`.
    pub assets: Vec<(String, Vec<u8>)>,
    /// `(language, content)` of every readme.
    pub readmes: Vec<(String, String)>,
}

/// Decodes package bytes (untrusted) within the uncompressed size limit.
pub fn decode_package(bytes: &[u8], max_uncompressed_size: u64) -> Result<DecodedPackage, String> {
    let limits = DecodeLimits::with_max_uncompressed_size(max_uncompressed_size);
    let package = Package::from_bytes(bytes.to_vec(), &limits).map_err(|e| e.to_string())?;
    let unique_identifier = package.unique_identifier().map_err(|e| e.to_string())?;
    let assets = package.assets().into_iter().collect();
    let readmes = package.readmes().map(|m| m.into_iter().collect()).unwrap_or_default();
    Ok(DecodedPackage { declaration: package.declaration().clone(), unique_identifier, assets, readmes })
}

/// Checks the signature against the official key plus `extra_keys_pem`; `Some` (who signed it)
/// when it is valid, `None` when the package is unsigned or the signature does not verify.
pub fn verify_signature(bytes: &[u8], extra_keys_pem: &[Vec<u8>]) -> Option<PluginVerification> {
    let keys: Vec<PublicKey> = extra_keys_pem
        .iter()
        .filter_map(|pem| std::str::from_utf8(pem).ok())
        .filter_map(|pem| PublicKey::from_pem(pem).ok())
        .collect();
    dify_package::signature::verify(bytes, &keys)
        .ok()
        .map(|v| PluginVerification { authorized_category: v.authorized_category })
}

/// One file of a package; `Ok(None)` when the path is absent.
pub fn read_file(bytes: &[u8], path: &str, max_uncompressed_size: u64) -> Result<Option<Vec<u8>>, String> {
    let limits = DecodeLimits::with_max_uncompressed_size(max_uncompressed_size);
    let archive = dify_package::read_archive(bytes, &limits).map_err(|e| e.to_string())?;
    let wanted = path.trim_start_matches("./").trim_start_matches('/');
    Ok(archive.entries.into_iter().find(|e| e.name == wanted).map(|e| e.data))
}

/// A dependency listed by a bundle.
pub enum BundleDependency {
    Github(GithubBundleDependency),
    Marketplace(MarketplaceBundleDependency),
    /// An embedded package.
    Package { bytes: Vec<u8> },
}

/// Lists a bundle's dependencies, in order, loading embedded packages from `_assets/<path>`.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<BundleDependency>, String> {
    let archive = dify_package::read_archive(bytes, &DecodeLimits::for_bundle()).map_err(|e| e.to_string())?;
    let manifest = archive
        .entries
        .iter()
        .find(|e| e.name == "manifest.yaml")
        .ok_or_else(|| "manifest.yaml not found".to_string())?;
    let manifest: Value =
        serde_yaml_ng::from_slice(&manifest.data).map_err(|e| format!("failed to decode manifest.yaml: {e}"))?;
    if manifest.get("type").and_then(Value::as_str) != Some("bundle") {
        return Err("bundle manifest type must be bundle".into());
    }
    let dependencies = manifest.get("dependencies").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(dependencies.len());
    for dependency in dependencies {
        let kind = dependency.get("type").and_then(Value::as_str).unwrap_or("");
        let value = dependency.get("value").cloned().unwrap_or(Value::Null);
        match kind {
            "github" => {
                let pattern = value.get("repo_pattern").and_then(Value::as_str).unwrap_or("");
                let (repo, rest) = pattern.split_once(':').ok_or_else(|| format!("invalid github pattern {pattern:?}"))?;
                let (release, asset) = rest.split_once('/').ok_or_else(|| format!("invalid github pattern {pattern:?}"))?;
                out.push(BundleDependency::Github(GithubBundleDependency {
                    repo_address: format!("https://github.com/{repo}"),
                    repo: repo.to_string(),
                    release: release.to_string(),
                    packages: asset.to_string(),
                }));
            }
            "marketplace" => {
                let pattern = value.get("marketplace_pattern").and_then(Value::as_str).unwrap_or("");
                let (id, version) =
                    pattern.split_once(':').ok_or_else(|| format!("invalid marketplace pattern {pattern:?}"))?;
                let (organization, plugin) =
                    id.split_once('/').ok_or_else(|| format!("invalid marketplace pattern {pattern:?}"))?;
                out.push(BundleDependency::Marketplace(MarketplaceBundleDependency {
                    organization: organization.to_string(),
                    plugin: plugin.to_string(),
                    version: version.to_string(),
                }));
            }
            "package" => {
                let path = value.get("path").and_then(Value::as_str).unwrap_or("");
                let name = format!("_assets/{path}");
                let entry = archive
                    .entries
                    .iter()
                    .find(|e| e.name == name)
                    .ok_or_else(|| format!("package {path} not found in bundle"))?;
                out.push(BundleDependency::Package { bytes: entry.data.clone() });
            }
            other => return Err(format!("unknown bundle dependency type {other:?}")),
        }
    }
    Ok(out)
}
