//! `dify plugin permission list|add|remove`: show and edit `resource.permission` in a plugin's
//! `manifest.yaml`.
//!
//! Upstream offers a terminal UI for this; here the same `--allow-*` flags as `plugin init` say
//! what to add or remove, which also works in scripts. Only `resource.permission` is changed; the
//! rest of the manifest is kept (re-serialised, so comments are not preserved, as upstream).

use std::path::{Path, PathBuf};

use dify_protocol::manifest::{EnabledPermission, ModelPermission, PluginPermissions, StoragePermission};
use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use super::init::{PermissionFlags, STORAGE_DEFAULT, STORAGE_MAX, STORAGE_MIN};
use crate::error::{CliError, CliResult};
use crate::output::{LogLine, Render, TextOutput};

/// The permissions of a plugin as read from its manifest (absent = not requested).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PermissionView {
    pub tool: bool,
    pub model: Option<ModelView>,
    pub node: bool,
    pub endpoint: bool,
    pub app: bool,
    pub storage: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelView {
    pub llm: bool,
    pub text_embedding: bool,
    pub rerank: bool,
    pub tts: bool,
    pub speech2text: bool,
    pub moderation: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PermissionReport {
    pub manifest: PathBuf,
    pub changed: bool,
    pub permission: PermissionView,
}

impl Render for PermissionReport {
    fn text(&self) -> TextOutput {
        let p = &self.permission;
        let mut s = String::from("Permissions:\n");
        s.push_str(&format!("  Tool: {}\n", p.tool));
        match &p.model {
            Some(m) => s.push_str(&format!(
                "  Model:\n    Enabled: true\n    LLM: {}\n    TextEmbedding: {}\n    Rerank: {}\n    TTS: {}\n    Speech2text: {}\n    Moderation: {}\n",
                m.llm, m.text_embedding, m.rerank, m.tts, m.speech2text, m.moderation
            )),
            None => s.push_str("  Model: false\n"),
        }
        s.push_str(&format!("  Node: {}\n  Endpoint: {}\n  App: {}\n", p.node, p.endpoint, p.app));
        match p.storage {
            Some(size) => s.push_str(&format!("  Storage:\n    Enabled: true\n    Size: {size} bytes\n")),
            None => s.push_str("  Storage: false\n"),
        }
        if self.changed {
            let line = LogLine::info("permission updated successfully").field("manifest", self.manifest.display());
            return TextOutput::Both { stdout: s, log: vec![line] };
        }
        TextOutput::Stdout(s)
    }
}

fn manifest_path(plugin_dir: &Path) -> PathBuf {
    plugin_dir.join("manifest.yaml")
}

fn load(plugin_dir: &Path) -> CliResult<(PathBuf, Value)> {
    let path = manifest_path(plugin_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::generic(format!("failed to read {}: {e}", path.display()), "pass the plugin directory that contains manifest.yaml")
    })?;
    let value: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| CliError::generic(format!("manifest.yaml is not valid YAML: {e}"), "fix the syntax error in manifest.yaml"))?;
    if !value.is_mapping() {
        return Err(CliError::generic("manifest.yaml is not a mapping", "manifest.yaml must be a YAML mapping of plugin fields"));
    }
    Ok((path, value))
}

fn enabled(v: Option<&Value>) -> bool {
    v.and_then(|o| o.get("enabled")).and_then(Value::as_bool).unwrap_or(false)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn view(manifest: &Value) -> PermissionView {
    let perm = manifest.get("resource").and_then(|r| r.get("permission"));
    let get = |k: &str| perm.and_then(|p| p.get(k));
    PermissionView {
        tool: enabled(get("tool")),
        model: get("model").filter(|m| enabled(Some(m))).map(|m| ModelView {
            llm: flag(m, "llm"),
            text_embedding: flag(m, "text_embedding"),
            rerank: flag(m, "rerank"),
            tts: flag(m, "tts"),
            speech2text: flag(m, "speech2text"),
            moderation: flag(m, "moderation"),
        }),
        node: enabled(get("node")),
        endpoint: enabled(get("endpoint")),
        app: enabled(get("app")),
        storage: get("storage").filter(|s| enabled(Some(s))).map(|s| s.get("size").and_then(Value::as_u64).unwrap_or(0)),
    }
}

/// Write `view` back as `resource.permission`, in upstream field order.
fn apply(manifest: &mut Value, view: &PermissionView) -> CliResult<()> {
    let on = |b: bool| b.then_some(EnabledPermission { enabled: true });
    let permission = PluginPermissions {
        tool: on(view.tool),
        model: view.model.as_ref().map(|m| ModelPermission {
            enabled: true,
            llm: m.llm,
            text_embedding: m.text_embedding,
            rerank: m.rerank,
            tts: m.tts,
            speech2text: m.speech2text,
            moderation: m.moderation,
        }),
        node: on(view.node),
        endpoint: on(view.endpoint),
        app: on(view.app),
        storage: view.storage.map(|size| StoragePermission { enabled: true, size }),
    };
    let perm = serde_yaml_ng::to_value(&permission).map_err(|e| {
        CliError::generic(format!("failed to serialise permissions: {e}"), "this is a bug in the dify CLI; please report it")
    })?;
    let root = manifest
        .as_mapping_mut()
        .ok_or_else(|| CliError::generic("manifest.yaml is not a mapping", "manifest.yaml must be a YAML mapping"))?;
    let resource = root.entry("resource".into()).or_insert_with(|| Value::Mapping(Mapping::new()));
    if !resource.is_mapping() {
        *resource = Value::Mapping(Mapping::new());
    }
    if let Some(r) = resource.as_mapping_mut() {
        r.insert("permission".into(), perm);
    }
    Ok(())
}

fn save(path: &Path, manifest: &Value) -> CliResult<()> {
    let text = serde_yaml_ng::to_string(manifest)
        .map_err(|e| CliError::generic(format!("failed to serialise manifest: {e}"), "this is a bug in the dify CLI; please report it"))?;
    std::fs::write(path, text).map_err(|e| CliError::io("write", path, e))
}

pub fn list(plugin_dir: &Path) -> CliResult<PermissionReport> {
    let (path, manifest) = load(plugin_dir)?;
    Ok(PermissionReport { manifest: path, changed: false, permission: view(&manifest) })
}

fn nothing_selected(flags: &PermissionFlags) -> bool {
    let PermissionFlags {
        endpoint,
        tool,
        model,
        llm,
        text_embedding,
        rerank,
        tts,
        speech2text,
        moderation,
        node,
        app,
        storage,
        storage_size,
    } = flags;
    ![*endpoint, *tool, *model, *llm, *text_embedding, *rerank, *tts, *speech2text, *moderation, *node, *app, *storage].contains(&true)
        && storage_size.is_none()
}

pub fn add(plugin_dir: &Path, flags: &PermissionFlags) -> CliResult<PermissionReport> {
    if nothing_selected(flags) {
        return Err(CliError::usage("no permission given", "pass one or more --allow-* flags, e.g. --allow-tool"));
    }
    let (path, mut manifest) = load(plugin_dir)?;
    let before = view(&manifest);
    let mut p = before.clone();
    p.tool |= flags.tool;
    p.node |= flags.node;
    p.endpoint |= flags.endpoint;
    p.app |= flags.app;
    let model_sub = flags.llm || flags.text_embedding || flags.rerank || flags.tts || flags.speech2text || flags.moderation;
    if flags.model || model_sub {
        let m = p.model.get_or_insert_with(ModelView::default);
        m.llm |= flags.llm;
        m.text_embedding |= flags.text_embedding;
        m.rerank |= flags.rerank;
        m.tts |= flags.tts;
        m.speech2text |= flags.speech2text;
        m.moderation |= flags.moderation;
    }
    if flags.storage || flags.storage_size.is_some() {
        let size = flags.storage_size.or(p.storage).unwrap_or(STORAGE_DEFAULT);
        if !(STORAGE_MIN..=STORAGE_MAX).contains(&size) {
            return Err(CliError::usage(
                format!("invalid storage size {size}"),
                format!("--storage-size must be between {STORAGE_MIN} and {STORAGE_MAX} bytes"),
            ));
        }
        p.storage = Some(size);
    }
    let changed = p != before;
    if changed {
        apply(&mut manifest, &p)?;
        save(&path, &manifest)?;
    }
    Ok(PermissionReport { manifest: path, changed, permission: p })
}

pub fn remove(plugin_dir: &Path, flags: &PermissionFlags) -> CliResult<PermissionReport> {
    if nothing_selected(flags) {
        return Err(CliError::usage("no permission given", "pass one or more --allow-* flags naming what to remove"));
    }
    let (path, mut manifest) = load(plugin_dir)?;
    let before = view(&manifest);
    let mut p = before.clone();
    p.tool &= !flags.tool;
    p.node &= !flags.node;
    p.endpoint &= !flags.endpoint;
    p.app &= !flags.app;
    if flags.model {
        p.model = None;
    } else if let Some(m) = p.model.as_mut() {
        m.llm &= !flags.llm;
        m.text_embedding &= !flags.text_embedding;
        m.rerank &= !flags.rerank;
        m.tts &= !flags.tts;
        m.speech2text &= !flags.speech2text;
        m.moderation &= !flags.moderation;
    }
    if flags.storage {
        p.storage = None;
    }
    let changed = p != before;
    if changed {
        apply(&mut manifest, &p)?;
        save(&path, &manifest)?;
    }
    Ok(PermissionReport { manifest: path, changed, permission: p })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "version: 0.0.1\ntype: plugin\nauthor: acme\nname: p\nresource:\n  memory: 1024\n  permission:\n    tool:\n      enabled: true\nmeta:\n  version: 0.0.1\n";

    fn plugin() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.yaml"), MANIFEST).unwrap();
        dir
    }

    #[test]
    fn list_reads_the_manifest() {
        let dir = plugin();
        let r = list(dir.path()).unwrap();
        assert!(r.permission.tool);
        assert!(r.permission.model.is_none());
        match r.text() {
            TextOutput::Stdout(s) => assert!(s.contains("Tool: true"), "{s}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_then_remove_round_trips_and_keeps_other_fields() {
        let dir = plugin();
        let flags = PermissionFlags { model: true, llm: true, storage: true, storage_size: Some(4096), ..Default::default() };
        let r = add(dir.path(), &flags).unwrap();
        assert!(r.changed);
        let again = list(dir.path()).unwrap().permission;
        assert_eq!(again.model, Some(ModelView { llm: true, ..Default::default() }));
        assert_eq!(again.storage, Some(4096));
        assert!(again.tool);
        let text = std::fs::read_to_string(dir.path().join("manifest.yaml")).unwrap();
        assert!(text.contains("author: acme") && text.contains("memory: 1024"), "{text}");

        let r = remove(dir.path(), &PermissionFlags { llm: true, tool: true, storage: true, ..Default::default() }).unwrap();
        assert!(r.changed);
        let after = list(dir.path()).unwrap().permission;
        assert!(!after.tool);
        assert_eq!(after.model, Some(ModelView::default()));
        assert_eq!(after.storage, None);
        // Adding what is already there changes nothing.
        assert!(!add(dir.path(), &PermissionFlags { model: true, ..Default::default() }).unwrap().changed);
    }

    #[test]
    fn errors_are_clear() {
        let dir = plugin();
        assert_eq!(add(dir.path(), &PermissionFlags::default()).unwrap_err().exit_status(), 2);
        assert_eq!(
            add(dir.path(), &PermissionFlags { storage: true, storage_size: Some(1), ..Default::default() })
                .unwrap_err()
                .exit_status(),
            2
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(list(empty.path()).unwrap_err().exit_status(), 1);
        std::fs::write(empty.path().join("manifest.yaml"), "a: [").unwrap();
        assert!(list(empty.path()).unwrap_err().message.contains("not valid YAML"));
    }
}
