//! The SQL connection pool over SQLite, PostgreSQL or MySQL, schema migrations and small helpers
//! that hide dialect differences (placeholders, text decoding, insert-if-absent).

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::config::{DbKind, Settings};

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt stored value in {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("{0}")]
    Blob(#[from] super::BlobError),
    /// A tenant id the database cannot hold (PostgreSQL keeps tenant ids in UUID columns, MySQL in
    /// 36-character ones). The caller's request is at fault, not the store.
    #[error("invalid tenant id {tenant_id:?}: {reason}")]
    InvalidTenantId { tenant_id: String, reason: &'static str },
}

/// Connection pool bounds (`DB_MAX_OPEN_CONNS`, `DB_CONN_MAX_LIFETIME`, `DB_CONNECT_TIMEOUT`).
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub max_connections: u32,
    pub max_lifetime_secs: u64,
    pub connect_timeout_secs: u64,
}

/// Told about committed writes of installation rows (or of a declaration an installation joins), so
/// that a cache of those rows kept above the store can drop what changed. Called after the commit.
pub trait InstallationWriteListener: Send + Sync + 'static {
    /// The tenant's installation of `plugin_id` (`author/name`) changed.
    fn installation_written(&self, tenant_id: &str, plugin_id: &str);
    /// Installations changed whose keys are unknown.
    fn installations_written(&self);
}

/// The daemon's database: one pool and the dialect it speaks.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    kind: DbKind,
    /// Notified by the installation writers in `records.rs` after they commit.
    installation_listener: Option<std::sync::Arc<dyn InstallationWriteListener>>,
}

/// The schema of each dialect, embedded in the binary: the upstream daemon's tables, then this
/// daemon's own side tables. Every statement is idempotent (see [`Db::migrate`]).
const SQLITE_SCHEMA: [&str; 2] =
    [include_str!("../../migrations/sqlite/schema.sql"), include_str!("../../migrations/sqlite/daemon_tables.sql")];
const POSTGRES_SCHEMA: [&str; 2] =
    [include_str!("../../migrations/postgres/schema.sql"), include_str!("../../migrations/postgres/daemon_tables.sql")];
const MYSQL_SCHEMA: [&str; 2] =
    [include_str!("../../migrations/mysql/schema.sql"), include_str!("../../migrations/mysql/daemon_tables.sql")];

/// Namespace of the name-based UUIDs that stand for non-UUID tenant ids (see [`Db::tenant_key`]).
pub const TENANT_NAMESPACE: &str = "dify-plugin-daemon-rs/tenant/";

/// Whether `s` is a UUID in its hyphenated 36-character form.
pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// The statements of a schema file: comment lines dropped, split at `;` ending a line.
fn statements(file: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in file.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut current).trim().trim_end_matches(';').to_string());
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn escape_url_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Db {
    /// Connects according to the settings (creating the database when the server allows it) and
    /// applies pending migrations.
    pub async fn connect(settings: &Settings) -> Result<Db, StoreError> {
        let kind = settings.db_kind().map_err(|e| StoreError::Corrupt { what: "DB_TYPE", reason: e.to_string() })?;
        let url = match kind {
            DbKind::Sqlite => format!("sqlite://{}?mode=rwc", settings.db_sqlite_path),
            DbKind::Postgres | DbKind::Mysql => {
                let scheme = if kind == DbKind::Postgres { "postgres" } else { "mysql" };
                let port = settings.db_port.unwrap_or(if kind == DbKind::Postgres { 5432 } else { 3306 });
                let host = settings.db_host.clone().unwrap_or_else(|| "localhost".into());
                let auth = if settings.db_password.is_empty() {
                    escape_url_part(&settings.db_username)
                } else {
                    format!("{}:{}", escape_url_part(&settings.db_username), escape_url_part(&settings.db_password))
                };
                let base = format!("{scheme}://{auth}@{host}:{port}");
                let mut params = Vec::new();
                if kind == DbKind::Postgres {
                    params.push(format!("sslmode={}", settings.db_ssl_mode));
                    if let Some(extras) = settings.db_extras.as_deref() {
                        params.push(format!("options={}", escape_url_part(extras)));
                    }
                } else if settings.db_ssl_mode == "require" {
                    params.push("ssl-mode=required".to_string());
                }
                let default_db = settings.db_default_database.clone().unwrap_or_else(|| {
                    if kind == DbKind::Postgres {
                        "postgres".into()
                    } else {
                        "mysql".into()
                    }
                });
                let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
                Self::create_database_if_missing(
                    kind,
                    &format!("{base}/{default_db}{query}"),
                    &settings.db_database,
                    settings.db_connect_timeout,
                )
                .await?;
                format!("{base}/{}{query}", settings.db_database)
            }
        };
        let db = Self::connect_url_with(
            kind,
            &url,
            PoolLimits {
                max_connections: settings.db_max_open_conns,
                max_lifetime_secs: settings.db_conn_max_lifetime,
                connect_timeout_secs: settings.db_connect_timeout,
            },
        )
        .await?;
        db.migrate().await?;
        Ok(db)
    }

    async fn create_database_if_missing(kind: DbKind, admin_url: &str, database: &str, timeout_secs: u64) -> Result<(), StoreError> {
        if !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Names we cannot quote safely are expected to exist already.
            return Ok(());
        }
        sqlx::any::install_default_drivers();
        let Ok(admin) = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(timeout_secs.max(1)))
            .connect(admin_url)
            .await
        else {
            // No admin access: the database must exist; connecting to it will report the real error.
            return Ok(());
        };
        let exists = match kind {
            DbKind::Postgres => sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&admin)
                .await?
                .is_some(),
            _ => sqlx::query("SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = ?")
                .bind(database)
                .fetch_optional(&admin)
                .await?
                .is_some(),
        };
        if !exists {
            let stmt = match kind {
                DbKind::Postgres => format!("CREATE DATABASE \"{database}\""),
                _ => format!("CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4"),
            };
            // A concurrent creator may win; the later connect decides.
            let _ = sqlx::query(&stmt).execute(&admin).await;
        }
        admin.close().await;
        Ok(())
    }

    /// Connects to a database URL of the given dialect (no migrations).
    pub async fn connect_url(kind: DbKind, url: &str, max_conns: u32, connect_timeout: u64) -> Result<Db, StoreError> {
        let limits = PoolLimits { max_connections: max_conns, max_lifetime_secs: 3600, connect_timeout_secs: connect_timeout };
        Self::connect_url_with(kind, url, limits).await
    }

    /// Connects to a database URL with explicit pool limits (no migrations).
    pub async fn connect_url_with(kind: DbKind, url: &str, limits: PoolLimits) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        // SQLite allows one writer; a single connection serialises transactions instead of failing
        // them with "database is locked".
        let max = if kind == DbKind::Sqlite { 1 } else { limits.max_connections.max(2) };
        let mut options = AnyPoolOptions::new()
            .max_connections(max)
            .idle_timeout(Duration::from_secs(600))
            .max_lifetime(Duration::from_secs(limits.max_lifetime_secs.max(1)))
            .acquire_timeout(Duration::from_secs(limits.connect_timeout_secs.max(1) * 6));
        if kind == DbKind::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout=10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous=NORMAL").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        Ok(Db { pool, kind, installation_listener: None })
    }

    /// Brings the schema to the upstream daemon's tables plus this daemon's side tables: creates what
    /// is missing and never changes or drops what exists, so it adopts a database the upstream daemon
    /// created and is a no-op when run again. A database in this daemon's earlier own schema is
    /// converted first (see `legacy.rs`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        super::legacy::detach_if_needed(self).await?;
        let files = match self.kind {
            DbKind::Sqlite => SQLITE_SCHEMA,
            DbKind::Postgres => POSTGRES_SCHEMA,
            DbKind::Mysql => MYSQL_SCHEMA,
        };
        for file in files {
            for statement in statements(file) {
                sqlx::query(&statement).execute(&self.pool).await?;
            }
        }
        super::legacy::copy_if_pending(self).await?;
        Ok(())
    }

    /// Whether `table` exists in the connected database.
    pub(crate) async fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        let stmt = match self.kind {
            DbKind::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
            DbKind::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_name = $1"
            }
            DbKind::Mysql => "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        };
        let row = sqlx::query(stmt).bind(table).fetch_one(&self.pool).await?;
        Ok(int(&row, "n")? > 0)
    }

    /// The value stored for `tenant_id` in upstream's UUID-typed tenant columns (installations,
    /// provider rows, install tasks). On PostgreSQL and MySQL a tenant id that is not a UUID (e.g.
    /// `my-workspace`) is stored as a name-based UUID derived from it (SHA-256 of
    /// [`TENANT_NAMESPACE`] and the id, version 8), so every id works and the same id always maps to
    /// the same row; UUIDs and every id on SQLite are stored as given. Records read back carry the
    /// caller's id, not the stored one.
    pub fn tenant_key(&self, tenant_id: &str) -> String {
        if self.kind == DbKind::Sqlite || is_uuid(tenant_id) {
            return tenant_id.to_string();
        }
        use sha2::Digest;
        let digest = sha2::Sha256::new().chain_update(TENANT_NAMESPACE.as_bytes()).chain_update(tenant_id).finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        uuid::Uuid::from_bytes(bytes).to_string()
    }

    /// Checks that the database can hold `tenant_id` in upstream's `endpoints.tenant_id`
    /// (`varchar(64)` on PostgreSQL and MySQL); SQLite holds anything.
    pub fn check_tenant_id(&self, tenant_id: &str) -> Result<(), StoreError> {
        if self.kind != DbKind::Sqlite && tenant_id.chars().count() > 64 {
            return Err(StoreError::InvalidTenantId {
                tenant_id: tenant_id.to_string(),
                reason: "tenant ids are at most 64 characters on PostgreSQL and MySQL",
            });
        }
        Ok(())
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// This store with `listener` told about every committed installation write (replacing any
    /// earlier listener). Set it before cloning the store: clones made earlier keep the old one.
    pub fn with_installation_listener(mut self, listener: std::sync::Arc<dyn InstallationWriteListener>) -> Db {
        self.installation_listener = Some(listener);
        self
    }

    /// Tells the listener that the tenant's installation of `plugin_id` changed.
    pub(crate) fn installation_written(&self, tenant_id: &str, plugin_id: &str) {
        if let Some(listener) = &self.installation_listener {
            listener.installation_written(tenant_id, plugin_id);
        }
    }

    /// Tells the listener that installations changed whose keys are unknown.
    pub(crate) fn installations_written(&self) {
        if let Some(listener) = &self.installation_listener {
            listener.installations_written();
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Adapts a statement written with `?` placeholders to the dialect (`$1, $2...` on PostgreSQL).
    /// Statements must not contain `?`, `{` or `}` inside literals. Markers for the columns whose type
    /// differs between dialects (the stores keep timestamps as RFC 3339 text with nine fractional
    /// digits, see [`super::now_timestamp`], and ids as text):
    /// - `?u`: a parameter for a UUID column (cast on PostgreSQL);
    /// - `?t`: a timestamp parameter for a timestamp column (converted on PostgreSQL and MySQL);
    /// - `{t:expr}`: a timestamp column read back as that text;
    /// - `{u:expr}`: a UUID column read back as text;
    /// - `{b:expr}`: a boolean column read back as a type every driver decodes.
    pub fn sql(&self, statement: &str) -> String {
        let mut out = String::with_capacity(statement.len() + 32);
        let mut n = 0;
        let mut rest = statement;
        while let Some(c) = rest.chars().next() {
            if c == '?' {
                n += 1;
                let param = if self.kind == DbKind::Postgres { format!("${n}") } else { "?".to_string() };
                let kind = rest[1..].chars().next();
                match kind {
                    Some('u') => {
                        out.push_str(&self.uuid_param(&param));
                        rest = &rest[2..];
                    }
                    Some('t') => {
                        out.push_str(&self.timestamp_param(&param));
                        rest = &rest[2..];
                    }
                    _ => {
                        out.push_str(&param);
                        rest = &rest[1..];
                    }
                }
            } else if c == '{' && (rest.starts_with("{t:") || rest.starts_with("{u:") || rest.starts_with("{b:")) {
                let end = rest.find('}').expect("unterminated column marker");
                let expr = &rest[3..end];
                if rest.starts_with("{t:") {
                    out.push_str(&self.timestamp_column(expr));
                } else if rest.starts_with("{u:") {
                    out.push_str(&self.uuid_column(expr));
                } else if self.kind == DbKind::Mysql {
                    // MySQL's tinyint(1) is a type the generic driver cannot decode.
                    out.push_str(&format!("CAST({expr} AS SIGNED)"));
                } else {
                    out.push_str(expr);
                }
                rest = &rest[end + 1..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    fn uuid_param(&self, param: &str) -> String {
        match self.kind {
            DbKind::Postgres => format!("CAST({param} AS uuid)"),
            _ => param.to_string(),
        }
    }

    fn timestamp_param(&self, param: &str) -> String {
        match self.kind {
            DbKind::Postgres => format!("CAST({param} AS timestamptz)"),
            DbKind::Mysql => format!("CAST(REPLACE(REPLACE(LEFT({param}, 26), 'T', ' '), 'Z', '') AS DATETIME(6))"),
            DbKind::Sqlite => param.to_string(),
        }
    }

    fn timestamp_column(&self, expr: &str) -> String {
        match self.kind {
            DbKind::Postgres => format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"000Z\"')"),
            DbKind::Mysql => format!("DATE_FORMAT({expr}, '%Y-%m-%dT%H:%i:%s.%f000Z')"),
            DbKind::Sqlite => expr.to_string(),
        }
    }

    fn uuid_column(&self, expr: &str) -> String {
        match self.kind {
            DbKind::Postgres => format!("CAST({expr} AS TEXT)"),
            _ => expr.to_string(),
        }
    }

    /// `INSERT` that silently does nothing when a unique key already holds the row.
    pub fn insert_ignore(&self, table_and_columns: &str, values: &str) -> String {
        match self.kind {
            DbKind::Mysql => self.sql(&format!("INSERT IGNORE INTO {table_and_columns} VALUES {values}")),
            _ => self.sql(&format!("INSERT INTO {table_and_columns} VALUES {values} ON CONFLICT DO NOTHING")),
        }
    }

    /// `SELECT ... FOR UPDATE` suffix where the dialect supports row locks (SQLite serialises anyway).
    pub fn for_update(&self) -> &'static str {
        match self.kind {
            DbKind::Sqlite => "",
            _ => " FOR UPDATE",
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Reads a text column; MySQL reports long text as a blob, so bytes are accepted too.
pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    match row.try_get::<String, _>(column) {
        Ok(s) => Ok(s),
        Err(first) => match row.try_get::<Vec<u8>, _>(column) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e))),
            Err(_) => Err(first),
        },
    }
}

/// Like [`text`] for a nullable column.
pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(column) {
        Ok(s) => Ok(s),
        Err(first) => match row.try_get::<Option<Vec<u8>>, _>(column) {
            Ok(Some(bytes)) => String::from_utf8(bytes).map(Some).map_err(|e| sqlx::Error::Decode(Box::new(e))),
            Ok(None) => Ok(None),
            Err(_) => Err(first),
        },
    }
}

/// Reads a boolean column (PostgreSQL `boolean`, MySQL `tinyint(1)`, SQLite integer).
pub(crate) fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(column) {
        Ok(v) => Ok(v),
        Err(_) => Ok(int(row, column)? != 0),
    }
}

/// Reads an integer column of any width.
pub(crate) fn int(row: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    match row.try_get::<i64, _>(column) {
        Ok(v) => Ok(v),
        Err(first) => match row.try_get::<i32, _>(column) {
            Ok(v) => Ok(v as i64),
            Err(_) => match text(row, column) {
                Ok(s) => i64::from_str(s.trim()).map_err(|_| first),
                Err(_) => Err(first),
            },
        },
    }
}
