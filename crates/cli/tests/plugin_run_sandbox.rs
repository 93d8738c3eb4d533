//! `dify plugin run` confines the plugin like the daemon does: the hostile SDK test plugin
//! (`tests/plugins/sandbox_hostile`), run by the built binary in stdio mode, can read neither the
//! `dify` process's environment nor a secret file beside it, and (as root) runs under its own uid.
//! Needs `UV_PATH` and a Python >= 3.12 (`PYTHON_INTERPRETER_PATH`), as `scripts/test` provides.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn attack(invoke_id: &str, kind: &str, targets: Value) -> String {
    json!({
        "invoke_id": invoke_id,
        "type": "tool",
        "action": "invoke_tool",
        "request": {"provider": "sandbox_hostile", "tool": "attack", "credentials": {},
                    "tool_parameters": {"attack": kind, "targets": targets.to_string()}},
    })
    .to_string()
        + "\n"
}

#[test]
fn plugin_run_applies_the_sandbox() {
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/plugins/sandbox_hostile");
    let secrets = tempfile::tempdir().expect("tempdir");
    let secret = secrets.path().join("secret.txt");
    std::fs::write(&secret, "not for plugins").expect("secret");
    let child = Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(["plugin", "run", plugin.to_str().unwrap(), "-r", "json"])
        .env("DIFY_TEST_SECRET", "secret-in-the-environment")
        .env("PLUGIN_SANDBOX", "best_effort")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dify");
    let mut guard = Guard(child);
    let dify_pid = guard.0.id();
    let mut stdin = guard.0.stdin.take().unwrap();
    let (sender, lines) = mpsc::channel::<Value>();
    let stdout = guard.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                if sender.send(value).is_err() {
                    return;
                }
            }
        }
    });
    let until = |what: &str, timeout: Duration, matches: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|e| panic!("no {what} within {timeout:?}: {e}"));
            if line["type"] == "error" && line["invoke_id"] == "" {
                panic!("dify plugin run failed: {line}");
            }
            if matches(&line) {
                return line;
            }
        }
    };
    until("plugin_ready", READY_TIMEOUT, &|l| l["type"] == "plugin_ready");

    let report = |id: &str| {
        let line = until(id, STEP_TIMEOUT, &|l| l["type"] == "plugin_response" && l["invoke_id"] == id);
        line["response"]["message"]["json_object"]["results"].as_array().cloned().unwrap_or_else(|| panic!("{line}"))
    };
    let reads = json!([format!("/proc/{dify_pid}/environ"), format!("/proc/{dify_pid}/mem"), secret.display().to_string()]);
    stdin.write_all(attack("read", "read", reads).as_bytes()).unwrap();
    let results = report("read");
    assert_eq!(results.len(), 3, "{results:#?}");
    assert!(results.iter().all(|r| r["succeeded"] == json!(false)), "{results:#?}");

    stdin.write_all(attack("signal", "signal", json!([dify_pid])).as_bytes()).unwrap();
    let results = report("signal");
    assert_eq!(results[0]["succeeded"], json!(false), "{results:#?}");

    // This test process runs as root when /proc/self belongs to uid 0.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0;
    if root {
        stdin.write_all(attack("self", "self", json!([])).as_bytes()).unwrap();
        let me: Value = serde_json::from_str(report("self")[0]["detail"].as_str().unwrap()).unwrap();
        assert_ne!(me["uid"], json!(0), "{me}");
    }
    assert!(guard.0.try_wait().unwrap().is_none(), "dify plugin run keeps running");
}
