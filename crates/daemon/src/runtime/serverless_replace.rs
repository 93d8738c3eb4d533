//! Replacing the function behind a serverless plugin (the admin API's reinstall and switch-endpoint):
//! the new bridge takes the plugin's place in the [`RuntimeManager`](super::RuntimeManager) so the
//! next session goes to the new function; sessions already running finish on the old bridge, which
//! is dropped with its last session.

use std::sync::Arc;

use dify_protocol::manifest::PluginPermissions;
use dify_protocol::PluginUniqueIdentifier;

use super::serverless::FunctionRecord;
use super::{ManagedPlugin, PluginProcess, RuntimeManager};

/// Why a function could not be put in place.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplaceError {
    /// The daemon does not run on the serverless platform.
    #[error("serverless runtime is not enabled")]
    NotServerless,
}

impl RuntimeManager {
    /// Makes `function` serve `identifier` from the next session on, whether or not the plugin was
    /// bridged here before. A launch of the same plugin in progress finishes first.
    pub async fn replace_serverless_function(
        &self,
        identifier: &PluginUniqueIdentifier,
        permissions: PluginPermissions,
        function: FunctionRecord,
    ) -> Result<(), ReplaceError> {
        let serverless = self.serverless().ok_or(ReplaceError::NotServerless)?.clone();
        let lock = self.launch_lock(identifier.as_str());
        let _guard = lock.lock().await;
        let bridged = serverless.attach(identifier.clone(), function);
        let managed = Arc::new(ManagedPlugin {
            identifier: identifier.clone(),
            permissions,
            process: PluginProcess::Serverless(bridged),
            usage: Default::default(),
        });
        self.lock_plugins().insert(identifier.as_str().to_string(), managed);
        Ok(())
    }
}
