//! Settings of the local plugin runtime, taken from the daemon's one settings table.
//!
//! Every variable is declared (name, default, doc line) in [`crate::config`]'s `settings!` table;
//! [`RuntimeConfig::from_settings`] only turns those typed values into what the runtime uses
//! (durations, paths, the legacy buffer-size rule). This module reads no variable of its own and never
//! touches the file system or starts anything.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, Settings};

/// Settings of plugin environments, plugin processes, sessions and backwards invocations. Each field
/// names the variable it comes from; defaults and meanings are documented once, in the settings table.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `PLUGIN_WORKING_PATH`.
    pub working_path: PathBuf,
    /// `UV_PATH`; `None` = found through the interpreter's `uv` module, then on `PATH`.
    pub uv_path: Option<PathBuf>,
    /// `PYTHON_INTERPRETER_PATH`; `None` = discovered (see `environment::Toolchain::discover`).
    pub python_interpreter_path: Option<PathBuf>,
    /// `UV_CACHE_DIR`; `None` = `<working_path>/.uv-cache` (see [`RuntimeConfig::uv_cache_dir`]).
    pub uv_cache_path: Option<PathBuf>,
    /// `PIP_MIRROR_URL`.
    pub pip_mirror_url: Option<String>,
    /// `PIP_EXTRA_ARGS`, split on whitespace.
    pub pip_extra_args: Vec<String>,
    /// `PIP_VERBOSE`.
    pub pip_verbose: bool,
    /// `PLUGIN_IGNORE_UV_LOCK`.
    pub ignore_uv_lock: bool,
    /// `PYTHON_ENV_INIT_TIMEOUT`: silence limit of a build step, and time to a new plugin's first heartbeat.
    pub env_init_timeout: Duration,
    /// `PLUGIN_ENV_BUILD_TIMEOUT`.
    pub env_build_timeout: Duration,
    /// `PLUGIN_ENV_BUILD_RETRIES`.
    pub env_build_retries: u32,
    /// `PLUGIN_LOCAL_LAUNCHING_CONCURRENT`.
    pub launching_concurrency: usize,
    /// `PLUGIN_MAX_EXECUTION_TIMEOUT`.
    pub max_execution_timeout: Duration,
    /// `PLUGIN_RUNTIME_MAX_BUFFER_SIZE`, or the legacy `PLUGIN_STDIO_MAX_BUFFER_SIZE` when that is not
    /// its old default: the longest plugin output line; a longer line fails only its session.
    pub max_line_bytes: usize,
    /// `PLUGIN_HEARTBEAT_TIMEOUT`.
    pub heartbeat_timeout: Duration,
    /// `PLUGIN_MAX_RESTARTS`.
    pub max_restarts: u32,
    /// `PLUGIN_RESTART_BACKOFF_MS`.
    pub restart_backoff: Duration,
    /// `PLUGIN_IDLE_TIMEOUT`; zero = never stop an idle plugin.
    pub idle_timeout: Duration,
    /// `PLUGIN_SHARED_ENVIRONMENTS` (see `shared_env`).
    pub shared_environments: bool,
    /// `PLUGIN_WHEELS_DIR`: passed to every dependency install as `--find-links`.
    pub wheels_dir: Option<PathBuf>,
    /// `PLUGIN_INSTALL_OFFLINE`: dependency installs run with uv's `--offline`.
    pub offline_install: bool,
    /// `HTTP_PROXY` (or `http_proxy`), passed to uv and plugins.
    pub http_proxy: Option<String>,
    /// `HTTPS_PROXY` (or `https_proxy`), passed to uv and plugins.
    pub https_proxy: Option<String>,
    /// `NO_PROXY` (or `no_proxy`), passed to uv and plugins.
    pub no_proxy: Option<String>,
    /// `DIFY_INNER_API_URL`.
    pub dify_inner_api_url: String,
    /// `DIFY_INNER_API_KEY` (empty when unset).
    pub dify_inner_api_key: String,
    /// `DIFY_BACKWARDS_INVOCATION_WRITE_TIMEOUT`.
    pub backwards_write_timeout: Duration,
    /// `DIFY_BACKWARDS_INVOCATION_READ_TIMEOUT`.
    pub backwards_read_timeout: Duration,
    /// `RESPONSE_MAX_BUFFER_SIZE`.
    pub response_max_buffer_size: usize,
    /// `PERSISTENCE_STORAGE_MAX_SIZE`.
    pub persistence_storage_max_size: u64,
    /// `PLUGIN_SANDBOX*`: isolation of plugin processes, shared by every clone of this configuration.
    pub sandbox: std::sync::Arc<super::sandbox::Sandbox>,
    /// `PLUGIN_LOG_RING_SIZE`: lines kept per plugin (see `runtime::logs`).
    pub log_ring_size: usize,
    /// `PLUGIN_FORK_START*`: pre-started interpreters that fork plugins, shared by every clone.
    pub zygotes: std::sync::Arc<super::zygote::ZygotePool>,
}

impl Default for RuntimeConfig {
    /// Every runtime setting at the default of the settings table.
    fn default() -> Self {
        Self::from_settings(&Settings::default())
    }
}

impl RuntimeConfig {
    /// The runtime part of the daemon's parsed settings. A zero timeout, concurrency or line limit
    /// means "the default", as upstream treats zero values.
    pub fn from_settings(settings: &Settings) -> Self {
        let defaults = Settings::default();
        let nonzero = |value: u64, default: u64| if value == 0 { default } else { value };
        let secs = |value: u64, default: u64| Duration::from_secs(nonzero(value, default));
        let path = |value: &Option<String>| value.as_ref().map(PathBuf::from);
        // The legacy name wins when set to something other than its old default, as upstream does.
        let max_line_bytes = if settings.plugin_stdio_max_buffer_size != defaults.plugin_stdio_max_buffer_size
            && settings.plugin_stdio_max_buffer_size > 0
        {
            settings.plugin_stdio_max_buffer_size
        } else if settings.plugin_runtime_max_buffer_size > 0 {
            settings.plugin_runtime_max_buffer_size
        } else {
            defaults.plugin_runtime_max_buffer_size
        };
        Self {
            working_path: PathBuf::from(&settings.plugin_working_path),
            uv_path: path(&settings.uv_path),
            python_interpreter_path: path(&settings.python_interpreter_path),
            uv_cache_path: path(&settings.uv_cache_dir),
            pip_mirror_url: settings.pip_mirror_url.clone(),
            pip_extra_args: settings
                .pip_extra_args
                .as_deref()
                .map(|args| args.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            pip_verbose: settings.pip_verbose,
            ignore_uv_lock: settings.plugin_ignore_uv_lock,
            env_init_timeout: secs(settings.python_env_init_timeout, defaults.python_env_init_timeout),
            env_build_timeout: secs(settings.plugin_env_build_timeout, defaults.plugin_env_build_timeout),
            env_build_retries: settings.plugin_env_build_retries,
            launching_concurrency: if settings.plugin_local_launching_concurrent == 0 {
                defaults.plugin_local_launching_concurrent
            } else {
                settings.plugin_local_launching_concurrent
            },
            max_execution_timeout: secs(settings.plugin_max_execution_timeout, defaults.plugin_max_execution_timeout),
            max_line_bytes,
            heartbeat_timeout: secs(settings.plugin_heartbeat_timeout, defaults.plugin_heartbeat_timeout),
            max_restarts: settings.plugin_max_restarts,
            restart_backoff: Duration::from_millis(settings.plugin_restart_backoff_ms),
            idle_timeout: Duration::from_secs(settings.plugin_idle_timeout),
            shared_environments: settings.plugin_shared_environments,
            wheels_dir: path(&settings.plugin_wheels_dir),
            offline_install: settings.plugin_install_offline,
            http_proxy: settings.http_proxy.clone(),
            https_proxy: settings.https_proxy.clone(),
            no_proxy: settings.no_proxy.clone(),
            dify_inner_api_url: settings.dify_inner_api_url.clone(),
            dify_inner_api_key: settings.dify_inner_api_key.clone().unwrap_or_default(),
            backwards_write_timeout: Duration::from_millis(settings.dify_backwards_invocation_write_timeout),
            backwards_read_timeout: Duration::from_millis(settings.dify_backwards_invocation_read_timeout),
            response_max_buffer_size: settings.response_max_buffer_size,
            persistence_storage_max_size: settings.persistence_storage_max_size,
            sandbox: super::sandbox::Sandbox::new(super::sandbox::SandboxSettings::from_settings(settings)),
            log_ring_size: settings.plugin_log_ring_size,
            zygotes: super::zygote::ZygotePool::new(settings.plugin_fork_start, settings.plugin_fork_start_zygotes),
        }
    }

    /// Reads the process environment (no `.env` file) through the settings table. A value that does not
    /// parse is logged and replaced by its default; use [`RuntimeConfig::try_from_env`] to refuse it.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`RuntimeConfig::from_env`], but a value that does not parse is an error naming the variable.
    pub fn try_from_env() -> Result<Self, ConfigError> {
        Settings::from_lookup(&|name| std::env::var(name).ok()).map(|settings| Self::from_settings(&settings))
    }

    /// Reads the settings table through `lookup` (testable without the process environment); values
    /// that do not parse are logged and keep their default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let (settings, invalid) = Settings::from_lookup_lenient(&lookup);
        for error in invalid {
            tracing::warn!(%error, "ignoring an invalid runtime setting; using its default");
        }
        Self::from_settings(&settings)
    }

    /// The uv cache shared by every plugin build.
    pub fn uv_cache_dir(&self) -> PathBuf {
        self.uv_cache_path.clone().unwrap_or_else(|| self.working_path.join(".uv-cache"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn defaults_come_from_the_settings_table() {
        let documented = |name: &str| crate::config::SETTINGS.iter().find(|s| s.name == name).map(|s| s.default).unwrap();
        let defaults = RuntimeConfig::default();
        assert_eq!(documented("PLUGIN_MAX_EXECUTION_TIMEOUT"), defaults.max_execution_timeout.as_secs().to_string());
        assert_eq!(documented("PYTHON_ENV_INIT_TIMEOUT"), defaults.env_init_timeout.as_secs().to_string());
        assert_eq!(documented("PLUGIN_RUNTIME_MAX_BUFFER_SIZE"), defaults.max_line_bytes.to_string());
        assert_eq!(documented("PLUGIN_HEARTBEAT_TIMEOUT"), defaults.heartbeat_timeout.as_secs().to_string());
        assert_eq!(documented("PLUGIN_MAX_RESTARTS"), defaults.max_restarts.to_string());
        assert_eq!(documented("PLUGIN_LOCAL_LAUNCHING_CONCURRENT"), defaults.launching_concurrency.to_string());
        assert_eq!(documented("PLUGIN_RESTART_BACKOFF_MS"), defaults.restart_backoff.as_millis().to_string());
        assert_eq!(documented("DIFY_INNER_API_URL"), defaults.dify_inner_api_url);
        assert_eq!(documented("RESPONSE_MAX_BUFFER_SIZE"), defaults.response_max_buffer_size.to_string());
        assert_eq!(documented("PERSISTENCE_STORAGE_MAX_SIZE"), defaults.persistence_storage_max_size.to_string());
        assert_eq!(defaults.working_path, PathBuf::from(documented("PLUGIN_WORKING_PATH")));
        assert_eq!(defaults.python_interpreter_path, None);
        assert_eq!(defaults.uv_cache_dir(), PathBuf::from("cwd/.uv-cache"));
    }

    #[test]
    fn daemon_settings_and_runtime_agree() {
        let mut map = HashMap::new();
        map.insert("PLUGIN_WORKING_PATH".to_string(), "/srv/plugins".to_string());
        map.insert("PYTHON_INTERPRETER_PATH".to_string(), "/opt/py/bin/python3.12".to_string());
        map.insert("DIFY_INNER_API_KEY".to_string(), "inner".to_string());
        map.insert("PLUGIN_MAX_EXECUTION_TIMEOUT".to_string(), "42".to_string());
        map.insert("UV_CACHE_DIR".to_string(), "/var/cache/uv".to_string());
        let settings = Settings::from_map(&map).unwrap();
        let config = RuntimeConfig::from_settings(&settings);
        assert_eq!(config.working_path, PathBuf::from("/srv/plugins"));
        assert_eq!(config.python_interpreter_path, Some(PathBuf::from("/opt/py/bin/python3.12")));
        assert_eq!(config.dify_inner_api_key, "inner");
        assert_eq!(config.max_execution_timeout, Duration::from_secs(42));
        assert_eq!(config.uv_cache_dir(), PathBuf::from("/var/cache/uv"));
        let from_lookup = RuntimeConfig::from_lookup(|name| map.get(name).cloned());
        assert_eq!(format!("{from_lookup:?}"), format!("{config:?}"));
    }

    #[test]
    fn each_variable_is_read_once() {
        let reads = Mutex::new(HashMap::<String, usize>::new());
        let _ = RuntimeConfig::from_lookup(|name| {
            *reads.lock().unwrap().entry(name.to_string()).or_default() += 1;
            None
        });
        let reads = reads.into_inner().unwrap();
        for name in ["PLUGIN_WORKING_PATH", "PYTHON_INTERPRETER_PATH", "PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "DIFY_INNER_API_URL", "HTTP_PROXY"]
        {
            assert_eq!(reads.get(name), Some(&1), "{name}");
        }
        assert!(reads.values().all(|count| *count == 1), "{reads:?}");
        assert_eq!(reads.len(), crate::config::SETTINGS.iter().map(|s| 1 + s.fallbacks.len()).sum::<usize>());
    }

    #[test]
    fn overrides_zero_values_and_bad_values() {
        let defaults = RuntimeConfig::from_lookup(|_| None);
        assert_eq!(defaults.launching_concurrency, 2);
        assert_eq!(defaults.max_execution_timeout, Duration::from_secs(600));
        assert_eq!(defaults.env_init_timeout, Duration::from_secs(120));
        let custom = RuntimeConfig::from_lookup(|name| match name {
            "PLUGIN_MAX_EXECUTION_TIMEOUT" => Some("5".into()),
            "PYTHON_ENV_INIT_TIMEOUT" => Some("0".into()),
            "PIP_EXTRA_ARGS" => Some(" --a  --b ".into()),
            "PLUGIN_IGNORE_UV_LOCK" => Some("true".into()),
            "PLUGIN_LOCAL_LAUNCHING_CONCURRENT" => Some("zero".into()),
            "https_proxy" => Some("http://proxy".into()),
            "PLUGIN_RUNTIME_MAX_BUFFER_SIZE" => Some("1000".into()),
            "PLUGIN_STDIO_MAX_BUFFER_SIZE" => Some("5242880".into()),
            _ => None,
        });
        assert_eq!(custom.max_execution_timeout, Duration::from_secs(5));
        assert_eq!(custom.env_init_timeout, Duration::from_secs(120));
        assert_eq!(custom.pip_extra_args, vec!["--a", "--b"]);
        assert!(custom.ignore_uv_lock);
        assert_eq!(custom.launching_concurrency, 2);
        assert_eq!(custom.https_proxy.as_deref(), Some("http://proxy"));
        assert_eq!(custom.max_line_bytes, 1000);
        let legacy = RuntimeConfig::from_lookup(|name| (name == "PLUGIN_STDIO_MAX_BUFFER_SIZE").then(|| "2048".to_string()));
        assert_eq!(legacy.max_line_bytes, 2048);
    }

    #[test]
    fn strict_reading_names_the_bad_variable() {
        let strict = Settings::from_lookup(&|name| (name == "PLUGIN_MAX_RESTARTS").then(|| "many".to_string()));
        let error = strict.map(|s| RuntimeConfig::from_settings(&s)).unwrap_err().to_string();
        assert!(error.contains("PLUGIN_MAX_RESTARTS") && error.contains("many"), "{error}");
    }
}
