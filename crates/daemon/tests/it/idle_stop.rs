//! Idle stop (`PLUGIN_IDLE_TIMEOUT`): a real SDK plugin installed through the daemon is stopped after
//! going unused (its process reaped, `/status.json` says `idle-stopped`) and started again by the next
//! invocation; bursts of concurrent invocations fired around the stop boundary all succeed.

use crate::common;
use crate::runtime_support;

use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT: &str = "5f0c7b1e-1d2a-4c3b-9e8f-7a6b5c4d3e2f";
const PLUGIN_ID: &str = "testing/runtime_tools";

/// Invokes the echo tool; returns the SSE body when the echo came back, else the failure text.
async fn echo(daemon: &Daemon, text: &str) -> Result<String, String> {
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
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text_body = response.text().await.map_err(|e| e.to_string())?;
    if status == 200 && text_body.contains(&format!("echo: {text}")) {
        Ok(text_body)
    } else {
        Err(format!("{status}: {text_body}"))
    }
}

/// This node's runtime row of the test plugin on `/status.json`, if listed.
async fn runtime_row(daemon: &Daemon) -> Option<Value> {
    let (_, report) = daemon.get("/status.json").await;
    report["data"]["runtimes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["identifier"].as_str().unwrap_or("").starts_with(PLUGIN_ID)).cloned())
}

/// Waits (bounded) until the runtime row has `status`.
async fn wait_status(daemon: &Daemon, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let row = runtime_row(daemon).await;
        if row.as_ref().is_some_and(|r| r["status"] == status) {
            return row.unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "runtime never became {status}: {row:?}\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The daemon's notes about idle stops in the plugin's log ring.
async fn idle_stop_notes(daemon: &Daemon) -> usize {
    let (_, body) = daemon.get(&format!("/plugin/{TENANT}/management/logs?plugin_id={PLUGIN_ID}&limit=1000")).await;
    body["data"]["entries"]
        .as_array()
        .map(|entries| entries.iter().filter(|e| e["message"].as_str().unwrap_or("").contains("idle-stopped after")).count())
        .unwrap_or(0)
}

fn process_exists(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn start(idle_timeout: &str) -> (TestDb, Daemon) {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = common::start_daemon(&db, &[("PLUGIN_IDLE_TIMEOUT", idle_timeout)]).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    (db, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plugin_is_stopped_and_started_again_by_the_next_invocation() {
    let (_db, daemon) = start("2").await;
    echo(&daemon, "first").await.expect("first invocation");
    let running = wait_status(&daemon, "running", Duration::from_secs(10)).await;
    let first_pid = running["pids"].as_array().and_then(|p| p.last()).and_then(Value::as_u64).expect("a pid");
    assert!(process_exists(first_pid));

    // Unused for the timeout: stopped, the child reaped (no zombie left in /proc).
    let stopped = wait_status(&daemon, "idle-stopped", Duration::from_secs(30)).await;
    assert_eq!(stopped["pids"], json!([]), "{stopped}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(first_pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!process_exists(first_pid), "plugin process {first_pid} still exists after the idle stop");
    assert_eq!(idle_stop_notes(&daemon).await, 1);

    // The next invocation starts it again, in a new process.
    echo(&daemon, "second").await.expect("invocation after the idle stop");
    let again = wait_status(&daemon, "running", Duration::from_secs(10)).await;
    let second_pid = again["pids"].as_array().and_then(|p| p.last()).and_then(Value::as_u64).expect("a pid");
    assert_ne!(first_pid, second_pid);
    assert!(process_exists(second_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_across_the_idle_stop_boundary_all_succeed() {
    // One second of idleness stops the plugin; the sweep looks every 250 ms.
    let (_db, daemon) = start("1").await;
    echo(&daemon, "warm").await.expect("first invocation");
    let mut fired = 0usize;
    let mut failures = Vec::new();
    // Bursts after pauses around the timeout: some land on a running plugin, some while the sweep
    // stops it, some after it stopped.
    for round in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(850 + (round % 4) * 150)).await;
        let texts: Vec<String> = (0..6).map(|i| format!("r{round}-{i}")).collect();
        let burst: Vec<_> = texts.iter().map(|text| echo(&daemon, text)).collect();
        fired += burst.len();
        for outcome in futures::future::join_all(burst).await {
            if let Err(error) = outcome {
                failures.push(error);
            }
        }
    }
    assert!(failures.is_empty(), "{} of {fired} invocations failed: {failures:?}\n{}", failures.len(), daemon.log());
    assert_eq!(fired, 72);
    let stops = idle_stop_notes(&daemon).await;
    assert!(stops >= 2, "the plugin was idle-stopped {stops} times during the bursts");
}
