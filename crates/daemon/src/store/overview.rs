//! Reads across every tenant for the operator's status page: the newest installations and install
//! tasks. Nothing else reads across tenants.

use super::now_timestamp;
use super::records::{installation_from_row, task_from_row, InstallationRecord, TaskRecord, INSTALLATION_COLUMNS};
use super::{Db, StoreError};

impl Db {
    /// The newest `limit` installations of any tenant.
    pub async fn recent_installations(&self, limit: i64) -> Result<Vec<InstallationRecord>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations i LEFT JOIN plugin_declarations d \
             ON d.plugin_unique_identifier = i.plugin_unique_identifier ORDER BY i.created_at DESC, i.id DESC LIMIT ?"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(installation_from_row).collect()
    }

    /// The newest `limit` live install tasks of any tenant.
    pub async fn recent_tasks(&self, limit: i64) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id, created_at, updated_at, status, tenant_id, total_plugins, completed_plugins, plugins \
             FROM install_tasks WHERE expires_at IS NULL OR expires_at > ? ORDER BY created_at DESC, id DESC LIMIT ?",
        ))
        .bind(now_timestamp())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }
}
