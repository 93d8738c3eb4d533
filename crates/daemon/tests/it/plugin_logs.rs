//! Plugin log rings through the real daemon binary: the SDK test tool writes a stderr line and a
//! `log` event, then crashes; `GET /plugin/{tenant}/management/logs` shows both lines and the daemon's
//! notes about the exit and the restart, only to the tenant that installed the plugin, and
//! `dify-plugin-client logs` prints the same lines.

use crate::common;
use crate::runtime_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT: &str = "5b0f1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const OTHER_TENANT: &str = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f";
const PLUGIN_ID: &str = "testing/runtime_tools";

async fn start_daemon(db: &TestDb) -> Daemon {
    common::start_daemon(db, &[("PLUGIN_RESTART_BACKOFF_MS", "100")]).await
}

/// Invokes the test tool in `mode` and returns the raw SSE body.
async fn invoke(daemon: &Daemon, mode: &str, text: &str) -> String {
    let body = json!({"user_id": "user-1", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": mode, "text": text}}});
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
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("dispatch body")
}

async fn logs(daemon: &Daemon, tenant: &str, query: &str) -> (u16, Value) {
    daemon.get(&format!("/plugin/{tenant}/management/logs?{query}")).await
}

fn messages(data: &Value, source: &str) -> Vec<String> {
    data["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["source"] == source)
                .map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// `target/debug/dify-plugin-client`, beside the daemon binary this test runs.
fn client_binary() -> PathBuf {
    let daemon = PathBuf::from(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    let client = daemon.with_file_name("dify-plugin-client");
    assert!(client.exists(), "{} is missing: run `cargo build --workspace --bins`", client.display());
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_stderr_log_events_and_restarts_are_readable_per_tenant() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db).await;
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let body = invoke(&daemon, "log", "marker-7f3a").await;
    assert!(body.contains("logged"), "{body}");
    // The stderr line travels on its own pipe: wait (bounded) until the ring has it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let data = loop {
        let (status, body) = logs(&daemon, TENANT, &format!("plugin_id={PLUGIN_ID}")).await;
        assert_eq!((status, &body["code"]), (200, &json!(0)), "{body}");
        let data = body["data"].clone();
        if messages(&data, "stderr").iter().any(|m| m.contains("marker-7f3a")) || Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(data["plugin_id"], PLUGIN_ID);
    assert_eq!(data["plugin_unique_identifier"], uid.as_str());
    assert!(messages(&data, "stderr").contains(&"STDERR stderr says: marker-7f3a".to_string()), "{data}");
    assert!(messages(&data, "log").contains(&"WARNING logger says: marker-7f3a".to_string()), "{data}");
    let last_seq = data["last_seq"].as_u64().expect("last_seq");
    assert!(last_seq >= 2, "{data}");
    let seqs: Vec<u64> = data["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "entries oldest first: {seqs:?}");

    // `after` reads only newer lines; `limit` keeps the newest; a unique identifier names the plugin too.
    let (_, body) = logs(&daemon, TENANT, &format!("plugin_id={PLUGIN_ID}&after={last_seq}")).await;
    assert_eq!(body["data"]["entries"], json!([]), "{body}");
    let (_, body) = logs(&daemon, TENANT, &format!("plugin_id={uid}&limit=1")).await;
    assert_eq!(body["data"]["entries"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["data"]["entries"][0]["seq"].as_u64(), Some(last_seq));

    // Another tenant has not installed the plugin: not found, nothing leaks.
    let (status, body) = logs(&daemon, OTHER_TENANT, &format!("plugin_id={PLUGIN_ID}")).await;
    assert_eq!((status, &body["code"]), (200, &json!(-404)), "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("PluginNotFoundError"), "{body}");
    let (status, body) = logs(&daemon, TENANT, "").await;
    assert_eq!(status, 400, "{body}");
    let unauthorized = daemon
        .client
        .get(daemon.url(&format!("/plugin/{TENANT}/management/logs?plugin_id={PLUGIN_ID}")))
        .send()
        .await
        .expect("request");
    assert_eq!(unauthorized.status().as_u16(), 401);

    // A crash: the daemon's notes say it exited and was restarted.
    invoke(&daemon, "exit", "").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let notes = loop {
        let (_, body) = logs(&daemon, TENANT, &format!("plugin_id={PLUGIN_ID}&after={last_seq}")).await;
        let notes = messages(&body["data"], "daemon");
        if notes.iter().any(|n| n.starts_with("INFO plugin restarted")) || Instant::now() > deadline {
            break notes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(notes.iter().any(|n| n.starts_with("WARNING plugin process exited unexpectedly")), "{notes:?}\n{}", daemon.log());
    assert!(notes.iter().any(|n| n == "INFO plugin restarted (restart 1)"), "{notes:?}");

    // The client command prints the same lines.
    let run_client = |args: &[&str]| {
        let output = std::process::Command::new(client_binary())
            .args(["--url", &daemon.base, "--key", &daemon.key, "--tenant", TENANT])
            .args(args)
            .env("HOME", &daemon.workdir)
            .env_remove("DIFY_PLUGIN_DAEMON_URL")
            .env_remove("DIFY_PLUGIN_DAEMON_KEY")
            .output()
            .expect("run dify-plugin-client");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).to_string(), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (code, stdout, stderr) = run_client(&["logs", PLUGIN_ID, "--tail", "500"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.lines().any(|l| l.ends_with("[stderr] stderr says: marker-7f3a")), "{stdout}");
    assert!(stdout.lines().any(|l| l.ends_with("[log] WARNING logger says: marker-7f3a")), "{stdout}");
    assert!(stdout.lines().any(|l| l.ends_with("[daemon] INFO plugin restarted (restart 1)")), "{stdout}");
    let (code, stdout, stderr) = run_client(&["-o", "json", "logs", PLUGIN_ID, "--tail", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let parsed: Value = serde_json::from_str(&stdout).expect("json output");
    assert_eq!(parsed["entries"].as_array().map(Vec::len), Some(1), "{parsed}");
    let (code, _, stderr) = run_client(&["logs", "testing/not_installed"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("plugin not found"), "{stderr}");
}
