//! Plugin isolation against the real daemon binary: a hostile SDK plugin (`tests/plugins/sandbox_hostile`,
//! packaged by `dify-package`) installed next to a victim plugin (`runtime_tools`, another tenant)
//! tries to read the daemon's environment, memory, database, WAL, stored `server_key` and storage,
//! the victim's directory and `.venv`, to write there, to kill and trace the daemon and the victim,
//! to fork a thousand processes and to allocate past its declared memory. Every attempt must fail,
//! the daemon and the victim keep serving, and the plugin killed for its memory restarts. A control
//! run with `PLUGIN_SANDBOX=off` shows the same attacks succeed without the sandbox.

use crate::common;
use crate::runtime_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Backend, Daemon, DaemonOptions, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const ATTACKER: &str = "6a1d2c3b-0000-4000-8000-00000000000a";
const VICTIM: &str = "6a1d2c3b-0000-4000-8000-00000000000b";
const DECLARED_MEMORY: &str = "268435456";

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

async fn start_daemon(db: &TestDb, level: &str) -> Daemon {
    let mut env: Vec<(String, String)> = vec![
        ("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into()),
        ("PYTHON_ENV_INIT_TIMEOUT".into(), "120".into()),
        ("PLUGIN_RESTART_BACKOFF_MS".into(), "200".into()),
        ("PLUGIN_SANDBOX".into(), level.into()),
        // Secrets of the daemon a plugin must never see.
        ("DB_PASSWORD".into(), "db-secret-value".into()),
        ("DIFY_INNER_API_KEY".into(), "inner-secret-value".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "aws-secret-value".into()),
    ];
    for name in common::NETWORK_PASSTHROUGH {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    if let Some(cache) = shared_uv_cache() {
        env.push(("UV_CACHE_DIR".into(), cache.display().to_string()));
    }
    // The generated key is stored in `storage/server_key`: one of the files to protect.
    Daemon::start(db, DaemonOptions { env, no_server_key: true, ..Default::default() }).await
}

async fn dispatch(daemon: &Daemon, tenant: &str, plugin_id: &str, provider: &str, tool: &str, parameters: Value) -> (u16, String) {
    let body = json!({"user_id": "user-1", "conversation_id": null, "app_id": null, "message_id": null,
        "data": {"provider": provider, "tool": tool, "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", plugin_id)
        .timeout(Duration::from_secs(180))
        .json(&body)
        .send()
        .await
        .expect("dispatch request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Runs one attack; returns every attempt (`target`, `succeeded`, `detail`).
async fn attack(daemon: &Daemon, kind: &str, targets: Value, count: u64) -> Vec<Value> {
    let parameters = json!({"attack": kind, "targets": targets.to_string(), "count": count});
    let (status, body) = dispatch(daemon, ATTACKER, "testing/sandbox_hostile", "sandbox_hostile", "attack", parameters).await;
    assert_eq!(status, 200, "{body}");
    let result = body
        .split_terminator("\n\n")
        .filter_map(|line| serde_json::from_str::<Value>(line.strip_prefix("data: ")?).ok())
        .find_map(|envelope| envelope["data"]["message"]["json_object"].as_object().cloned())
        .unwrap_or_else(|| panic!("no attack report for {kind}: {body}"));
    result["results"].as_array().cloned().unwrap_or_default()
}

async fn echo(daemon: &Daemon) -> String {
    let (status, body) =
        dispatch(daemon, VICTIM, "testing/runtime_tools", "runtime_tools", "exercise", json!({"mode": "echo", "text": "alive"})).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The installed plugin directory `<workdir>/cwd/testing/<name>-*`.
fn plugin_dir(daemon: &Daemon, name: &str) -> PathBuf {
    let parent = daemon.workdir.join("cwd/testing");
    std::fs::read_dir(&parent)
        .expect("plugin directories")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{name}-"))))
        .unwrap_or_else(|| panic!("no directory for {name} in {}", parent.display()))
}

/// The pid of the daemon's plugin process running in `dir`: its child, or the child of one of its
/// fork servers when the plugin was forked (`PLUGIN_FORK_START`).
fn plugin_pid(daemon: &Daemon, dir: &Path) -> u32 {
    let daemon_pid = daemon.pid().expect("daemon runs");
    let children: Vec<u32> = children_of(daemon_pid).into_iter().map(|(pid, _)| pid).collect();
    let grandchildren: Vec<u32> = children.iter().flat_map(|pid| children_of(*pid)).map(|(pid, _)| pid).collect();
    children
        .into_iter()
        .chain(grandchildren)
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .unwrap_or_else(|| panic!("no plugin process in {}", dir.display()))
}

async fn install(daemon: &Daemon, tenant: &str, plugin: &str) {
    let (_, task) = daemon.install_package(tenant, &package_plugin(plugin)).await;
    assert_eq!(task["status"], "success", "install of {plugin} failed: {task}\nlog:\n{}", daemon.log());
}

fn assert_all_failed(kind: &str, results: &[Value]) {
    assert!(!results.is_empty(), "{kind}: no attempt reported");
    let succeeded: Vec<&Value> = results.iter().filter(|r| r["succeeded"] != json!(false)).collect();
    assert!(succeeded.is_empty(), "{kind}: these attempts succeeded: {succeeded:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugin_reaches_nothing_of_the_daemon_or_other_plugins() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, "best_effort").await;
    let workdir = daemon.workdir.canonicalize().expect("workdir");
    std::fs::write(workdir.join(".env.secret"), "SERVER_KEY=not-for-plugins\n").expect("secret file");
    install(&daemon, VICTIM, "runtime_tools").await;
    install(&daemon, ATTACKER, "sandbox_hostile").await;
    // The victim stores a value of its tenant (in the daemon's database and WAL).
    let (status, stored) = dispatch(
        &daemon,
        VICTIM,
        "testing/runtime_tools",
        "runtime_tools",
        "exercise",
        json!({"mode": "storage_set", "key": "victim-secret", "count": 32}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");

    let (status, health) = daemon.get("/health/check").await;
    assert_eq!(status, 200);
    let sandbox = &health["sandbox"];
    let memory_cgroup = sandbox["layers"]["memory_cgroup"] == json!(true);
    assert_eq!(sandbox["level"], "best_effort", "{health}");
    if is_root() {
        for layer in ["non_dumpable", "uid", "landlock", "memory_cgroup", "pids_cgroup", "private_tmp", "rlimits"] {
            assert_eq!(sandbox["layers"][layer], json!(true), "layer {layer} on this host: {sandbox}");
        }
    }
    assert!(daemon.log().contains("plugin sandbox: best_effort (active: "), "start-up report missing:\n{}", daemon.log());

    let daemon_pid = daemon.pid().expect("daemon runs");
    let victim_dir = plugin_dir(&daemon, "runtime_tools");
    let attacker_dir = plugin_dir(&daemon, "sandbox_hostile");
    let victim_pid = plugin_pid(&daemon, &victim_dir);
    let attacker_pid = plugin_pid(&daemon, &attacker_dir);

    // Who the plugin is: its own uid (as root), its own directory, a private /tmp.
    let me = attack(&daemon, "self", json!([]), 0).await;
    let me: Value = serde_json::from_str(me[0]["detail"].as_str().expect("self detail")).expect("self json");
    assert_eq!(me["cwd"], json!(attacker_dir.display().to_string()), "{me}");
    if is_root() {
        assert_ne!(me["uid"], json!(0), "{me}");
        assert_eq!(me["tmpdir"], "/tmp", "{me}");
        // Only the path down to its own directory is visible in its /tmp.
        let tmp_entries: Vec<&str> = me["tmp"].as_array().expect("tmp").iter().filter_map(Value::as_str).collect();
        let first = attacker_dir.strip_prefix("/tmp").ok().and_then(|p| p.iter().next()).and_then(|c| c.to_str());
        assert!(tmp_entries.iter().all(|e| Some(*e) == first), "private /tmp shows {tmp_entries:?}");
        // Beside its own directory it sees no other plugin's.
        let own = attacker_dir.file_name().and_then(|n| n.to_str()).expect("dir name");
        assert_eq!(me["siblings"], json!([own]), "{me}");
    }

    let mut reads: Vec<String> = vec![
        format!("/proc/{daemon_pid}/environ"),
        format!("/proc/{daemon_pid}/mem"),
        format!("/proc/{daemon_pid}/cwd/"),
        format!("/proc/{daemon_pid}/root{}", workdir.join("daemon.db").display()),
        format!("/proc/{victim_pid}/environ"),
        format!("/proc/{victim_pid}/mem"),
    ];
    let files = [
        workdir.join("daemon.db"),
        workdir.join("daemon.db-wal"),
        workdir.join("storage/server_key"),
        workdir.join("storage"),
        workdir.join(".env.secret"),
        workdir.join("daemon.log"),
        victim_dir.clone(),
        victim_dir.join("manifest.yaml"),
        victim_dir.join(".venv"),
        victim_dir.join(".venv/pyvenv.cfg"),
    ];
    for file in &files {
        assert!(file.exists(), "{} must exist for the attack to mean something", file.display());
        reads.push(file.display().to_string());
    }
    assert_all_failed("read", &attack(&daemon, "read", json!(reads), 0).await);
    let writes = [victim_dir.display().to_string(), workdir.display().to_string(), victim_dir.join(".venv").display().to_string()];
    assert_all_failed("write", &attack(&daemon, "write", json!(writes), 0).await);
    assert_all_failed("ptrace", &attack(&daemon, "ptrace", json!([daemon_pid, victim_pid]), 0).await);
    assert_all_failed("signal", &attack(&daemon, "signal", json!([daemon_pid, victim_pid]), 0).await);
    assert_all_failed("fork", &attack(&daemon, "fork", json!([]), 1000).await);

    // The daemon and the victim keep serving, the victim in the same process.
    let (status, _) = daemon.get("/health/check").await;
    assert_eq!(status, 200);
    assert!(echo(&daemon).await.contains("echo: alive"));
    assert!(process_alive(victim_pid) && process_alive(daemon_pid));
    assert_eq!(plugin_pid(&daemon, &victim_dir), victim_pid);

    // Past its declared memory: the plugin is killed, the session fails naming the limit, the
    // daemon logs it, and the plugin restarts under the usual backoff.
    let parameters = json!({"attack": "memory", "targets": "[]", "count": 1024});
    let (status, body) = dispatch(&daemon, ATTACKER, "testing/sandbox_hostile", "sandbox_hostile", "attack", parameters).await;
    let memory_message = format!("memory limit of {DECLARED_MEMORY} bytes");
    if !memory_cgroup {
        // Without a memory cgroup the RLIMIT_AS fallback makes the allocation fail instead.
        assert!(body.contains("\"succeeded\":false") && body.contains("MemoryError"), "{body}");
    } else {
        assert!(status == 200 && body.contains(&memory_message), "expected the memory kill in the session: {status} {body}");
        assert!(
            eventually(Duration::from_secs(10), || daemon.log().contains("exceeding its memory limit")).await,
            "the memory kill is not logged:\n{}",
            daemon.log()
        );
        assert!(eventually(Duration::from_secs(30), || children_of(daemon_pid).iter().all(|(pid, _)| *pid != attacker_pid)).await);
    }
    let again = attack(&daemon, "self", json!([]), 0).await;
    assert_eq!(again.len(), 1, "the plugin serves again after its restart");
    assert!(echo(&daemon).await.contains("echo: alive"));
    assert!(process_alive(victim_pid) && process_alive(daemon_pid));
}

/// The same attacks without the sandbox succeed: the test above is not vacuous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_sandbox_the_same_attacks_succeed() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, "off").await;
    install(&daemon, ATTACKER, "sandbox_hostile").await;
    let (_, health) = daemon.get("/health/check").await;
    assert_eq!(health["sandbox"]["level"], "off", "{health}");
    assert!(health["sandbox"]["layers"].as_object().expect("layers").values().all(|on| on == &json!(false)), "{health}");
    let workdir = daemon.workdir.canonicalize().expect("workdir");
    let daemon_pid = daemon.pid().expect("daemon runs");
    let reads = json!([
        format!("/proc/{daemon_pid}/environ"),
        workdir.join("daemon.db").display().to_string(),
        workdir.join("storage/server_key").display().to_string(),
    ]);
    let results = attack(&daemon, "read", reads, 0).await;
    assert!(results.iter().all(|r| r["succeeded"] == json!(true)), "{results:#?}");
    let environ = results[0]["detail"].as_str().unwrap_or_default();
    assert!(environ.contains("read"), "{environ}");
    let forked = attack(&daemon, "fork", json!([]), 1000).await;
    if is_root() {
        assert_eq!(forked[0]["succeeded"], json!(true), "{forked:#?}");
    }
}
