//! Replacing the function behind a serverless plugin (the admin API's reinstall and switch-endpoint):
//! the new bridge takes the plugin's place in the [`RuntimeManager`](super::RuntimeManager) so the
//! next session goes to the new function; sessions already running finish on the old bridge, which
//! is dropped with its last session. Also putting a known function in place after a restart
//! ([`RuntimeManager::attach_serverless_function`]) and naming the function a plugin runs on.

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

    /// Bridges `function` for `identifier` unless the plugin already runs here; returns whether it
    /// was attached. A launch of the same plugin in progress finishes first.
    pub async fn attach_serverless_function(
        &self,
        identifier: &PluginUniqueIdentifier,
        permissions: PluginPermissions,
        function: FunctionRecord,
    ) -> Result<bool, ReplaceError> {
        let serverless = self.serverless().ok_or(ReplaceError::NotServerless)?.clone();
        let lock = self.launch_lock(identifier.as_str());
        let _guard = lock.lock().await;
        if self.plugin(identifier.as_str()).is_some_and(|p| !p.process.is_down()) {
            return Ok(false);
        }
        let bridged = serverless.attach(identifier.clone(), function);
        let managed = Arc::new(ManagedPlugin {
            identifier: identifier.clone(),
            permissions,
            process: PluginProcess::Serverless(bridged),
            usage: Default::default(),
        });
        self.lock_plugins().insert(identifier.as_str().to_string(), managed);
        Ok(true)
    }

    /// The function a serverless plugin bridged here runs on.
    pub fn serverless_function(&self, identifier: &str) -> Option<FunctionRecord> {
        match &self.plugin(identifier)?.process {
            PluginProcess::Serverless(bridge) => Some(bridge.function.clone()),
            _ => None,
        }
    }
}
