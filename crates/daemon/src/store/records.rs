//! Rows and statements for plugins, declarations, installations, provider rows, install tasks,
//! readmes and debugging keys. Every multi-row change (install, uninstall, upgrade, task entry
//! update) runs in one transaction so a crash leaves either the old or the new state. The functions
//! that write installation rows (or a declaration they join) invalidate the installation cache once
//! committed, so no caller has to remember it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::db::{int, opt_text, text};
use super::{new_row_id, now_timestamp, Db, RuntimeType, StoreError};

/// One version of a plugin installed by at least one tenant (`plugins`).
#[derive(Debug, Clone)]
pub struct PluginRecord {
    pub id: String,
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
    pub refers: i64,
    pub install_type: String,
    pub source: String,
}

/// A tenant's installation of a plugin (`plugin_installations`).
#[derive(Debug, Clone)]
pub struct InstallationRecord {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub tenant_id: String,
    pub plugin_id: String,
    pub plugin_unique_identifier: String,
    pub runtime_type: String,
    pub endpoints_setups: i64,
    pub endpoints_active: i64,
    pub source: String,
    pub meta: Value,
    /// The declaration JSON of the installed version, when stored.
    pub declaration: Option<String>,
}

/// Which provider table a provider row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Tool,
    Model,
    AgentStrategy,
    Datasource,
    Trigger,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] =
        [ProviderKind::Tool, ProviderKind::Model, ProviderKind::AgentStrategy, ProviderKind::Datasource, ProviderKind::Trigger];

    /// The stored `kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Tool => "tool",
            ProviderKind::Model => "model",
            ProviderKind::AgentStrategy => "agent_strategy",
            ProviderKind::Datasource => "datasource",
            ProviderKind::Trigger => "trigger",
        }
    }

    /// The upstream table holding this kind's provider rows.
    pub fn table(self) -> &'static str {
        match self {
            ProviderKind::Tool => "tool_installations",
            ProviderKind::Model => "ai_model_installations",
            ProviderKind::AgentStrategy => "agent_strategy_installations",
            ProviderKind::Datasource => "datasource_installations",
            ProviderKind::Trigger => "trigger_installations",
        }
    }

    /// The field of the plugin declaration holding this provider's declaration.
    pub fn declaration_field(self) -> &'static str {
        self.as_str()
    }

    /// The provider name a declaration gives this kind, if the plugin declares one.
    pub fn provider_name(self, declaration: &Value) -> Option<String> {
        let sub = declaration.get(self.declaration_field())?;
        if sub.is_null() {
            return None;
        }
        let name = match self {
            ProviderKind::Model => sub.get("provider"),
            _ => sub.get("identity").and_then(|i| i.get("name")),
        };
        name.and_then(Value::as_str).map(str::to_string)
    }
}

/// A tenant's provider row (tool, model, agent strategy, datasource or trigger).
#[derive(Debug, Clone)]
pub struct ProviderRecord {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub tenant_id: String,
    pub provider: String,
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
    pub declaration: Option<String>,
}

/// One plugin entry of an install task, exactly as serialised on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskPluginEntry {
    pub plugin_unique_identifier: String,
    pub labels: Value,
    pub icon: String,
    pub icon_dark: String,
    pub plugin_id: String,
    pub status: String,
    pub message: String,
    pub source: String,
}

/// An install task (`install_tasks`).
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub status: String,
    pub tenant_id: String,
    pub total_plugins: i64,
    pub completed_plugins: i64,
    pub plugins: Vec<TaskPluginEntry>,
}

/// Result of [`Db::install_plugin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed { installation_id: String },
    AlreadyInstalled,
}

/// What the caller needs to know after an installation row was removed or re-pointed.
#[derive(Debug, Clone)]
pub struct ReleasedPlugin {
    pub plugin_unique_identifier: String,
    /// True when no tenant uses that version any more (its runtime can stop).
    pub unreferenced: bool,
}

/// Install-task statuses as on the wire.
pub mod task_status {
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const SUCCESS: &str = "success";
    pub const FAILED: &str = "failed";
}

pub(super) const INSTALLATION_COLUMNS: &str = "{u:i.id} AS id, {t:i.created_at} AS created_at, {t:i.updated_at} AS updated_at, \
     {u:i.tenant_id} AS tenant_id, i.plugin_id, i.plugin_unique_identifier, i.runtime_type, i.endpoints_setups, \
     i.endpoints_active, i.source, i.meta, d.declaration";

/// `plugins.remote_declaration` of a version that does not run remotely: upstream's ORM serialises the
/// zero value of its declaration struct there (docs/upstream-schema.md §3).
pub const EMPTY_REMOTE_DECLARATION: &str = concat!(
    r#"{"version":"","type":"","author":"","name":"","label":{"en_US":""},"description":{"en_US":""},"#,
    r#""icon":"","icon_dark":"","resource":{"memory":0},"plugins":{"tools":null,"models":null,"#,
    r#""endpoints":null,"agent_strategies":null,"datasources":null,"triggers":null},"meta":{"version":"","#,
    r#""arch":null,"runner":{"language":"","version":"","entrypoint":""},"minimum_dify_version":null},"#,
    r#""tags":null,"created_at":"0001-01-01T00:00:00Z","verified":false}"#,
);

const PROVIDER_COLUMNS: &str = "{u:p.id} AS id, {t:p.created_at} AS created_at, {t:p.updated_at} AS updated_at, \
     {u:p.tenant_id} AS tenant_id, p.provider, p.plugin_unique_identifier, p.plugin_id, d.declaration";

pub(super) const TASK_COLUMNS: &str = "{u:t.id} AS id, {t:t.created_at} AS created_at, {t:t.updated_at} AS updated_at, t.status, \
     {u:t.tenant_id} AS tenant_id, t.total_plugins, t.completed_plugins, t.plugins";

/// Columns upstream declares nullable: rows the upstream daemon wrote may hold NULL there.
fn nullable_text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    Ok(opt_text(row, column)?.unwrap_or_default())
}

fn nullable_int(row: &AnyRow, column: &str) -> Result<i64, StoreError> {
    match row.try_get::<Option<i64>, _>(column) {
        Ok(v) => Ok(v.unwrap_or(0)),
        Err(_) => Ok(int(row, column)?),
    }
}

/// Records read back with the tenant's stored key (see [`Db::tenant_key`]) carry the caller's id.
trait ForCaller {
    fn for_caller(self, tenant_id: &str) -> Self;
}

impl ForCaller for InstallationRecord {
    fn for_caller(mut self, tenant_id: &str) -> Self {
        self.tenant_id = tenant_id.to_string();
        self
    }
}

impl ForCaller for ProviderRecord {
    fn for_caller(mut self, tenant_id: &str) -> Self {
        self.tenant_id = tenant_id.to_string();
        self
    }
}

impl ForCaller for TaskRecord {
    fn for_caller(mut self, tenant_id: &str) -> Self {
        self.tenant_id = tenant_id.to_string();
        self
    }
}

pub(super) fn installation_from_row(row: &AnyRow) -> Result<InstallationRecord, StoreError> {
    let meta_text = nullable_text(row, "meta")?;
    Ok(InstallationRecord {
        id: text(row, "id")?,
        created_at: nullable_text(row, "created_at")?,
        updated_at: nullable_text(row, "updated_at")?,
        tenant_id: nullable_text(row, "tenant_id")?,
        plugin_id: nullable_text(row, "plugin_id")?,
        plugin_unique_identifier: nullable_text(row, "plugin_unique_identifier")?,
        runtime_type: nullable_text(row, "runtime_type")?,
        endpoints_setups: nullable_int(row, "endpoints_setups")?,
        endpoints_active: nullable_int(row, "endpoints_active")?,
        source: nullable_text(row, "source")?,
        meta: serde_json::from_str(&meta_text).unwrap_or_else(|_| Value::Object(Default::default())),
        declaration: opt_text(row, "declaration")?,
    })
}

fn provider_from_row(row: &AnyRow) -> Result<ProviderRecord, StoreError> {
    Ok(ProviderRecord {
        id: text(row, "id")?,
        created_at: nullable_text(row, "created_at")?,
        updated_at: nullable_text(row, "updated_at")?,
        tenant_id: text(row, "tenant_id")?,
        provider: text(row, "provider")?,
        plugin_unique_identifier: nullable_text(row, "plugin_unique_identifier")?,
        plugin_id: nullable_text(row, "plugin_id")?,
        declaration: opt_text(row, "declaration")?,
    })
}

pub(super) fn task_from_row(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    let plugins_text = opt_text(row, "plugins")?.unwrap_or_else(|| "[]".into());
    let plugins = serde_json::from_str::<Option<Vec<TaskPluginEntry>>>(&plugins_text)
        .map_err(|e| StoreError::Corrupt { what: "install_tasks.plugins", reason: e.to_string() })?
        .unwrap_or_default();
    Ok(TaskRecord {
        id: text(row, "id")?,
        created_at: nullable_text(row, "created_at")?,
        updated_at: nullable_text(row, "updated_at")?,
        status: text(row, "status")?,
        tenant_id: text(row, "tenant_id")?,
        total_plugins: int(row, "total_plugins")?,
        completed_plugins: int(row, "completed_plugins")?,
        plugins,
    })
}

/// Cuts a message longer than 1024 characters to its first and last 512, joined by `...`.
pub fn truncate_task_message(message: &str) -> String {
    let chars: Vec<char> = message.chars().collect();
    if chars.len() <= 1024 {
        return message.to_string();
    }
    let head: String = chars[..512].iter().collect();
    let tail: String = chars[chars.len() - 512..].iter().collect();
    format!("{head}...{tail}")
}

fn offset(page: i64, page_size: i64) -> i64 {
    (page.max(1) - 1) * page_size
}

/// What [`Db::install_plugin`] writes: one tenant's installation of one plugin version.
#[derive(Debug, Clone, Copy)]
pub struct NewInstallation<'a> {
    pub tenant_id: &'a str,
    /// The plugin unique identifier being installed.
    pub uid: &'a str,
    /// `author/name`.
    pub plugin_id: &'a str,
    pub runtime_type: RuntimeType,
    pub source: &'a str,
    pub meta: &'a Value,
    /// Provider rows the declaration implies.
    pub providers: &'a [(ProviderKind, String)],
}

/// A `plugins` row as an install or upgrade creates it.
#[derive(Debug, Clone, Copy)]
struct PluginRow<'a> {
    uid: &'a str,
    plugin_id: &'a str,
    install_type: RuntimeType,
    source: &'a str,
    manifest_type: &'a str,
}

/// What [`Db::upgrade_installation`] writes: a tenant's installation moved to another version.
#[derive(Debug, Clone, Copy)]
pub struct InstallationUpgrade<'a> {
    pub tenant_id: &'a str,
    pub original_uid: &'a str,
    pub new_uid: &'a str,
    /// `author/name` of the new version.
    pub plugin_id: &'a str,
    pub runtime_type: RuntimeType,
    pub source: &'a str,
    pub meta: &'a Value,
    /// Provider rows the new declaration implies.
    pub providers: &'a [(ProviderKind, String)],
}

impl Db {
    // ---------------------------------------------------------------- declarations

    /// Stores the declaration of an uploaded package (idempotent: an existing row is kept).
    pub async fn save_declaration(&self, uid: &str, plugin_id: &str, declaration: &str) -> Result<(), StoreError> {
        let now = now_timestamp();
        sqlx::query(&self.insert_ignore(
            "plugin_declarations (id, created_at, updated_at, plugin_unique_identifier, plugin_id, declaration)",
            "(?u, ?t, ?t, ?, ?, ?)",
        ))
        .bind(new_row_id())
        .bind(&now)
        .bind(&now)
        .bind(uid)
        .bind(plugin_id)
        .bind(declaration)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The stored declaration JSON of a version, if it was uploaded.
    pub async fn declaration(&self, uid: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT declaration FROM plugin_declarations WHERE plugin_unique_identifier = ?"))
            .bind(uid)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(text(&r, "declaration")?),
            None => None,
        })
    }

    /// Deletes the stored declaration of a version (a debugging plugin's, once it is gone).
    pub async fn delete_declaration(&self, uid: &str) -> Result<(), StoreError> {
        let result = sqlx::query(&self.sql("DELETE FROM plugin_declarations WHERE plugin_unique_identifier = ?"))
            .bind(uid)
            .execute(self.pool())
            .await;
        // Cached installations carry the declaration they joined; which tenants hold `uid` is not known here.
        self.installations_written();
        result?;
        Ok(())
    }

    // ---------------------------------------------------------------- serverless runtimes

    /// The function a serverless version runs on (its `serverless_runtimes` row): `(url, name)`.
    pub async fn serverless_runtime(&self, uid: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT function_url, function_name FROM serverless_runtimes WHERE plugin_unique_identifier = ?"))
            .bind(uid)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((opt_text(&r, "function_url")?.unwrap_or_default(), opt_text(&r, "function_name")?.unwrap_or_default())))
            .transpose()
    }

    /// Records the function a serverless version runs on (install, reinstall, switch-endpoint), as
    /// upstream's row: type `serverless`, the identifier's checksum.
    pub async fn save_serverless_runtime(
        &self,
        uid: &str,
        checksum: &str,
        function_url: &str,
        function_name: &str,
    ) -> Result<(), StoreError> {
        let now = now_timestamp();
        let updated = sqlx::query(&self.sql(
            "UPDATE serverless_runtimes SET updated_at = ?t, function_url = ?, function_name = ?, type = ?, checksum = ? \
             WHERE plugin_unique_identifier = ?",
        ))
        .bind(&now)
        .bind(function_url)
        .bind(function_name)
        .bind(RuntimeType::Serverless.as_str())
        .bind(checksum)
        .bind(uid)
        .execute(self.pool())
        .await?;
        if updated.rows_affected() > 0 {
            return Ok(());
        }
        sqlx::query(&self.sql(
            "INSERT INTO serverless_runtimes (id, created_at, updated_at, plugin_unique_identifier, function_url, function_name, \
             type, checksum) VALUES (?u, ?t, ?t, ?, ?, ?, ?, ?)",
        ))
        .bind(new_row_id())
        .bind(&now)
        .bind(&now)
        .bind(uid)
        .bind(function_url)
        .bind(function_name)
        .bind(RuntimeType::Serverless.as_str())
        .bind(checksum)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- plugins

    /// The `plugins` row of a version (present while at least one tenant has it installed).
    pub async fn plugin(&self, uid: &str) -> Result<Option<PluginRecord>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT {u:id} AS id, plugin_unique_identifier, plugin_id, refers, install_type, source FROM plugins \
             WHERE plugin_unique_identifier = ?",
        ))
        .bind(uid)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(PluginRecord {
                id: text(&r, "id")?,
                plugin_unique_identifier: nullable_text(&r, "plugin_unique_identifier")?,
                plugin_id: nullable_text(&r, "plugin_id")?,
                refers: nullable_int(&r, "refers")?,
                install_type: nullable_text(&r, "install_type")?,
                source: nullable_text(&r, "source")?,
            })
        })
        .transpose()
    }

    /// Every `plugins` row (consistency checks and the runtime watchdog).
    pub async fn all_plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let rows =
            sqlx::query(&self.sql("SELECT {u:id} AS id, plugin_unique_identifier, plugin_id, refers, install_type, source FROM plugins"))
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(PluginRecord {
                    id: text(r, "id")?,
                    plugin_unique_identifier: nullable_text(r, "plugin_unique_identifier")?,
                    plugin_id: nullable_text(r, "plugin_id")?,
                    refers: nullable_int(r, "refers")?,
                    install_type: nullable_text(r, "install_type")?,
                    source: nullable_text(r, "source")?,
                })
            })
            .collect()
    }

    // ---------------------------------------------------------------- installations

    /// The tenant's installation of `plugin_id` (any version).
    pub async fn installation_by_plugin_id(&self, tenant_id: &str, plugin_id: &str) -> Result<Option<InstallationRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations i LEFT JOIN plugin_declarations d \
             ON d.plugin_unique_identifier = i.plugin_unique_identifier WHERE i.tenant_id = ?u AND i.plugin_id = ?"
        )))
        .bind(tenant_id)
        .bind(plugin_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(installation_from_row).transpose()?.map(|r| r.for_caller(caller_tenant)))
    }

    /// The tenant's installations, newest first, with the tenant's total count.
    pub async fn list_installations(
        &self,
        tenant_id: &str,
        page: i64,
        page_size: i64,
    ) -> Result<(Vec<InstallationRecord>, i64), StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations i LEFT JOIN plugin_declarations d \
             ON d.plugin_unique_identifier = i.plugin_unique_identifier WHERE i.tenant_id = ?u \
             ORDER BY i.created_at DESC, i.id DESC LIMIT ? OFFSET ?"
        )))
        .bind(tenant_id)
        .bind(page_size)
        .bind(offset(page, page_size))
        .fetch_all(self.pool())
        .await?;
        let total_row = sqlx::query(&self.sql("SELECT COUNT(*) AS n FROM plugin_installations WHERE tenant_id = ?u"))
            .bind(tenant_id)
            .fetch_one(self.pool())
            .await?;
        let list = rows
            .iter()
            .map(installation_from_row)
            .map(|r| r.map(|r| r.for_caller(caller_tenant)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((list, int(&total_row, "n")?))
    }

    /// Every installation of the tenant, newest first.
    pub async fn all_installations(&self, tenant_id: &str) -> Result<Vec<InstallationRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations i LEFT JOIN plugin_declarations d \
             ON d.plugin_unique_identifier = i.plugin_unique_identifier WHERE i.tenant_id = ?u \
             ORDER BY i.created_at DESC, i.id DESC"
        )))
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| installation_from_row(r).map(|r| r.for_caller(caller_tenant))).collect()
    }

    /// Installation rows of any tenant (consistency checks).
    pub async fn count_installations_of(&self, uid: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(&self.sql("SELECT COUNT(*) AS n FROM plugin_installations WHERE plugin_unique_identifier = ?"))
            .bind(uid)
            .fetch_one(self.pool())
            .await?;
        Ok(int(&row, "n")?)
    }

    /// Installs `new.uid` for the tenant: plugin row (reference count +1), installation row and
    /// provider rows, all in one transaction. A tenant that already has the plugin id keeps its
    /// installation.
    pub async fn install_plugin(&self, new: &NewInstallation<'_>) -> Result<InstallOutcome, StoreError> {
        self.check_tenant_id(new.tenant_id)?;
        let result = self.try_install(new).await;
        self.installation_written(new.tenant_id, new.plugin_id);
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // A concurrent install for the same tenant wins through the unique key; report it as such.
                if self.installation_by_plugin_id(new.tenant_id, new.plugin_id).await?.is_some() {
                    Ok(InstallOutcome::AlreadyInstalled)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn try_install(&self, new: &NewInstallation<'_>) -> Result<InstallOutcome, StoreError> {
        let NewInstallation { tenant_id, uid, plugin_id, runtime_type, source, meta, providers } = *new;
        let tenant_id = &self.tenant_key(tenant_id);
        let now = now_timestamp();
        let mut tx = self.pool().begin().await?;
        let existing = sqlx::query(&self.sql("SELECT plugin_id FROM plugin_installations WHERE tenant_id = ?u AND plugin_id = ?"))
            .bind(tenant_id)
            .bind(plugin_id)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            tx.commit().await?;
            return Ok(InstallOutcome::AlreadyInstalled);
        }
        // Upstream's install leaves `manifest_type` empty on the rows it creates.
        let row = PluginRow { uid, plugin_id, install_type: runtime_type, source, manifest_type: "" };
        self.add_plugin_reference(&mut tx, row, &now, true).await?;
        let installation_id = new_row_id();
        sqlx::query(&self.sql(
            "INSERT INTO plugin_installations (id, created_at, updated_at, tenant_id, plugin_id, \
             plugin_unique_identifier, runtime_type, endpoints_setups, endpoints_active, source, meta) \
             VALUES (?u, ?t, ?t, ?u, ?, ?, ?, 0, 0, ?, ?)",
        ))
        .bind(&installation_id)
        .bind(&now)
        .bind(&now)
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(uid)
        .bind(runtime_type.as_str())
        .bind(source)
        .bind(meta.to_string())
        .execute(&mut *tx)
        .await?;
        self.insert_providers(&mut tx, tenant_id, uid, plugin_id, providers, &now).await?;
        tx.commit().await?;
        Ok(InstallOutcome::Installed { installation_id })
    }

    /// Adds one reference to `row.uid`, creating its `plugins` row when missing.
    async fn add_plugin_reference(
        &self,
        tx: &mut Transaction<'_, Any>,
        row: PluginRow<'_>,
        now: &str,
        touch: bool,
    ) -> Result<(), StoreError> {
        let PluginRow { uid, plugin_id, install_type, source, manifest_type } = row;
        let insert = self.insert_ignore(
            "plugins (id, created_at, updated_at, plugin_unique_identifier, plugin_id, refers, install_type, \
             manifest_type, remote_declaration, source)",
            if install_type == RuntimeType::Remote { "(?u, ?t, ?t, ?, ?, 0, ?, ?, NULL, ?)" } else { "(?u, ?t, ?t, ?, ?, 0, ?, ?, ?, ?)" },
        );
        let mut insert = sqlx::query(&insert)
            .bind(new_row_id())
            .bind(now)
            .bind(now)
            .bind(uid)
            .bind(plugin_id)
            .bind(install_type.as_str())
            .bind(manifest_type);
        if install_type != RuntimeType::Remote {
            insert = insert.bind(EMPTY_REMOTE_DECLARATION);
        }
        insert.bind(source).execute(&mut **tx).await?;
        self.move_plugin_references(tx, uid, 1, now, touch).await
    }

    /// Adds `delta` to the references of `uid`. With `touch`, `updated_at` becomes `now` (upstream's
    /// install and uninstall save the whole row); without, it stays (upstream's upgrade updates the
    /// counter column alone).
    async fn move_plugin_references(
        &self,
        tx: &mut Transaction<'_, Any>,
        uid: &str,
        delta: i64,
        now: &str,
        touch: bool,
    ) -> Result<(), StoreError> {
        let statement = if touch {
            "UPDATE plugins SET refers = refers + ?, updated_at = ?t WHERE plugin_unique_identifier = ?"
        } else {
            "UPDATE plugins SET refers = refers + ? WHERE plugin_unique_identifier = ?"
        };
        let statement = self.sql(statement);
        let mut update = sqlx::query(&statement).bind(delta);
        if touch {
            update = update.bind(now);
        }
        update.bind(uid).execute(&mut **tx).await?;
        Ok(())
    }

    /// Drops one reference to `uid`; deletes the plugins row at zero. Returns whether it reached zero.
    async fn release_plugin_reference(&self, tx: &mut Transaction<'_, Any>, uid: &str, now: &str, touch: bool) -> Result<bool, StoreError> {
        self.move_plugin_references(tx, uid, -1, now, touch).await?;
        let row = sqlx::query(&self.sql("SELECT refers, install_type FROM plugins WHERE plugin_unique_identifier = ?"))
            .bind(uid)
            .fetch_optional(&mut **tx)
            .await?;
        let (refers, install_type) = match row {
            Some(r) => (int(&r, "refers")?, opt_text(&r, "install_type")?),
            None => (0, None),
        };
        if refers > 0 {
            return Ok(false);
        }
        // As upstream: the version's declaration row goes with its last installation (it is decoded
        // again from the stored package on the next install), and a serverless version's runtime row.
        let mut statements = vec!["DELETE FROM plugins WHERE plugin_unique_identifier = ?"];
        statements.push("DELETE FROM plugin_declarations WHERE plugin_unique_identifier = ?");
        if install_type.as_deref() == Some(RuntimeType::Serverless.as_str()) {
            statements.push("DELETE FROM serverless_runtimes WHERE plugin_unique_identifier = ?");
        }
        for statement in statements {
            sqlx::query(&self.sql(statement)).bind(uid).execute(&mut **tx).await?;
        }
        Ok(true)
    }

    async fn insert_providers(
        &self,
        tx: &mut Transaction<'_, Any>,
        tenant_id: &str,
        uid: &str,
        plugin_id: &str,
        providers: &[(ProviderKind, String)],
        now: &str,
    ) -> Result<(), StoreError> {
        for (kind, provider) in providers {
            sqlx::query(&self.sql(&format!(
                "INSERT INTO {} (id, created_at, updated_at, tenant_id, provider, plugin_unique_identifier, plugin_id) \
                 VALUES (?u, ?t, ?t, ?u, ?, ?, ?)",
                kind.table()
            )))
            .bind(new_row_id())
            .bind(now)
            .bind(now)
            .bind(tenant_id)
            .bind(provider)
            .bind(uid)
            .bind(plugin_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn delete_providers(&self, tx: &mut Transaction<'_, Any>, tenant_id: &str, plugin_id: &str) -> Result<(), StoreError> {
        for kind in ProviderKind::ALL {
            sqlx::query(&self.sql(&format!("DELETE FROM {} WHERE tenant_id = ?u AND plugin_id = ?", kind.table())))
                .bind(tenant_id)
                .bind(plugin_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Whether `id` can name a row of an upstream table (UUID primary keys on PostgreSQL): other
    /// ids name no row.
    fn row_id_possible(&self, id: &str) -> bool {
        self.kind() != crate::config::DbKind::Postgres || (id.len() == 36 && uuid::Uuid::try_parse(id).is_ok())
    }

    /// Removes the tenant's installation `installation_id` and its provider rows, dropping one
    /// reference. `None` when the tenant has no such installation.
    pub async fn uninstall(&self, tenant_id: &str, installation_id: &str) -> Result<Option<ReleasedPlugin>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        if !self.row_id_possible(installation_id) {
            return Ok(None);
        }
        let result = self.try_uninstall(tenant_id, installation_id).await;
        match &result {
            Ok(Some((plugin_id, _))) => self.installation_written(caller_tenant, plugin_id),
            Ok(None) => {}
            // Whether the row went is unknown: forget everything rather than keep it.
            Err(_) => self.installations_written(),
        }
        result.map(|released| released.map(|(_, released)| released))
    }

    async fn try_uninstall(&self, tenant_id: &str, installation_id: &str) -> Result<Option<(String, ReleasedPlugin)>, StoreError> {
        let now = now_timestamp();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&self.sql(&format!(
            "SELECT plugin_id, plugin_unique_identifier FROM plugin_installations WHERE id = ?u AND tenant_id = ?u{}",
            self.for_update()
        )))
        .bind(installation_id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let plugin_id = text(&row, "plugin_id")?;
        let uid = text(&row, "plugin_unique_identifier")?;
        sqlx::query(&self.sql("DELETE FROM plugin_installations WHERE id = ?u"))
            .bind(installation_id)
            .execute(&mut *tx)
            .await?;
        self.delete_providers(&mut tx, tenant_id, &plugin_id).await?;
        let unreferenced = self.release_plugin_reference(&mut tx, &uid, &now, true).await?;
        tx.commit().await?;
        Ok(Some((plugin_id, ReleasedPlugin { plugin_unique_identifier: uid, unreferenced })))
    }

    /// Re-points the tenant's installation of `upgrade.original_uid` to `upgrade.new_uid` (reference
    /// counts and provider rows move in the same transaction). `None` when the tenant has no
    /// installation with exactly `original_uid`.
    pub async fn upgrade_installation(&self, upgrade: &InstallationUpgrade<'_>) -> Result<Option<ReleasedPlugin>, StoreError> {
        self.check_tenant_id(upgrade.tenant_id)?;
        let result = self.try_upgrade_installation(upgrade).await;
        let InstallationUpgrade { tenant_id, original_uid, plugin_id, .. } = *upgrade;
        // The row is found by identifier, so its plugin id may differ from `plugin_id` in theory: drop both.
        self.installation_written(tenant_id, plugin_id);
        if let Some((original_plugin_id, _)) = original_uid.split_once(':') {
            if original_plugin_id != plugin_id {
                self.installation_written(tenant_id, original_plugin_id);
            }
        }
        result
    }

    async fn try_upgrade_installation(&self, upgrade: &InstallationUpgrade<'_>) -> Result<Option<ReleasedPlugin>, StoreError> {
        let InstallationUpgrade { tenant_id, original_uid, new_uid, plugin_id, runtime_type, source, meta, providers } = *upgrade;
        let tenant_id = &self.tenant_key(tenant_id);
        let now = now_timestamp();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {{u:id}} AS id FROM plugin_installations WHERE tenant_id = ?u AND plugin_unique_identifier = ?{}",
            self.for_update()
        )))
        .bind(tenant_id)
        .bind(original_uid)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let installation_id = text(&row, "id")?;
        sqlx::query(&self.sql(
            "UPDATE plugin_installations SET plugin_unique_identifier = ?, source = ?, meta = ?, updated_at = ?t \
             WHERE id = ?u",
        ))
        .bind(new_uid)
        .bind(source)
        .bind(meta.to_string())
        .bind(&now)
        .bind(&installation_id)
        .execute(&mut *tx)
        .await?;
        let unreferenced = self.release_plugin_reference(&mut tx, original_uid, &now, false).await?;
        // Upstream's upgrade creates a missing version's row with `manifest_type` `plugin`.
        let row = PluginRow { uid: new_uid, plugin_id, install_type: runtime_type, source, manifest_type: "plugin" };
        self.add_plugin_reference(&mut tx, row, &now, false).await?;
        self.delete_providers(&mut tx, tenant_id, plugin_id).await?;
        self.insert_providers(&mut tx, tenant_id, new_uid, plugin_id, providers, &now).await?;
        tx.commit().await?;
        Ok(Some(ReleasedPlugin { plugin_unique_identifier: original_uid.to_string(), unreferenced }))
    }

    // ---------------------------------------------------------------- providers

    /// The tenant's provider rows of one kind, newest first.
    pub async fn list_providers(
        &self,
        kind: ProviderKind,
        tenant_id: &str,
        page: i64,
        page_size: i64,
    ) -> Result<Vec<ProviderRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM {} p LEFT JOIN plugin_declarations d \
             ON d.plugin_unique_identifier = p.plugin_unique_identifier WHERE p.tenant_id = ?u \
             ORDER BY p.created_at DESC, p.id DESC LIMIT ? OFFSET ?",
            kind.table()
        )))
        .bind(tenant_id)
        .bind(page_size)
        .bind(offset(page, page_size))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| provider_from_row(r).map(|r| r.for_caller(caller_tenant))).collect()
    }

    /// The tenant's provider row of one kind for `plugin_id`.
    pub async fn provider(&self, kind: ProviderKind, tenant_id: &str, plugin_id: &str) -> Result<Option<ProviderRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM {} p LEFT JOIN plugin_declarations d \
             ON d.plugin_unique_identifier = p.plugin_unique_identifier WHERE p.tenant_id = ?u AND p.plugin_id = ?",
            kind.table()
        )))
        .bind(tenant_id)
        .bind(plugin_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(provider_from_row).transpose()?.map(|r| r.for_caller(caller_tenant)))
    }

    /// Provider rows of any tenant pointing at `uid` (consistency checks).
    pub async fn count_providers_of(&self, uid: &str) -> Result<i64, StoreError> {
        let mut total = 0;
        for kind in ProviderKind::ALL {
            let row = sqlx::query(&self.sql(&format!("SELECT COUNT(*) AS n FROM {} WHERE plugin_unique_identifier = ?", kind.table())))
                .bind(uid)
                .fetch_one(self.pool())
                .await?;
            total += int(&row, "n")?;
        }
        Ok(total)
    }

    // ---------------------------------------------------------------- install tasks

    /// Creates a running task owned by `owner_node`, failing by itself after `budget_secs`. The task
    /// row is upstream's; its lease, deadline and retention live in `install_task_leases`.
    pub async fn create_task(
        &self,
        tenant_id: &str,
        plugins: &[TaskPluginEntry],
        owner_node: &str,
        lease_secs: i64,
        budget_secs: i64,
    ) -> Result<String, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let tenant_id = &self.tenant_key(tenant_id);
        let id = new_row_id();
        let now = chrono::Utc::now();
        let ts = super::timestamp_of(now);
        let lease = super::timestamp_of(now + chrono::Duration::seconds(lease_secs));
        let deadline = super::timestamp_of(now + chrono::Duration::seconds(budget_secs));
        let plugins_json = serde_json::to_string(plugins).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool().begin().await?;
        sqlx::query(&self.sql(
            "INSERT INTO install_tasks (id, created_at, updated_at, status, tenant_id, total_plugins, \
             completed_plugins, plugins) VALUES (?u, ?t, ?t, ?, ?u, ?, 0, ?)",
        ))
        .bind(&id)
        .bind(&ts)
        .bind(&ts)
        .bind(task_status::RUNNING)
        .bind(tenant_id)
        .bind(plugins.len() as i64)
        .bind(plugins_json)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.sql(
            "INSERT INTO install_task_leases (task_id, owner_node, lease_until, deadline_at, expires_at) \
             VALUES (?, ?, ?, ?, NULL)",
        ))
        .bind(&id)
        .bind(owner_node)
        .bind(lease)
        .bind(deadline)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A live (not expired) task of the tenant.
    pub async fn task(&self, tenant_id: &str, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        if !self.row_id_possible(task_id) {
            return Ok(None);
        }
        let row = sqlx::query(&self.sql(&format!(
            "SELECT {TASK_COLUMNS} FROM install_tasks t LEFT JOIN install_task_leases l ON l.task_id = {{u:t.id}} \
             WHERE t.id = ?u AND t.tenant_id = ?u AND (l.expires_at IS NULL OR l.expires_at > ?)"
        )))
        .bind(task_id)
        .bind(tenant_id)
        .bind(now_timestamp())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(task_from_row).transpose()?.map(|r| r.for_caller(caller_tenant)))
    }

    /// The tenant's live tasks, newest first.
    pub async fn list_tasks(&self, tenant_id: &str, page: i64, page_size: i64) -> Result<Vec<TaskRecord>, StoreError> {
        self.check_tenant_id(tenant_id)?;
        let (caller_tenant, tenant_id) = (tenant_id, &self.tenant_key(tenant_id));
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {TASK_COLUMNS} FROM install_tasks t LEFT JOIN install_task_leases l ON l.task_id = {{u:t.id}} \
             WHERE t.tenant_id = ?u AND (l.expires_at IS NULL OR l.expires_at > ?) \
             ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?"
        )))
        .bind(tenant_id)
        .bind(now_timestamp())
        .bind(page_size)
        .bind(offset(page, page_size))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| task_from_row(r).map(|r| r.for_caller(caller_tenant))).collect()
    }

    pub async fn delete_task(&self, tenant_id: &str, task_id: &str) -> Result<(), StoreError> {
        self.check_tenant_id(tenant_id)?;
        let tenant_id = &self.tenant_key(tenant_id);
        if !self.row_id_possible(task_id) {
            return Ok(());
        }
        let result = sqlx::query(&self.sql("DELETE FROM install_tasks WHERE id = ?u AND tenant_id = ?u"))
            .bind(task_id)
            .bind(tenant_id)
            .execute(self.pool())
            .await?;
        if result.rows_affected() > 0 {
            self.delete_task_lease(task_id).await?;
        }
        Ok(())
    }

    async fn delete_task_lease(&self, task_id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM install_task_leases WHERE task_id = ?"))
            .bind(task_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_all_tasks(&self, tenant_id: &str) -> Result<(), StoreError> {
        self.check_tenant_id(tenant_id)?;
        let tenant_id = &self.tenant_key(tenant_id);
        let rows = sqlx::query(&self.sql("SELECT {u:id} AS id FROM install_tasks WHERE tenant_id = ?u"))
            .bind(tenant_id)
            .fetch_all(self.pool())
            .await?;
        sqlx::query(&self.sql("DELETE FROM install_tasks WHERE tenant_id = ?u"))
            .bind(tenant_id)
            .execute(self.pool())
            .await?;
        for row in &rows {
            self.delete_task_lease(&text(row, "id")?).await?;
        }
        Ok(())
    }

    /// Removes one plugin entry of a task; deletes the task when the remaining entries all succeeded
    /// (or none remain). A missing task is not an error.
    pub async fn delete_task_entry(&self, tenant_id: &str, task_id: &str, uid: &str) -> Result<(), StoreError> {
        self.check_tenant_id(tenant_id)?;
        let tenant_id = &self.tenant_key(tenant_id);
        if !self.row_id_possible(task_id) {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            &self.sql(&format!("SELECT {TASK_COLUMNS} FROM install_tasks t WHERE t.id = ?u AND t.tenant_id = ?u{}", self.for_update())),
        )
        .bind(task_id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(());
        };
        let mut task = task_from_row(&row)?;
        task.plugins.retain(|p| p.plugin_unique_identifier != uid);
        let deleted = task.plugins.iter().all(|p| p.status == task_status::SUCCESS);
        if deleted {
            sqlx::query(&self.sql("DELETE FROM install_tasks WHERE id = ?u")).bind(task_id).execute(&mut *tx).await?;
        } else {
            sqlx::query(&self.sql("UPDATE install_tasks SET plugins = ?, updated_at = ?t WHERE id = ?u"))
                .bind(serde_json::to_string(&task.plugins).unwrap_or_else(|_| "[]".into()))
                .bind(now_timestamp())
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if deleted {
            self.delete_task_lease(task_id).await?;
        }
        Ok(())
    }

    /// Sets one entry's status and message under a row lock and recomputes the task status:
    /// success increments `completed_plugins`, failure fails the task, all-success makes the task
    /// succeed and sets its expiry to now + `success_retention_secs`. `status = None` changes only
    /// the message. Entries already finished are not moved back by a late progress message.
    pub async fn update_task_entry(
        &self,
        task_id: &str,
        uid: &str,
        status: Option<&str>,
        message: &str,
        success_retention_secs: i64,
    ) -> Result<(), StoreError> {
        if !self.row_id_possible(task_id) {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&self.sql(&format!("SELECT {TASK_COLUMNS} FROM install_tasks t WHERE t.id = ?u{}", self.for_update())))
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(());
        };
        let mut task = task_from_row(&row)?;
        let message = truncate_task_message(message);
        for entry in task.plugins.iter_mut().filter(|p| p.plugin_unique_identifier == uid) {
            let finished = entry.status == task_status::SUCCESS || entry.status == task_status::FAILED;
            match status {
                None => {
                    if !finished {
                        entry.message = message.clone();
                    }
                }
                Some(new_status) => {
                    if entry.status == task_status::SUCCESS && new_status != task_status::SUCCESS {
                        task.completed_plugins -= 1;
                    }
                    if entry.status != task_status::SUCCESS && new_status == task_status::SUCCESS {
                        task.completed_plugins += 1;
                    }
                    entry.status = new_status.to_string();
                    entry.message = message.clone();
                }
            }
        }
        let mut expires_at: Option<String> = None;
        if task.plugins.iter().any(|p| p.status == task_status::FAILED) {
            task.status = task_status::FAILED.to_string();
        } else if !task.plugins.is_empty() && task.plugins.iter().all(|p| p.status == task_status::SUCCESS) {
            task.status = task_status::SUCCESS.to_string();
            expires_at = Some(super::timestamp_of(chrono::Utc::now() + chrono::Duration::seconds(success_retention_secs)));
        }
        sqlx::query(&self.sql("UPDATE install_tasks SET status = ?, completed_plugins = ?, plugins = ?, updated_at = ?t WHERE id = ?u"))
            .bind(&task.status)
            .bind(task.completed_plugins)
            .bind(serde_json::to_string(&task.plugins).unwrap_or_else(|_| "[]".into()))
            .bind(now_timestamp())
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.sql("UPDATE install_task_leases SET expires_at = ? WHERE task_id = ?"))
            .bind(expires_at)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Extends the lease of this node's unfinished tasks.
    pub async fn renew_task_leases(&self, owner_node: &str, lease_secs: i64) -> Result<(), StoreError> {
        let lease = super::timestamp_of(chrono::Utc::now() + chrono::Duration::seconds(lease_secs));
        let rows = sqlx::query(&self.sql(
            "SELECT l.task_id FROM install_task_leases l JOIN install_tasks t ON l.task_id = {u:t.id} \
             WHERE l.owner_node = ? AND t.status IN ('pending', 'running')",
        ))
        .bind(owner_node)
        .fetch_all(self.pool())
        .await?;
        for row in &rows {
            sqlx::query(&self.sql("UPDATE install_task_leases SET lease_until = ? WHERE task_id = ?"))
                .bind(&lease)
                .bind(text(row, "task_id")?)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Fails every unfinished entry of the tasks selected by `condition` (a WHERE fragment on the
    /// lease row `l` with `?` parameters bound from `params`), with `message`. Returns how many tasks
    /// were failed.
    async fn fail_tasks_where(&self, condition: &str, params: &[String], message: &str) -> Result<usize, StoreError> {
        let mut stmt = String::from(
            "SELECT l.task_id FROM install_task_leases l JOIN install_tasks t ON l.task_id = {u:t.id} \
             WHERE t.status IN ('pending', 'running') AND ",
        );
        stmt.push_str(condition);
        let stmt = self.sql(&stmt);
        let mut q = sqlx::query(&stmt);
        for p in params {
            q = q.bind(p.clone());
        }
        let rows = q.fetch_all(self.pool()).await?;
        let ids: Vec<String> = rows.iter().map(|r| text(r, "task_id")).collect::<Result<_, _>>()?;
        for id in &ids {
            self.fail_unfinished_entries(id, message).await?;
        }
        Ok(ids.len())
    }

    async fn fail_unfinished_entries(&self, task_id: &str, message: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&self.sql(&format!("SELECT {TASK_COLUMNS} FROM install_tasks t WHERE t.id = ?u{}", self.for_update())))
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(());
        };
        let mut task = task_from_row(&row)?;
        if task.status != task_status::PENDING && task.status != task_status::RUNNING {
            tx.commit().await?;
            return Ok(());
        }
        for entry in task.plugins.iter_mut() {
            if entry.status != task_status::SUCCESS && entry.status != task_status::FAILED {
                entry.status = task_status::FAILED.to_string();
                entry.message = message.to_string();
            }
        }
        sqlx::query(&self.sql("UPDATE install_tasks SET status = ?, plugins = ?, updated_at = ?t WHERE id = ?u"))
            .bind(task_status::FAILED)
            .bind(serde_json::to_string(&task.plugins).unwrap_or_else(|_| "[]".into()))
            .bind(now_timestamp())
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Fails the unfinished tasks of a node that is known to be gone (e.g. this node's previous run).
    pub async fn fail_tasks_of_node(&self, owner_node: &str, message: &str) -> Result<usize, StoreError> {
        self.fail_tasks_where("l.owner_node = ?", &[owner_node.to_string()], message).await
    }

    /// Fails unfinished tasks whose owner stopped renewing its lease or whose install budget ran out.
    pub async fn fail_stale_tasks(&self, message: &str) -> Result<usize, StoreError> {
        let now = now_timestamp();
        self.fail_tasks_where("(l.lease_until < ? OR l.deadline_at < ?)", &[now.clone(), now], message).await
    }

    /// Deletes tasks past their retention.
    pub async fn delete_expired_tasks(&self) -> Result<(), StoreError> {
        let rows = sqlx::query(&self.sql("SELECT task_id FROM install_task_leases WHERE expires_at IS NOT NULL AND expires_at < ?"))
            .bind(now_timestamp())
            .fetch_all(self.pool())
            .await?;
        for row in &rows {
            let task_id = text(row, "task_id")?;
            if self.row_id_possible(&task_id) {
                sqlx::query(&self.sql("DELETE FROM install_tasks WHERE id = ?u")).bind(&task_id).execute(self.pool()).await?;
            }
            self.delete_task_lease(&task_id).await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- readmes

    /// Cached readmes of a version: `(language, content)`.
    pub async fn readmes(&self, uid: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            &self.sql("SELECT language, content FROM plugin_readme_records WHERE plugin_unique_identifier = ? ORDER BY language"),
        )
        .bind(uid)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((text(r, "language")?, text(r, "content")?))).collect()
    }

    /// Caches readmes of a version (idempotent: languages already stored are kept).
    pub async fn save_readmes(&self, uid: &str, readmes: &[(String, String)]) -> Result<(), StoreError> {
        let now = now_timestamp();
        let stored: Vec<String> = self.readmes(uid).await?.into_iter().map(|(language, _)| language).collect();
        for (language, content) in readmes {
            if stored.contains(language) {
                continue;
            }
            sqlx::query(&self.sql(
                "INSERT INTO plugin_readme_records (id, created_at, updated_at, plugin_unique_identifier, language, \
                 content) VALUES (?u, ?t, ?t, ?, ?, ?)",
            ))
            .bind(new_row_id())
            .bind(&now)
            .bind(&now)
            .bind(uid)
            .bind(language)
            .bind(content)
            .execute(self.pool())
            .await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- debugging keys

    /// The tenant's live debugging key (creating one if none), with its expiry pushed to now + ttl.
    pub async fn debugging_key(&self, tenant_id: &str, ttl_secs: i64) -> Result<String, StoreError> {
        let now = now_timestamp();
        let expires = super::timestamp_of(chrono::Utc::now() + chrono::Duration::seconds(ttl_secs));
        for _ in 0..3 {
            let row = sqlx::query(&self.sql("SELECT debug_key, expires_at FROM debugging_keys WHERE tenant_id = ?"))
                .bind(tenant_id)
                .fetch_optional(self.pool())
                .await?;
            if let Some(row) = row {
                let key = text(&row, "debug_key")?;
                if text(&row, "expires_at")? > now {
                    sqlx::query(&self.sql("UPDATE debugging_keys SET expires_at = ?, updated_at = ? WHERE tenant_id = ?"))
                        .bind(&expires)
                        .bind(&now)
                        .bind(tenant_id)
                        .execute(self.pool())
                        .await?;
                    return Ok(key);
                }
                sqlx::query(&self.sql("DELETE FROM debugging_keys WHERE tenant_id = ? AND debug_key = ?"))
                    .bind(tenant_id)
                    .bind(&key)
                    .execute(self.pool())
                    .await?;
            }
            let key = uuid::Uuid::new_v4().to_string();
            let inserted = sqlx::query(
                &self.insert_ignore("debugging_keys (id, created_at, updated_at, tenant_id, debug_key, expires_at)", "(?, ?, ?, ?, ?, ?)"),
            )
            .bind(new_row_id())
            .bind(&now)
            .bind(&now)
            .bind(tenant_id)
            .bind(&key)
            .bind(&expires)
            .execute(self.pool())
            .await?;
            if inserted.rows_affected() > 0 {
                return Ok(key);
            }
            // Another request created the tenant's key first: read it on the next pass.
        }
        Err(StoreError::Corrupt { what: "debugging_keys", reason: "could not create a key".into() })
    }

    /// The tenant owning a live debugging key (for the debug server).
    pub async fn tenant_of_debugging_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT tenant_id FROM debugging_keys WHERE debug_key = ? AND expires_at > ?"))
            .bind(key)
            .bind(now_timestamp())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| text(&r, "tenant_id").map_err(StoreError::from)).transpose()
    }
}
