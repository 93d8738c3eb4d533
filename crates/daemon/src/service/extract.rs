//! `GET /v2/invoke/extract`: the schema of a stored plugin version, decoded afresh from its package
//! (upstream's `ExtractPluginSchema`). Unlike `decode/from_identifier` it never answers from the
//! stored declaration: the manifest is the package's own, with default values filled in and
//! `verified` set from the signature check.

use dify_protocol::api::PluginDecodeResponse;
use dify_protocol::{DaemonError, PluginUniqueIdentifier};

use super::codec;
use super::state::AppState;
use super::{package_key, ServiceResult};

/// `{unique_identifier, manifest, verification}` of the stored package; every failure (no package,
/// an undecodable one) is a bad request, as upstream answers it.
pub async fn extract_schema(state: &AppState, uid: &PluginUniqueIdentifier) -> ServiceResult<PluginDecodeResponse> {
    let bytes = state
        .blobs
        .get(&package_key(state, uid.as_str()))
        .await
        .map_err(|e| DaemonError::bad_request(e.to_string()))?
        .ok_or_else(|| DaemonError::bad_request("plugin package not found, please upload it firstly"))?;
    let (decoded, verification) = codec::decode_package(&bytes, state.settings.max_plugin_package_size, &state.extra_public_keys)
        .map_err(|e| DaemonError::bad_request(e.to_string()))?;
    let mut manifest = decoded.declaration;
    manifest.verified = verification.is_some();
    manifest.fill_in_default_values();
    Ok(PluginDecodeResponse { unique_identifier: uid.clone(), manifest, verification })
}
