//! Support for the remote debugging tests: a daemon with its debug TCP server on a free port (port
//! 0, read back from `/health/check`), debugging keys over HTTP, an SDK plugin started with
//! `INSTALL_METHOD=remote` from its source directory, a raw TCP "plugin" that speaks the
//! registration sequence by hand, and SSE reading. Every wait is bounded.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::{Daemon, DaemonOptions, TestDb};

/// Starts a daemon whose debug server listens on a free port; `extra` adds environment.
pub async fn start_daemon(db: &TestDb, extra: &[(&str, &str)]) -> (Daemon, String) {
    let mut env = vec![
        ("PLUGIN_REMOTE_INSTALLING_ENABLED".to_string(), "true".to_string()),
        ("PLUGIN_REMOTE_INSTALLING_HOST".to_string(), "127.0.0.1".to_string()),
        ("PLUGIN_REMOTE_INSTALLING_PORT".to_string(), "0".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let daemon = Daemon::start(db, DaemonOptions { env, ..Default::default() }).await;
    let health: Value = daemon
        .client
        .get(daemon.url("/health/check"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health json");
    let address = health["remote_debugging_address"]
        .as_str()
        .unwrap_or_else(|| panic!("no remote debugging address in {health}; log:\n{}", daemon.log()))
        .to_string();
    assert!(!address.ends_with(":0"), "port 0 must be resolved: {address}");
    (daemon, address)
}

/// A fresh tenant id (Dify's tenant ids are UUIDs).
pub fn new_tenant() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The tenant's debugging key, obtained over HTTP.
pub async fn debugging_key(daemon: &Daemon, tenant: &str) -> String {
    let (status, body) = daemon.post_empty(&format!("/plugin/{tenant}/debugging/key")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    body["data"]["key"].as_str().expect("key").to_string()
}

/// Polls `check` until it holds (bounded).
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Python of the SDK venv: `DIFY_TEST_SDK_PYTHON` (set by `scripts/test`), else the venv the
/// script creates under `.test-cache/sdk`.
pub fn sdk_python() -> PathBuf {
    if let Some(path) = std::env::var_os("DIFY_TEST_SDK_PYTHON") {
        return PathBuf::from(path);
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.test-cache/sdk/bin/python");
    assert!(
        fallback.exists(),
        "set DIFY_TEST_SDK_PYTHON to a Python 3.12 venv with dify-plugin installed (scripts/test creates one in .test-cache/sdk)"
    );
    fallback
}

/// `tests/plugins/<name>`.
pub fn plugin_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/plugins").join(name)
}

/// An SDK plugin process running in remote mode from its source directory; killed on drop.
pub struct RemotePluginProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl RemotePluginProcess {
    /// Starts `tests/plugins/<name>` with `INSTALL_METHOD=remote` against `address` (given to the SDK
    /// as `REMOTE_INSTALL_URL`) with `key`.
    pub fn start(name: &str, address: &str, key: &str, log_dir: &Path) -> RemotePluginProcess {
        Self::start_with(name, &[("REMOTE_INSTALL_URL", address)], key, log_dir)
    }

    /// Like [`Self::start`], giving the SDK `REMOTE_INSTALL_HOST` and `REMOTE_INSTALL_PORT` instead.
    pub fn start_host_port(name: &str, address: &str, key: &str, log_dir: &Path) -> RemotePluginProcess {
        let (host, port) = address.rsplit_once(':').expect("host:port");
        Self::start_with(name, &[("REMOTE_INSTALL_HOST", host), ("REMOTE_INSTALL_PORT", port)], key, log_dir)
    }

    fn start_with(name: &str, target: &[(&str, &str)], key: &str, log_dir: &Path) -> RemotePluginProcess {
        use std::os::unix::process::CommandExt;
        let log = log_dir.join(format!("plugin-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("plugin log");
        let mut command = Command::new(sdk_python());
        command
            .args(["-m", "main"])
            .current_dir(plugin_source(name))
            .env("INSTALL_METHOD", "remote")
            .envs(target.iter().copied())
            .env("REMOTE_INSTALL_KEY", key)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .process_group(0);
        let child = command.spawn().expect("start the SDK plugin");
        RemotePluginProcess { child: Some(child), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the plugin's whole process group with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RemotePluginProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads an SSE body chunk by chunk and yields the JSON of each `data:` event.
pub struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
    pub ended: bool,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self { response, buffer: Vec::new(), ended: false }
    }

    /// The next event, `None` at the end of the body. Panics after `within` without one.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event).trim().to_string();
                let payload = text.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data line: {text:?}"));
                return Some(serde_json::from_str(payload).unwrap_or_else(|e| panic!("SSE payload is not JSON ({e}): {payload}")));
            }
            if self.ended {
                assert!(self.buffer.iter().all(|b| b.is_ascii_whitespace()), "trailing SSE bytes: {:?}", self.buffer);
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no SSE event within {within:?}"))
                .expect("read SSE body");
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => self.ended = true,
            }
        }
    }
}

/// `POST /plugin/{tenant}/dispatch/tool/invoke` for `plugin_id` with `tool_parameters`.
pub async fn invoke_tool(
    daemon: &Daemon,
    tenant: &str,
    plugin_id: &str,
    provider: &str,
    tool: &str,
    parameters: Value,
) -> reqwest::Response {
    let body = json!({
        "user_id": "user-1",
        "data": {
            "provider": provider,
            "tool": tool,
            "tool_parameters": parameters,
            "credentials": {},
            "credential_type": "api-key",
        }
    });
    daemon
        .client
        .post(daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", plugin_id)
        .json(&body)
        .send()
        .await
        .expect("dispatch request")
}

/// The inner error of a daemon error envelope: `(error_type, message)`.
pub fn envelope_error(envelope: &Value) -> (String, String) {
    assert_eq!(envelope["code"], -500, "not an error envelope: {envelope}");
    assert_eq!(envelope["data"], Value::Null, "{envelope}");
    let inner: Value = serde_json::from_str(envelope["message"].as_str().expect("message")).expect("message JSON");
    (inner["error_type"].as_str().unwrap_or_default().to_string(), inner["message"].as_str().unwrap_or_default().to_string())
}

/// A manifest as the SDK sends it in `manifest_declaration`.
pub fn manifest_json(author: &str, name: &str) -> Value {
    let label = json!({"en_US": name, "zh_Hans": name, "ja_JP": name, "pt_BR": name});
    json!({
        "version": "0.0.1", "type": "plugin", "author": author, "name": name, "repo": null,
        "description": label, "icon": "icon.svg", "icon_dark": null, "label": label,
        "created_at": "2026-01-01T00:00:00Z",
        "resource": {"memory": 268435456, "permission": {"tool": {"enabled": true}, "storage": {"enabled": true, "size": 1048576}}},
        "plugins": {"tools": ["provider/p.yaml"], "models": [], "endpoints": [], "agent_strategies": [], "datasources": [], "triggers": []},
        "meta": {"version": "0.0.1", "arch": ["amd64", "arm64"], "runner": {"language": "python", "version": "3.12", "entrypoint": "main"}, "minimum_dify_version": null}
    })
}

/// A tool provider declaration (`tool_declaration` data is a list of these) with one tool `say`.
pub fn tool_provider_json(author: &str, provider: &str) -> Value {
    let label = json!({"en_US": provider});
    json!({
        "identity": {"author": author, "name": provider, "description": label, "icon": "icon.svg", "icon_dark": null, "label": label, "tags": []},
        "credentials_schema": [], "oauth_schema": null,
        "tools": [{
            "identity": {"author": author, "name": "say", "label": {"en_US": "Say"}},
            "parameters": [],
            "description": {"human": {"en_US": "Say something"}, "llm": "Say something"},
            "extra": {"python": {"source": "tools/say.py"}},
            "has_runtime_parameters": false, "output_schema": null
        }],
        "extra": {"python": {"source": "provider/p.py"}}
    })
}

/// A hand-driven debugging plugin on a raw TCP socket.
pub struct RawPlugin {
    pub reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawPlugin {
    pub async fn connect(address: &str) -> RawPlugin {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(address))
            .await
            .expect("connect in time")
            .expect("connect to the debug server");
        let (read, writer) = stream.into_split();
        RawPlugin { reader: BufReader::new(read), writer }
    }

    /// Sends one line as the SDK does (`\n\n` after registration messages).
    pub async fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).expect("encode");
        line.extend_from_slice(b"\n\n");
        self.send_raw(&line).await;
    }

    /// Writes bytes as they are (bounded: a daemon that stops reading fails the test).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(Duration::from_secs(60), self.writer.write_all(bytes))
            .await
            .expect("the daemon did not read within 60 s")
            .expect("send to daemon");
    }

    /// Sends the whole registration of a tool plugin with one icon asset (and a heartbeat in between).
    pub async fn register(&mut self, key: &str, name: &str) {
        self.send(&json!({"type": "handshake", "data": {"key": key}})).await;
        // The SDK's heartbeat thread may write while it (re)registers; such lines are skipped.
        self.heartbeat().await;
        self.send(&json!({"type": "manifest_declaration", "data": manifest_json("raw", name)})).await;
        self.send(&json!({"type": "tool_declaration", "data": [tool_provider_json("raw", name)]})).await;
        self.send(&json!({"type": "asset_chunk", "data": {"filename": "icon.svg", "data": "PHN2Zy8+", "end": true}}))
            .await;
        self.send(&json!({"type": "end", "data": {}})).await;
    }

    pub async fn heartbeat(&mut self) {
        self.send(&json!({"event": "heartbeat", "session_id": null, "data": {}})).await;
    }

    /// The next line from the daemon (without its newline); `None` at end of input.
    pub async fn read_line(&mut self, within: Duration) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(within, self.reader.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no line from the daemon within {within:?}"));
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
        }
    }

    /// Like [`Self::read_line`], but `Err(())` instead of a panic when nothing arrives in time.
    pub async fn try_read_line(&mut self, within: Duration) -> Result<Option<String>, ()> {
        let mut line = String::new();
        match tokio::time::timeout(within, self.reader.read_line(&mut line)).await {
            Err(_) => Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(None),
            Ok(Ok(_)) => Ok(Some(line.trim_end_matches('\n').to_string())),
        }
    }

    /// Everything the daemon sends until it closes the socket.
    pub async fn read_to_end(&mut self, within: Duration) -> String {
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(within, self.reader.read_to_end(&mut bytes))
            .await
            .unwrap_or_else(|_| panic!("the daemon did not close the connection within {within:?}"));
        String::from_utf8_lossy(&bytes).to_string()
    }
}
