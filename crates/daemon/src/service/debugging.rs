//! Remote debugging: the per-tenant debugging keys (stored in the database with an expiry that every
//! request pushes forward, so any node can resolve a key to its tenant), and the installation side
//! of debugging plugins: [`DebugInstaller`] is the [`DebugRegistry`] the debug TCP server
//! (`runtime::debug`) calls to resolve keys and to make a connected plugin appear as installed for
//! its tenant (assets, declaration, installation and provider rows, runtime type `remote`) and to
//! remove it again when it disconnects. The TCP protocol itself is not part of this module.
//!
//! In a cluster the node holding a debugging plugin's connection also registers itself as its owner
//! (`service::cluster`), so the other nodes forward that tenant's invocations here.
//!
//! Crash safety: every debugging installation this node creates is first recorded in a per-node
//! blob (`remote_debugging/<node id>.json`) and forgotten only after its rows are gone, so a node
//! that was killed removes its dead plugins' installations when it starts again (other nodes'
//! debugging plugins are untouched).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::install::providers_of;
use super::packages::{asset_id, remap_icon_fields};
use super::{asset_key, ServiceResult};
use crate::runtime::{DebugRegistry, DebugServer, DebugServerConfig, RegisteredPlugin, RegistryError};
use crate::service::state::AppState;
use crate::store::{InstallOutcome, NewInstallation, RuntimeType};

/// Source of debugging installations (their runtime type is [`RuntimeType::Remote`]).
pub const REMOTE: &str = "remote";

/// `POST debugging/key`: `{key}` (reused while alive).
pub async fn key(state: &AppState, tenant_id: &str) -> ServiceResult<Value> {
    let ttl = state.settings.debugging_key_ttl.min(i64::MAX as u64) as i64;
    let key = state.db.debugging_key(tenant_id, ttl).await?;
    Ok(json!({"key": key}))
}

/// Starts the remote debugging server when `PLUGIN_REMOTE_INSTALLING_ENABLED`. A port that cannot
/// be bound is logged and leaves the daemon running without remote debugging (as upstream does).
/// Installations left by this node's previous run (whose plugins are necessarily disconnected) are
/// removed first.
pub async fn start_debug_server(state: &AppState) -> Option<DebugServer> {
    let settings = &state.settings;
    if !settings.plugin_remote_installing_enabled {
        return None;
    }
    let installer = DebugInstaller::new(state.clone());
    installer.remove_leftovers().await;
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
    let registry = Arc::new(installer);
    match DebugServer::start(config, state.runtime.clone(), registry, &state.shutdown).await {
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

/// One debugging installation created by this node: `(tenant id, unique identifier)`.
type InstalledEntry = (String, String);

/// Installs and uninstalls debugging plugins for their tenants. Changes are serialised so a
/// reconnect never races the clean-up of the connection it replaces.
pub struct DebugInstaller {
    state: AppState,
    /// Guards every change and this node's record of its debugging installations.
    changes: tokio::sync::Mutex<Vec<InstalledEntry>>,
}

impl DebugInstaller {
    pub fn new(state: AppState) -> Self {
        Self { state, changes: tokio::sync::Mutex::new(Vec::new()) }
    }

    fn record_key(&self) -> String {
        format!("remote_debugging/{}.json", self.state.node_id)
    }

    async fn save_record(&self, entries: &[InstalledEntry]) -> Result<(), RegistryError> {
        let text = serde_json::to_vec(entries)?;
        self.state.blobs.put(&self.record_key(), &text).await.map_err(RegistryError::Record)
    }

    /// Removes the installations recorded by this node's previous run.
    pub async fn remove_leftovers(&self) {
        let mut record = self.changes.lock().await;
        let stored = match self.state.blobs.get(&self.record_key()).await {
            Ok(Some(bytes)) => serde_json::from_slice::<Vec<InstalledEntry>>(&bytes).unwrap_or_default(),
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot read the record of debugging installations");
                return;
            }
        };
        for (tenant_id, uid) in &stored {
            if let Err(error) = self.remove_if_installed(tenant_id, uid).await {
                tracing::warn!(plugin = %uid, %error, "cannot remove a debugging installation left by the previous run");
                record.push((tenant_id.clone(), uid.clone()));
            } else {
                tracing::info!(plugin = %uid, tenant = %tenant_id, "removed a debugging installation left by the previous run");
            }
        }
        if let Err(error) = self.save_record(&record).await {
            tracing::warn!(%error, "cannot rewrite the record of debugging installations");
        }
    }

    /// Removes the tenant's installation if it is exactly `uid`.
    async fn remove_if_installed(&self, tenant_id: &str, uid: &str) -> Result<(), RegistryError> {
        let Ok(identifier) = dify_protocol::PluginUniqueIdentifier::parse(uid) else { return Ok(()) };
        let existing = self.state.db.installation_by_plugin_id(tenant_id, identifier.plugin_id()).await?;
        match existing.filter(|e| e.plugin_unique_identifier == uid) {
            Some(existing) => self.remove_installation(tenant_id, &existing.id).await,
            None => Ok(()),
        }
    }

    async fn install_plugin(&self, plugin: &RegisteredPlugin) -> Result<(), RegistryError> {
        let state = &self.state;
        let mut record = self.changes.lock().await;
        let uid = plugin.identifier.as_str();
        let plugin_id = plugin.identifier.plugin_id();
        let entry = (plugin.tenant_id.clone(), uid.to_string());
        if !record.contains(&entry) {
            record.push(entry);
            self.save_record(&record).await?;
        }
        let mut ids = HashMap::new();
        for (name, bytes) in &plugin.assets {
            let id = asset_id(name, bytes);
            state
                .blobs
                .put(&asset_key(state, &id), bytes)
                .await
                .map_err(|source| RegistryError::Asset { name: name.clone(), source })?;
            ids.insert(name.clone(), id);
        }
        let mut declaration = plugin.declaration.to_json_value();
        remap_icon_fields(&mut declaration, &ids);
        state.db.save_declaration(uid, plugin_id, &declaration.to_string()).await?;
        if let Some(existing) = state.db.installation_by_plugin_id(&plugin.tenant_id, plugin_id).await? {
            if existing.plugin_unique_identifier == uid {
                return Ok(());
            }
            // The tenant runs an older build of the same debugging plugin: the new one replaces it.
            if RuntimeType::parse(&existing.runtime_type) != Some(RuntimeType::Remote) {
                return Err(RegistryError::AlreadyInstalled(plugin_id.to_string()));
            }
            self.remove_installation(&plugin.tenant_id, &existing.id).await?;
            record.retain(|(tenant, recorded)| !(tenant == &plugin.tenant_id && recorded == &existing.plugin_unique_identifier));
            self.save_record(&record).await?;
            if let Ok(old) = dify_protocol::PluginUniqueIdentifier::parse(&existing.plugin_unique_identifier) {
                state.runtime.stop(&old).await;
            }
        }
        let providers = providers_of(&declaration);
        let installation = NewInstallation {
            tenant_id: &plugin.tenant_id,
            uid,
            plugin_id,
            runtime_type: RuntimeType::Remote,
            source: REMOTE,
            meta: &json!({}),
            providers: &providers,
        };
        match state.db.install_plugin(&installation).await {
            Ok(InstallOutcome::Installed { .. }) | Ok(InstallOutcome::AlreadyInstalled) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn uninstall_plugin(&self, plugin: &RegisteredPlugin) {
        let mut record = self.changes.lock().await;
        let uid = plugin.identifier.as_str();
        // A newer connection of the same build registered meanwhile: its installation stays.
        if self.state.runtime.plugin(uid).is_some() {
            return;
        }
        if let Err(error) = self.remove_if_installed(&plugin.tenant_id, uid).await {
            // Kept in the record: the next start-up removes it.
            tracing::error!(plugin = uid, %error, "cannot uninstall the debugging plugin");
            return;
        }
        let before = record.len();
        record.retain(|(tenant, recorded)| !(tenant == &plugin.tenant_id && recorded == uid));
        if record.len() != before {
            if let Err(error) = self.save_record(&record).await {
                tracing::warn!(%error, "cannot rewrite the record of debugging installations");
            }
        }
    }

    /// Deletes an installation row (with its provider rows) and, once unreferenced, the declaration.
    async fn remove_installation(&self, tenant_id: &str, installation_id: &str) -> Result<(), RegistryError> {
        let released = self.state.db.uninstall(tenant_id, installation_id).await?;
        if let Some(released) = released.filter(|r| r.unreferenced) {
            self.state.db.delete_declaration(&released.plugin_unique_identifier).await?;
        }
        Ok(())
    }
}

impl DebugRegistry for DebugInstaller {
    fn tenant_of_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, RegistryError>> {
        Box::pin(async move { Ok(self.state.db.tenant_of_debugging_key(key).await?) })
    }

    fn install<'a>(&'a self, plugin: &'a RegisteredPlugin) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            self.install_plugin(plugin).await?;
            // Other nodes route this tenant's requests for the plugin here.
            self.state.cluster.register_debug(&plugin.tenant_id, plugin.identifier.as_str()).await;
            Ok(())
        })
    }

    fn uninstall<'a>(&'a self, plugin: &'a RegisteredPlugin) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if self.state.runtime.plugin(plugin.identifier.as_str()).is_none() {
                self.state.cluster.unregister_debug(&plugin.tenant_id, plugin.identifier.as_str()).await;
            }
            self.uninstall_plugin(plugin).await
        })
    }
}
