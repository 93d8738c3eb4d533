//! Shared environments: two versions of a real SDK plugin whose dependency sets are the same (one
//! written with comments, blank lines and a duplicate) get one environment on disk; the second install
//! builds nothing; each plugin writes only into its own directory; uninstalling one leaves the other
//! answering, and uninstalling both removes the environment.

use crate::common;
use crate::runtime_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT_A: &str = "0b7e6d5c-4a3b-4c2d-9e1f-0a9b8c7d6e5f";
const TENANT_B: &str = "1c8f7e6d-5b4c-4d3e-8f2a-1b0c9d8e7f6a";
const PLUGIN_ID: &str = "testing/runtime_tools";

/// Invokes the test tool in `mode` for `tenant`; returns the chunks' messages.
async fn invoke(daemon: &Daemon, tenant: &str, mode: &str, text: &str) -> Vec<Value> {
    let body = json!({"user_id": "user-1", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": mode, "text": text}}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", PLUGIN_ID)
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .expect("dispatch request");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("dispatch body");
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|envelope| envelope.get("data").cloned())
        .filter(|data| !data.is_null())
        .collect();
    assert!(!messages.is_empty(), "no chunk in {text}");
    messages
}

fn working_dir(daemon: &Daemon, uid: &str) -> PathBuf {
    daemon.workdir.join("cwd").join(uid.replace(':', "-"))
}

fn environments(daemon: &Daemon) -> Vec<PathBuf> {
    let mut envs: Vec<PathBuf> = std::fs::read_dir(daemon.workdir.join("cwd/.envs"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    envs.sort();
    envs
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

async fn uninstall(daemon: &Daemon, tenant: &str) {
    let installations = daemon.list(tenant).await;
    assert_eq!(installations.len(), 1, "{installations:?}");
    let id = installations[0]["id"].clone();
    let (status, body) = daemon.post(&format!("/plugin/{tenant}/management/uninstall"), &json!({"plugin_installation_id": id})).await;
    assert_eq!((status, &body["data"]), (200, &json!(true)), "{body}");
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).ino()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_with_the_same_dependencies_share_one_environment() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = common::start_daemon(&db, &[("LOG_LEVEL", "info")]).await;

    let first = package_plugin("runtime_tools");
    let (uid_a, task) = daemon.install_package(TENANT_A, &first).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    let envs = environments(&daemon);
    assert_eq!(envs.len(), 1, "{envs:?}");
    let marker = envs[0].join("dify/plugin.json");
    let built_at = std::fs::metadata(&marker).expect("ready marker").modified().expect("mtime");

    // Another version with the same requirements, written differently.
    let manifest = std::fs::read_to_string(plugin_dir("runtime_tools").join("manifest.yaml")).expect("manifest");
    let manifest = manifest.replacen("version: 0.0.1\ntype: plugin", "version: 0.0.2\ntype: plugin", 1);
    let requirements = std::fs::read_to_string(plugin_dir("runtime_tools").join("requirements.txt")).expect("requirements");
    let requirements = format!("# the same dependency set\n\n{}   # pinned range\n{requirements}", requirements.trim());
    let second =
        common::repackage(&first, &[("manifest.yaml", Some(manifest.as_bytes())), ("requirements.txt", Some(requirements.as_bytes()))]);
    let (uid_b, task) = daemon.install_package(TENANT_B, &second).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    assert_ne!(uid_a, uid_b);

    // One environment, linked from both plugin directories; the second install built nothing.
    assert_eq!(environments(&daemon), envs);
    let (dir_a, dir_b) = (working_dir(&daemon, &uid_a), working_dir(&daemon, &uid_b));
    for dir in [&dir_a, &dir_b] {
        assert!(std::fs::symlink_metadata(dir.join(".venv")).expect(".venv").file_type().is_symlink(), "{}", dir.display());
        assert_eq!(std::fs::canonicalize(dir.join(".venv")).expect("link target"), std::fs::canonicalize(&envs[0]).expect("env"));
    }
    assert_eq!(inode(&dir_a.join(".venv/bin")), inode(&dir_b.join(".venv/bin")));
    assert_eq!(std::fs::metadata(&marker).expect("marker").modified().expect("mtime"), built_at, "the environment was rebuilt");
    let log = daemon.log();
    assert_eq!(count(&log, "building a shared plugin environment"), 1, "{log}");
    assert_eq!(count(&log, "reusing a shared plugin environment"), 1, "{log}");

    // Both answer; each writes into its own directory, never into the shared environment.
    for (tenant, dir, text) in [(TENANT_A, &dir_a, "from-a"), (TENANT_B, &dir_b, "from-b")] {
        let messages = invoke(&daemon, tenant, "write_file", text).await;
        let result = &messages[0]["message"]["json_object"];
        assert_eq!(result["read_back"], text, "{messages:?}");
        assert_eq!(result["environment_written"], false, "a plugin changed the shared environment: {messages:?}");
        assert_eq!(std::fs::read_to_string(dir.join(format!("notes/{text}.txt"))).expect("note"), text);
    }
    assert!(!dir_b.join("notes/from-a.txt").exists() && !dir_a.join("notes/from-b.txt").exists());
    assert!(!envs[0].join("intruder.txt").exists());

    // Uninstalling A: its directory goes, the environment stays for B, which still answers.
    uninstall(&daemon, TENANT_A).await;
    assert!(!dir_a.exists(), "{} left behind", dir_a.display());
    assert_eq!(environments(&daemon), envs);
    let messages = invoke(&daemon, TENANT_B, "echo", "still here").await;
    assert_eq!(messages[0]["message"]["text"], "echo: still here", "{messages:?}");

    // Uninstalling B too: nothing links to the environment, it is collected.
    uninstall(&daemon, TENANT_B).await;
    assert_eq!(environments(&daemon), Vec::<PathBuf>::new());
}
