//! Install-task queries, deletion and housekeeping. Task state, leases and retention deadlines live
//! in the database (not in timers), so any node can answer for and clean up any task.

use dify_protocol::DaemonError;
use serde_json::{json, Value};

use super::{parse_identifier, ServiceResult};
use crate::server::{AppState, STALE_TASK_MESSAGE, TASK_LEASE_SECS};
use crate::store::{render_timestamp, StoreError, TaskRecord};

/// The wire form of a task (http-api.md §7.4).
pub fn task_json(task: &TaskRecord) -> Value {
    json!({
        "id": task.id,
        "created_at": render_timestamp(&task.created_at),
        "updated_at": render_timestamp(&task.updated_at),
        "status": task.status,
        "tenant_id": task.tenant_id,
        "total_plugins": task.total_plugins,
        "completed_plugins": task.completed_plugins,
        "plugins": task.plugins,
    })
}

pub async fn list(state: &AppState, tenant_id: &str, page: i64, page_size: i64) -> ServiceResult<Value> {
    let tasks = state.db.list_tasks(tenant_id, page, page_size).await?;
    Ok(Value::Array(tasks.iter().map(task_json).collect()))
}

pub async fn get(state: &AppState, tenant_id: &str, task_id: &str) -> ServiceResult<Value> {
    match state.db.task(tenant_id, task_id).await? {
        Some(task) => Ok(task_json(&task)),
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
pub async fn housekeeping(state: &AppState) -> Result<(), StoreError> {
    state.db.renew_task_leases(&state.node_id, TASK_LEASE_SECS).await?;
    let failed = state.db.fail_stale_tasks(STALE_TASK_MESSAGE).await?;
    if failed > 0 {
        tracing::warn!(failed, "failed stale install tasks");
    }
    state.db.delete_expired_tasks().await
}
