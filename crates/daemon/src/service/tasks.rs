//! Install-task queries, deletion and housekeeping. Task state, leases and retention deadlines live
//! in the database (not in timers), so any node can answer for and clean up any task.

use dify_protocol::api::{PluginInstallTask, PluginInstallTaskPluginStatus, PluginInstallTaskStatus};
use dify_protocol::DaemonError;

use super::state::{AppState, STALE_TASK_MESSAGE, TASK_LEASE_SECS};
use super::{parse_identifier, ServiceResult};
use crate::store::{render_timestamp, StoreError, TaskPluginEntry, TaskRecord};

fn parse_task_status(task_id: &str, stored: &str) -> ServiceResult<PluginInstallTaskStatus> {
    stored.parse().map_err(|e| DaemonError::internal(format!("install task {task_id}: {e}")))
}

fn task_entry(task_id: &str, entry: TaskPluginEntry) -> ServiceResult<PluginInstallTaskPluginStatus> {
    Ok(PluginInstallTaskPluginStatus {
        status: parse_task_status(task_id, &entry.status)?,
        plugin_unique_identifier: entry.plugin_unique_identifier,
        labels: entry.labels,
        icon: entry.icon,
        icon_dark: entry.icon_dark,
        plugin_id: entry.plugin_id,
        message: entry.message,
        source: entry.source,
    })
}

/// The wire form of a stored task (docs/http.md §7.4). A status the daemon never writes is an
/// internal error.
pub fn task_response(task: TaskRecord) -> ServiceResult<PluginInstallTask> {
    let plugins = task.plugins.into_iter().map(|entry| task_entry(&task.id, entry)).collect::<ServiceResult<_>>()?;
    Ok(PluginInstallTask {
        status: parse_task_status(&task.id, &task.status)?,
        created_at: render_timestamp(&task.created_at),
        updated_at: render_timestamp(&task.updated_at),
        id: task.id,
        tenant_id: task.tenant_id,
        total_plugins: task.total_plugins,
        completed_plugins: task.completed_plugins,
        plugins,
    })
}

pub async fn list(state: &AppState, tenant_id: &str, page: i64, page_size: i64) -> ServiceResult<Vec<PluginInstallTask>> {
    let tasks = state.db.list_tasks(tenant_id, page, page_size).await?;
    tasks.into_iter().map(task_response).collect()
}

pub async fn get(state: &AppState, tenant_id: &str, task_id: &str) -> ServiceResult<PluginInstallTask> {
    match state.db.task(tenant_id, task_id).await? {
        Some(task) => task_response(task),
        None => Err(DaemonError::internal("record not found")),
    }
}

pub async fn delete(state: &AppState, tenant_id: &str, task_id: &str) -> ServiceResult<bool> {
    state.db.delete_task(tenant_id, task_id).await?;
    Ok(true)
}

pub async fn delete_all(state: &AppState, tenant_id: &str) -> ServiceResult<bool> {
    state.db.delete_all_tasks(tenant_id).await?;
    Ok(true)
}

/// Removes one plugin entry; the raw path tail may start with `/`.
pub async fn delete_item(state: &AppState, tenant_id: &str, task_id: &str, identifier: &str) -> ServiceResult<bool> {
    let identifier = identifier.trim_start_matches('/');
    let uid = parse_identifier(identifier).map_err(|e| DaemonError::bad_request(e.message))?;
    state.db.delete_task_entry(tenant_id, task_id, uid.as_str()).await?;
    Ok(true)
}

/// One housekeeping pass: renew this node's leases, fail stale tasks, delete expired ones.
///
/// Lease renewal is this node's own; the cluster-wide part (stale tasks, retention) runs on the one
/// node that takes the housekeeping lock (always this node without `REDIS_HOST`). The lock is left
/// to expire rather than released, so across the cluster the shared part runs about once per
/// housekeeping interval, not once per node.
pub async fn housekeeping(state: &AppState) -> Result<(), StoreError> {
    state.db.renew_task_leases(&state.node_id, TASK_LEASE_SECS).await?;
    if state.cluster.housekeeping_lock().await.is_none() {
        return Ok(());
    }
    shared_housekeeping(state).await
}

async fn shared_housekeeping(state: &AppState) -> Result<(), StoreError> {
    let failed = state.db.fail_stale_tasks(STALE_TASK_MESSAGE).await?;
    if failed > 0 {
        tracing::warn!(failed, "failed stale install tasks");
    }
    state.db.delete_expired_tasks().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(status: &str, entry_status: &str) -> TaskRecord {
        TaskRecord {
            id: "task-1".into(),
            created_at: "2025-01-02T03:04:05.500000000Z".into(),
            updated_at: "2025-01-02T03:04:06.000000000Z".into(),
            status: status.into(),
            tenant_id: "t1".into(),
            total_plugins: 1,
            completed_plugins: 0,
            plugins: vec![TaskPluginEntry {
                plugin_unique_identifier: "acme/echo:0.0.3@0123456789abcdef0123456789abcdef".into(),
                labels: json!({"en_US": "", "zh_Hans": "", "ja_JP": "", "pt_BR": ""}),
                icon: String::new(),
                icon_dark: String::new(),
                plugin_id: "acme/echo".into(),
                status: entry_status.into(),
                message: "starting".into(),
                source: "package".into(),
            }],
        }
    }

    #[test]
    fn stored_tasks_render_in_wire_order() {
        let task = task_response(record("running", "running")).unwrap();
        assert_eq!(task.status, PluginInstallTaskStatus::Running);
        assert_eq!(
            serde_json::to_string(&task).unwrap(),
            r#"{"id":"task-1","created_at":"2025-01-02T03:04:05.5Z","updated_at":"2025-01-02T03:04:06Z","status":"running","tenant_id":"t1","total_plugins":1,"completed_plugins":0,"plugins":[{"plugin_unique_identifier":"acme/echo:0.0.3@0123456789abcdef0123456789abcdef","labels":{"en_US":"","zh_Hans":"","ja_JP":"","pt_BR":""},"icon":"","icon_dark":"","plugin_id":"acme/echo","status":"running","message":"starting","source":"package"}]}"#
        );
    }

    #[test]
    fn an_unknown_stored_status_is_an_internal_error() {
        let error = task_response(record("running", "exploded")).unwrap_err();
        assert_eq!(error.message, "install task task-1: unknown install task status `exploded`");
        assert!(task_response(record("", "success")).is_err());
    }
}
