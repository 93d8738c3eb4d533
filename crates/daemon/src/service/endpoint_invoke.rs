//! The lookups behind the public endpoint proxy `/e/{hook_id}/*path` (docs/http.md §4.7,
//! docs/state.md §3.2): the endpoint row by hook id, the tenant's installation of its plugin,
//! the enabled check, the endpoint settings schema and the decryption of the stored settings through
//! the Dify inner API.
//!
//! Must not: know HTTP (the proxy maps [`EndpointInvokeError`] to statuses) or talk to plugin
//! processes (the proxy starts the session).

use dify_protocol::manifest::ProviderConfig;
use serde_json::{Map, Value};

use super::endpoints::dify_encrypt;
use super::{find_installation, FindInstallationError, Installation};
use crate::service::state::AppState;
use crate::store::{EndpointRecord, StoreError};

/// Why an endpoint cannot be invoked; each variant has its own status and error body upstream.
#[derive(Debug, thiserror::Error)]
pub enum EndpointInvokeError {
    /// No endpoint has this hook id.
    #[error("endpoint not found")]
    UnknownHook,
    /// The plugin of the endpoint is not installed in its tenant (any more).
    #[error("plugin installation not found")]
    InstallationMissing,
    /// The installation's stored identifier is invalid.
    #[error("{0}")]
    BadIdentifier(String),
    /// The endpoint is disabled.
    #[error("endpoint not found")]
    Disabled,
    /// The installed declaration has no endpoint group.
    #[error("plugin not found")]
    NoEndpointDeclaration,
    /// The Dify inner API could not decrypt the stored settings.
    #[error("failed to decrypt settings: {0}")]
    Decrypt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An enabled endpoint and the installation that serves it.
#[derive(Debug, Clone)]
pub struct EndpointTarget {
    pub endpoint: EndpointRecord,
    pub installation: std::sync::Arc<Installation>,
}

impl EndpointTarget {
    /// The endpoint settings schema of the installed declaration.
    pub fn settings_schema(&self) -> Result<&[ProviderConfig], EndpointInvokeError> {
        self.installation
            .declaration
            .as_ref()
            .and_then(|d| d.endpoint.as_ref())
            .map(|group| group.settings.as_slice())
            .ok_or(EndpointInvokeError::NoEndpointDeclaration)
    }
}

/// Finds the endpoint of `hook_id` and its installation; a disabled endpoint is an error, checked
/// after the installation as upstream does.
pub async fn find_endpoint_target(state: &AppState, hook_id: &str) -> Result<EndpointTarget, EndpointInvokeError> {
    let endpoint = state.db.endpoint_by_hook_id(hook_id).await?.ok_or(EndpointInvokeError::UnknownHook)?;
    let installation = match find_installation(state, &endpoint.tenant_id, &endpoint.plugin_id).await {
        Ok(Some(installation)) => installation,
        Ok(None) => return Err(EndpointInvokeError::InstallationMissing),
        Err(FindInstallationError::BadIdentifier(message)) => return Err(EndpointInvokeError::BadIdentifier(message)),
        Err(FindInstallationError::Store(error)) => return Err(EndpointInvokeError::Store(error)),
    };
    if !endpoint.enabled {
        return Err(EndpointInvokeError::Disabled);
    }
    Ok(EndpointTarget { endpoint, installation })
}

/// The endpoint's settings in clear, decrypted by the Dify inner API (one round trip per call, with
/// an empty user id as upstream sends).
pub async fn decrypted_settings(state: &AppState, target: &EndpointTarget) -> Result<Map<String, Value>, EndpointInvokeError> {
    let schema = target.settings_schema()?;
    let stored = serde_json::from_str::<Value>(&target.endpoint.settings)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    dify_encrypt(state, &target.endpoint.tenant_id, "", "decrypt", &target.endpoint.id, &stored, schema)
        .await
        .map_err(EndpointInvokeError::Decrypt)
}
