//! Reading a plugin's log ring (`GET /plugin/{tenant}/management/logs`): the daemon keeps each
//! plugin's recent stderr lines, `log` events and process notes in memory, per node.

use crate::error::ClientError;
use crate::transport::PluginDaemonClient;
use crate::wire::PluginLogsResponse;

impl PluginDaemonClient {
    /// The newest lines of the tenant's installed `plugin_id` (`author/name` or a unique identifier):
    /// only lines with `seq > after`, at most `limit` of them (the daemon's default when `None`).
    pub async fn fetch_plugin_logs(
        &self,
        tenant_id: &str,
        plugin_id: &str,
        after: u64,
        limit: Option<u32>,
    ) -> Result<PluginLogsResponse, ClientError> {
        if tenant_id.is_empty() || tenant_id.contains(['/', '?', '#']) {
            return Err(ClientError::Validation(format!("invalid tenant id `{tenant_id}`")));
        }
        if !plugin_id.contains('/') {
            return Err(ClientError::Validation(format!("invalid plugin id `{plugin_id}`: expected author/name")));
        }
        let mut query = vec![("plugin_id", plugin_id.to_string())];
        if after > 0 {
            query.push(("after", after.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.get(&format!("plugin/{tenant_id}/management/logs"), &query).await
    }
}
