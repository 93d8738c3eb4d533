//! The built `dify` binary end to end: exit codes, `-o json` documents on stdout, JSON errors on
//! stderr, upstream log lines in text mode, and full plugin/signature/bundle round trips. Text
//! output and error documents are compared with snapshots (`tests/snapshots/`).

mod support;

use std::path::{Path, PathBuf};

use support::{dify, pretty, snapshot_settings, stderr_json, stdout_json, transcript};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream").join(name)
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exit code")
}

#[test]
fn version_prints_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dify(tmp.path(), &["version"]);
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), env!("CARGO_PKG_VERSION"));
    let out = dify(tmp.path(), &["version", "-o", "json"]);
    ok(&out);
    assert_eq!(stdout_json(&out)["version"], env!("CARGO_PKG_VERSION"));
    // Upstream's global --config flag is accepted anywhere.
    let out = dify(tmp.path(), &["--config", "dify.yaml", "version", "-o", "yaml"]);
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("version: {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2_with_json_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dify(tmp.path(), &["plugin", "frobnicate"]);
    assert_eq!(code(&out), 2);
    let out = dify(tmp.path(), &["plugin", "checksum", "x", "--bogus", "-o", "json"]);
    assert_eq!(code(&out), 2);
    let err = stderr_json(&out);
    assert_eq!(err["error"]["code"], "usage");
    assert_eq!(err["exit_code"], 2);
    assert!(err["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()));
    // Missing required flag of sign.
    let out = dify(tmp.path(), &["signature", "sign", "x.difypkg"]);
    assert_eq!(code(&out), 2);
    // Invalid init input.
    let settings = snapshot_settings(tmp.path(), false);
    let out = dify(tmp.path(), &["plugin", "init", "--quick", "--name", "Bad", "--author", "a", "--description", "d", "-o", "json"]);
    assert_eq!(code(&out), 2);
    settings.bind(|| insta::assert_snapshot!("init_bad_name_json", pretty(&stderr_json(&out))));
    let out = dify(tmp.path(), &["plugin", "init", "--quick", "--name", "p", "--author", "a", "--description", "d", "--category", "nope"]);
    assert_eq!(code(&out), 2);
    settings.bind(|| insta::assert_snapshot!("init_bad_category", transcript(&out)));
    // A known but unsupported runner language is a compatibility error (exit 6).
    let out = dify(
        tmp.path(),
        &["plugin", "init", "--quick", "--name", "p", "--author", "a", "--description", "d", "--language", "go", "-o", "json"],
    );
    assert_eq!(code(&out), 6);
    assert_eq!(stderr_json(&out)["error"]["code"], "version_compat");
    // Packaging the current directory without -o is refused like upstream.
    let out = dify(tmp.path(), &["plugin", "package", "."]);
    assert_eq!(code(&out), 2);
    settings.bind(|| insta::assert_snapshot!("package_current_dir", transcript(&out)));
}

#[test]
fn help_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dify(tmp.path(), &["plugin", "init", "--help"]);
    ok(&out);
    snapshot_settings(tmp.path(), false).bind(|| insta::assert_snapshot!("init_help", transcript(&out)));
}

#[test]
fn init_package_checksum_sign_verify_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // Package checksums include the creation date written by init, so they vary between runs.
    let settings = snapshot_settings(cwd, true);
    let mut package_logs = String::new();
    for category in [
        "tool",
        "llm",
        "extension",
        "agent-strategy",
        "datasource",
        "trigger",
        "text-embedding",
        "rerank",
        "tts",
        "speech2text",
        "moderation",
    ] {
        let name = format!("e2e_{}", category.replace('-', "_"));
        let out = dify(
            cwd,
            &[
                "plugin",
                "init",
                "--quick",
                "--name",
                &name,
                "--author",
                "acme",
                "--description",
                "End to end",
                "--category",
                category,
                "--allow-storage",
                "-o",
                "json",
            ],
        );
        ok(&out);
        let init = stdout_json(&out);
        assert_eq!(init["name"], name.as_str());
        assert_eq!(init["guide"], format!("{name}/GUIDE.md"));

        // Default output name is <dir>.difypkg in the current directory; text mode logs like upstream.
        let out = dify(cwd, &["plugin", "package", &name]);
        ok(&out);
        package_logs.push_str(&transcript(&out));
        let pkg = format!("{name}.difypkg");
        assert!(cwd.join(&pkg).is_file());

        let out = dify(cwd, &["plugin", "checksum", &pkg, "-o", "json"]);
        ok(&out);
        let sum = stdout_json(&out);
        let checksum = sum["checksum"].as_str().unwrap().to_string();
        assert_eq!(checksum.len(), 64);
        assert_eq!(sum["plugin_unique_identifier"], format!("acme/{name}:0.0.1@{checksum}"));

        // `-o` is the output file for package; `--output json` the format.
        let out = dify(cwd, &["plugin", "package", &name, "-o", "again.difypkg", "--output", "json"]);
        ok(&out);
        let again = stdout_json(&out);
        assert_eq!(again["output_path"], "again.difypkg");
        assert_eq!(again["checksum"], checksum.as_str());
    }

    settings.bind(|| insta::assert_snapshot!("package_every_category", package_logs));

    // One real 4096-bit key pair, then sign/verify with it.
    let out = dify(cwd, &["signature", "generate", "-f", "mykey", "-o", "json"]);
    ok(&out);
    let keys = stdout_json(&out);
    assert_eq!(keys["private_key"], "mykey.private.pem");
    assert!(std::fs::read_to_string(cwd.join("mykey.public.pem")).unwrap().contains("BEGIN RSA PUBLIC KEY"));

    let out = dify(cwd, &["signature", "sign", "e2e_tool.difypkg", "-p", "mykey.private.pem", "-c", "partner"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("signature_sign", transcript(&out)));

    let out = dify(cwd, &["signature", "verify", "e2e_tool.signed.difypkg", "-p", "mykey.public.pem", "-o", "json"]);
    ok(&out);
    let v = stdout_json(&out);
    assert_eq!(v["verified"], true);
    assert_eq!(v["authorized_category"], "partner");
    let out = dify(cwd, &["signature", "verify", "e2e_tool.signed.difypkg", "-p", "mykey.public.pem"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("signature_verify", transcript(&out)));

    // Wrong key, official key, unsigned package: exit 4 (auth) with a JSON error.
    for args in [
        vec!["signature", "verify", "e2e_tool.signed.difypkg", "-p"],
        vec!["signature", "verify", "e2e_tool.signed.difypkg"],
        vec!["signature", "verify", "e2e_tool.difypkg", "-p", "mykey.public.pem"],
    ] {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        if args.last().map(String::as_str) == Some("-p") {
            args.push(fixture("keys/test_key_pair_2.public.pem").display().to_string());
        }
        args.extend(["-o".to_string(), "json".to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = dify(cwd, &refs);
        assert_eq!(code(&out), 4, "{refs:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stderr_json(&out)["error"]["code"], "auth");
    }

    // Tampering with a signed package breaks the signature.
    let mut bytes = std::fs::read(cwd.join("e2e_tool.signed.difypkg")).unwrap();
    let archive = dify_package::read_archive(&bytes, &dify_package::DecodeLimits::default()).unwrap();
    let mut entries = archive.entries.clone();
    entries[0].data.extend_from_slice(b"\n# changed\n");
    bytes = dify_package::write_archive(entries.iter().map(|e| (e.name.as_str(), e.data.as_slice())), &archive.comment).unwrap();
    std::fs::write(cwd.join("tampered.difypkg"), bytes).unwrap();
    let out = dify(cwd, &["signature", "verify", "tampered.difypkg", "-p", "mykey.public.pem"]);
    assert_eq!(code(&out), 4);

    // Invalid category is a usage error; the signed package's checksum differs from the unsigned one.
    let out = dify(cwd, &["signature", "sign", "e2e_tool.difypkg", "-p", "mykey.private.pem", "-c", "vendor"]);
    assert_eq!(code(&out), 2);
    let signed_sum = stdout_json(&dify(cwd, &["plugin", "checksum", "e2e_tool.signed.difypkg", "-o", "json"]))["checksum"].clone();
    let plain_sum = stdout_json(&dify(cwd, &["plugin", "checksum", "e2e_tool.difypkg", "-o", "json"]))["checksum"].clone();
    assert_ne!(signed_sum, plain_sum);
}

#[test]
fn checksum_errors_exit_1_with_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dify(tmp.path(), &["plugin", "checksum", "missing.difypkg", "-o", "json"]);
    assert_eq!(code(&out), 1);
    let err = stderr_json(&out);
    assert_eq!(err["error"]["code"], "generic");
    assert!(out.stdout.is_empty());
    let settings = snapshot_settings(tmp.path(), false);
    settings.bind(|| insta::assert_snapshot!("checksum_missing_file_json", pretty(&err)));
    // A fixed package: its real checksum is part of the snapshot.
    let out = dify(tmp.path(), &["plugin", "checksum", fixture("openai.difypkg").to_str().unwrap()]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("checksum_fixture", transcript(&out)));
}

#[test]
fn package_generates_requirements_from_uv_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&dify(cwd, &["plugin", "init", "--quick", "--name", "locked", "--author", "acme", "--description", "d"]));
    std::fs::remove_file(cwd.join("locked/requirements.txt")).unwrap();
    std::fs::write(cwd.join("locked/uv.lock"), "version = 1\n").unwrap();
    // A stand-in uv that records its arguments and prints a requirements file.
    let fake = cwd.join("fake-uv");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/uv-args\"\necho 'dify-plugin==0.10.2'\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(["plugin", "package", "locked", "--output", "json"])
        .current_dir(cwd)
        .env("UV_PATH", &fake)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(stdout_json(&out)["generated_requirements"], true);
    let args = std::fs::read_to_string(cwd.join("uv-args")).unwrap();
    assert_eq!(
        args.trim(),
        "export --frozen --format requirements.txt --no-group dev --no-emit-project --no-hashes --no-header --no-annotate"
    );
    let pkg = dify_package::Package::from_bytes(std::fs::read(cwd.join("locked.difypkg")).unwrap(), &dify_package::DecodeLimits::default())
        .unwrap();
    assert_eq!(pkg.read_file("requirements.txt"), Some(&b"dify-plugin==0.10.2\n"[..]));
    assert!(pkg.read_file("uv.lock").is_some(), "uv.lock is packaged");
    assert!(!cwd.join("locked/requirements.txt").exists(), "the source directory is not modified");
}

#[test]
fn readme_module_and_permission_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&dify(
        cwd,
        &[
            "plugin",
            "init",
            "--quick",
            "--name",
            "mods",
            "--author",
            "acme",
            "--description",
            "d",
            "--category",
            "extension",
            "--readme-language",
            "zh_Hans",
        ],
    ));

    let out = dify(cwd, &["plugin", "readme", "list", "mods", "-o", "json"]);
    ok(&out);
    let codes: Vec<String> = stdout_json(&out)["readmes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["language_code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["en_US", "zh_Hans"]);
    let settings = snapshot_settings(cwd, false);
    let out = dify(cwd, &["plugin", "readme", "list", "mods"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("readme_list", transcript(&out)));

    let out = dify(cwd, &["plugin", "module", "append", "tools", "mods"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("module_append_tools", transcript(&out)));
    let out = dify(cwd, &["plugin", "module", "append", "tools", "mods", "-o", "json"]);
    assert_eq!(code(&out), 2);
    let out = dify(cwd, &["plugin", "module", "list", "mods", "-o", "json"]);
    ok(&out);
    let modules = stdout_json(&out);
    assert_eq!(modules["tools"].as_array().unwrap().len(), 1);
    assert_eq!(modules["endpoints"][0]["path"], "/mods/hello");
    let out = dify(cwd, &["plugin", "module", "list", "mods"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("module_list", transcript(&out)));

    let out = dify(
        cwd,
        &["plugin", "permission", "add", "mods", "--allow-model", "--allow-llm", "--allow-storage", "--storage-size", "2048", "-o", "json"],
    );
    ok(&out);
    let p = stdout_json(&out);
    assert_eq!(p["changed"], true);
    assert_eq!(p["permission"]["model"]["llm"], true);
    assert_eq!(p["permission"]["storage"], 2048);
    let out = dify(cwd, &["plugin", "permission", "remove", "mods", "--allow-storage", "-o", "json"]);
    ok(&out);
    assert!(stdout_json(&out)["permission"]["storage"].is_null());
    let out = dify(cwd, &["plugin", "permission", "list", "mods"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("permission_list", transcript(&out)));
    let out = dify(cwd, &["plugin", "permission", "add", "mods"]);
    assert_eq!(code(&out), 2);
    settings.bind(|| insta::assert_snapshot!("permission_add_nothing", transcript(&out)));

    // Still a valid plugin after all the edits.
    ok(&dify(cwd, &["plugin", "package", "mods"]));
}

#[test]
fn bundle_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let settings = snapshot_settings(cwd, false);
    let out = dify(cwd, &["bundle", "init", "--name", "kit", "--author", "acme", "--description", "A kit"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("bundle_init", transcript(&out)));
    let out = dify(cwd, &["bundle", "init", "--name", "kit_json", "--author", "acme", "--description", "A kit", "-o", "json"]);
    ok(&out);
    assert_eq!(stdout_json(&out)["name"], "kit_json");
    let out = dify(cwd, &["bundle", "append", "github", "kit_json", "-r", "acme/tool:1.0.0/tool.difypkg", "-o", "json"]);
    ok(&out);
    assert_eq!(
        stdout_json(&out)["dependencies"][0],
        serde_json::json!({"type": "github", "value": {"repo_pattern": "acme/tool:1.0.0/tool.difypkg"}})
    );
    let out = dify(cwd, &["bundle", "append", "marketplace", "kit_json", "-m", "nope", "-o", "json"]);
    assert_eq!(code(&out), 2);
    settings.bind(|| insta::assert_snapshot!("bundle_bad_marketplace_json", pretty(&stderr_json(&out))));
    ok(&dify(cwd, &["bundle", "append", "github", "kit", "-r", "acme/tool:1.0.0/tool.difypkg"]));
    ok(&dify(cwd, &["bundle", "append", "marketplace", "kit", "-m", "langgenius/openai:0.0.19"]));
    let out = dify(cwd, &["bundle", "append", "package", "kit", "-p", fixture("dummy_plugin.difypkg").to_str().unwrap()]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("bundle_append_package", transcript(&out)));
    assert_eq!(code(&dify(cwd, &["bundle", "append", "github", "kit", "-r", "bad"])), 2);
    ok(&dify(cwd, &["bundle", "bump", "kit", "-t", "0.2.0"]));
    assert_eq!(code(&dify(cwd, &["bundle", "bump", "kit", "-t", "two"])), 2);

    let out = dify(cwd, &["bundle", "analyze", "kit", "-o", "json"]);
    ok(&out);
    let a = stdout_json(&out);
    assert_eq!(a["version"], "0.2.0");
    assert_eq!(a["dependencies"].as_array().unwrap().len(), 3);
    assert_eq!(a["dependencies"][2]["type"], "package");
    let out = dify(cwd, &["bundle", "analyze", "kit"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("bundle_analyze", transcript(&out)));

    let out = dify(cwd, &["bundle", "package", "kit"]);
    ok(&out);
    settings.bind(|| insta::assert_snapshot!("bundle_package", transcript(&out)));
    assert!(cwd.join("kit.difybndl").is_file());

    // Edit the packaged zip in place and package it again under another name.
    let out = dify(cwd, &["bundle", "remove", "kit.difybndl", "-i", "0", "-o", "json"]);
    ok(&out);
    assert_eq!(stdout_json(&out)["dependencies"].as_array().unwrap().len(), 2);
    assert_eq!(code(&dify(cwd, &["bundle", "remove", "kit.difybndl", "-i", "7"])), 2);
    assert_eq!(code(&dify(cwd, &["bundle", "remove", "kit.difybndl", "-i", "x"])), 2);
    let out = dify(cwd, &["bundle", "package", "kit.difybndl", "-o", "copy.difybndl", "--output", "json"]);
    ok(&out);
    assert_eq!(stdout_json(&out)["output_path"], "copy.difybndl");
    let out = dify(cwd, &["bundle", "analyze", "copy.difybndl", "-o", "json"]);
    ok(&out);
    let deps = stdout_json(&out)["dependencies"].clone();
    assert_eq!(deps[0]["type"], "marketplace");
    assert_eq!(deps[1]["size"], std::fs::metadata(fixture("dummy_plugin.difypkg")).unwrap().len());

    let out = dify(cwd, &["bundle", "regenerate", "kit", "--name", "kit2", "--author", "bob", "--description", "Renamed", "-o", "json"]);
    ok(&out);
    let manifest = std::fs::read_to_string(cwd.join("kit/manifest.yaml")).unwrap();
    settings.bind(|| insta::assert_snapshot!("bundle_regenerated_manifest", manifest));
    // Missing profile values are a usage error when there is no terminal to ask.
    assert_eq!(code(&dify(cwd, &["bundle", "init", "--name", "x"])), 2);
    assert_eq!(code(&dify(cwd, &["bundle", "analyze", "nowhere"])), 1);
}
