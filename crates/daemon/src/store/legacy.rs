//! Conversion of a database in this daemon's earlier own schema (text timestamps, one
//! `provider_installations` table, lease columns on `install_tasks`) to the upstream daemon's schema.
//!
//! The earlier tables are renamed to `legacy_<name>` and kept, never dropped; their rows are copied
//! into the upstream tables once, converting types on the way. Rows whose tenant id the upstream
//! columns cannot hold (a non-UUID tenant on PostgreSQL, more than 36 characters on MySQL) stay only
//! in the `legacy_` tables, and a warning names how many. `debugging_keys` and `plugin_storage`
//! keep their names and rows: they are this daemon's side tables in both schemas.

use super::db::text;
use super::{Db, StoreError};
use crate::config::DbKind;

/// The earlier schema's tables that the upstream schema replaces.
const RENAMED: [&str; 7] = [
    "plugins",
    "plugin_declarations",
    "plugin_installations",
    "provider_installations",
    "install_tasks",
    "plugin_readme_records",
    "endpoints",
];

/// Index names of the earlier schema (PostgreSQL and SQLite name indexes per schema, so they must go
/// before the upstream tables reuse some of the names).
const LEGACY_INDEXES: [&str; 18] = [
    "idx_plugins_plugin_id",
    "idx_plugins_created_at",
    "idx_plugin_declarations_plugin_id",
    "idx_plugin_declarations_created_at",
    "idx_plugin_installations_plugin_unique_identifier",
    "idx_plugin_installations_created_at",
    "idx_provider_installations_tenant_id",
    "idx_provider_installations_plugin_unique_identifier",
    "idx_provider_installations_created_at",
    "idx_install_tasks_tenant_id",
    "idx_install_tasks_status",
    "idx_install_tasks_created_at",
    "idx_plugin_readme_records_created_at",
    "idx_endpoints_tenant_id",
    "idx_endpoints_plugin_id",
    "idx_endpoints_created_at",
    "idx_debugging_keys_created_at",
    "idx_provider_installations_kind",
];

/// The earlier schema's marker table while its rows wait to be copied, and after.
const PENDING: &str = "legacy_provider_installations";
const DONE: &str = "legacy_provider_installations_copied";

/// Step 1, before the upstream tables are created: moves the earlier schema's tables aside.
pub(super) async fn detach_if_needed(db: &Db) -> Result<(), StoreError> {
    if !db.has_table("provider_installations").await? || db.has_table(PENDING).await? {
        return Ok(());
    }
    tracing::warn!("converting the database from this daemon's earlier schema to the upstream daemon's schema");
    let mut tx = db.pool().begin().await?;
    if db.kind() != DbKind::Mysql {
        for index in LEGACY_INDEXES {
            sqlx::query(&format!("DROP INDEX IF EXISTS {index}")).execute(&mut *tx).await?;
        }
    }
    for table in RENAMED {
        let stmt = match db.kind() {
            DbKind::Mysql => format!("RENAME TABLE {table} TO legacy_{table}"),
            _ => format!("ALTER TABLE {table} RENAME TO legacy_{table}"),
        };
        sqlx::query(&stmt).execute(&mut *tx).await?;
        if db.kind() == DbKind::Postgres {
            sqlx::query(&format!("ALTER INDEX IF EXISTS {table}_pkey RENAME TO legacy_{table}_pkey"))
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Step 2, once the upstream tables exist: copies the moved rows (once).
pub(super) async fn copy_if_pending(db: &Db) -> Result<(), StoreError> {
    if !db.has_table(PENDING).await? {
        return Ok(());
    }
    let kind = db.kind();
    let ts = |c: &str| match kind {
        DbKind::Postgres => format!("CAST({c} AS timestamptz)"),
        DbKind::Mysql => format!("CAST(REPLACE(REPLACE(LEFT({c}, 26), 'T', ' '), 'Z', '') AS DATETIME(6))"),
        DbKind::Sqlite => c.to_string(),
    };
    let id = |c: &str| match kind {
        DbKind::Postgres => format!("CAST({c} AS uuid)"),
        _ => c.to_string(),
    };
    const UUID_PATTERN: &str = "'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'";
    let is_uuid = match kind {
        DbKind::Postgres => format!("tenant_id ~ {UUID_PATTERN}"),
        DbKind::Mysql => format!("tenant_id REGEXP {UUID_PATTERN}"),
        DbKind::Sqlite => "1 = 1".to_string(),
    };
    let insert = |table: &str, columns: &str, select: String| match kind {
        DbKind::Mysql => format!("INSERT IGNORE INTO {table} ({columns}) {select}"),
        DbKind::Postgres => format!("INSERT INTO {table} ({columns}) {select} ON CONFLICT DO NOTHING"),
        DbKind::Sqlite => format!("INSERT OR IGNORE INTO {table} ({columns}) {select}"),
    };
    let base = |c: &str| format!("{}, {}, {}", id("id"), ts("created_at"), ts("updated_at")) + c;
    let enabled = if kind == DbKind::Postgres { "(enabled <> 0)" } else { "enabled" };
    let statements = |tenant: &str, filter: &str| {
        let mut statements = vec![
            insert(
                "plugins",
                "id, created_at, updated_at, plugin_unique_identifier, plugin_id, refers, install_type, manifest_type, \
             remote_declaration, source",
                format!(
                    "SELECT {} FROM legacy_plugins",
                    base(", plugin_unique_identifier, plugin_id, refers, install_type, manifest_type, remote_declaration, source")
                ),
            ),
            insert(
                "plugin_declarations",
                "id, created_at, updated_at, plugin_unique_identifier, plugin_id, declaration",
                format!("SELECT {} FROM legacy_plugin_declarations", base(", plugin_unique_identifier, plugin_id, declaration")),
            ),
            insert(
                "plugin_installations",
                "id, created_at, updated_at, tenant_id, plugin_id, plugin_unique_identifier, runtime_type, \
             endpoints_setups, endpoints_active, source, meta",
                format!(
                    "SELECT {} FROM legacy_plugin_installations WHERE {}",
                    base(&format!(
                        ", {}, plugin_id, plugin_unique_identifier, runtime_type, endpoints_setups, endpoints_active, \
                     source, meta",
                        tenant
                    )),
                    filter
                ),
            ),
            insert(
                "install_tasks",
                "id, created_at, updated_at, status, tenant_id, total_plugins, completed_plugins, plugins",
                format!(
                    "SELECT {} FROM legacy_install_tasks WHERE {}",
                    base(&format!(", status, {}, total_plugins, completed_plugins, plugins", tenant)),
                    filter
                ),
            ),
            insert(
                "install_task_leases",
                "task_id, owner_node, lease_until, deadline_at, expires_at",
                format!("SELECT id, owner_node, lease_until, deadline_at, expires_at FROM legacy_install_tasks WHERE {}", filter),
            ),
            insert(
                "plugin_readme_records",
                "id, created_at, updated_at, plugin_unique_identifier, language, content",
                format!("SELECT {} FROM legacy_plugin_readme_records", base(", plugin_unique_identifier, language, content")),
            ),
            insert(
                "endpoints",
                "id, created_at, updated_at, name, hook_id, tenant_id, user_id, plugin_id, expired_at, enabled, settings",
                format!(
                    "SELECT {} FROM legacy_endpoints",
                    base(&format!(", name, hook_id, tenant_id, user_id, plugin_id, {}, {enabled}, settings", ts("expired_at")))
                ),
            ),
        ];
        for kind_name in ["tool", "model", "agent_strategy", "datasource", "trigger"] {
            let table = super::ProviderKind::ALL
                .into_iter()
                .find(|k| k.as_str() == kind_name)
                .map(|k| k.table())
                .unwrap_or("tool_installations");
            statements.push(insert(
                table,
                "id, created_at, updated_at, tenant_id, provider, plugin_unique_identifier, plugin_id",
                format!(
                    "SELECT {} FROM legacy_provider_installations WHERE kind = '{kind_name}' AND {}",
                    base(&format!(", {}, provider, plugin_unique_identifier, plugin_id", tenant)),
                    filter
                ),
            ));
        }
        statements
    };
    let mut tx = db.pool().begin().await?;
    for statement in statements(&id("tenant_id"), &is_uuid) {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    // Tenant ids that are not UUIDs get the name-based UUID the store uses for them (SQLite keeps
    // every id as it is, so the statements above copied everything there).
    let mut others = Vec::new();
    if kind != DbKind::Sqlite {
        for table in ["legacy_plugin_installations", "legacy_install_tasks", "legacy_provider_installations"] {
            let rows = sqlx::query(&format!("SELECT DISTINCT tenant_id FROM {table} WHERE NOT ({is_uuid})"))
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let tenant = text(row, "tenant_id")?;
                if !others.contains(&tenant) {
                    others.push(tenant);
                }
            }
        }
    }
    for tenant in &others {
        let key = db.tenant_key(tenant);
        for statement in statements(&id(&format!("'{key}'")), "tenant_id = ?") {
            if !statement.contains('?') {
                continue;
            }
            sqlx::query(&db.sql(&statement)).bind(tenant).execute(&mut *tx).await?;
        }
    }
    let rename = match kind {
        DbKind::Mysql => format!("RENAME TABLE {PENDING} TO {DONE}"),
        _ => format!("ALTER TABLE {PENDING} RENAME TO {DONE}"),
    };
    sqlx::query(&rename).execute(&mut *tx).await?;
    tx.commit().await?;
    if !others.is_empty() {
        tracing::warn!(tenants = others.len(), "tenant ids that are not UUIDs are stored as name-based UUIDs in the upstream tables");
    }
    Ok(())
}
