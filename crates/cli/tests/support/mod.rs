//! Shared helpers for the CLI integration tests: running the built `dify` binary, a Python venv
//! with a plugin's requirements installed (shared between tests with the same requirements), and a
//! running plugin process whose stdout is read line by line with bounded waits.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Run the built `dify` binary in `cwd`.
pub fn dify(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("spawn dify")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

pub fn stderr_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stderr).unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

/// A command's exit code, stdout and stderr as one text, for snapshots.
pub fn transcript(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}\n",
        out.status.code().map_or_else(|| "signal".to_string(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// A JSON document as indented text, for snapshots.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON value")
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Snapshot settings for CLI output: the temporary directory `cwd` becomes `[TMP]`, the workspace
/// root `[REPO]`, log timestamps `[TIME]` and the crate version `[VERSION]`. With `checksums`, every 64-digit hex checksum becomes
/// `[CHECKSUM]` too (for packages whose bytes change from run to run, e.g. signed or dated ones).
/// Snapshots live in `tests/snapshots/`; a mismatch fails the test (and in CI nothing is written).
pub fn snapshot_settings(cwd: &Path, checksums: bool) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    let mut dirs = vec![cwd.to_path_buf()];
    if let Ok(real) = cwd.canonicalize() {
        dirs.push(real);
    }
    for dir in dirs {
        settings.add_filter(&regex_escape(&dir.display().to_string()), "[TMP]");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for dir in [repo.canonicalize().unwrap_or_else(|_| repo.clone()), repo] {
        settings.add_filter(&regex_escape(&dir.display().to_string()), "[REPO]");
    }
    settings.add_filter(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}", "[TIME]");
    settings.add_filter(&format!(r"\b{}\b", regex_escape(env!("CARGO_PKG_VERSION"))), "[VERSION]");
    if checksums {
        settings.add_filter(r"\b[0-9a-f]{64}\b", "[CHECKSUM]");
    }
    settings
}

pub fn uv() -> PathBuf {
    if let Some(p) = std::env::var_os("UV_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    PathBuf::from("uv")
}

pub fn python312() -> PathBuf {
    if let Some(p) = std::env::var_os("PYTHON_INTERPRETER_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".pyenv/versions/3.12.1/bin/python3.12")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(out.status.success(), "{what} failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// A venv with `requirements.txt` of `plugin_dir` installed. Venvs are keyed by the file's
/// content and shared by every test (and test process) that needs the same requirements; a venv
/// is built in a private directory and renamed into place, so concurrent builders never see a
/// half-built one.
pub fn venv_for(plugin_dir: &Path) -> PathBuf {
    let requirements = std::fs::read(plugin_dir.join("requirements.txt")).expect("requirements.txt");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dify-cli-plugin-venvs");
    std::fs::create_dir_all(&root).unwrap();
    let venv = root.join(format!("{:016x}", fnv1a(&requirements)));
    if venv.join("ready").exists() {
        return venv;
    }
    let staging = root.join(format!("staging-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
    let _ = std::fs::remove_dir_all(&staging);
    run_checked(Command::new(uv()).arg("venv").arg("-q").arg(&staging).arg("--python").arg(python312()), "uv venv");
    let install = |extra: &[&str]| {
        Command::new(uv())
            .args(["pip", "install", "-q"])
            .args(extra)
            .arg("-r")
            .arg(plugin_dir.join("requirements.txt"))
            .env("VIRTUAL_ENV", &staging)
            .output()
            .expect("start uv pip install")
    };
    let online = install(&[]);
    if !online.status.success() {
        // No index reachable: uv's cache (warmed by scripts/test) is enough.
        let offline = install(&["--offline"]);
        assert!(
            offline.status.success(),
            "uv pip install failed online ({}) and offline ({})",
            String::from_utf8_lossy(&online.stderr),
            String::from_utf8_lossy(&offline.stderr)
        );
    }
    std::fs::write(staging.join("ready"), b"ok").unwrap();
    if std::fs::rename(&staging, &venv).is_err() {
        // Somebody else finished first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(venv.join("ready").exists(), "venv {} not ready", venv.display());
    venv
}

/// A plugin started like the daemon's local runtime does: `python -m main`, `INSTALL_METHOD=local`.
pub struct PluginProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl PluginProcess {
    pub fn start(plugin_dir: &Path, venv: &Path) -> Self {
        let mut child = Command::new(venv.join("bin/python"))
            .args(["-m", "main"])
            .current_dir(plugin_dir)
            .env("INSTALL_METHOD", "local")
            .env_remove("REMOTE_INSTALL_URL")
            .env_remove("REMOTE_INSTALL_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !line.trim().is_empty() && tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        PluginProcess { child, stdin, lines, stderr, seen: Vec::new() }
    }

    fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Wait (bounded) for a stdout JSON line satisfying `pred`; returns it.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if pred(&v) {
                            return v;
                        }
                    }
                }
                Err(_) => {
                    panic!("no matching line within {timeout:?}; stdout so far:\n{}\nstderr:\n{}", self.seen.join("\n"), self.stderr_text())
                }
            }
        }
    }

    pub fn wait_for_heartbeat(&mut self, timeout: Duration) {
        self.wait_for(timeout, |v| v["event"] == "heartbeat");
    }

    pub fn send(&mut self, message: &serde_json::Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Collect the `session` events of `session_id` up to and including `end`.
    pub fn session(&mut self, session_id: &str, timeout: Duration) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            let v = self.wait_for(timeout, |v| v["event"] == "session" && v["session_id"] == session_id);
            let done = v["data"]["type"] == "end";
            out.push(v["data"].clone());
            if done {
                return out;
            }
        }
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon → plugin request line (docs/protocol.md §0.1).
pub fn request(session_id: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "session_id": session_id,
        "conversation_id": null,
        "message_id": null,
        "app_id": null,
        "endpoint_id": null,
        "context": null,
        "event": "request",
        "data": data,
    })
}
