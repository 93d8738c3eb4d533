//! The daemon's routes outside Dify's own client: direct invocation by unique identifier
//! (`/v2/invoke/dispatch/<route>`, `/v2/invoke/extract`) and the admin API for serverless plugins
//! (`/admin/plugin/serverless/reinstall`, `/switch-endpoint`, behind `X-Admin-Api-Key`).
//!
//! Owns the headers and bodies of those routes. The tenant of a `/v2` call travels in the body.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::ClientError;
use crate::transport::{ItemStream, PluginDaemonClient};

/// Header names in lowercase, as `HeaderName::from_static` needs them.
const IDENTIFIER_HEADER: &str = "x-plugin-unique-identifier";
const ADMIN_KEY_HEADER: &str = "x-admin-api-key";

/// One event of a serverless reinstall: `info` (progress), `done` or `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReinstallEvent {
    pub event: String,
    pub data: String,
}

/// Who a `/v2` invocation runs for; the body of `/v2/invoke/dispatch/<route>` besides `data`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectCaller {
    /// Required by the daemon.
    pub tenant_id: String,
    pub user_id: String,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub app_id: Option<String>,
    pub endpoint_id: Option<String>,
}

impl DirectCaller {
    pub fn new(tenant_id: &str, user_id: &str) -> Self {
        DirectCaller { tenant_id: tenant_id.to_string(), user_id: user_id.to_string(), ..Default::default() }
    }

    fn body(&self, data: Map<String, Value>) -> Value {
        json!({"tenant_id": self.tenant_id, "user_id": self.user_id, "conversation_id": self.conversation_id,
               "message_id": self.message_id, "app_id": self.app_id, "endpoint_id": self.endpoint_id, "data": data})
    }
}

fn header(name: &'static str, value: &str) -> Result<HeaderMap, ClientError> {
    let value = HeaderValue::from_str(value).map_err(|_| ClientError::Validation(format!("{name} cannot carry {value:?}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(name), value);
    Ok(headers)
}

impl PluginDaemonClient {
    /// `POST /v2/invoke/dispatch<route>` (route as in the tenant dispatch API, e.g. `/tool/invoke`):
    /// invokes the plugin version named by `plugin_unique_identifier` for `caller`, whatever tenant
    /// installed it. Yields the `data` of each streamed envelope; a plugin error ends the stream.
    pub async fn invoke_v2(
        &self,
        plugin_unique_identifier: &str,
        route: &str,
        caller: &DirectCaller,
        data: Map<String, Value>,
    ) -> Result<ItemStream<Value>, ClientError> {
        let route = format!("/{}", route.trim_start_matches('/'));
        let headers = header(IDENTIFIER_HEADER, plugin_unique_identifier)?;
        self.post_stream(&format!("v2/invoke/dispatch{route}"), &caller.body(data), headers).await
    }

    /// `GET /v2/invoke/extract`: `{unique_identifier, manifest, verification}` decoded from the
    /// version's stored package.
    pub async fn extract_v2(&self, plugin_unique_identifier: &str) -> Result<Value, ClientError> {
        let headers = header(IDENTIFIER_HEADER, plugin_unique_identifier)?;
        self.get_with_headers("v2/invoke/extract", &[], headers).await
    }

    /// `POST /admin/plugin/serverless/reinstall`: launches the version at the serverless connector
    /// again; yields its events until `done` or `error`.
    pub async fn admin_reinstall_serverless(
        &self,
        admin_api_key: &str,
        plugin_unique_identifier: &str,
    ) -> Result<ItemStream<ReinstallEvent>, ClientError> {
        let headers = header(ADMIN_KEY_HEADER, admin_api_key)?;
        let body = json!({"plugin_unique_identifier": plugin_unique_identifier});
        self.post_stream("admin/plugin/serverless/reinstall", &body, headers).await
    }

    /// `POST /admin/plugin/serverless/switch-endpoint`: points the version at another function.
    pub async fn admin_switch_serverless_endpoint(
        &self,
        admin_api_key: &str,
        plugin_unique_identifier: &str,
        function_name: &str,
        function_url: &str,
    ) -> Result<bool, ClientError> {
        let headers = header(ADMIN_KEY_HEADER, admin_api_key)?;
        let body = json!({"plugin_unique_identifier": plugin_unique_identifier, "function_name": function_name,
                          "function_url": function_url});
        self.post_json("admin/plugin/serverless/switch-endpoint", &body, headers).await
    }
}
