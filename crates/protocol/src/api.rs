//! Request bodies and `data` payloads of the daemon's management API (docs/http.md §4.2, §7) and
//! the tool message streamed by `dispatch/tool/invoke` (§6.3). The daemon renders its responses
//! through these types and the Rust client decodes them with the same types, so one definition
//! fixes the wire shape for both sides.
//!
//! Field order is the order the daemon emits (serde keeps declaration order), so it must not be
//! rearranged. Fields that carry values read back from stored rows (`plugin_unique_identifier` of
//! an installation, timestamps) stay plain strings: the daemon renders rows as stored, without
//! re-validating them. Identifiers that are validated on the way in or freshly derived from a
//! package are [`PluginUniqueIdentifier`]s. Declarations reuse [`PluginDeclaration`] and the
//! provider declarations of [`crate::manifest`].
//!
//! This module only describes shapes: no I/O, no routing, no business rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::{
    AgentStrategyProviderDeclaration, DatasourceProviderDeclaration, ModelProviderDeclaration, PluginMeta, ToolProviderDeclaration,
    TriggerProviderDeclaration,
};
use crate::{PluginDeclaration, PluginUniqueIdentifier};

// ------------------------------------------------------------------ packages

/// `data` of `install/upload/package` and `decode/from_identifier` (§7.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginDecodeResponse {
    pub unique_identifier: PluginUniqueIdentifier,
    pub manifest: PluginDeclaration,
    /// `null` when the package is unsigned (or its signature is not trusted).
    #[serde(default)]
    pub verification: Option<PluginVerification>,
}

/// Who signed a package: `authorized_category` is `langgenius`, `partner` or `community`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVerification {
    pub authorized_category: String,
}

/// One dependency of an uploaded bundle, `{type, value}` (§7.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum PluginBundleDependency {
    Github(GithubBundleDependency),
    Marketplace(MarketplaceBundleDependency),
    // Boxed: a declaration is much larger than the other variants.
    Package(Box<PackageBundleDependency>),
}

impl PluginBundleDependency {
    /// The `type` on the wire: `github`, `marketplace` or `package`.
    pub fn dependency_type(&self) -> &'static str {
        match self {
            PluginBundleDependency::Github(_) => "github",
            PluginBundleDependency::Marketplace(_) => "marketplace",
            PluginBundleDependency::Package(_) => "package",
        }
    }
}

/// A bundle dependency released on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubBundleDependency {
    /// `https://github.com/<repo>`.
    pub repo_address: String,
    /// `owner/name`.
    pub repo: String,
    pub release: String,
    /// The release asset (the `.difypkg` file name).
    pub packages: String,
}

/// A bundle dependency from the marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketplaceBundleDependency {
    pub organization: String,
    pub plugin: String,
    pub version: String,
}

/// A package embedded in the bundle; it has been stored like an uploaded package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageBundleDependency {
    pub unique_identifier: PluginUniqueIdentifier,
    pub manifest: PluginDeclaration,
}

/// `data` of `fetch/readme`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginReadmeResponse {
    pub content: String,
    /// The language actually returned (the requested one, else `en_US`, else any).
    #[serde(default)]
    pub language: String,
}

// ------------------------------------------------------------------ install and tasks

/// Body of `install/identifiers` (§7.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallPluginFromIdentifiersRequest {
    pub plugin_unique_identifiers: Vec<PluginUniqueIdentifier>,
    /// `marketplace`, `github`, `package` or `remote`.
    pub source: String,
    /// One meta object per identifier.
    #[serde(default)]
    pub metas: Vec<Value>,
}

/// Body of `install/upgrade` (§7.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradePluginRequest {
    pub original_plugin_unique_identifier: PluginUniqueIdentifier,
    pub new_plugin_unique_identifier: PluginUniqueIdentifier,
    pub source: String,
    #[serde(default)]
    pub meta: Value,
}

/// Body of `uninstall` (§7.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UninstallPluginRequest {
    /// The installation row id (`installation_id` of a [`PluginEntity`]).
    pub plugin_installation_id: String,
}

/// `data` of `install/identifiers` and `install/upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallTaskStartResponse {
    /// True when nothing had to be installed; `task_id` is then empty.
    pub all_installed: bool,
    pub task_id: String,
}

/// Status of an install task or of one plugin in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
        matches!(self, PluginInstallTaskStatus::Success | PluginInstallTaskStatus::Failed)
    }
}

impl fmt::Display for PluginInstallTaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status text that is not one of `pending`, `running`, `success`, `failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown install task status `{0}`")]
pub struct UnknownTaskStatus(pub String);

impl FromStr for PluginInstallTaskStatus {
    type Err = UnknownTaskStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "pending" => Ok(PluginInstallTaskStatus::Pending),
            "running" => Ok(PluginInstallTaskStatus::Running),
            "success" => Ok(PluginInstallTaskStatus::Success),
            "failed" => Ok(PluginInstallTaskStatus::Failed),
            other => Err(UnknownTaskStatus(other.to_string())),
        }
    }
}

/// One plugin of an install task (§7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInstallTaskPluginStatus {
    pub plugin_unique_identifier: String,
    /// The declaration's `label` with all four languages present (`""` when unknown, e.g. upgrades).
    #[serde(default)]
    pub labels: Value,
    /// Asset id of the icon.
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub icon_dark: String,
    pub plugin_id: String,
    pub status: PluginInstallTaskStatus,
    /// Progress text while running, `installed`/`upgraded` on success, the failure otherwise.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub source: String,
}

/// An install task (§7.4).
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

// ------------------------------------------------------------------ installations

/// Declarations of installation rows: `None` when the daemon no longer has the declaration of the
/// installed version, which it renders as `{}`.
mod declaration_or_empty {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    use crate::PluginDeclaration;

    pub fn serialize<S: Serializer>(value: &Option<PluginDeclaration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(declaration) => declaration.serialize(serializer),
            None => Map::new().serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PluginDeclaration>, D::Error> {
        match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) if map.is_empty() => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(D::Error::custom),
        }
    }
}

/// One installed plugin as `list` and `/:category/list` return it (§7.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEntity {
    /// The installation row id.
    pub id: String,
    /// `declaration.name`.
    #[serde(default)]
    pub name: String,
    pub plugin_id: String,
    pub tenant_id: String,
    pub plugin_unique_identifier: String,
    #[serde(default)]
    pub endpoints_active: i64,
    #[serde(default)]
    pub endpoints_setups: i64,
    /// Same as `id`.
    pub installation_id: String,
    #[serde(default, with = "declaration_or_empty")]
    pub declaration: Option<PluginDeclaration>,
    /// `local`, `remote` or `serverless`.
    #[serde(default)]
    pub runtime_type: String,
    /// `declaration.version`.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    /// `marketplace`, `github`, `package` or `remote`.
    #[serde(default)]
    pub source: String,
    /// The part of the identifier after `@`.
    #[serde(default)]
    pub checksum: String,
    #[serde(default)]
    pub meta: Value,
}

/// `data` of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginListResponse {
    pub list: Vec<PluginEntity>,
    /// Installations of the tenant (all pages).
    pub total: i64,
}

/// `data` of `/:category/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginListByCategoryResponse {
    pub list: Vec<PluginEntity>,
    pub has_more: bool,
}

/// `data` of `installation/ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInstallationIdsResponse {
    pub plugin_ids: Vec<String>,
}

/// Body of `installation/fetch/batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFetchPluginInstallationsRequest {
    /// `author/name` plugin ids.
    pub plugin_ids: Vec<String>,
}

/// An installation row as `installation/fetch/batch` returns it (§7.8).
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
    /// The version part of the identifier.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default, with = "declaration_or_empty")]
    pub declaration: Option<PluginDeclaration>,
}

/// Body of `installation/missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchMissingPluginInstallationsRequest {
    pub plugin_unique_identifiers: Vec<PluginUniqueIdentifier>,
}

/// One entry of `installation/missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPluginDependency {
    /// The requested identifier.
    pub plugin_unique_identifier: PluginUniqueIdentifier,
    /// Empty when no version is installed; the installed identifier otherwise.
    #[serde(default)]
    pub current_identifier: String,
}

// ------------------------------------------------------------------ providers

/// One provider row as `management/{tools,models,agent_strategies,datasources,triggers}` and the
/// single-provider lookups return it; `D` is the provider declaration of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginProviderEntity<D> {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub tenant_id: String,
    /// The provider name inside the plugin (Dify prefixes it with `plugin_id/` itself).
    pub provider: String,
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
    pub declaration: D,
    /// The plugin's `meta`; agent strategy providers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<PluginMeta>,
}

pub type PluginToolProviderEntity = PluginProviderEntity<ToolProviderDeclaration>;
pub type PluginModelProviderEntity = PluginProviderEntity<ModelProviderDeclaration>;
pub type PluginAgentStrategyProviderEntity = PluginProviderEntity<AgentStrategyProviderDeclaration>;
pub type PluginDatasourceProviderEntity = PluginProviderEntity<DatasourceProviderDeclaration>;
pub type PluginTriggerProviderEntity = PluginProviderEntity<TriggerProviderDeclaration>;

/// `{plugin_id, provider_name}` of `tools/check_existence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolProviderRef {
    pub plugin_id: String,
    pub provider_name: String,
}

/// Body of `tools/check_existence`; the answer is one bool per entry, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckToolExistenceRequest {
    pub provider_ids: Vec<ToolProviderRef>,
}

/// One entry of `models/bindings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginModelBinding {
    pub provider: String,
    pub installation_id: String,
    pub plugin_id: String,
    pub plugin_unique_identifier: String,
    pub runtime_type: String,
    pub source: String,
    pub version: String,
    pub verified: bool,
}

// ------------------------------------------------------------------ tool invocation

/// One streamed tool message `{type, message, meta}` (§6.3). `message` and `meta` are whatever the
/// plugin sent; the daemon passes them through untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInvokeMessage {
    /// `text`, `file`, `blob`, `blob_chunk`, `json`, `link`, `image`, `image_link`, `binary_link`,
    /// `variable`, `log` or `retriever_resources`.
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
            "text" | "link" | "image" | "image_link" | "binary_link" => self.message.get("text")?.as_str(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UID: &str = "langgenius/openai:0.0.19@0123456789abcdef0123456789abcdef";

    /// A declaration as the daemon renders it (defaults filled in).
    fn declaration_value() -> Value {
        let source = json!({
            "version": "0.0.1", "type": "plugin", "author": "langgenius", "name": "openai",
            "label": {"en_US": "OpenAI"}, "description": {"en_US": "Models"},
            "icon": "icon.svg", "icon_dark": "", "created_at": "2025-01-02T03:04:05Z", "tags": [],
            "resource": {"memory": 268435456},
            "plugins": {"tools": ["provider/echo.yaml"]},
            "meta": {"version": "0.0.1", "arch": ["amd64"], "runner": {"language": "python", "version": "3.12", "entrypoint": "main"}},
        });
        PluginDeclaration::from_json(source.to_string().as_bytes()).unwrap().to_json_value()
    }

    /// Decodes `literal`, checks the decoded value, and re-encodes it to exactly `literal`.
    fn round_trip<T>(literal: &str) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let decoded: T = serde_json::from_str(literal).unwrap();
        assert_eq!(serde_json::to_string(&decoded).unwrap(), literal);
        decoded
    }

    fn keys(value: &impl Serialize) -> Vec<String> {
        serde_json::to_value(value).unwrap().as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn install_task_matches_the_spec_example() {
        // §7.4, with the placeholders filled in.
        let literal = r#"{"id":"0193d6a1-0000-7000-8000-000000000001","created_at":"2025-01-02T03:04:05.123456Z","updated_at":"2025-01-02T03:04:06Z","status":"running","tenant_id":"tenant-1","total_plugins":2,"completed_plugins":1,"plugins":[{"plugin_unique_identifier":"author/name:1.0.0@0123456789abcdef0123456789abcdef","labels":{"en_US":"Name","zh_Hans":"","ja_JP":"","pt_BR":""},"icon":"abc.svg","icon_dark":"","plugin_id":"author/name","status":"success","message":"installed","source":"marketplace"},{"plugin_unique_identifier":"author/other:1.0.0@0123456789abcdef0123456789abcdef","labels":{"en_US":"","zh_Hans":"","ja_JP":"","pt_BR":""},"icon":"","icon_dark":"","plugin_id":"author/other","status":"failed","message":"boom","source":"package"}]}"#;
        let task: PluginInstallTask = round_trip(literal);
        assert_eq!(task.status, PluginInstallTaskStatus::Running);
        assert!(!task.status.is_finished());
        assert_eq!(task.plugins[0].status, PluginInstallTaskStatus::Success);
        assert_eq!(task.plugins[1].status, PluginInstallTaskStatus::Failed);
        assert!(task.plugins[1].status.is_finished());
        assert_eq!(task.plugins[0].labels["en_US"], "Name");
    }

    #[test]
    fn task_status_text() {
        for status in [
            PluginInstallTaskStatus::Pending,
            PluginInstallTaskStatus::Running,
            PluginInstallTaskStatus::Success,
            PluginInstallTaskStatus::Failed,
        ] {
            assert_eq!(status.as_str().parse::<PluginInstallTaskStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), json!(status.to_string()));
        }
        assert_eq!("done".parse::<PluginInstallTaskStatus>(), Err(UnknownTaskStatus("done".into())));
        assert!(serde_json::from_str::<PluginInstallTaskStatus>(r#""SUCCESS""#).is_err());
    }

    #[test]
    fn install_start_responses() {
        let started: PluginInstallTaskStartResponse =
            round_trip(r#"{"all_installed":false,"task_id":"0193d6a1-0000-7000-8000-000000000001"}"#);
        assert!(!started.all_installed);
        let nothing: PluginInstallTaskStartResponse = round_trip(r#"{"all_installed":true,"task_id":""}"#);
        assert_eq!(nothing, PluginInstallTaskStartResponse { all_installed: true, task_id: String::new() });
    }

    #[test]
    fn plugin_entity_field_order_and_round_trip() {
        let entity = json!({
            "id": "inst-1", "name": "openai", "plugin_id": "langgenius/openai", "tenant_id": "tenant-1",
            "plugin_unique_identifier": UID, "endpoints_active": 0, "endpoints_setups": 1, "installation_id": "inst-1",
            "declaration": declaration_value(), "runtime_type": "local", "version": "0.0.1",
            "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z", "source": "marketplace",
            "checksum": "0123456789abcdef0123456789abcdef", "meta": {"plugin_unique_identifier": UID},
        });
        let literal = format!(r#"{{"list":[{entity}],"total":7}}"#);
        let list: PluginListResponse = round_trip(&literal);
        assert_eq!(list.total, 7);
        let first = &list.list[0];
        assert_eq!(first.declaration.as_ref().unwrap().name, "openai");
        assert_eq!(
            keys(first),
            [
                "id",
                "name",
                "plugin_id",
                "tenant_id",
                "plugin_unique_identifier",
                "endpoints_active",
                "endpoints_setups",
                "installation_id",
                "declaration",
                "runtime_type",
                "version",
                "created_at",
                "updated_at",
                "source",
                "checksum",
                "meta"
            ]
        );
        let by_category: PluginListByCategoryResponse = round_trip(&format!(r#"{{"list":[{entity}],"has_more":false}}"#));
        assert_eq!(&by_category.list[0], first);
    }

    #[test]
    fn a_lost_declaration_is_an_empty_object() {
        let literal = format!(
            r#"{{"id":"i","created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z","tenant_id":"t","plugin_id":"langgenius/openai","plugin_unique_identifier":"{UID}","runtime_type":"local","endpoints_setups":0,"endpoints_active":0,"source":"package","meta":{{}},"version":"0.0.19","checksum":"0123456789abcdef0123456789abcdef","declaration":{{}}}}"#
        );
        let installation: PluginInstallation = round_trip(&literal);
        assert_eq!(installation.declaration, None);
        let with_null: PluginInstallation = serde_json::from_str(&literal.replace(r#""declaration":{}"#, r#""declaration":null"#)).unwrap();
        assert_eq!(with_null, installation);
    }

    #[test]
    fn installation_batch_item_field_order() {
        let item = json!({
            "id": "i", "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z", "tenant_id": "t",
            "plugin_id": "langgenius/openai", "plugin_unique_identifier": UID, "runtime_type": "local",
            "endpoints_setups": 0, "endpoints_active": 0, "source": "package", "meta": {}, "version": "0.0.19",
            "checksum": "0123456789abcdef0123456789abcdef", "declaration": declaration_value(),
        });
        let items: Vec<PluginInstallation> = round_trip(&format!("[{item}]"));
        assert_eq!(items[0].version, "0.0.19");
        assert_eq!(serde_json::to_value(&items[0]).unwrap(), item);
    }

    #[test]
    fn decode_response_matches_the_spec_example() {
        // §7.1: `verification` is an object when signed and null when not.
        let manifest = declaration_value();
        let signed =
            format!(r#"{{"unique_identifier":"{UID}","manifest":{manifest},"verification":{{"authorized_category":"langgenius"}}}}"#);
        let decoded: PluginDecodeResponse = round_trip(&signed);
        assert_eq!(decoded.unique_identifier.plugin_id(), "langgenius/openai");
        assert_eq!(decoded.verification.unwrap().authorized_category, "langgenius");
        let unsigned: PluginDecodeResponse =
            round_trip(&format!(r#"{{"unique_identifier":"{UID}","manifest":{manifest},"verification":null}}"#));
        assert_eq!(unsigned.verification, None);
        let bad = format!(r#"{{"unique_identifier":"not an identifier","manifest":{manifest},"verification":null}}"#);
        assert!(serde_json::from_str::<PluginDecodeResponse>(&bad).is_err());
    }

    #[test]
    fn bundle_dependencies_match_the_spec() {
        // §7.2, one item of each type.
        let manifest = declaration_value();
        let literal = format!(
            r#"[{{"type":"github","value":{{"repo_address":"https://github.com/acme/p","repo":"acme/p","release":"1.0.0","packages":"p.difypkg"}}}},{{"type":"marketplace","value":{{"organization":"langgenius","plugin":"openai","version":"0.0.19"}}}},{{"type":"package","value":{{"unique_identifier":"{UID}","manifest":{manifest}}}}}]"#
        );
        let dependencies: Vec<PluginBundleDependency> = round_trip(&literal);
        let types: Vec<&str> = dependencies.iter().map(PluginBundleDependency::dependency_type).collect();
        assert_eq!(types, ["github", "marketplace", "package"]);
        match &dependencies[1] {
            PluginBundleDependency::Marketplace(m) => assert_eq!((m.plugin.as_str(), m.version.as_str()), ("openai", "0.0.19")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(serde_json::from_str::<PluginBundleDependency>(r#"{"type":"ftp","value":{}}"#).is_err());
    }

    #[test]
    fn request_bodies() {
        let install: InstallPluginFromIdentifiersRequest = round_trip(&format!(
            r#"{{"plugin_unique_identifiers":["{UID}"],"source":"marketplace","metas":[{{"plugin_unique_identifier":"{UID}"}}]}}"#
        ));
        assert_eq!(install.plugin_unique_identifiers[0].as_str(), UID);
        assert!(serde_json::from_str::<InstallPluginFromIdentifiersRequest>(
            r#"{"plugin_unique_identifiers":["Bad/Id"],"source":"package","metas":[{}]}"#
        )
        .is_err());
        let upgrade: UpgradePluginRequest = round_trip(&format!(
            r#"{{"original_plugin_unique_identifier":"{UID}","new_plugin_unique_identifier":"langgenius/openai:0.0.20@0123456789abcdef0123456789abcdef","source":"package","meta":{{}}}}"#
        ));
        assert_eq!(upgrade.new_plugin_unique_identifier.version(), "0.0.20");
        let uninstall: UninstallPluginRequest = round_trip(r#"{"plugin_installation_id":"inst-1"}"#);
        assert_eq!(uninstall.plugin_installation_id, "inst-1");
        let missing: FetchMissingPluginInstallationsRequest = round_trip(&format!(r#"{{"plugin_unique_identifiers":["{UID}"]}}"#));
        assert_eq!(missing.plugin_unique_identifiers.len(), 1);
        let batch: BatchFetchPluginInstallationsRequest = round_trip(r#"{"plugin_ids":["langgenius/openai"]}"#);
        assert_eq!(batch.plugin_ids, ["langgenius/openai"]);
        let exist: CheckToolExistenceRequest =
            round_trip(r#"{"provider_ids":[{"plugin_id":"langgenius/google","provider_name":"google"}]}"#);
        assert_eq!(exist.provider_ids[0].provider_name, "google");
    }

    #[test]
    fn missing_dependencies_and_small_payloads() {
        let missing: Vec<MissingPluginDependency> = round_trip(&format!(
            r#"[{{"plugin_unique_identifier":"langgenius/openai:0.0.20@0123456789abcdef0123456789abcdef","current_identifier":"{UID}"}},{{"plugin_unique_identifier":"a/b:1.0.0@0123456789abcdef0123456789abcdef","current_identifier":""}}]"#
        ));
        assert_eq!(missing[0].current_identifier, UID);
        assert_eq!(missing[1].current_identifier, "");
        let readme: PluginReadmeResponse = round_trip(r##"{"content":"# Hi","language":"en_US"}"##);
        assert_eq!(readme.language, "en_US");
        let ids: PluginInstallationIdsResponse = round_trip(r#"{"plugin_ids":["langgenius/openai"]}"#);
        assert_eq!(ids.plugin_ids.len(), 1);
        let binding: PluginModelBinding = round_trip(&format!(
            r#"{{"provider":"openai","installation_id":"i","plugin_id":"langgenius/openai","plugin_unique_identifier":"{UID}","runtime_type":"local","source":"marketplace","version":"0.0.19","verified":true}}"#
        ));
        assert!(binding.verified);
    }

    #[test]
    fn provider_entities() {
        let full: PluginDeclaration = serde_json::from_value(declaration_value()).unwrap();
        let tool = json!({
            "identity": {"author": "langgenius", "name": "google", "label": {"en_US": "Google"}, "description": {"en_US": "Search"}, "icon": "i.svg", "tags": []},
            "credentials_schema": [], "tools": [],
        });
        let tool: ToolProviderDeclaration = serde_json::from_value(tool).unwrap();
        let tool_json = serde_json::to_string(&tool).unwrap();
        let literal = format!(
            r#"{{"id":"p","created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z","tenant_id":"t","provider":"google","plugin_unique_identifier":"{UID}","plugin_id":"langgenius/google","declaration":{tool_json}}}"#
        );
        let entity: PluginToolProviderEntity = round_trip(&literal);
        assert_eq!(entity.declaration.identity.name, "google");
        assert_eq!(entity.meta, None);
        // Agent strategy providers also carry the plugin's meta, after the declaration.
        let meta = serde_json::to_string(&full.meta).unwrap();
        let with_meta = format!(
            r#"{{"id":"p","created_at":"","updated_at":"","tenant_id":"t","provider":"agent","plugin_unique_identifier":"{UID}","plugin_id":"langgenius/agent","declaration":{{"any":"shape"}},"meta":{meta}}}"#
        );
        let entity: PluginProviderEntity<Value> = round_trip(&with_meta);
        assert_eq!(entity.meta.unwrap().version, "0.0.1");
    }

    #[test]
    fn tool_messages_match_the_spec_stream() {
        // §6.3 example chunks, byte for byte.
        let text: ToolInvokeMessage = round_trip(r#"{"type":"text","message":{"text":"hello"},"meta":null}"#);
        assert_eq!(text.text(), Some("hello"));
        let json_message: ToolInvokeMessage = round_trip(r#"{"type":"json","message":{"json_object":{"a":1}},"meta":null}"#);
        assert_eq!(json_message.text(), None);
        let blob: ToolInvokeMessage = round_trip(r#"{"type":"blob","message":{"blob":"aGk="},"meta":{"mime_type":"text/plain"}}"#);
        assert_eq!(blob.meta.unwrap()["mime_type"], "text/plain");
        let bare: ToolInvokeMessage = serde_json::from_str(r#"{"type":"link","message":{"text":"https://x"}}"#).unwrap();
        assert_eq!(bare.text(), Some("https://x"));
        assert_eq!(bare.meta, None);
    }
}
