//! Plugin key-value storage (the bytes behind the plugin SDK's `session.storage` set/get/del/exist) in
//! the upstream daemon's layout: each value is an object at
//! `<PERSISTENCE_STORAGE_PATH>/<tenant id>/<plugin id>/<key>` in the blob storage (plugin id being
//! `author/name`, so values survive upgrades), and the bytes a plugin holds in a tenant are counted in
//! the `tenant_storages` row of that tenant and plugin, moved by the size difference of every write
//! and delete as upstream does (docs/upstream-schema.md §5). Quota rules and key validation belong to
//! the caller (backwards invocations); keys arrive cleaned.
//!
//! Values written by earlier versions into the `plugin_storage` table are moved to objects once, at
//! start-up ([`PluginKv::move_table_values`]).

use std::sync::Arc;

use sqlx::Row;

use super::db::{int, text};
use super::{new_row_id, now_timestamp, BlobStore, Db, StoreError};

/// The plugin key-value storage over the database (size accounting) and the blob storage (values).
#[derive(Clone)]
pub struct PluginKv {
    db: Db,
    blobs: Arc<dyn BlobStore>,
    /// `PERSISTENCE_STORAGE_PATH`, without surrounding slashes.
    prefix: String,
}

impl PluginKv {
    pub fn new(db: Db, blobs: Arc<dyn BlobStore>, persistence_path: &str) -> PluginKv {
        PluginKv { db, blobs, prefix: persistence_path.trim_matches('/').to_string() }
    }

    /// The object key of a value: upstream's `path.Join(persistence path, tenant, plugin, key)`.
    pub fn object_key(&self, tenant_id: &str, plugin_id: &str, key: &str) -> String {
        let rest = format!("{tenant_id}/{plugin_id}/{}", key.trim_start_matches('/'));
        if self.prefix.is_empty() {
            rest
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// The value stored under `key`, if any.
    pub async fn get(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(&self.object_key(tenant_id, plugin_id, key)).await?)
    }

    /// Stores `value` under `key`, replacing any previous value, and moves the tenant's counted size by
    /// the difference.
    pub async fn set(&self, tenant_id: &str, plugin_id: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let object = self.object_key(tenant_id, plugin_id, key);
        let previous = self.blobs.get(&object).await?.map_or(0, |v| v.len() as i64);
        self.blobs.put(&object, value).await?;
        self.add_size(tenant_id, plugin_id, value.len() as i64 - previous).await
    }

    /// Deletes `key`; returns how many values were removed (0 or 1).
    pub async fn delete(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<u64, StoreError> {
        let object = self.object_key(tenant_id, plugin_id, key);
        let Some(previous) = self.blobs.get(&object).await? else {
            return Ok(0);
        };
        self.blobs.delete(&object).await?;
        self.add_size(tenant_id, plugin_id, -(previous.len() as i64)).await?;
        Ok(1)
    }

    /// Whether `key` holds a value.
    pub async fn exists(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self.blobs.exists(&self.object_key(tenant_id, plugin_id, key)).await?)
    }

    /// Bytes counted for the plugin's values in the tenant (for the quota check).
    pub async fn usage_bytes(&self, tenant_id: &str, plugin_id: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            &self
                .db
                .sql("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS n FROM tenant_storages WHERE tenant_id = ? AND plugin_id = ?")
                .replace("AS BIGINT", if self.db.kind() == crate::config::DbKind::Mysql { "AS SIGNED" } else { "AS BIGINT" }),
        )
        .bind(tenant_id)
        .bind(plugin_id)
        .fetch_one(self.db.pool())
        .await?;
        Ok(int(&row, "n")?.max(0) as u64)
    }

    /// Upstream's accounting: the first write of a plugin in a tenant creates its `tenant_storages`
    /// row with the size difference; later writes and deletes add to `size` without touching
    /// `updated_at`.
    async fn add_size(&self, tenant_id: &str, plugin_id: &str, diff: i64) -> Result<(), StoreError> {
        let updated = sqlx::query(&self.db.sql("UPDATE tenant_storages SET size = size + ? WHERE tenant_id = ? AND plugin_id = ?"))
            .bind(diff)
            .bind(tenant_id)
            .bind(plugin_id)
            .execute(self.db.pool())
            .await?;
        if updated.rows_affected() > 0 {
            return Ok(());
        }
        let exists = sqlx::query(&self.db.sql("SELECT 1 AS one FROM tenant_storages WHERE tenant_id = ? AND plugin_id = ?"))
            .bind(tenant_id)
            .bind(plugin_id)
            .fetch_optional(self.db.pool())
            .await?;
        if exists.is_some() {
            // MySQL reports no affected row when `diff` is 0.
            return Ok(());
        }
        let now = now_timestamp();
        sqlx::query(
            &self
                .db
                .sql("INSERT INTO tenant_storages (id, created_at, updated_at, tenant_id, plugin_id, size) VALUES (?u, ?t, ?t, ?, ?, ?)"),
        )
        .bind(new_row_id())
        .bind(&now)
        .bind(&now)
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(diff)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Moves values an earlier version kept in the `plugin_storage` table to objects (a value already
    /// present as an object is kept), counting them in `tenant_storages`; returns how many moved.
    pub async fn move_table_values(&self) -> Result<usize, StoreError> {
        let rows = sqlx::query("SELECT tenant_id, plugin_id, storage_key FROM plugin_storage").fetch_all(self.db.pool()).await?;
        let mut moved = 0;
        for row in &rows {
            let (tenant_id, plugin_id, key) = (text(row, "tenant_id")?, text(row, "plugin_id")?, text(row, "storage_key")?);
            let value =
                sqlx::query(&self.db.sql("SELECT value FROM plugin_storage WHERE tenant_id = ? AND plugin_id = ? AND storage_key = ?"))
                    .bind(&tenant_id)
                    .bind(&plugin_id)
                    .bind(&key)
                    .fetch_optional(self.db.pool())
                    .await?;
            if let Some(value) = value {
                let value: Vec<u8> = value.try_get("value")?;
                if !self.exists(&tenant_id, &plugin_id, &key).await? {
                    self.set(&tenant_id, &plugin_id, &key, &value).await?;
                    moved += 1;
                }
            }
            sqlx::query(&self.db.sql("DELETE FROM plugin_storage WHERE tenant_id = ? AND plugin_id = ? AND storage_key = ?"))
                .bind(&tenant_id)
                .bind(&plugin_id)
                .bind(&key)
                .execute(self.db.pool())
                .await?;
        }
        Ok(moved)
    }
}
