//! slim's configuration: a JSON file (`-config`, replacing the environment entirely) or the `SLIM_*`
//! variables, with upstream's defaults and checks. `mode` is `remote` unless set.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ErrorCode, SlimError};

/// The marketplace packages are fetched from when none is configured.
pub const DEFAULT_MARKETPLACE_URL: &str = "https://marketplace.dify.ai";

/// Local mode: where plugins live and how their environments are built.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LocalConfig {
    pub folder: String,
    pub python_path: String,
    pub uv_path: String,
    pub python_env_init_timeout: u64,
    pub max_execution_timeout: u64,
    pub pip_mirror_url: String,
    pub pip_extra_args: String,
    pub marketplace_url: String,
    pub ignore_uv_lock: bool,
}

/// Remote mode: the daemon to invoke through.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RemoteConfig {
    pub daemon_addr: String,
    pub daemon_key: String,
}

/// The file's layout: `{"mode", "local": {…}, "remote": {…}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    mode: String,
    local: LocalConfig,
    remote: RemoteConfig,
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum SlimConfig {
    Local(LocalConfig),
    Remote(RemoteConfig),
}

/// What `slim extract` needs to know about the configuration before checking it.
#[derive(Debug, Clone, Copy)]
pub struct ExtractConfigInput<'a> {
    pub config_file: &'a str,
    pub has_local_path: bool,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn var_u64(name: &str) -> u64 {
    var(name).trim().parse().unwrap_or(0)
}

fn var_bool(name: &str) -> bool {
    matches!(var(name).trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn raw_from_env() -> RawConfig {
    let mode = match var("SLIM_MODE") {
        mode if mode.is_empty() => "remote".to_string(),
        mode => mode,
    };
    let mut raw = RawConfig { mode, ..Default::default() };
    match raw.mode.as_str() {
        "local" => {
            raw.local = LocalConfig {
                folder: var("SLIM_FOLDER"),
                python_path: var("SLIM_PYTHON_PATH"),
                uv_path: var("SLIM_UV_PATH"),
                python_env_init_timeout: var_u64("SLIM_PYTHON_ENV_INIT_TIMEOUT"),
                max_execution_timeout: var_u64("SLIM_MAX_EXECUTION_TIMEOUT"),
                pip_mirror_url: var("SLIM_PIP_MIRROR_URL"),
                pip_extra_args: var("SLIM_PIP_EXTRA_ARGS"),
                marketplace_url: var("SLIM_MARKETPLACE_URL"),
                ignore_uv_lock: var_bool("SLIM_IGNORE_UV_LOCK"),
            }
        }
        "remote" => raw.remote = RemoteConfig { daemon_addr: var("SLIM_DAEMON_ADDR"), daemon_key: var("SLIM_DAEMON_KEY") },
        _ => {}
    }
    raw
}

fn raw_from_file(path: &str) -> Result<RawConfig, SlimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SlimError::new(ErrorCode::ConfigLoad, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| SlimError::new(ErrorCode::ConfigLoad, e.to_string()))
}

fn check_remote(remote: RemoteConfig) -> Result<SlimConfig, SlimError> {
    if remote.daemon_addr.is_empty() {
        return Err(SlimError::new(ErrorCode::ConfigInvalid, "remote.daemon_addr is required"));
    }
    if remote.daemon_key.is_empty() {
        return Err(SlimError::new(ErrorCode::ConfigInvalid, "remote.daemon_key is required"));
    }
    Ok(SlimConfig::Remote(remote))
}

fn checked(raw: RawConfig) -> Result<SlimConfig, SlimError> {
    match raw.mode.as_str() {
        "local" => {
            let mut local = raw.local;
            if local.folder.is_empty() {
                return Err(SlimError::new(ErrorCode::ConfigInvalid, "local.folder is required"));
            }
            if local.python_path.is_empty() {
                local.python_path = "python3".into();
            }
            if local.python_env_init_timeout == 0 {
                local.python_env_init_timeout = 120;
            }
            if local.max_execution_timeout == 0 {
                local.max_execution_timeout = 600;
            }
            if local.marketplace_url.is_empty() {
                local.marketplace_url = DEFAULT_MARKETPLACE_URL.into();
            }
            Ok(SlimConfig::Local(local))
        }
        "remote" | "" => check_remote(raw.remote),
        other => Err(SlimError::new(ErrorCode::UnknownMode, other)),
    }
}

impl SlimConfig {
    /// From the `SLIM_*` variables.
    pub fn from_env() -> Result<SlimConfig, SlimError> {
        checked(raw_from_env())
    }

    /// From a JSON file (the environment is not read).
    pub fn from_file(path: &str) -> Result<SlimConfig, SlimError> {
        checked(raw_from_file(path)?)
    }

    /// For `slim extract`: local mode needs `local.folder` only when extracting by `-id`.
    pub fn for_extract(input: ExtractConfigInput<'_>) -> Result<SlimConfig, SlimError> {
        let mut raw = if input.config_file.is_empty() { raw_from_env() } else { raw_from_file(input.config_file)? };
        match raw.mode.as_str() {
            "local" => {
                if raw.local.folder.is_empty() && !input.has_local_path {
                    return Err(SlimError::new(ErrorCode::ConfigInvalid, "local.folder is required when extract uses -id"));
                }
                if raw.local.marketplace_url.is_empty() {
                    raw.local.marketplace_url = DEFAULT_MARKETPLACE_URL.into();
                }
                Ok(SlimConfig::Local(raw.local))
            }
            "remote" | "" => check_remote(raw.remote),
            other => Err(SlimError::new(ErrorCode::UnknownMode, other)),
        }
    }
}

impl LocalConfig {
    /// `<folder>/<identifier with ':' replaced by '-'>`.
    pub fn working_path(&self, plugin_id: &str) -> PathBuf {
        PathBuf::from(&self.folder).join(plugin_id.replace(':', "-"))
    }
}
