//! The debug (remote, TCP) runtime: plugin authors run their plugin on their own machine, it dials
//! the daemon's TCP server with a tenant's debugging key and becomes invocable for that tenant.
//!
//! Owns: the listener (`PLUGIN_REMOTE_INSTALLING_HOST`/`PORT`), the registration sequence of
//! docs/protocol.md §2.4 (key line, manifest, declarations, asset chunks, `end`) with its limits
//! (handshake deadline, asset budget, line cap, connection cap) and upstream's plain-text rejection
//! lines, the heartbeat monitor of §2.5, and the clean-up when a plugin goes away (open sessions fail
//! with `ConnectionClosedError`, the runtime leaves the [`RuntimeManager`], the installation is
//! removed). After registration the socket is handed to [`PluginConnection`], which does framing,
//! session multiplexing and heartbeat counting exactly as for local plugins.
//!
//! Must not: touch database rows or blob storage (the [`DebugRegistry`] given by the server does:
//! key lookup, installation rows, assets), or know about HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use dify_protocol::manifest::{
    AgentStrategyProviderDeclaration, DatasourceProviderDeclaration, EndpointProviderDeclaration, ModelProviderDeclaration,
    ToolProviderDeclaration, TriggerProviderDeclaration,
};
use dify_protocol::message::PluginSessionError;
use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::connection::{ConnectionOptions, PluginConnection};
use super::RuntimeManager;
use crate::shutdown::Shutdown;
use crate::store::{BlobError, StoreError};

/// Error type and message every open session receives when a debugging plugin disconnects.
pub const CONNECTION_CLOSED_ERROR_TYPE: &str = "ConnectionClosedError";
pub const CONNECTION_CLOSED_MESSAGE: &str = "Connection closed unexpectedly";

/// Upstream's rejection lines (sent as plain text, then the socket is closed).
pub const INVALID_HANDSHAKE_MESSAGE: &str = "handshake failed, invalid handshake message";
pub const INVALID_KEY_MESSAGE: &str = "handshake failed, invalid key";
pub const REGISTRATION_BEFORE_HANDSHAKE_MESSAGE: &str = "handshake failed, registration message before handshake";
pub const HANDSHAKE_ALREADY_COMPLETED_MESSAGE: &str = "handshake already completed";
pub const ASSETS_TOO_LARGE_MESSAGE: &str = "assets too large, at most 50MB";
pub const SERVER_BUSY_MESSAGE: &str = "server is busy now, please try again later";
pub const NO_REGISTRATION_MESSAGE: &str = "no registration transferred, cannot initialize";

/// Largest total of asset bytes one plugin may transfer (upstream: 50 MiB, counted on the base64 text).
pub const MAX_ASSETS_BYTES: usize = 50 * 1024 * 1024;
/// Longest line accepted before a valid key was presented (the handshake line is ~75 bytes), so an
/// unauthenticated peer cannot make the daemon buffer large lines.
pub const MAX_HANDSHAKE_LINE_BYTES: usize = 64 * 1024;
/// Connections still registering (not yet counted against `max_connections`) accepted at once;
/// further ones are closed at once, so a flood cannot exhaust file descriptors.
pub const MAX_PENDING_CONNECTIONS: usize = 1024;
/// How long a rejected connection's remaining input is read and discarded before the socket closes.
const REJECTION_DRAIN: Duration = Duration::from_secs(1);

/// Settings of the debug server.
#[derive(Debug, Clone)]
pub struct DebugServerConfig {
    /// Address to listen on; port 0 picks a free port (see [`DebugServer::local_addr`]).
    pub host: String,
    pub port: u16,
    /// `PLUGIN_REMOTE_INSTALLING_MAX_CONN`: registered debugging plugins at once.
    pub max_connections: usize,
    /// A connection that has not sent an accepted handshake within this time is closed (upstream 10 s).
    pub handshake_timeout: Duration,
    /// The whole registration (handshake to `end`) must finish within this time.
    pub registration_timeout: Duration,
    /// A registered plugin without a heartbeat for this long is disconnected (upstream 60 s).
    pub heartbeat_timeout: Duration,
    /// Longest accepted line, during registration and afterwards.
    pub max_line_bytes: usize,
    /// Asset budget of one plugin ([`MAX_ASSETS_BYTES`]).
    pub max_assets_bytes: usize,
}

impl Default for DebugServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5003,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            registration_timeout: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(60),
            max_line_bytes: 64 * 1024 * 1024,
            max_assets_bytes: MAX_ASSETS_BYTES,
        }
    }
}

/// Why the debug server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DebugServerError {
    #[error("invalid remote debugging address {0}")]
    Address(String),
    #[error("cannot listen for remote debugging on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A plugin that completed registration: who it belongs to and what it declares.
#[derive(Debug, Clone)]
pub struct RegisteredPlugin {
    pub tenant_id: String,
    /// `<tenant_id>/<name>:<version>@<checksum>`: the author is replaced by the tenant id, which marks
    /// the identifier as a debugging one.
    pub identifier: PluginUniqueIdentifier,
    /// The assembled declaration (manifest plus provider declarations, defaults filled in). Icon
    /// fields still name the transferred asset files.
    pub declaration: PluginDeclaration,
    /// Transferred asset files by name.
    pub assets: HashMap<String, Vec<u8>>,
}

/// Why a [`DebugRegistry`] could not resolve a key or (un)install a debugging plugin. The text is
/// what the plugin is told.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node's record of its debugging installations could not be encoded.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The node's record of its debugging installations could not be written.
    #[error("cannot record debugging installations: {0}")]
    Record(#[source] BlobError),
    /// A transferred asset could not be stored.
    #[error("cannot store asset {name}: {source}")]
    Asset { name: String, source: BlobError },
    /// The tenant has a non-debugging installation of the same plugin.
    #[error("plugin {0} is already installed for this tenant")]
    AlreadyInstalled(String),
}

/// What the debug server needs from the rest of the daemon. Implemented by the debugging service.
pub trait DebugRegistry: Send + Sync {
    /// The tenant owning a live debugging key; `Ok(None)` for an unknown or expired key.
    fn tenant_of_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, RegistryError>>;
    /// Makes the plugin appear as installed for its tenant (rows, assets). Called after the runtime
    /// is reachable through the [`RuntimeManager`].
    fn install<'a>(&'a self, plugin: &'a RegisteredPlugin) -> BoxFuture<'a, Result<(), RegistryError>>;
    /// Removes what [`DebugRegistry::install`] created. Called once the plugin is gone.
    fn uninstall<'a>(&'a self, plugin: &'a RegisteredPlugin) -> BoxFuture<'a, ()>;
}

/// A registered debugging plugin on one TCP connection.
pub struct DebugPlugin {
    pub registration: Arc<RegisteredPlugin>,
    /// Distinguishes connections of the same identifier (a reconnect may register before the old
    /// socket is seen closed).
    pub connection_id: u64,
    connection: Arc<PluginConnection>,
    stop: CancellationToken,
}

impl DebugPlugin {
    /// The plugin's connection, unless it is closed.
    pub fn connection(&self) -> Result<Arc<PluginConnection>, super::UnavailableError> {
        if self.connection.is_closed() {
            Err(super::UnavailableError::Disconnected)
        } else {
            Ok(self.connection.clone())
        }
    }

    pub fn is_closed(&self) -> bool {
        self.connection.is_closed() || self.stop.is_cancelled()
    }

    /// Disconnects the plugin (open sessions fail, the socket closes, the installation goes away).
    pub async fn stop(&self) {
        self.stop.cancel();
        self.connection.close(connection_closed_error());
    }
}

/// The error open sessions receive when the plugin's connection ends.
pub fn connection_closed_error() -> PluginSessionError {
    PluginSessionError::new(CONNECTION_CLOSED_ERROR_TYPE, CONNECTION_CLOSED_MESSAGE)
}

struct Shared {
    config: DebugServerConfig,
    runtime: Arc<RuntimeManager>,
    registry: Arc<dyn DebugRegistry>,
    /// Registered plugins right now (the `PLUGIN_REMOTE_INSTALLING_MAX_CONN` count).
    registered: AtomicUsize,
    next_connection_id: AtomicU64,
    shutdown: CancellationToken,
    /// Live connections per identifier, oldest first. Two processes of the same build may be
    /// connected (or a reconnect registers before the old socket is seen closed): the newest serves,
    /// and when it goes the next live one takes over instead of the plugin being uninstalled.
    live: std::sync::Mutex<HashMap<String, Vec<Arc<DebugPlugin>>>>,
}

impl Shared {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<DebugPlugin>>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running debug server. Dropping it does not stop it; call [`DebugServer::shutdown`].
pub struct DebugServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl DebugServer {
    /// Binds the listener and starts accepting plugins. The server stops when `shutdown` is cancelled
    /// (or [`DebugServer::shutdown`] is called); its accept loop is tracked by `shutdown`.
    pub async fn start(
        config: DebugServerConfig,
        runtime: Arc<RuntimeManager>,
        registry: Arc<dyn DebugRegistry>,
        shutdown: &Shutdown,
    ) -> Result<DebugServer, DebugServerError> {
        let addr = format_addr(&config.host, config.port);
        let listener = TcpListener::bind(&addr).await.map_err(|source| DebugServerError::Bind { addr: addr.clone(), source })?;
        let local_addr = listener.local_addr().map_err(|source| DebugServerError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            config,
            runtime,
            registry,
            registered: AtomicUsize::new(0),
            next_connection_id: AtomicU64::new(1),
            // A child: the daemon's signal stops the server, stopping the server alone stops nothing else.
            shutdown: shutdown.token().child_token(),
            live: std::sync::Mutex::new(HashMap::new()),
        });
        let accepting = shared.clone();
        let accept_task = shutdown.spawn(async move { accept_loop(accepting, listener).await });
        Ok(DebugServer { local_addr, shared, accept_task })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of registered debugging plugins.
    pub fn registered(&self) -> usize {
        self.shared.registered.load(Ordering::Relaxed)
    }

    /// Stops accepting, disconnects every plugin and waits (bounded) until their clean-up is done.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        let _ = self.accept_task.await;
    }
}

fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Accepts connections until shutdown, then closes the listener and waits (bounded) for every
/// connection's clean-up.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = shared.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if connections.len() >= shared.config.max_connections.saturating_add(MAX_PENDING_CONNECTIONS) {
                    tracing::warn!(%peer, "remote debugging server: too many connections, closing a new one");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let connection = shared.clone();
                connections.spawn(async move { handle_connection(connection, stream, peer).await });
            }
            Err(error) => {
                tracing::warn!(%error, "remote debugging server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(15), async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// A plain-text rejection line (without its newline).
#[derive(Debug, Clone, PartialEq)]
struct Rejection(String);

impl<T: Into<String>> From<T> for Rejection {
    fn from(text: T) -> Self {
        Rejection(text.into())
    }
}

async fn handle_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let registration = tokio::select! {
        result = tokio::time::timeout(shared.config.registration_timeout, read_registration(&shared, &mut reader)) => match result {
            Ok(result) => result,
            Err(_) => Err(Rejection("handshake failed, registration timed out".into())),
        },
        _ = shared.shutdown.cancelled() => return,
    };
    let registration = match registration {
        Ok(Some(registration)) => registration,
        // The peer went away (or the handshake deadline passed) without a complete registration.
        Ok(None) => return,
        Err(Rejection(text)) => {
            tracing::info!(%peer, reason = %text, "remote debugging connection rejected");
            reject(&mut reader, &mut write, &text).await;
            return;
        }
    };
    if shared.registered.fetch_add(1, Ordering::AcqRel) >= shared.config.max_connections {
        shared.registered.fetch_sub(1, Ordering::AcqRel);
        reject(&mut reader, &mut write, SERVER_BUSY_MESSAGE).await;
        return;
    }
    run_registered(&shared, registration, reader, write, peer).await;
    shared.registered.fetch_sub(1, Ordering::AcqRel);
}

/// Writes the rejection line and closes. Unread input is drained for a moment first: closing a
/// socket with unread data resets it, and the peer could lose the line.
async fn reject<R: AsyncRead + Unpin>(reader: &mut R, write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) {
    let line = format!("{text}\n");
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = write.write_all(line.as_bytes()).await;
        let _ = write.flush().await;
        let _ = write.shutdown().await;
    })
    .await;
    let _ = tokio::time::timeout(REJECTION_DRAIN, async {
        let mut sink = [0u8; 16 * 1024];
        while matches!(tokio::io::AsyncReadExt::read(reader, &mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Serves a registered plugin until it disconnects, misses heartbeats, is stopped or the server
/// shuts down; then cleans up.
async fn run_registered(
    shared: &Arc<Shared>,
    registration: RegisteredPlugin,
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
    peer: SocketAddr,
) {
    let registration = Arc::new(registration);
    let uid = registration.identifier.to_string();
    let options = ConnectionOptions { max_line_bytes: shared.config.max_line_bytes, label: uid.clone(), ..Default::default() };
    let (connection, mut reader_task) = PluginConnection::start(reader, write, options);
    let plugin = Arc::new(DebugPlugin {
        registration: registration.clone(),
        connection_id: shared.next_connection_id.fetch_add(1, Ordering::Relaxed),
        connection: connection.clone(),
        stop: CancellationToken::new(),
    });
    shared.live().entry(uid.clone()).or_default().push(plugin.clone());
    if shared.runtime.attach_debug_plugin(plugin.clone()).is_some() {
        tracing::info!(plugin = %uid, "debugging plugin registered again; the newest connection serves requests");
    }
    if let Err(error) = shared.registry.install(&registration).await {
        tracing::warn!(plugin = %uid, %error, "cannot install the debugging plugin");
        let _ = connection.send_line(format!("register failed, {error}").as_bytes()).await;
        connection.close(connection_closed_error());
        reader_task.abort();
        if let Some(successor) = forget_connection(shared, &uid, plugin.connection_id) {
            shared.runtime.attach_debug_plugin(successor);
        } else {
            shared.runtime.detach_debug_plugin(&uid, plugin.connection_id);
        }
        return;
    }
    tracing::info!(plugin = %uid, tenant = %registration.tenant_id, %peer, "debugging plugin connected");

    let mut heartbeats = connection.heartbeats();
    let timeout = shared.config.heartbeat_timeout;
    let reason = loop {
        tokio::select! {
            output = &mut reader_task => break output.unwrap_or_else(|e| format!("reader failed: {e}")),
            changed = tokio::time::timeout(timeout, heartbeats.changed()) => match changed {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => break "connection ended".to_string(),
                Err(_) => break format!("no heartbeat for {} seconds", timeout.as_secs()),
            },
            _ = plugin.stop.cancelled() => break "stopped".to_string(),
            _ = shared.shutdown.cancelled() => break "daemon shutting down".to_string(),
        }
    };
    connection.close(connection_closed_error());
    reader_task.abort();
    tracing::info!(plugin = %uid, %reason, "debugging plugin disconnected");
    let successor = forget_connection(shared, &uid, plugin.connection_id);
    // Stopped through the runtime manager (uninstalled): the manager no longer serves it anyway.
    let stopped = plugin.stop.is_cancelled() && shared.runtime.plugin(&uid).is_none();
    if shared.runtime.detach_debug_plugin(&uid, plugin.connection_id) {
        match successor {
            Some(successor) => {
                tracing::info!(plugin = %uid, "another live connection of the debugging plugin takes over");
                shared.runtime.attach_debug_plugin(successor);
            }
            None => shared.registry.uninstall(&registration).await,
        }
    } else if stopped {
        // Other live connections of a stopped plugin follow it.
        if let Some(successor) = successor {
            successor.stop.cancel();
        }
    }
}

/// Removes connection `connection_id` from the live ones of `uid`; returns the newest remaining.
fn forget_connection(shared: &Shared, uid: &str, connection_id: u64) -> Option<Arc<DebugPlugin>> {
    let mut live = shared.live();
    let remaining = live.get_mut(uid)?;
    remaining.retain(|p| p.connection_id != connection_id && !p.is_closed());
    let newest = remaining.last().cloned();
    if remaining.is_empty() {
        live.remove(uid);
    }
    newest
}

/// Pending registration state of one connection.
#[derive(Default)]
struct Registration {
    tenant_id: Option<String>,
    manifest: Option<PluginDeclaration>,
    tool: Option<Option<ToolProviderDeclaration>>,
    model: Option<Option<ModelProviderDeclaration>>,
    endpoint: Option<Option<EndpointProviderDeclaration>>,
    agent_strategy: Option<Option<AgentStrategyProviderDeclaration>>,
    datasource: Option<Option<DatasourceProviderDeclaration>>,
    trigger: Option<Option<TriggerProviderDeclaration>>,
    assets: HashMap<String, Vec<u8>>,
    assets_bytes: usize,
}

/// Reads registration lines until `end`. `Ok(None)`: the peer left or the handshake deadline passed.
async fn read_registration<R: AsyncRead + Unpin>(
    shared: &Shared,
    reader: &mut BufReader<R>,
) -> Result<Option<RegisteredPlugin>, Rejection> {
    let mut state = Registration::default();
    let handshake_deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let mut line = Vec::new();
    loop {
        let read = if state.tenant_id.is_none() {
            let max = shared.config.max_line_bytes.min(MAX_HANDSHAKE_LINE_BYTES);
            match tokio::time::timeout_at(handshake_deadline, read_line(reader, &mut line, max)).await {
                Ok(read) => read,
                Err(_) => return Ok(None),
            }
        } else {
            read_line(reader, &mut line, shared.config.max_line_bytes).await
        };
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(LineTooLong) => return Err("handshake failed, registration message too large".into()),
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Some((kind, data)) = parse_register_line(&line)? else {
            // A heartbeat or log event written while the SDK is (re)registering: nothing to register.
            continue;
        };
        if state.tenant_id.is_none() && kind != "handshake" {
            return Err(REGISTRATION_BEFORE_HANDSHAKE_MESSAGE.into());
        }
        match kind.as_str() {
            "handshake" => {
                if state.tenant_id.is_some() {
                    return Err(HANDSHAKE_ALREADY_COMPLETED_MESSAGE.into());
                }
                let Some(key) = data.get("key").and_then(Value::as_str) else {
                    return Err(INVALID_HANDSHAKE_MESSAGE.into());
                };
                match shared.registry.tenant_of_key(key).await {
                    Ok(Some(tenant)) => state.tenant_id = Some(tenant),
                    Ok(None) => return Err(INVALID_KEY_MESSAGE.into()),
                    Err(error) => return Err(format!("failed to get connection info: {error}").into()),
                }
            }
            "manifest_declaration" => {
                if state.manifest.is_some() {
                    return Err("declaration already registered".into());
                }
                let manifest: PluginDeclaration =
                    serde_json::from_value(data).map_err(|e| Rejection(format!("handshake failed, invalid plugin declaration: {e}")))?;
                state.manifest = Some(manifest);
            }
            "tool_declaration" => store_first(&mut state.tool, data, "tools", "tools")?,
            "model_declaration" => store_first(&mut state.model, data, "models", "models")?,
            "endpoint_declaration" => store_first(&mut state.endpoint, data, "endpoints", "endpoints")?,
            "agent_strategy_declaration" => store_first(&mut state.agent_strategy, data, "agent strategy", "agent strategies")?,
            "datasource_declaration" => store_first(&mut state.datasource, data, "datasource", "datasources")?,
            "trigger_declaration" => store_first(&mut state.trigger, data, "triggers", "triggers")?,
            "asset_chunk" => add_asset_chunk(&mut state, &data, shared.config.max_assets_bytes)?,
            "end" => return finish_registration(state).map(Some),
            other => tracing::debug!(kind = other, "ignoring an unknown registration message"),
        }
    }
}

struct LineTooLong;

/// Reads one `\n`-terminated line into `line` (without the newline). `Ok(false)` at end of input.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>, max: usize) -> Result<bool, LineTooLong> {
    line.clear();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(_) => return Ok(false),
        };
        if chunk.is_empty() {
            return Ok(false);
        }
        let (part, complete) = match chunk.iter().position(|b| *b == b'\n') {
            Some(index) => (&chunk[..index], Some(index + 1)),
            None => (chunk, None),
        };
        if line.len() + part.len() > max {
            return Err(LineTooLong);
        }
        line.extend_from_slice(part);
        let consumed = complete.unwrap_or(chunk.len());
        reader.consume(consumed);
        if complete.is_some() {
            return Ok(true);
        }
    }
}

/// `{"type": <string>, "data": <any>}`. `Ok(None)` for a plugin event line (`event`, no `type`),
/// which carries nothing for the registration; anything else is an invalid handshake message.
fn parse_register_line(line: &[u8]) -> Result<Option<(String, Value)>, Rejection> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
        return Err(INVALID_HANDSHAKE_MESSAGE.into());
    };
    match object.remove("type") {
        Some(Value::String(kind)) => Ok(Some((kind, object.remove("data").unwrap_or(Value::Null)))),
        None if object.get("event").is_some_and(Value::is_string) => Ok(None),
        _ => Err(INVALID_HANDSHAKE_MESSAGE.into()),
    }
}

/// Stores element 0 of a `*_declaration` list (accepted once). `singular`/`plural` name the kind in
/// upstream's rejection texts.
fn store_first<T: serde::de::DeserializeOwned>(
    slot: &mut Option<Option<T>>,
    data: Value,
    singular: &str,
    plural: &str,
) -> Result<(), Rejection> {
    if slot.is_some() {
        return Err(format!("{singular} declaration already registered").into());
    }
    let items: Vec<T> =
        serde_json::from_value(data).map_err(|e| Rejection(format!("{plural} register failed, invalid {plural} declaration: {e}")))?;
    *slot = Some(items.into_iter().next());
    Ok(())
}

fn add_asset_chunk(state: &mut Registration, data: &Value, max_bytes: usize) -> Result<(), Rejection> {
    let (Some(filename), Some(encoded)) = (data.get("filename").and_then(Value::as_str), data.get("data").and_then(Value::as_str)) else {
        return Err("transfer assets failed, error: asset chunk needs `filename` and `data`".into());
    };
    // Counted on the encoded text before decoding, as upstream does.
    if state.assets_bytes + encoded.len() > max_bytes {
        return Err(ASSETS_TOO_LARGE_MESSAGE.into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| Rejection(format!("assets decode failed, error: {e}")))?;
    state.assets_bytes += bytes.len();
    state.assets.entry(filename.to_string()).or_default().extend_from_slice(&bytes);
    Ok(())
}

fn finish_registration(state: Registration) -> Result<RegisteredPlugin, Rejection> {
    let tenant_id = state.tenant_id.unwrap_or_default();
    let transferred = state.tool.is_some()
        || state.model.is_some()
        || state.endpoint.is_some()
        || state.agent_strategy.is_some()
        || state.datasource.is_some()
        || state.trigger.is_some();
    if !transferred {
        return Err(NO_REGISTRATION_MESSAGE.into());
    }
    let mut declaration = state.manifest.unwrap_or_default();
    declaration.tool = state.tool.flatten();
    declaration.model = state.model.flatten();
    declaration.endpoint = state.endpoint.flatten();
    declaration.agent_strategy = state.agent_strategy.flatten();
    declaration.datasource = state.datasource.flatten();
    declaration.trigger = state.trigger.flatten();
    declaration.verified = false;
    declaration.fill_in_default_values();
    if let Err(problems) = declaration.validate_for_daemon() {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(format!("register failed, invalid manifest detected: {}", text.join("; ")).into());
    }
    let checksum = registration_checksum(&declaration, &tenant_id);
    let raw = format!("{tenant_id}/{}:{}@{checksum}", declaration.name, declaration.version);
    let identifier =
        PluginUniqueIdentifier::parse(&raw).map_err(|e| Rejection(format!("register failed, invalid plugin identity {raw}: {e}")))?;
    Ok(RegisteredPlugin { tenant_id, identifier, declaration, assets: state.assets })
}

/// Hex SHA-256 of the assembled declaration's JSON followed by the tenant id.
pub fn registration_checksum(declaration: &PluginDeclaration, tenant_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(declaration.to_json_value().to_string().as_bytes());
    hasher.update(tenant_id.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lines_must_carry_a_type() {
        assert_eq!(parse_register_line(b"not json").unwrap_err(), Rejection(INVALID_HANDSHAKE_MESSAGE.into()));
        assert_eq!(parse_register_line(b"{\"data\":{}}").unwrap_err(), Rejection(INVALID_HANDSHAKE_MESSAGE.into()));
        let (kind, data) = parse_register_line(b" {\"type\":\"end\",\"data\":{}} ").unwrap().unwrap();
        assert_eq!((kind.as_str(), data), ("end", serde_json::json!({})));
        assert_eq!(parse_register_line(b"{\"event\":\"heartbeat\",\"session_id\":null,\"data\":{}}"), Ok(None));
        assert!(parse_register_line(b"{\"type\":7}").is_err());
    }

    #[test]
    fn asset_budget_counts_encoded_text() {
        let mut state = Registration::default();
        let chunk = serde_json::json!({"filename": "icon.svg", "data": "aGVsbG8=", "end": false});
        add_asset_chunk(&mut state, &chunk, 100).unwrap();
        add_asset_chunk(&mut state, &serde_json::json!({"filename": "icon.svg", "data": "IQ==", "end": true}), 100).unwrap();
        assert_eq!(state.assets["icon.svg"], b"hello!");
        assert_eq!(add_asset_chunk(&mut state, &chunk, 10).unwrap_err(), Rejection(ASSETS_TOO_LARGE_MESSAGE.into()));
        let bad = serde_json::json!({"filename": "x", "data": "!!!"});
        assert!(add_asset_chunk(&mut state, &bad, 100).unwrap_err().0.starts_with("assets decode failed"));
    }

    #[test]
    fn end_without_declarations_is_rejected() {
        let state = Registration { tenant_id: Some("t".into()), manifest: Some(PluginDeclaration::default()), ..Default::default() };
        assert_eq!(finish_registration(state).err(), Some(Rejection(NO_REGISTRATION_MESSAGE.into())));
    }

    #[test]
    fn duplicate_declarations_are_rejected() {
        let mut slot: Option<Option<Value>> = None;
        store_first(&mut slot, serde_json::json!([{"a": 1}, {"b": 2}]), "tools", "tools").unwrap();
        assert_eq!(slot, Some(Some(serde_json::json!({"a": 1}))));
        let again = store_first(&mut slot, serde_json::json!([]), "tools", "tools").unwrap_err();
        assert_eq!(again.0, "tools declaration already registered");
        let mut empty: Option<Option<Value>> = None;
        let invalid = store_first(&mut empty, serde_json::json!({"not": "a list"}), "models", "models").unwrap_err();
        assert!(invalid.0.starts_with("models register failed, invalid models declaration: "), "{invalid:?}");
    }
}
