//! The plugin key-value store functions (`kv_*`) and the debugging-key table, against SQLite,
//! PostgreSQL and MySQL through the library (the daemon's own migrations create the schema).

use crate::common;

use common::TestDb;
use dify_daemon::config::DbKind;
use dify_daemon::store::Db;

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
    let (t, p) = ("tenant-1", "author/plugin");
    assert_eq!(store.kv_get(t, p, "k").await.unwrap(), None);
    assert!(!store.kv_exists(t, p, "k").await.unwrap());
    assert_eq!(store.kv_usage_bytes(t, p).await.unwrap(), 0);

    let binary: Vec<u8> = (0..=255u8).collect();
    store.kv_set(t, p, "k", &binary).await.unwrap();
    assert_eq!(store.kv_get(t, p, "k").await.unwrap().as_deref(), Some(binary.as_slice()));
    assert!(store.kv_exists(t, p, "k").await.unwrap());
    store.kv_set(t, p, "k", b"short").await.unwrap();
    assert_eq!(store.kv_get(t, p, "k").await.unwrap().as_deref(), Some(&b"short"[..]));
    store.kv_set(t, p, "other", &[0u8; 1000]).await.unwrap();
    assert_eq!(store.kv_usage_bytes(t, p).await.unwrap(), 1005);

    // Namespaces are separate per tenant and per plugin.
    assert_eq!(store.kv_get("tenant-2", p, "k").await.unwrap(), None);
    assert_eq!(store.kv_get(t, "author/other", "k").await.unwrap(), None);
    assert_eq!(store.kv_usage_bytes("tenant-2", p).await.unwrap(), 0);

    assert_eq!(store.kv_del(t, p, "k").await.unwrap(), 1);
    assert_eq!(store.kv_del(t, p, "k").await.unwrap(), 0);
    assert!(!store.kv_exists(t, p, "k").await.unwrap());
    assert_eq!(store.kv_usage_bytes(t, p).await.unwrap(), 1000);

    // An empty value is a value.
    store.kv_set(t, p, "empty", b"").await.unwrap();
    assert_eq!(store.kv_get(t, p, "empty").await.unwrap().as_deref(), Some(&b""[..]));
    assert!(store.kv_exists(t, p, "empty").await.unwrap());

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
