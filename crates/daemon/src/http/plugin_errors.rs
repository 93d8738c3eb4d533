//! What of a plugin's error reaches an HTTP caller. The SDK reports a failed request with
//! `args.traceback` (a Python traceback full of the daemon host's absolute paths) and messages that
//! may name host files. Answers keep the error type, message and other args; the traceback goes to
//! the daemon's log, and the host's directories (daemon working directory, plugin working path,
//! storage root, home) are replaced by placeholders.
//!
//! Owns only that rewriting; `dify plugin run` and the debug runtime read sessions directly and
//! keep the whole error for the developer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dify_protocol::message::PluginSessionError;
use serde_json::Value;

use crate::config::Settings;

/// Host directories to hide, longest first, each with its placeholder.
static HOST_PATHS: OnceLock<Vec<(String, &'static str)>> = OnceLock::new();

/// `path` made absolute, as written and with symlinks resolved (messages may show either).
fn absolute_forms(path: &Path) -> Vec<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => return Vec::new(),
        }
    };
    let mut forms = vec![joined.clone()];
    if let Ok(resolved) = std::fs::canonicalize(&joined) {
        forms.push(resolved);
    }
    forms
}

/// Records the directories answers must not reveal (called once when the router is built).
pub fn remember_host_paths(settings: &Settings) {
    let _ = HOST_PATHS.get_or_init(|| host_paths(settings));
}

fn host_paths(settings: &Settings) -> Vec<(String, &'static str)> {
    let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
    candidates.push((PathBuf::from(&settings.plugin_working_path), "<plugin working path>"));
    candidates.push((settings.storage_root(), "<storage>"));
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push((cwd, "<daemon directory>"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push((PathBuf::from(home), "<home>"));
    }
    let mut paths: Vec<(String, &'static str)> = Vec::new();
    for (path, label) in candidates {
        for form in absolute_forms(&path) {
            let text = form.to_string_lossy().trim_end_matches('/').replace("/./", "/");
            let text = text.strip_suffix("/.").unwrap_or(&text).to_string();
            // `/` or a one-letter directory would blank out far too much of a message.
            if text.len() > 2 && !paths.iter().any(|(p, _)| *p == text) {
                paths.push((text, label));
            }
        }
    }
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    paths
}

/// `text` with every known host directory replaced by its placeholder.
pub fn redact_host_paths(text: &str) -> String {
    redact_with(text, HOST_PATHS.get().map(Vec::as_slice).unwrap_or(&[]))
}

fn redact_with(text: &str, paths: &[(String, &'static str)]) -> String {
    let mut out = text.to_string();
    for (path, label) in paths {
        if out.contains(path.as_str()) {
            out = out.replace(path.as_str(), label);
        }
    }
    out
}

fn redact_value(value: &mut Value) {
    match value {
        Value::String(s) => *s = redact_host_paths(s),
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// The error as callers may see it: `args.traceback` logged (with the rest of the error) and
/// dropped, host directories replaced in the message and the remaining args.
pub fn for_caller(error: &PluginSessionError) -> PluginSessionError {
    let mut error = error.clone();
    if let Some(traceback) = error.args.as_object_mut().and_then(|args| args.remove("traceback")) {
        let traceback = traceback.as_str().map(str::to_owned).unwrap_or_else(|| traceback.to_string());
        tracing::warn!(error_type = %error.error_type, message = %error.message, %traceback, "plugin reported an error");
    }
    error.message = redact_host_paths(&error.message);
    redact_value(&mut error.args);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracebacks_and_host_paths_stay_out_of_answers() {
        let paths = vec![("/srv/daemon/cwd".to_string(), "<plugin working path>"), ("/srv/daemon".to_string(), "<daemon directory>")];
        assert_eq!(
            redact_with("File \"/srv/daemon/cwd/plugins/x/main.py\", in /srv/daemon/run", &paths),
            "File \"<plugin working path>/plugins/x/main.py\", in <daemon directory>/run"
        );
        let error = PluginSessionError {
            error_type: "TypeError".into(),
            message: "Model `llm` not found".into(),
            args: serde_json::json!({"traceback": "Traceback (most recent call last): ...", "description": "d"}),
        };
        let shown = for_caller(&error);
        assert_eq!(shown.args, serde_json::json!({"description": "d"}));
        assert_eq!(shown.message, "Model `llm` not found");
        assert_eq!(shown.error_type, "TypeError");
    }
}
