//! Settings of the local plugin runtime, read from the environment with the upstream variable names.
//!
//! Every field has one variable, one documented default. This module only reads settings; it never
//! touches the file system or starts anything.

use std::path::PathBuf;
use std::time::Duration;

/// Every variable [`RuntimeConfig::from_env`] reads: `(name, default, meaning)`, for generated docs.
pub const RUNTIME_SETTINGS: &[(&str, &str, &str)] = &[
    ("PLUGIN_WORKING_PATH", "cwd", "Root of plugin working directories (extracted packages and their venvs)."),
    ("UV_PATH", "", "The uv binary; found through the interpreter's `uv` module, then PATH, when empty."),
    ("PYTHON_INTERPRETER_PATH", "", "Python >= 3.12 for plugin venvs; python3.13/python3.12 on PATH, then pyenv, when empty."),
    ("UV_CACHE_DIR", "<PLUGIN_WORKING_PATH>/.uv-cache", "uv's package cache shared by every plugin build."),
    ("PIP_MIRROR_URL", "", "Package index passed to uv with -i."),
    ("PIP_EXTRA_ARGS", "", "Extra uv arguments, split on whitespace."),
    ("PIP_VERBOSE", "true", "Pass -v to uv (its output becomes install progress)."),
    ("PLUGIN_IGNORE_UV_LOCK", "false", "Do not pass --frozen to `uv sync` when uv.lock exists."),
    ("PYTHON_ENV_INIT_TIMEOUT", "120", "Seconds a build step may stay silent, and a new plugin may take to send its first heartbeat."),
    ("PLUGIN_ENV_BUILD_TIMEOUT", "600", "Hard limit of one environment build step, seconds."),
    ("PLUGIN_ENV_BUILD_RETRIES", "1", "Retries of a failed environment build."),
    ("PLUGIN_LOCAL_LAUNCHING_CONCURRENT", "2", "Environment builds and launches running at once."),
    ("PLUGIN_MAX_EXECUTION_TIMEOUT", "600", "Longest a session may run, seconds; then `killed by timeout`."),
    ("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "67108864", "Longest plugin output line, bytes; a longer line fails only its session."),
    ("PLUGIN_STDIO_MAX_BUFFER_SIZE", "5242880", "Legacy name of PLUGIN_RUNTIME_MAX_BUFFER_SIZE; wins when not 5242880."),
    ("PLUGIN_HEARTBEAT_TIMEOUT", "120", "A running plugin silent this long (seconds) is killed and restarted."),
    ("PLUGIN_MAX_RESTARTS", "5", "Restarts of a crashing plugin in a row before giving up."),
    ("PLUGIN_RESTART_BACKOFF_MS", "500", "First restart delay, doubled per restart up to 30 s."),
    ("HTTP_PROXY / HTTPS_PROXY / NO_PROXY", "", "Proxies for uv and plugins (lowercase names as fallback)."),
    ("DIFY_INNER_API_URL", "http://127.0.0.1:5001", "Dify's inner API for backwards invocations."),
    ("DIFY_INNER_API_KEY", "", "Sent as X-Inner-Api-Key."),
    ("DIFY_BACKWARDS_INVOCATION_WRITE_TIMEOUT", "5000", "Connect limit of a backwards call, milliseconds."),
    ("DIFY_BACKWARDS_INVOCATION_READ_TIMEOUT", "240000", "Total limit of a backwards call, milliseconds."),
    ("RESPONSE_MAX_BUFFER_SIZE", "31457280", "Largest frame of a streamed inner API reply, bytes."),
    ("PERSISTENCE_STORAGE_MAX_SIZE", "104857600", "Plugin storage quota per tenant and plugin, bytes (the manifest's storage.size may lower it)."),
];

/// Settings of plugin environments, plugin processes, sessions and backwards invocations.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `PLUGIN_WORKING_PATH` (default `./cwd`): root of plugin working directories; the shared uv cache
    /// is `<root>/.uv-cache`.
    pub working_path: PathBuf,
    /// `UV_PATH` (default empty): the uv binary; when empty it is found through the interpreter's `uv`
    /// module, then on `PATH`.
    pub uv_path: Option<PathBuf>,
    /// `PYTHON_INTERPRETER_PATH` (default empty): a Python >= 3.12 for plugin venvs; when empty
    /// `python3.13`/`python3.12` on `PATH`, then the newest pyenv 3.12+.
    pub python_interpreter_path: Option<PathBuf>,
    /// `UV_CACHE_DIR` (default `<PLUGIN_WORKING_PATH>/.uv-cache`): uv's package cache shared by every build.
    pub uv_cache_path: Option<PathBuf>,
    /// `PIP_MIRROR_URL` (default empty): package index passed to uv with `-i`.
    pub pip_mirror_url: Option<String>,
    /// `PIP_EXTRA_ARGS` (default empty): extra uv arguments, split on whitespace.
    pub pip_extra_args: Vec<String>,
    /// `PIP_VERBOSE` (default true): pass `-v` to uv.
    pub pip_verbose: bool,
    /// `PLUGIN_IGNORE_UV_LOCK` (default false): do not pass `--frozen` to `uv sync` when `uv.lock` exists.
    pub ignore_uv_lock: bool,
    /// `PYTHON_ENV_INIT_TIMEOUT` (default 120 s): a build step is killed after this long without output;
    /// also how long a launched plugin may take to send its first heartbeat.
    pub env_init_timeout: Duration,
    /// `PLUGIN_ENV_BUILD_TIMEOUT` (default 600 s): hard limit of one environment build step.
    pub env_build_timeout: Duration,
    /// `PLUGIN_ENV_BUILD_RETRIES` (default 1): how many times a failed environment build is retried.
    pub env_build_retries: u32,
    /// `PLUGIN_LOCAL_LAUNCHING_CONCURRENT` (default 2): environment builds and launches running at once.
    pub launching_concurrency: usize,
    /// `PLUGIN_MAX_EXECUTION_TIMEOUT` (default 600 s): longest a session may run.
    pub max_execution_timeout: Duration,
    /// `PLUGIN_RUNTIME_MAX_BUFFER_SIZE` (default 67108864 = 64 MiB): the longest plugin output line; a
    /// longer line fails only the session it belongs to, never the plugin. The legacy
    /// `PLUGIN_STDIO_MAX_BUFFER_SIZE` wins when set to anything but 5242880.
    pub max_line_bytes: usize,
    /// `PLUGIN_HEARTBEAT_TIMEOUT` (default 120 s): a running plugin with no output for this long is
    /// killed and restarted.
    pub heartbeat_timeout: Duration,
    /// `PLUGIN_MAX_RESTARTS` (default 5): restarts of a crashed plugin before giving up.
    pub max_restarts: u32,
    /// `PLUGIN_RESTART_BACKOFF_MS` (default 500 ms): first restart delay, doubled each time (cap 30 s).
    pub restart_backoff: Duration,
    /// `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (lowercase variants as fallback): passed to uv and plugins.
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// `DIFY_INNER_API_URL` (default `http://127.0.0.1:5001`): Dify's inner API for backwards calls.
    pub dify_inner_api_url: String,
    /// `DIFY_INNER_API_KEY` (default empty): sent as `X-Inner-Api-Key`.
    pub dify_inner_api_key: String,
    /// `DIFY_BACKWARDS_INVOCATION_WRITE_TIMEOUT` (default 5000 ms): connect/send limit of a backwards call.
    pub backwards_write_timeout: Duration,
    /// `DIFY_BACKWARDS_INVOCATION_READ_TIMEOUT` (default 240000 ms): total limit of a backwards call.
    pub backwards_read_timeout: Duration,
    /// `RESPONSE_MAX_BUFFER_SIZE` (default 31457280): largest frame of a streamed inner API reply.
    pub response_max_buffer_size: usize,
    /// `PERSISTENCE_STORAGE_MAX_SIZE` (default 104857600): plugin storage quota per tenant and plugin.
    pub persistence_storage_max_size: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            working_path: PathBuf::from("cwd"),
            uv_path: None,
            python_interpreter_path: None,
            uv_cache_path: None,
            pip_mirror_url: None,
            pip_extra_args: Vec::new(),
            pip_verbose: true,
            ignore_uv_lock: false,
            env_init_timeout: Duration::from_secs(120),
            env_build_timeout: Duration::from_secs(600),
            env_build_retries: 1,
            launching_concurrency: 2,
            max_execution_timeout: Duration::from_secs(600),
            max_line_bytes: 64 * 1024 * 1024,
            heartbeat_timeout: Duration::from_secs(120),
            max_restarts: 5,
            restart_backoff: Duration::from_millis(500),
            http_proxy: None,
            https_proxy: None,
            no_proxy: None,
            dify_inner_api_url: "http://127.0.0.1:5001".into(),
            dify_inner_api_key: String::new(),
            backwards_write_timeout: Duration::from_millis(5000),
            backwards_read_timeout: Duration::from_millis(240_000),
            response_max_buffer_size: 31_457_280,
            persistence_storage_max_size: 104_857_600,
        }
    }
}

impl RuntimeConfig {
    /// Reads the settings from the process environment; unset or unparsable values keep the default.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (testable without touching the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let text = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let flag = |name: &str| text(name).map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let secs = |name: &str| number(name).map(Duration::from_secs);
        let millis = |name: &str| number(name).map(Duration::from_millis);
        let d = Self::default();
        Self {
            working_path: text("PLUGIN_WORKING_PATH").map(PathBuf::from).unwrap_or(d.working_path),
            uv_path: text("UV_PATH").map(PathBuf::from),
            python_interpreter_path: text("PYTHON_INTERPRETER_PATH").map(PathBuf::from),
            uv_cache_path: text("UV_CACHE_DIR").map(PathBuf::from),
            pip_mirror_url: text("PIP_MIRROR_URL"),
            pip_extra_args: text("PIP_EXTRA_ARGS")
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            pip_verbose: flag("PIP_VERBOSE").unwrap_or(d.pip_verbose),
            ignore_uv_lock: flag("PLUGIN_IGNORE_UV_LOCK").unwrap_or(d.ignore_uv_lock),
            env_init_timeout: secs("PYTHON_ENV_INIT_TIMEOUT").filter(|v| !v.is_zero()).unwrap_or(d.env_init_timeout),
            env_build_timeout: secs("PLUGIN_ENV_BUILD_TIMEOUT").filter(|v| !v.is_zero()).unwrap_or(d.env_build_timeout),
            env_build_retries: number("PLUGIN_ENV_BUILD_RETRIES").map(|v| v as u32).unwrap_or(d.env_build_retries),
            launching_concurrency: number("PLUGIN_LOCAL_LAUNCHING_CONCURRENT")
                .filter(|v| *v > 0)
                .map(|v| v as usize)
                .unwrap_or(d.launching_concurrency),
            max_execution_timeout: secs("PLUGIN_MAX_EXECUTION_TIMEOUT").filter(|v| !v.is_zero()).unwrap_or(d.max_execution_timeout),
            // The legacy name wins when set to something other than its old default, as upstream does.
            max_line_bytes: number("PLUGIN_STDIO_MAX_BUFFER_SIZE")
                .filter(|v| *v > 0 && *v != 5_242_880)
                .or_else(|| number("PLUGIN_RUNTIME_MAX_BUFFER_SIZE").filter(|v| *v > 0))
                .map(|v| v as usize)
                .unwrap_or(d.max_line_bytes),
            heartbeat_timeout: secs("PLUGIN_HEARTBEAT_TIMEOUT").filter(|v| !v.is_zero()).unwrap_or(d.heartbeat_timeout),
            max_restarts: number("PLUGIN_MAX_RESTARTS").map(|v| v as u32).unwrap_or(d.max_restarts),
            restart_backoff: millis("PLUGIN_RESTART_BACKOFF_MS").unwrap_or(d.restart_backoff),
            http_proxy: text("HTTP_PROXY").or_else(|| text("http_proxy")),
            https_proxy: text("HTTPS_PROXY").or_else(|| text("https_proxy")),
            no_proxy: text("NO_PROXY").or_else(|| text("no_proxy")),
            dify_inner_api_url: text("DIFY_INNER_API_URL").unwrap_or(d.dify_inner_api_url),
            dify_inner_api_key: text("DIFY_INNER_API_KEY").unwrap_or(d.dify_inner_api_key),
            backwards_write_timeout: millis("DIFY_BACKWARDS_INVOCATION_WRITE_TIMEOUT").unwrap_or(d.backwards_write_timeout),
            backwards_read_timeout: millis("DIFY_BACKWARDS_INVOCATION_READ_TIMEOUT").unwrap_or(d.backwards_read_timeout),
            response_max_buffer_size: number("RESPONSE_MAX_BUFFER_SIZE").map(|v| v as usize).unwrap_or(d.response_max_buffer_size),
            persistence_storage_max_size: number("PERSISTENCE_STORAGE_MAX_SIZE").unwrap_or(d.persistence_storage_max_size),
        }
    }

    /// The uv cache shared by every plugin build.
    pub fn uv_cache_dir(&self) -> PathBuf {
        self.uv_cache_path.clone().unwrap_or_else(|| self.working_path.join(".uv-cache"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_match_the_code() {
        let defaults = RuntimeConfig::default();
        let documented = |name: &str| RUNTIME_SETTINGS.iter().find(|(n, _, _)| *n == name).map(|(_, d, _)| *d).unwrap();
        assert_eq!(documented("PLUGIN_MAX_EXECUTION_TIMEOUT"), defaults.max_execution_timeout.as_secs().to_string());
        assert_eq!(documented("PYTHON_ENV_INIT_TIMEOUT"), defaults.env_init_timeout.as_secs().to_string());
        assert_eq!(documented("PLUGIN_RUNTIME_MAX_BUFFER_SIZE"), defaults.max_line_bytes.to_string());
        assert_eq!(documented("PLUGIN_HEARTBEAT_TIMEOUT"), defaults.heartbeat_timeout.as_secs().to_string());
        assert_eq!(documented("PLUGIN_MAX_RESTARTS"), defaults.max_restarts.to_string());
        assert_eq!(documented("PLUGIN_LOCAL_LAUNCHING_CONCURRENT"), defaults.launching_concurrency.to_string());
        assert_eq!(documented("DIFY_INNER_API_URL"), defaults.dify_inner_api_url);
        assert_eq!(documented("PERSISTENCE_STORAGE_MAX_SIZE"), defaults.persistence_storage_max_size.to_string());
        let mut names: Vec<&str> = RUNTIME_SETTINGS.iter().map(|(n, _, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RUNTIME_SETTINGS.len());
    }

    #[test]
    fn defaults_and_overrides() {
        let defaults = RuntimeConfig::from_lookup(|_| None);
        assert_eq!(defaults.launching_concurrency, 2);
        assert_eq!(defaults.max_execution_timeout, Duration::from_secs(600));
        assert_eq!(defaults.env_init_timeout, Duration::from_secs(120));
        let custom = RuntimeConfig::from_lookup(|name| match name {
            "PLUGIN_MAX_EXECUTION_TIMEOUT" => Some("5".into()),
            "PIP_EXTRA_ARGS" => Some(" --a  --b ".into()),
            "PLUGIN_IGNORE_UV_LOCK" => Some("true".into()),
            "PLUGIN_LOCAL_LAUNCHING_CONCURRENT" => Some("zero".into()),
            "https_proxy" => Some("http://proxy".into()),
            "PLUGIN_RUNTIME_MAX_BUFFER_SIZE" => Some("1000".into()),
            "PLUGIN_STDIO_MAX_BUFFER_SIZE" => Some("5242880".into()),
            _ => None,
        });
        assert_eq!(custom.max_execution_timeout, Duration::from_secs(5));
        assert_eq!(custom.pip_extra_args, vec!["--a", "--b"]);
        assert!(custom.ignore_uv_lock);
        assert_eq!(custom.launching_concurrency, 2);
        assert_eq!(custom.https_proxy.as_deref(), Some("http://proxy"));
        assert_eq!(custom.max_line_bytes, 1000);
        let legacy = RuntimeConfig::from_lookup(|name| (name == "PLUGIN_STDIO_MAX_BUFFER_SIZE").then(|| "2048".to_string()));
        assert_eq!(legacy.max_line_bytes, 2048);
    }
}
