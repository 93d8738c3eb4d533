//! `dify plugin module list <dir|pkg>` and `dify plugin module append tools|endpoints <dir>`.
//!
//! `list` shows the tools, agent strategies, models and endpoints a plugin declares (resolved by
//! `dify-package`). `append` adds a tool provider or an endpoint group from the same templates as
//! `plugin init` and lists it in `manifest.yaml`. Must not touch anything but the new files and
//! the `plugins` section of the manifest.

use std::path::Path;

use serde::Serialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::commands::plugin::init::write_file;
use crate::commands::source::open_plugin;
use crate::error::{CliError, CliResult};
use crate::output::{LogLine, Render, TextOutput};
use crate::templates::{self, TemplateValues};

#[derive(Debug, Clone, Serialize)]
pub struct ModuleList {
    pub name: String,
    pub version: String,
    pub category: String,
    pub tools: Vec<Json>,
    pub agent_strategies: Vec<Json>,
    pub models: Vec<Json>,
    pub endpoints: Vec<Json>,
}

fn s<'a>(v: &'a Json, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

fn scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

impl Render for ModuleList {
    fn text(&self) -> TextOutput {
        let mut out = String::new();
        for tool in &self.tools {
            out.push_str(&format!(
                "\n========== {} ==========\nAuthor: {}\nLabel: {}\nDescription: {}\nParameters:\n",
                s(tool, &["identity", "name"]),
                s(tool, &["identity", "author"]),
                s(tool, &["identity", "label", "en_US"]),
                s(tool, &["description", "human", "en_US"]),
            ));
            for p in tool["parameters"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  - Name: {}\n    Type: {}\n    Required: {}\n    Description: {}\n",
                    s(p, &["name"]),
                    s(p, &["type"]),
                    p["required"].as_bool().unwrap_or(false),
                    s(p, &["human_description", "en_US"]),
                ));
                if !p["default"].is_null() {
                    out.push_str(&format!("    Default: {}\n", scalar(&p["default"])));
                }
            }
        }
        for strategy in &self.agent_strategies {
            out.push_str(&format!(
                "\n========== {} ==========\nAuthor: {}\nLabel: {}\nDescription: {}\nParameters:\n",
                s(strategy, &["identity", "name"]),
                s(strategy, &["identity", "author"]),
                s(strategy, &["identity", "label", "en_US"]),
                s(strategy, &["description", "en_US"]),
            ));
            for p in strategy["parameters"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  - Name: {}\n    Type: {}\n    Required: {}\n",
                    s(p, &["name"]),
                    s(p, &["type"]),
                    p["required"].as_bool().unwrap_or(false),
                ));
            }
        }
        for model in &self.models {
            out.push_str(&format!(
                "\n========== {m} ==========\nName: {m}\nType: {}\nLabel: {}\nParameters:\n",
                s(model, &["model_type"]),
                s(model, &["label", "en_US"]),
                m = s(model, &["model"]),
            ));
            for p in model["parameter_rules"].as_array().into_iter().flatten() {
                out.push_str(&format!("  - Name: {}\n", s(p, &["name"])));
                for (key, label) in [("type", "Type"), ("required", "Required"), ("default", "Default"), ("min", "Min"), ("max", "Max")] {
                    if !p[key].is_null() {
                        out.push_str(&format!("    {label}: {}\n", scalar(&p[key])));
                    }
                }
            }
        }
        for endpoint in &self.endpoints {
            out.push_str(&format!(
                "\n========== Endpoints ==========\nPath: {}\nMethod: {}\n",
                s(endpoint, &["path"]),
                s(endpoint, &["method"]),
            ));
        }
        if out.is_empty() {
            out = "no modules declared\n".to_string();
        }
        TextOutput::Stdout(out)
    }
}

fn to_json<T: Serialize>(v: &T) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

pub fn list(plugin_path: &Path) -> CliResult<ModuleList> {
    let package = open_plugin(plugin_path)?;
    let d = package.declaration();
    Ok(ModuleList {
        name: d.name.clone(),
        version: d.version.clone(),
        category: d.category().as_str().to_string(),
        tools: d.tool.iter().flat_map(|t| t.tools.iter().map(to_json)).collect(),
        agent_strategies: d.agent_strategy.iter().flat_map(|a| a.strategies.iter().map(to_json)).collect(),
        models: d.model.iter().flat_map(|m| m.models.iter().map(to_json)).collect(),
        endpoints: d.endpoint.iter().flat_map(|e| e.endpoints.iter().map(to_json)).collect(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    Tools,
    Endpoints,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppendResult {
    pub module: ModuleKind,
    pub provider: String,
    pub files: Vec<String>,
}

impl Render for AppendResult {
    fn text(&self) -> TextOutput {
        let message = match self.module {
            ModuleKind::Tools => "created tool module successfully",
            ModuleKind::Endpoints => "created endpoint module successfully",
        };
        TextOutput::Log(vec![LogLine::info(message)])
    }
}

/// Add a tool provider or an endpoint group to a plugin directory.
pub fn append(plugin_dir: &Path, kind: ModuleKind) -> CliResult<AppendResult> {
    let package = open_plugin(plugin_dir)?;
    if package.source_dir().is_none() {
        return Err(CliError::usage("modules can only be appended to a plugin directory", "pass the plugin directory, not a .difypkg"));
    }
    let d = package.declaration();
    if d.model.is_some() || !d.plugins.models.is_empty() {
        let what = if kind == ModuleKind::Tools { "tools" } else { "endpoints" };
        return Err(CliError::usage(format!("model plugin does not support declare {what}"), "model plugins cannot contain other modules"));
    }
    let other_kinds = d.agent_strategy.is_some() || d.datasource.is_some() || d.trigger.is_some();
    if other_kinds {
        return Err(CliError::usage(
            format!("a {} plugin cannot also declare {}", d.category(), if kind == ModuleKind::Tools { "tools" } else { "endpoints" }),
            "only tools and endpoints can be combined in one plugin",
        ));
    }
    let (key, provider) = match kind {
        ModuleKind::Tools => {
            if d.tool.is_some() || !d.plugins.tools.is_empty() {
                return Err(CliError::usage(
                    "you have already declared tools in this plugin, you can add new tool by modifying the provider.yaml file",
                    "add a tools/<name>.yaml entry to the existing tool provider instead",
                ));
            }
            ("tools", format!("provider/{}.yaml", d.name))
        }
        ModuleKind::Endpoints => {
            if d.endpoint.is_some() || !d.plugins.endpoints.is_empty() {
                return Err(CliError::usage(
                    "you have already declared endpoints in this plugin, you can add new endpoint by modifying the provider.yaml file",
                    "add an endpoints/<name>.yaml entry to the existing endpoint group instead",
                ));
            }
            ("endpoints", format!("group/{}.yaml", d.name))
        }
    };
    let description = if d.description.en_us.is_empty() { d.name.clone() } else { d.description.en_us.clone() };
    let values = TemplateValues::new(&d.name, &d.author, &description, &d.version, d.category().as_str());
    let files = match kind {
        ModuleKind::Tools => templates::tool_module_files(&values),
        ModuleKind::Endpoints => templates::endpoint_module_files(&values),
    };
    for f in &files {
        if plugin_dir.join(&f.path).exists() {
            return Err(CliError::generic(
                format!("{} already exists", f.path),
                "move the existing file away or list it in manifest.yaml yourself",
            ));
        }
    }

    let manifest_path = plugin_dir.join("manifest.yaml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| CliError::io("read", &manifest_path, e))?;
    let mut manifest: Yaml = serde_yaml_ng::from_str(&text)
        .map_err(|e| CliError::generic(format!("manifest.yaml is not valid YAML: {e}"), "fix the syntax error in manifest.yaml"))?;
    let root = manifest
        .as_mapping_mut()
        .ok_or_else(|| CliError::generic("manifest.yaml is not a mapping", "manifest.yaml must be a YAML mapping"))?;
    let plugins = root.entry("plugins".into()).or_insert_with(|| Yaml::Mapping(Default::default()));
    if !plugins.is_mapping() {
        *plugins = Yaml::Mapping(Default::default());
    }
    if let Some(p) = plugins.as_mapping_mut() {
        p.insert(key.into(), Yaml::Sequence(vec![provider.clone().into()]));
    }
    let new_manifest = serde_yaml_ng::to_string(&manifest)
        .map_err(|e| CliError::generic(format!("failed to save manifest: {e}"), "this is a bug in the dify CLI; please report it"))?;

    for f in &files {
        write_file(&plugin_dir.join(&f.path), f.content.as_bytes())?;
    }
    std::fs::write(&manifest_path, new_manifest).map_err(|e| CliError::io("write", &manifest_path, e))?;
    Ok(AppendResult { module: kind, provider, files: files.into_iter().map(|f| f.path).collect() })
}
