//! Launching a plugin from its stored package: read the package blob, hand it to
//! [`RuntimeManager::launch`](crate::runtime::RuntimeManager::launch) and forward its progress lines.
//!
//! The one way services start a runtime: install jobs (progress lines become the task entry's
//! message) and the lazy launch of [`invocation`](super::invocation) (progress lines are logged) both
//! call [`launch_stored_package`]. It must not decide *whether* to launch. On the serverless platform
//! the function recorded in `serverless_runtimes` is bridged instead of a launch, and a launch's
//! function is recorded there.

use std::future::Future;
use std::time::Duration;

use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};

use super::package_key;
use super::state::AppState;
use crate::runtime::serverless::FunctionRecord;
use crate::runtime::RuntimeError;
use crate::store::BlobError;

/// How long progress lines still queued when the launch ends may take to be forwarded.
const PROGRESS_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a stored package could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchStoredError {
    /// No package was uploaded under the identifier.
    #[error("plugin package not found, please upload it firstly")]
    PackageMissing,
    /// The package blob could not be read.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The runtime could not be prepared or started.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The launch did not finish within the budget it was given.
    #[error("plugin launch timed out after {0:?}")]
    TimedOut(Duration),
}

/// Reads the stored package of `uid` and launches it, awaiting `on_progress` for every progress line
/// (in order, on a task tracked by the state's shutdown handle). With a `budget`, a launch that takes
/// longer is abandoned with [`LaunchStoredError::TimedOut`]. Returns at once when the plugin runs.
pub async fn launch_stored_package<F, Fut>(
    state: &AppState,
    uid: &PluginUniqueIdentifier,
    declaration: &PluginDeclaration,
    budget: Option<Duration>,
    mut on_progress: F,
) -> Result<(), LaunchStoredError>
where
    F: FnMut(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if resume_serverless_function(state, uid, declaration).await {
        return Ok(());
    }
    let package = state.blobs.get(&package_key(state, uid.as_str())).await?.ok_or(LaunchStoredError::PackageMissing)?;
    let (progress, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let forwarder = state.shutdown.spawn(async move {
        while let Some(line) = lines.recv().await {
            on_progress(line).await;
        }
    });
    let launch = state.runtime.launch(uid, &package, declaration, progress);
    let launched = match budget {
        Some(budget) => tokio::time::timeout(budget, launch).await.map_err(|_| LaunchStoredError::TimedOut(budget)),
        None => Ok(launch.await),
    };
    // The sender is gone once the launch returned (or was abandoned); let the forwarder flush.
    let _ = tokio::time::timeout(PROGRESS_FLUSH_TIMEOUT, forwarder).await;
    launched?.map_err(LaunchStoredError::from)?;
    if let Some(function) = state.runtime.serverless_function(uid.as_str()) {
        remember_serverless_function(state, uid, &function.url, &function.name).await;
    }
    Ok(())
}

/// On the serverless platform, bridges the function recorded for `uid` (its `serverless_runtimes`
/// row, written by install, reinstall and switch-endpoint) without asking the connector; `true`
/// when the plugin now runs on it.
async fn resume_serverless_function(state: &AppState, uid: &PluginUniqueIdentifier, declaration: &PluginDeclaration) -> bool {
    if state.runtime.serverless().is_none() || state.runtime.serverless_function(uid.as_str()).is_some() {
        return false;
    }
    let (url, name) = match state.db.serverless_runtime(uid.as_str()).await {
        Ok(Some((url, name))) if !url.is_empty() => (url, name),
        Ok(_) => return false,
        Err(error) => {
            tracing::warn!(plugin = %uid, %error, "cannot read the plugin's serverless runtime row; asking the connector");
            return false;
        }
    };
    let function = FunctionRecord { url, name, resource_name: String::new() };
    match state.runtime.attach_serverless_function(uid, declaration.permissions(), function).await {
        Ok(_) => {
            tracing::info!(plugin = %uid, "serverless function taken from the serverless_runtimes row");
            true
        }
        Err(_) => false,
    }
}

/// Records the function `uid` runs on, so a restart finds it again. A failure is logged: the
/// connector's own answer for the package is the fallback.
pub async fn remember_serverless_function(state: &AppState, uid: &PluginUniqueIdentifier, url: &str, name: &str) {
    if let Err(error) = state.db.save_serverless_runtime(uid.as_str(), uid.checksum(), url, name).await {
        tracing::warn!(plugin = %uid, %error, "cannot record the plugin's serverless function");
    }
}
