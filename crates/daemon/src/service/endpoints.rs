//! Endpoint management (docs/http.md §4.3): set up, list, update, enable, disable and remove a
//! plugin's endpoints for a tenant. Settings are validated against the plugin's endpoint settings
//! schema and encrypted/decrypted by the Dify API (`invoke/encrypt`), never by the daemon; secrets
//! are masked in every answer.

use dify_protocol::manifest::ProviderConfig;
use dify_protocol::{DaemonError, PluginDeclaration};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::{load_declaration, parse_identifier, ServiceResult};
use crate::service::state::AppState;
use crate::store::{new_row_id, render_timestamp, EndpointRecord, EndpointUpdate};

const HOOK_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh public hook id: 16 characters of `[a-z0-9]` from a cryptographic generator.
fn new_hook_id() -> String {
    let mut rng = rand::thread_rng();
    (0..16).map(|_| HOOK_ID_ALPHABET[rng.gen_range(0..HOOK_ID_ALPHABET.len())] as char).collect()
}

/// Masks a secret the way upstream does: longer than 6 characters keeps the first and last two.
pub fn mask_secret(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() > 6 {
        let mut out: String = chars[..2].iter().collect();
        out.push_str(&"*".repeat(chars.len() - 4));
        out.extend(&chars[chars.len() - 2..]);
        out
    } else {
        "*".repeat(chars.len())
    }
}

fn mask_settings(settings: &Map<String, Value>, schema: &[ProviderConfig]) -> Map<String, Value> {
    let mut out = settings.clone();
    for config in schema.iter().filter(|c| c.config_type == "secret-input") {
        if let Some(Value::String(s)) = out.get(&config.name) {
            let masked = mask_secret(s);
            out.insert(config.name.clone(), Value::String(masked));
        }
    }
    out
}

/// Checks settings against the endpoint settings schema; returns the settings with defaults.
pub fn validate_settings(schema: &[ProviderConfig], settings: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = settings.clone();
    for config in schema {
        let value = out.get(&config.name).cloned().filter(|v| !v.is_null());
        let value = match value {
            Some(v) => v,
            None if !config.default.is_null() => {
                out.insert(config.name.clone(), config.default.clone());
                continue;
            }
            None if config.required => return Err(format!("{} is required", config.name)),
            None => continue,
        };
        match config.config_type.as_str() {
            "secret-input" | "text-input" => {
                let Some(s) = value.as_str() else {
                    return Err(format!("{} must be a string", config.name));
                };
                if config.required && s.is_empty() {
                    return Err(format!("{} is required", config.name));
                }
            }
            "boolean" if !value.is_boolean() => {
                return Err(format!("{} must be a boolean", config.name));
            }
            "select" => {
                let Some(s) = value.as_str() else {
                    return Err(format!("{} must be a string", config.name));
                };
                if !config.options.is_empty() && !config.options.iter().any(|o| o.value == s) {
                    return Err(format!("{} must be one of the options", config.name));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The Dify API's `invoke/encrypt` for endpoint settings.
pub(crate) async fn dify_encrypt(
    state: &AppState,
    tenant_id: &str,
    user_id: &str,
    opt: &str,
    identity: &str,
    data: &Map<String, Value>,
    schema: &[ProviderConfig],
) -> Result<Map<String, Value>, String> {
    let url = format!("{}/inner/api/invoke/encrypt", state.settings.dify_inner_api_url.trim_end_matches('/'));
    let body = json!({
        "tenant_id": tenant_id,
        "user_id": user_id,
        "type": "encrypt",
        "opt": opt,
        "namespace": "endpoint",
        "identity": identity,
        "data": data,
        "config": schema,
    });
    let timeout = std::time::Duration::from_millis(
        state
            .settings
            .dify_backwards_invocation_read_timeout
            .max(state.settings.dify_backwards_invocation_write_timeout),
    );
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| e.to_string())?;
    let response = client
        .post(&url)
        .header("X-Inner-Api-Key", state.settings.dify_inner_api_key.clone().unwrap_or_default())
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("failed to call dify: {e}"))?;
    let status = response.status();
    let envelope: Value = response.json().await.map_err(|e| format!("invalid response from dify ({status}): {e}"))?;
    if let Some(error) = envelope.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return Err(error.to_string());
    }
    envelope
        .get("data")
        .and_then(|d| d.get("data"))
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| format!("unexpected response from dify ({status}): {envelope}"))
}

fn endpoint_declaration(declaration: Option<&PluginDeclaration>) -> Value {
    let (settings, endpoints) = match declaration.and_then(|d| d.endpoint.as_ref()) {
        Some(e) => (
            serde_json::to_value(&e.settings).unwrap_or_else(|_| json!([])),
            e.endpoints
                .iter()
                .map(|r| json!({"path": r.path, "method": r.method, "hidden": r.hidden}))
                .collect::<Vec<_>>(),
        ),
        None => (json!([]), Vec::new()),
    };
    json!({"settings": settings, "endpoints": endpoints})
}

fn endpoint_json(endpoint: &EndpointRecord, settings: Map<String, Value>, declaration: Value) -> Value {
    json!({
        "id": endpoint.id,
        "created_at": render_timestamp(&endpoint.created_at),
        "updated_at": render_timestamp(&endpoint.updated_at),
        "name": endpoint.name,
        "hook_id": endpoint.hook_id,
        "tenant_id": endpoint.tenant_id,
        "user_id": endpoint.user_id,
        "plugin_id": endpoint.plugin_id,
        "expired_at": endpoint.expired_at,
        "enabled": endpoint.enabled,
        "settings": settings,
        "declaration": declaration,
    })
}

fn stored_settings(endpoint: &EndpointRecord) -> Map<String, Value> {
    serde_json::from_str::<Value>(&endpoint.settings)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// The installed declaration of `plugin_id` in the tenant, if installed.
async fn installed_declaration(state: &AppState, tenant_id: &str, plugin_id: &str) -> ServiceResult<Option<PluginDeclaration>> {
    match state.db.installation_by_plugin_id(tenant_id, plugin_id).await? {
        Some(installation) => load_declaration(state, &installation.plugin_unique_identifier).await,
        None => Ok(None),
    }
}

/// `POST endpoint/setup`.
pub async fn setup(
    state: &AppState,
    tenant_id: &str,
    uid: &str,
    user_id: &str,
    name: &str,
    settings: Map<String, Value>,
) -> ServiceResult<bool> {
    let uid = parse_identifier(uid)?;
    let installation = state.db.installation_by_plugin_id(tenant_id, uid.plugin_id()).await?;
    if installation.as_ref().map(|i| i.plugin_unique_identifier.as_str()) != Some(uid.as_str()) {
        return Err(DaemonError::plugin_not_found());
    }
    let declaration = load_declaration(state, uid.as_str()).await?.ok_or_else(DaemonError::plugin_not_found)?;
    if !declaration.permissions().allows_endpoint() {
        return Err(DaemonError::permission_denied("permission denied, you need to enable endpoint access in plugin manifest"));
    }
    let Some(group) = declaration.endpoint.as_ref() else {
        return Err(DaemonError::bad_request("plugin does not have an endpoint"));
    };
    let settings =
        validate_settings(&group.settings, &settings).map_err(|e| DaemonError::bad_request(format!("failed to validate settings: {e}")))?;
    let id = new_row_id();
    let encrypted = dify_encrypt(state, tenant_id, user_id, "encrypt", &id, &settings, &group.settings)
        .await
        .map_err(|e| DaemonError::internal(format!("failed to encrypt settings: {e}")))?;
    let record = EndpointRecord {
        id,
        created_at: String::new(),
        updated_at: String::new(),
        name: name.to_string(),
        hook_id: new_hook_id(),
        tenant_id: tenant_id.to_string(),
        user_id: user_id.to_string(),
        plugin_id: uid.plugin_id().to_string(),
        expired_at: String::new(),
        enabled: true,
        settings: Value::Object(encrypted).to_string(),
    };
    state.db.create_endpoint(&record).await?;
    Ok(true)
}

/// `GET endpoint/list` (`plugin_id = None`) and `GET endpoint/list/plugin`.
pub async fn list(state: &AppState, tenant_id: &str, plugin_id: Option<&str>, page: i64, page_size: i64) -> ServiceResult<Value> {
    if let Some(plugin_id) = plugin_id {
        if state.db.installation_by_plugin_id(tenant_id, plugin_id).await?.is_none() {
            return Err(DaemonError::not_found("plugin not found"));
        }
    }
    let endpoints = state.db.list_endpoints(tenant_id, plugin_id, page, page_size).await?;
    let mut out = Vec::with_capacity(endpoints.len());
    for endpoint in &endpoints {
        let Some(declaration) = installed_declaration(state, tenant_id, &endpoint.plugin_id).await? else {
            out.push(endpoint_json(endpoint, Map::new(), endpoint_declaration(None)));
            continue;
        };
        let Some(group) = declaration.endpoint.as_ref() else {
            return Err(DaemonError::not_found("plugin does not have an endpoint"));
        };
        let decrypted =
            dify_encrypt(state, tenant_id, &endpoint.user_id, "decrypt", &endpoint.id, &stored_settings(endpoint), &group.settings)
                .await
                .map_err(|e| DaemonError::internal(format!("failed to decrypt settings: {e}")))?;
        out.push(endpoint_json(endpoint, mask_settings(&decrypted, &group.settings), endpoint_declaration(Some(&declaration))));
    }
    Ok(Value::Array(out))
}

/// `POST endpoint/update`.
pub async fn update(
    state: &AppState,
    tenant_id: &str,
    endpoint_id: &str,
    user_id: &str,
    name: &str,
    settings: Map<String, Value>,
) -> ServiceResult<bool> {
    let endpoint = state
        .db
        .endpoint(tenant_id, endpoint_id)
        .await?
        .ok_or_else(|| DaemonError::not_found("failed to find endpoint"))?;
    let declaration = installed_declaration(state, tenant_id, &endpoint.plugin_id)
        .await?
        .ok_or_else(|| DaemonError::not_found("failed to find plugin installation"))?;
    let Some(group) = declaration.endpoint.as_ref() else {
        return Err(DaemonError::not_found("failed to find plugin declaration of endpoint"));
    };
    let original = dify_encrypt(state, tenant_id, user_id, "decrypt", &endpoint.id, &stored_settings(&endpoint), &group.settings)
        .await
        .map_err(|e| DaemonError::internal(format!("failed to decrypt settings: {e}")))?;
    // A masked secret sent back unchanged keeps the stored secret.
    let mut settings = settings;
    for config in group.settings.iter().filter(|c| c.config_type == "secret-input") {
        if let (Some(Value::String(sent)), Some(Value::String(old))) = (settings.get(&config.name), original.get(&config.name)) {
            if *sent == mask_secret(old) {
                let old = old.clone();
                settings.insert(config.name.clone(), Value::String(old));
            }
        }
    }
    let settings =
        validate_settings(&group.settings, &settings).map_err(|e| DaemonError::bad_request(format!("failed to validate settings: {e}")))?;
    let encrypted = dify_encrypt(state, tenant_id, user_id, "encrypt", &endpoint.id, &settings, &group.settings)
        .await
        .map_err(|e| DaemonError::internal(format!("failed to encrypt settings: {e}")))?;
    let settings = Value::Object(encrypted).to_string();
    state.db.update_endpoint(&endpoint.id, &EndpointUpdate { name, user_id, settings: &settings }).await?;
    clear_credential_cache(state, tenant_id, &endpoint, &group.settings).await;
    Ok(true)
}

/// Asks Dify to drop its cached credentials of the endpoint (best effort).
async fn clear_credential_cache(state: &AppState, tenant_id: &str, endpoint: &EndpointRecord, schema: &[ProviderConfig]) {
    if let Err(e) = dify_encrypt(state, tenant_id, &endpoint.user_id, "clear", &endpoint.id, &Map::new(), schema).await {
        tracing::warn!(endpoint = %endpoint.id, error = %e, "could not clear Dify's endpoint credential cache");
    }
}

/// `POST endpoint/remove`.
pub async fn remove(state: &AppState, tenant_id: &str, endpoint_id: &str) -> ServiceResult<bool> {
    let Some(endpoint) = state.db.delete_endpoint(tenant_id, endpoint_id).await? else {
        return Err(DaemonError::internal("failed to remove endpoint: record not found"));
    };
    let schema = installed_declaration(state, tenant_id, &endpoint.plugin_id)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.endpoint.map(|e| e.settings))
        .unwrap_or_default();
    clear_credential_cache(state, tenant_id, &endpoint, &schema).await;
    Ok(true)
}

/// `POST endpoint/enable` and `POST endpoint/disable`.
pub async fn set_enabled(state: &AppState, tenant_id: &str, endpoint_id: &str, enabled: bool) -> ServiceResult<bool> {
    match state.db.set_endpoint_enabled(tenant_id, endpoint_id, enabled).await? {
        Some(()) => Ok(true),
        None => Err(DaemonError::not_found("endpoint not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_upstream() {
        assert_eq!(mask_secret("abcdefgh"), "ab****gh");
        assert_eq!(mask_secret("abcdef"), "******");
        assert_eq!(mask_secret(""), "");
    }

    #[test]
    fn hook_ids_are_16_lowercase_alphanumerics() {
        let id = new_hook_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| HOOK_ID_ALPHABET.contains(&b)));
        assert_ne!(id, new_hook_id());
    }

    #[test]
    fn settings_validation() {
        let schema: Vec<ProviderConfig> = serde_json::from_value(json!([
            {"name": "key", "type": "secret-input", "required": true, "label": {"en_US": "Key"}},
            {"name": "mode", "type": "select", "required": false, "options": [{"value": "a", "label": {"en_US": "A"}}], "label": {"en_US": "Mode"}},
            {"name": "on", "type": "boolean", "required": false, "default": true, "label": {"en_US": "On"}}
        ]))
        .unwrap();
        let ok = validate_settings(&schema, json!({"key": "x"}).as_object().unwrap()).unwrap();
        assert_eq!(ok["on"], json!(true));
        assert!(validate_settings(&schema, json!({}).as_object().unwrap()).is_err());
        assert!(validate_settings(&schema, json!({"key": "x", "mode": "b"}).as_object().unwrap()).is_err());
        assert!(validate_settings(&schema, json!({"key": 1}).as_object().unwrap()).is_err());
    }
}
