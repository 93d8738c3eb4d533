//! Response and request shapes of the management and dispatch routes that `dify-protocol` does not
//! define (yet). Names follow Dify's Python entities (`core/plugin/entities/plugin_daemon.py`,
//! `plugin.py`, `bundle.py`, `tool_entities.py`).
//!
//! Every type here belongs in `dify-protocol` (the daemon serialises the same shapes); it lives
//! here only until it lands there. Declarations themselves (`PluginDeclaration`,
//! `ToolProviderDeclaration`) are reused from `dify-protocol`, never redefined. No I/O here.

use std::fmt;

use dify_protocol::manifest::ToolProviderDeclaration;
use dify_protocol::PluginDeclaration;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Belongs in `dify-protocol`. `data` of `install/upload/package` and `decode/from_identifier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginDecodeResponse {
    pub unique_identifier: String,
    pub manifest: PluginDeclaration,
    #[serde(default)]
    pub verification: Option<PluginVerification>,
}

/// Belongs in `dify-protocol`. Who signed a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVerification {
    pub authorized_category: String,
}

/// Belongs in `dify-protocol`. One dependency of an uploaded bundle: `type` is `github`,
/// `marketplace` or `package`; `value` depends on it (http-api.md §7.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginBundleDependency {
    #[serde(rename = "type")]
    pub dependency_type: String,
    pub value: Value,
}

/// Belongs in `dify-protocol`. `data` of `install/identifiers` and `install/upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallTaskStartResponse {
    pub all_installed: bool,
    pub task_id: String,
}

/// Belongs in `dify-protocol`. Status of an install task or of one plugin in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginInstallTaskStatus {
    Pending,
    Running,
    Success,
    Failed,
}

impl PluginInstallTaskStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginInstallTaskStatus::Pending => "pending",
            PluginInstallTaskStatus::Running => "running",
            PluginInstallTaskStatus::Success => "success",
            PluginInstallTaskStatus::Failed => "failed",
        }
    }

    /// `success` or `failed`: the task will not change any more.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            PluginInstallTaskStatus::Success | PluginInstallTaskStatus::Failed
        )
    }
}

impl fmt::Display for PluginInstallTaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Belongs in `dify-protocol`. One plugin of an install task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInstallTaskPluginStatus {
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
    pub status: PluginInstallTaskStatus,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub icon_dark: String,
    #[serde(default)]
    pub labels: Value,
    #[serde(default)]
    pub source: String,
}

/// Belongs in `dify-protocol`. An install task (http-api.md §7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInstallTask {
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    pub status: PluginInstallTaskStatus,
    #[serde(default)]
    pub tenant_id: String,
    pub total_plugins: i64,
    pub completed_plugins: i64,
    #[serde(default)]
    pub plugins: Vec<PluginInstallTaskPluginStatus>,
}

/// Belongs in `dify-protocol`. An installation row as `installation/fetch/batch` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInstallation {
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    pub tenant_id: String,
    pub plugin_id: String,
    pub plugin_unique_identifier: String,
    #[serde(default)]
    pub runtime_type: String,
    #[serde(default)]
    pub endpoints_setups: i64,
    #[serde(default)]
    pub endpoints_active: i64,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub meta: Value,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub checksum: String,
    pub declaration: PluginDeclaration,
}

/// Belongs in `dify-protocol`. One installed plugin as `list` returns it (http-api.md §7.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEntity {
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    pub name: String,
    pub plugin_id: String,
    pub tenant_id: String,
    pub plugin_unique_identifier: String,
    #[serde(default)]
    pub endpoints_active: i64,
    #[serde(default)]
    pub endpoints_setups: i64,
    pub installation_id: String,
    pub declaration: PluginDeclaration,
    #[serde(default)]
    pub runtime_type: String,
    pub version: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default)]
    pub meta: Value,
}

/// Belongs in `dify-protocol`. `data` of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginListResponse {
    pub list: Vec<PluginEntity>,
    pub total: i64,
}

/// Belongs in `dify-protocol`. `data` of `fetch/readme`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginReadmeResponse {
    pub content: String,
    #[serde(default)]
    pub language: String,
}

/// Belongs in `dify-protocol`. One entry of `installation/missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPluginDependency {
    pub plugin_unique_identifier: String,
    /// Empty when no version is installed; the installed identifier otherwise.
    #[serde(default)]
    pub current_identifier: String,
}

/// Belongs in `dify-protocol`. One tool provider as `management/tools` and `management/tool`
/// return it. After [`crate::PluginDaemonClient::fetch_tool_providers`] the declaration's
/// `identity.name` is `plugin_id/provider` as Dify names it; `provider` keeps the bare name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginToolProviderEntity {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub tenant_id: String,
    pub provider: String,
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
    pub declaration: ToolProviderDeclaration,
}

/// Belongs in `dify-protocol`. `{plugin_id, provider_name}` of `tools/check_existence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolProviderRef {
    pub plugin_id: String,
    pub provider_name: String,
}

/// Belongs in `dify-protocol`. One streamed tool message `{type, message, meta}` (http-api.md §6.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInvokeMessage {
    #[serde(rename = "type")]
    pub message_type: String,
    #[serde(default)]
    pub message: Value,
    #[serde(default)]
    pub meta: Option<Map<String, Value>>,
}

impl ToolInvokeMessage {
    /// The human-readable text of `text`, `link` and image-link messages.
    pub fn text(&self) -> Option<&str> {
        match self.message_type.as_str() {
            "text" | "link" | "image" | "image_link" | "binary_link" => {
                self.message.get("text")?.as_str()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_decodes_spec_example() {
        let task: PluginInstallTask = serde_json::from_value(json!({
            "id": "t", "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z",
            "status": "running", "tenant_id": "x", "total_plugins": 2, "completed_plugins": 1,
            "plugins": [{"plugin_unique_identifier": "a/b:1.0.0@0123456789abcdef0123456789abcdef",
                "labels": {"en_US": "B"}, "icon": "", "icon_dark": "", "plugin_id": "a/b",
                "status": "failed", "message": "boom", "source": "package"}]
        }))
        .unwrap();
        assert_eq!(task.status, PluginInstallTaskStatus::Running);
        assert!(!task.status.is_finished());
        assert_eq!(task.plugins[0].status, PluginInstallTaskStatus::Failed);
    }

    #[test]
    fn text_of_messages() {
        let text: ToolInvokeMessage = serde_json::from_value(
            json!({"type": "text", "message": {"text": "hi"}, "meta": null}),
        )
        .unwrap();
        assert_eq!(text.text(), Some("hi"));
        let json_message: ToolInvokeMessage =
            serde_json::from_value(json!({"type": "json", "message": {"json_object": {}}}))
                .unwrap();
        assert_eq!(json_message.text(), None);
    }
}
