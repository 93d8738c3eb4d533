//! Start-up and shutdown of the daemon: resolves the API key and node identity, removes upload files
//! a previous run left behind, opens the state ([`AppState::open`]), recovers tasks left by a previous
//! run, runs housekeeping, serves HTTP until SIGTERM/SIGINT, then cancels the
//! [`Shutdown`](crate::shutdown::Shutdown) handle, waits (bounded) for every tracked background task
//! and stops runtimes.
//!
//! The top of the module stack: it may use every layer, and no module imports it. It must not
//! contain request handling or business rules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::config::{Settings, WELL_KNOWN_PUBLIC_KEYS};
use crate::service::state::{AppState, SHUTDOWN_TASK_MESSAGE};

/// How often housekeeping (lease renewal, stale-task failure, task expiry) runs.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(5);
/// How long in-flight requests and background tasks may run after SIGTERM/SIGINT before the
/// daemon stops anyway.
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns the configured API key, or the key generated on an earlier start, or a new one (stored
/// in `<storage root>/server_key` and printed). Warns when a publicly known key is configured.
pub fn resolve_server_key(settings: &Settings) -> anyhow::Result<String> {
    if let Some(key) = settings.server_key.clone() {
        if WELL_KNOWN_PUBLIC_KEYS.contains(&key.as_str()) {
            tracing::warn!("SERVER_KEY is a publicly known sample value; anyone can call this daemon. Set a secret SERVER_KEY.");
            eprintln!(
                "WARNING: SERVER_KEY is a publicly known sample value; anyone can manage plugins on this daemon. \
                 Set a secret SERVER_KEY."
            );
        }
        return Ok(key);
    }
    let path = settings.storage_root().join("server_key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            eprintln!("SERVER_KEY is not set; using the generated key stored in {}", path.display());
            return Ok(existing);
        }
    }
    let key = generate_secret();
    write_private_file(&path, &key).with_context(|| format!("cannot store the generated key in {}", path.display()))?;
    eprintln!("SERVER_KEY is not set; generated a new API key (stored in {}):", path.display());
    eprintln!("{key}");
    Ok(key)
}

/// Returns this node's identity, kept in `<working path>/.node_id` so a restarted node recognises
/// the install tasks its previous run left unfinished.
pub fn resolve_node_id(settings: &Settings) -> anyhow::Result<String> {
    let path = PathBuf::from(&settings.plugin_working_path).join(".node_id");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    write_private_file(&path, &id).with_context(|| format!("cannot store the node id in {}", path.display()))?;
    Ok(id)
}

fn generate_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 33];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(settings.log_level.to_ascii_lowercase()));
    // Colours only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if settings.log_output_format.eq_ignore_ascii_case("json") { builder.json().try_init() } else { builder.try_init() };
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Files in the upload directory older than this are another run's.
    let started = SystemTime::now();
    init_tracing(&settings);
    settings.validate()?;
    crate::telemetry::init(&settings)?;
    std::fs::create_dir_all(settings.storage_root())
        .with_context(|| format!("cannot create storage root {}", settings.plugin_storage_local_root))?;
    std::fs::create_dir_all(&settings.plugin_working_path)
        .with_context(|| format!("cannot create working path {}", settings.plugin_working_path))?;
    let server_key = resolve_server_key(&settings)?;
    let node_id = resolve_node_id(&settings)?;
    let removed = crate::service::packages::remove_stale_uploads(&settings, started);
    if removed > 0 {
        tracing::warn!(removed, "removed temporary upload files left by an earlier run");
    }
    let addr: SocketAddr = format!("{}:{}", settings.server_host, settings.server_port)
        .parse()
        .with_context(|| format!("invalid listen address {}:{}", settings.server_host, settings.server_port))?;

    let state = AppState::open(settings, server_key, node_id).await?;
    crate::runtime::sandbox::report_at_start_up(&state.runtime.config().sandbox);
    let recovered = state.db.fail_tasks_of_node(&state.node_id, SHUTDOWN_TASK_MESSAGE).await?;
    if recovered > 0 {
        tracing::warn!(recovered, "marked install tasks of the previous run as failed");
    }

    let shutdown = state.shutdown.clone();
    shutdown.spawn(housekeeping_loop(state.clone()));
    shutdown.spawn(idle_sweep_loop(state.clone()));
    let listener = listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    // The bound address (SERVER_PORT=0 picks a free port; the line names the real one).
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, db = ?state.db.kind(), platform = %state.settings.platform, "dify-plugin-daemon listening");
    eprintln!("dify-plugin-daemon listening on {addr}");
    // With REDIS_HOST: register this node (its advertised URL names the bound port) and subscribe
    // to the other nodes' installation writes before the first request is served.
    crate::service::cluster::join(&state, addr).await;

    // The debug server holds the shutdown handle: the signal disconnects debugging plugins at once,
    // so their open streams end.
    let debug_server = crate::service::debugging::start_debug_server(&state).await;
    let app = crate::http::Front::new(state.clone());
    // When the signal came: in-flight requests and background tasks share one drain budget from then.
    let signalled_at = std::sync::Arc::new(std::sync::OnceLock::new());
    {
        let shutdown = shutdown.clone();
        let signalled_at = signalled_at.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = signalled_at.set(tokio::time::Instant::now());
            shutdown.cancel();
        });
    }
    // Small SSE writes must leave at once: without TCP_NODELAY the last piece of each response waits
    // for the client's delayed ACK (~40 ms on Linux), which dominated invocation latency.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let serve_stop = shutdown.clone();
    let server = axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(app))
        .with_graceful_shutdown(async move { serve_stop.cancelled().await });
    // In-flight requests (streams included) get a bounded time to finish after the signal.
    let drain_stop = shutdown.clone();
    let drain_deadline = async move {
        drain_stop.cancelled().await;
        tokio::time::sleep(SHUTDOWN_DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = server => served.context("HTTP server failed")?,
        _ = drain_deadline => tracing::warn!("in-flight requests did not finish in time; stopping anyway"),
    }

    tracing::info!("shutting down");
    shutdown.cancel();
    if let Some(server) = debug_server {
        server.shutdown().await;
    }
    // Background tasks (housekeeping, install jobs, sessions) share the drain budget with requests.
    let spent = signalled_at.get().map(|at| at.elapsed()).unwrap_or_default();
    let left = SHUTDOWN_DRAIN_TIMEOUT.saturating_sub(spent).max(Duration::from_secs(1));
    if !shutdown.wait(left).await {
        tracing::warn!(tasks = shutdown.running_tasks(), "background tasks did not finish in time; stopping anyway");
    }
    if let Err(e) = state.db.fail_tasks_of_node(&state.node_id, SHUTDOWN_TASK_MESSAGE).await {
        tracing::warn!(error = %e, "could not mark running install tasks as failed");
    }
    state.runtime.shutdown().await;
    state.db.close().await;
    // Queued spans go out within what is left of the drain budget (at least a second).
    let spent = signalled_at.get().map(|at| at.elapsed()).unwrap_or_default();
    crate::telemetry::shutdown(SHUTDOWN_DRAIN_TIMEOUT.saturating_sub(spent).max(Duration::from_secs(1))).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Stops local plugins unused for `PLUGIN_IDLE_TIMEOUT` (see `runtime::idle`), checking a few times
/// per timeout.
async fn idle_sweep_loop(state: AppState) {
    let timeout = state.runtime.config().idle_timeout;
    if timeout.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval((timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(30)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        state.runtime.stop_idle(timeout).await;
    }
}

/// Renews this node's task leases, fails tasks whose node vanished or whose install budget ran
/// out, and deletes tasks past their retention. Idempotent, so every node may run it.
async fn housekeeping_loop(state: AppState) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        if let Err(e) = crate::service::tasks::housekeeping(&state).await {
            tracing::warn!(error = %e, "install task housekeeping failed");
        }
    }
}

/// Connections the kernel may queue for the API listener before they are accepted (the kernel caps
/// it at `net.core.somaxconn`). A burst of new connections, e.g. a client opening hundreds at once,
/// must not overflow the queue: a dropped handshake is retried by the client only after a second.
/// Upstream's Go server asks for `somaxconn` too; tokio's `TcpListener::bind` asks for 128.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API listener with [`LISTEN_BACKLOG`] (address reuse on, as `TcpListener::bind` sets it).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hundreds of connections opened at once, none accepted yet: every handshake completes, where a
    /// listener with tokio's default queue of 128 leaves the rest waiting for a retransmission.
    #[tokio::test]
    async fn the_listener_queues_a_burst_of_connections() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..400).map(|_| tokio::time::timeout(std::time::Duration::from_millis(700), tokio::net::TcpStream::connect(addr)));
        let results = futures::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, 400, "connections completed before the timeout");
        drop(listener);
    }
}
