//! Read-side of installations: plugin lists (paged, by category, by ids), missing-dependency checks
//! and provider lists/lookups (tools, models, agent strategies, datasources, triggers).

use dify_protocol::api::{
    MissingPluginDependency, PluginEntity, PluginInstallation, PluginInstallationIdsResponse, PluginListByCategoryResponse,
    PluginListResponse, PluginModelBinding, PluginProviderEntity,
};
use dify_protocol::{DaemonError, PluginDeclaration};
use serde_json::Value;

use super::{declaration_json, stored_declaration, ServiceResult};
use crate::service::state::AppState;
use crate::store::{render_timestamp, InstallationRecord, ProviderKind, ProviderRecord};

/// Categories accepted by `installation/ids` and `/:category/list`.
pub const CATEGORIES: [&str; 6] = ["tool", "model", "extension", "agent-strategy", "datasource", "trigger"];

fn version_and_checksum(uid: &str) -> (String, String) {
    let after_colon = uid.split_once(':').map(|(_, r)| r).unwrap_or("");
    match after_colon.split_once('@') {
        Some((v, c)) => (v.to_string(), c.to_string()),
        None => (after_colon.to_string(), String::new()),
    }
}

/// A `PluginEntity` of the list routes: name and version come from the declaration (the version
/// from the identifier when the declaration is gone).
pub fn plugin_entity(record: &InstallationRecord) -> PluginEntity {
    let declaration = stored_declaration(record.declaration.as_deref());
    let (version, checksum) = version_and_checksum(&record.plugin_unique_identifier);
    PluginEntity {
        id: record.id.clone(),
        name: declaration.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
        plugin_id: record.plugin_id.clone(),
        tenant_id: record.tenant_id.clone(),
        plugin_unique_identifier: record.plugin_unique_identifier.clone(),
        endpoints_active: record.endpoints_active,
        endpoints_setups: record.endpoints_setups,
        installation_id: record.id.clone(),
        version: declaration.as_ref().map(|d| d.version.clone()).unwrap_or(version),
        declaration,
        runtime_type: record.runtime_type.clone(),
        created_at: render_timestamp(&record.created_at),
        updated_at: render_timestamp(&record.updated_at),
        source: record.source.clone(),
        checksum,
        meta: record.meta.clone(),
    }
}

/// An item of `installation/fetch/batch`: the installation row plus version, checksum, declaration.
pub fn installation_item(record: &InstallationRecord) -> PluginInstallation {
    let (version, checksum) = version_and_checksum(&record.plugin_unique_identifier);
    PluginInstallation {
        id: record.id.clone(),
        created_at: render_timestamp(&record.created_at),
        updated_at: render_timestamp(&record.updated_at),
        tenant_id: record.tenant_id.clone(),
        plugin_id: record.plugin_id.clone(),
        plugin_unique_identifier: record.plugin_unique_identifier.clone(),
        runtime_type: record.runtime_type.clone(),
        endpoints_setups: record.endpoints_setups,
        endpoints_active: record.endpoints_active,
        source: record.source.clone(),
        meta: record.meta.clone(),
        version,
        checksum,
        declaration: stored_declaration(record.declaration.as_deref()),
    }
}

fn category_of(record: &InstallationRecord) -> Option<&'static str> {
    let declaration = PluginDeclaration::from_json(record.declaration.as_deref()?.as_bytes()).ok()?;
    Some(declaration.category().as_str())
}

/// `GET list`.
pub async fn list(state: &AppState, tenant_id: &str, page: i64, page_size: i64) -> ServiceResult<PluginListResponse> {
    let (records, total) = state.db.list_installations(tenant_id, page, page_size).await?;
    Ok(PluginListResponse { list: records.iter().map(plugin_entity).collect(), total })
}

/// Filters of `/:category/list`.
pub struct CategoryFilter<'a> {
    pub category: &'a str,
    pub query: Option<&'a str>,
    pub tags: &'a [String],
}

fn matches_query(declaration: &Value, plugin_id: &str, query: &str) -> bool {
    let needle = query.to_lowercase();
    let mut haystack = vec![plugin_id.to_lowercase()];
    if let Some(name) = declaration.get("name").and_then(Value::as_str) {
        haystack.push(name.to_lowercase());
    }
    for field in ["label", "description"] {
        if let Some(map) = declaration.get(field).and_then(Value::as_object) {
            haystack.extend(map.values().filter_map(Value::as_str).map(str::to_lowercase));
        }
    }
    haystack.iter().any(|h| h.contains(&needle))
}

/// `GET /:category/list`: `{list, has_more}`.
pub async fn list_by_category(
    state: &AppState,
    tenant_id: &str,
    filter: CategoryFilter<'_>,
    page: i64,
    page_size: i64,
) -> ServiceResult<PluginListByCategoryResponse> {
    if !CATEGORIES.contains(&filter.category) {
        return Err(DaemonError::bad_request(format!("invalid category: {}", filter.category)));
    }
    let records = state.db.all_installations(tenant_id).await?;
    let mut matching = Vec::new();
    for record in &records {
        if category_of(record) != Some(filter.category) {
            continue;
        }
        let declaration = declaration_json(record.declaration.as_deref());
        if let Some(q) = filter.query.filter(|q| !q.is_empty()) {
            if !matches_query(&declaration, &record.plugin_id, q) {
                continue;
            }
        }
        if !filter.tags.is_empty() {
            let tags: Vec<&str> = declaration
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !filter.tags.iter().any(|t| tags.contains(&t.as_str())) {
                continue;
            }
        }
        matching.push(record);
    }
    let start = ((page.max(1) - 1) * page_size) as usize;
    let end = (start + page_size as usize).min(matching.len());
    let list: Vec<PluginEntity> =
        if start < matching.len() { matching[start..end].iter().map(|r| plugin_entity(r)).collect() } else { Vec::new() };
    Ok(PluginListByCategoryResponse { list, has_more: end < matching.len() })
}

/// `GET installation/ids`.
pub async fn installation_ids(state: &AppState, tenant_id: &str, category: &str) -> ServiceResult<PluginInstallationIdsResponse> {
    if !CATEGORIES.contains(&category) {
        return Err(DaemonError::bad_request(format!("invalid category: {category}")));
    }
    let mut ids: Vec<String> = Vec::new();
    for record in state.db.all_installations(tenant_id).await? {
        if category_of(&record) == Some(category) && !ids.contains(&record.plugin_id) {
            ids.push(record.plugin_id.clone());
        }
    }
    Ok(PluginInstallationIdsResponse { plugin_ids: ids })
}

/// `POST installation/fetch/batch`.
pub async fn fetch_batch(state: &AppState, tenant_id: &str, plugin_ids: &[String]) -> ServiceResult<Vec<PluginInstallation>> {
    let mut out = Vec::new();
    for record in state.db.all_installations(tenant_id).await? {
        if plugin_ids.contains(&record.plugin_id) {
            out.push(installation_item(&record));
            if out.len() >= 256 {
                break;
            }
        }
    }
    Ok(out)
}

/// `POST installation/missing`.
pub async fn missing(state: &AppState, tenant_id: &str, identifiers: &[String]) -> ServiceResult<Vec<MissingPluginDependency>> {
    let mut out = Vec::new();
    for raw in identifiers {
        let uid = super::parse_identifier(raw)?;
        let current_identifier = match state.db.installation_by_plugin_id(tenant_id, uid.plugin_id()).await? {
            None => String::new(),
            Some(i) if i.plugin_unique_identifier != uid.as_str() => i.plugin_unique_identifier,
            Some(_) => continue,
        };
        out.push(MissingPluginDependency { plugin_unique_identifier: uid, current_identifier });
    }
    Ok(out)
}

/// A provider row with its provider declaration (as JSON: the declaration type depends on the
/// kind). Agent strategy providers also carry the plugin's `meta`.
fn provider_item(kind: ProviderKind, record: &ProviderRecord) -> ServiceResult<PluginProviderEntity<Value>> {
    let missing = || DaemonError::internal(format!("declaration of {} has no {}", record.plugin_unique_identifier, kind.as_str()));
    let full = stored_declaration(record.declaration.as_deref()).ok_or_else(missing)?;
    let declaration = full.to_json_value().get(kind.declaration_field()).cloned().filter(|v| !v.is_null());
    Ok(PluginProviderEntity {
        id: record.id.clone(),
        created_at: render_timestamp(&record.created_at),
        updated_at: render_timestamp(&record.updated_at),
        tenant_id: record.tenant_id.clone(),
        provider: record.provider.clone(),
        plugin_unique_identifier: record.plugin_unique_identifier.clone(),
        plugin_id: record.plugin_id.clone(),
        declaration: declaration.ok_or_else(missing)?,
        meta: (kind == ProviderKind::AgentStrategy).then(|| full.meta.clone()),
    })
}

/// `GET tools|models|agent_strategies|datasources|triggers`.
pub async fn list_providers(
    state: &AppState,
    kind: ProviderKind,
    tenant_id: &str,
    page: i64,
    page_size: i64,
) -> ServiceResult<Vec<PluginProviderEntity<Value>>> {
    let records = state.db.list_providers(kind, tenant_id, page, page_size).await?;
    records.iter().map(|r| provider_item(kind, r)).collect()
}

/// `GET tool|agent_strategy|datasource|trigger`: the provider `provider` of plugin `plugin_id`.
pub async fn get_provider(
    state: &AppState,
    kind: ProviderKind,
    tenant_id: &str,
    plugin_id: &str,
    provider: &str,
) -> ServiceResult<PluginProviderEntity<Value>> {
    let Some(record) = state.db.provider(kind, tenant_id, plugin_id).await? else {
        return Err(if kind == ProviderKind::Datasource {
            DaemonError::internal("record not found")
        } else {
            DaemonError::plugin_not_found()
        });
    };
    if record.provider != provider {
        return Err(DaemonError::plugin_not_found());
    }
    provider_item(kind, &record)
}

/// `POST tools/check_existence`: one bool per `{plugin_id, provider_name}`, in order.
pub async fn tools_exist(state: &AppState, tenant_id: &str, ids: &[(String, String)]) -> ServiceResult<Vec<bool>> {
    let mut out = Vec::with_capacity(ids.len());
    for (plugin_id, provider) in ids {
        let exists = state.db.provider(ProviderKind::Tool, tenant_id, plugin_id).await?.is_some_and(|r| &r.provider == provider);
        out.push(exists);
    }
    Ok(out)
}

/// `GET models/bindings`.
pub async fn model_bindings(state: &AppState, tenant_id: &str) -> ServiceResult<Vec<PluginModelBinding>> {
    let records = state.db.list_providers(ProviderKind::Model, tenant_id, 1, i64::from(i32::MAX)).await?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in records {
        if !seen.insert((record.plugin_id.clone(), record.provider.clone())) {
            continue;
        }
        let installation = state.db.installation_by_plugin_id(tenant_id, &record.plugin_id).await?;
        let (version, _) = version_and_checksum(&record.plugin_unique_identifier);
        let verified = stored_declaration(record.declaration.as_deref()).is_some_and(|d| d.verified);
        out.push(PluginModelBinding {
            installation_id: installation.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            runtime_type: installation.as_ref().map(|i| i.runtime_type.clone()).unwrap_or_default(),
            source: installation.as_ref().map(|i| i.source.clone()).unwrap_or_default(),
            provider: record.provider,
            plugin_id: record.plugin_id,
            plugin_unique_identifier: record.plugin_unique_identifier,
            version,
            verified,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UID: &str = "acme/echo:0.0.3@0123456789abcdef0123456789abcdef";

    fn record(declaration: Option<String>) -> InstallationRecord {
        InstallationRecord {
            id: "inst-1".into(),
            created_at: "2025-01-02T03:04:05.120000000Z".into(),
            updated_at: "2025-01-02T03:04:05.000000000Z".into(),
            tenant_id: "t1".into(),
            plugin_id: "acme/echo".into(),
            plugin_unique_identifier: UID.into(),
            runtime_type: "local".into(),
            endpoints_setups: 2,
            endpoints_active: 1,
            source: "package".into(),
            meta: json!({"k": "v"}),
            declaration,
        }
    }

    fn stored() -> String {
        json!({"version": "0.0.3", "type": "plugin", "author": "acme", "name": "echo", "label": {"en_US": "Echo"},
               "created_at": "2025-01-02T03:04:05Z", "meta": {"version": "0.0.1"}})
        .to_string()
    }

    #[test]
    fn plugin_entity_renders_the_list_shape() {
        let entity = serde_json::to_value(plugin_entity(&record(Some(stored())))).unwrap();
        let keys: Vec<&str> = entity.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
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
        assert_eq!(entity["name"], "echo");
        assert_eq!(entity["installation_id"], "inst-1");
        assert_eq!(entity["checksum"], "0123456789abcdef0123456789abcdef");
        assert_eq!(entity["created_at"], "2025-01-02T03:04:05.12Z");
        assert_eq!(entity["updated_at"], "2025-01-02T03:04:05Z");
        assert_eq!(entity["declaration"], declaration_json(Some(&stored())));
    }

    #[test]
    fn a_lost_declaration_renders_as_an_empty_object() {
        let entity = serde_json::to_value(plugin_entity(&record(None))).unwrap();
        assert_eq!(entity["declaration"], json!({}));
        assert_eq!(entity["name"], "");
        assert_eq!(entity["version"], "0.0.3", "the version falls back to the identifier's");
        let unreadable = serde_json::to_value(installation_item(&record(Some("not json".into())))).unwrap();
        assert_eq!(unreadable["declaration"], json!({}));
        assert_eq!(unreadable["version"], "0.0.3");
        let keys: Vec<&str> = unreadable.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "created_at",
                "updated_at",
                "tenant_id",
                "plugin_id",
                "plugin_unique_identifier",
                "runtime_type",
                "endpoints_setups",
                "endpoints_active",
                "source",
                "meta",
                "version",
                "checksum",
                "declaration"
            ]
        );
    }

    #[test]
    fn providers_carry_meta_only_for_agent_strategies() {
        let mut declaration: Value = serde_json::from_str(&stored()).unwrap();
        declaration["agent_strategy"] = json!({"identity": {"author": "acme", "name": "ag", "label": {"en_US": "Ag"}}});
        let row = ProviderRecord {
            id: "p".into(),
            created_at: "2025-01-02T03:04:05Z".into(),
            updated_at: "2025-01-02T03:04:05Z".into(),
            tenant_id: "t1".into(),
            provider: "ag".into(),
            plugin_unique_identifier: UID.into(),
            plugin_id: "acme/echo".into(),
            declaration: Some(declaration.to_string()),
        };
        let item = serde_json::to_value(provider_item(ProviderKind::AgentStrategy, &row).unwrap()).unwrap();
        let full = declaration_json(row.declaration.as_deref());
        assert_eq!(item["declaration"], full["agent_strategy"]);
        assert_eq!(item["meta"], full["meta"]);
        let keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.last(), Some(&"meta"));
        // The same row read as a tool provider has no tool declaration: an internal error.
        let error = provider_item(ProviderKind::Tool, &row).unwrap_err();
        assert_eq!(error.message, format!("declaration of {UID} has no tool"));
    }
}
