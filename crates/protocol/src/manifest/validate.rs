//! The two validation layers over a declaration: the packaging-time struct rules (`strict`) and
//! the daemon's `ManifestValidate` (`for_daemon`). Both collect every problem instead of stopping
//! at the first. Asset checks need the package's files and live in `dify-package`.

use once_cell::sync::Lazy;
use regex::Regex;
use serde::Serialize;

use super::{I18nObject, PluginDeclaration, PLUGIN_TAGS};

/// Daemon rule for `author`.
pub static AUTHOR_REGEX: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-z0-9_-]{1,64}$").expect("valid regex"));
/// Daemon rule for `name`.
pub static PLUGIN_NAME_REGEX: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-z0-9_-]{1,128}$").expect("valid regex"));
/// Manifest version: three numeric parts and an optional `-suffix` (ASCII word characters).
pub static VERSION_REGEX: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^[0-9]{1,4}(\.[0-9]{1,4}){2}(-[0-9A-Za-z_]{1,16})?$").expect("valid regex"));
static URL_REGEX: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+\S*$").expect("valid regex"));

/// One thing wrong with a declaration: the field (dotted YAML path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn finish(problems: Vec<Problem>) -> Result<(), Vec<Problem>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Upstream `ManifestValidate`, run at upload/install time on the resolved declaration.
pub(crate) fn for_daemon(declaration: &PluginDeclaration) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    if !AUTHOR_REGEX.is_match(&declaration.author) {
        problems.push(Problem::new("author", "author must be alphanumeric and less than 64 characters: ^[a-z0-9_-]{1,64}$"));
    }
    if !PLUGIN_NAME_REGEX.is_match(&declaration.name) {
        problems.push(Problem::new("name", "plugin name must be alphanumeric and less than 128 characters: ^[a-z0-9_-]{1,128}$"));
    }
    let d = declaration;
    let (tool, model, endpoint, agent, datasource, trigger) = (
        d.tool.is_some(),
        d.model.is_some(),
        d.endpoint.is_some(),
        d.agent_strategy.is_some(),
        d.datasource.is_some(),
        d.trigger.is_some(),
    );
    if !(tool || model || endpoint || agent || datasource || trigger) {
        problems.push(Problem::new(
            "plugins",
            "at least one of endpoint, model, tool, agent_strategy, trigger, or datasource must be provided",
        ));
    }
    if model && (datasource || tool || endpoint || agent || trigger) {
        problems.push(Problem::new(
            "model",
            "model and datasource, tool, endpoint, trigger, or agent_strategy cannot be provided at the same time",
        ));
    }
    if agent && (tool || model || endpoint || datasource || trigger) {
        problems.push(Problem::new(
            "agent_strategy",
            "agent_strategy and tool, model, endpoint, trigger, or datasource cannot be provided at the same time",
        ));
    }
    if datasource && (tool || model || endpoint || agent || trigger) {
        problems.push(Problem::new(
            "datasource",
            "datasource and tool, model, endpoint, trigger, or agent_strategy cannot be provided at the same time",
        ));
    }
    if trigger && (tool || model || endpoint || agent || datasource) {
        problems.push(Problem::new("trigger", "trigger and tool, model, endpoint, or agent_strategy cannot be provided at the same time"));
    }
    finish(problems)
}

fn check_i18n(problems: &mut Vec<Problem>, field: &str, value: &I18nObject) {
    let en_len = value.en_us.chars().count();
    if en_len == 0 {
        problems.push(Problem::new(format!("{field}.en_US"), "is required"));
    } else if en_len >= 1024 {
        problems.push(Problem::new(format!("{field}.en_US"), "must be shorter than 1024 characters"));
    }
    for (language, text) in [("ja_JP", &value.ja_jp), ("zh_Hans", &value.zh_hans), ("pt_BR", &value.pt_br)] {
        if text.chars().count() >= 1024 {
            problems.push(Problem::new(format!("{field}.{language}"), "must be shorter than 1024 characters"));
        }
    }
}

fn check_max(problems: &mut Vec<Problem>, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        problems.push(Problem::new(field, format!("must be at most {max} characters")));
    }
}

/// The packaging-time rules on `manifest.yaml` (the go-playground tags of the Go struct).
pub(crate) fn strict(d: &PluginDeclaration) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    if d.version.is_empty() {
        problems.push(Problem::new("version", "is required"));
    } else if !VERSION_REGEX.is_match(&d.version) {
        problems.push(Problem::new("version", format!("{:?} is not a valid version (x.y.z[-suffix])", d.version)));
    }
    if d.manifest_type != "plugin" {
        problems.push(Problem::new("type", format!("must be \"plugin\", got {:?}", d.manifest_type)));
    }
    check_max(&mut problems, "author", &d.author, 64);
    if d.name.is_empty() {
        problems.push(Problem::new("name", "is required"));
    }
    check_max(&mut problems, "name", &d.name, 128);
    check_i18n(&mut problems, "label", &d.label);
    check_i18n(&mut problems, "description", &d.description);
    if d.icon.is_empty() {
        problems.push(Problem::new("icon", "is required"));
    }
    check_max(&mut problems, "icon", &d.icon, 128);
    check_max(&mut problems, "icon_dark", &d.icon_dark, 128);
    if d.resource.memory == 0 {
        problems.push(Problem::new("resource.memory", "is required"));
    }
    if let Some(storage) = d.resource.permission.as_ref().and_then(|p| p.storage.as_ref()) {
        if !(1024..=1_073_741_824).contains(&storage.size) {
            problems.push(Problem::new(
                "resource.permission.storage.size",
                format!("must be between 1024 and 1073741824 bytes, got {}", storage.size),
            ));
        }
    }
    for (kind, paths) in [
        ("tools", &d.plugins.tools),
        ("models", &d.plugins.models),
        ("endpoints", &d.plugins.endpoints),
        ("agent_strategies", &d.plugins.agent_strategies),
        ("datasources", &d.plugins.datasources),
        ("triggers", &d.plugins.triggers),
    ] {
        for (index, path) in paths.iter().enumerate() {
            check_max(&mut problems, &format!("plugins.{kind}[{index}]"), path, 128);
        }
    }
    if d.meta.version.is_empty() {
        problems.push(Problem::new("meta.version", "is required"));
    } else if !VERSION_REGEX.is_match(&d.meta.version) {
        problems.push(Problem::new("meta.version", format!("{:?} is not a valid version", d.meta.version)));
    }
    if d.meta.arch.is_empty() {
        problems.push(Problem::new("meta.arch", "is required"));
    }
    for (index, arch) in d.meta.arch.iter().enumerate() {
        if arch != "amd64" && arch != "arm64" {
            problems.push(Problem::new(format!("meta.arch[{index}]"), format!("{arch:?} is not amd64 or arm64")));
        }
    }
    let runner = &d.meta.runner;
    if runner.language.is_empty() {
        problems.push(Problem::new("meta.runner.language", "is required"));
    } else if runner.language != "python" {
        problems.push(Problem::new("meta.runner.language", format!("{:?} is not an available language (python)", runner.language)));
    }
    if runner.version.is_empty() {
        problems.push(Problem::new("meta.runner.version", "is required"));
    }
    check_max(&mut problems, "meta.runner.version", &runner.version, 128);
    if runner.entrypoint.is_empty() {
        problems.push(Problem::new("meta.runner.entrypoint", "is required"));
    }
    check_max(&mut problems, "meta.runner.entrypoint", &runner.entrypoint, 256);
    if let Some(minimum) = d.meta.minimum_dify_version.as_deref() {
        if !minimum.is_empty() && !VERSION_REGEX.is_match(minimum) {
            problems.push(Problem::new("meta.minimum_dify_version", format!("{minimum:?} is not a valid version")));
        }
    }
    for (index, tag) in d.tags.iter().enumerate() {
        if !PLUGIN_TAGS.contains(&tag.as_str()) {
            problems.push(Problem::new(format!("tags[{index}]"), format!("{tag:?} is not a valid tag")));
        }
    }
    if d.created_at == super::zero_time() {
        problems.push(Problem::new("created_at", "is required"));
    }
    if let Some(repo) = d.repo.as_deref() {
        if !URL_REGEX.is_match(repo) {
            problems.push(Problem::new("repo", format!("{repo:?} is not a URL")));
        }
    }
    finish(problems)
}
