//! Endpoint rows (`endpoints`) and the endpoint counters on installations, changed together in one
//! transaction. Settings are stored as the JSON the Dify API returned when encrypting them.

use sqlx::Row;

use super::db::{flag, opt_text, text};
use super::{now_timestamp, render_timestamp, Db, StoreError};

/// Upstream never expires endpoints; the column is always this value.
pub const ENDPOINT_EXPIRED_AT: &str = "2050-01-01T00:00:00Z";

/// One configured endpoint of a plugin in a tenant.
#[derive(Debug, Clone)]
pub struct EndpointRecord {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub name: String,
    pub hook_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub plugin_id: String,
    pub expired_at: String,
    pub enabled: bool,
    /// Encrypted settings (JSON object text).
    pub settings: String,
}

const COLUMNS: &str = "id, created_at, updated_at, name, hook_id, tenant_id, user_id, plugin_id, expired_at, enabled, settings";

/// [`COLUMNS`] as read back (UUID and timestamp columns as text).
const SELECT_COLUMNS: &str = "{u:id} AS id, {t:created_at} AS created_at, {t:updated_at} AS updated_at, name, hook_id, \
     tenant_id, user_id, plugin_id, {t:expired_at} AS expired_at, {b:enabled} AS enabled, settings";

fn nullable(row: &sqlx::any::AnyRow, column: &str) -> Result<String, StoreError> {
    Ok(opt_text(row, column)?.unwrap_or_default())
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<EndpointRecord, StoreError> {
    Ok(EndpointRecord {
        id: text(row, "id")?,
        created_at: nullable(row, "created_at")?,
        updated_at: nullable(row, "updated_at")?,
        name: nullable(row, "name")?,
        hook_id: nullable(row, "hook_id")?,
        tenant_id: nullable(row, "tenant_id")?,
        user_id: nullable(row, "user_id")?,
        plugin_id: nullable(row, "plugin_id")?,
        expired_at: render_timestamp(&nullable(row, "expired_at")?),
        enabled: match row.try_get::<Option<bool>, _>("enabled") {
            Ok(v) => v.unwrap_or(false),
            Err(_) => flag(row, "enabled")?,
        },
        settings: opt_text(row, "settings")?.unwrap_or_else(|| "{}".into()),
    })
}

/// What [`Db::update_endpoint`] writes.
#[derive(Debug, Clone, Copy)]
pub struct EndpointUpdate<'a> {
    pub name: &'a str,
    pub user_id: &'a str,
    /// The encrypted settings as JSON text.
    pub settings: &'a str,
}

impl Db {
    /// Inserts an enabled endpoint and counts it on the tenant's installation of the plugin.
    pub async fn create_endpoint(&self, endpoint: &EndpointRecord) -> Result<(), StoreError> {
        self.check_tenant_id(&endpoint.tenant_id)?;
        let now = now_timestamp();
        let mut tx = self.pool().begin().await?;
        sqlx::query(&self.sql(&format!("INSERT INTO endpoints ({COLUMNS}) VALUES (?u, ?t, ?t, ?, ?, ?, ?, ?, ?t, ?, ?)")))
            .bind(&endpoint.id)
            .bind(&now)
            .bind(&now)
            .bind(&endpoint.name)
            .bind(&endpoint.hook_id)
            .bind(&endpoint.tenant_id)
            .bind(&endpoint.user_id)
            .bind(&endpoint.plugin_id)
            .bind(ENDPOINT_EXPIRED_AT)
            .bind(true)
            .bind(&endpoint.settings)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.sql(
            "UPDATE plugin_installations SET endpoints_setups = endpoints_setups + 1, \
             endpoints_active = endpoints_active + 1 WHERE tenant_id = ?u AND plugin_id = ?",
        ))
        .bind(self.tenant_key(&endpoint.tenant_id))
        .bind(&endpoint.plugin_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's endpoint `id`.
    pub async fn endpoint(&self, tenant_id: &str, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        if !self.endpoint_id_possible(id) {
            return Ok(None);
        }
        let row = sqlx::query(&self.sql(&format!("SELECT {SELECT_COLUMNS} FROM endpoints WHERE id = ?u AND tenant_id = ?")))
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The endpoint behind a public hook id (for `/e/{hook_id}`).
    pub async fn endpoint_by_hook_id(&self, hook_id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let row = sqlx::query(&self.sql(&format!("SELECT {SELECT_COLUMNS} FROM endpoints WHERE hook_id = ?")))
            .bind(hook_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The tenant's endpoints (optionally of one plugin), newest first.
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        plugin_id: Option<&str>,
        page: i64,
        page_size: i64,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let offset = (page.max(1) - 1) * page_size;
        let rows = match plugin_id {
            Some(plugin_id) => {
                sqlx::query(&self.sql(&format!(
                    "SELECT {SELECT_COLUMNS} FROM endpoints WHERE tenant_id = ? AND plugin_id = ? \
                     ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
                )))
                .bind(tenant_id)
                .bind(plugin_id)
                .bind(page_size)
                .bind(offset)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&self.sql(&format!(
                    "SELECT {SELECT_COLUMNS} FROM endpoints WHERE tenant_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
                )))
                .bind(tenant_id)
                .bind(page_size)
                .bind(offset)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    /// Replaces the name, user and settings of endpoint `id`.
    pub async fn update_endpoint(&self, id: &str, update: &EndpointUpdate<'_>) -> Result<(), StoreError> {
        if !self.endpoint_id_possible(id) {
            return Ok(());
        }
        sqlx::query(&self.sql("UPDATE endpoints SET name = ?, user_id = ?, settings = ?, updated_at = ?t WHERE id = ?u"))
            .bind(update.name)
            .bind(update.user_id)
            .bind(update.settings)
            .bind(now_timestamp())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Enables or disables an endpoint (idempotent), keeping `endpoints_active` in step.
    /// `None` when the tenant has no such endpoint.
    pub async fn set_endpoint_enabled(&self, tenant_id: &str, id: &str, enabled: bool) -> Result<Option<()>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        if !self.endpoint_id_possible(id) {
            return Ok(None);
        }
        let mut tx = self.pool().begin().await?;
        let row =
            sqlx::query(&self.sql(&format!("SELECT {SELECT_COLUMNS} FROM endpoints WHERE id = ?u AND tenant_id = ?{}", self.for_update())))
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let endpoint = from_row(&row)?;
        if endpoint.enabled != enabled {
            sqlx::query(&self.sql("UPDATE endpoints SET enabled = ?, updated_at = ?t WHERE id = ?u"))
                .bind(enabled)
                .bind(now_timestamp())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let delta = if enabled { "+ 1" } else { "- 1" };
            sqlx::query(&self.sql(&format!(
                "UPDATE plugin_installations SET endpoints_active = endpoints_active {delta} \
                 WHERE tenant_id = ?u AND plugin_id = ?"
            )))
            .bind(self.tenant_key(tenant_id))
            .bind(&endpoint.plugin_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(()))
    }

    /// Deletes the tenant's endpoint and uncounts it; returns the removed row.
    pub async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        if !self.endpoint_id_possible(id) {
            return Ok(None);
        }
        let mut tx = self.pool().begin().await?;
        let row =
            sqlx::query(&self.sql(&format!("SELECT {SELECT_COLUMNS} FROM endpoints WHERE id = ?u AND tenant_id = ?{}", self.for_update())))
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let endpoint = from_row(&row)?;
        sqlx::query(&self.sql("DELETE FROM endpoints WHERE id = ?u")).bind(id).execute(&mut *tx).await?;
        let active = if endpoint.enabled { 1i64 } else { 0i64 };
        sqlx::query(&self.sql(
            "UPDATE plugin_installations SET endpoints_setups = endpoints_setups - 1, \
             endpoints_active = endpoints_active - ? WHERE tenant_id = ?u AND plugin_id = ? AND endpoints_setups > 0",
        ))
        .bind(active)
        .bind(self.tenant_key(tenant_id))
        .bind(&endpoint.plugin_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(endpoint))
    }

    /// Whether `id` can name an endpoint row (UUID primary keys on PostgreSQL).
    fn endpoint_id_possible(&self, id: &str) -> bool {
        self.kind() != crate::config::DbKind::Postgres || (id.len() == 36 && uuid::Uuid::try_parse(id).is_ok())
    }
}
