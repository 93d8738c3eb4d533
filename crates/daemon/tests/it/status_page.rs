//! The status page in a real browser (headless Chromium, Debian's `chromium`; `scripts/test` installs
//! it where missing): with a plugin installed, a failed install and a crashed (restarted) plugin, the
//! rendered page shows the installed plugin, the failed install's error text and the restart. A
//! screenshot of that page is what `docs/status-page.png` shows (`DIFY_REGENERATE_DOCS=1` rewrites it).

use crate::common;
use crate::runtime_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Daemon, DaemonOptions, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT: &str = "7c6b5a49-3827-4165-a4b3-c2d1e0f9a8b7";

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .expect("chromium is not installed: scripts/test installs Debian's `chromium`")
}

/// Runs headless Chromium on `url` with `args`; bounded to 90 s.
fn run_chromium(profile: &Path, url: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=4000", "--window-size=1400,1100"])
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("chromium output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_plugins_failed_installs_and_restarts_in_a_browser() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut env: Vec<(String, String)> = vec![
        ("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into()),
        ("PYTHON_ENV_INIT_TIMEOUT".into(), "12".into()),
        ("PLUGIN_RESTART_BACKOFF_MS".into(), "100".into()),
    ];
    for name in common::NETWORK_PASSTHROUGH {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    if let Some(cache) = shared_uv_cache() {
        env.push(("UV_CACHE_DIR".into(), cache.display().to_string()));
    }
    let daemon = Daemon::start(&db, DaemonOptions { env, ..Default::default() }).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "{task}\n{}", daemon.log());
    let (_, failed) = daemon.install_package(TENANT, &package_plugin("no_heartbeat")).await;
    assert_eq!(failed["status"], "failed", "{failed}");

    // Crash the tool plugin; wait (bounded) until it is back.
    let body = json!({"user_id": "u", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": "exit"}}});
    let _ = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", "testing/runtime_tools")
        .json(&body)
        .send()
        .await
        .expect("invoke")
        .text()
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let response = daemon
            .client
            .get(daemon.url("/status.json"))
            .header("X-Api-Key", &daemon.key)
            .send()
            .await
            .expect("status.json");
        let report: Value = response.json().await.expect("json");
        let tools = report["data"]["runtimes"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["identifier"].as_str().unwrap_or("").starts_with("testing/runtime_tools")).cloned());
        if tools.as_ref().is_some_and(|t| t["restarts"] == 1 && t["status"] == "running") || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let tools = report["data"]["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["identifier"].as_str().unwrap().starts_with("testing/runtime_tools"))
        .cloned()
        .expect("runtime");
    assert_eq!((&tools["restarts"], &tools["status"]), (&json!(1), &json!("running")), "{report}");
    let series = report["data"]["invocations_last_hour"].as_array().cloned().unwrap_or_default();
    assert_eq!(series.len(), 1, "{report}");
    assert_eq!(series[0]["minutes"].as_array().map(Vec::len), Some(60), "{report}");
    assert!(tools["last_error"].as_str().unwrap_or("").contains("plugin process exited unexpectedly"), "{tools}");

    // The sandbox layers, the same as /health/check reports them.
    let health: Value = daemon.client.get(daemon.url("/health/check")).send().await.expect("health").json().await.expect("json");
    let sandbox = &report["data"]["sandbox"];
    assert_eq!(sandbox, &health["sandbox"], "{report}");
    assert_eq!(sandbox["level"], "best_effort", "{report}");
    assert_eq!(sandbox["layers"]["rlimits"], true, "{report}");
    let layers = sandbox["layers"].as_object().expect("layers").clone();
    let active: Vec<&str> = layers.iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(k, _)| k.as_str()).collect();
    assert!(active.contains(&"rlimits") && active.contains(&"non_dumpable"), "{report}");

    // Without the key: refused.
    let refused = daemon.client.get(daemon.url("/status")).send().await.expect("status");
    assert_eq!(refused.status().as_u16(), 401);

    // The page in the browser, after its script has run.
    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("{}/status?key={}", daemon.base, daemon.key);
    let output = run_chromium(profile.path(), &url, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(dom.contains("dify-plugin-daemon status"), "page did not load: {dom}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(dom.contains("updated 20"), "the script did not fill the page: {dom}");
    assert!(dom.contains("testing/runtime_tools"), "installed plugin missing: {dom}");
    assert!(dom.contains("no heartbeat received within 12 seconds"), "failed install's error missing: {dom}");
    assert!(dom.contains(r#"<td class="failed">failed</td>"#), "{dom}");
    assert!(dom.contains(r#"<td class="restarts">1</td>"#), "the restart is not shown: {dom}");
    assert!(dom.contains("plugin process exited unexpectedly"), "{dom}");
    // The chart: the crashing invocation counted, as an error.
    assert!(dom.contains("testing/runtime_tools: 1 invocations, 1 errors"), "the chart is missing: {dom}");
    assert!(dom.contains("<svg"), "{dom}");
    // The sandbox table: its level and its active layers, in the order /status.json lists them.
    assert!(dom.contains("Plugin sandbox"), "{dom}");
    assert!(dom.contains("<td>best_effort</td>"), "the sandbox level is missing: {dom}");
    assert!(dom.contains(&format!("<td>{}</td>", active.join(", "))), "the active sandbox layers are missing: {dom}");

    let shot = profile.path().join("status.png");
    let output = run_chromium(profile.path(), &url, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());
    if std::env::var_os("DIFY_REGENERATE_DOCS").is_some() {
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status-page.png"), &png).expect("write docs/status-page.png");
    }
}
