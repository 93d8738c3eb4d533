//! The upstream daemon's database as this daemon meets it, on PostgreSQL and MariaDB/MySQL: the
//! fixture in `tests/fixtures/upstream-db` (the DDL the upstream ORM runs, derived from its models,
//! and rows as its code writes them) stands in for a Go daemon's database.
//!
//! - Schema equality: this daemon's migrations on an empty database give exactly the fixture's tables,
//!   columns, types, nullability, defaults and indexes, read back from the database catalogue.
//! - Adoption: on the fixture database the migrations change no upstream table, and the store reads
//!   the Go daemon's installation, provider row, endpoint (by hook id) and task.
//! - Writes: install, upgrade and uninstall leave the rows upstream's code would leave.
//! - Conversion: a database in this daemon's earlier own schema keeps its data (also on SQLite).
//! - The real daemon binary serves a Go daemon's database and storage (plugin, task, endpoint, stored values).

use crate::common::{self, Backend, TestDb};

use dify_daemon::config::DbKind;
use dify_daemon::store::{Db, InstallOutcome, InstallationUpgrade, NewInstallation, ProviderKind, RuntimeType, StoreError};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

const TENANT: &str = "9d1f6a52-3c4b-4e8f-a1b2-c3d4e5f60718";
const UID: &str = "langgenius/dummy:0.0.1@4f8a2e1b9c0d3e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f";
const HOOK_ID: &str = "7c3b0e0a1f2d4c5b9e8a7d6c5b4a3f21";
const TASK_ID: &str = "0190a3c1-0000-7000-8000-000000000006";
/// The tables upstream's auto-migration creates.
const UPSTREAM_TABLES: [&str; 13] = [
    "plugins",
    "plugin_installations",
    "plugin_declarations",
    "endpoints",
    "serverless_runtimes",
    "datasource_installations",
    "tool_installations",
    "ai_model_installations",
    "install_tasks",
    "tenant_storages",
    "agent_strategy_installations",
    "trigger_installations",
    "plugin_readme_records",
];

fn fixture_text(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream-db").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn kind(backend: Backend) -> DbKind {
    match backend {
        Backend::Sqlite => DbKind::Sqlite,
        Backend::Postgres => DbKind::Postgres,
        Backend::Mysql => DbKind::Mysql,
    }
}

/// The database's URL; a SQLite database lives in `dir` (server databases ignore it).
fn url_in(db: &TestDb, dir: &std::path::Path) -> String {
    match db.backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("daemon.db").display()),
        _ => db.url(dir),
    }
}

async fn raw_pool_in(db: &TestDb, dir: &std::path::Path) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new().max_connections(1).connect(&url_in(db, dir)).await.expect("connect")
}

async fn raw_pool(db: &TestDb) -> AnyPool {
    raw_pool_in(db, std::path::Path::new(".")).await
}

async fn store(db: &TestDb) -> Db {
    store_in(db, std::path::Path::new(".")).await
}

async fn store_in(db: &TestDb, dir: &std::path::Path) -> Db {
    let store = Db::connect_url(kind(db.backend), &url_in(db, dir), 4, 5).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// Runs a script of `;`-terminated statements (comment lines skipped), rendering `TS('...')`.
async fn run_script(pool: &AnyPool, backend: Backend, script: &str) {
    let mut statement = String::new();
    for line in script.lines() {
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        statement.push_str(line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            let mut sql = statement.trim().trim_end_matches(';').to_string();
            while let Some(start) = sql.find("TS('") {
                let end = start + sql[start..].find("')").expect("TS literal") + 2;
                let value = &sql[start + 4..end - 2];
                let rendered = match backend {
                    Backend::Postgres => format!("TIMESTAMPTZ '{value}+00'"),
                    _ => format!("'{value}'"),
                };
                sql.replace_range(start..end, &rendered);
            }
            sqlx::query(&sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            statement.clear();
        }
    }
}

fn text(row: &AnyRow, i: usize) -> String {
    match row.try_get::<Option<String>, _>(i) {
        Ok(v) => v.unwrap_or_else(|| "<null>".into()),
        Err(_) => row
            .try_get::<Option<Vec<u8>>, _>(i)
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_else(|| "<null>".into()))
            .unwrap_or_else(|e| panic!("column {i}: {e}")),
    }
}

/// Columns (name, type, length, nullability, default) and indexes (name, uniqueness, columns) of the
/// upstream tables, one line each, sorted.
async fn catalogue(pool: &AnyPool, backend: Backend) -> Vec<String> {
    let (columns, indexes) = match backend {
        Backend::Postgres => (
            "SELECT concat_ws('|', table_name::text, column_name::text, data_type::text, \
             coalesce(character_maximum_length::text, '-'), is_nullable::text, coalesce(column_default::text, '-')) \
             FROM information_schema.columns WHERE table_schema = current_schema()",
            "SELECT concat_ws('|', tablename::text, indexname::text, indexdef::text) FROM pg_indexes \
             WHERE schemaname = current_schema()",
        ),
        _ => (
            "SELECT CONCAT_WS('|', TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(COLUMN_DEFAULT, '-')) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()",
            "SELECT CONCAT_WS('|', TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME) \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()",
        ),
    };
    let mut out = Vec::new();
    for (what, stmt) in [("column", columns), ("index", indexes)] {
        for row in sqlx::query(stmt).fetch_all(pool).await.expect("catalogue") {
            let line = text(&row, 0);
            let table = line.split('|').next().unwrap_or_default().to_string();
            if UPSTREAM_TABLES.contains(&table.as_str()) {
                out.push(format!("{what}|{line}"));
            }
        }
    }
    out.sort();
    out
}

async fn load_fixture(db: &TestDb) -> AnyPool {
    let pool = raw_pool(db).await;
    let ddl = fixture_text(if db.backend == Backend::Postgres { "postgres.sql" } else { "mysql.sql" });
    run_script(&pool, db.backend, &ddl).await;
    pool
}

async fn schema_equals_the_upstream_fixture(db: &TestDb) {
    let Some(fixture_db) = TestDb::create(db.backend).await else { return };
    let fixture = load_fixture(&fixture_db).await;
    let expected = catalogue(&fixture, db.backend).await;
    assert!(expected.len() > 100, "the fixture catalogue is complete: {}", expected.len());
    for table in UPSTREAM_TABLES {
        assert!(expected.iter().any(|l| l.starts_with(&format!("column|{table}|"))), "{table} in the fixture");
    }
    let ours = store(db).await;
    let actual = catalogue(&raw_pool(db).await, db.backend).await;
    let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).collect();
    let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing from ours: {missing:#?}\nonly in ours: {extra:#?}");
    ours.close().await;
    fixture.close().await;
    fixture_db.drop_now().await;
}

async fn adopts_and_serves_an_upstream_database(db: &TestDb) {
    let pool = load_fixture(db).await;
    run_script(&pool, db.backend, &fixture_text("rows.sql")).await;
    let before = catalogue(&pool, db.backend).await;
    let store = store(db).await;
    store.migrate().await.expect("migrating twice is a no-op");
    assert_eq!(catalogue(&pool, db.backend).await, before, "adoption changes no upstream table");

    // The Go daemon's installation, provider row, endpoint and task.
    let (list, total) = store.list_installations(TENANT, 1, 10).await.unwrap();
    assert_eq!(total, 1);
    let installation = &list[0];
    assert_eq!(installation.id, "0190a3c1-0000-7000-8000-000000000003");
    assert_eq!(installation.tenant_id, TENANT);
    assert_eq!(installation.plugin_unique_identifier, UID);
    assert_eq!(installation.runtime_type, "local");
    assert_eq!((installation.endpoints_setups, installation.endpoints_active), (1, 1));
    assert_eq!(installation.created_at, "2025-06-01T10:00:01.000000000Z");
    assert!(installation.declaration.as_deref().unwrap().contains("\"dummy\""));
    let tool = store.provider(ProviderKind::Tool, TENANT, "langgenius/dummy").await.unwrap().expect("tool row");
    assert_eq!(tool.provider, "dummy");
    let endpoint = store.endpoint_by_hook_id(HOOK_ID).await.unwrap().expect("endpoint by its old hook id");
    assert!(endpoint.enabled);
    assert_eq!(endpoint.tenant_id, TENANT);
    assert_eq!(endpoint.expired_at, "2050-01-01T00:00:00Z");
    assert_eq!(endpoint.settings, r#"{"api_key":"encrypted"}"#);
    let task = store.task(TENANT, TASK_ID).await.unwrap().expect("the Go daemon's task");
    assert_eq!((task.status.as_str(), task.total_plugins, task.completed_plugins), ("success", 1, 1));
    assert_eq!(task.plugins[0].plugin_unique_identifier, UID);
    assert_eq!(store.list_tasks(TENANT, 1, 10).await.unwrap().len(), 1);

    // A tenant id that is not a UUID is stored as a name-based UUID on both databases and reads back
    // as given; one longer than upstream's endpoint column is a typed error (rendered as a 400).
    assert_eq!(store.list_installations("my-workspace", 1, 10).await.unwrap().1, 0);
    assert_ne!(store.tenant_key("my-workspace"), "my-workspace");
    assert!(uuid::Uuid::try_parse(&store.tenant_key("my-workspace")).is_ok());
    assert_eq!(store.tenant_key(TENANT), TENANT);
    let err = store.list_installations(&"x".repeat(65), 1, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTenantId { .. }), "{err}");
    assert!(store.task(TENANT, "not-a-uuid").await.unwrap().is_none());

    // Install a second plugin, as upstream would: plugins row (refers 1), installation, model row.
    let uid2 = "langgenius/openai:0.1.0@aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";
    let meta = serde_json::json!({});
    let providers = [(ProviderKind::Model, "openai".to_string())];
    let outcome = store
        .install_plugin(&NewInstallation {
            tenant_id: TENANT,
            uid: uid2,
            plugin_id: "langgenius/openai",
            runtime_type: RuntimeType::Local,
            source: "package",
            meta: &meta,
            providers: &providers,
        })
        .await
        .unwrap();
    let InstallOutcome::Installed { installation_id } = outcome else { panic!("installed") };
    assert!(uuid::Uuid::try_parse(&installation_id).is_ok());
    let q = |sql: &str| {
        if db.backend == Backend::Postgres {
            sql.replace('?', "$1")
                .replace("AS CHAR(20)", "AS TEXT")
                .replace("AS CHAR(36)", "AS TEXT")
                .replace("AS CHAR(5)", "AS TEXT")
        } else {
            sql.to_string()
        }
    };
    let row = sqlx::query(&q("SELECT CAST(refers AS CHAR(20)), install_type, manifest_type, source, \
         CAST(created_at IS NOT NULL AS CHAR(5)) FROM plugins WHERE plugin_unique_identifier = ?"))
    .bind(uid2)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(text(&row, 0), "1");
    // Upstream's install sets the runtime type and source and leaves `manifest_type` empty.
    assert_eq!((text(&row, 1), text(&row, 2), text(&row, 3)), ("local".into(), "".into(), "package".into()));
    let row =
        sqlx::query(&q("SELECT CAST(tenant_id AS CHAR(36)), plugin_id, runtime_type, CAST(endpoints_setups AS CHAR(20)), source, meta \
         FROM plugin_installations WHERE plugin_unique_identifier = ?"))
        .bind(uid2)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((0..6).map(|i| text(&row, i)).collect::<Vec<_>>(), [TENANT, "langgenius/openai", "local", "0", "package", "{}"]);
    let row = sqlx::query(&q("SELECT CAST(tenant_id AS CHAR(36)), provider, plugin_id FROM ai_model_installations \
         WHERE plugin_unique_identifier = ?"))
    .bind(uid2)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((0..3).map(|i| text(&row, i)).collect::<Vec<_>>(), [TENANT, "openai", "langgenius/openai"]);

    // Upgrade the Go daemon's installation: the old version's plugins row goes with its last
    // reference, the installation and the tool row point at the new version.
    let uid3 = "langgenius/dummy:0.0.2@1111111111111111111111111111111111111111111111111111111111111111";
    let tools = [(ProviderKind::Tool, "dummy".to_string())];
    let released = store
        .upgrade_installation(&InstallationUpgrade {
            tenant_id: TENANT,
            original_uid: UID,
            new_uid: uid3,
            plugin_id: "langgenius/dummy",
            runtime_type: RuntimeType::Local,
            source: "package",
            meta: &meta,
            providers: &tools,
        })
        .await
        .unwrap()
        .expect("upgraded");
    assert!(released.unreferenced);
    let count = |table: &'static str, uid: &'static str| {
        let pool = pool.clone();
        let stmt = q(&format!("SELECT COUNT(*) FROM {table} WHERE plugin_unique_identifier = ?"));
        async move { sqlx::query(&stmt).bind(uid).fetch_one(&pool).await.unwrap().get::<i64, _>(0) }
    };
    assert_eq!(count("plugins", UID).await, 0);
    assert_eq!(count("plugin_declarations", UID).await, 0, "the declaration row goes with the last reference");
    assert_eq!(count("plugins", uid3).await, 1);
    let manifest_type = sqlx::query(&q("SELECT manifest_type FROM plugins WHERE plugin_unique_identifier = ?"))
        .bind(uid3)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(text(&manifest_type, 0), "plugin", "upstream's upgrade creates the new version's row as a plugin");
    assert_eq!(count("plugin_installations", uid3).await, 1);
    assert_eq!(count("tool_installations", UID).await, 0);
    assert_eq!(count("tool_installations", uid3).await, 1);
    let upgraded = store.installation_by_plugin_id(TENANT, "langgenius/dummy").await.unwrap().unwrap();
    assert_eq!(upgraded.id, installation.id, "an upgrade keeps the installation row");
    assert_eq!((upgraded.endpoints_setups, upgraded.endpoints_active), (1, 1));

    // Uninstall: installation, provider rows and the unreferenced plugins row go.
    let released = store.uninstall(TENANT, &installation_id).await.unwrap().expect("uninstalled");
    assert!(released.unreferenced);
    assert_eq!(count("plugins", uid2).await, 0);
    assert_eq!(count("plugin_installations", uid2).await, 0);
    assert_eq!(count("ai_model_installations", uid2).await, 0);

    // Endpoint counters move on the upstream installation row.
    assert!(store.delete_endpoint(TENANT, &endpoint.id).await.unwrap().is_some());
    let after = store.installation_by_plugin_id(TENANT, "langgenius/dummy").await.unwrap().unwrap();
    assert_eq!((after.endpoints_setups, after.endpoints_active), (0, 0));
    store.close().await;
    pool.close().await;
}

/// What upstream's Go serialisation of its zero-value declaration struct gives (its fields in
/// declaration order, nested zero values, `null` for nil slices and pointers without `omitempty`).
const GO_ZERO_DECLARATION: &str = "{\"version\":\"\",\"type\":\"\",\"author\":\"\",\"name\":\"\",\
\"label\":{\"en_US\":\"\"},\"description\":{\"en_US\":\"\"},\"icon\":\"\",\"icon_dark\":\"\",\
\"resource\":{\"memory\":0},\"plugins\":{\"tools\":null,\"models\":null,\"endpoints\":null,\
\"agent_strategies\":null,\"datasources\":null,\"triggers\":null},\"meta\":{\"version\":\"\",\"arch\":null,\
\"runner\":{\"language\":\"\",\"version\":\"\",\"entrypoint\":\"\"},\"minimum_dify_version\":null},\
\"tags\":null,\"created_at\":\"0001-01-01T00:00:00Z\",\"verified\":false}";

/// Upstream's write rules on the `plugins` rows, on an empty database: the zero declaration in
/// `remote_declaration` of a version not running remotely (NULL for a remote one), `updated_at`
/// set by install and uninstall but left alone by an upgrade's reference counting, and the
/// declaration (and serverless runtime) row deleted with a version's last installation.
async fn write_rules(db: &TestDb) {
    let store = store(db).await;
    let pool = raw_pool(db).await;
    let meta = serde_json::json!({});
    let (tenant_a, tenant_b) = ("0190a3c1-0000-7000-8000-0000000000a1", "0190a3c1-0000-7000-8000-0000000000b2");
    let v1 = "langgenius/rules:0.0.1@1111111111111111111111111111111111111111111111111111111111111111";
    let v2 = "langgenius/rules:0.0.2@2222222222222222222222222222222222222222222222222222222222222222";
    let remote = "langgenius/remote:0.0.1@3333333333333333333333333333333333333333333333333333333333333333";
    let install = |tenant: &'static str, uid: &'static str, plugin_id: &'static str, runtime_type: RuntimeType| {
        let (store, meta) = (&store, &meta);
        async move {
            let outcome = store
                .install_plugin(&NewInstallation {
                    tenant_id: tenant,
                    uid,
                    plugin_id,
                    runtime_type,
                    source: "package",
                    meta,
                    providers: &[],
                })
                .await
                .unwrap();
            let InstallOutcome::Installed { installation_id } = outcome else { panic!("installed") };
            installation_id
        }
    };
    let upgrade = |tenant: &'static str, from: &'static str, to: &'static str| {
        let (store, meta) = (&store, &meta);
        async move {
            store
                .upgrade_installation(&InstallationUpgrade {
                    tenant_id: tenant,
                    original_uid: from,
                    new_uid: to,
                    plugin_id: "langgenius/rules",
                    runtime_type: RuntimeType::Local,
                    source: "package",
                    meta,
                    providers: &[],
                })
                .await
                .unwrap()
                .expect("upgraded")
        }
    };
    // (refers, updated_at, remote_declaration) of a version's row, None when it has none.
    let plugin_row = |uid: &'static str| {
        let pool = pool.clone();
        let sql = dialect_params(
            db.backend,
            &format!(
                "SELECT CAST(refers AS {0}), CAST(updated_at AS {0}), remote_declaration FROM plugins \
                 WHERE plugin_unique_identifier = ?",
                if db.backend == Backend::Postgres { "TEXT" } else { "CHAR(40)" }
            ),
        );
        async move {
            let row = sqlx::query(&sql).bind(uid).fetch_optional(&pool).await.unwrap()?;
            Some((text(&row, 0), text(&row, 1), text(&row, 2)))
        }
    };
    let age = |uid: &'static str| {
        let pool = pool.clone();
        let sql = dialect_params(
            db.backend,
            &format!(
                "UPDATE plugins SET updated_at = {} WHERE plugin_unique_identifier = ?",
                if db.backend == Backend::Postgres { "TIMESTAMPTZ '2020-01-01 00:00:00+00'" } else { "'2020-01-01 00:00:00'" }
            ),
        );
        async move {
            sqlx::query(&sql).bind(uid).execute(&pool).await.unwrap();
        }
    };

    // Rule 1: the zero declaration for a local version, NULL for a remote one.
    install(tenant_a, v1, "langgenius/rules", RuntimeType::Local).await;
    install(tenant_b, v1, "langgenius/rules", RuntimeType::Local).await;
    let (refers, _, declaration) = plugin_row(v1).await.expect("v1 row");
    assert_eq!((refers.as_str(), declaration.as_str()), ("2", GO_ZERO_DECLARATION));
    install(tenant_a, remote, "langgenius/remote", RuntimeType::Remote).await;
    assert_eq!(plugin_row(remote).await.expect("remote row").2, "<null>");

    // Rule 2: an upgrade moves the counters without touching `updated_at`, on the version left and on
    // the version joined; the row it creates has the zero declaration too.
    age(v1).await;
    let old = plugin_row(v1).await.unwrap().1;
    assert!(!upgrade(tenant_a, v1, v2).await.unreferenced);
    assert_eq!(plugin_row(v1).await.unwrap().0, "1");
    assert_eq!(plugin_row(v1).await.unwrap().1, old, "the upgrade's decrement leaves updated_at");
    let (refers, _, declaration) = plugin_row(v2).await.expect("v2 row");
    assert_eq!((refers.as_str(), declaration.as_str()), ("1", GO_ZERO_DECLARATION));
    age(v2).await;
    store.save_declaration(v1, "langgenius/rules", r#"{"name":"rules"}"#).await.unwrap();
    store.save_declaration(v2, "langgenius/rules", r#"{"name":"rules"}"#).await.unwrap();
    assert!(upgrade(tenant_b, v1, v2).await.unreferenced);
    assert!(plugin_row(v1).await.is_none(), "the last reference takes the row");
    // Rule 3: and the version's declaration row, as upstream's; the version still referenced keeps its own.
    assert!(store.declaration(v1).await.unwrap().is_none(), "the last reference takes the declaration");
    assert!(store.declaration(v2).await.unwrap().is_some());
    assert_eq!(plugin_row(v2).await.unwrap().0, "2");
    assert_eq!(plugin_row(v2).await.unwrap().1, old, "the upgrade's increment leaves updated_at");

    // Uninstall saves the row: `updated_at` moves.
    let installation = store.installation_by_plugin_id(tenant_a, "langgenius/rules").await.unwrap().unwrap();
    assert!(!store.uninstall(tenant_a, &installation.id).await.unwrap().unwrap().unreferenced);
    let (refers, updated_at, _) = plugin_row(v2).await.unwrap();
    assert_eq!(refers, "1");
    assert_ne!(updated_at, old, "uninstall touches updated_at");
    assert!(store.declaration(v2).await.unwrap().is_some(), "a referenced version keeps its declaration");

    // Rule 3 on uninstall: the last installation of a serverless version takes its plugins,
    // declaration and serverless runtime rows.
    let serverless = "langgenius/lambda:0.0.1@4444444444444444444444444444444444444444444444444444444444444444";
    let installation_id = install(tenant_a, serverless, "langgenius/lambda", RuntimeType::Serverless).await;
    store.save_declaration(serverless, "langgenius/lambda", r#"{"name":"lambda"}"#).await.unwrap();
    let runtime_row = dialect_params(
        db.backend,
        "INSERT INTO serverless_runtimes (id, plugin_unique_identifier, function_url, function_name, type, checksum) \
         VALUES ('0190a3c1-0000-7000-8000-0000000000c3', ?, 'https://lambda.example', 'fn', 'serverless', 'x')",
    );
    sqlx::query(&runtime_row).bind(serverless).execute(&pool).await.unwrap();
    let runtimes = dialect_params(db.backend, "SELECT COUNT(*) FROM serverless_runtimes WHERE plugin_unique_identifier = ?");
    assert!(store.uninstall(tenant_a, &installation_id).await.unwrap().unwrap().unreferenced);
    assert!(plugin_row(serverless).await.is_none());
    assert!(store.declaration(serverless).await.unwrap().is_none());
    let left: i64 = sqlx::query(&runtimes).bind(serverless).fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(left, 0, "the serverless runtime row goes with the last installation");
    store.close().await;
    pool.close().await;
}

async fn converts_the_earlier_own_schema_keeping_data(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let pool = raw_pool_in(db, dir.path()).await;
    let legacy = match db.backend {
        Backend::Postgres => "legacy-postgres.sql",
        Backend::Mysql => "legacy-mysql.sql",
        Backend::Sqlite => "legacy-sqlite.sql",
    };
    run_script(&pool, db.backend, &fixture_text(legacy)).await;
    let ts = "2026-01-02T03:04:05.123456789Z";
    let installation_id = "0190a3c1-0000-7000-8000-0000000000a1";
    for (sql, binds) in [
        (
            "INSERT INTO plugins (id, created_at, updated_at, plugin_unique_identifier, plugin_id, refers, install_type, \
             manifest_type, source) VALUES ('0190a3c1-0000-7000-8000-0000000000a0', ?, ?, ?, 'langgenius/dummy', 2, \
             'local', 'plugin', 'package')",
            vec![ts, ts, UID],
        ),
        (
            "INSERT INTO plugin_installations (id, created_at, updated_at, tenant_id, plugin_id, plugin_unique_identifier, \
             runtime_type, endpoints_setups, endpoints_active, source, meta) VALUES (?, ?, ?, ?, 'langgenius/dummy', ?, \
             'local', 0, 0, 'package', '{}')",
            vec![installation_id, ts, ts, TENANT, UID],
        ),
        (
            "INSERT INTO plugin_installations (id, created_at, updated_at, tenant_id, plugin_id, plugin_unique_identifier, \
             runtime_type, endpoints_setups, endpoints_active, source, meta) VALUES ('0190a3c1-0000-7000-8000-0000000000a2', \
             ?, ?, 'my-workspace', 'langgenius/dummy', ?, 'local', 0, 0, 'package', '{}')",
            vec![ts, ts, UID],
        ),
        (
            "INSERT INTO provider_installations (id, created_at, updated_at, kind, tenant_id, provider, \
             plugin_unique_identifier, plugin_id) VALUES ('0190a3c1-0000-7000-8000-0000000000a3', ?, ?, 'tool', ?, \
             'dummy', ?, 'langgenius/dummy')",
            vec![ts, ts, TENANT, UID],
        ),
        (
            "INSERT INTO endpoints (id, created_at, updated_at, name, hook_id, tenant_id, user_id, plugin_id, expired_at, \
             enabled, settings) VALUES ('0190a3c1-0000-7000-8000-0000000000a4', ?, ?, 'default', ?, ?, 'u', \
             'langgenius/dummy', '2050-01-01T00:00:00Z', 1, '{}')",
            vec![ts, ts, HOOK_ID, TENANT],
        ),
    ] {
        let sql = if db.backend == Backend::Postgres {
            let mut n = 0;
            sql.chars()
                .map(|c| {
                    if c == '?' {
                        n += 1;
                        format!("${n}")
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        } else {
            sql.to_string()
        };
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        query.execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let store = store_in(db, dir.path()).await;
    store.migrate().await.expect("converting is done once");
    let installation = store.installation_by_plugin_id(TENANT, "langgenius/dummy").await.unwrap().expect("kept");
    assert_eq!(installation.id, installation_id);
    let expected_created = match db.backend {
        Backend::Postgres => "2026-01-02T03:04:05.123457000Z",
        Backend::Mysql => "2026-01-02T03:04:05.123000000Z",
        Backend::Sqlite => "2026-01-02T03:04:05.123456789Z",
    };
    assert_eq!(installation.created_at, expected_created);
    assert!(store.provider(ProviderKind::Tool, TENANT, "langgenius/dummy").await.unwrap().is_some());
    let endpoint = store.endpoint_by_hook_id(HOOK_ID).await.unwrap().expect("endpoint kept");
    assert!(endpoint.enabled);
    let plugin = store.plugin(UID).await.unwrap().expect("plugins row kept");
    assert_eq!(plugin.refers, 2);
    // A tenant id that is not a UUID moved to its name-based UUID, and reads back as given.
    let mine = store.installation_by_plugin_id("my-workspace", "langgenius/dummy").await.unwrap().expect("moved");
    assert_eq!(mine.id, "0190a3c1-0000-7000-8000-0000000000a2");
    assert_eq!(mine.tenant_id, "my-workspace");
    // The earlier tables stay, renamed.
    let legacy_rows: i64 = sqlx::query("SELECT COUNT(*) FROM legacy_plugin_installations").fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(legacy_rows, 2);
    let converted: i64 = sqlx::query("SELECT COUNT(*) FROM plugin_installations").fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(converted, 2);
    store.close().await;
    pool.close().await;
}

macro_rules! on_server_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = common::TestDb::create(common::Backend::Postgres).await else { return };
                $body(&db).await;
                db.drop_now().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                let Some(db) = common::TestDb::create(common::Backend::Mysql).await else { return };
                $body(&db).await;
                db.drop_now().await;
            }
        }
    };
}

on_server_backends!(schema_equality, schema_equals_the_upstream_fixture);
on_server_backends!(adoption, adopts_and_serves_an_upstream_database);
on_server_backends!(conversion, converts_the_earlier_own_schema_keeping_data);
on_server_backends!(write_rule, write_rules);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_on_sqlite() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    converts_the_earlier_own_schema_keeping_data(&db).await;
}

/// Writes the rows the upstream daemon leaves after installing `package` for [`TENANT`] (declaration,
/// plugins row, installation, tool provider row, a finished install task, the storage size row), and
/// the package into the storage at upstream's path. Returns the plugin unique identifier.
async fn go_daemon_state(db: &TestDb, pool: &AnyPool, storage: &std::path::Path, package: &[u8], stored: &[u8]) -> String {
    let (uid, declaration) = crate::runtime_support::decode(package);
    let uid = uid.to_string();
    let plugin_id = uid.split(':').next().unwrap().to_string();
    let declaration = serde_json::to_string(&declaration).unwrap();
    // Upstream keeps the uploaded package and, once installed locally, a copy in the installed bucket.
    for bucket in ["plugin_packages", "plugin"] {
        std::fs::create_dir_all(storage.join(bucket).join(&plugin_id)).unwrap();
        std::fs::write(storage.join(bucket).join(&uid), package).unwrap();
    }
    let value_path = storage.join("persistence").join(TENANT).join(&plugin_id).join("greeting");
    std::fs::create_dir_all(value_path.parent().unwrap()).unwrap();
    std::fs::write(&value_path, stored).unwrap();
    let (ts, id, uuid_param) = match db.backend {
        Backend::Postgres => ("TIMESTAMPTZ '2025-06-01 10:00:01.000+00'", "CAST(? AS uuid)", "CAST(? AS uuid)"),
        _ => ("'2025-06-01 10:00:01.000'", "?", "?"),
    };
    let task_plugins = serde_json::json!([{"plugin_unique_identifier": uid, "labels": {"en_US": "Run demo"},
        "icon": "icon.svg", "icon_dark": "", "plugin_id": plugin_id, "status": "success", "message": "Installed",
        "source": "package"}])
    .to_string();
    let statements: Vec<(String, Vec<String>)> = vec![
        (
            format!("INSERT INTO plugin_declarations (id, created_at, updated_at, plugin_unique_identifier, plugin_id, declaration) VALUES ({id}, {ts}, {ts}, ?, ?, ?)"),
            vec!["0190a3c1-0000-7000-8000-0000000000b1".into(), uid.clone(), plugin_id.clone(), declaration.clone()],
        ),
        (
            format!("INSERT INTO plugins (id, created_at, updated_at, plugin_unique_identifier, plugin_id, refers, install_type, manifest_type, remote_declaration, source) VALUES ({id}, {ts}, {ts}, ?, ?, 1, 'local', 'plugin', '{{}}', 'package')"),
            vec!["0190a3c1-0000-7000-8000-0000000000b2".into(), uid.clone(), plugin_id.clone()],
        ),
        (
            format!("INSERT INTO plugin_installations (id, created_at, updated_at, tenant_id, plugin_id, plugin_unique_identifier, runtime_type, endpoints_setups, endpoints_active, source, meta) VALUES ({id}, {ts}, {ts}, {uuid_param}, ?, ?, 'local', 0, 0, 'package', '{{}}')"),
            vec!["0190a3c1-0000-7000-8000-0000000000b3".into(), TENANT.into(), plugin_id.clone(), uid.clone()],
        ),
        (
            format!("INSERT INTO tool_installations (id, created_at, updated_at, tenant_id, provider, plugin_unique_identifier, plugin_id) VALUES ({id}, {ts}, {ts}, {uuid_param}, 'run_demo', ?, ?)"),
            vec!["0190a3c1-0000-7000-8000-0000000000b4".into(), TENANT.into(), uid.clone(), plugin_id.clone()],
        ),
        (
            format!("INSERT INTO install_tasks (id, created_at, updated_at, status, tenant_id, total_plugins, completed_plugins, plugins) VALUES ({id}, {ts}, {ts}, 'success', {uuid_param}, 1, 1, ?)"),
            vec![TASK_ID.into(), TENANT.into(), task_plugins],
        ),
        (
            format!(
                "INSERT INTO tenant_storages (id, created_at, updated_at, tenant_id, plugin_id, size) VALUES ({id}, {ts}, {ts}, ?, ?, {})",
                stored.len()
            ),
            vec!["0190a3c1-0000-7000-8000-0000000000b5".into(), TENANT.into(), plugin_id.clone()],
        ),
    ];
    for (sql, binds) in statements {
        let sql = dialect_params(db.backend, &sql);
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        query.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    uid
}

/// A stand-in for Dify's encrypt API: decryption strips the `enc:` prefix the stored settings carry.
async fn fake_encrypt_api() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/inner/api/invoke/encrypt",
        post(|axum::Json(body): axum::Json<serde_json::Value>| async move {
            let data = body["data"].as_object().cloned().unwrap_or_default();
            let out: serde_json::Map<String, serde_json::Value> = data
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, serde_json::Value::String(s.trim_start_matches("enc:").to_string())),
                    other => (k, other),
                })
                .collect();
            axum::Json(serde_json::json!({"data": {"data": out}, "error": ""}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake dify");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// The rows upstream leaves for an endpoint plugin installed in [`TENANT`] with one endpoint whose
/// hook id is [`HOOK_ID`] (settings stored encrypted by Dify).
async fn go_daemon_endpoint(db: &TestDb, pool: &AnyPool, storage: &std::path::Path, package: &[u8]) -> String {
    let (uid, declaration) = crate::runtime_support::decode(package);
    let uid = uid.to_string();
    let plugin_id = uid.split(':').next().unwrap().to_string();
    // Upstream keeps the uploaded package and, once installed locally, a copy in the installed bucket.
    for bucket in ["plugin_packages", "plugin"] {
        std::fs::create_dir_all(storage.join(bucket).join(&plugin_id)).unwrap();
        std::fs::write(storage.join(bucket).join(&uid), package).unwrap();
    }
    let declaration = serde_json::to_string(&declaration).unwrap();
    let (ts, uuid) = match db.backend {
        Backend::Postgres => ("TIMESTAMPTZ '2025-06-01 10:00:01.000+00'", "CAST(? AS uuid)"),
        _ => ("'2025-06-01 10:00:01.000'", "?"),
    };
    let expired = match db.backend {
        Backend::Postgres => "TIMESTAMPTZ '2050-01-01 00:00:00+00'",
        _ => "'2050-01-01 00:00:00'",
    };
    let statements: Vec<(String, Vec<String>)> = vec![
        (
            format!("INSERT INTO plugin_declarations (id, created_at, updated_at, plugin_unique_identifier, plugin_id, declaration) VALUES ({uuid}, {ts}, {ts}, ?, ?, ?)"),
            vec!["0190a3c1-0000-7000-8000-0000000000d1".into(), uid.clone(), plugin_id.clone(), declaration],
        ),
        (
            format!("INSERT INTO plugins (id, created_at, updated_at, plugin_unique_identifier, plugin_id, refers, install_type, manifest_type, remote_declaration, source) VALUES ({uuid}, {ts}, {ts}, ?, ?, 1, 'local', '', '{{}}', 'package')"),
            vec!["0190a3c1-0000-7000-8000-0000000000d2".into(), uid.clone(), plugin_id.clone()],
        ),
        (
            format!("INSERT INTO plugin_installations (id, created_at, updated_at, tenant_id, plugin_id, plugin_unique_identifier, runtime_type, endpoints_setups, endpoints_active, source, meta) VALUES ({uuid}, {ts}, {ts}, {uuid}, ?, ?, 'local', 1, 1, 'package', '{{}}')"),
            vec!["0190a3c1-0000-7000-8000-0000000000d3".into(), TENANT.into(), plugin_id.clone(), uid.clone()],
        ),
        (
            format!("INSERT INTO endpoints (id, created_at, updated_at, name, hook_id, tenant_id, user_id, plugin_id, expired_at, enabled, settings) VALUES ({uuid}, {ts}, {ts}, 'default', ?, ?, 'user-1', ?, {expired}, TRUE, ?)"),
            vec!["0190a3c1-0000-7000-8000-0000000000d4".into(), HOOK_ID.into(), TENANT.into(), plugin_id.clone(), r#"{"api_key":"enc:secret-from-go"}"#.into()],
        ),
    ];
    for (sql, binds) in statements {
        let sql = dialect_params(db.backend, &sql);
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        query.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    uid
}

/// `?` placeholders as the dialect wants them.
fn dialect_params(backend: Backend, sql: &str) -> String {
    if backend != Backend::Postgres {
        return sql.to_string();
    }
    let mut n = 0;
    let mut out = String::new();
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The real daemon binary started on a Go daemon's database and storage: the plugin is listed, the
/// task shown, the tool invoked (its environment built on first use) and its stored value read
/// through the plugin's own storage call; a new value lands in upstream's layout and size row.
async fn daemon_starts_on_a_go_daemon_state(db: &TestDb) {
    let pool = load_fixture(db).await;
    let workdir = tempfile::tempdir().unwrap();
    let storage = workdir.path().join("storage");
    let package = crate::runtime_support::package_plugin("run_demo");
    let uid = go_daemon_state(db, &pool, &storage, &package, b"hello from go").await;
    let plugin_id = uid.split(':').next().unwrap().to_string();
    let endpoint_uid = go_daemon_endpoint(db, &pool, &storage, &crate::runtime_support::package_plugin("endpoint_echo")).await;
    let before = catalogue(&pool, db.backend).await;

    let inner_url = fake_encrypt_api().await;
    // What `common::start_daemon` sets, plus the working directory the storage fixture is in.
    let mut env = vec![
        ("DIFY_INNER_API_URL".to_string(), inner_url),
        ("DIFY_INNER_API_KEY".into(), "k".into()),
        ("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into()),
        ("PYTHON_ENV_INIT_TIMEOUT".into(), "60".into()),
    ];
    for name in common::NETWORK_PASSTHROUGH {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    if let Some(cache) = crate::runtime_support::shared_uv_cache() {
        env.push(("UV_CACHE_DIR".into(), cache.display().to_string()));
    }
    let daemon =
        common::Daemon::start(db, common::DaemonOptions { env, workdir: Some(workdir.path().to_path_buf()), ..Default::default() }).await;
    assert_eq!(catalogue(&pool, db.backend).await, before, "starting changed no upstream table");

    let listed = daemon.list(TENANT).await;
    let mut uids: Vec<String> = listed.iter().map(|p| p["plugin_unique_identifier"].as_str().unwrap().to_string()).collect();
    uids.sort();
    let mut expected = vec![uid.clone(), endpoint_uid.clone()];
    expected.sort();
    assert_eq!(uids, expected, "{listed:?}");

    // The endpoint answers on the hook id the Go daemon gave it, with its stored settings.
    let answer = daemon
        .client
        .get(daemon.url(&format!("/e/{HOOK_ID}/echo/x")))
        .timeout(std::time::Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["hook_id"], HOOK_ID);
    assert_eq!(echoed["settings"], serde_json::json!({"api_key": "secret-from-go"}));
    let (status, task) = daemon.get(&format!("/plugin/{TENANT}/management/install/tasks/{TASK_ID}")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["data"]["status"], "success");

    let invoke = |parameters: serde_json::Value| {
        let body = serde_json::json!({"user_id": "user-1", "conversation_id": null, "app_id": null, "message_id": null,
            "data": {"provider": "run_demo", "tool": "demo", "credentials": {}, "credential_type": "api-key",
                     "tool_parameters": parameters}});
        let request = daemon
            .client
            .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
            .header("X-Api-Key", &daemon.key)
            .header("X-Plugin-ID", plugin_id.clone())
            .timeout(std::time::Duration::from_secs(300))
            .json(&body);
        async move {
            let response = request.send().await.expect("dispatch");
            let status = response.status().as_u16();
            format!("{status} {}", response.text().await.unwrap())
        }
    };
    let answer = invoke(serde_json::json!({"mode": "storage_get", "key": "greeting"})).await;
    assert!(answer.starts_with("200 ") && answer.contains("value: hello from go"), "{answer}\n{}", daemon.log());
    let answer = invoke(serde_json::json!({"mode": "storage_set", "key": "fresh", "text": "abc"})).await;
    assert!(answer.starts_with("200 ") && answer.contains("stored"), "{answer}\n{}", daemon.log());
    let written = storage.join("persistence").join(TENANT).join(&plugin_id).join("fresh");
    assert_eq!(std::fs::read(&written).unwrap(), b"abc");
    let size_sql = match db.backend {
        Backend::Postgres => "SELECT CAST(size AS TEXT) FROM tenant_storages",
        _ => "SELECT CAST(size AS CHAR(20)) FROM tenant_storages",
    };
    let sizes: Vec<String> = sqlx::query(size_sql).fetch_all(&pool).await.unwrap().iter().map(|r| text(r, 0)).collect();
    assert_eq!(sizes, ["16"], "one size row, grown by the new value");

    // Uninstalling the Go daemon's endpoint plugin leaves what upstream's uninstall leaves: no
    // installation, no plugins row, the package out of the installed bucket (the upload cache keeps it).
    let body = serde_json::json!({"plugin_installation_id": "0190a3c1-0000-7000-8000-0000000000d3"});
    let uninstalled = daemon.post(&format!("/plugin/{TENANT}/management/uninstall"), &body).await;
    assert_eq!(uninstalled.0, 200, "{:?}", uninstalled.1);
    let q = |sql: &str| dialect_params(db.backend, sql);
    for table in ["plugins", "plugin_installations"] {
        let n: i64 = sqlx::query(&q(&format!("SELECT COUNT(*) FROM {table} WHERE plugin_unique_identifier = ?")))
            .bind(&endpoint_uid)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    assert!(!storage.join("plugin").join(&endpoint_uid).exists(), "removed from the installed bucket");
    assert!(storage.join("plugin_packages").join(&endpoint_uid).exists(), "the upload cache keeps the package");
    assert!(storage.join("plugin").join(&uid).exists(), "the other plugin stays installed");
    drop(daemon);
    pool.close().await;
}

on_server_backends!(go_daemon_state_served, daemon_starts_on_a_go_daemon_state);
