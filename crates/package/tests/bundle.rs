//! Bundles: manifest parsing, dependency patterns, write/read round trip, edit operations.

mod support;

use dify_package::bundle::{is_valid_github_pattern, is_valid_marketplace_pattern, Bundle, BundleError, BundleManifest, Dependency};
use dify_package::{DecodeLimits, Package, PackageError};

const EXAMPLE: &str = r#"name: my_bundle
labels: {en_US: my_bundle, ja_JP: my_bundle, zh_Hans: my_bundle, pt_BR: my_bundle}
description: {en_US: demo, ja_JP: demo, zh_Hans: demo, pt_BR: demo}
icon: icon.svg
version: 0.0.1
author: acme
type: bundle
dependencies:
  - type: github
    value: {repo_pattern: "acme/my-plugin:^1.0.0/my-plugin.difypkg"}
  - type: marketplace
    value: {marketplace_pattern: "langgenius/openai:0.0.19"}
  - type: package
    value: {path: ee25cddb7264169044e305955abbf97eff0876a151ced2bf20c5907430ad5727}
"#;

#[test]
fn example_manifest_parses() {
    let manifest: BundleManifest = serde_yaml_ng::from_str(EXAMPLE).unwrap();
    assert_eq!(manifest.validate(), Ok(()));
    assert_eq!(manifest.tags, Vec::<String>::new());
    match &manifest.dependencies[0] {
        Dependency::Github(github) => {
            assert_eq!(github.repo_url(), "https://github.com/acme/my-plugin");
            assert_eq!(github.github_repo(), "acme/my-plugin");
            assert_eq!(github.release(), "^1.0.0");
            assert_eq!(github.asset(), "my-plugin.difypkg");
        }
        other => panic!("{other:?}"),
    }
    match &manifest.dependencies[1] {
        Dependency::Marketplace(market) => {
            assert_eq!(
                (market.organization().as_str(), market.plugin().as_str(), market.version().as_str()),
                ("langgenius", "openai", "0.0.19")
            );
        }
        other => panic!("{other:?}"),
    }
    let json = serde_json::to_value(&manifest).unwrap();
    assert_eq!(
        json["dependencies"][2],
        serde_json::json!({"type": "package", "value": {"path": "ee25cddb7264169044e305955abbf97eff0876a151ced2bf20c5907430ad5727"}})
    );
    assert_eq!(json["tags"], serde_json::json!([]));
}

#[test]
fn dependency_patterns() {
    for ok in ["acme/p:1.0.0/p.difypkg", "acme/p:~1.2.3/x", "acme/p:1.x.X/x", "acme/p:1.0.0-1.2.0/x"] {
        assert!(is_valid_github_pattern(ok), "{ok}");
    }
    for bad in ["acme/p:1.0/x", "Acme/p:1.0.0/x", "acme/p:1.0.0", "acme/p:1.0.0/a/b"] {
        assert!(!is_valid_github_pattern(bad), "{bad}");
    }
    assert!(is_valid_marketplace_pattern("langgenius/openai:0.0.19"));
    assert!(is_valid_marketplace_pattern("langgenius/openai:^0.0.19"));
    assert!(!is_valid_marketplace_pattern("langgenius/openai"));
    assert!(!is_valid_marketplace_pattern("langgenius/openai:0.0.19/x"));
}

#[test]
fn write_read_and_edit() {
    let mut bundle = Bundle::new(BundleManifest::new("my_bundle", "acme", "demo"));
    bundle.set_file("_assets/icon.svg", b"<svg/>".to_vec());
    bundle.set_file("README.md", b"# bundle".to_vec());
    bundle.append_github("acme/my-plugin:1.0.0/my-plugin.difypkg").unwrap();
    bundle.append_marketplace("langgenius/openai:0.0.19").unwrap();
    assert!(matches!(bundle.append_marketplace("nope"), Err(BundleError::InvalidMarketplacePattern(_))));
    let package_bytes = support::build_zip(&support::raw_plugin_entries(), b"");
    let checksum = bundle.append_package(package_bytes.clone(), &DecodeLimits::default()).unwrap();
    assert_eq!(checksum, Package::from_bytes(package_bytes.clone(), &DecodeLimits::default()).unwrap().checksum());
    bundle.bump_version("0.1.0").unwrap();
    assert!(matches!(bundle.bump_version("1.0"), Err(BundleError::InvalidVersion(_))));

    let bytes = bundle.to_bytes().unwrap();
    let read = Bundle::from_bytes(&bytes, &DecodeLimits::for_bundle()).unwrap();
    assert_eq!(read, bundle);
    assert_eq!(read.manifest.version, "0.1.0");
    let Dependency::Package(package) = &read.manifest.dependencies[2] else { panic!() };
    assert_eq!(read.package_bytes(package), Some(package_bytes.as_slice()));
    let archive = dify_package::read_archive(&bytes, &DecodeLimits::for_bundle()).unwrap();
    assert_eq!(archive.entries[0].name, "manifest.yaml", "manifest is written first");

    // Directory form round trip.
    let dir = tempfile::tempdir().unwrap();
    read.write_dir(dir.path()).unwrap();
    assert_eq!(Bundle::from_dir(dir.path()).unwrap(), bundle);

    let mut edited = read;
    let removed = edited.remove_dependency(2).unwrap();
    assert!(matches!(removed, Dependency::Package(_)));
    assert!(edited.files().all(|(name, _)| !name.contains(&checksum)), "asset removed with its dependency");
    assert_eq!(edited.remove_dependency(5), Err(BundleError::IndexOutOfRange { index: 5, len: 2 }));
}

#[test]
fn bundle_without_manifest_is_refused() {
    let bytes = dify_package::write_archive([("README.md", b"x".as_slice())], &[]).unwrap();
    assert_eq!(Bundle::from_bytes(&bytes, &DecodeLimits::for_bundle()).unwrap_err(), PackageError::MissingManifest);
}

#[test]
fn bundle_validation_reports_problems() {
    let mut manifest = BundleManifest::new("Bad Name", "acme", "demo");
    manifest.manifest_type = "plugin".into();
    manifest.tags = vec!["nope".into()];
    let fields: Vec<String> = manifest.validate().unwrap_err().into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["name", "type", "tags[0]"]);
}
