//! Install, life-cycle and discovery calls (`/plugin/{tenant}/management/...`), named as Dify's
//! `PluginInstaller` names them.
//!
//! Owns the route, query and body of each call and the checks done before sending. It must not
//! decode envelopes (the transport does) nor wait or print (the CLI does).

use std::time::Duration;

use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use reqwest::header::HeaderMap;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::error::ClientError;
use crate::transport::PluginDaemonClient;
use crate::wire::{
    BatchFetchPluginInstallationsRequest, FetchMissingPluginInstallationsRequest, InstallPluginFromIdentifiersRequest,
    MissingPluginDependency, PluginBundleDependency, PluginDecodeResponse, PluginEntity, PluginInstallTask, PluginInstallTaskStartResponse,
    PluginInstallation, PluginListResponse, PluginReadmeResponse, UninstallPluginRequest, UpgradePluginRequest,
};

/// Where installed plugins come from (`source` of install and upgrade).
pub const INSTALLATION_SOURCES: [&str; 4] = ["marketplace", "github", "package", "remote"];

fn management(tenant_id: &str, route: &str) -> Result<String, ClientError> {
    if tenant_id.is_empty() || tenant_id.contains(['/', '?', '#']) {
        return Err(ClientError::Validation(format!("invalid tenant id `{tenant_id}`")));
    }
    Ok(format!("plugin/{tenant_id}/management/{route}"))
}

fn check_source(source: &str) -> Result<(), ClientError> {
    if INSTALLATION_SOURCES.contains(&source) {
        Ok(())
    } else {
        Err(ClientError::Validation(format!("invalid installation source `{source}`: expected one of {}", INSTALLATION_SOURCES.join(", "))))
    }
}

fn package_form(field: &'static str, bytes: Vec<u8>, verify_signature: bool) -> Result<Form, ClientError> {
    let part = Part::bytes(bytes)
        .file_name(field)
        .mime_str("application/octet-stream")
        .map_err(|err| ClientError::Validation(err.to_string()))?;
    Ok(Form::new().part(field, part).text("verify_signature", if verify_signature { "true" } else { "false" }))
}

/// Parses an identifier; one the daemon would refuse (docs/http.md §A.1) is a validation error,
/// reported before anything is sent.
fn parse_identifier(identifier: &str) -> Result<PluginUniqueIdentifier, ClientError> {
    PluginUniqueIdentifier::parse(identifier)
        .map_err(|err| ClientError::Validation(format!("{err} (expected author/name:version@checksum)")))
}

fn parse_identifiers(identifiers: &[String]) -> Result<Vec<PluginUniqueIdentifier>, ClientError> {
    identifiers.iter().map(|id| parse_identifier(id)).collect()
}

fn pagination(page: u32, page_size: u32) -> Result<Vec<(&'static str, String)>, ClientError> {
    if page == 0 || page_size == 0 || page_size > 256 {
        return Err(ClientError::Validation(format!(
            "invalid page {page} / page size {page_size}: page starts at 1, page size is 1..=256"
        )));
    }
    Ok(vec![("page", page.to_string()), ("page_size", page_size.to_string())])
}

impl PluginDaemonClient {
    /// Uploads a `.difypkg`; returns the decoded manifest and its unique identifier.
    pub async fn upload_pkg(
        &self,
        tenant_id: &str,
        pkg_bytes: Vec<u8>,
        verify_signature: bool,
    ) -> Result<PluginDecodeResponse, ClientError> {
        let path = management(tenant_id, "install/upload/package")?;
        self.post_multipart(&path, package_form("dify_pkg", pkg_bytes, verify_signature)?).await
    }

    /// Uploads a `.difybndl`; returns its dependencies.
    pub async fn upload_bundle(
        &self,
        tenant_id: &str,
        bundle_bytes: Vec<u8>,
        verify_signature: bool,
    ) -> Result<Vec<PluginBundleDependency>, ClientError> {
        let path = management(tenant_id, "install/upload/bundle")?;
        self.post_multipart(&path, package_form("dify_bundle", bundle_bytes, verify_signature)?).await
    }

    /// Starts installing uploaded packages. `metas` must have one entry per identifier.
    pub async fn install_from_identifiers(
        &self,
        tenant_id: &str,
        identifiers: &[String],
        source: &str,
        metas: &[Value],
    ) -> Result<PluginInstallTaskStartResponse, ClientError> {
        if identifiers.is_empty() {
            return Err(ClientError::Validation("at least one plugin unique identifier is required".into()));
        }
        if identifiers.len() != metas.len() {
            return Err(ClientError::Validation(format!(
                "the number of metas ({}) must be equal to the number of plugin unique identifiers ({})",
                metas.len(),
                identifiers.len()
            )));
        }
        check_source(source)?;
        let body = InstallPluginFromIdentifiersRequest {
            plugin_unique_identifiers: parse_identifiers(identifiers)?,
            source: source.to_string(),
            metas: metas.to_vec(),
        };
        let path = management(tenant_id, "install/identifiers")?;
        self.post_json(&path, &body, HeaderMap::new()).await
    }

    pub async fn fetch_plugin_installation_task(&self, tenant_id: &str, task_id: &str) -> Result<PluginInstallTask, ClientError> {
        let path = management(tenant_id, &format!("install/tasks/{}", path_segment(task_id)?))?;
        self.get(&path, &[]).await
    }

    pub async fn fetch_plugin_installation_tasks(
        &self,
        tenant_id: &str,
        page: u32,
        page_size: u32,
    ) -> Result<Vec<PluginInstallTask>, ClientError> {
        let path = management(tenant_id, "install/tasks")?;
        self.get(&path, &pagination(page, page_size)?).await
    }

    pub async fn delete_plugin_installation_task(&self, tenant_id: &str, task_id: &str) -> Result<bool, ClientError> {
        let path = management(tenant_id, &format!("install/tasks/{}/delete", path_segment(task_id)?))?;
        self.post_empty(&path).await
    }

    pub async fn delete_all_plugin_installation_task_items(&self, tenant_id: &str) -> Result<bool, ClientError> {
        let path = management(tenant_id, "install/tasks/delete_all")?;
        self.post_empty(&path).await
    }

    /// Removes one plugin from a task; the identifier goes raw into the path, as Dify sends it.
    pub async fn delete_plugin_installation_task_item(
        &self,
        tenant_id: &str,
        task_id: &str,
        identifier: &str,
    ) -> Result<bool, ClientError> {
        parse_identifier(identifier)?;
        let path = management(tenant_id, &format!("install/tasks/{}/delete/{identifier}", path_segment(task_id)?))?;
        self.post_empty(&path).await
    }

    /// For each identifier: not installed (`current_identifier` empty) or installed in another version.
    pub async fn fetch_missing_dependencies(
        &self,
        tenant_id: &str,
        identifiers: &[String],
    ) -> Result<Vec<MissingPluginDependency>, ClientError> {
        let body = FetchMissingPluginInstallationsRequest { plugin_unique_identifiers: parse_identifiers(identifiers)? };
        let path = management(tenant_id, "installation/missing")?;
        self.post_json(&path, &body, HeaderMap::new()).await
    }

    /// Removes an installation by its id (`installation_id` of [`PluginEntity`]).
    pub async fn uninstall(&self, tenant_id: &str, installation_id: &str) -> Result<bool, ClientError> {
        if installation_id.is_empty() {
            return Err(ClientError::Validation("the plugin installation id is required".into()));
        }
        let path = management(tenant_id, "uninstall")?;
        let body = UninstallPluginRequest { plugin_installation_id: installation_id.to_string() };
        self.post_json(&path, &body, HeaderMap::new()).await
    }

    pub async fn upgrade_plugin(
        &self,
        tenant_id: &str,
        original_plugin_unique_identifier: &str,
        new_plugin_unique_identifier: &str,
        source: &str,
        meta: Value,
    ) -> Result<PluginInstallTaskStartResponse, ClientError> {
        check_source(source)?;
        let body = UpgradePluginRequest {
            original_plugin_unique_identifier: parse_identifier(original_plugin_unique_identifier)?,
            new_plugin_unique_identifier: parse_identifier(new_plugin_unique_identifier)?,
            source: source.to_string(),
            meta,
        };
        let path = management(tenant_id, "install/upgrade")?;
        self.post_json(&path, &body, HeaderMap::new()).await
    }

    pub async fn fetch_plugin_installation_by_ids(
        &self,
        tenant_id: &str,
        plugin_ids: &[String],
    ) -> Result<Vec<PluginInstallation>, ClientError> {
        let path = management(tenant_id, "installation/fetch/batch")?;
        let body = BatchFetchPluginInstallationsRequest { plugin_ids: plugin_ids.to_vec() };
        self.post_json(&path, &body, HeaderMap::new()).await
    }

    /// The first 256 installed plugins of the tenant.
    pub async fn list_plugins(&self, tenant_id: &str) -> Result<Vec<PluginEntity>, ClientError> {
        Ok(self.list_plugins_with_total(tenant_id, 1, 256).await?.list)
    }

    pub async fn list_plugins_with_total(&self, tenant_id: &str, page: u32, page_size: u32) -> Result<PluginListResponse, ClientError> {
        let path = management(tenant_id, "list")?;
        let mut query = pagination(page, page_size)?;
        query.push(("response_type", "paged".to_string()));
        self.get(&path, &query).await
    }

    pub async fn fetch_plugin_manifest(&self, tenant_id: &str, plugin_unique_identifier: &str) -> Result<PluginDeclaration, ClientError> {
        let path = management(tenant_id, "fetch/manifest")?;
        self.get(&path, &[("plugin_unique_identifier", plugin_unique_identifier.to_string())]).await
    }

    pub async fn decode_plugin_from_identifier(
        &self,
        tenant_id: &str,
        plugin_unique_identifier: &str,
    ) -> Result<PluginDecodeResponse, ClientError> {
        let path = management(tenant_id, "decode/from_identifier")?;
        self.get(&path, &[("plugin_unique_identifier", plugin_unique_identifier.to_string())]).await
    }

    /// The readme in `language` (or the daemon's fallback language); an empty string when the
    /// plugin has none.
    pub async fn fetch_plugin_readme(
        &self,
        tenant_id: &str,
        plugin_unique_identifier: &str,
        language: &str,
    ) -> Result<String, ClientError> {
        let path = management(tenant_id, "fetch/readme")?;
        let query = [
            ("tenant_id", tenant_id.to_string()),
            ("plugin_unique_identifier", plugin_unique_identifier.to_string()),
            ("language", language.to_string()),
        ];
        match self.get::<PluginReadmeResponse>(&path, &query).await {
            Ok(readme) => Ok(readme.content),
            Err(ClientError::PluginDaemonNotFoundError { .. }) => Ok(String::new()),
            Err(ClientError::HttpStatus { status: 404, .. }) => Ok(String::new()),
            Err(other) => Err(other),
        }
    }

    /// Whether some tenant has this exact package installed.
    pub async fn fetch_plugin_by_identifier(&self, tenant_id: &str, identifier: &str) -> Result<bool, ClientError> {
        let path = management(tenant_id, "fetch/identifier")?;
        self.get(&path, &[("plugin_unique_identifier", identifier.to_string())]).await
    }

    /// Polls an install task until it is `success` or `failed`, calling `on_update` with each
    /// snapshot. Fails with a validation error after `timeout`.
    pub async fn wait_for_installation_task(
        &self,
        tenant_id: &str,
        task_id: &str,
        poll_interval: Duration,
        timeout: Duration,
        mut on_update: impl FnMut(&PluginInstallTask),
    ) -> Result<PluginInstallTask, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let task = self.fetch_plugin_installation_task(tenant_id, task_id).await?;
            on_update(&task);
            if task.status.is_finished() {
                return Ok(task);
            }
            if tokio::time::Instant::now() + poll_interval > deadline {
                return Err(ClientError::Timeout(format!(
                    "install task {task_id} did not finish within {}s (status {})",
                    timeout.as_secs(),
                    task.status
                )));
            }
            tokio::time::sleep(poll_interval).await;
        }
    }
}

/// A task id goes into the path as one segment.
fn path_segment(value: &str) -> Result<&str, ClientError> {
    if value.is_empty() || value.contains(['/', '?', '#']) {
        return Err(ClientError::Validation(format!("invalid task id `{value}`")));
    }
    Ok(value)
}
