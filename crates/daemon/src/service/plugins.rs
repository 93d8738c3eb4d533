//! Read-side of installations: plugin lists (paged, by category, by ids), missing-dependency checks
//! and provider lists/lookups (tools, models, agent strategies, datasources, triggers).

use dify_protocol::api::{
    MissingPluginDependency, PluginEntity, PluginInstallation, PluginInstallationIdsResponse,
    PluginListByCategoryResponse, PluginListResponse, PluginModelBinding, PluginProviderEntity,
};
use dify_protocol::{DaemonError, PluginDeclaration};
use serde_json::Value;

use super::{declaration_json, stored_declaration, ServiceResult};
use crate::server::AppState;
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
    let list: Vec<PluginEntity> = if start < matching.len() {
        matching[start..end].iter().map(|r| plugin_entity(r)).collect()
    } else {
        Vec::new()
    };
    Ok(PluginListByCategoryResponse { list, has_more: end < matching.len() })
}

/// `GET installation/ids`.
pub async fn installation_ids(
    state: &AppState,
    tenant_id: &str,
    category: &str,
) -> ServiceResult<PluginInstallationIdsResponse> {
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
pub async fn fetch_batch(
    state: &AppState,
    tenant_id: &str,
    plugin_ids: &[String],
) -> ServiceResult<Vec<PluginInstallation>> {
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
pub async fn missing(
    state: &AppState,
    tenant_id: &str,
    identifiers: &[String],
) -> ServiceResult<Vec<MissingPluginDependency>> {
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
    let missing = || {
        DaemonError::internal(format!("declaration of {} has no {}", record.plugin_unique_identifier, kind.as_str()))
    };
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
        let exists = state
            .db
            .provider(ProviderKind::Tool, tenant_id, plugin_id)
            .await?
            .is_some_and(|r| &r.provider == provider);
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
