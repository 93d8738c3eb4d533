//! The plugin and bundle templates, embedded into the binary, and the tiny renderer that fills
//! them in.
//!
//! Templates live in `crates/cli/templates/` (dot-files are stored without their dot so git treats
//! them as plain files) and use `{{key}}` placeholders only (no logic). This
//! module knows which template file becomes which plugin file for each category; it must not
//! touch the file system (the `init` command writes what [`plugin_files`] returns).

use std::collections::BTreeMap;

use crate::commands::plugin::init::Category;

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $path))
    };
}

/// Values substituted into templates.
#[derive(Debug, Clone, Default)]
pub struct TemplateValues {
    values: BTreeMap<&'static str, String>,
}

impl TemplateValues {
    pub fn new(plugin_name: &str, author: &str, description: &str, version: &str, category: &str) -> Self {
        let mut values = BTreeMap::new();
        values.insert("plugin_name", plugin_name.to_string());
        values.insert("author", author.to_string());
        values.insert("description", description.to_string());
        values.insert("version", version.to_string());
        values.insert("category", category.to_string());
        values.insert("class_prefix", class_prefix(plugin_name));
        values.insert("description_quoted", yaml_quote(description));
        values.insert("label_quoted", yaml_quote(plugin_name));
        TemplateValues { values }
    }

    /// Add or replace one value.
    pub fn with(mut self, key: &'static str, value: &str) -> Self {
        self.values.insert(key, value.to_string());
        self
    }

    /// Fill every `{{key}}`; unknown keys are left as they are (Python f-strings use braces too,
    /// but never doubled ones in our templates).
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find("}}") {
                Some(end) if self.values.contains_key(&after[..end]) => {
                    out.push_str(&self.values[&after[..end]]);
                    rest = &after[end + 2..];
                }
                _ => {
                    out.push_str("{{");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `my_tool-x` → `MyToolX`: a Python class-name prefix derived from the plugin name.
pub fn class_prefix(plugin_name: &str) -> String {
    let mut s = String::new();
    for part in plugin_name.split(['_', '-']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            s.extend(first.to_uppercase());
            s.push_str(chars.as_str());
        }
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "Plugin");
    }
    s
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// One file of a generated plugin: path relative to the plugin root and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub content: String,
}

/// Files every plugin gets, whatever its category (manifest and icons excluded).
const COMMON: &[(&str, &str)] = &[
    ("README.md", template!("common/README.md")),
    ("PRIVACY.md", template!("common/PRIVACY.md")),
    (".env.example", template!("common/env.example")),
    ("GUIDE.md", template!("common/GUIDE.md")),
    (".gitignore", template!("common/gitignore")),
    (".difyignore", template!("common/difyignore")),
    (".github/workflows/plugin-publish.yml", template!("common/plugin-publish.yml")),
    ("main.py", template!("common/main.py")),
    ("requirements.txt", template!("common/requirements.txt")),
    ("pyproject.toml", template!("common/pyproject.toml")),
];

const TOOL: &[(&str, &str)] = &[
    ("provider/{{plugin_name}}.yaml", template!("python/tool/provider.yaml")),
    ("provider/{{plugin_name}}.py", template!("python/tool/provider.py")),
    ("tools/{{plugin_name}}.yaml", template!("python/tool/tool.yaml")),
    ("tools/{{plugin_name}}.py", template!("python/tool/tool.py")),
];

/// Provider files shared by every model category; `{{model_type}}`/`{{model_key}}` pick the kind.
const MODEL_PROVIDER: &[(&str, &str)] = &[
    ("provider/{{plugin_name}}.yaml", template!("python/model/provider.yaml")),
    ("provider/{{plugin_name}}.py", template!("python/model/provider.py")),
];

const LLM: &[(&str, &str)] =
    &[("models/llm/llm.yaml", template!("python/llm/llm.yaml")), ("models/llm/llm.py", template!("python/llm/llm.py"))];

const TEXT_EMBEDDING: &[(&str, &str)] = &[
    ("models/text_embedding/text_embedding.yaml", template!("python/text_embedding/text_embedding.yaml")),
    ("models/text_embedding/text_embedding.py", template!("python/text_embedding/text_embedding.py")),
];

const RERANK: &[(&str, &str)] = &[
    ("models/rerank/rerank.yaml", template!("python/rerank/rerank.yaml")),
    ("models/rerank/rerank.py", template!("python/rerank/rerank.py")),
];

const TTS: &[(&str, &str)] =
    &[("models/tts/tts.yaml", template!("python/tts/tts.yaml")), ("models/tts/tts.py", template!("python/tts/tts.py"))];

const SPEECH2TEXT: &[(&str, &str)] = &[
    ("models/speech2text/speech2text.yaml", template!("python/speech2text/speech2text.yaml")),
    ("models/speech2text/speech2text.py", template!("python/speech2text/speech2text.py")),
];

const MODERATION: &[(&str, &str)] = &[
    ("models/moderation/moderation.yaml", template!("python/moderation/moderation.yaml")),
    ("models/moderation/moderation.py", template!("python/moderation/moderation.py")),
];

const EXTENSION: &[(&str, &str)] = &[
    ("group/{{plugin_name}}.yaml", template!("python/extension/group.yaml")),
    ("endpoints/{{plugin_name}}.yaml", template!("python/extension/endpoint.yaml")),
    ("endpoints/{{plugin_name}}.py", template!("python/extension/endpoint.py")),
];

const AGENT_STRATEGY: &[(&str, &str)] = &[
    ("provider/{{plugin_name}}.yaml", template!("python/agent_strategy/provider.yaml")),
    ("strategies/{{plugin_name}}.yaml", template!("python/agent_strategy/strategy.yaml")),
    ("strategies/{{plugin_name}}.py", template!("python/agent_strategy/strategy.py")),
];

const DATASOURCE: &[(&str, &str)] = &[
    ("provider/{{plugin_name}}.yaml", template!("python/datasource/provider.yaml")),
    ("provider/{{plugin_name}}.py", template!("python/datasource/provider.py")),
    ("datasources/{{plugin_name}}.yaml", template!("python/datasource/datasource.yaml")),
    ("datasources/{{plugin_name}}.py", template!("python/datasource/datasource.py")),
];

const TRIGGER: &[(&str, &str)] = &[
    ("provider/{{plugin_name}}.yaml", template!("python/trigger/provider.yaml")),
    ("provider/{{plugin_name}}.py", template!("python/trigger/provider.py")),
    ("events/{{plugin_name}}_event.yaml", template!("python/trigger/event.yaml")),
    ("events/{{plugin_name}}_event.py", template!("python/trigger/event.py")),
];

/// Tool provider files, also used by `plugin module append tools`.
pub fn tool_module_files(values: &TemplateValues) -> Vec<GeneratedFile> {
    render_all(TOOL, values)
}

/// Endpoint group files, also used by `plugin module append endpoints`.
pub fn endpoint_module_files(values: &TemplateValues) -> Vec<GeneratedFile> {
    render_all(EXTENSION, values)
}

fn category_templates(category: Category) -> &'static [(&'static str, &'static str)] {
    match category {
        Category::Tool => TOOL,
        Category::Llm => LLM,
        Category::TextEmbedding => TEXT_EMBEDDING,
        Category::Rerank => RERANK,
        Category::Tts => TTS,
        Category::Speech2text => SPEECH2TEXT,
        Category::Moderation => MODERATION,
        Category::Extension => EXTENSION,
        Category::AgentStrategy => AGENT_STRATEGY,
        Category::Datasource => DATASOURCE,
        Category::Trigger => TRIGGER,
    }
}

fn render_all(templates: &[(&str, &str)], values: &TemplateValues) -> Vec<GeneratedFile> {
    templates
        .iter()
        .map(|(path, body)| GeneratedFile { path: values.render(path), content: values.render(body) })
        .collect()
}

/// Every file of a new plugin of `category` except `manifest.yaml`, icons and readmes.
pub fn plugin_files(category: Category, values: &TemplateValues) -> Vec<GeneratedFile> {
    let mut files = render_all(COMMON, values);
    if let Some((model_type, model_key)) = category.model_kind() {
        let values = values.clone().with("model_type", model_type).with("model_key", model_key);
        files.extend(render_all(MODEL_PROVIDER, &values));
        files.extend(render_all(category_templates(category), &values));
    } else {
        files.extend(render_all(category_templates(category), values));
    }
    files
}

/// The (light, dark) icon pair for a category family (`tool`, `model`, `extension`, ...).
pub fn icons(icon_family: &str) -> Option<(&'static str, &'static str)> {
    Some(match icon_family {
        "tool" => (template!("icons/tool_light.svg"), template!("icons/tool_dark.svg")),
        "model" => (template!("icons/model_light.svg"), template!("icons/model_dark.svg")),
        "extension" => (template!("icons/extension_light.svg"), template!("icons/extension_dark.svg")),
        "agent-strategy" => (template!("icons/agent-strategy_light.svg"), template!("icons/agent-strategy_dark.svg")),
        "datasource" => (template!("icons/datasource_light.svg"), template!("icons/datasource_dark.svg")),
        "trigger" => (template!("icons/trigger_light.svg"), template!("icons/trigger_dark.svg")),
        _ => return None,
    })
}

/// Translated README templates for `readme/README_<lang>.md`.
pub fn i18n_readme(language: &str) -> Option<&'static str> {
    Some(match language {
        "zh_Hans" => template!("readme/zh_Hans.md"),
        "ja_JP" => template!("readme/ja_JP.md"),
        "pt_BR" => template!("readme/pt_BR.md"),
        _ => return None,
    })
}

/// Templates for `bundle init`.
pub const BUNDLE_README: &str = template!("bundle/README.md");
pub const BUNDLE_ICON: &str = template!("bundle/icon.svg");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_placeholders_and_keeps_others() {
        let v = TemplateValues::new("my_tool", "acme", "say \"hi\"", "0.0.1", "tool");
        assert_eq!(v.render("{{plugin_name}}/{{author}}"), "my_tool/acme");
        assert_eq!(v.render("x: {{description_quoted}}"), "x: \"say \\\"hi\\\"\"");
        assert_eq!(v.render("{{unknown}} {x}"), "{{unknown}} {x}");
        assert_eq!(v.render("{{class_prefix}}Tool"), "MyToolTool");
    }

    #[test]
    fn class_prefix_is_a_valid_python_identifier() {
        assert_eq!(class_prefix("a-b_c"), "ABC");
        assert_eq!(class_prefix("9lives"), "Plugin9lives");
        assert_eq!(class_prefix("__"), "Plugin");
    }

    #[test]
    fn no_placeholder_survives_rendering() {
        let v = TemplateValues::new("p", "a", "d", "0.0.1", "tool");
        for category in Category::ALL {
            for f in plugin_files(*category, &v) {
                assert!(!f.content.contains("{{"), "{} keeps a placeholder", f.path);
                assert!(!f.path.contains("{{"), "{} keeps a placeholder", f.path);
            }
        }
    }
}
