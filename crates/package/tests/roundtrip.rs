//! Writing packages from directories and reading them back: ignore rules, declaration loading,
//! readmes, assets, extraction and strict validation.

mod support;

use std::path::Path;

use dify_package::{validate, write, DecodeLimits, Package, PackageError};
use dify_protocol::manifest::PluginCategory;

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &support::plugin_files());
    dir
}

#[test]
fn write_then_read_round_trip() {
    let dir = plugin_dir();
    let from_dir = Package::from_dir(dir.path()).unwrap();
    let bytes = write::package_dir(dir.path()).unwrap();
    let from_zip = Package::from_bytes(bytes.clone(), &DecodeLimits::default()).unwrap();

    // Same files, same checksum, same declaration.
    assert_eq!(from_dir.checksum(), from_zip.checksum());
    assert_eq!(from_dir.declaration(), from_zip.declaration());
    let names: Vec<&str> = from_zip.file_names().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are written in sorted order");
    for (name, data) in support::plugin_files() {
        assert_eq!(from_zip.read_file(&name), Some(data.as_slice()), "{name}");
    }
    assert_eq!(from_zip.read_file("./tools/echo.yaml").map(|d| d.len()), Some(support::TOOL.len()));
    let identifier = from_zip.unique_identifier().unwrap();
    assert_eq!(identifier.plugin_id(), "acme/demo_tool");
    assert_eq!(identifier.checksum(), from_zip.checksum());

    // Writing is deterministic.
    assert_eq!(write::package_dir(dir.path()).unwrap(), bytes);
}

#[test]
fn declaration_is_resolved_with_defaults() {
    let package = Package::from_dir(plugin_dir().path()).unwrap();
    let declaration = package.declaration();
    assert_eq!(declaration.category(), PluginCategory::Tool);
    let tool = declaration.tool.as_ref().unwrap();
    // Inline tools come first, then the referenced files, like upstream.
    let names: Vec<&str> = tool.tools.iter().map(|t| t.identity.name.as_str()).collect();
    assert_eq!(names, ["inline_tool", "echo"]);
    // credentials_for_provider mapping → credentials_schema list with names.
    assert_eq!(tool.credentials_schema.len(), 1);
    assert_eq!(tool.credentials_schema[0].name, "api_key");
    assert_eq!(tool.credentials_schema[0].config_type, "secret-input");
    // FillInDefaultValues: empty provider description and tags come from the plugin.
    assert_eq!(tool.identity.description.en_us, "A demo tool plugin");
    assert_eq!(tool.identity.tags, ["utilities"]);
    let echo = &tool.tools[1];
    assert_eq!(echo.parameters[1].options[1].value, "1", "numeric option values become strings");
    assert_eq!(echo.parameters[1].default, serde_json::json!("loud"));

    let json = declaration.to_json_value();
    assert_eq!(json["tool"]["tools"][1]["parameters"][0]["scope"], serde_json::Value::Null);
    assert_eq!(json["tool"]["tools"][1]["parameters"][1]["min"], serde_json::json!(1));
    assert_eq!(json["tool"]["tools"][1]["parameters"][1]["max"], serde_json::json!(2.5));
    assert_eq!(json["tool"]["tools"][1]["output_schema"]["type"], "object");
    assert!(json["tool"]["tools"][0].get("output_schema").is_none(), "empty output schema omitted");
    assert_eq!(json["created_at"], "2026-01-01T10:00:00.123456789Z");
    assert_eq!(json["meta"]["minimum_dify_version"], serde_json::Value::Null);
    assert_eq!(json["resource"]["permission"]["storage"]["size"], 1048576);
    assert!(json.get("execution").is_none(), "unknown keys are dropped");
    assert_eq!(json["verified"], false);
}

#[test]
fn readmes_and_assets() {
    let package = Package::from_dir(plugin_dir().path()).unwrap();
    let readmes = package.readmes().unwrap();
    assert_eq!(readmes.keys().collect::<Vec<_>>(), ["en_US", "zh_Hans"]);
    assert_eq!(package.readme("zh_Hans").unwrap(), "# 演示\n");
    assert_eq!(package.readme_with_language("pt_BR").unwrap().0, "en_US");
    let assets = package.assets();
    assert_eq!(assets.keys().collect::<Vec<_>>(), ["icon.svg"]);
    assert_eq!(package.asset("icon.svg"), Some(b"<svg/>".as_slice()));
}

#[test]
fn readme_is_required_for_the_language_map() {
    let dir = plugin_dir();
    std::fs::remove_file(dir.path().join("README.md")).unwrap();
    let package = Package::from_dir(dir.path()).unwrap();
    assert_eq!(package.readmes().unwrap_err(), PackageError::ReadmeNotFound);
    assert_eq!(package.readme("en_US"), None);
}

#[test]
fn difyignore_with_negation() {
    let dir = plugin_dir();
    write_tree(
        dir.path(),
        &[
            (".difyignore".into(), b"# build output\n*.log\n!keep.log\ncache/\n!cache/inside.txt\n/secret.txt\n".to_vec()),
            ("debug.log".into(), b"x".to_vec()),
            ("keep.log".into(), b"kept".to_vec()),
            ("nested/other.log".into(), b"x".to_vec()),
            ("cache/inside.txt".into(), b"x".to_vec()),
            ("secret.txt".into(), b"x".to_vec()),
            ("nested/secret.txt".into(), b"not anchored here".to_vec()),
        ],
    );
    let package = Package::from_dir(dir.path()).unwrap();
    let names: Vec<&str> = package.file_names().collect();
    assert!(names.contains(&"keep.log"), "negation re-includes: {names:?}");
    assert!(names.contains(&"nested/secret.txt"));
    assert!(names.contains(&".difyignore"), "the ignore file itself is packaged");
    for ignored in ["debug.log", "nested/other.log", "cache/inside.txt", "secret.txt"] {
        assert!(!names.contains(&ignored), "{ignored} should be ignored: {names:?}");
    }
    let zipped = Package::from_bytes(write::package_dir(dir.path()).unwrap(), &DecodeLimits::default()).unwrap();
    assert_eq!(zipped.checksum(), package.checksum());
}

#[test]
fn gitignore_is_the_fallback() {
    let dir = plugin_dir();
    write_tree(dir.path(), &[(".gitignore".into(), b"*.tmp\n".to_vec()), ("x.tmp".into(), b"x".to_vec())]);
    let names: Vec<String> = Package::from_dir(dir.path()).unwrap().file_names().map(String::from).collect();
    assert!(!names.contains(&"x.tmp".to_string()));
}

#[cfg(unix)]
#[test]
fn symlinks_in_a_directory_are_not_packaged() {
    let dir = plugin_dir();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
    let package = Package::from_dir(dir.path()).unwrap();
    assert!(package.read_file("passwd").is_none());
}

#[test]
fn directory_size_limit_lists_the_largest_files() {
    let dir = plugin_dir();
    write_tree(dir.path(), &[("big.bin".into(), vec![1u8; 4096])]);
    let error = write::package_dir_with_limit(dir.path(), 1024).unwrap_err();
    match &error {
        PackageError::DirectoryTooLarge { limit, largest } => {
            assert_eq!(*limit, 1024);
            assert_eq!(largest[0], ("big.bin".to_string(), 4096));
            assert!(largest.len() <= 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(error.to_string().contains("1. name: big.bin, size: 4096 bytes"));
}

#[test]
fn extract_to_writes_every_file() {
    let package = Package::from_bytes(write::package_dir(plugin_dir().path()).unwrap(), &DecodeLimits::default()).unwrap();
    let target = tempfile::tempdir().unwrap();
    let out = target.path().join("work");
    package.extract_to(&out).unwrap();
    for (name, data) in support::plugin_files() {
        assert_eq!(std::fs::read(out.join(&name)).unwrap(), data, "{name}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("main.py")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}

#[cfg(unix)]
#[test]
fn extract_to_refuses_planted_symlinks_and_cleans_up() {
    let package = Package::from_bytes(write::package_dir(plugin_dir().path()).unwrap(), &DecodeLimits::default()).unwrap();
    let target = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let out = target.path().join("work");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(outside.path(), out.join("tools")).unwrap();
    let error = package.extract_to(&out).unwrap_err();
    assert!(matches!(error, PackageError::Symlink { .. }), "{error:?}");
    assert!(!out.exists(), "destination removed on error");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing written through the link");
}

#[test]
fn strict_validation_reports_specific_problems() {
    let dir = plugin_dir();
    let broken = support::MANIFEST
        .replace("version: 0.0.1\ntype: plugin", "version: 1.0\ntype: bundle")
        .replace("icon: icon.svg", "icon: missing.svg")
        .replace("      size: 1048576", "      size: 10")
        .replace("    - arm64", "    - riscv")
        .replace("language: python", "language: go")
        .replace("  - utilities", "  - not-a-tag")
        .replace("created_at: 2026-01-01T10:00:00.123456789Z\n", "repo: not a url\n");
    write_tree(dir.path(), &[("manifest.yaml".into(), broken.into_bytes())]);
    let package = Package::from_dir(dir.path()).unwrap();
    let problems = validate::strict(&package).unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for expected in [
        "version",
        "type",
        "icon",
        "resource.permission.storage.size",
        "meta.arch[1]",
        "meta.runner.language",
        "tags[0]",
        "created_at",
        "repo",
    ] {
        assert!(fields.contains(&expected), "missing problem for {expected}: {problems:?}");
    }
    assert_eq!(fields.len(), 9, "{problems:?}");
    // The daemon's lenient layer accepts the same package.
    assert_eq!(validate::for_upload(&package), Ok(()));
}

#[test]
fn strict_validation_accepts_a_good_plugin() {
    let package = Package::from_dir(plugin_dir().path()).unwrap();
    assert_eq!(validate::strict(&package), Ok(()));
    assert_eq!(validate::for_upload(&package), Ok(()));
}

#[test]
fn upload_validation_rules() {
    let dir = plugin_dir();
    let manifest = support::MANIFEST.replace("author: acme", "author: 2e6c2d0c-95c5-4a4a-9a8a-8f2f1d3c9b10");
    write_tree(dir.path(), &[("manifest.yaml".into(), manifest.into_bytes())]);
    let problems = validate::for_upload(&Package::from_dir(dir.path()).unwrap()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].message, "cannot set author to an UUID");

    let manifest = support::MANIFEST.replace("author: acme", "author: Acme");
    write_tree(dir.path(), &[("manifest.yaml".into(), manifest.into_bytes())]);
    let package = Package::from_dir(dir.path()).unwrap();
    let problems = validate::for_upload(&package).unwrap_err();
    assert!(problems.iter().any(|p| p.field == "author"));
    assert!(package.unique_identifier().is_err());
}
