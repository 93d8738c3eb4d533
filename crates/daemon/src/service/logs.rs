//! Reading a plugin's log ring for a tenant: only the plugins the tenant has installed, and only the
//! lines this node kept (each node keeps the rings of the plugins it runs).

use dify_protocol::observe::PluginLogsResponse;
use dify_protocol::DaemonError;

use super::state::AppState;
use super::{find_installation, FindInstallationError, ServiceResult};

/// Most lines one read returns.
pub const MAX_LOG_READ: usize = 10_000;

/// The newest lines (after `after`, at most `limit`) of the tenant's installation of `plugin`, given as
/// `author/name` or as a unique identifier (its `author/name` part selects the installation).
pub async fn plugin_logs(state: &AppState, tenant_id: &str, plugin: &str, after: u64, limit: usize) -> ServiceResult<PluginLogsResponse> {
    let plugin_id = plugin.split(':').next().unwrap_or_default().trim();
    if plugin_id.is_empty() || !plugin_id.contains('/') {
        return Err(DaemonError::bad_request(format!("invalid plugin id {plugin:?}: expected author/name")));
    }
    let installation = match find_installation(state, tenant_id, plugin_id).await {
        Ok(Some(installation)) => installation,
        Ok(None) => return Err(DaemonError::plugin_not_found()),
        Err(FindInstallationError::BadIdentifier(message)) => return Err(DaemonError::unique_identifier(message)),
        Err(FindInstallationError::Store(error)) => return Err(error.into()),
    };
    let uid = installation.plugin_unique_identifier.as_str().to_string();
    let limit = limit.clamp(1, MAX_LOG_READ);
    let (entries, last_seq, dropped) = match state.runtime.logs().get(&uid) {
        Some(ring) => {
            let snapshot = ring.read(after, limit);
            (snapshot.entries, snapshot.last_seq, snapshot.dropped)
        }
        None => (Vec::new(), 0, 0),
    };
    Ok(PluginLogsResponse { plugin_id: installation.plugin_id.clone(), plugin_unique_identifier: uid, entries, last_seq, dropped })
}
