//! The packages the bench installs, written with `dify_package`: the SDK test plugin
//! `tests/plugins/runtime_tools` (optionally renamed, so every copy gets its own identifier and
//! environment), the native bench plugin wrapped as a local-runtime package, and small copies of the
//! upstream dummy fixture for the state-at-scale rows.
//!
//! Owns: package bytes and plugin directories on disk. Must not: talk to the daemon.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// Workspace root (this crate lives in `crates/bench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn runtime_tools_dir() -> PathBuf {
    workspace_root().join("tests/plugins/runtime_tools")
}

/// Source files of a plugin directory (no virtualenvs, caches or hidden files), sorted.
pub fn plugin_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
            } else {
                let relative = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
                out.push((relative, std::fs::read(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn replace_manifest_name(files: &mut [(String, Vec<u8>)], old: &str, new: &str) -> Result<()> {
    let manifest = files.iter_mut().find(|(n, _)| n == "manifest.yaml").ok_or_else(|| anyhow!("no manifest.yaml"))?;
    let text = String::from_utf8(manifest.1.clone())?;
    let needle = format!("\nname: {old}\n");
    if !text.contains(&needle) {
        return Err(anyhow!("manifest has no `name: {old}` line"));
    }
    manifest.1 = text.replacen(&needle, &format!("\nname: {new}\n"), 1).into_bytes();
    Ok(())
}

fn write(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    dify_package::write::package_files(files.iter().map(|(n, d)| (n.as_str(), d.as_slice()))).map_err(|e| anyhow!("write package: {e}"))
}

/// The SDK test plugin, named `name` (plugin id `testing/<name>`).
pub fn runtime_tools_package(name: &str) -> Result<Vec<u8>> {
    let mut files = plugin_files(&runtime_tools_dir())?;
    replace_manifest_name(&mut files, "runtime_tools", name)?;
    write(&files)
}

/// Writes the SDK test plugin's files into `dir` (for driving it directly).
pub fn copy_runtime_tools(dir: &Path) -> Result<()> {
    for (name, data) in plugin_files(&runtime_tools_dir())? {
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, data)?;
    }
    Ok(())
}

/// The upstream dummy fixture renamed to `name` (plugin id `test/<name>`).
pub fn dummy_package(name: &str) -> Result<Vec<u8>> {
    let base = std::fs::read(workspace_root().join("tests/fixtures/upstream/dummy_plugin.difypkg")).context("dummy fixture")?;
    let archive = dify_package::read_archive(&base, &dify_package::DecodeLimits::default()).map_err(|e| anyhow!("read dummy: {e}"))?;
    let mut files: Vec<(String, Vec<u8>)> = archive.entries.into_iter().map(|e| (e.name, e.data)).collect();
    replace_manifest_name(&mut files, "test", name)?;
    write(&files)
}

pub const NATIVE_AUTHOR: &str = "bench";
pub const NATIVE_PROVIDER: &str = "native";
pub const NATIVE_TOOL: &str = "work";

const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" fill="#37a"/></svg>"##;

/// Files of the native plugin's declaration (manifest, provider, tool, icon), named `name`.
pub fn native_declaration_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let manifest = format!(
        r#"version: 0.0.1
type: plugin
author: {NATIVE_AUTHOR}
name: {name}
label:
  en_US: Native bench plugin
description:
  en_US: A native program speaking the plugin protocol
icon: icon.svg
resource:
  memory: 67108864
  permission: {{}}
plugins:
  tools:
    - provider/{NATIVE_PROVIDER}.yaml
meta:
  version: 0.0.1
  arch:
    - amd64
    - arm64
  runner:
    language: python
    version: "3.12"
    entrypoint: main
created_at: "2026-01-01T00:00:00.000000Z"
"#
    );
    let provider = format!(
        r#"identity:
  author: {NATIVE_AUTHOR}
  name: {NATIVE_PROVIDER}
  label:
    en_US: Native
  description:
    en_US: Native bench provider
  icon: icon.svg
credentials_for_provider: {{}}
tools:
  - tools/{NATIVE_TOOL}.yaml
extra:
  python:
    source: provider/{NATIVE_PROVIDER}.py
"#
    );
    let parameter = |name: &str, kind: &str| {
        format!(
            "  - name: {name}\n    type: {kind}\n    required: false\n    label:\n      en_US: {name}\n    human_description:\n      en_US: {name}\n    llm_description: {name}\n    form: llm\n"
        )
    };
    let tool = format!(
        r#"identity:
  name: {NATIVE_TOOL}
  author: {NATIVE_AUTHOR}
  label:
    en_US: Work
description:
  human:
    en_US: Echo, stream, blob or hold
  llm: Bench tool
parameters:
{}{}{}extra:
  python:
    source: tools/{NATIVE_TOOL}.py
"#,
        parameter("mode", "string"),
        parameter("text", "string"),
        parameter("count", "number")
    );
    vec![
        ("manifest.yaml".into(), manifest.into_bytes()),
        (format!("provider/{NATIVE_PROVIDER}.yaml"), provider.into_bytes()),
        (format!("tools/{NATIVE_TOOL}.yaml"), tool.into_bytes()),
        ("_assets/icon.svg".into(), ICON.as_bytes().to_vec()),
    ]
}

/// The native plugin as a local-runtime package: the daemon builds its (empty) environment with uv
/// and starts `python -m main`, whose first statement replaces the interpreter with the native
/// binary (`execv`, same pid and pipes), so the plugin the daemon talks to is the native program.
pub fn native_package(name: &str, native_binary: &Path) -> Result<Vec<u8>> {
    let binary = native_binary.to_str().ok_or_else(|| anyhow!("native plugin path is not UTF-8"))?;
    let mut files = native_declaration_files(name);
    let main = format!("import os\n\nBINARY = {binary:?}\nos.execv(BINARY, [BINARY, \"stdio\"])\n");
    files.push(("main.py".into(), main.into_bytes()));
    files.push(("requirements.txt".into(), b"# no dependencies: main.py execs the native plugin\n".to_vec()));
    files.push((format!("provider/{NATIVE_PROVIDER}.py"), b"# served by the native plugin\n".to_vec()));
    files.push((format!("tools/{NATIVE_TOOL}.py"), b"# served by the native plugin\n".to_vec()));
    write(&files)
}

/// What the native plugin sends when it registers over the debug runtime: the manifest and the
/// expanded tool provider, as the SDK does (docs/protocol.md §2.4).
pub fn native_registration(name: &str) -> Result<serde_json::Value> {
    let files = native_declaration_files(name);
    let yaml = |path: &str| -> Result<serde_json::Value> {
        let (_, data) = files.iter().find(|(n, _)| n == path).ok_or_else(|| anyhow!("missing {path}"))?;
        serde_yaml_ng::from_slice(data).map_err(|e| anyhow!("{path}: {e}"))
    };
    let manifest = yaml("manifest.yaml")?;
    let mut provider = yaml(&format!("provider/{NATIVE_PROVIDER}.yaml"))?;
    let tool = yaml(&format!("tools/{NATIVE_TOOL}.yaml"))?;
    provider["tools"] = serde_json::Value::Array(vec![tool]);
    Ok(serde_json::json!({"manifest": manifest, "tools": [provider]}))
}
