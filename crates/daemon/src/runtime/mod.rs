//! Plugin runtimes: where an installed plugin's process lives and how the daemon talks to it.
//!
//! The service layer calls [`RuntimeManager::launch`] (through its one "launch a stored package"
//! helper) when installing and when an installed plugin is invoked but not running here, and
//! [`RuntimeManager::stop`] when the last installation of a plugin is removed. The invocation service
//! asks the manager for a running runtime by unique identifier ([`RuntimeManager::plugin`]).
//!
//! Layers: `config` (settings) → `environment` (uv builds, plugin env allow-list) → `connection` (line
//! framing and session multiplexing over any byte stream) → `local` (supervised child process) and
//! `debug` (plugins dialing in over TCP, attached with [`RuntimeManager::attach_debug_plugin`]) and
//! `serverless` (functions behind an SRI connector, used by [`RuntimeManager::launch`] once
//! [`RuntimeManager::enable_serverless`] was called for `PLATFORM=serverless`).
//!
//! Architecture invariant: a runtime never sees HTTP requests or database rows; it gets package bytes,
//! a declaration and an identifier.

pub mod config;
pub mod connection;
pub mod debug;
pub mod environment;
pub mod idle;
pub mod local;
pub mod logs;
pub mod sandbox;
pub mod serverless;
pub mod serverless_replace;
pub mod shared_env;
pub mod stats;
pub mod uv_provision;
pub mod zygote;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dify_protocol::manifest::PluginPermissions;
use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use tokio::sync::{mpsc, Mutex, Semaphore};

use crate::store::RuntimeType;

pub use config::RuntimeConfig;
pub use connection::{ConnectionError, ConnectionOptions, PluginConnection, SessionEvent, SessionListener};
pub use debug::RegistryError;
pub use debug::{DebugPlugin, DebugRegistry, DebugServer, DebugServerConfig, RegisteredPlugin};
pub use environment::{plugin_process_environment, prepare_environment, EnvironmentError, Toolchain};
pub use local::{InstanceState, LaunchError, LaunchSpec, LocalPlugin};
pub use serverless::{ServerlessConfig, ServerlessError, ServerlessPlugin, ServerlessRuntime};

/// Why a runtime could not be prepared or reached.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The manager stopped accepting launches (daemon shutdown).
    #[error("runtime manager is shutting down")]
    ShuttingDown,
    /// The package could not be decoded or extracted.
    #[error("invalid plugin package: {0}")]
    Package(#[from] dify_package::PackageError),
    /// The identifier cannot name a working directory.
    #[error("invalid plugin package: identifier `{0}` is not a safe directory name")]
    UnsafeIdentifier(String),
    /// The working directory is the filesystem root.
    #[error("invalid plugin package: working directory has no parent")]
    NoParentDirectory,
    /// The blocking extraction task died.
    #[error("invalid plugin package: extraction task failed: {0}")]
    ExtractionTask(#[from] tokio::task::JoinError),
    #[error("unsupported language `{0}`: only python plugins can run locally")]
    UnsupportedLanguage(String),
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error(transparent)]
    Process(#[from] LaunchError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Serverless(#[from] ServerlessError),
}

/// Why a runtime offers no connection right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnavailableError {
    /// A local plugin was given up (or stopped); the text says why.
    #[error("{0}")]
    Down(String),
    /// A local plugin did not become ready within the wait.
    #[error("plugin is not running")]
    NotRunning,
    /// A debugging plugin's connection is closed.
    #[error("debugging plugin is disconnected")]
    Disconnected,
    /// A serverless plugin's bridge was stopped.
    #[error("serverless plugin {0} is stopped")]
    Stopped(String),
}

/// A plugin running on this node, with what sessions need to know about it.
pub struct ManagedPlugin {
    pub identifier: PluginUniqueIdentifier,
    /// `resource.permission` of the manifest, checked by backwards invocations.
    pub permissions: PluginPermissions,
    pub process: PluginProcess,
    /// Leases and last use, read by the idle sweep (`idle`).
    pub usage: idle::Usage,
}

/// Where a managed plugin runs: a supervised local process or a debugging plugin connected over TCP.
/// Dispatch treats both alike through [`PluginProcess::connection`].
#[derive(Clone)]
pub enum PluginProcess {
    Local(Arc<LocalPlugin>),
    Debug(Arc<DebugPlugin>),
    Serverless(Arc<ServerlessPlugin>),
}

impl PluginProcess {
    /// The connection sessions go to, waiting up to `wait` while a local plugin is (re)starting.
    pub async fn connection(&self, wait: Duration) -> Result<Arc<PluginConnection>, UnavailableError> {
        match self {
            PluginProcess::Local(local) => local.connection(wait).await,
            PluginProcess::Debug(debug) => debug.connection(),
            PluginProcess::Serverless(function) => function.connection(),
        }
    }

    /// Stops the runtime: kills a local process, disconnects a debugging plugin.
    pub async fn stop(&self) {
        match self {
            PluginProcess::Local(local) => local.stop().await,
            PluginProcess::Debug(debug) => debug.stop().await,
            PluginProcess::Serverless(function) => function.stop().await,
        }
    }

    /// True when the runtime is gone for good (given up, stopped or disconnected).
    pub fn is_down(&self) -> bool {
        match self {
            PluginProcess::Local(local) => matches!(local.state(), InstanceState::Down(_)),
            PluginProcess::Debug(debug) => debug.is_closed(),
            PluginProcess::Serverless(function) => function.is_closed(),
        }
    }

    /// How this runtime runs: local, remote (debugging) or serverless.
    pub fn runtime_type(&self) -> RuntimeType {
        match self {
            PluginProcess::Local(_) => RuntimeType::Local,
            PluginProcess::Debug(_) => RuntimeType::Remote,
            PluginProcess::Serverless(_) => RuntimeType::Serverless,
        }
    }

    /// The local process, if this is one.
    pub fn as_local(&self) -> Option<&Arc<LocalPlugin>> {
        match self {
            PluginProcess::Local(local) => Some(local),
            PluginProcess::Debug(_) | PluginProcess::Serverless(_) => None,
        }
    }

    /// Process ids a local plugin spawned (a debugging plugin runs elsewhere: none).
    pub fn spawned_pids(&self) -> Vec<u32> {
        self.as_local().map(|local| local.spawned_pids()).unwrap_or_default()
    }

    /// Restarts of a local plugin (a debugging plugin is never restarted by the daemon: 0).
    pub fn restart_count(&self) -> u32 {
        self.as_local().map(|local| local.restart_count()).unwrap_or(0)
    }
}

/// Owns every plugin runtime of this node.
pub struct RuntimeManager {
    config: Arc<RuntimeConfig>,
    plugins: std::sync::Mutex<HashMap<String, Arc<ManagedPlugin>>>,
    /// One lock per identifier so two launches of the same plugin never build the same directory.
    launch_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Bounds concurrent environment builds and launches (`PLUGIN_LOCAL_LAUNCHING_CONCURRENT`).
    launching: Semaphore,
    /// Extra variables given to every plugin process (tests, `dify plugin run`).
    extra_plugin_env: Vec<(String, String)>,
    /// Where the remote debugging server listens, once it does.
    debug_server_address: std::sync::Mutex<Option<std::net::SocketAddr>>,
    /// Set on `PLATFORM=serverless`: launches go to the serverless connector instead of local processes.
    serverless: std::sync::OnceLock<Arc<ServerlessRuntime>>,
    /// Each plugin's recent stderr, `log` events and process notes.
    logs: Arc<logs::PluginLogs>,
    /// Plugins the idle sweep stopped and nothing launched again since (`idle`).
    idle_stopped: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RuntimeManager {
    /// A manager configured from the process environment ([`RuntimeConfig::from_env`]).
    pub fn new() -> Arc<Self> {
        Self::with_config(RuntimeConfig::from_env())
    }

    pub fn with_config(config: RuntimeConfig) -> Arc<Self> {
        Self::with_plugin_env(config, Vec::new())
    }

    /// Like [`RuntimeManager::with_config`], adding `extra_plugin_env` to every plugin process.
    pub fn with_plugin_env(mut config: RuntimeConfig, extra_plugin_env: Vec<(String, String)>) -> Arc<Self> {
        // Children run in their working directory, so every path handed to them must be absolute.
        if let Ok(absolute) = std::path::absolute(&config.working_path) {
            config.working_path = absolute;
        }
        if let Some(cache) = config.uv_cache_path.as_mut() {
            if let Ok(absolute) = std::path::absolute(&*cache) {
                *cache = absolute;
            }
        }
        let permits = config.launching_concurrency.max(1);
        let logs = Arc::new(logs::PluginLogs::new(config.log_ring_size));
        Arc::new(Self {
            config: Arc::new(config),
            plugins: Default::default(),
            launch_locks: Default::default(),
            launching: Semaphore::new(permits),
            extra_plugin_env,
            debug_server_address: std::sync::Mutex::new(None),
            serverless: std::sync::OnceLock::new(),
            logs,
            idle_stopped: Default::default(),
        })
    }

    /// The log rings of the plugins launched here.
    pub fn logs(&self) -> &Arc<logs::PluginLogs> {
        &self.logs
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Switches launches to the serverless platform (`PLATFORM=serverless`); only the first call counts.
    pub fn enable_serverless(&self, serverless: Arc<ServerlessRuntime>) {
        let _ = self.serverless.set(serverless);
    }

    /// The serverless platform, when enabled.
    pub fn serverless(&self) -> Option<&Arc<ServerlessRuntime>> {
        self.serverless.get()
    }

    /// Prepares the plugin for invocation: extracts the package into its working directory, builds
    /// the Python environment, starts the process and waits for its first heartbeat. Progress lines
    /// (human readable) are sent on `progress`. Returns at once when the plugin already runs.
    pub async fn launch(
        &self,
        identifier: &PluginUniqueIdentifier,
        package: &[u8],
        declaration: &PluginDeclaration,
        progress: mpsc::UnboundedSender<String>,
    ) -> Result<(), RuntimeError> {
        let lock = self.launch_lock(identifier.as_str());
        let _guard = lock.lock().await;
        if self.is_running(identifier.as_str()) {
            return Ok(());
        }
        if let Some(serverless) = self.serverless.get() {
            let function = serverless.launch(identifier, package, declaration, &progress).await?;
            let managed = Arc::new(ManagedPlugin {
                identifier: identifier.clone(),
                permissions: declaration.permissions(),
                process: PluginProcess::Serverless(function),
                usage: Default::default(),
            });
            self.lock_plugins().insert(identifier.as_str().to_string(), managed);
            return Ok(());
        }
        let runner = &declaration.meta.runner;
        if !runner.language.is_empty() && runner.language != "python" {
            return Err(RuntimeError::UnsupportedLanguage(runner.language.clone()));
        }
        let entrypoint = if runner.entrypoint.is_empty() { "main".to_string() } else { runner.entrypoint.clone() };
        let _permit = self.launching.acquire().await.map_err(|_| RuntimeError::ShuttingDown)?;

        let working_dir = self.working_dir(identifier)?;
        let _ = progress.send(format!("extracting plugin package into {}", working_dir.display()));
        extract_package(package, &working_dir).await?;
        std::fs::create_dir_all(working_dir.join("_assets"))?;
        let python = prepare_environment(&working_dir, &self.config, &progress).await?;

        let _ = progress.send("starting plugin process".to_string());
        let spec = LaunchSpec {
            identifier: identifier.as_str().to_string(),
            working_dir,
            python,
            entrypoint,
            extra_env: self.extra_plugin_env.clone(),
            memory_limit: u64::try_from(declaration.resource.memory).ok().filter(|m| *m > 0),
            logs: Some(self.logs.ring(identifier.as_str())),
        };
        let process = match LocalPlugin::start(spec, self.config.clone()).await {
            Ok(process) => process,
            Err(error) => {
                let _ = progress.send(format!("plugin failed to start: {error}"));
                return Err(error.into());
            }
        };
        let _ = progress.send("plugin is running".to_string());
        self.lock_idle_stopped().remove(identifier.as_str());
        let managed = Arc::new(ManagedPlugin {
            identifier: identifier.clone(),
            permissions: declaration.permissions(),
            process: PluginProcess::Local(process),
            usage: Default::default(),
        });
        self.lock_plugins().insert(identifier.as_str().to_string(), managed);
        Ok(())
    }

    /// The running plugin with this identifier, if any.
    pub fn plugin(&self, identifier: &str) -> Option<Arc<ManagedPlugin>> {
        self.lock_plugins().get(identifier).cloned()
    }

    /// Identifiers of every plugin this manager runs.
    pub fn running(&self) -> Vec<String> {
        self.lock_plugins().keys().cloned().collect()
    }

    fn is_running(&self, identifier: &str) -> bool {
        self.plugin(identifier).is_some_and(|p| !p.process.is_down())
    }

    /// Makes a registered debugging plugin reachable under its identifier. Returns the debugging
    /// plugin it replaces (the same identifier registered again by a reconnect), if any.
    pub fn attach_debug_plugin(&self, plugin: Arc<DebugPlugin>) -> Option<Arc<DebugPlugin>> {
        let identifier = plugin.registration.identifier.clone();
        let managed = Arc::new(ManagedPlugin {
            permissions: plugin.registration.declaration.permissions(),
            identifier: identifier.clone(),
            process: PluginProcess::Debug(plugin),
            usage: Default::default(),
        });
        let previous = self.lock_plugins().insert(identifier.as_str().to_string(), managed);
        match previous.map(|p| p.process.clone()) {
            Some(PluginProcess::Debug(previous)) => Some(previous),
            _ => None,
        }
    }

    /// Removes the debugging plugin `identifier` if it is still served by connection
    /// `connection_id`; returns whether it was (only then is its installation to be removed).
    pub fn detach_debug_plugin(&self, identifier: &str, connection_id: u64) -> bool {
        let mut plugins = self.lock_plugins();
        let current = matches!(
            plugins.get(identifier).map(|p| &p.process),
            Some(PluginProcess::Debug(debug)) if debug.connection_id == connection_id
        );
        if current {
            plugins.remove(identifier);
        }
        current
    }

    /// Records where the remote debugging server listens (see [`Self::debug_server_address`]).
    pub fn set_debug_server_address(&self, address: Option<std::net::SocketAddr>) {
        *self.debug_server_address.lock().unwrap_or_else(|p| p.into_inner()) = address;
    }

    /// The bound address of the remote debugging server, when it runs.
    pub fn debug_server_address(&self) -> Option<std::net::SocketAddr> {
        *self.debug_server_address.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the plugin's runtime if one runs (no-op when none does). A launch of the same plugin in
    /// progress finishes first, so an uninstall racing an install never leaves a process behind.
    pub async fn stop(&self, identifier: &PluginUniqueIdentifier) {
        let lock = self.launch_lock(identifier.as_str());
        let _guard = lock.lock().await;
        let removed = self.lock_plugins().remove(identifier.as_str());
        self.lock_idle_stopped().remove(identifier.as_str());
        if let Some(plugin) = removed {
            plugin.process.stop().await;
        }
    }

    /// Stops the plugin's runtime (as [`Self::stop`]) and removes its working directory; shared
    /// environments no plugin links to any more are removed too. For the last installation of a
    /// version going away: a later install extracts and links it again.
    pub async fn discard(&self, identifier: &PluginUniqueIdentifier) {
        {
            let lock = self.launch_lock(identifier.as_str());
            let _guard = lock.lock().await;
            let removed = self.lock_plugins().remove(identifier.as_str());
            self.lock_idle_stopped().remove(identifier.as_str());
            if let Some(plugin) = removed {
                plugin.process.stop().await;
            }
            if let Ok(dir) = self.working_dir(identifier) {
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => tracing::warn!(dir = %dir.display(), %error, "removing an uninstalled plugin's directory failed"),
                }
            }
        }
        if self.config.shared_environments {
            shared_env::collect_unused_environments(&self.config).await;
        }
    }

    /// Stops every runtime; called on daemon shutdown.
    pub async fn shutdown(&self) {
        self.launching.close();
        let all: Vec<_> = self.lock_plugins().drain().map(|(_, p)| p).collect();
        futures::future::join_all(all.iter().map(|p| p.process.stop())).await;
    }

    /// `<PLUGIN_WORKING_PATH>/<author>/<name>-<version>@<checksum>`.
    pub fn working_dir(&self, identifier: &PluginUniqueIdentifier) -> Result<PathBuf, RuntimeError> {
        let relative = identifier.as_str().replace(':', "-");
        let path = Path::new(&relative);
        if path.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(RuntimeError::UnsafeIdentifier(identifier.to_string()));
        }
        Ok(self.config.working_path.join(path))
    }

    fn launch_lock(&self, identifier: &str) -> Arc<Mutex<()>> {
        let mut locks = self.launch_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(identifier.to_string()).or_default().clone()
    }

    fn lock_plugins(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ManagedPlugin>>> {
        self.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long dispatch waits for a restarting plugin before failing the session.
pub const RESTART_WAIT: Duration = Duration::from_secs(20);

/// Extracts a `.difypkg` (zip) into `dir` unless the directory already has content (reused across
/// restarts, as upstream does). Entries that would escape `dir` are rejected.
pub async fn extract_package(package: &[u8], dir: &Path) -> Result<(), RuntimeError> {
    if dir.is_dir() && std::fs::read_dir(dir)?.next().is_some() {
        return Ok(());
    }
    let package = package.to_vec();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || extract_blocking(&package, &dir))
        .await
        .map_err(RuntimeError::ExtractionTask)?
}

fn extract_blocking(package: &[u8], dir: &Path) -> Result<(), RuntimeError> {
    // The package was checked against the configured size limit when it was uploaded; here it is
    // decoded by the same strict reader (paths, symlinks, duplicates, CRCs) and written out by it.
    let limits = dify_package::DecodeLimits::with_max_uncompressed_size(u64::MAX);
    let package = dify_package::Package::from_bytes(package.to_vec(), &limits)?;
    // Extract into a sibling temp dir and rename, so a crash never leaves a half-extracted plugin.
    let parent = dir.parent().ok_or(RuntimeError::NoParentDirectory)?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".extract-{}", uuid::Uuid::new_v4()));
    package.extract_to(&staging)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&staging, dir)?;
    Ok(())
}
