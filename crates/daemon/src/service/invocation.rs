//! The invocation service: opens a session for a tenant's installation. Dispatch, the endpoint proxy
//! (and any later forwarder) call it; none of them talks to runtimes itself.
//!
//! Owns the runtime step of an invocation: find the plugin's runtime on this node or lazily launch it
//! from the stored package (an installed plugin that is not running here after a daemon restart),
//! wait for its connection, build the [`SessionRequest`] and start the session with the daemon's
//! backwards handler and execution timeout, tracked by the shutdown handle. Must not: know HTTP,
//! SSE or envelopes (callers map [`InvocationError`] to their answers), or shape chunks.
//!
//! The flow is two steps so a caller can do its own work between them (the endpoint proxy decrypts
//! the endpoint's settings once the runtime is known): [`find_runtime`] then [`PluginRuntime::start`];
//! [`invoke`] does both.

use std::time::Duration;

use dify_protocol::access::AccessType;
use dify_protocol::invoke::Payload;
use dify_protocol::message::InvocationContext;

use super::launch::launch_stored_package;
use super::state::AppState;
use super::Installation;
use crate::runtime::idle::RuntimeLease;
use crate::runtime::{UnavailableError, RESTART_WAIT};
use crate::session::{start_tracked_session, SessionRequest, SessionStartError, SessionStream};

/// How long a request waits for an installed plugin that is not running here (after a daemon
/// restart) to be launched from its stored package before it gives up; the launch itself goes on.
pub const LAZY_LAUNCH_WAIT: Duration = Duration::from_secs(120);

/// What one invocation asks of the plugin, besides which installation serves it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub user_id: String,
    pub access_type: AccessType,
    pub action: String,
    /// Route fields, flattened into the request's `data`.
    pub payload: Payload,
    pub context: InvocationContext,
}

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The plugin does not run on this node and cannot be launched here (no stored package, a
    /// runtime type the daemon does not start itself, or the launch failed or took too long).
    #[error("failed to get plugin runtime")]
    NoRuntime,
    /// The runtime exists but offers no connection (restarting too long, given up, disconnected).
    #[error("failed to get plugin runtime")]
    Unavailable(#[source] UnavailableError),
    /// The request could not be written to the plugin.
    #[error(transparent)]
    Start(#[from] SessionStartError),
}

/// A running plugin found (or launched) for an installation: the first step of an invocation. It
/// holds a lease on the runtime, so the idle sweep leaves it running until the session is open.
pub struct PluginRuntime {
    lease: RuntimeLease,
    tenant_id: String,
    plugin_id: String,
}

/// Finds the runtime serving `installation` on this node, launching an installed local or
/// serverless plugin from its stored package when it is not running (in the background, tracked by
/// the shutdown handle, so a request that gives up after [`LAZY_LAUNCH_WAIT`] does not abort it).
///
/// A runtime the idle sweep is stopping is not found; the lazy launch then waits for the stop to
/// finish and starts the plugin again.
pub async fn find_runtime(state: &AppState, installation: &Installation) -> Result<PluginRuntime, InvocationError> {
    let identifier = installation.plugin_unique_identifier.as_str();
    let mut attempts = 0;
    let lease = loop {
        if let Some(lease) = state.runtime.acquire(identifier) {
            break lease;
        }
        // Launched, then stopped again before the lease was taken (only with a tiny idle timeout).
        attempts += 1;
        // Boxed: the launch is rare and its future large; inline it would grow every invocation's future.
        if attempts > LAUNCH_ATTEMPTS || !Box::pin(lazy_launch(state, installation)).await {
            return Err(InvocationError::NoRuntime);
        }
    };
    Ok(PluginRuntime { lease, tenant_id: installation.tenant_id.clone(), plugin_id: installation.plugin_id.clone() })
}

/// Lazy launches one invocation may trigger before giving up.
const LAUNCH_ATTEMPTS: u32 = 3;

/// Opens a session for `installation`: [`find_runtime`] then [`PluginRuntime::start`].
pub async fn invoke(state: &AppState, installation: &Installation, invocation: Invocation) -> Result<SessionStream, InvocationError> {
    find_runtime(state, installation).await?.start(state, invocation).await
}

impl PluginRuntime {
    /// Waits for the runtime's connection (a restarting local plugin gets [`RESTART_WAIT`]) and starts
    /// the session.
    pub async fn start(self, state: &AppState, invocation: Invocation) -> Result<SessionStream, InvocationError> {
        let plugin = self.lease.plugin().clone();
        let connection = match plugin.process.connection(RESTART_WAIT).await {
            Ok(connection) => connection,
            Err(reason) => {
                tracing::warn!(plugin = %plugin.identifier, %reason, "plugin runtime unavailable");
                return Err(InvocationError::Unavailable(reason));
            }
        };
        let request = SessionRequest {
            tenant_id: self.tenant_id,
            user_id: invocation.user_id,
            plugin_id: self.plugin_id,
            access_type: invocation.access_type,
            action: invocation.action,
            payload: invocation.payload,
            invocation: invocation.context,
            permissions: plugin.permissions.clone(),
            trace: crate::trace::current(),
        };
        let timeout = state.runtime.config().max_execution_timeout;
        let session = start_tracked_session(connection, request, state.backwards.clone(), timeout, &state.shutdown).await?;
        // The session is registered on the connection now; it keeps the runtime busy from here.
        drop(self.lease);
        Ok(session)
    }
}

/// Starts launching `installation`'s plugin on this node in the background (a node that placement
/// just chose, while another node still serves the requests). Returns at once.
pub fn warm_up(state: &AppState, installation: &Installation) {
    let (state, installation) = (state.clone(), installation.clone());
    let tracker = state.shutdown.clone();
    tracker.spawn(async move {
        let warmed = lazy_launch(&state, &installation).await;
        tracing::info!(plugin = %installation.plugin_unique_identifier, warmed, "background launch for placement finished");
        state.cluster.warmed(installation.plugin_unique_identifier.as_str());
    });
}

/// Launches an installed plugin that is not running on this node; false when it cannot be.
async fn lazy_launch(state: &AppState, installation: &Installation) -> bool {
    if !installation.runtime_type.is_some_and(|kind| kind.is_launchable()) {
        return false;
    }
    let Some(declaration) = installation.declaration.clone() else { return false };
    let uid = installation.plugin_unique_identifier.clone();
    let launch = {
        let state = state.clone();
        let uid = uid.clone();
        state.shutdown.clone().spawn(async move {
            let label = uid.to_string();
            let log = move |line: String| {
                let label = label.clone();
                async move { tracing::info!(plugin = %label, "{line}") }
            };
            match launch_stored_package(&state, &uid, &declaration, None, log).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(plugin = %uid, %error, "launching an installed plugin failed");
                    false
                }
            }
        })
    };
    matches!(tokio::time::timeout(LAZY_LAUNCH_WAIT, launch).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_are_the_envelope_messages() {
        // Dispatch and the endpoint proxy put these texts into their envelopes unchanged.
        assert_eq!(InvocationError::NoRuntime.to_string(), "failed to get plugin runtime");
        assert_eq!(InvocationError::Unavailable(UnavailableError::NotRunning).to_string(), "failed to get plugin runtime");
        let start = InvocationError::from(SessionStartError::Write("plugin connection is closed".into()));
        assert_eq!(start.to_string(), "failed to write the request to the plugin: plugin connection is closed");
    }
}
