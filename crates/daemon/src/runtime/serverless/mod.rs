//! The serverless runtime (`PLATFORM=serverless`, docs/protocol.md §3): plugins run as functions
//! behind a "serverless connector" (the SRI contract) and are invoked over HTTP, one request per session.
//!
//! Owns: the SRI client ([`ConnectorClient`]: ping, function look-up, launch with its streamed stages),
//! the function record of each launched plugin, and the bridge that makes a function look like any other
//! plugin connection: sessions write their `request` line to a [`PluginConnection`], the bridge turns it
//! into `POST <function_url>/invoke?action=…` and feeds the response body's session lines back, ending
//! with an `end` it synthesises at body end. Backwards invocations arrive separately over
//! `/backwards-invocation/transaction` ([`ServerlessRuntime::open_transaction`]); the session layer
//! answers them as usual and the bridge routes the `backwards_response` lines to that HTTP response.
//! Sessions live in this node's memory; a [`SessionDirectory`] (the cluster's, when nodes share
//! one) is told when each opens and ends, so a transaction arriving at another node can be sent here.
//!
//! Must not: know axum, tenants or database rows. Request-size batching of text-embedding requests
//! lives in [`batch`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use dify_protocol::message::PluginSessionError;
use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::connection::{ConnectionOptions, PluginConnection};
use super::RuntimeConfig;
use crate::config::Settings;

pub mod batch;

/// Largest part of a failed function response read for its error details.
const ERROR_BODY_LIMIT: usize = 4 * 1024;
/// Longest backoff between two invocation attempts.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// Settings of the serverless runtime.
#[derive(Debug, Clone)]
pub struct ServerlessConfig {
    /// `DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL`.
    pub connector_url: String,
    /// `DIFY_PLUGIN_SERVERLESS_CONNECTOR_API_KEY`, sent verbatim as `Authorization`.
    pub connector_api_key: String,
    /// `DIFY_PLUGIN_SERVERLESS_CONNECTOR_LAUNCH_TIMEOUT`: limit of one launch.
    pub launch_timeout: Duration,
    /// `MAX_SERVERLESS_TRANSACTION_TIMEOUT`: longest life of one backwards-invocation transaction.
    pub transaction_timeout: Duration,
    /// `MAX_SERVERLESS_RETRY_TIMES`: attempts of an invocation on transport errors and HTTP 502.
    pub max_retry_times: u32,
    /// `MAX_SERVERLESS_REQUEST_BYTES`: largest request body sent to a function.
    pub max_request_bytes: usize,
    /// `PLUGIN_MAX_EXECUTION_TIMEOUT`: deadline of one invocation request.
    pub execution_timeout: Duration,
    /// Longest line of a function response.
    pub max_line_bytes: usize,
}

/// Why the serverless runtime failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ServerlessError {
    #[error("serverless runtime is misconfigured: {0}")]
    Config(String),
    #[error("serverless connector unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("serverless connector answered {what} with HTTP {status}: {body}")]
    Status { what: &'static str, status: u16, body: String },
    #[error("unexpected response from serverless connector: {0}")]
    Protocol(String),
    #[error("serverless connector failed to launch the plugin: {0}")]
    LaunchFailed(String),
    #[error("serverless launch timed out after {0} seconds")]
    LaunchTimeout(u64),
    /// The launch stream ended before its `end` stage: upstream saves no function then.
    #[error("serverless connector ended the launch without its end stage")]
    LaunchIncomplete,
}

impl ServerlessConfig {
    /// Reads the serverless settings; the connector URL is required.
    pub fn from_settings(settings: &Settings, runtime: &RuntimeConfig) -> Result<Self, ServerlessError> {
        let connector_url =
            settings.dify_plugin_serverless_connector_url.clone().filter(|url| !url.trim().is_empty()).ok_or_else(|| {
                ServerlessError::Config("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL is required when PLATFORM=serverless".into())
            })?;
        reqwest::Url::parse(&connector_url)
            .map_err(|e| ServerlessError::Config(format!("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL {connector_url:?} is not a URL: {e}")))?;
        if settings.max_serverless_transaction_timeout == 0 {
            return Err(ServerlessError::Config("MAX_SERVERLESS_TRANSACTION_TIMEOUT must not be 0".into()));
        }
        if settings.max_serverless_request_bytes == 0 {
            return Err(ServerlessError::Config("MAX_SERVERLESS_REQUEST_BYTES must be greater than 0".into()));
        }
        Ok(Self {
            connector_url,
            connector_api_key: settings.dify_plugin_serverless_connector_api_key.clone().unwrap_or_default(),
            launch_timeout: Duration::from_secs(settings.dify_plugin_serverless_connector_launch_timeout.max(1)),
            transaction_timeout: Duration::from_secs(settings.max_serverless_transaction_timeout),
            max_retry_times: settings.max_serverless_retry_times.max(1),
            max_request_bytes: settings.max_serverless_request_bytes as usize,
            execution_timeout: runtime.max_execution_timeout,
            max_line_bytes: runtime.max_line_bytes.min(settings.plugin_runtime_max_buffer_size.max(1024)),
        })
    }
}

/// Enables the serverless platform on `manager` (`PLATFORM=serverless`): reads its settings (a missing
/// connector URL is an error) and pings the connector; an unreachable connector is logged, not fatal,
/// so the daemon starts and each launch reports the problem in its install task.
pub async fn enable_serverless_platform(manager: &super::RuntimeManager, settings: &Settings) -> Result<(), ServerlessError> {
    let config = ServerlessConfig::from_settings(settings, manager.config())?;
    let runtime = ServerlessRuntime::new(config);
    match runtime.connector().ping().await {
        Ok(()) => tracing::info!(url = %runtime.config().connector_url, "serverless connector answered the ping"),
        Err(error) => tracing::error!(%error, "serverless connector ping failed; launches will fail until it answers"),
    }
    manager.enable_serverless(runtime);
    Ok(())
}

/// Where a launched plugin's function lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRecord {
    /// Base URL of the function (`POST <url>/invoke`).
    pub url: String,
    pub name: String,
    /// The platform's resource name (DRN), when the connector reports one.
    pub resource_name: String,
}

/// The file name the connector knows a package by: `<author>@<name>@<version>@<checksum>.difypkg`.
pub fn function_filename(declaration: &PluginDeclaration, identifier: &PluginUniqueIdentifier) -> String {
    format!("{}@{}@{}@{}.difypkg", declaration.author, declaration.name, declaration.version, identifier.checksum())
}

/// One stage line of a launch response: `{"Stage","State","Obj","Message"}` (keys matched
/// case-insensitively, as the Go daemon decodes them).
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchChunk {
    pub stage: String,
    pub state: String,
    pub message: String,
}

/// Parses one line of a launch response: an optional `data:` prefix is stripped; blank lines, `event:`
/// lines and lines that are not stage objects give `None`.
pub fn parse_launch_line(line: &str) -> Option<LaunchChunk> {
    let line = line.trim();
    if line.is_empty() || line.starts_with("event:") {
        return None;
    }
    let line = line.strip_prefix("data:").map(str::trim).unwrap_or(line);
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else { return None };
    let field = |name: &str| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
            .map(str::to_owned)
    };
    let stage = field("stage")?;
    Some(LaunchChunk { stage, state: field("state").unwrap_or_default(), message: field("message").unwrap_or_default() })
}

/// Parses the final `run`/`success` message `endpoint=<url>,name=<name>,id=<id>`.
pub fn parse_function_message(message: &str) -> Result<FunctionRecord, ServerlessError> {
    let mut values: HashMap<String, String> = HashMap::new();
    for part in message.split(',') {
        if let Some((key, value)) = part.split_once('=') {
            values.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let url = values.remove("endpoint").filter(|v| !v.is_empty());
    let name = values.remove("name").filter(|v| !v.is_empty());
    match (url, name) {
        (Some(url), Some(name)) => Ok(FunctionRecord { url, name, resource_name: values.remove("id").unwrap_or_default() }),
        _ => Err(ServerlessError::Protocol(format!("launch result {message:?} lacks endpoint or name"))),
    }
}

/// The SRI client: daemon → serverless connector.
#[derive(Clone)]
pub struct ConnectorClient {
    base: String,
    api_key: String,
    http: reqwest::Client,
    launch_timeout: Duration,
}

impl ConnectorClient {
    pub fn new(config: &ServerlessConfig) -> Self {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            base: config.connector_url.trim_end_matches('/').to_string(),
            api_key: config.connector_api_key.clone(),
            http,
            launch_timeout: config.launch_timeout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn unreachable(&self, error: reqwest::Error) -> ServerlessError {
        ServerlessError::Unreachable { url: self.base.clone(), reason: error_chain(&error) }
    }

    /// `POST /ping`; the body must be the JSON string `"pong"`.
    pub async fn ping(&self) -> Result<(), ServerlessError> {
        let response = self
            .http
            .post(self.url("/ping"))
            .header("Authorization", &self.api_key)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.unreachable(e))?;
        if status != 200 {
            return Err(ServerlessError::Status { what: "ping", status, body: truncate(&body, 512) });
        }
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::String(pong)) if pong == "pong" => Ok(()),
            _ => Err(ServerlessError::Protocol(format!("ping answered {} instead of the JSON string \"pong\"", shown_body(&body)))),
        }
    }

    /// `GET /v1/runner/instances?filename=…`: the function already running this package, if any.
    pub async fn fetch_function(&self, filename: &str) -> Result<Option<FunctionRecord>, ServerlessError> {
        let response = self
            .http
            .get(self.url("/v1/runner/instances"))
            .query(&[("filename", filename)])
            .header("Authorization", &self.api_key)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.unreachable(e))?;
        if status != 200 {
            return Err(ServerlessError::Status { what: "the instance look-up", status, body: truncate(&body, 512) });
        }
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&body) else {
            return Err(ServerlessError::Protocol(format!("instance look-up answered {:?}", truncate(&body, 512))));
        };
        let get = |object: &Map<String, Value>, name: &str| -> Option<Value> {
            object.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
        };
        if let Some(Value::String(error)) = get(&object, "error") {
            if !error.is_empty() {
                return Err(ServerlessError::Protocol(format!("instance look-up failed: {error}")));
            }
        }
        let Some(Value::Array(items)) = get(&object, "items") else { return Ok(None) };
        let Some(Value::Object(first)) = items.into_iter().next() else { return Ok(None) };
        let text = |name: &str| get(&first, name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let url = text("endpoint");
        if url.is_empty() {
            return Err(ServerlessError::Protocol("instance look-up returned an instance without an endpoint".into()));
        }
        Ok(Some(FunctionRecord { url, name: text("name"), resource_name: text("resourcename") }))
    }

    /// `POST /v1/launch` (multipart `verified`, `metadata`, `context`), following the streamed stages.
    /// Progress lines go to `progress`; returns the function once the `run` stage succeeded.
    pub async fn launch(
        &self,
        identifier: &PluginUniqueIdentifier,
        filename: &str,
        package: &[u8],
        verified: bool,
        progress: &mpsc::UnboundedSender<String>,
    ) -> Result<FunctionRecord, ServerlessError> {
        let limit = self.launch_timeout;
        match tokio::time::timeout(limit, self.launch_unbounded(identifier, filename, package, verified, progress)).await {
            Ok(result) => result,
            Err(_) => Err(ServerlessError::LaunchTimeout(limit.as_secs())),
        }
    }

    async fn launch_unbounded(
        &self,
        identifier: &PluginUniqueIdentifier,
        filename: &str,
        package: &[u8],
        verified: bool,
        progress: &mpsc::UnboundedSender<String>,
    ) -> Result<FunctionRecord, ServerlessError> {
        let metadata = json!({"plugin_unique_identifier": identifier.as_str()}).to_string();
        let file = reqwest::multipart::Part::bytes(package.to_vec())
            .file_name(filename.to_string())
            .mime_str("application/octet-stream")
            .map_err(|e| ServerlessError::Protocol(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("verified", if verified { "true" } else { "false" })
            .text("metadata", metadata)
            .part("context", file);
        let response = self
            .http
            .post(self.url("/v1/launch"))
            .header("Authorization", &self.api_key)
            .multipart(form)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response.text().await.unwrap_or_default();
            return Err(ServerlessError::Status { what: "the launch", status, body: truncate(&body, 512) });
        }
        let mut body = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut function: Option<FunctionRecord> = None;
        let mut finished = false;
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => return Err(self.unreachable(error)),
                None => break,
            };
            pending.extend_from_slice(&chunk);
            while let Some(index) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=index).collect();
                if self.apply_launch_line(&String::from_utf8_lossy(&line), &mut function, progress)? {
                    finished = true;
                }
            }
            if finished {
                break;
            }
        }
        if !finished && !pending.is_empty() {
            finished = self.apply_launch_line(&String::from_utf8_lossy(&pending), &mut function, progress)?;
        }
        // Upstream saves the function only when the `end` stage arrives (its "done" event).
        if !finished {
            return Err(ServerlessError::LaunchIncomplete);
        }
        function.ok_or_else(|| ServerlessError::LaunchFailed("the connector ended the launch without reporting a function".into()))
    }

    /// Applies one launch line; returns true on the `end` stage.
    fn apply_launch_line(
        &self,
        line: &str,
        function: &mut Option<FunctionRecord>,
        progress: &mpsc::UnboundedSender<String>,
    ) -> Result<bool, ServerlessError> {
        let Some(chunk) = parse_launch_line(line) else { return Ok(false) };
        if chunk.state.eq_ignore_ascii_case("failed") {
            let reason = if chunk.message.is_empty() { format!("stage {} failed", chunk.stage) } else { chunk.message };
            return Err(ServerlessError::LaunchFailed(reason));
        }
        match chunk.stage.to_ascii_lowercase().as_str() {
            "start" | "build" => {
                let _ = progress.send(describe("Building plugin...", &chunk.message));
            }
            "run" if chunk.state.eq_ignore_ascii_case("success") => {
                let record = parse_function_message(&chunk.message)?;
                let _ = progress.send(format!("function {} ready at {}", record.name, record.url));
                *function = Some(record);
            }
            "run" => {
                let _ = progress.send(describe("Launching plugin...", &chunk.message));
            }
            "end" => return Ok(true),
            _ => {}
        }
        Ok(false)
    }
}

fn describe(what: &str, detail: &str) -> String {
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what} {detail}")
    }
}

/// A response body as received, for messages: an empty body is named, anything else is shown raw
/// (not re-quoted, so a bare `pong` is not mistaken for the JSON string `"pong"`).
fn shown_body(body: &str) -> String {
    if body.is_empty() {
        "an empty body".to_string()
    } else {
        format!("`{}`", truncate(body, 512))
    }
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a backwards-invocation transaction could not be opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TransactionError {
    /// No invocation with this session id is in flight on this node.
    #[error("failed to get session info from cache")]
    SessionNotFound { session_id: String, backwards_request_id: String, detail: String },
    /// The body is not one session `invoke` event of that session.
    #[error("invalid backwards invocation transaction: {0}")]
    BadRequest(String),
}

/// Where sessions are announced beyond this node: told when a session opens (before its function is
/// called, so the function's first backwards call can already be routed here) and when it ends.
pub trait SessionDirectory: Send + Sync + 'static {
    /// Session `session_id` runs on this node from now on.
    fn opened<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()>;
    /// Session `session_id` ended on this node.
    fn closed<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()>;
}

/// The serverless platform of this node: the connector client and the sessions in flight.
pub struct ServerlessRuntime {
    config: ServerlessConfig,
    connector: ConnectorClient,
    http: reqwest::Client,
    /// Session id → the function serving it, while its invocation request runs.
    sessions: Mutex<HashMap<String, Weak<ServerlessPlugin>>>,
    /// Told of every session's start and end (set in a cluster only).
    directory: std::sync::OnceLock<Arc<dyn SessionDirectory>>,
}

impl ServerlessRuntime {
    pub fn new(config: ServerlessConfig) -> Arc<Self> {
        let connector = ConnectorClient::new(&config);
        let http = reqwest::Client::builder()
            .connect_timeout(config.execution_timeout.min(Duration::from_secs(30)))
            .build()
            .unwrap_or_default();
        Arc::new(Self { config, connector, http, sessions: Mutex::new(HashMap::new()), directory: std::sync::OnceLock::new() })
    }

    /// Announces this node's sessions to `directory` from now on; only the first call counts.
    pub fn set_session_directory(&self, directory: Arc<dyn SessionDirectory>) {
        let _ = self.directory.set(directory);
    }

    pub fn config(&self) -> &ServerlessConfig {
        &self.config
    }

    pub fn connector(&self) -> &ConnectorClient {
        &self.connector
    }

    /// Finds the plugin's function at the connector or launches it there (uploading the package),
    /// then returns the plugin bridged to that function.
    pub async fn launch(
        self: &Arc<Self>,
        identifier: &PluginUniqueIdentifier,
        package: &[u8],
        declaration: &PluginDeclaration,
        progress: &mpsc::UnboundedSender<String>,
    ) -> Result<Arc<ServerlessPlugin>, ServerlessError> {
        let filename = function_filename(declaration, identifier);
        let _ = progress.send(format!("looking up {filename} at the serverless connector"));
        let function = match self.connector.fetch_function(&filename).await? {
            Some(function) => {
                let _ = progress.send(format!("function {} already running at {}", function.name, function.url));
                function
            }
            None => {
                let _ = progress.send("uploading the plugin to the serverless connector".to_string());
                self.connector.launch(identifier, &filename, package, declaration.verified, progress).await?
            }
        };
        tracing::info!(plugin = %identifier, url = %function.url, name = %function.name, "serverless function ready");
        Ok(self.attach(identifier.clone(), function))
    }

    /// Bridges a known function as a plugin connection.
    pub fn attach(self: &Arc<Self>, identifier: PluginUniqueIdentifier, function: FunctionRecord) -> Arc<ServerlessPlugin> {
        ServerlessPlugin::start(self.clone(), identifier, function)
    }

    /// Opens a backwards-invocation transaction for the session named by `session_id` (the
    /// `Dify-Plugin-Session-ID` header): `body` is the plugin's session `invoke` event. Returns the
    /// receiver of the `backwards_response` lines (each ending `\n\n`); it closes after the `end`.
    pub fn open_transaction(&self, session_id: &str, body: &[u8]) -> Result<mpsc::UnboundedReceiver<Bytes>, TransactionError> {
        let event: Value =
            serde_json::from_slice(body.trim_ascii()).map_err(|e| TransactionError::BadRequest(format!("body is not JSON: {e}")))?;
        let request_id = event["data"]["data"]["backwards_request_id"].as_str().unwrap_or_default().to_string();
        let plugin = self.session_plugin(session_id);
        let Some(plugin) = plugin else {
            return Err(TransactionError::SessionNotFound {
                session_id: session_id.to_string(),
                backwards_request_id: request_id,
                detail: format!("session {session_id} is not running on this node"),
            });
        };
        if event["event"] != "session" || event["data"]["type"] != "invoke" {
            return Err(TransactionError::BadRequest("expected one session event of type invoke".into()));
        }
        if let Some(other) = event["session_id"].as_str() {
            if other != session_id {
                return Err(TransactionError::BadRequest(format!("session_id {other} differs from the Dify-Plugin-Session-ID header")));
            }
        }
        if request_id.is_empty() {
            return Err(TransactionError::BadRequest("backwards_request_id is required".into()));
        }
        Ok(plugin.open_transaction(session_id, &request_id, &event))
    }

    fn session_plugin(&self, session_id: &str) -> Option<Arc<ServerlessPlugin>> {
        self.lock_sessions().get(session_id).and_then(Weak::upgrade)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<ServerlessPlugin>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One launched plugin: its function and the bridge presenting it as a [`PluginConnection`].
pub struct ServerlessPlugin {
    pub identifier: PluginUniqueIdentifier,
    pub function: FunctionRecord,
    runtime: Arc<ServerlessRuntime>,
    connection: Arc<PluginConnection>,
    /// Lines handed to the connection's reader, as if the plugin had written them.
    feed: mpsc::UnboundedSender<Vec<u8>>,
    /// `backwards_request_id` → (session id, the transaction's response body).
    transactions: Mutex<HashMap<String, (String, mpsc::UnboundedSender<Bytes>)>>,
    closed: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ServerlessPlugin {
    fn start(runtime: Arc<ServerlessRuntime>, identifier: PluginUniqueIdentifier, function: FunctionRecord) -> Arc<Self> {
        let (daemon_side, bridge_side) = tokio::io::duplex(256 * 1024);
        let (daemon_read, daemon_write) = tokio::io::split(daemon_side);
        let (bridge_read, mut bridge_write) = tokio::io::split(bridge_side);
        let options = ConnectionOptions {
            max_line_bytes: runtime.config.max_line_bytes.max(1024) + 1024,
            write_timeout: Duration::from_secs(30),
            label: identifier.to_string(),
            logs: None,
        };
        let (connection, reader) = PluginConnection::start(daemon_read, daemon_write, options);
        let (feed, mut feed_lines) = mpsc::unbounded_channel::<Vec<u8>>();
        let plugin = Arc::new(Self {
            identifier,
            function,
            runtime,
            connection,
            feed,
            transactions: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        let writer = tokio::spawn(async move {
            while let Some(mut line) = feed_lines.recv().await {
                line.push(b'\n');
                if bridge_write.write_all(&line).await.is_err() || bridge_write.flush().await.is_err() {
                    return;
                }
            }
        });
        let weak = Arc::downgrade(&plugin);
        let requests = tokio::spawn(async move {
            let mut lines = BufReader::new(bridge_read);
            let mut line = Vec::new();
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let Some(plugin) = weak.upgrade() else { return };
                plugin.handle_daemon_line(&line);
            }
        });
        let reader = tokio::spawn(async move {
            let _ = reader.await;
        });
        plugin.lock_tasks().extend([writer, requests, reader]);
        plugin
    }

    /// The connection sessions use.
    pub fn connection(&self) -> Result<Arc<PluginConnection>, super::UnavailableError> {
        if self.is_closed() {
            return Err(super::UnavailableError::Stopped(self.identifier.to_string()));
        }
        Ok(self.connection.clone())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops bridging: open sessions fail, transactions end. The function itself stays deployed.
    pub async fn stop(&self) {
        self.closed.store(true, Ordering::Release);
        self.connection.close(PluginSessionError::new("PluginDaemonInternalServerError", "plugin runtime stopped"));
        self.lock_transactions().clear();
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
    }

    /// A line the session layer wrote "to the plugin".
    fn handle_daemon_line(self: &Arc<Self>, line: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
            tracing::warn!(plugin = %self.identifier, "dropping an unreadable line meant for a serverless plugin");
            return;
        };
        let session_id = message["session_id"].as_str().unwrap_or_default().to_string();
        match message["event"].as_str() {
            Some("request") => {
                let action = message["data"]["action"].as_str().unwrap_or_default().to_string();
                let body = line.trim_ascii().to_vec();
                self.runtime.lock_sessions().insert(session_id.clone(), Arc::downgrade(self));
                let plugin = self.clone();
                tokio::spawn(async move {
                    let directory = plugin.runtime.directory.get().cloned();
                    if let Some(directory) = &directory {
                        directory.opened(&session_id).await;
                    }
                    plugin.invoke(&session_id, &action, body).await;
                    plugin.runtime.lock_sessions().remove(&session_id);
                    // Transactions of a finished invocation can get no more answers.
                    plugin.lock_transactions().retain(|_, (session, _)| session != &session_id);
                    if let Some(directory) = &directory {
                        directory.closed(&session_id).await;
                    }
                });
            }
            Some("backwards_response") => {
                let request_id = message["data"]["backwards_request_id"].as_str().unwrap_or_default();
                let last = message["data"]["event"] == "end";
                let mut transactions = self.lock_transactions();
                let Some((_, sender)) = transactions.get(request_id) else {
                    tracing::warn!(plugin = %self.identifier, request_id, "backwards response without an open transaction");
                    return;
                };
                let mut framed = line.trim_ascii().to_vec();
                framed.extend_from_slice(b"\n\n");
                let _ = sender.send(Bytes::from(framed));
                if last {
                    transactions.remove(request_id);
                }
            }
            _ => tracing::warn!(plugin = %self.identifier, "dropping an unknown line meant for a serverless plugin"),
        }
    }

    fn open_transaction(&self, session_id: &str, request_id: &str, event: &Value) -> mpsc::UnboundedReceiver<Bytes> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock_transactions().insert(request_id.to_string(), (session_id.to_string(), sender));
        let line = json!({"event": "session", "session_id": session_id, "data": event["data"].clone()});
        self.emit_raw(&line);
        receiver
    }

    fn emit_raw(&self, line: &Value) {
        let _ = self.feed.send(serde_json::to_vec(line).unwrap_or_default());
    }

    /// Feeds a session message of `session_id` to the session layer.
    fn emit(&self, session_id: &str, kind: &str, data: Value) {
        self.emit_raw(&json!({"event": "session", "session_id": session_id, "data": {"type": kind, "data": data}}));
    }

    /// Runs one invocation: the HTTP request(s) to the function and the translation of the body into
    /// session messages, ending with a synthesised `end`. Text-embedding requests over the size limit
    /// are split into batches run one after the other ([`batch`]).
    async fn invoke(&self, session_id: &str, action: &str, body: Vec<u8>) {
        let max = self.runtime.config.max_request_bytes;
        let outcome = if body.len() <= max {
            let mut forward = |data: Value| self.emit_raw(&json!({"event": "session", "session_id": session_id, "data": data}));
            self.call_function(session_id, action, body, &mut forward).await
        } else if batch::is_batched_action(action) {
            self.invoke_in_batches(session_id, action, &body).await
        } else {
            Err(batch::payload_too_large(action, body.len(), max, None))
        };
        match outcome {
            Ok(end_data) => self.emit(session_id, "end", end_data),
            Err(error) => {
                self.emit(session_id, "error", json!({"error_type": error.error_type, "message": error.message, "args": error.args}))
            }
        }
    }

    /// Splits an oversized text-embedding request, runs the batches serially under the same session id
    /// and emits the merged result. A plugin error of a batch is forwarded as it came.
    async fn invoke_in_batches(&self, session_id: &str, action: &str, body: &[u8]) -> Result<Value, PluginSessionError> {
        let max = self.runtime.config.max_request_bytes;
        let request: Value = serde_json::from_slice(body)
            .map_err(|e| PluginSessionError::new("PluginDaemonInnerError", format!("request is not JSON: {e}")))?;
        let batches = batch::split_request(&request, action, max)?;
        let mut results = Vec::with_capacity(batches.len());
        for (index, batch) in batches.into_iter().enumerate() {
            let mut items: Vec<Value> = Vec::new();
            let mut collect = |data: Value| items.push(data);
            self.call_function(session_id, action, batch.body, &mut collect).await?;
            if let Some(error) = items.iter().find(|item| item["type"] == "error") {
                self.emit_raw(&json!({"event": "session", "session_id": session_id, "data": error}));
                return Ok(json!({}));
            }
            let streamed: Vec<Value> = items.into_iter().filter(|item| item["type"] == "stream").map(|item| item["data"].clone()).collect();
            results.push(batch::BatchResult { index, expected_items: batch.items, responses: streamed });
        }
        let merged = batch::merge_results(action, results)?;
        self.emit(session_id, "stream", merged);
        Ok(json!({}))
    }

    /// One HTTP call to the function. Session data objects (`stream`, `error`, …) go to `on_item` as
    /// they arrive; returns the `end` data (`{}` when the body ended without one) or the failure.
    async fn call_function(
        &self,
        session_id: &str,
        action: &str,
        body: Vec<u8>,
        on_item: &mut (dyn FnMut(Value) + Send),
    ) -> Result<Value, PluginSessionError> {
        let config = &self.runtime.config;
        let inner = |message: String| PluginSessionError::new("PluginDaemonInnerError", message);
        let url = format!("{}/invoke?action={}", self.function.url.trim_end_matches('/'), action);
        let deadline = tokio::time::Instant::now() + config.execution_timeout;
        let response = self
            .send_with_retries(&url, session_id, Bytes::from(body), deadline)
            .await
            .map_err(|reason| inner(format!("Error sending request to serverless: {reason}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() || headers.contains_key("x-amzn-errortype") {
            let fallback = if status.is_success() { "Lambda runtime error".to_string() } else { status_text(status) };
            let body = read_limited(response, ERROR_BODY_LIMIT, deadline).await;
            return Err(runtime_error(status.as_u16(), &headers, &body, &fallback));
        }
        let mut stream = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut outcome = BodyOutcome::default();
        loop {
            let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Err(inner("failed to read response body: deadline exceeded".into())),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(inner(format!("failed to read response body: {}", error_chain(&error)))),
                Ok(Some(Ok(chunk))) => chunk,
            };
            pending.extend_from_slice(&chunk);
            while let Some(index) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=index).collect();
                self.handle_function_line(session_id, status.as_u16(), &headers, &line, &mut outcome, on_item)?;
                if outcome.ended {
                    break;
                }
            }
            if outcome.ended {
                break;
            }
            if pending.len() > config.max_line_bytes {
                return Err(inner("failed to read response body: token too long".into()));
            }
        }
        if !outcome.ended && !pending.is_empty() {
            self.handle_function_line(session_id, status.as_u16(), &headers, &pending, &mut outcome, on_item)?;
        }
        if !outcome.saw_session {
            return Err(runtime_error(status.as_u16(), &headers, b"", "no valid session response"));
        }
        Ok(outcome.end_data.unwrap_or_else(|| json!({})))
    }

    /// Handles one body line of a function response.
    fn handle_function_line(
        &self,
        session_id: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        line: &[u8],
        outcome: &mut BodyOutcome,
        on_item: &mut (dyn FnMut(Value) + Send),
    ) -> Result<(), PluginSessionError> {
        let inner = |message: String| PluginSessionError::new("PluginDaemonInnerError", message);
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| inner(format!("encountered an error: {e}")))?;
        if value["errorType"].as_str().is_some_and(|t| !t.is_empty()) {
            return Err(runtime_error(status, headers, line, "Lambda runtime error"));
        }
        match value["event"].as_str() {
            Some("session") => {
                let data = value["data"].clone();
                if !data.is_object() || data.get("data").is_none() {
                    return Err(inner(format!("failed to parse session message {}", String::from_utf8_lossy(line))));
                }
                outcome.saw_session = true;
                match data["type"].as_str() {
                    Some("end") => {
                        outcome.ended = true;
                        outcome.end_data = Some(data["data"].clone());
                    }
                    Some("invoke") => {
                        return Err(PluginSessionError::new(
                            "serverless_event_not_supported",
                            "serverless plugins must send backwards invocations to /backwards-invocation/transaction",
                        ))
                    }
                    _ => on_item(data),
                }
            }
            Some("log") => {
                let level = value["data"]["level"].as_str().unwrap_or("INFO");
                let message = value["data"]["message"].as_str().unwrap_or_default();
                tracing::info!(plugin = %self.identifier, %session_id, level, "{message}");
            }
            Some("error") => {
                let text = match &value["data"]["error"] {
                    Value::String(text) => text.clone(),
                    _ => value["data"].to_string(),
                };
                return Err(inner(format!("encountered an error: {text}")));
            }
            _ => {}
        }
        Ok(())
    }

    /// POSTs the request, retrying transport errors and HTTP 502 with exponential backoff.
    async fn send_with_retries(
        &self,
        url: &str,
        session_id: &str,
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, String> {
        let attempts = self.runtime.config.max_retry_times.max(1);
        let mut last_error = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                let backoff = Duration::from_millis(500u64.saturating_mul(1 << (attempt - 1).min(16))).min(MAX_RETRY_BACKOFF);
                if tokio::time::Instant::now() + backoff >= deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
            let request = self
                .runtime
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .header("Accept", "text/event-stream")
                .header("Dify-Plugin-Session-ID", session_id)
                .body(body.clone())
                .send();
            match tokio::time::timeout_at(deadline, request).await {
                Err(_) => return Err(format!("attempt {}/{attempts} timed out", attempt + 1)),
                Ok(Err(error)) => {
                    last_error = format!("attempt {}/{attempts} failed: {}", attempt + 1, error_chain(&error));
                    tracing::warn!(plugin = %self.identifier, %session_id, "{last_error}");
                }
                Ok(Ok(response)) if response.status().as_u16() == 502 => {
                    last_error = format!("attempt {}/{attempts} failed with status code: 502", attempt + 1);
                    tracing::warn!(plugin = %self.identifier, %session_id, "{last_error}");
                }
                Ok(Ok(response)) => return Ok(response),
            }
        }
        Err(format!("all {attempts} attempts failed, last error: {last_error}"))
    }

    fn lock_transactions(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, mpsc::UnboundedSender<Bytes>)>> {
        self.transactions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ServerlessPlugin {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// What reading a function's response body has seen so far.
#[derive(Default)]
struct BodyOutcome {
    saw_session: bool,
    ended: bool,
    end_data: Option<Value>,
}

/// `"<code> <reason>"`, as Go prints a response status.
fn status_text(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// Reads up to `limit` bytes of a body (bounded by `deadline`).
async fn read_limited(response: reqwest::Response, limit: usize, deadline: tokio::time::Instant) -> Vec<u8> {
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while body.len() < limit {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

/// The `PluginRuntimeError` message and args for a failed function response: the Lambda error type
/// (header, else body, else `fallback`), its message and request id when present.
fn runtime_error(status: u16, headers: &reqwest::header::HeaderMap, body: &[u8], fallback: &str) -> PluginSessionError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(str::to_owned);
    let error_type = header("x-amzn-errortype").or_else(|| text(&parsed["errorType"])).unwrap_or_else(|| {
        if fallback.is_empty() {
            format!("HTTP {status}")
        } else {
            fallback.to_string()
        }
    });
    let request_id = header("x-amzn-requestid").or_else(|| text(&parsed["requestId"]));
    let mut message = format!("Plugin runtime request failed: {error_type}");
    if let Some(detail) = text(&parsed["errorMessage"]) {
        message.push_str(": ");
        message.push_str(&detail);
    }
    let mut args = Map::new();
    args.insert("status_code".into(), Value::from(status));
    if let Some(id) = request_id {
        args.insert("request_id".into(), Value::String(id));
    }
    PluginSessionError { error_type: "PluginRuntimeError".into(), message, args: Value::Object(args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_lines_are_parsed_like_the_connector_sends_them() {
        assert_eq!(parse_launch_line(""), None);
        assert_eq!(parse_launch_line("event: message"), None);
        assert_eq!(parse_launch_line("not json"), None);
        let chunk = parse_launch_line("data: {\"Stage\":\"build\",\"State\":\"running\",\"Obj\":\"\",\"Message\":\"uv sync\"}").unwrap();
        assert_eq!(chunk, LaunchChunk { stage: "build".into(), state: "running".into(), message: "uv sync".into() });
        let lower = parse_launch_line("{\"stage\":\"end\",\"state\":\"success\"}").unwrap();
        assert_eq!((lower.stage.as_str(), lower.state.as_str()), ("end", "success"));
    }

    #[test]
    fn function_message_needs_endpoint_and_name() {
        let record = parse_function_message(" endpoint=http://127.0.0.1:9/fn , name=fn-1 ,id=drn:1").unwrap();
        assert_eq!(record, FunctionRecord { url: "http://127.0.0.1:9/fn".into(), name: "fn-1".into(), resource_name: "drn:1".into() });
        assert!(parse_function_message("name=fn-1").is_err());
    }

    #[test]
    fn runtime_errors_carry_lambda_details() {
        let mut headers = reqwest::header::HeaderMap::new();
        let body = br#"{"errorType":"Runtime.ExitError","errorMessage":"exited","requestId":"req-1"}"#;
        let error = runtime_error(500, &headers, body, "500 Internal Server Error");
        assert_eq!(error.error_type, "PluginRuntimeError");
        assert_eq!(error.message, "Plugin runtime request failed: Runtime.ExitError: exited");
        assert_eq!(error.args, json!({"status_code": 500, "request_id": "req-1"}));
        headers.insert("x-amzn-ErrorType", "Function.ResponseSizeTooLarge".parse().unwrap());
        let error = runtime_error(200, &headers, b"", "Lambda runtime error");
        assert_eq!(error.message, "Plugin runtime request failed: Function.ResponseSizeTooLarge");
        assert_eq!(error.args, json!({"status_code": 200}));
        let error = runtime_error(503, &reqwest::header::HeaderMap::new(), b"oops", "503 Service Unavailable");
        assert_eq!(error.message, "Plugin runtime request failed: 503 Service Unavailable");
    }

    #[test]
    fn config_requires_a_connector_url() {
        let settings = Settings::from_map(&HashMap::from([("PLATFORM".to_string(), "serverless".to_string())])).unwrap();
        let error = ServerlessConfig::from_settings(&settings, &RuntimeConfig::default()).unwrap_err();
        assert!(error.to_string().contains("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL"), "{error}");
        let settings = Settings::from_map(&HashMap::from([
            ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL".to_string(), "http://127.0.0.1:1".to_string()),
            ("MAX_SERVERLESS_RETRY_TIMES".to_string(), "0".to_string()),
        ]))
        .unwrap();
        let config = ServerlessConfig::from_settings(&settings, &RuntimeConfig::default()).unwrap();
        assert_eq!((config.max_retry_times, config.max_request_bytes), (1, 5_242_880));
        assert_eq!(config.launch_timeout, Duration::from_secs(240));
    }
}
