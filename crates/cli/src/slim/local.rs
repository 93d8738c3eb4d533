//! slim's local mode: the plugin's directory `<local.folder>/<identifier with ':' as '-'>` (fetched
//! from the marketplace and extracted there when it has no manifest yet), its environment built and
//! its process started with the daemon's runtime code (`prepare_environment`, `LocalPlugin`, the
//! session layer), one invocation, then the process stopped. The plugin's stream items are printed as
//! `chunk` events, its end as `done`, its error as an `error` event (exit status 0, as upstream);
//! backwards calls get `dify plugin run`'s canned answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dify_daemon::runtime::{self as daemon_runtime, LaunchSpec, LocalPlugin, RuntimeConfig};
use dify_daemon::session::{start_session, SessionOutput, SessionRequest};
use dify_protocol::message::InvocationContext;
use dify_protocol::PluginDeclaration;
use serde_json::Value;

use super::{lookup_route, ErrorCode, InvokeContext, LocalConfig, OutputWriter, SlimError};
use crate::commands::plugin::run::mock::MockBackwards;

/// Upstream's marketplace download timeout.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest package accepted from the marketplace (15 MiB).
const MAX_DOWNLOAD_BYTES: usize = 15 * 1024 * 1024;
/// How long the invocation waits for the freshly started plugin's connection.
const CONNECTION_WAIT: Duration = Duration::from_secs(30);

/// The runtime settings of a local run: slim's own settings, nothing from the daemon's variables.
pub fn runtime_config(local: &LocalConfig) -> RuntimeConfig {
    // uv's own cache (UV_CACHE_DIR, else the user's cache), so every run reuses downloaded wheels.
    let uv_cache_path = std::env::var_os("UV_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(|d| PathBuf::from(d).join("uv")))
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("uv")));
    RuntimeConfig {
        working_path: PathBuf::from(&local.folder),
        python_interpreter_path: Some(PathBuf::from(&local.python_path)),
        uv_path: (!local.uv_path.is_empty()).then(|| PathBuf::from(&local.uv_path)),
        env_init_timeout: Duration::from_secs(local.python_env_init_timeout),
        max_execution_timeout: Duration::from_secs(local.max_execution_timeout),
        pip_mirror_url: (!local.pip_mirror_url.is_empty()).then(|| local.pip_mirror_url.clone()),
        pip_extra_args: local.pip_extra_args.split_whitespace().map(str::to_owned).collect(),
        ignore_uv_lock: local.ignore_uv_lock,
        uv_cache_path,
        ..RuntimeConfig::default()
    }
}

/// The declaration of a plugin directory (packaged in memory, as `dify plugin run` reads one).
pub fn read_plugin_dir(dir: &Path) -> Result<dify_package::Package, String> {
    if !dir.join("manifest.yaml").is_file() {
        return Err(format!("{} has no manifest.yaml", dir.display()));
    }
    let bytes = dify_package::write::package_dir(dir).map_err(|e| e.to_string())?;
    dify_package::Package::from_bytes(bytes, &dify_package::DecodeLimits::default()).map_err(|e| e.to_string())
}

/// Fetches `unique_identifier` from the marketplace.
pub async fn download(marketplace_url: &str, plugin_id: &str) -> Result<Vec<u8>, SlimError> {
    let url = format!("{}/api/v1/plugins/download", marketplace_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(|e| SlimError::new(ErrorCode::PluginDownload, e.to_string()))?;
    let response = client.get(url).query(&[("unique_identifier", plugin_id)]).send().await.map_err(|e| {
        if e.is_timeout() {
            SlimError::new(
                ErrorCode::PluginDownloadTimeout,
                format!("marketplace download timed out after {}s for {plugin_id}", DOWNLOAD_TIMEOUT.as_secs()),
            )
        } else {
            SlimError::new(ErrorCode::PluginDownload, format!("marketplace request failed: {e}"))
        }
    })?;
    let status = response.status().as_u16();
    if status == 404 {
        return Err(SlimError::new(ErrorCode::PluginNotFound, format!("plugin {plugin_id} not found in marketplace ({marketplace_url})")));
    }
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(1024).collect();
        return Err(SlimError::new(ErrorCode::PluginDownload, format!("marketplace returned status {status} for {plugin_id}: {body}")));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SlimError::new(ErrorCode::PluginDownload, format!("read response body: {e}")))?;
    if bytes.len() > MAX_DOWNLOAD_BYTES {
        return Err(SlimError::new(ErrorCode::PluginPackageTooLarge, format!("plugin package {plugin_id} exceeds 15 MiB size limit")));
    }
    Ok(bytes.to_vec())
}

/// Downloads the package and extracts it into `working_path`.
pub async fn download_and_extract(local: &LocalConfig, plugin_id: &str, working_path: &Path) -> Result<dify_package::Package, SlimError> {
    let bytes = download(&local.marketplace_url, plugin_id).await?;
    dify_package::Package::from_bytes(bytes.clone(), &dify_package::DecodeLimits::default())
        .map_err(|e| SlimError::new(ErrorCode::PluginPackageInvalid, format!("invalid plugin package: {e}")))?;
    std::fs::create_dir_all(working_path).map_err(|e| SlimError::new(ErrorCode::PluginExtract, format!("create working dir: {e}")))?;
    if let Err(error) = daemon_runtime::extract_package(&bytes, working_path).await {
        let _ = std::fs::remove_dir_all(working_path);
        return Err(SlimError::new(ErrorCode::PluginExtract, format!("extract package: {error}")));
    }
    read_plugin_dir(working_path).map_err(|e| {
        let _ = std::fs::remove_dir_all(working_path);
        SlimError::new(ErrorCode::PluginExtract, format!("load extracted plugin: {e}"))
    })
}

fn io(error: std::io::Error) -> SlimError {
    SlimError::new(ErrorCode::StreamRead, error.to_string())
}

/// Runs the invocation locally and prints its events.
pub async fn run_local(context: &InvokeContext, local: &LocalConfig, out: &mut OutputWriter) -> Result<(), SlimError> {
    let working_path = local.working_path(&context.plugin_id);
    let package = match read_plugin_dir(&working_path) {
        Ok(package) => package,
        Err(_) => {
            out.message("download", &format!("downloading plugin {} from marketplace", context.plugin_id)).map_err(io)?;
            let package = download_and_extract(local, &context.plugin_id, &working_path).await?;
            out.message("download", "plugin downloaded and extracted").map_err(io)?;
            package
        }
    };
    let declaration: PluginDeclaration = package.declaration().clone();
    let runner = &declaration.meta.runner;
    if !runner.language.is_empty() && runner.language != "python" {
        return Err(SlimError::new(ErrorCode::PluginInit, format!("build runtime: unsupported language `{}`", runner.language)));
    }
    let entrypoint = if runner.entrypoint.is_empty() { "main".to_string() } else { runner.entrypoint.clone() };
    let config = Arc::new(runtime_config(local));

    out.message("init", "initializing python environment").map_err(io)?;
    std::fs::create_dir_all(working_path.join("_assets"))
        .map_err(|e| SlimError::new(ErrorCode::PluginInit, format!("init python env: {e}")))?;
    let (progress, mut progress_lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let drain = tokio::spawn(async move { while progress_lines.recv().await.is_some() {} });
    let python = daemon_runtime::prepare_environment(&working_path, &config, &progress)
        .await
        .map_err(|e| SlimError::new(ErrorCode::PluginInit, format!("init python env: {e}")))?;
    drop(progress);
    let _ = drain.await;
    out.message("init", "python environment ready").map_err(io)?;

    let route = lookup_route(&context.action).ok_or_else(|| SlimError::new(ErrorCode::UnknownAction, context.action.clone()))?;
    let Value::Object(payload) = context.data.clone() else {
        return Err(SlimError::new(ErrorCode::InvalidArgsJson, "data must be a JSON object"));
    };

    let spec = LaunchSpec {
        identifier: context.plugin_id.clone(),
        working_dir: working_path.clone(),
        python,
        entrypoint,
        extra_env: Vec::new(),
        memory_limit: u64::try_from(declaration.resource.memory).ok().filter(|m| *m > 0),
        logs: None,
    };
    let plugin = LocalPlugin::start(spec, config.clone())
        .await
        .map_err(|e| SlimError::new(ErrorCode::PluginExec, format!("start subprocess: {e}")))?;
    let result = invoke_once(context, route.access_type, payload, &declaration, &plugin, &config, out).await;
    plugin.stop().await;
    result
}

async fn invoke_once(
    context: &InvokeContext,
    access_type: dify_protocol::access::AccessType,
    payload: serde_json::Map<String, Value>,
    declaration: &PluginDeclaration,
    plugin: &Arc<LocalPlugin>,
    config: &Arc<RuntimeConfig>,
    out: &mut OutputWriter,
) -> Result<(), SlimError> {
    let connection = plugin.connection(CONNECTION_WAIT).await.map_err(|e| SlimError::new(ErrorCode::PluginExec, e.to_string()))?;
    let request = SessionRequest {
        tenant_id: context.tenant_id.clone(),
        user_id: context.user_id.clone(),
        plugin_id: format!("{}/{}", declaration.author, declaration.name),
        access_type,
        action: context.action.clone(),
        payload: payload.into(),
        invocation: InvocationContext::default(),
        permissions: declaration.permissions(),
        trace: None,
    };
    let backwards = Arc::new(MockBackwards::new(config));
    let mut stream = start_session(connection, request, backwards, config.max_execution_timeout)
        .await
        .map_err(|e| SlimError::new(ErrorCode::PluginExec, format!("write stdin: {e}")))?;
    while let Some(item) = stream.next().await {
        match item {
            SessionOutput::Chunk(item) => out.chunk(item.to_value()).map_err(io)?,
            SessionOutput::Failed(error) => {
                out.error(ErrorCode::PluginExec, &error.to_sorted_json()).map_err(io)?;
                return Ok(());
            }
            SessionOutput::TimedOut => return Err(SlimError::new(ErrorCode::PluginExec, "execution timeout")),
        }
    }
    out.done().map_err(io)?;
    Ok(())
}
