//! Offline installs: with uv offline (`PLUGIN_INSTALL_OFFLINE`), the package index pointing at a closed
//! port, proxies pointing there too and an empty uv cache, a real SDK plugin installs from the wheels
//! its package ships (`wheels/` and `--no-index --find-links=./wheels/`, as air-gapped repackaging
//! tools produce) or from the daemon's `PLUGIN_WHEELS_DIR`; a missing wheel fails the install within
//! seconds, naming the distribution.
//!
//! The wheels are downloaded once per build directory (`CARGO_TARGET_TMPDIR/offline-wheels`) with
//! `pip download` of the test interpreter and shared by every test here.

use crate::common;
use crate::runtime_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::json;

const TENANT: &str = "2d9a8b7c-6e5f-4a3b-9c1d-2e3f4a5b6c7d";
/// A closed port: nothing listens on the discard port of the loopback address.
const UNREACHABLE: &str = "http://127.0.0.1:9/";

/// The plugin's requirements, as wheels: downloaded once into the build directory and reused.
fn wheels() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("offline-wheels");
    if target.join("complete").is_file() {
        return target;
    }
    let python = std::env::var_os("PYTHON_INTERPRETER_PATH").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"));
    let staging = target.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let output = std::process::Command::new(&python)
        .args(["-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(&staging)
        .arg("-r")
        .arg(plugin_dir("runtime_tools").join("requirements.txt"))
        .output()
        .unwrap_or_else(|e| panic!("run {} -m pip: {e}", python.display()));
    assert!(output.status.success(), "pip download failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::write(staging.join("complete"), b"").expect("mark wheels complete");
    // Another test process may have finished first; either copy is complete.
    if std::fs::rename(&staging, &target).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(target.join("complete").is_file());
    target
}

fn wheel_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("wheels")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    files.sort();
    files
}

/// A daemon with no way to download: uv offline, the index and proxies on a closed port, an empty uv
/// cache of its own.
async fn offline_daemon(db: &TestDb, extra: &[(&str, &str)]) -> (Daemon, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("uv cache");
    let cache_dir = cache.path().display().to_string();
    let mut env = vec![
        ("PLUGIN_INSTALL_OFFLINE", "true"),
        ("PIP_MIRROR_URL", UNREACHABLE),
        ("HTTP_PROXY", UNREACHABLE),
        ("HTTPS_PROXY", UNREACHABLE),
        ("UV_CACHE_DIR", cache_dir.as_str()),
    ];
    env.extend_from_slice(extra);
    (common::start_daemon(db, &env).await, cache)
}

async fn echo(daemon: &Daemon) -> String {
    let body = json!({"user_id": "user-1", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": "echo", "text": "offline"}}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", "testing/runtime_tools")
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .expect("dispatch request");
    response.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_that_ships_its_wheels_installs_without_network() {
    let wheels = wheels();
    let requirements = std::fs::read_to_string(plugin_dir("runtime_tools").join("requirements.txt")).expect("requirements");
    let requirements = format!("--no-index --find-links=./wheels/\n{requirements}");
    let mut changes: Vec<(String, Vec<u8>)> = vec![("requirements.txt".into(), requirements.into_bytes())];
    for wheel in wheel_files(&wheels) {
        let name = format!("wheels/{}", wheel.file_name().unwrap().to_string_lossy());
        changes.push((name, std::fs::read(&wheel).expect("wheel")));
    }
    let refs: Vec<(&str, Option<&[u8]>)> = changes.iter().map(|(n, c)| (n.as_str(), Some(c.as_slice()))).collect();
    let package = common::repackage(&package_plugin("runtime_tools"), &refs);

    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let (daemon, _cache) = offline_daemon(&db, &[("MAX_PLUGIN_PACKAGE_SIZE", "104857600")]).await;
    let started = Instant::now();
    let (_, task) = daemon.install_package(TENANT, &package).await;
    let took = started.elapsed();
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    eprintln!("offline install from shipped wheels took {took:?}");
    let answer = echo(&daemon).await;
    assert!(answer.contains("echo: offline"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_wheel_directory_serves_plugins_without_network() {
    let wheels = wheels();
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let wheels_dir = wheels.display().to_string();
    let (daemon, _cache) = offline_daemon(&db, &[("PLUGIN_WHEELS_DIR", wheels_dir.as_str())]).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    let answer = echo(&daemon).await;
    assert!(answer.contains("echo: offline"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wheel_fails_the_offline_install_fast_and_names_it() {
    let wheels = wheels();
    // Every wheel but httpx's.
    let partial = tempfile::tempdir().expect("partial wheels");
    let mut removed = 0;
    for wheel in wheel_files(&wheels) {
        let name = wheel.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("httpx-") {
            removed += 1;
            continue;
        }
        std::fs::copy(&wheel, partial.path().join(&name)).expect("copy wheel");
    }
    assert_eq!(removed, 1, "no httpx wheel among {:?}", wheel_files(&wheels));
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let wheels_dir = partial.path().display().to_string();
    let (daemon, _cache) = offline_daemon(&db, &[("PLUGIN_WHEELS_DIR", wheels_dir.as_str()), ("PLUGIN_ENV_BUILD_RETRIES", "3")]).await;
    let started = Instant::now();
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    let took = started.elapsed();
    assert_eq!(task["status"], "failed", "{task}");
    let message = task["plugins"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no distribution of `httpx` is available offline"), "{message}");
    // No retries of a resolution that cannot succeed, no network timeouts.
    assert!(took < Duration::from_secs(20), "the failing install took {took:?}");
    eprintln!("offline install with a missing wheel failed after {took:?}");
}
