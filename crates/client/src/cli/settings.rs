//! Resolution of the CLI's connection settings. Precedence, highest first: command-line flags,
//! environment (`DIFY_PLUGIN_DAEMON_URL`, `DIFY_PLUGIN_DAEMON_KEY`, `DIFY_PLUGIN_DAEMON_TIMEOUT`,
//! `DIFY_PLUGIN_TENANT_ID`), the JSON config file (`~/.dify` or `--config PATH`; keys `url`, `key`,
//! `timeout`, `tenant`), then built-in defaults.
//!
//! Owns reading the config file and validating every value with the name of where it came from.
//! It must not talk to the daemon. The environment is passed in, so tests need not mutate it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::error::{CliError, ErrorCode};
use crate::config::{DEFAULT_BASE_URL, DEFAULT_TIMEOUT};

pub const ENV_URL: &str = "DIFY_PLUGIN_DAEMON_URL";
pub const ENV_KEY: &str = "DIFY_PLUGIN_DAEMON_KEY";
pub const ENV_TIMEOUT: &str = "DIFY_PLUGIN_DAEMON_TIMEOUT";
pub const ENV_TENANT: &str = "DIFY_PLUGIN_TENANT_ID";
/// The default config file name, in the home directory.
pub const CONFIG_FILE_NAME: &str = ".dify";

/// Settings given as flags (absent when not given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingFlags {
    pub url: Option<String>,
    pub key: Option<String>,
    pub timeout: Option<String>,
    pub tenant: Option<String>,
    pub config: Option<PathBuf>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub key: String,
    pub timeout: Duration,
    pub tenant: Option<String>,
}

impl Settings {
    /// The tenant, or a usage error saying how to set one.
    pub fn require_tenant(&self) -> Result<&str, CliError> {
        self.tenant.as_deref().filter(|tenant| !tenant.is_empty()).ok_or_else(|| {
            CliError::usage("no tenant given")
                .with_hint(format!("pass --tenant ID, set {ENV_TENANT}, or add \"tenant\" to the config file"))
        })
    }
}

#[derive(Debug, Default)]
struct FileSettings {
    url: Option<String>,
    key: Option<String>,
    timeout: Option<String>,
    tenant: Option<String>,
}

/// Resolves settings from `flags`, `env` (a lookup such as `std::env::var`) and the config file
/// (in `home` unless `flags.config` names one).
pub fn resolve(flags: &SettingFlags, env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<Settings, CliError> {
    let file = match (&flags.config, home) {
        (Some(path), _) => read_config_file(path, true)?,
        (None, Some(home)) => read_config_file(&home.join(CONFIG_FILE_NAME), false)?,
        (None, None) => FileSettings::default(),
    };
    let env = |name: &str| env(name).filter(|value| !value.is_empty());

    let url = pick(&flags.url, env(ENV_URL), file.url).unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(CliError::usage(format!("invalid daemon URL `{url}`: it must start with http:// or https://")));
    }
    let key = pick(&flags.key, env(ENV_KEY), file.key).unwrap_or_default();
    let timeout = match (&flags.timeout, env(ENV_TIMEOUT), file.timeout) {
        (Some(text), _, _) => parse_timeout(text, "--timeout")?,
        (None, Some(text), _) => parse_timeout(&text, ENV_TIMEOUT)?,
        (None, None, Some(text)) => parse_timeout(&text, "the config file's `timeout`")?,
        (None, None, None) => DEFAULT_TIMEOUT,
    };
    let tenant = pick(&flags.tenant, env(ENV_TENANT), file.tenant);
    Ok(Settings { url, key, timeout, tenant })
}

fn pick(flag: &Option<String>, env: Option<String>, file: Option<String>) -> Option<String> {
    flag.clone().or(env).or(file)
}

fn parse_timeout(text: &str, source: &str) -> Result<Duration, CliError> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(CliError::usage(format!("invalid timeout `{text}` from {source}: expected a positive number of seconds"))),
    }
}

fn read_config_file(path: &Path, explicit: bool) -> Result<FileSettings, CliError> {
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if !explicit && (err.kind() == std::io::ErrorKind::NotFound || path.is_dir()) => return Ok(FileSettings::default()),
        Err(err) => return Err(CliError::new(ErrorCode::Config, format!("cannot read config file {shown}: {err}"))),
    };
    let bad = |why: String| {
        CliError::new(ErrorCode::Config, format!("malformed config file {shown}: {why}")).with_hint(
            r#"the config file is a JSON object such as {"url": "http://localhost:5002", "key": "...", "timeout": 30, "tenant": "..."}"#,
        )
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|err| bad(err.to_string()))?;
    let Value::Object(map) = value else {
        return Err(bad("expected a JSON object".to_string()));
    };
    let mut settings = FileSettings::default();
    for (key, value) in map {
        let slot = match key.as_str() {
            "url" => &mut settings.url,
            "key" => &mut settings.key,
            "tenant" => &mut settings.tenant,
            "timeout" => &mut settings.timeout,
            _ => continue,
        };
        *slot = match value {
            Value::Null => None,
            Value::String(text) => Some(text),
            Value::Number(number) if key == "timeout" => Some(number.to_string()),
            other => return Err(bad(format!("`{key}` must be a string, got {other}"))),
        };
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn home_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), config).unwrap();
        dir
    }

    const FILE: &str = r#"{"url":"http://file:1","key":"file-key","timeout":7,"tenant":"file-tenant"}"#;

    #[test]
    fn defaults_without_any_source() {
        let home = tempfile::tempdir().unwrap();
        let settings = resolve(&SettingFlags::default(), &env_of(&[]), Some(home.path())).unwrap();
        assert_eq!(settings.url, DEFAULT_BASE_URL);
        assert_eq!(settings.key, "");
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(settings.tenant, None);
        assert!(settings.require_tenant().is_err());
    }

    #[test]
    fn file_overrides_defaults() {
        let home = home_with(FILE);
        let settings = resolve(&SettingFlags::default(), &env_of(&[]), Some(home.path())).unwrap();
        assert_eq!(settings.url, "http://file:1");
        assert_eq!(settings.key, "file-key");
        assert_eq!(settings.timeout, Duration::from_secs(7));
        assert_eq!(settings.tenant.as_deref(), Some("file-tenant"));
    }

    #[test]
    fn env_overrides_file() {
        let home = home_with(FILE);
        let env = env_of(&[(ENV_URL, "http://env:2"), (ENV_KEY, "env-key"), (ENV_TIMEOUT, "8"), (ENV_TENANT, "env-tenant")]);
        let settings = resolve(&SettingFlags::default(), &env, Some(home.path())).unwrap();
        assert_eq!(settings.url, "http://env:2");
        assert_eq!(settings.key, "env-key");
        assert_eq!(settings.timeout, Duration::from_secs(8));
        assert_eq!(settings.tenant.as_deref(), Some("env-tenant"));
    }

    #[test]
    fn flags_override_env() {
        let home = home_with(FILE);
        let env = env_of(&[(ENV_URL, "http://env:2"), (ENV_KEY, "env-key"), (ENV_TIMEOUT, "8"), (ENV_TENANT, "env-tenant")]);
        let flags = SettingFlags {
            url: Some("http://flag:3".into()),
            key: Some("flag-key".into()),
            timeout: Some("9.5".into()),
            tenant: Some("flag-tenant".into()),
            config: None,
        };
        let settings = resolve(&flags, &env, Some(home.path())).unwrap();
        assert_eq!(settings.url, "http://flag:3");
        assert_eq!(settings.key, "flag-key");
        assert_eq!(settings.timeout, Duration::from_millis(9500));
        assert_eq!(settings.tenant.as_deref(), Some("flag-tenant"));
    }

    #[test]
    fn explicit_config_path_replaces_home_file() {
        let home = home_with(FILE);
        let other = tempfile::tempdir().unwrap();
        let path = other.path().join("client.json");
        std::fs::write(&path, r#"{"tenant":"other"}"#).unwrap();
        let flags = SettingFlags { config: Some(path), ..SettingFlags::default() };
        let settings = resolve(&flags, &env_of(&[]), Some(home.path())).unwrap();
        assert_eq!(settings.tenant.as_deref(), Some("other"));
        assert_eq!(settings.url, DEFAULT_BASE_URL);
    }

    #[test]
    fn malformed_or_missing_files_are_config_errors_naming_the_file() {
        let home = home_with("{not json");
        let error = resolve(&SettingFlags::default(), &env_of(&[]), Some(home.path())).unwrap_err();
        assert_eq!(error.exit_status(), 2);
        assert!(error.message.contains(&home.path().join(CONFIG_FILE_NAME).display().to_string()), "{}", error.message);

        let home = home_with(r#"{"url": 5}"#);
        let error = resolve(&SettingFlags::default(), &env_of(&[]), Some(home.path())).unwrap_err();
        assert!(error.message.contains("`url` must be a string"));

        let flags = SettingFlags { config: Some(PathBuf::from("/nonexistent/dify.json")), ..SettingFlags::default() };
        let error = resolve(&flags, &env_of(&[]), None).unwrap_err();
        assert!(error.message.contains("/nonexistent/dify.json"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let error = resolve(&SettingFlags::default(), &env_of(&[(ENV_TIMEOUT, "soon")]), None).unwrap_err();
        assert!(error.message.contains(ENV_TIMEOUT));
        let flags = SettingFlags { url: Some("localhost:5002".into()), ..SettingFlags::default() };
        assert!(resolve(&flags, &env_of(&[]), None).is_err());
    }
}
