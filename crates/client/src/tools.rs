//! Tool discovery and invocation, named as Dify's `PluginToolManager` names them.
//!
//! Owns the Dify-side transformations of tool provider lists (provider renamed to
//! `plugin_id/provider`, `$ref`s in output schemas expanded), parameter casting against the tool's
//! declaration before dispatch, and the `dispatch/tool/invoke` request. It must not print or
//! merge output; callers consume the stream.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Map, Value};

use crate::blob_merge::merge_blob_chunks;
use crate::error::ClientError;
use crate::parameters::{cast_tool_parameters, ParameterRule};
use crate::provider_id::ToolProviderId;
use crate::schema_refs::{resolve_tool_output_schemas, SchemaRegistry};
use crate::transport::{ItemStream, PluginDaemonClient};
use crate::wire::{CheckToolExistenceRequest, PluginToolProviderEntity, ToolInvokeMessage, ToolProviderRef};

/// Everything `dispatch/tool/invoke` carries besides the tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInvocation {
    pub user_id: String,
    /// `author/plugin/provider`.
    pub tool_provider: String,
    pub tool_name: String,
    pub credentials: Map<String, Value>,
    /// `api-key`, `oauth2` or `unauthorized`.
    pub credential_type: String,
    pub tool_parameters: Map<String, Value>,
    pub conversation_id: Option<String>,
    pub app_id: Option<String>,
    pub message_id: Option<String>,
}

impl ToolInvocation {
    pub fn new(user_id: &str, tool_provider: &str, tool_name: &str) -> Self {
        ToolInvocation {
            user_id: user_id.to_string(),
            tool_provider: tool_provider.to_string(),
            tool_name: tool_name.to_string(),
            credentials: Map::new(),
            credential_type: "api-key".to_string(),
            tool_parameters: Map::new(),
            conversation_id: None,
            app_id: None,
            message_id: None,
        }
    }
}

fn tenant_path(tenant_id: &str, route: &str) -> Result<String, ClientError> {
    if tenant_id.is_empty() || tenant_id.contains(['/', '?', '#']) {
        return Err(ClientError::Validation(format!("invalid tenant id `{tenant_id}`")));
    }
    Ok(format!("plugin/{tenant_id}/{route}"))
}

/// Applies Dify's provider transformer to one raw provider object and decodes it.
fn transform_provider(mut raw: Value, registry: &SchemaRegistry, url: &str) -> Result<PluginToolProviderEntity, ClientError> {
    let plugin_id = raw.get("plugin_id").and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(Value::Object(declaration)) = raw.get_mut("declaration") {
        resolve_tool_output_schemas(declaration, registry);
        if let Some(Value::Object(identity)) = declaration.get_mut("identity") {
            if let Some(Value::String(name)) = identity.get_mut("name") {
                *name = format!("{plugin_id}/{name}");
            }
        }
    }
    serde_json::from_value(raw)
        .map_err(|err| ClientError::MalformedResponse { url: url.to_string(), message: format!("unexpected tool provider shape: {err}") })
}

impl PluginDaemonClient {
    /// Every tool provider of the tenant, named `plugin_id/provider`, with `$ref`s expanded.
    pub async fn fetch_tool_providers(&self, tenant_id: &str) -> Result<Vec<PluginToolProviderEntity>, ClientError> {
        let path = tenant_path(tenant_id, "management/tools")?;
        let raw: Vec<Value> = self.get(&path, &[("page", "1".to_string()), ("page_size", "256".to_string())]).await?;
        let registry = SchemaRegistry::builtin();
        let url = self.url(&path);
        raw.into_iter().map(|provider| transform_provider(provider, &registry, &url)).collect()
    }

    /// One tool provider by `author/plugin/provider` (or a bare builtin name).
    pub async fn fetch_tool_provider(&self, tenant_id: &str, provider: &str) -> Result<PluginToolProviderEntity, ClientError> {
        let id = ToolProviderId::parse(provider)?;
        let path = tenant_path(tenant_id, "management/tool")?;
        let query = [("provider", id.provider_name.clone()), ("plugin_id", id.plugin_id())];
        let raw: Value = self.get(&path, &query).await?;
        transform_provider(raw, &SchemaRegistry::builtin(), &self.url(&path))
    }

    /// Whether each `{plugin_id, provider_name}` exists, in input order.
    pub async fn check_tools_existence(&self, tenant_id: &str, provider_ids: &[ToolProviderRef]) -> Result<Vec<bool>, ClientError> {
        let path = tenant_path(tenant_id, "management/tools/check_existence")?;
        let body = CheckToolExistenceRequest { provider_ids: provider_ids.to_vec() };
        self.post_json(&path, &body, HeaderMap::new()).await
    }

    /// Invokes a tool: fetches its declaration, casts `tool_parameters` by it (a validation error
    /// is returned before the invocation is sent), then streams the tool's messages.
    pub async fn invoke(
        &self,
        tenant_id: &str,
        user_id: &str,
        tool_provider: &str,
        tool_name: &str,
        credentials: Map<String, Value>,
        tool_parameters: Map<String, Value>,
    ) -> Result<ItemStream<ToolInvokeMessage>, ClientError> {
        let mut invocation = ToolInvocation::new(user_id, tool_provider, tool_name);
        invocation.credentials = credentials;
        invocation.tool_parameters = tool_parameters;
        self.invoke_tool(tenant_id, invocation).await
    }

    /// [`Self::invoke`] with every field of the request.
    pub async fn invoke_tool(&self, tenant_id: &str, mut invocation: ToolInvocation) -> Result<ItemStream<ToolInvokeMessage>, ClientError> {
        ToolProviderId::parse(&invocation.tool_provider)?;
        let provider = self.fetch_tool_provider(tenant_id, &invocation.tool_provider).await?;
        let tool = provider.declaration.tools.iter().find(|tool| tool.identity.name == invocation.tool_name).ok_or_else(|| {
            let known: Vec<&str> = provider.declaration.tools.iter().map(|t| t.identity.name.as_str()).collect();
            ClientError::Validation(format!(
                "provider `{}` has no tool `{}` (tools: {})",
                invocation.tool_provider,
                invocation.tool_name,
                known.join(", ")
            ))
        })?;
        let rules: Vec<ParameterRule> = tool
            .parameters
            .iter()
            .filter_map(|parameter| serde_json::to_value(parameter).ok())
            .filter_map(|parameter| ParameterRule::from_declaration(&parameter))
            .collect();
        invocation.tool_parameters = cast_tool_parameters(&rules, &invocation.tool_parameters)?;
        self.invoke_tool_unchecked(tenant_id, &invocation).await
    }

    /// Sends `dispatch/tool/invoke` as given, without fetching the declaration or casting.
    /// Like Dify, `blob_chunk` messages are merged into one `blob` message per file.
    pub async fn invoke_tool_unchecked(
        &self,
        tenant_id: &str,
        invocation: &ToolInvocation,
    ) -> Result<ItemStream<ToolInvokeMessage>, ClientError> {
        let id = ToolProviderId::parse(&invocation.tool_provider)?;
        let path = tenant_path(tenant_id, "dispatch/tool/invoke")?;
        let body = json!({
            "user_id": invocation.user_id,
            "conversation_id": invocation.conversation_id,
            "app_id": invocation.app_id,
            "message_id": invocation.message_id,
            "data": {
                "provider": id.provider_name,
                "tool": invocation.tool_name,
                "credentials": invocation.credentials,
                "credential_type": invocation.credential_type,
                "tool_parameters": invocation.tool_parameters,
            }
        });
        let mut headers = HeaderMap::new();
        let plugin_id = HeaderValue::from_str(&id.plugin_id())
            .map_err(|_| ClientError::Validation(format!("invalid plugin id `{}`", id.plugin_id())))?;
        headers.insert("X-Plugin-ID", plugin_id);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(merge_blob_chunks(self.post_stream(&path, &body, headers).await?))
    }
}
