//! The plugin declaration (`manifest.yaml` plus the provider files it references), as read from
//! YAML and as exchanged in JSON with Dify.
//!
//! Owns: field names and JSON shapes (matching the Go daemon), defaults (`fill_in_default_values`),
//! category derivation, and the two validation layers (`validate_strict` for `dify plugin package`,
//! `validate_for_daemon` for upload/install). It must not read files: resolving provider files is
//! the package decoder's job.

mod common;
mod model;
mod providers;
mod validate;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub use common::{
    format_go_time, parse_go_time, zero_time, ConfigOption, I18nObject, OAuthSchema, ParameterAutoGenerate, ParameterOption,
    ParameterTemplate, ProviderConfig,
};
pub use model::{
    CredentialFormSchema, FieldModelSchema, FormOption, FormShowOn, ModelCredentialSchema, ModelDeclaration, ModelParameterRule,
    ModelPosition, ModelProviderDeclaration, ModelProviderHelp, ProviderCredentialSchema, MODEL_SOURCE_TYPES, PARAMETER_RULE_TEMPLATES,
};
pub use providers::{
    AgentStrategyDeclaration, AgentStrategyParameter, AgentStrategyProviderDeclaration, DatasourceDeclaration, DatasourceIdentity,
    DatasourceParameter, DatasourceProviderDeclaration, DatasourceProviderIdentity, EndpointDeclaration, EndpointProviderDeclaration,
    EventDeclaration, EventParameter, EventParameterOption, SubscriptionConstructor, ToolDeclaration, ToolDescription, ToolIdentity,
    ToolParameter, ToolProviderDeclaration, ToolProviderIdentity, TriggerProviderDeclaration,
};
pub use validate::{Problem, AUTHOR_REGEX, PLUGIN_NAME_REGEX, VERSION_REGEX};

use common::{go_time, null_if_empty, opt_scalar_string, scalar_string, string_vec};

/// Tags a plugin (or tool provider) may carry.
pub const PLUGIN_TAGS: [&str; 19] = [
    "search",
    "image",
    "videos",
    "weather",
    "finance",
    "design",
    "travel",
    "social",
    "news",
    "medical",
    "productivity",
    "education",
    "business",
    "entertainment",
    "utilities",
    "agent",
    "rag",
    "other",
    "trigger",
];

/// What kind of plugin this is, derived from what it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PluginCategory {
    #[serde(rename = "tool")]
    Tool,
    #[serde(rename = "model")]
    Model,
    #[serde(rename = "extension")]
    Extension,
    #[serde(rename = "agent-strategy")]
    AgentStrategy,
    #[serde(rename = "datasource")]
    Datasource,
    #[serde(rename = "trigger")]
    Trigger,
}

impl PluginCategory {
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginCategory::Tool => "tool",
            PluginCategory::Model => "model",
            PluginCategory::Extension => "extension",
            PluginCategory::AgentStrategy => "agent-strategy",
            PluginCategory::Datasource => "datasource",
            PluginCategory::Trigger => "trigger",
        }
    }
}

impl std::fmt::Display for PluginCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `resource.permission.tool` / `node` / `endpoint` / `app`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnabledPermission {
    pub enabled: bool,
}

/// `resource.permission.model`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelPermission {
    pub enabled: bool,
    pub llm: bool,
    pub text_embedding: bool,
    pub rerank: bool,
    pub tts: bool,
    pub speech2text: bool,
    pub moderation: bool,
}

/// `resource.permission.storage`; `size` is the persistent KV quota in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePermission {
    pub enabled: bool,
    pub size: u64,
}

/// What the plugin may call back into (`resource.permission`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginPermissions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<EnabledPermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelPermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<EnabledPermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EnabledPermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<EnabledPermission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StoragePermission>,
}

impl PluginPermissions {
    pub fn allows_tool(&self) -> bool {
        self.tool.as_ref().is_some_and(|p| p.enabled)
    }
    pub fn allows_model(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled)
    }
    pub fn allows_llm(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled && p.llm)
    }
    pub fn allows_text_embedding(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled && p.text_embedding)
    }
    pub fn allows_rerank(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled && p.rerank)
    }
    pub fn allows_tts(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled && p.tts)
    }
    pub fn allows_speech2text(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled && p.speech2text)
    }
    pub fn allows_moderation(&self) -> bool {
        self.model.as_ref().is_some_and(|p| p.enabled && p.moderation)
    }
    pub fn allows_node(&self) -> bool {
        self.node.as_ref().is_some_and(|p| p.enabled)
    }
    pub fn allows_app(&self) -> bool {
        self.app.as_ref().is_some_and(|p| p.enabled)
    }
    pub fn allows_endpoint(&self) -> bool {
        self.endpoint.as_ref().is_some_and(|p| p.enabled)
    }
    pub fn allows_storage(&self) -> bool {
        self.storage.as_ref().is_some_and(|p| p.enabled)
    }
}

/// `resource`: memory (bytes) and permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginResource {
    pub memory: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<PluginPermissions>,
}

/// `meta.runner`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginRunner {
    /// Only `python` is accepted.
    #[serde(deserialize_with = "scalar_string")]
    pub language: String,
    #[serde(deserialize_with = "scalar_string")]
    pub version: String,
    /// Module launched as `python -m <entrypoint>`.
    #[serde(deserialize_with = "scalar_string")]
    pub entrypoint: String,
}

/// `meta`: manifest schema version, architectures, runner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginMeta {
    #[serde(deserialize_with = "scalar_string")]
    pub version: String,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub arch: Vec<String>,
    pub runner: PluginRunner,
    #[serde(deserialize_with = "opt_scalar_string")]
    pub minimum_dify_version: Option<String>,
}

/// `plugins`: paths of the provider files, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginExtensions {
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub tools: Vec<String>,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub models: Vec<String>,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub endpoints: Vec<String>,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub agent_strategies: Vec<String>,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub datasources: Vec<String>,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub triggers: Vec<String>,
}

/// A plugin's declaration: `manifest.yaml` plus, once the package decoder has resolved them, the
/// provider declarations it references.
///
/// JSON field order and presence follow the Go daemon: the `plugins.*` keys, `tags`, `verified`
/// and `meta.minimum_dify_version` are always present; `privacy`, `repo` and the provider objects
/// only when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginDeclaration {
    #[serde(deserialize_with = "scalar_string")]
    pub version: String,
    /// `plugin` (bundles use `bundle`).
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub manifest_type: String,
    #[serde(deserialize_with = "scalar_string")]
    pub author: String,
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
    pub description: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub icon: String,
    #[serde(deserialize_with = "scalar_string")]
    pub icon_dark: String,
    pub resource: PluginResource,
    pub plugins: PluginExtensions,
    pub meta: PluginMeta,
    #[serde(deserialize_with = "string_vec")]
    pub tags: Vec<String>,
    #[serde(with = "go_time")]
    pub created_at: DateTime<FixedOffset>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar_string")]
    pub privacy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar_string")]
    pub repo: Option<String>,
    /// Output only: recomputed from the package signature whatever the manifest says.
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointProviderDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelProviderDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolProviderDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_strategy: Option<AgentStrategyProviderDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DatasourceProviderDeclaration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerProviderDeclaration>,
}

impl Default for PluginDeclaration {
    fn default() -> Self {
        Self {
            version: String::new(),
            manifest_type: String::new(),
            author: String::new(),
            name: String::new(),
            label: I18nObject::default(),
            description: I18nObject::default(),
            icon: String::new(),
            icon_dark: String::new(),
            resource: PluginResource::default(),
            plugins: PluginExtensions::default(),
            meta: PluginMeta::default(),
            tags: Vec::new(),
            created_at: zero_time(),
            privacy: None,
            repo: None,
            verified: false,
            endpoint: None,
            model: None,
            tool: None,
            agent_strategy: None,
            datasource: None,
            trigger: None,
        }
    }
}

/// A manifest that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid JSON declaration: {0}")]
    Json(#[from] serde_json::Error),
}

impl PluginDeclaration {
    /// Decodes a JSON declaration (as stored by the daemon or sent by Dify) and applies the
    /// upstream defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut declaration: Self = serde_json::from_slice(bytes)?;
        declaration.fill_in_default_values();
        Ok(declaration)
    }

    /// The JSON form sent to Dify (defaults filled in, like the Go daemon's marshaller).
    pub fn to_json_value(&self) -> serde_json::Value {
        let mut copy = self.clone();
        copy.fill_in_default_values();
        serde_json::to_value(&copy).unwrap_or(serde_json::Value::Null)
    }

    /// `author/name:version` (or `name:version` without author).
    pub fn identity(&self) -> String {
        if self.author.is_empty() {
            format!("{}:{}", self.name, self.version)
        } else {
            format!("{}/{}:{}", self.author, self.name, self.version)
        }
    }

    /// `author/name`.
    pub fn plugin_id(&self) -> String {
        if self.author.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.author, self.name)
        }
    }

    /// The permissions block, or an empty one.
    pub fn permissions(&self) -> PluginPermissions {
        self.resource.permission.clone().unwrap_or_default()
    }

    /// Category, first match wins: tool → model → datasource → agent-strategy → trigger →
    /// extension.
    pub fn category(&self) -> PluginCategory {
        if self.tool.is_some() || !self.plugins.tools.is_empty() {
            PluginCategory::Tool
        } else if self.model.is_some() || !self.plugins.models.is_empty() {
            PluginCategory::Model
        } else if self.datasource.is_some() || !self.plugins.datasources.is_empty() {
            PluginCategory::Datasource
        } else if self.agent_strategy.is_some() || !self.plugins.agent_strategies.is_empty() {
            PluginCategory::AgentStrategy
        } else if self.trigger.is_some() || !self.plugins.triggers.is_empty() {
            PluginCategory::Trigger
        } else {
            PluginCategory::Extension
        }
    }

    /// Upstream `FillInDefaultValues`: tool/trigger identity description and tags default to the
    /// plugin's; the model provider description defaults to the plugin's.
    pub fn fill_in_default_values(&mut self) {
        if let Some(tool) = self.tool.as_mut() {
            if tool.identity.description.en_us.is_empty() {
                tool.identity.description = self.description.clone();
            }
            if tool.identity.tags.is_empty() {
                tool.identity.tags = self.tags.clone();
            }
        }
        if let Some(model) = self.model.as_mut() {
            if model.description.is_none() {
                model.description = Some(self.description.clone());
            }
        }
        if let Some(trigger) = self.trigger.as_mut() {
            if trigger.identity.description.en_us.is_empty() {
                trigger.identity.description = self.description.clone();
            }
            if trigger.identity.tags.is_empty() {
                trigger.identity.tags = self.tags.clone();
            }
        }
    }

    /// The daemon's `ManifestValidate` (upload, install, remote-debug registration). Returns
    /// every problem found.
    pub fn validate_for_daemon(&self) -> Result<(), Vec<Problem>> {
        validate::for_daemon(self)
    }

    /// The struct-tag validation `dify plugin package` runs on the manifest and the resolved
    /// provider declarations. Returns every problem found.
    pub fn validate_strict(&self) -> Result<(), Vec<Problem>> {
        validate::strict(self)
    }
}

#[cfg(test)]
mod tests;
