//! Every command through its `run` function (no process spawned), against generated plugins and
//! the upstream fixture packages.

mod support;

use std::path::{Path, PathBuf};

use dify_cli::commands::plugin::init::{self, Category, InitOptions, PermissionFlags};
use dify_cli::commands::plugin::{checksum, module, package, permission, readme};
use dify_cli::commands::{bundle, signature, version};
use dify_cli::output::{OutputFormat, Render, TextOutput};
use support::snapshot_settings;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream").join(name)
}

fn init_plugin(parent: &Path, name: &str, category: Category) -> PathBuf {
    init::run(&InitOptions {
        name: name.into(),
        author: "acme".into(),
        description: format!("{name} for tests"),
        repo: None,
        category,
        language: "python".into(),
        min_dify_version: Some("1.9.0".into()),
        permissions: PermissionFlags::default(),
        readme_languages: vec!["ja_JP".into()],
        parent_dir: parent.to_path_buf(),
        created_at: None,
    })
    .expect("init")
    .directory
}

fn package_plugin(dir: &Path, out: &Path) -> package::PackageResult {
    package::run(&package::PackageOptions {
        plugin_path: dir.to_path_buf(),
        output_path: Some(out.to_path_buf()),
        max_size_mb: 50,
        format: OutputFormat::Json,
    })
    .expect("package")
}

#[test]
fn every_category_inits_packages_checksums_and_validates_strictly() {
    let tmp = tempfile::tempdir().unwrap();
    for category in Category::ALL {
        let name = format!("c_{}", category.as_str().replace('-', "_"));
        let dir = init_plugin(tmp.path(), &name, *category);
        let out = tmp.path().join(format!("{name}.difypkg"));
        let packaged = package_plugin(&dir, &out);
        assert!(!packaged.generated_requirements);

        let bytes = std::fs::read(&out).unwrap();
        let decoded = dify_package::Package::from_bytes(bytes, &dify_package::DecodeLimits::default()).unwrap();
        dify_package::validate::strict(&decoded).unwrap_or_else(|p| panic!("{category:?}: {p:?}"));
        dify_package::validate::for_upload(&decoded).unwrap_or_else(|p| panic!("{category:?}: {p:?}"));
        assert_eq!(decoded.checksum(), packaged.checksum);
        assert!(decoded.read_file(".gitignore").is_none(), ".difyignore must keep .gitignore out");
        assert!(decoded.read_file("requirements.txt").is_some());

        let sum = checksum::run(&out).unwrap();
        assert_eq!(sum.checksum, packaged.checksum);
        assert_eq!(sum.plugin_unique_identifier.as_deref(), Some(format!("acme/{name}:0.0.1@{}", packaged.checksum).as_str()));
        assert_eq!(packaged.plugin_unique_identifier, sum.plugin_unique_identifier);

        // The directory checksum is the same as the package's (no generated files here).
        assert_eq!(checksum::run(&dir).unwrap().checksum, packaged.checksum);
    }
}

#[test]
fn checksums_of_upstream_fixtures_match_the_go_daemon() {
    for (file, expected) in [
        ("langgenius-agent_0.0.14.difypkg", "26958a0e80a10655ce73812bdb7c35a66ce7b16f5ac346d298bda17ff85efd1e"),
        ("openai.difypkg", "ee25cddb7264169044e305955abbf97eff0876a151ced2bf20c5907430ad5727"),
        ("dummy_plugin.difypkg", "f47ca91dfa51d374e6dc4fa3b9b6839396e1e5bff0d6e846cc940c828f8f131b"),
    ] {
        let r = checksum::run(&fixture(file)).unwrap();
        assert_eq!(r.checksum, expected, "{file}");
    }
    let agent = checksum::run(&fixture("langgenius-agent_0.0.14.difypkg")).unwrap();
    assert_eq!(
        agent.plugin_unique_identifier.as_deref(),
        Some("langgenius/agent:0.0.14@26958a0e80a10655ce73812bdb7c35a66ce7b16f5ac346d298bda17ff85efd1e")
    );
    match agent.text() {
        TextOutput::Log(lines) => assert_eq!(lines[0].body(), format!("INFO plugin checksum checksum={}", agent.checksum)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn checksum_of_a_missing_or_broken_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(checksum::run(&tmp.path().join("nope.difypkg")).unwrap_err().exit_status(), 1);
    std::fs::write(tmp.path().join("bad.difypkg"), b"not a zip").unwrap();
    let e = checksum::run(&tmp.path().join("bad.difypkg")).unwrap_err();
    assert_eq!(e.exit_status(), 1);
    assert!(!e.hint.is_empty());
}

#[test]
fn package_refuses_invalid_plugins_and_enforces_the_size_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_plugin(tmp.path(), "sized", Category::Tool);
    // Missing icon: strict validation fails.
    std::fs::remove_file(dir.join("_assets/icon-dark.svg")).unwrap();
    let e = package::run(&package::PackageOptions {
        plugin_path: dir.clone(),
        output_path: Some(tmp.path().join("x.difypkg")),
        max_size_mb: 50,
        format: OutputFormat::Text,
    })
    .unwrap_err();
    let mut settings = snapshot_settings(tmp.path(), false);
    // The manifest holds its creation time, whose printed length varies.
    settings.add_filter(r"manifest\.yaml, size: \d+ bytes", "manifest.yaml, size: [SIZE] bytes");
    settings.bind(|| insta::assert_snapshot!("package_missing_icon", e.message));
    assert!(!tmp.path().join("x.difypkg").exists());

    std::fs::write(dir.join("_assets/icon-dark.svg"), "<svg/>").unwrap();
    std::fs::write(dir.join("big.bin"), vec![7u8; 2 * 1024 * 1024]).unwrap();
    let e = package::run(&package::PackageOptions {
        plugin_path: dir.clone(),
        output_path: Some(tmp.path().join("x.difypkg")),
        max_size_mb: 1,
        format: OutputFormat::Text,
    })
    .unwrap_err();
    settings.bind(|| insta::assert_snapshot!("package_too_large", e.message));
    // Non-positive means the default 50 MB.
    package::run(&package::PackageOptions {
        plugin_path: dir,
        output_path: Some(tmp.path().join("x.difypkg")),
        max_size_mb: 0,
        format: OutputFormat::Text,
    })
    .unwrap();
}

#[test]
fn readme_list_reports_languages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_plugin(tmp.path(), "readmes", Category::Extension);
    let r = readme::list(&dir).unwrap();
    let codes: Vec<&str> = r.readmes.iter().map(|e| e.language_code.as_str()).collect();
    assert_eq!(codes, ["en_US", "ja_JP"]);
    match r.text() {
        TextOutput::Stdout(s) => insta::assert_snapshot!("readme_list_text", s),
        other => panic!("{other:?}"),
    }
    // A package without README.md has no readme list.
    let e = readme::list(&fixture("dummy_plugin.difypkg")).unwrap_err();
    snapshot_settings(tmp.path(), false).bind(|| insta::assert_snapshot!("readme_list_without_readme", e.message));
}

#[test]
fn module_list_shows_declared_modules() {
    let openai = module::list(&fixture("openai.difypkg")).unwrap();
    assert_eq!(openai.category, "model");
    assert!(openai.models.iter().any(|m| m["model"] == "gpt-4o"), "{:?}", openai.models.len());
    let agent = module::list(&fixture("langgenius-agent_0.0.14.difypkg")).unwrap();
    assert_eq!(agent.agent_strategies.len(), 2);
    match agent.text() {
        TextOutput::Stdout(s) => insta::assert_snapshot!("module_list_agent_text", s),
        other => panic!("{other:?}"),
    }
}

#[test]
fn module_append_adds_tools_to_an_extension_and_the_result_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_plugin(tmp.path(), "combo", Category::Extension);
    let r = module::append(&dir, module::ModuleKind::Tools).unwrap();
    assert_eq!(r.provider, "provider/combo.yaml");
    assert!(dir.join("tools/combo.py").is_file());
    let listed = module::list(&dir).unwrap();
    assert_eq!(listed.tools.len(), 1);
    assert_eq!(listed.endpoints.len(), 1);
    package_plugin(&dir, &tmp.path().join("combo.difypkg"));
    // Second time: already declared.
    assert_eq!(module::append(&dir, module::ModuleKind::Tools).unwrap_err().exit_status(), 2);
    assert_eq!(module::append(&dir, module::ModuleKind::Endpoints).unwrap_err().exit_status(), 2);

    let model = init_plugin(tmp.path(), "model_only", Category::Llm);
    let e = module::append(&model, module::ModuleKind::Endpoints).unwrap_err();
    snapshot_settings(tmp.path(), false).bind(|| insta::assert_snapshot!("module_append_to_model", e.message));

    let tool = init_plugin(tmp.path(), "tool_then_endpoint", Category::Tool);
    module::append(&tool, module::ModuleKind::Endpoints).unwrap();
    assert_eq!(module::list(&tool).unwrap().endpoints.len(), 1);
}

#[test]
fn permission_add_list_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_plugin(tmp.path(), "perms", Category::Tool);
    assert!(!permission::list(&dir).unwrap().permission.tool);
    let r = permission::add(&dir, &PermissionFlags { tool: true, app: true, ..Default::default() }).unwrap();
    assert!(r.changed && r.permission.tool && r.permission.app);
    let r = permission::remove(&dir, &PermissionFlags { app: true, ..Default::default() }).unwrap();
    assert!(r.permission.tool && !r.permission.app);
    // The edited manifest still packages.
    package_plugin(&dir, &tmp.path().join("perms.difypkg"));
}

#[test]
fn signature_sign_and_verify_with_fixture_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("dummy.difypkg");
    std::fs::copy(fixture("dummy_plugin.difypkg"), &pkg).unwrap();
    let signed = signature::sign(&signature::SignOptions {
        package_path: pkg.clone(),
        private_key_path: fixture("keys/test_key_pair_1.private.pem"),
        authorized_category: "Community".into(),
    })
    .unwrap();
    assert_eq!(signed.output_path, tmp.path().join("dummy.signed.difypkg"));
    assert_eq!(signed.authorized_category, "community");

    let ok = signature::verify(&signature::VerifyOptions {
        package_path: signed.output_path.clone(),
        public_key_path: Some(fixture("keys/test_key_pair_1.public.pem")),
    })
    .unwrap();
    assert_eq!(ok.authorized_category, "community");

    for key in [Some(fixture("keys/test_key_pair_2.public.pem")), None] {
        let e =
            signature::verify(&signature::VerifyOptions { package_path: signed.output_path.clone(), public_key_path: key }).unwrap_err();
        assert_eq!(e.exit_status(), 4, "{}", e.message);
    }
    let e = signature::verify(&signature::VerifyOptions {
        package_path: pkg.clone(),
        public_key_path: Some(fixture("keys/test_key_pair_1.public.pem")),
    })
    .unwrap_err();
    assert_eq!(e.exit_status(), 4);

    // The official key verifies the official package.
    let official =
        signature::verify(&signature::VerifyOptions { package_path: fixture("langgenius-agent_0.0.14.difypkg"), public_key_path: None })
            .unwrap();
    assert_eq!(official.authorized_category, "langgenius");

    // A public key is not a private key.
    let e = signature::sign(&signature::SignOptions {
        package_path: pkg,
        private_key_path: fixture("keys/test_key_pair_1.public.pem"),
        authorized_category: "langgenius".into(),
    })
    .unwrap_err();
    assert_eq!(e.exit_status(), 1);
    let settings = snapshot_settings(&std::env::temp_dir(), false);
    settings.bind(|| insta::assert_snapshot!("sign_with_public_key", format!("{}\nhint: {}", e.message, e.hint)));
}

#[test]
fn signature_generate_writes_a_usable_key_pair() {
    let tmp = tempfile::tempdir().unwrap();
    // A smaller key than the CLI default keeps this fast; the binary test generates a 4096-bit one.
    let keys =
        signature::generate_with_bits(&signature::GenerateOptions { filename: tmp.path().join("k"), format: OutputFormat::Json }, 2048)
            .unwrap();
    assert_eq!(keys.private_key, tmp.path().join("k.private.pem"));
    let private = std::fs::read_to_string(&keys.private_key).unwrap();
    let public = std::fs::read_to_string(&keys.public_key).unwrap();
    assert!(private.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let pkg = tmp.path().join("dummy.difypkg");
    std::fs::copy(fixture("dummy_plugin.difypkg"), &pkg).unwrap();
    let signed = signature::sign(&signature::SignOptions {
        package_path: pkg,
        private_key_path: keys.private_key,
        authorized_category: String::new(),
    })
    .unwrap();
    signature::verify(&signature::VerifyOptions { package_path: signed.output_path, public_key_path: Some(keys.public_key) }).unwrap();
}

#[test]
fn bundle_commands_round_trip_in_directory_and_zip_form() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = bundle::ProfileInput { name: Some("kit".into()), author: Some("acme".into()), description: Some("A kit".into()) }
        .resolve()
        .unwrap();
    let created = bundle::init(tmp.path(), &profile).unwrap();
    let dir = created.directory;
    assert!(dir.join(".github/workflows").is_dir());
    assert!(dir.join("_assets/icon.svg").is_file());

    bundle::append_github(&dir, "acme/tool:1.0.0/tool.difypkg").unwrap();
    bundle::append_marketplace(&dir, "langgenius/openai:0.0.19").unwrap();
    let with_pkg = bundle::append_package(&dir, &fixture("dummy_plugin.difypkg")).unwrap();
    assert_eq!(with_pkg.dependencies.len(), 3);
    let checksum = "f47ca91dfa51d374e6dc4fa3b9b6839396e1e5bff0d6e846cc940c828f8f131b";
    assert!(dir.join("_assets").join(checksum).is_file());
    assert_eq!(bundle::append_package(&dir, &fixture("dummy_plugin.difypkg")).unwrap_err().exit_status(), 1);
    assert_eq!(bundle::append_github(&dir, "not a pattern").unwrap_err().exit_status(), 2);
    assert_eq!(bundle::append_marketplace(&dir, "x").unwrap_err().exit_status(), 2);

    let analysis = bundle::analyze(&dir).unwrap();
    assert_eq!(analysis.dependencies[0].parts["release"], "1.0.0");
    assert_eq!(analysis.dependencies[1].parts["plugin"], "openai");
    assert_eq!(analysis.dependencies[2].size, Some(std::fs::metadata(fixture("dummy_plugin.difypkg")).unwrap().len()));

    bundle::bump(&dir, "1.2.3").unwrap();
    assert_eq!(bundle::bump(&dir, "1.2").unwrap_err().exit_status(), 2);
    let regenerated = bundle::regenerate(
        &dir,
        &bundle::ProfileInput { name: Some("kit2".into()), author: Some("bob".into()), description: Some("New".into()) }
            .resolve()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(regenerated.version, "1.2.3");

    let out = tmp.path().join("kit.difybndl");
    let packaged = bundle::package(&dir, Some(&out)).unwrap();
    assert!(packaged.size > 0);
    let archive = dify_package::read_archive(&std::fs::read(&out).unwrap(), &dify_package::DecodeLimits::for_bundle()).unwrap();
    let names: Vec<&str> = archive.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[0], "manifest.yaml");
    assert!(names.contains(&"README.md"));
    assert!(names.contains(&format!("_assets/{checksum}").as_str()));

    // Edit the zip form in place.
    bundle::remove(&out, 2).unwrap();
    let after = bundle::analyze(&out).unwrap();
    assert_eq!(after.name, "kit2");
    assert_eq!(after.dependencies.len(), 2);
    let archive = dify_package::read_archive(&std::fs::read(&out).unwrap(), &dify_package::DecodeLimits::for_bundle()).unwrap();
    assert!(!archive.entries.iter().any(|e| e.name.ends_with(checksum)), "removed package asset must go");
    assert_eq!(bundle::remove(&out, 5).unwrap_err().exit_status(), 2);

    // Removing from the directory deletes the asset file too.
    bundle::remove(&dir, 2).unwrap();
    assert!(!dir.join("_assets").join(checksum).exists());
    assert_eq!(bundle::default_output_path(&dir).unwrap(), PathBuf::from("kit.difybndl"));
}

#[test]
fn version_reports_the_crate_version() {
    assert!(!version::run().version.is_empty());
}
