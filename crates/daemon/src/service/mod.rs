//! The management rules of the daemon: uploading and decoding packages, installing, upgrading and
//! uninstalling plugins with install tasks, listing plugins and providers, endpoints, debugging
//! keys, metrics.
//!
//! Services take an [`AppState`](state::AppState) and typed inputs and return typed values
//! or a [`DaemonError`] (which already carries the wire error type). They must not know about HTTP
//! (no status codes, no axum types) and must not build SQL (that is `store`).

pub mod admin;
pub mod capabilities;
pub mod cluster;
pub mod codec;
pub mod debugging;
pub mod endpoint_invoke;
pub mod endpoints;
pub mod extract;
pub mod install;
pub mod installation_cache;
pub mod invocation;
pub mod launch;
pub mod logs;
pub mod metrics;
pub mod packages;
pub mod plugins;
pub mod state;
pub mod status;
pub mod tasks;

use std::sync::Arc;

use dify_protocol::{DaemonError, PluginDeclaration, PluginUniqueIdentifier};
use serde_json::Value;

use crate::store::{InstallationRecord, RuntimeType, StoreError};
use state::AppState;

/// Result of a service call.
pub type ServiceResult<T> = Result<T, DaemonError>;

impl From<StoreError> for DaemonError {
    fn from(e: StoreError) -> Self {
        if let StoreError::InvalidTenantId { .. } = e {
            return DaemonError::bad_request(e.to_string());
        }
        tracing::error!(error = %e, "storage failure");
        DaemonError::internal(e.to_string())
    }
}

/// A tenant's installation as dispatch needs it: the version chosen by the tenant and its declaration.
#[derive(Debug, Clone)]
pub struct Installation {
    pub id: String,
    pub tenant_id: String,
    pub plugin_id: String,
    pub plugin_unique_identifier: PluginUniqueIdentifier,
    /// How the plugin runs; `None` when the stored text is not one the daemon knows.
    pub runtime_type: Option<RuntimeType>,
    pub source: String,
    pub meta: Value,
    /// The declaration of the installed version (absent only if its row was lost).
    pub declaration: Option<PluginDeclaration>,
}

/// Why [`find_installation`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FindInstallationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored identifier fails the identifier rules (`PluginUniqueIdentifierError`).
    #[error("{0}")]
    BadIdentifier(String),
}

/// The tenant's installation of `plugin_id` (`author/name`), if any. Used by dispatch: answered
/// from the [`InstallationCache`](installation_cache::InstallationCache) when it holds the key,
/// otherwise read from the database and remembered (misses are not remembered).
pub async fn find_installation(
    state: &AppState,
    tenant_id: &str,
    plugin_id: &str,
) -> Result<Option<Arc<Installation>>, FindInstallationError> {
    let cache = &state.installation_cache;
    if let Some(hit) = cache.get(tenant_id, plugin_id) {
        return Ok(Some(hit));
    }
    let generation = cache.generation();
    // Boxed: a miss is rare and the query's future large; inline it would grow every lookup's future.
    let Some(record) = Box::pin(state.db.installation_by_plugin_id(tenant_id, plugin_id)).await? else {
        return Ok(None);
    };
    let installation = Arc::new(installation_from_record(record)?);
    // Without its declaration the row is incomplete (a declaration written later would not
    // invalidate it), so only complete rows are remembered.
    if installation.declaration.is_some() {
        cache.insert(generation, installation.clone());
    }
    Ok(Some(installation))
}

fn installation_from_record(record: InstallationRecord) -> Result<Installation, FindInstallationError> {
    let uid =
        PluginUniqueIdentifier::parse(&record.plugin_unique_identifier).map_err(|e| FindInstallationError::BadIdentifier(e.to_string()))?;
    let declaration = record.declaration.as_deref().and_then(|d| PluginDeclaration::from_json(d.as_bytes()).ok());
    Ok(Installation {
        id: record.id,
        tenant_id: record.tenant_id,
        plugin_id: record.plugin_id,
        plugin_unique_identifier: uid,
        runtime_type: RuntimeType::parse(&record.runtime_type),
        source: record.source,
        meta: record.meta,
        declaration,
    })
}

/// Parses a client-supplied identifier; failures are `PluginUniqueIdentifierError` (-400).
pub fn parse_identifier(value: &str) -> ServiceResult<PluginUniqueIdentifier> {
    PluginUniqueIdentifier::parse(value).map_err(|e| DaemonError::unique_identifier(e.to_string()))
}

/// The blob key of an uploaded package.
pub fn package_key(state: &AppState, uid: &str) -> String {
    format!("{}/{}", state.settings.plugin_package_cache_path.trim_matches('/'), uid)
}

/// The blob key of an installed package: upstream's "installed bucket", which its local runtime launches
/// from and which marks a version as installed (docs/upstream-schema.md §7).
pub fn installed_key(state: &AppState, uid: &str) -> String {
    format!("{}/{}", state.settings.plugin_installed_path.trim_matches('/'), uid)
}

/// Copies a version's package into the installed bucket, as upstream does when a local plugin is
/// installed. Best effort: the daemon itself launches from the package cache.
pub async fn mark_installed(state: &AppState, uid: &str) {
    // Through a temporary file, so that an object store streams the copy both ways.
    let scratch = packages::uploads_dir(&state.settings).join(uuid::Uuid::now_v7().to_string());
    let copied = match state.blobs.get_to_file(&package_key(state, uid), &scratch).await {
        Ok(true) => state.blobs.put_file(&installed_key(state, uid), &scratch).await,
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&scratch).await;
    if let Err(error) = copied {
        tracing::warn!(%error, uid, "could not copy the package to the installed bucket");
    }
}

/// Removes a version from the installed bucket once no tenant has it, as upstream does.
pub async fn mark_uninstalled(state: &AppState, uid: &str) {
    if let Err(error) = state.blobs.delete(&installed_key(state, uid)).await {
        tracing::warn!(%error, uid, "could not remove the package from the installed bucket");
    }
}

/// The blob key of an asset.
pub fn asset_key(state: &AppState, asset_id: &str) -> String {
    format!("{}/{}", state.settings.plugin_media_cache_path.trim_matches('/'), asset_id)
}

/// Loads the declaration of an uploaded version: its `plugin_declarations` row, or, when the row is
/// gone (it goes with the version's last installation, as upstream's), the declaration decoded again
/// from the stored package, whose row is then written again.
pub async fn load_declaration(state: &AppState, uid: &str) -> ServiceResult<Option<PluginDeclaration>> {
    match load_declaration_row(state, uid).await? {
        Some(declaration) => Ok(Some(declaration)),
        None => packages::restore_declaration(state, uid).await,
    }
}

/// Loads the `plugin_declarations` row of a version (`None` when there is none).
pub(crate) async fn load_declaration_row(state: &AppState, uid: &str) -> ServiceResult<Option<PluginDeclaration>> {
    match state.db.declaration(uid).await? {
        Some(text) => PluginDeclaration::from_json(text.as_bytes())
            .map(Some)
            .map_err(|e| DaemonError::internal(format!("stored declaration of {uid} is unreadable: {e}"))),
        None => Ok(None),
    }
}

/// The declaration of a row, from its stored text; `None` when missing or unreadable.
pub fn stored_declaration(stored: Option<&str>) -> Option<PluginDeclaration> {
    stored.and_then(|d| PluginDeclaration::from_json(d.as_bytes()).ok())
}

/// The declaration JSON as sent to Dify, from its stored text (`{}` when there is none).
pub fn declaration_json(stored: Option<&str>) -> Value {
    stored_declaration(stored).map(|d| d.to_json_value()).unwrap_or_else(|| Value::Object(Default::default()))
}
