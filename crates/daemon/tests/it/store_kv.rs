//! The plugin key-value storage (`PluginKv`: objects in upstream's layout, sizes in `tenant_storages`) and the
//! debugging-key table, against SQLite, PostgreSQL and MySQL through the library (the daemon's own migrations
//! create the schema).

use crate::common;

use common::TestDb;
use dify_daemon::config::DbKind;
use std::sync::Arc;

use dify_daemon::store::{Db, LocalBlobStore, PluginKv};
use sqlx::Row;

fn url(db: &TestDb, dir: &std::path::Path) -> String {
    match db.backend {
        common::Backend::Sqlite => format!("sqlite://{}", dir.join("daemon.db").display()),
        _ => db.url(dir),
    }
}

async fn open(db: &TestDb, dir: &std::path::Path) -> Db {
    let kind = match db.backend {
        common::Backend::Sqlite => DbKind::Sqlite,
        common::Backend::Postgres => DbKind::Postgres,
        common::Backend::Mysql => DbKind::Mysql,
    };
    let url = match db.backend {
        common::Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("daemon.db").display()),
        _ => db.url(dir),
    };
    let store = Db::connect_url(kind, &url, 4, 5).await.expect("connect");
    store.migrate().await.expect("migrate");
    // Migrating twice is a no-op.
    store.migrate().await.expect("migrate again");
    store
}

async fn key_value_storage(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(db, dir.path()).await;
    let root = dir.path().join("storage");
    let kv = PluginKv::new(store.clone(), Arc::new(LocalBlobStore::new(&root)), "persistence");
    let (t, p) = ("tenant-1", "author/plugin");
    assert_eq!(kv.get(t, p, "k").await.unwrap(), None);
    assert!(!kv.exists(t, p, "k").await.unwrap());
    assert_eq!(kv.usage_bytes(t, p).await.unwrap(), 0);

    let binary: Vec<u8> = (0..=255u8).collect();
    kv.set(t, p, "k", &binary).await.unwrap();
    assert_eq!(kv.get(t, p, "k").await.unwrap().as_deref(), Some(binary.as_slice()));
    assert!(kv.exists(t, p, "k").await.unwrap());
    // Upstream's layout: <persistence path>/<tenant>/<plugin id>/<key>.
    assert_eq!(std::fs::read(root.join("persistence/tenant-1/author/plugin/k")).unwrap(), binary);
    kv.set(t, p, "k", b"short").await.unwrap();
    assert_eq!(kv.get(t, p, "k").await.unwrap().as_deref(), Some(&b"short"[..]));
    kv.set(t, p, "dir/other", &[0u8; 1000]).await.unwrap();
    assert!(root.join("persistence/tenant-1/author/plugin/dir/other").is_file());
    assert_eq!(kv.usage_bytes(t, p).await.unwrap(), 1005);

    // Namespaces are separate per tenant and per plugin.
    assert_eq!(kv.get("tenant-2", p, "k").await.unwrap(), None);
    assert_eq!(kv.get(t, "author/other", "k").await.unwrap(), None);
    assert_eq!(kv.usage_bytes("tenant-2", p).await.unwrap(), 0);

    assert_eq!(kv.delete(t, p, "k").await.unwrap(), 1);
    assert_eq!(kv.delete(t, p, "k").await.unwrap(), 0);
    assert!(!kv.exists(t, p, "k").await.unwrap());
    assert_eq!(kv.usage_bytes(t, p).await.unwrap(), 1000);

    // An empty value is a value.
    kv.set(t, p, "empty", b"").await.unwrap();
    assert_eq!(kv.get(t, p, "empty").await.unwrap().as_deref(), Some(&b""[..]));
    assert!(kv.exists(t, p, "empty").await.unwrap());

    // One `tenant_storages` row per tenant and plugin holds the size, as upstream keeps it.
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url(db, dir.path())).await.unwrap();
    let size_text = if db.backend == common::Backend::Postgres { "CAST(size AS TEXT)" } else { "CAST(size AS CHAR(20))" };
    let rows = sqlx::query(&format!("SELECT tenant_id, plugin_id, {size_text} FROM tenant_storages"))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let size: String = match rows[0].try_get::<String, _>(2) {
        Ok(s) => s,
        Err(_) => String::from_utf8(rows[0].get::<Vec<u8>, _>(2)).unwrap(),
    };
    assert_eq!(size, "1000");
    pool.close().await;

    // Values an earlier version kept in the `plugin_storage` table move to objects at start-up.
    let legacy_insert =
        store.sql("INSERT INTO plugin_storage (tenant_id, plugin_id, storage_key, value, updated_at) VALUES (?, ?, ?, ?, ?)");
    sqlx::query(&legacy_insert)
        .bind("tenant-9")
        .bind(p)
        .bind("old")
        .bind(b"legacy".to_vec())
        .bind("2026-01-01T00:00:00.000000000Z")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(kv.move_table_values().await.unwrap(), 1);
    assert_eq!(kv.get("tenant-9", p, "old").await.unwrap().as_deref(), Some(&b"legacy"[..]));
    assert_eq!(kv.usage_bytes("tenant-9", p).await.unwrap(), 6);
    assert_eq!(kv.move_table_values().await.unwrap(), 0);

    // Debugging keys: stable while alive, resolvable to their tenant, replaced once expired.
    let k1 = store.debugging_key(t, 60).await.unwrap();
    assert_eq!(store.debugging_key(t, 60).await.unwrap(), k1);
    assert_eq!(store.tenant_of_debugging_key(&k1).await.unwrap().as_deref(), Some(t));
    assert_eq!(store.tenant_of_debugging_key("nope").await.unwrap(), None);
    let expired = store.debugging_key("tenant-3", -1).await.unwrap();
    assert_eq!(store.tenant_of_debugging_key(&expired).await.unwrap(), None);
    assert_ne!(store.debugging_key("tenant-3", 60).await.unwrap(), expired);
    store.close().await;
}
on_every_backend!(key_value_storage, key_value_storage);
