//! A serverless connector for the serverless runtime tests, speaking the SRI wire format
//! (docs/protocol.md §3.1): `POST /ping` → `"pong"`, `GET /v1/runner/instances?filename=…`,
//! `POST /v1/launch` (multipart `verified`, `metadata`, `context`) answered with streamed stage lines.
//!
//! No serverless platform exists on a test machine, so "launching" really runs the uploaded package:
//! it is extracted and started with the SDK venv (`DIFY_TEST_SDK_PYTHON`) as
//! `python -m <entrypoint>` with `INSTALL_METHOD=serverless`, which makes the SDK serve `/invoke` and
//! `/health` over HTTP; the connector waits for `/health` and reports that server as the function URL.
//! Every wait is bounded; plugin processes are killed when the connector is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// One launch the connector received.
#[derive(Debug, Clone)]
pub struct LaunchRecord {
    pub authorization: String,
    pub verified: String,
    pub metadata: Value,
    pub filename: String,
    pub package_bytes: usize,
}

/// A function the connector runs.
#[derive(Debug, Clone)]
pub struct RunningFunction {
    pub filename: String,
    pub name: String,
    pub url: String,
}

#[derive(Default)]
struct Shared {
    api_key: String,
    daemon_url: Mutex<String>,
    launches: Mutex<Vec<LaunchRecord>>,
    lookups: Mutex<Vec<String>>,
    functions: Mutex<Vec<RunningFunction>>,
    processes: Mutex<Vec<tokio::process::Child>>,
    workdirs: Mutex<Vec<tempfile::TempDir>>,
    /// When set, launches fail at the build stage with this message.
    fail_launch: Mutex<Option<String>>,
}

/// The fake connector; stops its server and kills its plugin processes on drop.
pub struct FakeConnector {
    pub url: String,
    pub api_key: String,
    shared: Arc<Shared>,
    server: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeConnector {
    /// Starts the connector on a free port; requests must carry `Authorization: <api_key>`.
    pub async fn start(api_key: &str) -> FakeConnector {
        let shared = Arc::new(Shared { api_key: api_key.to_string(), ..Default::default() });
        let app = Router::new()
            .route("/ping", post(ping))
            .route("/v1/runner/instances", get(instances))
            .route("/v1/launch", post(launch))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake connector");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A graceful shutdown also closes idle keep-alive connections, so a stopped connector
        // refuses every later request, even on connections the daemon pooled.
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeConnector { url, api_key: api_key.to_string(), shared, server: Some(server), stop: Some(stop) }
    }

    /// Where launched plugins send backwards invocations (`DIFY_PLUGIN_DAEMON_URL`).
    pub fn set_daemon_url(&self, url: &str) {
        *self.shared.daemon_url.lock().unwrap() = url.to_string();
    }

    /// Makes every later launch fail at the build stage with `message`.
    pub fn fail_launches_with(&self, message: &str) {
        *self.shared.fail_launch.lock().unwrap() = Some(message.to_string());
    }

    pub fn launches(&self) -> Vec<LaunchRecord> {
        self.shared.launches.lock().unwrap().clone()
    }

    pub fn lookups(&self) -> Vec<String> {
        self.shared.lookups.lock().unwrap().clone()
    }

    pub fn functions(&self) -> Vec<RunningFunction> {
        self.shared.functions.lock().unwrap().clone()
    }

    /// Stops answering: the listening socket and every connection close (connection refused from
    /// now on). Bounded: connections still busy after 10 s are cut.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(10), &mut server).await.is_err() {
                server.abort();
            }
        }
    }
}

impl Drop for FakeConnector {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        for child in self.shared.processes.lock().unwrap().iter_mut() {
            let _ = child.start_kill();
        }
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(shared.api_key.as_str())
}

async fn ping(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    (StatusCode::OK, "\"pong\"").into_response()
}

async fn instances(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if !authorized(&shared, &headers) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let filename = query.get("filename").cloned().unwrap_or_default();
    shared.lookups.lock().unwrap().push(filename.clone());
    let items: Vec<Value> = shared
        .functions
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.filename == filename)
        .map(|f| json!({"ID": f.name, "Name": f.name, "Endpoint": f.url, "ResourceName": format!("drn:{}", f.name), "Status": {"State": "Active"}}))
        .collect();
    axum::Json(json!({"error": "", "Items": items})).into_response()
}

fn stage(stage: &str, state: &str, message: &str) -> Bytes {
    // The connector frames its lines as server-sent events; the daemon must strip `data:`.
    let line = json!({"Stage": stage, "State": state, "Obj": "", "Message": message});
    Bytes::from(format!("event: message\ndata: {line}\n\n"))
}

async fn launch(State(shared): State<Arc<Shared>>, headers: HeaderMap, mut form: Multipart) -> Response {
    if !authorized(&shared, &headers) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let mut record = LaunchRecord {
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        verified: String::new(),
        metadata: Value::Null,
        filename: String::new(),
        package_bytes: 0,
    };
    let mut package = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or("") {
            "verified" => record.verified = field.text().await.unwrap_or_default(),
            "metadata" => record.metadata = serde_json::from_str(&field.text().await.unwrap_or_default()).unwrap_or(Value::Null),
            "context" => {
                record.filename = field.file_name().unwrap_or("").to_string();
                package = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                record.package_bytes = package.len();
            }
            _ => {}
        }
    }
    shared.launches.lock().unwrap().push(record.clone());
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    let shared = shared.clone();
    tokio::spawn(async move {
        let _ = sender.send(stage("start", "running", "received package")).await;
        let failure = shared.fail_launch.lock().unwrap().clone();
        if let Some(message) = failure {
            let _ = sender.send(stage("build", "failed", &message)).await;
            return;
        }
        let _ = sender.send(stage("build", "running", "extracting package")).await;
        let _ = sender.send(stage("run", "running", "starting function")).await;
        match run_function(&shared, &record.filename, &package).await {
            Ok(function) => {
                let message = format!("endpoint={}, name={}, id=drn:{}", function.url, function.name, function.name);
                let _ = sender.send(stage("run", "success", &message)).await;
                let _ = sender.send(stage("end", "success", "")).await;
            }
            Err(reason) => {
                let _ = sender.send(stage("run", "failed", &reason)).await;
            }
        }
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<Bytes, std::convert::Infallible>(bytes), receiver))
    });
    Response::new(Body::from_stream(body))
}

/// Extracts the package, starts it as an SDK serverless server and waits (bounded) for `/health`.
async fn run_function(shared: &Arc<Shared>, filename: &str, package: &[u8]) -> Result<RunningFunction, String> {
    let python = std::env::var("DIFY_TEST_SDK_PYTHON")
        .map_err(|_| "DIFY_TEST_SDK_PYTHON is not set (run the suite through scripts/test)".to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    extract(package, dir.path())?;
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml")).map_err(|e| e.to_string())?;
    let entrypoint = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("entrypoint:").map(|v| v.trim().trim_matches('"').to_string()))
        .unwrap_or_else(|| "main".to_string());
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let daemon_url = shared.daemon_url.lock().unwrap().clone();
    let log = std::fs::File::create(dir.path().join("function.log")).map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(&python)
        .args(["-m", &entrypoint])
        .current_dir(dir.path())
        .env("INSTALL_METHOD", "serverless")
        .env("SERVERLESS_HOST", "127.0.0.1")
        .env("SERVERLESS_PORT", port.to_string())
        .env("DIFY_PLUGIN_DAEMON_URL", daemon_url)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {python}: {e}"))?;
    shared.processes.lock().unwrap().push(child);
    let log_path: PathBuf = dir.path().join("function.log");
    shared.workdirs.lock().unwrap().push(dir);
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = client.get(format!("{url}/health")).timeout(Duration::from_secs(2)).send().await;
        if let Ok(response) = probe {
            if response.status().is_success() && response.text().await.unwrap_or_default() == "OK" {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("function did not answer /health within 60 s: {}", std::fs::read_to_string(&log_path).unwrap_or_default()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut functions = shared.functions.lock().unwrap();
    let function = RunningFunction { filename: filename.to_string(), name: format!("fn-{}", functions.len() + 1), url };
    functions.push(function.clone());
    Ok(function)
}

fn extract(package: &[u8], dir: &Path) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(package)).map_err(|e| format!("package is not a zip: {e}"))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| e.to_string())?;
        let Some(relative) = entry.enclosed_name() else { return Err(format!("unsafe path {}", entry.name())) };
        let target = dir.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        std::fs::write(&target, bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}
