//! Reads across every tenant for the operator's status page: the newest installations and install
//! tasks. Nothing else reads across tenants.

use super::now_timestamp;
use super::records::{installation_from_row, task_from_row, InstallationRecord, TaskRecord, INSTALLATION_COLUMNS, TASK_COLUMNS};
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
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {TASK_COLUMNS} FROM install_tasks t LEFT JOIN install_task_leases l ON l.task_id = {{u:t.id}} \
             WHERE l.expires_at IS NULL OR l.expires_at > ? ORDER BY t.created_at DESC, t.id DESC LIMIT ?"
        )))
        .bind(now_timestamp())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }
}
