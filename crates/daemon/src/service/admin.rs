//! The admin API's rules (upstream's `adminGroup`): re-launching a serverless plugin at the connector
//! (`reinstall`, ignoring any function already running for the package) and pointing a serverless
//! plugin at another function (`switch-endpoint`). Both replace the bridge the runtime manager
//! holds for the plugin, so the next invocation goes to the new function, and record the function in
//! the version's `serverless_runtimes` row, so it stays after a restart.
//!
//! Must not know HTTP: reinstall reports upstream's install events, the caller frames them.

use dify_protocol::{DaemonError, PluginDeclaration, PluginUniqueIdentifier};
use serde::Serialize;
use tokio::sync::mpsc;

use super::state::AppState;
use super::{codec, package_key, ServiceResult};
use crate::config::Platform;
use crate::runtime::serverless::{function_filename, FunctionRecord};
use crate::runtime::ServerlessError;

/// Upper bound of one reinstall (upstream's SSE timeout), seconds.
pub const REINSTALL_TIMEOUT_SECS: u64 = 1800;

/// One event of a reinstall stream: `{"event":"info"|"done"|"error","data":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallEvent {
    pub event: &'static str,
    pub data: String,
}

impl InstallEvent {
    fn info(data: &str) -> Self {
        InstallEvent { event: "info", data: data.to_string() }
    }
    fn done(data: &str) -> Self {
        InstallEvent { event: "done", data: data.to_string() }
    }
    fn error(data: impl Into<String>) -> Self {
        InstallEvent { event: "error", data: data.into() }
    }
}

/// Whether the version is known as an installed plugin (upstream: its `serverless_runtimes` row).
async fn known_plugin(state: &AppState, uid: &PluginUniqueIdentifier) -> bool {
    matches!(state.db.plugin(uid.as_str()).await, Ok(Some(_)))
}

/// The stored package and its declaration (signature-checked like an upload).
async fn stored_package(state: &AppState, uid: &PluginUniqueIdentifier) -> Result<(Vec<u8>, PluginDeclaration), String> {
    let bytes = state
        .blobs
        .get(&package_key(state, uid.as_str()))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "plugin package not found, please upload it firstly".to_string())?;
    let (decoded, verification) =
        codec::decode_package(&bytes, state.settings.max_plugin_package_size, &state.extra_public_keys).map_err(|e| e.to_string())?;
    let mut declaration = decoded.declaration;
    declaration.verified = verification.is_some();
    declaration.fill_in_default_values();
    Ok((bytes, declaration))
}

/// Re-launches the plugin's function and replaces its bridge; the events arrive on the receiver,
/// which closes when the reinstall is over.
pub fn reinstall(state: &AppState, uid: PluginUniqueIdentifier) -> mpsc::UnboundedReceiver<InstallEvent> {
    let (events, receiver) = mpsc::unbounded_channel();
    let state = state.clone();
    let tracker = state.shutdown.clone();
    tracker.spawn(async move {
        run_reinstall(&state, &uid, &events).await;
    });
    receiver
}

async fn run_reinstall(state: &AppState, uid: &PluginUniqueIdentifier, events: &mpsc::UnboundedSender<InstallEvent>) {
    let send = |event: InstallEvent| {
        let _ = events.send(event);
    };
    let serverless = match (state.settings.platform(), state.runtime.serverless()) {
        (Platform::Serverless, Some(serverless)) => serverless.clone(),
        _ => return send(InstallEvent::error("reinstall is not supported on local platform")),
    };
    let (package, declaration) = match stored_package(state, uid).await {
        Ok(found) => found,
        Err(reason) => return send(InstallEvent::error(format!("failed to reinstall plugin to serverless\n{reason}"))),
    };
    let filename = function_filename(&declaration, uid);
    let (progress, mut lines) = mpsc::unbounded_channel::<String>();
    let forward = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                // The connector's start/build/run stages are upstream's "info" events.
                if line.starts_with("Building plugin...") || line.starts_with("Launching plugin...") {
                    let _ = events.send(InstallEvent::info("reinstalling..."));
                }
            }
        })
    };
    let launched = serverless.connector().launch(uid, &filename, &package, declaration.verified, &progress).await;
    drop(progress);
    let _ = forward.await;
    let function: FunctionRecord = match launched {
        Ok(function) => function,
        // A stream that ended without its `end` stage never reaches upstream's "done" step: no event.
        Err(ServerlessError::LaunchIncomplete) => return,
        Err(error @ (ServerlessError::LaunchFailed(_) | ServerlessError::Protocol(_))) => {
            tracing::error!(plugin = %uid, %error, "failed to reinstall plugin to serverless");
            return send(InstallEvent::error("failed to reinstall plugin to serverless"));
        }
        Err(error) => return send(InstallEvent::error(format!("failed to reinstall plugin to serverless\n{error}"))),
    };
    if !known_plugin(state, uid).await {
        return send(InstallEvent::error("failed to get serverless runtime model"));
    }
    let (url, name) = (function.url.clone(), function.name.clone());
    if let Err(error) = state.runtime.replace_serverless_function(uid, declaration.permissions(), function).await {
        return send(InstallEvent::error(error.to_string()));
    }
    super::launch::remember_serverless_function(state, uid, &url, &name).await;
    send(InstallEvent::done("successfully reinstalled"));
}

/// Points the plugin at another function; `true` on success.
pub async fn switch_endpoint(
    state: &AppState,
    uid: &PluginUniqueIdentifier,
    function_name: &str,
    function_url: &str,
) -> ServiceResult<bool> {
    if state.settings.platform() != Platform::Serverless {
        return Err(DaemonError::internal("switch serverless runtime is not supported on local platform"));
    }
    if !known_plugin(state, uid).await {
        // Upstream's "no such serverless_runtimes row" (gorm's not-found error).
        return Err(DaemonError::internal("record not found"));
    }
    let permissions = match super::load_declaration(state, uid.as_str()).await? {
        Some(declaration) => declaration.permissions(),
        None => return Err(DaemonError::internal("record not found")),
    };
    let function = FunctionRecord { url: function_url.to_string(), name: function_name.to_string(), resource_name: String::new() };
    state
        .runtime
        .replace_serverless_function(uid, permissions, function)
        .await
        .map_err(|e| DaemonError::internal(e.to_string()))?;
    super::launch::remember_serverless_function(state, uid, function_url, function_name).await;
    Ok(true)
}
