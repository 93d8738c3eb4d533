//! Dispatch's installation lookup is served from memory; these tests check through the real binary
//! that the writes of installation rows invalidate it at once: after an uninstall dispatch answers
//! `PluginNotFoundError` on the very next request, after an upgrade the next request reaches the new
//! version (a build of the SDK test plugin whose echo differs).

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use common::{repackage, start_daemon, Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT: &str = "5b0e1c2d-7a8f-4e3b-9c6d-1f2a3b4c5d6e";
const PLUGIN_ID: &str = "testing/runtime_tools";
const NOT_FOUND_BODY: &str =
    r#"{"code":-404,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginNotFoundError\",\"args\":null}","data":null}"#;

/// The test plugin at another version whose echo tool answers `echo <tag>: …`.
fn tagged_variant(version: &str, tag: &str) -> Vec<u8> {
    let dir = plugin_dir("runtime_tools");
    let manifest = std::fs::read_to_string(dir.join("manifest.yaml")).expect("manifest");
    assert!(manifest.starts_with("version: 0.0.1\n"), "the test plugin's manifest starts with its version");
    let manifest = manifest.replacen("version: 0.0.1\n", &format!("version: {version}\n"), 1);
    let tool = std::fs::read_to_string(dir.join("tools/exercise.py")).expect("tool source");
    assert!(tool.contains(r#"f"echo: {text}""#), "the echo line of the test tool");
    let tool = tool.replace(r#"f"echo: {text}""#, &format!(r#"f"echo {tag}: {{text}}""#));
    repackage(
        &package_plugin("runtime_tools"),
        &[("manifest.yaml", Some(manifest.as_bytes())), ("tools/exercise.py", Some(tool.as_bytes()))],
    )
}

/// Invokes the echo tool; returns the status and raw body.
async fn echo(daemon: &Daemon, text: &str) -> (u16, String) {
    let body = json!({"user_id": "user-1", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": "echo", "text": text}}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", PLUGIN_ID)
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .expect("dispatch request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("dispatch body"))
}

/// The SSE line the echo tool answers with.
fn echo_line(message: &str) -> String {
    let data = json!({"type": "text", "message": {"text": message}, "meta": null});
    format!("data: {}\n\n", json!({"code": 0, "message": "success", "data": data}))
}

fn text_of(body: &str) -> String {
    let json = body.trim_end().strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE line: {body:?}"));
    let envelope: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("bad JSON {json:?}: {e}"));
    envelope["data"]["message"]["text"].as_str().unwrap_or_else(|| panic!("no text in {envelope}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_is_seen_by_the_next_dispatch() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, &[]).await;
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    // Twice: the second answer comes from the cached installation.
    for text in ["one", "two"] {
        let (status, body) = echo(&daemon, text).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(text_of(&body), format!("echo: {text}"), "{body}");
    }

    let list = daemon.list(TENANT).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["plugin_unique_identifier"], uid.as_str());
    let (status, answer) = daemon
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": list[0]["id"]}))
        .await;
    assert_eq!((status, &answer["data"]), (200, &json!(true)), "{answer}");

    // The very next dispatch must not find the installation, and neither must later ones.
    for _ in 0..3 {
        let (status, body) = echo(&daemon, "three").await;
        assert_eq!((status, body.as_str()), (404, NOT_FOUND_BODY));
    }

    // Installing again makes it reachable again at once.
    let task = daemon.install_identifier(TENANT, &uid).await;
    assert_eq!(task["status"], "success", "reinstall task: {task}\n{}", daemon.log());
    let (status, body) = echo(&daemon, "four").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "echo: four");
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_seen_by_the_next_dispatch() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, &[]).await;
    let (uid1, task) = daemon.install_package(TENANT, &tagged_variant("0.0.1", "v1")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    for text in ["a", "b"] {
        let (status, body) = echo(&daemon, text).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, echo_line(&format!("echo v1: {text}")));
    }

    let (status, uploaded) = daemon.upload_package(TENANT, &tagged_variant("0.0.2", "v2"), None).await;
    assert_eq!(status, 200, "{uploaded}");
    let uid2 = uploaded["data"]["unique_identifier"].as_str().expect("unique_identifier").to_string();
    assert_ne!(uid1, uid2);
    let (status, answer) = daemon
        .post(
            &format!("/plugin/{TENANT}/management/install/upgrade"),
            &json!({"original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2, "source": "package", "meta": {}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let task_id = answer["data"]["task_id"].as_str().unwrap_or_else(|| panic!("no task: {answer}")).to_string();
    let task = daemon.wait_task(TENANT, &task_id, Duration::from_secs(120)).await;
    assert_eq!(task["status"], "success", "upgrade task: {task}\n{}", daemon.log());

    // Right after the task: the new version answers, every time.
    for text in ["c", "d", "e"] {
        let (status, body) = echo(&daemon, text).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, echo_line(&format!("echo v2: {text}")), "dispatch reached an old version");
    }
    db.drop_now().await;
}
