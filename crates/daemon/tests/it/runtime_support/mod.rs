//! Shared support for the runtime and dispatch tests: packaging the SDK test plugins under
//! `tests/plugins/` with our own codec, a runtime configuration that reuses uv's shared cache, an
//! in-memory plugin storage, a fake Dify inner API speaking the real frame format, and the check
//! that no child of this process is left a zombie.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dify_daemon::backwards::{encode_frame, PluginStorage, StorageError};
use dify_daemon::runtime::RuntimeConfig;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `tests/plugins/<name>` in the workspace.
pub fn plugin_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/plugins").join(name)
}

/// The test plugin packaged as a `.difypkg` by `dify-package`.
pub fn package_plugin(name: &str) -> Vec<u8> {
    dify_package::write::package_dir(plugin_dir(name)).unwrap_or_else(|e| panic!("package {name}: {e}"))
}

/// Decodes a package into its identifier and declaration.
pub fn decode(package: &[u8]) -> (dify_protocol::PluginUniqueIdentifier, dify_protocol::PluginDeclaration) {
    let decoded = dify_package::Package::from_bytes(package.to_vec(), &dify_package::DecodeLimits::default()).expect("decode package");
    (decoded.unique_identifier().expect("identifier"), decoded.declaration().clone())
}

/// uv's cache directory: `UV_CACHE_DIR`, else what `uv cache dir` says (so plugin builds in tests
/// reuse the machine's warm cache instead of downloading the SDK again).
pub fn shared_uv_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("UV_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let uv = std::env::var_os("UV_PATH").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("uv"));
    let output = std::process::Command::new(uv).args(["cache", "dir"]).output().ok()?;
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// A runtime configuration for tests: working directory `workdir`, uv's shared cache, and the
/// interpreter/uv given by the test runner (`PYTHON_INTERPRETER_PATH`, `UV_PATH`).
pub fn test_runtime_config(workdir: &Path) -> RuntimeConfig {
    let mut config = RuntimeConfig::from_env();
    config.working_path = workdir.to_path_buf();
    config.uv_cache_path = shared_uv_cache();
    // Environment build steps and the first heartbeat: generous, a loaded machine may need minutes.
    config.env_init_timeout = Duration::from_secs(180);
    config.restart_backoff = Duration::from_millis(100);
    config
}

/// Plugin storage in memory (the daemon uses its database; the runtime tests need no database).
#[derive(Default)]
pub struct MemoryStorage {
    values: Mutex<HashMap<(String, String, String), Vec<u8>>>,
}

impl MemoryStorage {
    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Vec<u8>>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PluginStorage for MemoryStorage {
    fn get<'a>(&'a self, t: &'a str, p: &'a str, k: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        Box::pin(async move { Ok(self.values().get(&(t.into(), p.into(), k.into())).cloned()) })
    }
    fn set<'a>(&'a self, t: &'a str, p: &'a str, k: &'a str, v: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            self.values().insert((t.into(), p.into(), k.into()), v.to_vec());
            Ok(())
        })
    }
    fn delete<'a>(&'a self, t: &'a str, p: &'a str, k: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move { Ok(u64::from(self.values().remove(&(t.into(), p.into(), k.into())).is_some())) })
    }
    fn exists<'a>(&'a self, t: &'a str, p: &'a str, k: &'a str) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move { Ok(self.values().contains_key(&(t.into(), p.into(), k.into()))) })
    }
    fn usage_bytes<'a>(&'a self, t: &'a str, p: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move { Ok(self.values().iter().filter(|((tt, pp, _), _)| tt == t && pp == p).map(|(_, v)| v.len() as u64).sum()) })
    }
}

/// A fake Dify inner API on a free port: answers `invoke/tool` and `invoke/llm` with framed streams
/// (the real 14-byte header format), records every request (path, key header, body).
pub struct FakeInnerApi {
    pub url: String,
    pub requests: Arc<Mutex<Vec<(String, String, Value)>>>,
    /// `(path, traceparent header)` of every request that carried one.
    pub traceparents: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeInnerApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeInnerApi {
    pub async fn start() -> FakeInnerApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake inner api");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
        let recorded = requests.clone();
        let traceparents: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let traces = traceparents.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (recorded, traces) = (recorded.clone(), traces.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), serve_inner_api(socket, recorded, traces)).await;
                });
            }
        });
        FakeInnerApi { url, requests, traceparents, task }
    }

    pub fn recorded(&self) -> Vec<(String, String, Value)> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn serve_inner_api(
    mut socket: tokio::net::TcpStream,
    recorded: Arc<Mutex<Vec<(String, String, Value)>>>,
    traces: Arc<Mutex<Vec<(String, String)>>>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, head) = loop {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break (pos + 4, String::from_utf8_lossy(&buffer[..pos]).to_string());
        }
    };
    let mut lines = head.lines();
    let path = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut key = String::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "x-inner-api-key" => key = value.trim().to_string(),
                "traceparent" => {
                    if let Ok(mut t) = traces.lock() {
                        t.push((path.clone(), value.trim().to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    while buffer.len() < head_end + content_length {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buffer[head_end..head_end + content_length]).unwrap_or(Value::Null);
    if let Ok(mut r) = recorded.lock() {
        r.push((path.clone(), key, body.clone()));
    }
    let mut frames = Vec::new();
    match path.as_str() {
        "/inner/api/invoke/tool" => {
            for text in ["from", "dify"] {
                let item = json!({"type": "text", "message": {"text": text}, "meta": null});
                frames.extend(encode_frame(json!({"data": item, "error": ""}).to_string().as_bytes()));
            }
        }
        "/inner/api/invoke/llm" => {
            let prompt = body["prompt_messages"][0]["content"].as_str().unwrap_or_default().to_string();
            for (index, piece) in ["fake ", "llm: ", prompt.as_str()].iter().enumerate() {
                let chunk = json!({"model": "fake-model", "prompt_messages": [], "system_fingerprint": null,
                    "delta": {"index": index, "message": {"role": "assistant", "content": piece, "name": null, "tool_calls": []}, "usage": null, "finish_reason": null}});
                frames.extend(encode_frame(json!({"data": chunk, "error": ""}).to_string().as_bytes()));
            }
        }
        _ => {
            frames.extend(encode_frame(json!({"data": null, "error": format!("no fake for {path}")}).to_string().as_bytes()));
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        frames.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(&frames).await;
    let _ = socket.shutdown().await;
}

/// Children of this process that are zombies (state `Z` in `/proc/<pid>/stat`).
pub fn zombie_children() -> Vec<u32> {
    children_of(std::process::id()).into_iter().filter(|(_, state)| *state == 'Z').map(|(pid, _)| pid).collect()
}

/// `(pid, state)` of every process whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may contain spaces, so split after the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// True while `/proc/<pid>` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').and_then(|i| stat[i + 2..].chars().next()).is_some_and(|s| s != 'Z'),
        Err(_) => false,
    }
}

/// Waits (bounded) until `condition` holds.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
