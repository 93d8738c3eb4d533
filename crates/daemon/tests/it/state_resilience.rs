//! State resilience of the real binary: SIGKILL in the middle of an install, 50 concurrent uploads
//! and installs, SIGTERM shutdown, stale tasks of vanished nodes, task retention, and start-up in an
//! empty directory with no configuration. Runs on SQLite, PostgreSQL and MySQL where a database is
//! involved.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_consistent_state, assert_ok, dummy_variant, Backend, Daemon, DaemonOptions, TestDb};
use serde_json::{json, Value};

fn m(tenant: &str, rest: &str) -> String {
    format!("/plugin/{tenant}/management{rest}")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Starts an install and returns its task id without waiting.
async fn start_install(d: &Daemon, tenant: &str, uid: &str) -> String {
    let data = assert_ok(
        &d.post(&m(tenant, "/install/identifiers"), &json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}))
            .await,
    );
    data["task_id"].as_str().expect("task id").to_string()
}

/// Waits (bounded) until the task's first entry has `status`.
async fn wait_entry_status(d: &Daemon, tenant: &str, task_id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = d.get(&m(tenant, &format!("/install/tasks/{task_id}"))).await;
        if body["data"]["plugins"][0]["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "entry never reached {status}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigkill_mid_install(db: &TestDb) {
    let env = vec![("DIFY_TEST_INSTALL_COMMIT_DELAY_MS".to_string(), "4000".to_string())];
    let mut d = Daemon::start(db, DaemonOptions { env, ..Default::default() }).await;
    let pkg = dummy_variant("0.0.1", "crashy", &[]);
    let uid = assert_ok(&d.upload_package("t1", &pkg, None).await)["unique_identifier"].as_str().unwrap().to_string();
    let task_id = start_install(&d, "t1", &uid).await;
    wait_entry_status(&d, "t1", &task_id, "running").await;

    d.restart_after_kill().await;

    // The interrupted task is failed with a message, nothing is half installed, the package is kept.
    let task = assert_ok(&d.get(&m("t1", &format!("/install/tasks/{task_id}"))).await);
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["plugins"][0]["status"], "failed");
    assert_eq!(task["plugins"][0]["message"], "An unexpected daemon shutdown occurred");
    assert!(d.list("t1").await.is_empty());
    assert_eq!(assert_ok(&d.get(&m("t1", "/tools?page=1&page_size=10")).await), json!([]));
    let q = format!("plugin_unique_identifier={}", enc(&uid));
    assert_eq!(assert_ok(&d.get(&m("t1", &format!("/fetch/identifier?{q}"))).await), json!(false));
    assert_eq!(assert_ok(&d.get(&m("t1", &format!("/decode/from_identifier?{q}"))).await)["unique_identifier"], uid.as_str());
    assert_consistent_state(db, &d.workdir).await;

    // The same install completes after the restart.
    let task = d.install_identifier("t1", &uid).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(d.list("t1").await.len(), 1);
    assert_consistent_state(db, &d.workdir).await;
}
on_every_backend!(sigkill_mid_install, sigkill_mid_install);

async fn sigterm_fails_running_tasks_and_exits(db: &TestDb) {
    let env = vec![("DIFY_TEST_INSTALL_COMMIT_DELAY_MS".to_string(), "4000".to_string())];
    let mut d = Daemon::start(db, DaemonOptions { env, ..Default::default() }).await;
    let pkg = dummy_variant("0.0.1", "termed", &[]);
    let uid = assert_ok(&d.upload_package("t1", &pkg, None).await)["unique_identifier"].as_str().unwrap().to_string();
    let task_id = start_install(&d, "t1", &uid).await;
    wait_entry_status(&d, "t1", &task_id, "running").await;
    let status = d.terminate(Duration::from_secs(15)).expect("daemon exits on SIGTERM within 15 s");
    assert!(status.success(), "exit status {status}");
    d.restart_after_kill().await;
    let task = assert_ok(&d.get(&m("t1", &format!("/install/tasks/{task_id}"))).await);
    assert_eq!(task["status"], "failed");
    assert_eq!(task["plugins"][0]["message"], "An unexpected daemon shutdown occurred");
    assert_consistent_state(db, &d.workdir).await;
}
on_every_backend!(sigterm_fails_running_tasks_and_exits, sigterm_fails_running_tasks_and_exits);

async fn fifty_concurrent_uploads_and_installs(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let packages: Vec<Vec<u8>> = (0..25).map(|i| dummy_variant("0.0.1", &format!("c{i}"), &[])).collect();
    // 50 uploads at once: every package by two tenants.
    let uploads = packages.iter().enumerate().flat_map(|(i, p)| {
        let d = &d;
        ["ta", "tb"].into_iter().map(move |t| async move { (i, d.upload_package(t, p, None).await) })
    });
    let mut uids = vec![String::new(); packages.len()];
    for (i, result) in futures::future::join_all(uploads).await {
        let data = assert_ok(&result);
        let uid = data["unique_identifier"].as_str().unwrap().to_string();
        assert!(uids[i].is_empty() || uids[i] == uid);
        uids[i] = uid;
    }
    // 50 installs at once: both tenants install every package.
    let installs = uids.iter().flat_map(|uid| {
        let d = &d;
        ["ta", "tb"].into_iter().map(move |t| async move { d.install_identifier(t, uid).await })
    });
    for task in futures::future::join_all(installs).await {
        assert_eq!(task["status"], "success", "{task}");
    }
    assert_eq!(d.list("ta").await.len(), 25);
    assert_eq!(d.list("tb").await.len(), 25);
    assert_eq!(assert_ok(&d.get(&m("ta", "/tools?page=1&page_size=256")).await).as_array().unwrap().len(), 25);
    assert_consistent_state(db, &d.workdir).await;

    // Concurrent uninstalls by one tenant keep the other tenant's installations.
    let list = d.list("ta").await;
    let removals = list.iter().map(|p| {
        let d = &d;
        let id = p["id"].clone();
        async move { d.post(&m("ta", "/uninstall"), &json!({"plugin_installation_id": id})).await }
    });
    for r in futures::future::join_all(removals).await {
        assert_eq!(assert_ok(&r), json!(true));
    }
    assert!(d.list("ta").await.is_empty());
    assert_eq!(d.list("tb").await.len(), 25);
    for uid in &uids {
        let q = format!("plugin_unique_identifier={}", enc(uid));
        assert_eq!(assert_ok(&d.get(&m("ta", &format!("/fetch/identifier?{q}"))).await), json!(true));
    }
    assert_consistent_state(db, &d.workdir).await;
}
on_every_backend!(fifty_concurrent_uploads_and_installs, fifty_concurrent_uploads_and_installs);

async fn stale_tasks_and_retention(db: &TestDb) {
    // Long enough for the install poll below to see the success even on a loaded machine.
    let env = vec![("INSTALL_TASK_SUCCESS_RETENTION".to_string(), "3".to_string())];
    let d = Daemon::start(db, DaemonOptions { env, ..Default::default() }).await;

    // A finished task disappears after its retention.
    let (_, task) = d.install_package("t1", &dummy_variant("0.0.1", "kept", &[])).await;
    assert_eq!(task["status"], "success");
    let task_id = task["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = d.get(&m("t1", &format!("/install/tasks/{task_id}"))).await;
        if body["code"] == -500 {
            break;
        }
        assert!(Instant::now() < deadline, "successful task was never removed: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A running task owned by a node whose lease ran out is failed by housekeeping.
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&db.url(&d.workdir)).await.unwrap();
    let entry = json!([{"plugin_unique_identifier": "x/y:1.0.0@0123456789abcdef0123456789abcdef", "labels": {},
        "icon": "", "icon_dark": "", "plugin_id": "x/y", "status": "running", "message": "starting", "source": "package"}]);
    // Upstream's task row plus this daemon's lease row (docs/upstream-schema.md §5); ids are UUIDs and the
    // tenant column holds the stored form of "t1".
    let kind = match db.backend {
        Backend::Sqlite => dify_daemon::config::DbKind::Sqlite,
        Backend::Postgres => dify_daemon::config::DbKind::Postgres,
        Backend::Mysql => dify_daemon::config::DbKind::Mysql,
    };
    let store = dify_daemon::store::Db::connect_url(kind, &db.url(&d.workdir), 1, 5).await.unwrap();
    let tenant = store.tenant_key("t1");
    store.close().await;
    let created = match db.backend {
        Backend::Sqlite => "'2020-01-01T00:00:00.000000000Z'",
        Backend::Postgres => "TIMESTAMPTZ '2020-01-01 00:00:00+00'",
        Backend::Mysql => "'2020-01-01 00:00:00'",
    };
    let (past, future) = ("2020-01-01T00:00:00.000000000Z", "2999-01-01T00:00:00.000000000Z");
    for (task_id, owner, lease, deadline) in [
        // A running task owned by a node whose lease ran out.
        (STALE_TASK, "gone-node", past, future),
        // A task whose owner is alive (lease far in the future) but whose install budget ran out.
        (OVERDUE_TASK, "busy-node", future, past),
        // A healthy task of another live node is left alone.
        (HEALTHY_TASK, "busy-node", future, future),
    ] {
        let stmt = format!(
            "INSERT INTO install_tasks (id, created_at, updated_at, status, tenant_id, total_plugins, completed_plugins, \
             plugins) VALUES ('{task_id}', {created}, {created}, 'running', '{tenant}', 1, 0, '{entry}')"
        );
        sqlx::query(&stmt).execute(&pool).await.unwrap();
        let stmt = format!(
            "INSERT INTO install_task_leases (task_id, owner_node, lease_until, deadline_at, expires_at) \
             VALUES ('{task_id}', '{owner}', '{lease}', '{deadline}', NULL)"
        );
        sqlx::query(&stmt).execute(&pool).await.unwrap();
    }
    pool.close().await;
    for task_id in [STALE_TASK, OVERDUE_TASK] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let task = assert_ok(&d.get(&m("t1", &format!("/install/tasks/{task_id}"))).await);
            if task["status"] == "failed" {
                assert_eq!(task["plugins"][0]["status"], "failed");
                assert_eq!(task["plugins"][0]["message"], "Task timed out but not properly terminated");
                break;
            }
            assert!(Instant::now() < deadline, "{task_id} was never failed: {task}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let healthy = assert_ok(&d.get(&m("t1", &format!("/install/tasks/{HEALTHY_TASK}"))).await);
    assert_eq!(healthy["status"], "running", "{healthy}");
}
on_every_backend!(stale_tasks_and_retention, stale_tasks_and_retention);

const STALE_TASK: &str = "0190a3c1-0000-7000-8000-0000000000c1";
const OVERDUE_TASK: &str = "0190a3c1-0000-7000-8000-0000000000c2";
const HEALTHY_TASK: &str = "0190a3c1-0000-7000-8000-0000000000c3";

#[tokio::test]
async fn starts_in_an_empty_directory_with_no_configuration() {
    let db = TestDb::create(common::Backend::Sqlite).await.unwrap();
    let mut d = Daemon::start(&db, DaemonOptions { bare: true, ..Default::default() }).await;
    // Embedded default: SQLite file and storage under the current directory, a generated key.
    assert!(d.workdir.join("dify_plugin_daemon.db").is_file(), "SQLite database in the working directory");
    let key = std::fs::read_to_string(d.workdir.join("storage/server_key")).unwrap();
    assert!(key.trim().len() >= 32, "generated key is long: {key:?}");
    assert!(d.log().contains(key.trim()), "the generated key is printed");
    let health: Value = d.client.get(d.url("/health/check")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["platform"], "local");
    assert_eq!(assert_ok(&d.get(&m("t1", "/list?page=1&page_size=10")).await), json!({"list": [], "total": 0}));
    // The generated key survives a restart.
    d.restart_after_kill().await;
    assert_eq!(std::fs::read_to_string(d.workdir.join("storage/server_key")).unwrap(), key);
    assert_ok(&d.get(&m("t1", "/list?page=1&page_size=10")).await);
}

#[tokio::test]
async fn dotenv_file_and_public_key_warning() {
    let db = TestDb::create(common::Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "SERVER_KEY=plugin-api-key\nFORCE_VERIFYING_SIGNATURE=false\n").unwrap();
    let d = Daemon::start(&db, DaemonOptions { bare: true, workdir: Some(dir.path().to_path_buf()), ..Default::default() }).await;
    assert!(d.log().contains("WARNING: SERVER_KEY is a publicly known sample value"), "{}", d.log());
    let r = d
        .client
        .get(d.url(&m("t1", "/list?page=1&page_size=1")))
        .header("X-Api-Key", "plugin-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(!dir.path().join("storage/server_key").exists(), "no key is generated when one is configured");
}

/// The daemon creates its PostgreSQL/MySQL database when it does not exist yet.
async fn creates_a_missing_database(db: &TestDb) {
    if db.backend == common::Backend::Sqlite {
        return;
    }
    let missing = TestDb::adopt(db.backend, &format!("{}_new", db.name));
    let env = vec![("DB_DATABASE".to_string(), missing.name.clone())];
    let d = Daemon::start(db, DaemonOptions { env, ..Default::default() }).await;
    let (_, task) = d.install_package("t1", &dummy_variant("0.0.1", "fresh", &[])).await;
    assert_eq!(task["status"], "success");
    assert_consistent_state(&missing, &d.workdir).await;
    drop(d);
    missing.drop_now().await;
}
on_every_backend!(creates_a_missing_database, creates_a_missing_database);

/// `ROUTINE_POOL_SIZE` bounds concurrent installs: with one slot the second install waits
/// (`pending`) while the first runs, the health check reports the busy slot, and both finish.
#[tokio::test]
async fn background_job_slots_bound_concurrent_installs() {
    let db = TestDb::create(common::Backend::Sqlite).await.unwrap();
    let env =
        vec![("ROUTINE_POOL_SIZE".to_string(), "1".to_string()), ("DIFY_TEST_INSTALL_COMMIT_DELAY_MS".to_string(), "1500".to_string())];
    let d = Daemon::start(&db, DaemonOptions { env, ..Default::default() }).await;
    let first = assert_ok(&d.upload_package("t1", &dummy_variant("0.0.1", "slot1", &[]), None).await)["unique_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let second = assert_ok(&d.upload_package("t1", &dummy_variant("0.0.1", "slot2", &[]), None).await)["unique_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let t1 = start_install(&d, "t1", &first).await;
    wait_entry_status(&d, "t1", &t1, "running").await;
    let t2 = start_install(&d, "t1", &second).await;
    let health: Value = d.client.get(d.url("/health/check")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["pool_status"], json!({"free": 0, "busy": 1, "total": 1}));
    let waiting = assert_ok(&d.get(&m("t1", &format!("/install/tasks/{t2}"))).await);
    assert_eq!(waiting["plugins"][0]["status"], "pending", "{waiting}");
    assert_eq!(d.wait_task("t1", &t1, Duration::from_secs(120)).await["status"], "success");
    assert_eq!(d.wait_task("t1", &t2, Duration::from_secs(120)).await["status"], "success");
    let health: Value = d.client.get(d.url("/health/check")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["pool_status"]["free"], 1);
}
