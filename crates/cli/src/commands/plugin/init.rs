//! `dify plugin init`: create a new plugin directory from the embedded templates.
//!
//! Owns the init options, the manifest written for a new plugin and the interactive questions
//! (asked only when stdin is a terminal and `--quick` is absent). It must not package or validate
//! packages; the generated directory is meant to pass `dify plugin package` unchanged.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use dify_protocol::manifest::{
    EnabledPermission, ModelPermission, PluginMeta, PluginPermissions, PluginResource, PluginRunner, StoragePermission, AUTHOR_REGEX,
    PLUGIN_NAME_REGEX, VERSION_REGEX,
};
use serde::Serialize;

use crate::error::{CliError, CliResult, ErrorCode};
use crate::output::{LogLine, Render, TextOutput};
use crate::templates::{self, TemplateValues};

/// Plugin kinds `init` can generate (the `--category` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Tool,
    Llm,
    TextEmbedding,
    Rerank,
    Tts,
    Speech2text,
    Moderation,
    Extension,
    AgentStrategy,
    Datasource,
    Trigger,
}

impl Category {
    pub const ALL: &'static [Category] = &[
        Category::Tool,
        Category::Llm,
        Category::TextEmbedding,
        Category::Rerank,
        Category::Tts,
        Category::Speech2text,
        Category::Moderation,
        Category::Extension,
        Category::AgentStrategy,
        Category::Datasource,
        Category::Trigger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Tool => "tool",
            Category::Llm => "llm",
            Category::TextEmbedding => "text-embedding",
            Category::Rerank => "rerank",
            Category::Tts => "tts",
            Category::Speech2text => "speech2text",
            Category::Moderation => "moderation",
            Category::Extension => "extension",
            Category::AgentStrategy => "agent-strategy",
            Category::Datasource => "datasource",
            Category::Trigger => "trigger",
        }
    }

    /// Parse a `--category` value.
    pub fn parse(s: &str) -> CliResult<Category> {
        if let Some(c) = Category::ALL.iter().find(|c| c.as_str() == s) {
            return Ok(*c);
        }
        let supported: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        Err(CliError::usage(format!("invalid category {s:?}"), format!("use one of: {}", supported.join(", "))))
    }

    /// The manifest `plugins.*` key and the provider file it lists.
    fn plugins_entry(self, name: &str) -> (&'static str, String) {
        match self {
            Category::Tool => ("tools", format!("provider/{name}.yaml")),
            Category::Llm | Category::TextEmbedding | Category::Rerank | Category::Tts | Category::Speech2text | Category::Moderation => {
                ("models", format!("provider/{name}.yaml"))
            }
            Category::Extension => ("endpoints", format!("group/{name}.yaml")),
            Category::AgentStrategy => ("agent_strategies", format!("provider/{name}.yaml")),
            Category::Datasource => ("datasources", format!("provider/{name}.yaml")),
            Category::Trigger => ("triggers", format!("provider/{name}.yaml")),
        }
    }

    /// For model categories: the model type (`supported_model_types`) and the `models:` key /
    /// directory name.
    pub fn model_kind(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Category::Llm => ("llm", "llm"),
            Category::TextEmbedding => ("text-embedding", "text_embedding"),
            Category::Rerank => ("rerank", "rerank"),
            Category::Tts => ("tts", "tts"),
            Category::Speech2text => ("speech2text", "speech2text"),
            Category::Moderation => ("moderation", "moderation"),
            _ => return None,
        })
    }

    /// Which icon pair the plugin gets (the manifest-level category).
    fn icon_family(self) -> &'static str {
        match self {
            Category::Tool => "tool",
            Category::Llm | Category::TextEmbedding | Category::Rerank | Category::Tts | Category::Speech2text | Category::Moderation => {
                "model"
            }
            Category::Extension => "extension",
            Category::AgentStrategy => "agent-strategy",
            Category::Datasource => "datasource",
            Category::Trigger => "trigger",
        }
    }
}

/// The `--allow-*` permission flags (shared with `plugin permission add`).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct PermissionFlags {
    /// Allow the plugin to register endpoints
    #[arg(long = "allow-endpoint")]
    pub endpoint: bool,
    /// Allow the plugin to invoke tools
    #[arg(long = "allow-tool")]
    pub tool: bool,
    /// Allow the plugin to invoke models
    #[arg(long = "allow-model")]
    pub model: bool,
    /// Allow the plugin to invoke LLM models (with --allow-model)
    #[arg(long = "allow-llm")]
    pub llm: bool,
    /// Allow the plugin to invoke text embedding models (with --allow-model)
    #[arg(long = "allow-text-embedding")]
    pub text_embedding: bool,
    /// Allow the plugin to invoke rerank models (with --allow-model)
    #[arg(long = "allow-rerank")]
    pub rerank: bool,
    /// Allow the plugin to invoke TTS models (with --allow-model)
    #[arg(long = "allow-tts")]
    pub tts: bool,
    /// Allow the plugin to invoke speech to text models (with --allow-model)
    #[arg(long = "allow-speech2text")]
    pub speech2text: bool,
    /// Allow the plugin to invoke moderation models (with --allow-model)
    #[arg(long = "allow-moderation")]
    pub moderation: bool,
    /// Allow the plugin to invoke nodes
    #[arg(long = "allow-node")]
    pub node: bool,
    /// Allow the plugin to invoke apps
    #[arg(long = "allow-app")]
    pub app: bool,
    /// Allow the plugin to use storage
    #[arg(long = "allow-storage")]
    pub storage: bool,
    /// Maximum storage size in bytes (1024..=1073741824; default 1048576 with --allow-storage)
    #[arg(long = "storage-size")]
    pub storage_size: Option<u64>,
}

pub const STORAGE_MIN: u64 = 1024;
pub const STORAGE_MAX: u64 = 1_073_741_824;
pub const STORAGE_DEFAULT: u64 = 1_048_576;

impl PermissionFlags {
    /// The permission object these flags ask for; model sub-flags only count with `--allow-model`.
    pub fn to_permission(&self) -> CliResult<PluginPermissions> {
        let on = |b: bool| b.then_some(EnabledPermission { enabled: true });
        let storage = if self.storage {
            let size = self.storage_size.unwrap_or(STORAGE_DEFAULT);
            if !(STORAGE_MIN..=STORAGE_MAX).contains(&size) {
                return Err(CliError::usage(
                    format!("invalid storage size {size}"),
                    format!("--storage-size must be between {STORAGE_MIN} and {STORAGE_MAX} bytes"),
                ));
            }
            Some(StoragePermission { enabled: true, size })
        } else {
            None
        };
        Ok(PluginPermissions {
            tool: on(self.tool),
            model: self.model.then_some(ModelPermission {
                enabled: true,
                llm: self.llm,
                text_embedding: self.text_embedding,
                rerank: self.rerank,
                tts: self.tts,
                speech2text: self.speech2text,
                moderation: self.moderation,
            }),
            node: on(self.node),
            endpoint: on(self.endpoint),
            app: on(self.app),
            storage,
        })
    }
}

/// Typed options of `plugin init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub name: String,
    pub author: String,
    pub description: String,
    pub repo: Option<String>,
    pub category: Category,
    pub language: String,
    pub min_dify_version: Option<String>,
    pub permissions: PermissionFlags,
    /// Extra README languages (`zh_Hans`, `ja_JP`, `pt_BR`).
    pub readme_languages: Vec<String>,
    /// Directory in which `<name>/` is created.
    pub parent_dir: PathBuf,
    /// Fixed creation time (tests); `None` = now.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What `plugin init` created.
#[derive(Debug, Clone, Serialize)]
pub struct InitResult {
    pub name: String,
    pub category: Category,
    pub directory: PathBuf,
    pub guide: String,
    pub files: Vec<String>,
}

impl Render for InitResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("plugin created successfully").field("name", &self.name).field("guide", &self.guide)])
    }
}

pub fn validate_name(name: &str) -> CliResult<()> {
    if PLUGIN_NAME_REGEX.is_match(name) {
        Ok(())
    } else {
        Err(CliError::usage(
            format!("invalid plugin name {name:?}"),
            "plugin name must be 1-128 characters long, and can only contain lowercase letters, numbers, dashes and underscores",
        ))
    }
}

pub fn validate_author(author: &str) -> CliResult<()> {
    if AUTHOR_REGEX.is_match(author) {
        Ok(())
    } else {
        Err(CliError::usage(
            format!("invalid author {author:?}"),
            "author name must be 1-64 characters long, and can only contain lowercase letters, numbers, dashes and underscores",
        ))
    }
}

pub fn validate_version(version: &str, what: &str) -> CliResult<()> {
    if VERSION_REGEX.is_match(version) {
        Ok(())
    } else {
        Err(CliError::usage(
            format!("invalid {what} {version:?}"),
            "use three numeric parts with an optional suffix, e.g. 1.2.3 or 1.2.3-beta",
        ))
    }
}

impl InitOptions {
    pub fn validate(&self) -> CliResult<()> {
        validate_name(&self.name)?;
        validate_author(&self.author)?;
        if self.description.trim().is_empty() {
            return Err(CliError::usage("description cannot be empty", "pass --description \"what the plugin does\""));
        }
        match self.language.as_str() {
            "python" => {}
            // Upstream lists Go as a known runner that the daemon cannot run yet.
            "go" => {
                return Err(CliError::new(
                    ErrorCode::VersionCompat,
                    "go plugins are not supported yet",
                    "use --language python; the daemon only runs Python plugins",
                ))
            }
            other => {
                return Err(CliError::usage(format!("invalid language {other:?}"), "only --language python is supported"));
            }
        }
        if let Some(v) = &self.min_dify_version {
            validate_version(v, "minimum Dify version")?;
        }
        if let Some(repo) = &self.repo {
            if !(repo.starts_with("https://") || repo.starts_with("http://")) {
                return Err(CliError::usage(
                    format!("invalid repository URL {repo:?}"),
                    "use a full URL such as https://github.com/you/plugin",
                ));
            }
        }
        for lang in &self.readme_languages {
            if templates::i18n_readme(lang).is_none() {
                return Err(CliError::usage(format!("unsupported README language {lang:?}"), "choose from zh_Hans, ja_JP, pt_BR"));
            }
        }
        self.permissions.to_permission()?;
        Ok(())
    }
}

#[derive(Serialize)]
#[allow(non_snake_case)] // the keys are the wire language codes
struct I18n<'a> {
    en_US: &'a str,
    ja_JP: &'a str,
    zh_Hans: &'a str,
    pt_BR: &'a str,
}

impl<'a> I18n<'a> {
    fn all(s: &'a str) -> Self {
        I18n { en_US: s, ja_JP: s, zh_Hans: s, pt_BR: s }
    }
}

/// manifest.yaml of a new plugin; field order follows the upstream declaration struct.
#[derive(Serialize)]
struct NewManifest<'a> {
    version: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    author: &'a str,
    name: &'a str,
    label: I18n<'a>,
    description: I18n<'a>,
    icon: &'static str,
    icon_dark: &'static str,
    resource: PluginResource,
    plugins: serde_yaml_ng::Mapping,
    meta: PluginMeta,
    created_at: String,
    privacy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo: Option<&'a str>,
    verified: bool,
}

pub const NEW_PLUGIN_VERSION: &str = "0.0.1";
const MEMORY_BYTES: i64 = 256 * 1024 * 1024;

/// Render manifest.yaml for `opts` (exposed for tests and `module append`).
pub fn render_manifest(opts: &InitOptions) -> CliResult<String> {
    let (key, provider) = opts.category.plugins_entry(&opts.name);
    let mut plugins = serde_yaml_ng::Mapping::new();
    plugins.insert(key.into(), serde_yaml_ng::Value::Sequence(vec![provider.into()]));
    let created_at = opts.created_at.unwrap_or_else(chrono::Utc::now);
    let manifest = NewManifest {
        version: NEW_PLUGIN_VERSION,
        kind: "plugin",
        author: &opts.author,
        name: &opts.name,
        label: I18n::all(&opts.name),
        description: I18n::all(&opts.description),
        icon: "icon.svg",
        icon_dark: "icon-dark.svg",
        resource: PluginResource { memory: MEMORY_BYTES, permission: Some(opts.permissions.to_permission()?) },
        plugins,
        meta: PluginMeta {
            version: "0.0.1".into(),
            arch: vec!["amd64".into(), "arm64".into()],
            runner: PluginRunner { language: opts.language.clone(), version: "3.12".into(), entrypoint: "main".into() },
            minimum_dify_version: opts.min_dify_version.clone(),
        },
        created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        privacy: "PRIVACY.md",
        repo: opts.repo.as_deref(),
        verified: false,
    };
    serde_yaml_ng::to_string(&manifest)
        .map_err(|e| CliError::generic(format!("failed to render manifest: {e}"), "this is a bug in the dify CLI; please report it"))
}

/// Create the plugin directory `<parent_dir>/<name>/`. On any failure the directory is removed.
pub fn run(opts: &InitOptions) -> CliResult<InitResult> {
    opts.validate()?;
    let dir = opts.parent_dir.join(&opts.name);
    if dir.exists() {
        return Err(CliError::generic(
            format!("directory {} already exists", dir.display()),
            "choose another --name or remove the existing directory",
        ));
    }
    let result = write_plugin(opts, &dir);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn write_plugin(opts: &InitOptions, dir: &Path) -> CliResult<InitResult> {
    let values = TemplateValues::new(&opts.name, &opts.author, &opts.description, NEW_PLUGIN_VERSION, opts.category.as_str());
    let mut files: Vec<(String, String)> = vec![("manifest.yaml".into(), render_manifest(opts)?)];
    let (light, dark) = templates::icons(opts.category.icon_family())
        .ok_or_else(|| CliError::generic("icon not found for category", "this is a bug in the dify CLI; please report it"))?;
    files.push(("_assets/icon.svg".into(), light.into()));
    files.push(("_assets/icon-dark.svg".into(), dark.into()));
    for lang in &opts.readme_languages {
        if let Some(t) = templates::i18n_readme(lang) {
            files.push((format!("readme/README_{lang}.md"), values.render(t)));
        }
    }
    for f in templates::plugin_files(opts.category, &values) {
        files.push((f.path, f.content));
    }
    let mut written = Vec::with_capacity(files.len());
    for (rel, content) in files {
        write_file(&dir.join(&rel), content.as_bytes())?;
        written.push(rel);
    }
    written.sort();
    Ok(InitResult {
        name: opts.name.clone(),
        category: opts.category,
        directory: dir.to_path_buf(),
        guide: format!("{}/GUIDE.md", opts.name),
        files: written,
    })
}

pub(crate) fn write_file(path: &Path, content: &[u8]) -> CliResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io("create directory", parent, e))?;
    }
    std::fs::write(path, content).map_err(|e| CliError::io("write", path, e))
}

/// Asks the questions of interactive `init`; flag values are the defaults.
pub struct Prompter<R, W> {
    input: R,
    output: W,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    pub fn new(input: R, output: W) -> Self {
        Prompter { input, output }
    }

    fn ask(&mut self, question: &str, default: &str) -> CliResult<String> {
        let shown = if default.is_empty() { String::new() } else { format!(" [{default}]") };
        write!(self.output, "{question}{shown}: ").and_then(|_| self.output.flush()).map_err(prompt_io)?;
        let mut line = String::new();
        let n = self.input.read_line(&mut line).map_err(prompt_io)?;
        if n == 0 {
            return Err(CliError::usage(
                "input ended before all questions were answered",
                "answer every question, or use --quick with flags",
            ));
        }
        let answer = line.trim();
        Ok(if answer.is_empty() { default.to_string() } else { answer.to_string() })
    }

    fn ask_until<T>(&mut self, question: &str, default: &str, check: impl Fn(&str) -> CliResult<T>) -> CliResult<T> {
        loop {
            let answer = self.ask(question, default)?;
            match check(&answer) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    writeln!(self.output, "  {} ({})", e.message, e.hint).map_err(prompt_io)?;
                }
            }
        }
    }

    fn yes_no(&mut self, question: &str, default: bool) -> CliResult<bool> {
        self.ask_until(question, if default { "y" } else { "n" }, |a| match a.to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok(true),
            "n" | "no" => Ok(false),
            _ => Err(CliError::usage("please answer y or n", "y = yes, n = no")),
        })
    }

    /// Fill in `opts` interactively: profile, category, permissions, minimum Dify version.
    pub fn complete(&mut self, mut opts: InitOptions) -> CliResult<InitOptions> {
        opts.name = self.ask_until("Plugin name", &opts.name, |a| validate_name(a).map(|_| a.to_string()))?;
        opts.author = self.ask_until("Author", &opts.author, |a| validate_author(a).map(|_| a.to_string()))?;
        opts.description = self.ask_until("Description", &opts.description, |a| {
            if a.trim().is_empty() {
                Err(CliError::usage("description cannot be empty", "describe what the plugin does"))
            } else {
                Ok(a.to_string())
            }
        })?;
        let repo = self.ask("Repository URL (optional)", opts.repo.as_deref().unwrap_or(""))?;
        opts.repo = (!repo.is_empty()).then_some(repo);
        let langs =
            self.ask("Extra README languages (comma separated: zh_Hans, ja_JP, pt_BR; optional)", &opts.readme_languages.join(","))?;
        opts.readme_languages = langs.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        let question = format!("Category ({})", names.join(", "));
        opts.category = self.ask_until(&question, opts.category.as_str(), Category::parse)?;
        if opts.category == Category::AgentStrategy {
            // Agent strategies need to call tools and LLMs.
            opts.permissions.tool = true;
            opts.permissions.model = true;
            opts.permissions.llm = true;
        }
        let p = &mut opts.permissions;
        p.tool = self.yes_no("Allow invoking tools?", p.tool)?;
        p.model = self.yes_no("Allow invoking models?", p.model)?;
        if p.model {
            p.llm = self.yes_no("  LLM?", p.llm)?;
            p.text_embedding = self.yes_no("  text embedding?", p.text_embedding)?;
            p.rerank = self.yes_no("  rerank?", p.rerank)?;
            p.tts = self.yes_no("  TTS?", p.tts)?;
            p.speech2text = self.yes_no("  speech to text?", p.speech2text)?;
            p.moderation = self.yes_no("  moderation?", p.moderation)?;
        }
        p.node = self.yes_no("Allow invoking workflow nodes?", p.node)?;
        p.app = self.yes_no("Allow invoking apps?", p.app)?;
        p.endpoint = self.yes_no("Allow registering endpoints?", p.endpoint)?;
        p.storage = self.yes_no("Allow using persistent storage?", p.storage)?;
        if p.storage {
            let default = p.storage_size.unwrap_or(STORAGE_DEFAULT).to_string();
            p.storage_size = Some(self.ask_until("  storage size in bytes", &default, |a| {
                a.parse::<u64>()
                    .ok()
                    .filter(|n| (STORAGE_MIN..=STORAGE_MAX).contains(n))
                    .ok_or_else(|| CliError::usage("invalid size", format!("a number between {STORAGE_MIN} and {STORAGE_MAX}")))
            })?);
        }
        let min = self.ask("Minimum Dify version (optional)", opts.min_dify_version.as_deref().unwrap_or(""))?;
        opts.min_dify_version = (!min.is_empty()).then_some(min);
        Ok(opts)
    }
}

fn prompt_io(e: std::io::Error) -> CliError {
    CliError::generic(format!("failed to read the answer: {e}"), "use --quick with flags when no terminal is available")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, category: Category) -> InitOptions {
        InitOptions {
            name: "my_tool".into(),
            author: "acme".into(),
            description: "Demo".into(),
            repo: Some("https://github.com/acme/my_tool".into()),
            category,
            language: "python".into(),
            min_dify_version: None,
            permissions: PermissionFlags {
                tool: true,
                model: true,
                llm: true,
                storage: true,
                storage_size: Some(1_048_576),
                ..Default::default()
            },
            readme_languages: vec![],
            parent_dir: dir.to_path_buf(),
            created_at: Some(chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00.123456789Z").unwrap().into()),
        }
    }

    #[test]
    fn manifest_matches_the_documented_example() {
        let dir = tempfile::tempdir().unwrap();
        let text = render_manifest(&opts(dir.path(), Category::Tool)).unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["version"].as_str(), Some("0.0.1"));
        assert_eq!(v["type"].as_str(), Some("plugin"));
        assert_eq!(v["label"]["pt_BR"].as_str(), Some("my_tool"));
        assert_eq!(v["resource"]["memory"].as_u64(), Some(268_435_456));
        assert_eq!(v["resource"]["permission"]["model"]["llm"].as_bool(), Some(true));
        assert_eq!(v["resource"]["permission"]["model"]["rerank"].as_bool(), Some(false));
        assert_eq!(v["resource"]["permission"]["storage"]["size"].as_u64(), Some(1_048_576));
        assert!(v["resource"]["permission"]["node"].is_null());
        assert_eq!(v["plugins"]["tools"][0].as_str(), Some("provider/my_tool.yaml"));
        assert_eq!(v["meta"]["runner"]["version"].as_str(), Some("3.12"));
        assert!(v["meta"]["minimum_dify_version"].is_null());
        assert_eq!(v["created_at"].as_str(), Some("2026-01-01T10:00:00.123456789Z"));
        assert_eq!(v["repo"].as_str(), Some("https://github.com/acme/my_tool"));
        assert_eq!(v["verified"].as_bool(), Some(false));
        let keys: Vec<&str> = v.as_mapping().unwrap().keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "version",
                "type",
                "author",
                "name",
                "label",
                "description",
                "icon",
                "icon_dark",
                "resource",
                "plugins",
                "meta",
                "created_at",
                "privacy",
                "repo",
                "verified"
            ]
        );
    }

    #[test]
    fn each_category_writes_its_files() {
        let dir = tempfile::tempdir().unwrap();
        for (i, c) in Category::ALL.iter().enumerate() {
            let mut o = opts(dir.path(), *c);
            o.name = format!("p{i}");
            let r = run(&o).unwrap();
            let (key, provider) = c.plugins_entry(&o.name);
            assert!(r.files.contains(&provider), "{c:?}: {:?}", r.files);
            let manifest = std::fs::read_to_string(r.directory.join("manifest.yaml")).unwrap();
            assert!(manifest.contains(key));
            for f in &r.files {
                assert!(r.directory.join(f).is_file(), "{f} missing");
            }
            assert!(r.directory.join("_assets/icon-dark.svg").is_file());
        }
    }

    #[test]
    fn invalid_input_is_refused_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), Category::Tool);
        o.name = "Bad Name".into();
        assert_eq!(run(&o).unwrap_err().exit_status(), 2);
        let mut o = opts(dir.path(), Category::Tool);
        o.permissions.storage_size = Some(10);
        assert_eq!(run(&o).unwrap_err().exit_status(), 2);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        assert_eq!(Category::parse("rerank").unwrap(), Category::Rerank);
        assert_eq!(Category::parse("nope").unwrap_err().exit_status(), 2);
        let mut o = opts(dir.path(), Category::Tool);
        o.language = "go".into();
        assert_eq!(run(&o).unwrap_err().exit_status(), 6, "a known but unsupported runner is a compatibility error");
        o.language = "rust".into();
        assert_eq!(run(&o).unwrap_err().exit_status(), 2);
    }

    #[test]
    fn existing_directory_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("my_tool")).unwrap();
        std::fs::write(dir.path().join("my_tool/keep.txt"), "x").unwrap();
        assert_eq!(run(&opts(dir.path(), Category::Tool)).unwrap_err().exit_status(), 1);
        assert!(dir.path().join("my_tool/keep.txt").exists());
    }

    #[test]
    fn prompter_uses_answers_and_defaults_and_reasks_on_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut base = opts(dir.path(), Category::Tool);
        base.permissions = PermissionFlags::default();
        base.repo = None;
        // name (bad, then good), author (default), description, repo, langs, category,
        // tool?, model?, node?, app?, endpoint?, storage?, min version
        let answers = "Bad Name\nnew_one\n\nA new plugin\n\nzh_Hans\nagent-strategy\n\nn\nn\nn\nn\nn\n1.9.0\n";
        let mut out = Vec::new();
        let o = Prompter::new(answers.as_bytes(), &mut out).complete(base).unwrap();
        assert_eq!(o.name, "new_one");
        assert_eq!(o.author, "acme");
        assert_eq!(o.description, "A new plugin");
        assert_eq!(o.readme_languages, vec!["zh_Hans".to_string()]);
        assert_eq!(o.category, Category::AgentStrategy);
        assert!(o.permissions.tool, "agent strategies default to tool permission");
        assert!(!o.permissions.model);
        assert_eq!(o.min_dify_version.as_deref(), Some("1.9.0"));
        let shown = String::from_utf8(out).unwrap();
        assert!(shown.contains("invalid plugin name"));
        let r = run(&o).unwrap();
        assert!(r.files.contains(&"readme/README_zh_Hans.md".to_string()));
    }

    #[test]
    fn prompter_fails_cleanly_when_input_ends() {
        let dir = tempfile::tempdir().unwrap();
        let err = Prompter::new("x\n".as_bytes(), Vec::new()).complete(opts(dir.path(), Category::Tool)).unwrap_err();
        assert_eq!(err.exit_status(), 2);
    }
}
