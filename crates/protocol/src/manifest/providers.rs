//! Provider declarations other than models: tools, endpoints, agent strategies, datasources and
//! triggers (with their events). Each provider file lists its members either inline or as paths
//! of further YAML files; the paths are kept in `#[serde(skip)]` fields for the package decoder
//! to resolve. This module never reads files.

use serde::{Deserialize, Serialize};

use super::common::{
    null_if_empty, opt_scalar_string, resolve_credentials, scalar_string, split_file_or_inline, string_vec, vec_or_null, ConfigListOrMap,
    FileOrInline, I18nObject, OAuthSchema, ParameterAutoGenerate, ParameterOption, ParameterTemplate, ProviderConfig,
};

/// Identity of a tool, agent-strategy or trigger provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolProviderIdentity {
    #[serde(deserialize_with = "scalar_string")]
    pub author: String,
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub description: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub icon: String,
    #[serde(deserialize_with = "scalar_string")]
    pub icon_dark: String,
    pub label: I18nObject,
    #[serde(deserialize_with = "string_vec")]
    pub tags: Vec<String>,
}

/// Identity of a single tool, strategy or event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolIdentity {
    #[serde(deserialize_with = "scalar_string")]
    pub author: String,
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
}

/// A tool parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolParameter {
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
    pub human_description: I18nObject,
    /// string, number, boolean, select, secret-input, file, files, app-selector, model-selector,
    /// any, dynamic-select, array, object, checkbox, date, date-range.
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub parameter_type: String,
    #[serde(deserialize_with = "opt_scalar_string")]
    pub scope: Option<String>,
    /// schema, form or llm.
    #[serde(deserialize_with = "scalar_string")]
    pub form: String,
    #[serde(deserialize_with = "scalar_string")]
    pub llm_description: String,
    pub required: bool,
    pub auto_generate: Option<ParameterAutoGenerate>,
    pub template: Option<ParameterTemplate>,
    pub default: serde_json::Value,
    pub min: Option<serde_json::Number>,
    pub max: Option<serde_json::Number>,
    pub multiple: bool,
    pub precision: Option<i64>,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub options: Vec<ParameterOption>,
}

/// `description: {human, llm}` of a tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolDescription {
    pub human: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub llm: String,
}

/// One tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolDeclaration {
    pub identity: ToolIdentity,
    pub description: ToolDescription,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub parameters: Vec<ToolParameter>,
    /// A JSON schema, kept verbatim.
    #[serde(skip_serializing_if = "is_empty_object")]
    pub output_schema: Option<serde_json::Value>,
    pub has_runtime_parameters: bool,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

pub(crate) fn is_empty_object(value: &Option<serde_json::Value>) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

/// A tool provider file (`plugins.tools` entry) with its tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawToolProvider")]
pub struct ToolProviderDeclaration {
    pub identity: ToolProviderIdentity,
    pub credentials_schema: Vec<ProviderConfig>,
    pub oauth_schema: Option<OAuthSchema>,
    pub tools: Vec<ToolDeclaration>,
    /// Paths of tool files listed in `tools:`, resolved by the package decoder.
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    #[serde(skip)]
    pub tool_files: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawToolProvider {
    identity: ToolProviderIdentity,
    credentials_schema: Option<ConfigListOrMap>,
    credentials_for_provider: Option<ConfigListOrMap>,
    oauth_schema: Option<OAuthSchema>,
    tools: Option<Vec<FileOrInline<ToolDeclaration>>>,
    extra: Option<serde_json::Value>,
}

impl TryFrom<RawToolProvider> for ToolProviderDeclaration {
    type Error = String;

    fn try_from(raw: RawToolProvider) -> Result<Self, Self::Error> {
        let (tools, tool_files) = split_file_or_inline(raw.tools);
        Ok(Self {
            identity: raw.identity,
            credentials_schema: resolve_credentials(raw.credentials_schema, raw.credentials_for_provider)?,
            oauth_schema: raw.oauth_schema,
            tools,
            tool_files,
            extra: raw.extra,
        })
    }
}

/// One endpoint route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointDeclaration {
    #[serde(deserialize_with = "scalar_string")]
    pub path: String,
    /// HEAD, GET, POST, PUT, DELETE or OPTIONS.
    #[serde(deserialize_with = "scalar_string")]
    pub method: String,
    pub hidden: bool,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// An endpoint group file (`plugins.endpoints` entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEndpointProvider")]
pub struct EndpointProviderDeclaration {
    #[serde(serialize_with = "null_if_empty")]
    pub settings: Vec<ProviderConfig>,
    #[serde(serialize_with = "null_if_empty")]
    pub endpoints: Vec<EndpointDeclaration>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    #[serde(skip)]
    pub endpoint_files: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEndpointProvider {
    #[serde(deserialize_with = "vec_or_null")]
    settings: Vec<ProviderConfig>,
    endpoints: Option<Vec<FileOrInline<EndpointDeclaration>>>,
    extra: Option<serde_json::Value>,
}

impl TryFrom<RawEndpointProvider> for EndpointProviderDeclaration {
    type Error = String;

    fn try_from(raw: RawEndpointProvider) -> Result<Self, Self::Error> {
        let (endpoints, endpoint_files) = split_file_or_inline(raw.endpoints);
        Ok(Self { settings: raw.settings, endpoints, endpoint_files, extra: raw.extra })
    }
}

/// A parameter of an agent strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStrategyParameter {
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
    pub help: I18nObject,
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub parameter_type: String,
    pub auto_generate: Option<ParameterAutoGenerate>,
    pub template: Option<ParameterTemplate>,
    #[serde(deserialize_with = "opt_scalar_string")]
    pub scope: Option<String>,
    pub required: bool,
    pub default: serde_json::Value,
    pub min: Option<serde_json::Number>,
    pub max: Option<serde_json::Number>,
    pub precision: Option<i64>,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub options: Vec<ParameterOption>,
}

/// One agent strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStrategyDeclaration {
    pub identity: ToolIdentity,
    pub description: I18nObject,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub parameters: Vec<AgentStrategyParameter>,
    pub output_schema: Option<serde_json::Value>,
    /// Always an array in JSON (upstream fills `[]`).
    #[serde(deserialize_with = "string_vec")]
    pub features: Vec<String>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// An agent strategy provider file (`plugins.agent_strategies` entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAgentStrategyProvider")]
pub struct AgentStrategyProviderDeclaration {
    pub identity: ToolProviderIdentity,
    pub strategies: Vec<AgentStrategyDeclaration>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    #[serde(skip)]
    pub strategy_files: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAgentStrategyProvider {
    identity: ToolProviderIdentity,
    strategies: Option<Vec<FileOrInline<AgentStrategyDeclaration>>>,
    extra: Option<serde_json::Value>,
}

impl TryFrom<RawAgentStrategyProvider> for AgentStrategyProviderDeclaration {
    type Error = String;

    fn try_from(raw: RawAgentStrategyProvider) -> Result<Self, Self::Error> {
        let (strategies, strategy_files) = split_file_or_inline(raw.strategies);
        Ok(Self { identity: raw.identity, strategies, strategy_files, extra: raw.extra })
    }
}

/// Identity of a single datasource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasourceIdentity {
    #[serde(deserialize_with = "scalar_string")]
    pub author: String,
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub icon: String,
}

/// A datasource parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasourceParameter {
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub parameter_type: String,
    #[serde(deserialize_with = "opt_scalar_string")]
    pub scope: Option<String>,
    pub required: bool,
    pub auto_generate: Option<ParameterAutoGenerate>,
    pub template: Option<ParameterTemplate>,
    pub default: serde_json::Value,
    pub min: Option<serde_json::Number>,
    pub max: Option<serde_json::Number>,
    pub precision: Option<i64>,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub options: Vec<ParameterOption>,
    pub description: I18nObject,
}

/// One datasource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasourceDeclaration {
    pub identity: DatasourceIdentity,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub parameters: Vec<DatasourceParameter>,
    pub description: I18nObject,
    #[serde(skip_serializing_if = "is_empty_object")]
    pub output_schema: Option<serde_json::Value>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// Identity of a datasource provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasourceProviderIdentity {
    #[serde(deserialize_with = "scalar_string")]
    pub author: String,
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub description: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub icon: String,
    pub label: I18nObject,
    /// Always an array in JSON.
    #[serde(deserialize_with = "string_vec")]
    pub tags: Vec<String>,
}

/// A datasource provider file (`plugins.datasources` entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawDatasourceProvider")]
pub struct DatasourceProviderDeclaration {
    pub identity: DatasourceProviderIdentity,
    pub credentials_schema: Vec<ProviderConfig>,
    pub oauth_schema: Option<OAuthSchema>,
    /// website_crawl, online_document or online_drive.
    pub provider_type: String,
    pub datasources: Vec<DatasourceDeclaration>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    #[serde(skip)]
    pub datasource_files: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDatasourceProvider {
    identity: DatasourceProviderIdentity,
    credentials_schema: Option<ConfigListOrMap>,
    oauth_schema: Option<OAuthSchema>,
    #[serde(deserialize_with = "scalar_string")]
    provider_type: String,
    datasources: Option<Vec<FileOrInline<DatasourceDeclaration>>>,
    extra: Option<serde_json::Value>,
}

impl TryFrom<RawDatasourceProvider> for DatasourceProviderDeclaration {
    type Error = String;

    fn try_from(raw: RawDatasourceProvider) -> Result<Self, Self::Error> {
        let (datasources, datasource_files) = split_file_or_inline(raw.datasources);
        Ok(Self {
            identity: raw.identity,
            credentials_schema: resolve_credentials(raw.credentials_schema, None)?,
            oauth_schema: raw.oauth_schema,
            provider_type: raw.provider_type,
            datasources,
            datasource_files,
            extra: raw.extra,
        })
    }
}

/// An option of a trigger event parameter (its value may be any scalar).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventParameterOption {
    pub label: I18nObject,
    pub value: serde_json::Value,
}

/// A parameter of a trigger event or subscription constructor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventParameter {
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    pub label: I18nObject,
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub parameter_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_generate: Option<ParameterAutoGenerate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<ParameterTemplate>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_scalar_string")]
    pub scope: Option<String>,
    pub required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub multiple: bool,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub default: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "vec_or_null")]
    pub options: Vec<EventParameterOption>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<I18nObject>,
}

/// One trigger event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventDeclaration {
    pub identity: ToolIdentity,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub parameters: Vec<EventParameter>,
    pub description: I18nObject,
    #[serde(skip_serializing_if = "is_empty_object")]
    pub output_schema: Option<serde_json::Value>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// How a trigger subscription is created by the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSubscriptionConstructor")]
pub struct SubscriptionConstructor {
    #[serde(deserialize_with = "vec_or_null")]
    pub parameters: Vec<EventParameter>,
    pub credentials_schema: Vec<ProviderConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_schema: Option<OAuthSchema>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSubscriptionConstructor {
    #[serde(deserialize_with = "vec_or_null")]
    parameters: Vec<EventParameter>,
    credentials_schema: Option<ConfigListOrMap>,
    oauth_schema: Option<OAuthSchema>,
}

impl TryFrom<RawSubscriptionConstructor> for SubscriptionConstructor {
    type Error = String;

    fn try_from(raw: RawSubscriptionConstructor) -> Result<Self, Self::Error> {
        Ok(Self {
            parameters: raw.parameters,
            credentials_schema: resolve_credentials(raw.credentials_schema, None)?,
            oauth_schema: raw.oauth_schema,
        })
    }
}

/// A trigger provider file (`plugins.triggers` entry) with its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTriggerProvider")]
pub struct TriggerProviderDeclaration {
    pub identity: ToolProviderIdentity,
    pub subscription_schema: Vec<ProviderConfig>,
    pub subscription_constructor: Option<SubscriptionConstructor>,
    pub events: Vec<EventDeclaration>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    #[serde(skip)]
    pub event_files: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTriggerProvider {
    identity: ToolProviderIdentity,
    subscription_schema: Option<ConfigListOrMap>,
    subscription_constructor: Option<SubscriptionConstructor>,
    events: Option<Vec<FileOrInline<EventDeclaration>>>,
    extra: Option<serde_json::Value>,
}

impl TryFrom<RawTriggerProvider> for TriggerProviderDeclaration {
    type Error = String;

    fn try_from(raw: RawTriggerProvider) -> Result<Self, Self::Error> {
        let (events, event_files) = split_file_or_inline(raw.events);
        Ok(Self {
            identity: raw.identity,
            subscription_schema: resolve_credentials(raw.subscription_schema, None)?,
            subscription_constructor: raw.subscription_constructor,
            events,
            event_files,
            extra: raw.extra,
        })
    }
}
