//! Installing, upgrading and uninstalling plugins for a tenant, through install tasks.
//!
//! An install job: mark the entry `running`, launch the stored package
//! ([`launch_stored_package`], whose progress lines become the entry's message), then commit the
//! installation rows in one transaction and mark the entry `success`. A crash at any point leaves
//! either no installation or a complete one; the task is failed by the next start-up or by the
//! stale-task sweeper. Reference counts live in the `plugins` rows: a runtime stops when the last
//! installation of its version goes away. Jobs run on tasks tracked by the shutdown handle and give
//! up when it is cancelled (the task is then failed by the shutdown sequence).

use std::time::{Duration, Instant};

use dify_protocol::api::PluginInstallTaskStartResponse;
use dify_protocol::{DaemonError, PluginDeclaration, PluginUniqueIdentifier};
use serde_json::{json, Value};

use super::launch::{launch_stored_package, LaunchStoredError};
use super::packages::declaration_for_install;
use super::state::{AppState, SHUTDOWN_TASK_MESSAGE, TASK_LEASE_SECS};
use super::{parse_identifier, ServiceResult};
use crate::config::Platform;
use crate::store::{
    task_status, InstallOutcome, InstallationUpgrade, NewInstallation, ProviderKind, RuntimeType, StoreError, TaskPluginEntry,
};

/// Why an install job failed; the text becomes the task entry's message.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Launch(#[from] LaunchStoredError),
    /// The launch outlived `PLUGIN_INSTALL_TIMEOUT` (minutes).
    #[error("plugin install timed out after {0} minutes")]
    TimedOut(u64),
    /// The daemon is stopping; the job ended before committing.
    #[error("{SHUTDOWN_TASK_MESSAGE}")]
    ShuttingDown,
    /// An upgrade found no installation of the original version.
    #[error("plugin installation not found for this tenant")]
    InstallationMissing,
}

/// Largest number of identifiers in one install request.
pub const MAX_IDENTIFIERS_PER_INSTALL: usize = 64;

/// Provider rows a declaration implies: `(kind, provider name)`.
pub fn providers_of(declaration: &Value) -> Vec<(ProviderKind, String)> {
    ProviderKind::ALL
        .into_iter()
        .filter_map(|kind| kind.provider_name(declaration).map(|name| (kind, name)))
        .collect()
}

fn runtime_type_of(state: &AppState, uid: &PluginUniqueIdentifier) -> RuntimeType {
    if uid.is_remote() {
        RuntimeType::Remote
    } else if state.settings.platform() == Platform::Serverless {
        RuntimeType::Serverless
    } else {
        RuntimeType::Local
    }
}

/// Runs an install job on a task tracked by the shutdown handle once a job slot is free; a job still
/// waiting for its slot when the daemon stops never starts.
fn spawn_job<F>(state: &AppState, job: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = state.job_slots.clone();
    let shutdown = state.shutdown.clone();
    state.shutdown.spawn(async move {
        let slot = tokio::select! {
            slot = slots.acquire_owned() => slot,
            _ = shutdown.cancelled() => return,
        };
        let Ok(_slot) = slot else { return };
        job.await;
    });
}

fn empty_labels() -> Value {
    json!({"en_US": "", "zh_Hans": "", "ja_JP": "", "pt_BR": ""})
}

/// `{all_installed, task_id}`.
pub fn install_response(all_installed: bool, task_id: &str) -> PluginInstallTaskStartResponse {
    PluginInstallTaskStartResponse { all_installed, task_id: task_id.to_string() }
}

/// `POST install/identifiers` (identifiers already validated by the HTTP layer).
pub async fn install_from_identifiers(
    state: &AppState,
    tenant_id: &str,
    identifiers: &[String],
    source: &str,
    metas: Vec<Value>,
) -> ServiceResult<PluginInstallTaskStartResponse> {
    if metas.len() != identifiers.len() {
        return Err(DaemonError::bad_request("the number of metas must be equal to the number of plugin unique identifiers"));
    }
    let mut parsed = Vec::with_capacity(identifiers.len());
    for raw in identifiers {
        parsed.push(parse_identifier(raw)?);
    }
    let mut all_installed = true;
    for uid in &parsed {
        if state.db.installation_by_plugin_id(tenant_id, uid.plugin_id()).await?.is_none() {
            all_installed = false;
        }
    }
    if all_installed {
        return Ok(install_response(true, ""));
    }
    let mut jobs = Vec::new();
    let mut entries = Vec::new();
    for (uid, meta) in parsed.into_iter().zip(metas) {
        let declaration = declaration_for_install(state, uid.as_str()).await?;
        let manifest = declaration.to_json_value();
        entries.push(TaskPluginEntry {
            plugin_unique_identifier: uid.to_string(),
            labels: manifest.get("label").cloned().unwrap_or_else(empty_labels),
            icon: manifest.get("icon").and_then(Value::as_str).unwrap_or("").to_string(),
            icon_dark: manifest.get("icon_dark").and_then(Value::as_str).unwrap_or("").to_string(),
            plugin_id: uid.plugin_id().to_string(),
            status: task_status::PENDING.to_string(),
            message: String::new(),
            source: source.to_string(),
        });
        let meta = if meta.is_null() { json!({}) } else { meta };
        jobs.push((uid, declaration, manifest, meta));
    }
    let task_id = state
        .db
        .create_task(tenant_id, &entries, &state.node_id, TASK_LEASE_SECS, state.settings.install_budget_secs() as i64)
        .await?;
    for (uid, declaration, manifest, meta) in jobs {
        let state = state.clone();
        let tenant_id = tenant_id.to_string();
        let task_id = task_id.clone();
        let source = source.to_string();
        spawn_job(&state.clone(), async move {
            let job = InstallJob { state: &state, task_id: &task_id, tenant_id: &tenant_id, uid: &uid, source: &source };
            job.install(&declaration, &manifest, &meta).await;
        });
    }
    Ok(install_response(false, &task_id))
}

/// One plugin of one install task.
struct InstallJob<'a> {
    state: &'a AppState,
    task_id: &'a str,
    tenant_id: &'a str,
    uid: &'a PluginUniqueIdentifier,
    source: &'a str,
}

impl InstallJob<'_> {
    async fn set(&self, status: Option<&str>, message: &str) {
        let retention = self.state.settings.install_task_success_retention as i64;
        if let Err(e) = self.state.db.update_task_entry(self.task_id, self.uid.as_str(), status, message, retention).await {
            tracing::error!(task = self.task_id, error = %e, "cannot update install task");
        }
    }

    async fn install(&self, declaration: &PluginDeclaration, manifest: &Value, meta: &Value) {
        let started = Instant::now();
        let outcome = self.run_install(declaration, manifest, meta).await;
        let status = match &outcome {
            Ok(()) => task_status::SUCCESS,
            Err(_) => task_status::FAILED,
        };
        self.state.metrics.observe_install(self.uid.plugin_id(), status, started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => self.set(Some(task_status::SUCCESS), "installed").await,
            Err(error) => self.set(Some(task_status::FAILED), &error.to_string()).await,
        }
    }

    async fn run_install(&self, declaration: &PluginDeclaration, manifest: &Value, meta: &Value) -> Result<(), JobError> {
        let db = &self.state.db;
        let runtime_type = runtime_type_of(self.state, self.uid);
        let providers = providers_of(manifest);
        let already = db.installation_by_plugin_id(self.tenant_id, self.uid.plugin_id()).await?;
        if already.is_some() {
            return Ok(());
        }
        self.set(Some(task_status::RUNNING), "starting").await;
        self.prepare_runtime(declaration).await?;
        self.commit_delay().await?;
        let installation = NewInstallation {
            tenant_id: self.tenant_id,
            uid: self.uid.as_str(),
            plugin_id: self.uid.plugin_id(),
            runtime_type,
            source: self.source,
            meta,
            providers: &providers,
        };
        match db.install_plugin(&installation).await {
            Ok(InstallOutcome::Installed { .. }) => {
                if runtime_type == RuntimeType::Local {
                    super::mark_installed(self.state, self.uid.as_str()).await;
                }
                Ok(())
            }
            Ok(InstallOutcome::AlreadyInstalled) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Fault-injection pause between preparing and committing (0 outside tests). A daemon stop
    /// (during the pause or before it) ends the job without committing: the shutdown sequence fails
    /// the task.
    async fn commit_delay(&self) -> Result<(), JobError> {
        let ms = self.state.settings.install_commit_delay_ms;
        if ms > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = self.state.shutdown.cancelled() => {}
            }
        }
        if self.state.shutdown.is_cancelled() {
            return Err(JobError::ShuttingDown);
        }
        Ok(())
    }

    /// Runs the runtime's preparation step; its progress lines overwrite the entry's message.
    async fn prepare_runtime(&self, declaration: &PluginDeclaration) -> Result<(), JobError> {
        if self.state.settings.skip_runtime_preparation {
            return Ok(());
        }
        let on_progress = {
            let state = self.state.clone();
            let task_id = self.task_id.to_string();
            let uid = self.uid.to_string();
            let retention = state.settings.install_task_success_retention as i64;
            move |line: String| {
                let (state, task_id, uid) = (state.clone(), task_id.clone(), uid.clone());
                async move {
                    let _ = state.db.update_task_entry(&task_id, &uid, None, &line, retention).await;
                }
            }
        };
        let budget = Duration::from_secs(self.state.settings.plugin_install_timeout.saturating_mul(60).max(1));
        match launch_stored_package(self.state, self.uid, declaration, Some(budget), on_progress).await {
            Ok(()) => Ok(()),
            Err(LaunchStoredError::TimedOut(_)) => Err(JobError::TimedOut(self.state.settings.plugin_install_timeout)),
            Err(error) => Err(error.into()),
        }
    }
}

/// `POST install/upgrade`.
pub async fn upgrade(
    state: &AppState,
    tenant_id: &str,
    original: &str,
    new: &str,
    source: &str,
    meta: Value,
) -> ServiceResult<PluginInstallTaskStartResponse> {
    let original = parse_identifier(original)?;
    let new = parse_identifier(new)?;
    if original == new {
        return Err(DaemonError::bad_request("original and new plugin unique identifier are the same"));
    }
    if original.plugin_id() != new.plugin_id() {
        return Err(DaemonError::bad_request("original and new plugin id are different"));
    }
    let installed = state.db.installation_by_plugin_id(tenant_id, original.plugin_id()).await?;
    if installed.as_ref().map(|i| i.plugin_unique_identifier.as_str()) != Some(original.as_str()) {
        return Err(DaemonError::not_found("plugin installation not found for this tenant"));
    }
    let declaration = declaration_for_install(state, new.as_str()).await?;
    let manifest = declaration.to_json_value();
    let meta = if meta.is_null() { json!({}) } else { meta };
    if state.db.plugin(new.as_str()).await?.is_some() {
        // Some tenant already runs the new version: swap the rows now.
        swap_installation(state, tenant_id, &original, &new, source, &meta, &manifest)
            .await
            .map_err(|e| DaemonError::internal(e.to_string()))?;
        return Ok(install_response(true, ""));
    }
    let entry = TaskPluginEntry {
        plugin_unique_identifier: new.to_string(),
        labels: empty_labels(),
        icon: String::new(),
        icon_dark: String::new(),
        plugin_id: new.plugin_id().to_string(),
        status: task_status::PENDING.to_string(),
        message: String::new(),
        source: source.to_string(),
    };
    let task_id = state
        .db
        .create_task(tenant_id, &[entry], &state.node_id, TASK_LEASE_SECS, state.settings.install_budget_secs() as i64)
        .await?;
    {
        let state = state.clone();
        let tenant_id = tenant_id.to_string();
        let task_id = task_id.clone();
        let source = source.to_string();
        spawn_job(&state.clone(), async move {
            let job = InstallJob { state: &state, task_id: &task_id, tenant_id: &tenant_id, uid: &new, source: &source };
            let started = Instant::now();
            job.set(Some(task_status::RUNNING), "starting").await;
            let result = async {
                job.prepare_runtime(&declaration).await?;
                job.commit_delay().await?;
                swap_installation(&state, &tenant_id, &original, &new, &source, &meta, &manifest).await
            }
            .await;
            let status = if result.is_ok() { task_status::SUCCESS } else { task_status::FAILED };
            state.metrics.observe_install(new.plugin_id(), status, started.elapsed().as_secs_f64());
            match result {
                Ok(()) => job.set(Some(task_status::SUCCESS), "upgraded").await,
                Err(error) => job.set(Some(task_status::FAILED), &error.to_string()).await,
            }
        });
    }
    Ok(install_response(false, &task_id))
}

async fn swap_installation(
    state: &AppState,
    tenant_id: &str,
    original: &PluginUniqueIdentifier,
    new: &PluginUniqueIdentifier,
    source: &str,
    meta: &Value,
    manifest: &Value,
) -> Result<(), JobError> {
    let providers = providers_of(manifest);
    let upgrade = InstallationUpgrade {
        tenant_id,
        original_uid: original.as_str(),
        new_uid: new.as_str(),
        plugin_id: new.plugin_id(),
        runtime_type: runtime_type_of(state, new),
        source,
        meta,
        providers: &providers,
    };
    let released = state.db.upgrade_installation(&upgrade).await?.ok_or(JobError::InstallationMissing)?;
    if upgrade.runtime_type == RuntimeType::Local {
        super::mark_installed(state, new.as_str()).await;
    }
    if released.unreferenced {
        state.runtime.discard(original).await;
        super::mark_uninstalled(state, original.as_str()).await;
    }
    Ok(())
}

/// `POST uninstall`: unknown ids succeed; the runtime stops with the last installation.
pub async fn uninstall(state: &AppState, tenant_id: &str, installation_id: &str) -> ServiceResult<bool> {
    let released = state
        .db
        .uninstall(tenant_id, installation_id)
        .await
        .map_err(|e| DaemonError::internal(format!("failed to uninstall plugin: {e}")))?;
    if let Some(released) = released {
        if released.unreferenced {
            if let Ok(uid) = PluginUniqueIdentifier::parse(&released.plugin_unique_identifier) {
                state.runtime.discard(&uid).await;
            }
            super::mark_uninstalled(state, &released.plugin_unique_identifier).await;
        }
    }
    Ok(true)
}
