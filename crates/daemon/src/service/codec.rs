//! The daemon's narrow view of the package codec (`dify-package`): decode a package, verify its
//! signature, read a file from it, list a bundle's dependencies. Everything the services need from
//! the codec goes through these few functions; their failures are a [`CodecError`], whose text is
//! what callers put on the wire.

use dify_package::bundle::{Bundle, Dependency};
use dify_package::{DecodeLimits, Package, PublicKey};
use dify_protocol::api::{GithubBundleDependency, MarketplaceBundleDependency, PluginVerification};
use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};

/// Why a package or bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The archive, its manifest or its identifier is invalid.
    #[error(transparent)]
    Package(#[from] dify_package::PackageError),
    /// The manifest of a bundle does not say `type: bundle`.
    #[error("bundle manifest type must be bundle")]
    NotABundle,
    /// A bundle lists an embedded package it does not contain.
    #[error("package {0} not found in bundle")]
    MissingBundlePackage(String),
}

/// What the daemon keeps from a decoded package.
pub struct DecodedPackage {
    pub declaration: PluginDeclaration,
    pub unique_identifier: PluginUniqueIdentifier,
    /// `_assets/` files: `(name relative to _assets/, bytes)`.
    pub assets: Vec<(String, Vec<u8>)>,
    /// `(language, content)` of every readme.
    pub readmes: Vec<(String, String)>,
}

/// Decodes package bytes (untrusted) within the uncompressed size limit, and checks its signature
/// against the official key plus `extra_keys` on the same decoded entries (the archive is inflated
/// once). The verification is `Some` (who signed it) when the signature is valid, `None` when the
/// package is unsigned or the signature does not verify.
pub fn decode_package(
    bytes: &[u8],
    max_uncompressed_size: u64,
    extra_keys: &[PublicKey],
) -> Result<(DecodedPackage, Option<PluginVerification>), CodecError> {
    decode_owned_package(bytes.to_vec(), max_uncompressed_size, extra_keys)
}

/// [`decode_package`] taking the bytes by value, so they are not copied once more.
pub fn decode_owned_package(
    bytes: Vec<u8>,
    max_uncompressed_size: u64,
    extra_keys: &[PublicKey],
) -> Result<(DecodedPackage, Option<PluginVerification>), CodecError> {
    let limits = DecodeLimits::with_max_uncompressed_size(max_uncompressed_size);
    let package = Package::from_bytes(bytes, &limits)?;
    let unique_identifier = package.unique_identifier()?;
    let verification = package
        .verify_signature(extra_keys)
        .ok()
        .map(|v| PluginVerification { authorized_category: v.authorized_category });
    let assets = package.assets().into_iter().collect();
    let readmes = package.readmes().map(|m| m.into_iter().collect()).unwrap_or_default();
    let decoded = DecodedPackage { declaration: package.declaration().clone(), unique_identifier, assets, readmes };
    Ok((decoded, verification))
}

/// One file of a package; `Ok(None)` when the path is absent.
pub fn read_file(bytes: &[u8], path: &str, max_uncompressed_size: u64) -> Result<Option<Vec<u8>>, CodecError> {
    let limits = DecodeLimits::with_max_uncompressed_size(max_uncompressed_size);
    let archive = dify_package::read_archive(bytes, &limits)?;
    let wanted = path.trim_start_matches("./").trim_start_matches('/');
    Ok(archive.entries.into_iter().find(|e| e.name == wanted).map(|e| e.data))
}

/// A dependency listed by a bundle.
pub enum BundleDependency {
    Github(GithubBundleDependency),
    Marketplace(MarketplaceBundleDependency),
    /// An embedded package.
    Package {
        bytes: Vec<u8>,
    },
}

/// Lists a bundle's dependencies, in order, loading embedded packages from `_assets/<path>`.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<BundleDependency>, CodecError> {
    let bundle = Bundle::from_bytes(bytes, &DecodeLimits::for_bundle())?;
    if bundle.manifest.manifest_type != "bundle" {
        return Err(CodecError::NotABundle);
    }
    let mut out = Vec::with_capacity(bundle.manifest.dependencies.len());
    for dependency in &bundle.manifest.dependencies {
        match dependency {
            Dependency::Github(github) => out.push(BundleDependency::Github(GithubBundleDependency {
                repo_address: github.repo_url(),
                repo: github.github_repo(),
                release: github.release(),
                packages: github.asset(),
            })),
            Dependency::Marketplace(marketplace) => out.push(BundleDependency::Marketplace(MarketplaceBundleDependency {
                organization: marketplace.organization(),
                plugin: marketplace.plugin(),
                version: marketplace.version(),
            })),
            Dependency::Package(package) => {
                let bytes = bundle.package_bytes(package).ok_or_else(|| CodecError::MissingBundlePackage(package.path.to_string()))?;
                out.push(BundleDependency::Package { bytes: bytes.to_vec() });
            }
        }
    }
    Ok(out)
}
