//! Object storage against real storage servers started by the test (moto's S3 server, Azurite and
//! fake-gcs-server):
//! the same plugin life cycle on each (upload, assets, install, invoke, plugin storage, uninstall),
//! a restart with the local disk wiped (the bucket and the database are all that is left), start-up
//! refusals naming the variable to fix, a storage outage during upload and install, and a storage
//! server dying in the middle of a transfer (a relay cut mid-body), each leaving nothing
//! half-written and followed by a successful attempt.

use crate::common;
use crate::runtime_support;
use crate::storage_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_ok, Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};
use storage_support::{incompressible, wipe_local_state, Direction, Kind, Relay, StorageServer, BUCKET};

const TENANT: &str = "5d2b8a52-3c41-4f0e-9a57-0b7f1e2d3c4a";
const PLUGIN_ID: &str = "testing/runtime_tools";

async fn start_daemon(db: &TestDb, server: &StorageServer, inner_url: &str) -> Daemon {
    let mut extra: Vec<(String, String)> =
        vec![("DIFY_INNER_API_URL".into(), inner_url.into()), ("DIFY_INNER_API_KEY".into(), "inner-key".into())];
    extra.extend(server.daemon_env());
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::start_daemon(db, &extra).await
}

async fn invoke_echo(daemon: &Daemon, parameters: Value) -> Vec<Value> {
    let body = json!({"user_id": "u", "conversation_id": null, "app_id": null, "message_id": null,
        "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", PLUGIN_ID)
        .timeout(Duration::from_secs(180))
        .json(&body)
        .send()
        .await
        .expect("dispatch");
    let status = response.status().as_u16();
    let text = response.text().await.expect("dispatch body");
    assert_eq!(status, 200, "{text}\n{}", daemon.log());
    text.split_terminator("\n\n")
        .map(|line| {
            let envelope: Value = serde_json::from_str(line.strip_prefix("data: ").expect("SSE line")).expect("JSON");
            assert_eq!(envelope["code"], 0, "{envelope}\n{}", daemon.log());
            envelope["data"].clone()
        })
        .collect()
}

async fn asset(daemon: &Daemon, id: &str) -> (u16, Vec<u8>) {
    let response = daemon
        .client
        .get(daemon.url(&format!("/plugin/{TENANT}/asset/{id}")))
        .header("X-Api-Key", &daemon.key)
        .send()
        .await
        .expect("asset");
    (response.status().as_u16(), response.bytes().await.expect("asset body").to_vec())
}

fn icon_bytes() -> Vec<u8> {
    std::fs::read(plugin_dir("runtime_tools").join("_assets/icon.svg")).expect("icon")
}

/// Upload, assets, install, invoke, plugin storage, restart on an empty disk, uninstall.
async fn life_cycle(kind: Kind) {
    let Some(server) = StorageServer::start(kind).await else { return };
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut daemon = start_daemon(&db, &server, &inner.url).await;

    let upload = assert_ok(&daemon.upload_package(TENANT, &package_plugin("runtime_tools"), None).await);
    let uid = upload["unique_identifier"].as_str().expect("uid").to_string();
    let icon = upload["manifest"]["icon"].as_str().expect("icon").to_string();
    // The bucket holds the package and the icon under the local backend's keys.
    let keys = server.keys("").await;
    assert!(keys.contains(&format!("plugin_packages/{uid}")), "{keys:?}");
    assert!(keys.contains(&format!("assets/{icon}")), "{keys:?}");
    assert_eq!(asset(&daemon, &icon).await, (200, icon_bytes()));

    let task = daemon.install_identifier(TENANT, &uid).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    assert_eq!(invoke_echo(&daemon, json!({"text": "one"})).await[0]["message"]["text"], "echo: one");
    let stored = invoke_echo(&daemon, json!({"mode": "storage", "text": "green", "key": "colour"})).await;
    assert_eq!(
        stored[0]["message"]["json_object"],
        json!({"exists_before": false, "read_back": "green", "exists_after": true, "exists_deleted": false})
    );

    // Restart on an empty disk: no storage root, no object cache, no working directory; the same
    // bucket and database. Everything lists, the plugin is rebuilt from the bucket and answers.
    daemon.kill();
    wipe_local_state(&daemon.workdir);
    assert!(!daemon.workdir.join("storage").exists() && !daemon.workdir.join("cwd").exists());
    daemon.restart_after_kill().await;
    let listed = daemon.list(TENANT).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["plugin_unique_identifier"], uid.as_str());
    assert_eq!(asset(&daemon, &icon).await, (200, icon_bytes()));
    assert_eq!(invoke_echo(&daemon, json!({"text": "two"})).await[0]["message"]["text"], "echo: two");
    let stored = invoke_echo(&daemon, json!({"mode": "storage", "text": "blue", "key": "colour"})).await;
    assert_eq!(stored[0]["message"]["json_object"]["read_back"], "blue");
    // The package came back from the bucket into the local cache.
    assert!(daemon.workdir.join("storage/.object-cache/plugin_packages").join(&uid).is_file());

    let installation_id = listed[0]["installation_id"].as_str().or(listed[0]["id"].as_str()).expect("id").to_string();
    let (status, body) = daemon
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": installation_id}))
        .await;
    assert_eq!((status, &body["code"]), (200, &json!(0)), "{body}");
    assert!(daemon.list(TENANT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_life_cycle_and_restart_on_an_empty_disk() {
    life_cycle(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_life_cycle_and_restart_on_an_empty_disk() {
    life_cycle(Kind::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_life_cycle_and_restart_on_an_empty_disk() {
    life_cycle(Kind::Gcs).await;
}

/// Runs the daemon binary expecting it to refuse to start; returns its stderr.
fn refused_start(env: &[(String, String)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    cmd.current_dir(dir.path()).env_clear();
    for name in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.envs([
        ("DB_TYPE", "sqlite"),
        ("SERVER_HOST", "127.0.0.1"),
        ("SERVER_PORT", "0"),
        ("SERVER_KEY", common::TEST_KEY),
        ("PLUGIN_REMOTE_INSTALLING_PORT", "0"),
    ]);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "the daemon started although its storage is unusable");
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err).expect("stderr");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon neither started nor stopped within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_storage_stops_start_up_naming_the_variable() {
    // Nothing listens at the endpoint.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let s3 = |endpoint: &str, bucket: &str| -> Vec<(String, String)> {
        [
            ("PLUGIN_STORAGE_TYPE", "aws_s3"),
            ("PLUGIN_STORAGE_OSS_BUCKET", bucket),
            ("S3_USE_AWS", "false"),
            ("S3_ENDPOINT", endpoint),
            ("AWS_ACCESS_KEY", "a"),
            ("AWS_SECRET_KEY", "s"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let err = refused_start(&s3(&dead, BUCKET));
    assert!(err.contains("S3_ENDPOINT") && err.contains("PLUGIN_STORAGE_OSS_BUCKET") && err.contains(&dead), "{err}");

    // A missing variable is named.
    let mut env = s3(&dead, BUCKET);
    env.retain(|(k, _)| k != "AWS_SECRET_KEY");
    let err = refused_start(&env);
    assert!(err.contains("AWS_SECRET_KEY must be set for PLUGIN_STORAGE_TYPE=aws_s3"), "{err}");
    let err = refused_start(&[("PLUGIN_STORAGE_TYPE".to_string(), "floppy".to_string())]);
    assert!(err.contains("PLUGIN_STORAGE_TYPE") && err.contains("floppy"), "{err}");

    // A reachable server without the bucket.
    let Some(server) = StorageServer::start(Kind::S3).await else { return };
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let err = refused_start(&s3(&endpoint, "no-such-bucket"));
    assert!(err.contains("\"no-such-bucket\"") && err.contains("PLUGIN_STORAGE_OSS_BUCKET"), "{err}");
}

/// The declarations in the database.
async fn declared_identifiers(workdir: &Path) -> Vec<String> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=ro", workdir.join("daemon.db").display());
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("open database");
    let rows = sqlx::query("SELECT plugin_unique_identifier FROM plugin_declarations").fetch_all(&pool).await.expect("query");
    pool.close().await;
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_during_upload_and_install_leaves_nothing_half_written() {
    // Azurite keeps its data on disk, so a stopped server comes back with its bucket intact.
    let Some(mut server) = StorageServer::start(Kind::Azure).await else { return };
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut daemon = start_daemon(&db, &server, &inner.url).await;
    let tools = package_plugin("runtime_tools");
    let tools_uid = assert_ok(&daemon.upload_package(TENANT, &tools, None).await)["unique_identifier"]
        .as_str()
        .expect("uid")
        .to_string();
    let other = common::dummy_variant("0.0.7", "outage_probe", &[]);
    let other_uid = decode(&other).0.to_string();

    // Upload while the server is down: a clear error, bounded in time, no declaration row.
    server.stop();
    let started = Instant::now();
    let (status, body) = daemon.upload_package(TENANT, &other, None).await;
    assert!(started.elapsed() < Duration::from_secs(45), "the failed upload took {:?}", started.elapsed());
    // Upstream's envelope: HTTP 200 with code -400 and the cause in the message.
    assert_eq!((status, &body["code"]), (200, &json!(-400)), "an upload succeeded with the storage down: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("failed to save package") && message.contains("object storage error"), "{message}");
    assert!(!declared_identifiers(&daemon.workdir).await.contains(&other_uid));

    // Install while the server is down, on a node whose disk holds no copy of the package: the task
    // fails with the storage error and no installation appears.
    server.restart().await;
    daemon.kill();
    wipe_local_state(&daemon.workdir);
    daemon.restart_after_kill().await;
    server.stop();
    let (status, body) = daemon
        .post(
            &format!("/plugin/{TENANT}/management/install/identifiers"),
            &json!({"plugin_unique_identifiers": [tools_uid], "source": "package", "metas": [{}]}),
        )
        .await;
    if status == 200 && body["code"] == 0 {
        let task_id = body["data"]["task_id"].as_str().expect("task id").to_string();
        let task = daemon.wait_task(TENANT, &task_id, Duration::from_secs(120)).await;
        assert_eq!(task["status"], "failed", "{task}");
        let text = task.to_string();
        assert!(text.contains("object storage error"), "{text}");
    } else {
        assert!(body.to_string().contains("object storage error"), "{status} {body}");
    }
    assert!(daemon.list(TENANT).await.is_empty(), "an installation appeared although its package was unreadable");

    // The server is back: the same upload and install succeed, and the plugin answers.
    server.restart().await;
    let uploaded = assert_ok(&daemon.upload_package(TENANT, &other, None).await);
    assert_eq!(uploaded["unique_identifier"], other_uid.as_str());
    let task = daemon.install_identifier(TENANT, &tools_uid).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    assert_eq!(invoke_echo(&daemon, json!({"text": "back"})).await[0]["message"]["text"], "echo: back");
    // Every declaration has its package in the bucket.
    let keys = server.keys("plugin_packages/").await;
    for uid in declared_identifiers(&daemon.workdir).await {
        assert!(keys.contains(&format!("plugin_packages/{uid}")), "declaration {uid} without a package: {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_go_up_in_parts_and_stream_back_on_s3_azure_and_gcs() {
    use dify_daemon::store::object::{ObjectBlobStore, MULTIPART_THRESHOLD};
    use dify_daemon::store::BlobStore;
    for kind in [Kind::S3, Kind::Azure, Kind::Gcs] {
        let Some(server) = StorageServer::start(kind).await else { return };
        let env: std::collections::HashMap<String, String> = server.daemon_env().into_iter().collect();
        let settings = dify_daemon::config::Settings::from_map(&env).expect("settings");
        let store = ObjectBlobStore::from_settings(&settings).expect("store");
        store.check_reachable("plugin_packages").await.expect("reachable");

        // In memory, above the multipart threshold.
        let big: Vec<u8> = (0..MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17).map(|i| (i * 31 % 251) as u8).collect();
        store.put("bundles/big.bin", &big).await.expect("multipart put");
        assert!(store.exists("bundles/big.bin").await.unwrap());
        assert!(store.get("bundles/big.bin").await.unwrap().expect("stored") == big, "{kind:?}: bytes differ");

        // From a file and back into a file, streamed.
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.bin");
        let content: Vec<u8> = big.iter().rev().copied().collect();
        std::fs::write(&source, &content).unwrap();
        store.put_file("bundles/from-file.bin", &source).await.expect("put_file");
        let target = dir.path().join("copy/target.bin");
        assert!(store.get_to_file("bundles/from-file.bin", &target).await.expect("get_to_file"));
        assert!(std::fs::read(&target).unwrap() == content, "{kind:?}: streamed bytes differ");
        assert!(!store.get_to_file("bundles/none.bin", &dir.path().join("none.bin")).await.unwrap());

        let keys = server.keys("bundles/").await;
        assert_eq!(keys, ["bundles/big.bin", "bundles/from-file.bin"], "{kind:?}");
        store.delete("bundles/big.bin").await.unwrap();
        store.delete("bundles/big.bin").await.unwrap();
        assert_eq!(store.get("bundles/big.bin").await.unwrap(), None);
        assert!(matches!(store.put("../escape", b"x").await, Err(dify_daemon::store::BlobError::InvalidKey(_))));
    }
}

/// The S3 settings of `server` with its endpoint replaced by the relay's.
fn through_relay(server: &StorageServer, relay: &Relay) -> Vec<(String, String)> {
    let mut env = server.daemon_env();
    for (key, value) in env.iter_mut() {
        if key == "S3_ENDPOINT" {
            *value = format!("http://127.0.0.1:{}", relay.port);
        }
    }
    env
}

/// The object's bytes, read from moto directly (not through the relay).
async fn object_bytes(server: &StorageServer, key: &str) -> Option<Vec<u8>> {
    let response = reqwest::get(format!("http://127.0.0.1:{}/{BUCKET}/{key}", server.port)).await.expect("get object");
    (response.status() == 200).then_some(())?;
    Some(response.bytes().await.expect("object body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_dying_mid_transfer_leaves_nothing_half_written() {
    let Some(server) = StorageServer::start(Kind::S3).await else { return };
    let relay = Relay::start(server.port).await;
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut extra = vec![("DIFY_INNER_API_URL".to_string(), inner.url.clone()), ("DIFY_INNER_API_KEY".into(), "inner-key".into())];
    extra.extend(through_relay(&server, &relay));
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut daemon = common::start_daemon(&db, &extra).await;

    // Packages of 12 MiB (above the multipart threshold: uploaded in 5 MiB parts).
    let tools = package_plugin("runtime_tools");
    let ballast = |seed| repackage_with(&tools, "data/ballast.bin", &incompressible(12 << 20, seed));
    let first = ballast(1);
    let first_uid = decode(&first).0.to_string();
    let second = ballast(2);
    let second_uid = decode(&second).0.to_string();
    assert!(first.len() > 12 << 20 && first_uid != second_uid);

    // A connection lost in the middle of a part (the server stays up): the part is sent again and
    // the upload succeeds with the whole package in the bucket.
    relay.cut_after(Direction::Upstream, 6 << 20, false);
    let uploaded = assert_ok(&daemon.upload_package(TENANT, &first, None).await);
    assert_eq!(uploaded["unique_identifier"], first_uid.as_str());
    assert_eq!(relay.cuts(), 1, "the relay did not cut the upload");
    let stored = object_bytes(&server, &format!("plugin_packages/{first_uid}")).await.expect("stored package");
    assert!(stored == first, "the stored package differs from the upload ({} vs {} bytes)", stored.len(), first.len());

    // The server dies in the middle of an upload and stays down: a clear error within the retry
    // budget, no object under the package's key, no declaration.
    relay.cut_after(Direction::Upstream, 6 << 20, true);
    let started = Instant::now();
    let (status, body) = daemon.upload_package(TENANT, &second, None).await;
    let took = started.elapsed();
    assert_eq!(relay.cuts(), 2, "the relay did not cut the second upload");
    assert!(took < Duration::from_secs(60), "the failed upload took {took:?}");
    assert_eq!((status, &body["code"]), (200, &json!(-400)), "an upload succeeded with the storage down: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("failed to save package") && message.contains("object storage error"), "{message}");
    assert!(!declared_identifiers(&daemon.workdir).await.contains(&second_uid));
    let keys = server.keys("plugin_packages/").await;
    assert_eq!(keys, [format!("plugin_packages/{first_uid}")], "a half-written package is visible");
    // The received bodies were spooled to temporary files, all removed again.
    let spool = daemon.workdir.join("storage/.uploads");
    let left: Vec<_> = std::fs::read_dir(&spool).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "temporary upload files left behind: {left:?}");

    // The server is back: the same upload succeeds.
    relay.restore();
    let uploaded = assert_ok(&daemon.upload_package(TENANT, &second, None).await);
    assert_eq!(uploaded["unique_identifier"], second_uid.as_str());
    assert!(object_bytes(&server, &format!("plugin_packages/{second_uid}")).await.expect("stored") == second);

    // An install on a node with an empty disk, the server dying while the package streams down:
    // the task fails with the storage error and no installation appears.
    daemon.kill();
    wipe_local_state(&daemon.workdir);
    daemon.restart_after_kill().await;
    relay.cut_after(Direction::Downstream, 4 << 20, true);
    let (status, body) = daemon
        .post(
            &format!("/plugin/{TENANT}/management/install/identifiers"),
            &json!({"plugin_unique_identifiers": [first_uid], "source": "package", "metas": [{}]}),
        )
        .await;
    if status == 200 && body["code"] == 0 {
        let task_id = body["data"]["task_id"].as_str().expect("task id").to_string();
        let task = daemon.wait_task(TENANT, &task_id, Duration::from_secs(120)).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert!(task.to_string().contains("object storage error"), "{task}");
    } else {
        assert!(body.to_string().contains("object storage error"), "{status} {body}");
    }
    assert_eq!(relay.cuts(), 3, "the relay did not cut the download");
    assert!(daemon.list(TENANT).await.is_empty(), "an installation appeared although its package was unreadable");

    // The server is back: the install succeeds and the plugin answers.
    relay.restore();
    let task = daemon.install_identifier(TENANT, &first_uid).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    assert_eq!(invoke_echo(&daemon, json!({"text": "whole"})).await[0]["message"]["text"], "echo: whole");
    for uid in declared_identifiers(&daemon.workdir).await {
        assert!(object_bytes(&server, &format!("plugin_packages/{uid}")).await.is_some(), "declaration {uid} without a package");
    }
}

/// `package` with `name` added (or replaced) by `content`.
fn repackage_with(package: &[u8], name: &str, content: &[u8]) -> Vec<u8> {
    common::repackage(package, &[(name, Some(content))])
}

/// `VmHWM` (peak resident set) of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmHWM value");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_spooled_with_bounded_memory() {
    let Some(server) = StorageServer::start(Kind::S3).await else { return };
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut extra: Vec<(String, String)> = vec![
        ("DIFY_INNER_API_URL".into(), inner.url.clone()),
        ("DIFY_INNER_API_KEY".into(), "inner-key".into()),
        ("MAX_PLUGIN_PACKAGE_SIZE".into(), (64u64 << 20).to_string()),
    ];
    extra.extend(server.daemon_env());
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let daemon = common::start_daemon(&db, &extra).await;
    let pid = daemon.pid().expect("daemon pid");
    // Warm up the upload path (allocator arenas, TLS-free HTTP client pools) with a small package.
    assert_ok(&daemon.upload_package(TENANT, &package_plugin("runtime_tools"), None).await);

    // A body four times the limit: refused with the usual envelope, and only counted, never held.
    let before = peak_rss(pid);
    let oversized = vec![7u8; 256 << 20];
    let (status, body) = daemon.upload_package(TENANT, &oversized, None).await;
    drop(oversized);
    let expected = json!({"code": -400, "data": null,
        "message": r#"{"message":"file size exceeds the maximum limit","error_type":"PluginDaemonBadRequestError","args":null}"#});
    assert_eq!((status, &body), (200, &expected));
    let growth = peak_rss(pid).saturating_sub(before);
    eprintln!("peak RSS growth for a 256 MiB body over the limit: {} MiB", growth >> 20);
    assert!(growth < 32 << 20, "receiving a refused 256 MiB body raised the peak RSS by {} MiB", growth >> 20);

    // A 48 MiB package within the limit: received into a file and streamed to the bucket in parts;
    // only the decode holds it in memory.
    let package = repackage_with(&package_plugin("runtime_tools"), "data/ballast.bin", &incompressible(48 << 20, 3));
    let uid = decode(&package).0.to_string();
    let before = peak_rss(pid);
    assert_ok(&daemon.upload_package(TENANT, &package, None).await);
    let growth = peak_rss(pid).saturating_sub(before);
    eprintln!("peak RSS growth for a {} MiB package upload: {} MiB", package.len() >> 20, growth >> 20);
    assert!(object_bytes(&server, &format!("plugin_packages/{uid}")).await.expect("stored") == package);
    // The decode holds the package and its unpacked files (twice its size); nothing else may add a
    // whole copy.
    assert!(growth < 5 * package.len() as u64 / 2, "a {} MiB upload raised the peak RSS by {} MiB", package.len() >> 20, growth >> 20);
}
