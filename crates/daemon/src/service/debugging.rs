//! Remote debugging: the per-tenant debugging keys (stored in the database with an expiry that every
//! request pushes forward, so any node can resolve a key to its tenant), and the installation side
//! of debugging plugins: [`DebugInstaller`] is the [`DebugRegistry`] the debug TCP server
//! (`runtime::debug`) calls to resolve keys and to make a connected plugin appear as installed for
//! its tenant (assets, declaration, installation and provider rows, runtime type `remote`) and to
//! remove it again when it disconnects. The TCP protocol itself is not part of this module.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::install::providers_of;
use super::packages::{asset_id, remap_icon_fields};
use super::{asset_key, ServiceResult};
use crate::runtime::{DebugRegistry, DebugServer, DebugServerConfig, RegisteredPlugin};
use crate::server::AppState;
use crate::store::InstallOutcome;

/// Runtime type and source of debugging installations.
pub const REMOTE: &str = "remote";

/// `POST debugging/key`: `{key}` (reused while alive).
pub async fn key(state: &AppState, tenant_id: &str) -> ServiceResult<Value> {
    let ttl = state.settings.debugging_key_ttl.min(i64::MAX as u64) as i64;
    let key = state.db.debugging_key(tenant_id, ttl).await?;
    Ok(json!({"key": key}))
}

/// Starts the remote debugging server when `PLUGIN_REMOTE_INSTALLING_ENABLED`. A port that cannot
/// be bound is logged and leaves the daemon running without remote debugging (as upstream does).
pub async fn start_debug_server(state: &AppState) -> Option<DebugServer> {
    let settings = &state.settings;
    if !settings.plugin_remote_installing_enabled {
        return None;
    }
    let config = DebugServerConfig {
        host: settings.plugin_remote_installing_host.clone(),
        port: settings.plugin_remote_installing_port,
        max_connections: settings.plugin_remote_installing_max_conn.max(1),
        handshake_timeout: Duration::from_secs(settings.plugin_remote_installing_handshake_timeout.max(1)),
        registration_timeout: Duration::from_secs(settings.plugin_remote_installing_heartbeat_timeout.max(1)),
        heartbeat_timeout: Duration::from_secs(settings.plugin_remote_installing_heartbeat_timeout.max(1)),
        max_line_bytes: state.runtime.config().max_line_bytes,
        ..DebugServerConfig::default()
    };
    let registry = Arc::new(DebugInstaller::new(state.clone()));
    match DebugServer::start(config, state.runtime.clone(), registry).await {
        Ok(server) => {
            let address = server.local_addr();
            state.runtime.set_debug_server_address(Some(address));
            tracing::info!(%address, "remote debugging server listening");
            eprintln!("remote debugging server listening on {address}");
            Some(server)
        }
        Err(error) => {
            tracing::error!(%error, "remote debugging is unavailable");
            eprintln!("remote debugging is unavailable: {error}");
            None
        }
    }
}

/// Installs and uninstalls debugging plugins for their tenants. Changes are serialised so a
/// reconnect never races the clean-up of the connection it replaces.
pub struct DebugInstaller {
    state: AppState,
    changes: tokio::sync::Mutex<()>,
}

impl DebugInstaller {
    pub fn new(state: AppState) -> Self {
        Self { state, changes: tokio::sync::Mutex::new(()) }
    }

    async fn install_plugin(&self, plugin: &RegisteredPlugin) -> Result<(), String> {
        let state = &self.state;
        let _serialised = self.changes.lock().await;
        let uid = plugin.identifier.as_str();
        let plugin_id = plugin.identifier.plugin_id();
        let mut ids = HashMap::new();
        for (name, bytes) in &plugin.assets {
            let id = asset_id(name, bytes);
            state.blobs.put(&asset_key(state, &id), bytes).await.map_err(|e| format!("cannot store asset {name}: {e}"))?;
            ids.insert(name.clone(), id);
        }
        let mut declaration = plugin.declaration.to_json_value();
        remap_icon_fields(&mut declaration, &ids);
        state.db.save_declaration(uid, plugin_id, &declaration.to_string()).await.map_err(|e| e.to_string())?;
        if let Some(existing) = state.db.installation_by_plugin_id(&plugin.tenant_id, plugin_id).await.map_err(|e| e.to_string())? {
            if existing.plugin_unique_identifier == uid {
                return Ok(());
            }
            // The tenant runs an older build of the same debugging plugin: the new one replaces it.
            if existing.runtime_type != REMOTE {
                return Err(format!("plugin {plugin_id} is already installed for this tenant"));
            }
            self.remove_installation(&plugin.tenant_id, &existing.id).await?;
            if let Ok(old) = dify_protocol::PluginUniqueIdentifier::parse(&existing.plugin_unique_identifier) {
                state.runtime.stop(&old).await;
            }
        }
        let providers = providers_of(&declaration);
        match state.db.install_plugin(&plugin.tenant_id, uid, plugin_id, REMOTE, REMOTE, &json!({}), &providers).await {
            Ok(InstallOutcome::Installed { .. }) | Ok(InstallOutcome::AlreadyInstalled) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn uninstall_plugin(&self, plugin: &RegisteredPlugin) {
        let _serialised = self.changes.lock().await;
        let uid = plugin.identifier.as_str();
        // A newer connection of the same build registered meanwhile: its installation stays.
        if self.state.runtime.plugin(uid).is_some() {
            return;
        }
        let existing = match self.state.db.installation_by_plugin_id(&plugin.tenant_id, plugin.identifier.plugin_id()).await {
            Ok(existing) => existing,
            Err(error) => {
                tracing::error!(plugin = uid, %error, "cannot look up the debugging plugin's installation");
                return;
            }
        };
        if let Some(existing) = existing.filter(|e| e.plugin_unique_identifier == uid) {
            if let Err(error) = self.remove_installation(&plugin.tenant_id, &existing.id).await {
                tracing::error!(plugin = uid, %error, "cannot uninstall the debugging plugin");
            }
        }
    }

    /// Deletes an installation row (with its provider rows) and, once unreferenced, the declaration.
    async fn remove_installation(&self, tenant_id: &str, installation_id: &str) -> Result<(), String> {
        let released = self.state.db.uninstall(tenant_id, installation_id).await.map_err(|e| e.to_string())?;
        if let Some(released) = released.filter(|r| r.unreferenced) {
            self.state.db.delete_declaration(&released.plugin_unique_identifier).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl DebugRegistry for DebugInstaller {
    fn tenant_of_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { self.state.db.tenant_of_debugging_key(key).await.map_err(|e| e.to_string()) })
    }

    fn install<'a>(&'a self, plugin: &'a RegisteredPlugin) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.install_plugin(plugin))
    }

    fn uninstall<'a>(&'a self, plugin: &'a RegisteredPlugin) -> BoxFuture<'a, ()> {
        Box::pin(self.uninstall_plugin(plugin))
    }
}
