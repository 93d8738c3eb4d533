//! Plugin runtimes: where an installed plugin's process lives and how the daemon talks to it.
//!
//! The install service calls [`RuntimeManager::launch`] after a package and its declaration are stored,
//! and [`RuntimeManager::stop`] when the last installation of a plugin is removed. Dispatch asks the
//! manager for a running runtime by unique identifier.
//!
//! Architecture invariant: a runtime never sees HTTP requests or database rows; it gets package bytes,
//! a declaration and an identifier.

use std::sync::Arc;

use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use tokio::sync::mpsc;

/// Why a runtime could not be prepared or reached.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Launch(String),
}

/// Owns every plugin runtime of this node.
#[derive(Default)]
pub struct RuntimeManager {}

impl RuntimeManager {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Prepares the plugin for invocation. Progress lines (human readable) are sent on `progress`.
    ///
    /// This version has no process runtime yet: it accepts the plugin without building or launching
    /// anything, so an install completes once the package and its rows are stored.
    pub async fn launch(
        &self,
        _identifier: &PluginUniqueIdentifier,
        _package: &[u8],
        _declaration: &PluginDeclaration,
        _progress: mpsc::UnboundedSender<String>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Stops the plugin's runtime if one runs (no-op when none does).
    pub async fn stop(&self, _identifier: &PluginUniqueIdentifier) {}

    /// Stops every runtime; called on daemon shutdown.
    pub async fn shutdown(&self) {}
}
