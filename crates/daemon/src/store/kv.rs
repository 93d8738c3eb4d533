//! Plugin key-value storage (`plugin_storage`): the bytes behind the plugin SDK's
//! `session.storage` set/get/del/exist, namespaced by tenant and plugin id (`author/name`, so the data
//! survives upgrades). Quota rules and key validation belong to the caller (backwards invocations);
//! this module only stores rows.

use sqlx::Row;

use super::db::int;
use super::{now_timestamp, Db, StoreError};
use crate::config::DbKind;

impl Db {
    /// The value stored under `key`, if any.
    pub async fn kv_get(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT value FROM plugin_storage WHERE tenant_id = ? AND plugin_id = ? AND storage_key = ?",
        ))
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some(r.try_get::<Vec<u8>, _>("value")?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub async fn kv_set(&self, tenant_id: &str, plugin_id: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let now = now_timestamp();
        let stmt = match self.kind() {
            DbKind::Mysql => "INSERT INTO plugin_storage (tenant_id, plugin_id, storage_key, value, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)"
                .to_string(),
            _ => self.sql(
                "INSERT INTO plugin_storage (tenant_id, plugin_id, storage_key, value, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, plugin_id, storage_key) \
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            ),
        };
        sqlx::query(&stmt)
            .bind(tenant_id)
            .bind(plugin_id)
            .bind(key)
            .bind(value.to_vec())
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes `key`; returns how many values were removed (0 or 1).
    pub async fn kv_del(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<u64, StoreError> {
        let result = sqlx::query(&self.sql(
            "DELETE FROM plugin_storage WHERE tenant_id = ? AND plugin_id = ? AND storage_key = ?",
        ))
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(key)
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Whether `key` holds a value.
    pub async fn kv_exists(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT COUNT(*) AS n FROM plugin_storage WHERE tenant_id = ? AND plugin_id = ? AND storage_key = ?",
        ))
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(key)
        .fetch_one(self.pool())
        .await?;
        Ok(int(&row, "n")? > 0)
    }

    /// Bytes used by the plugin's values in the tenant (for the quota check).
    pub async fn kv_usage_bytes(&self, tenant_id: &str, plugin_id: &str) -> Result<u64, StoreError> {
        let expr = match self.kind() {
            DbKind::Postgres => "CAST(COALESCE(SUM(octet_length(value)), 0) AS BIGINT)",
            DbKind::Mysql => "CAST(COALESCE(SUM(LENGTH(value)), 0) AS SIGNED)",
            DbKind::Sqlite => "COALESCE(SUM(LENGTH(value)), 0)",
        };
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {expr} AS n FROM plugin_storage WHERE tenant_id = ? AND plugin_id = ?"
        )))
        .bind(tenant_id)
        .bind(plugin_id)
        .fetch_one(self.pool())
        .await?;
        Ok(int(&row, "n")?.max(0) as u64)
    }
}
