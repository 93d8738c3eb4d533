//! `slim`: the one-shot invoker with upstream `slim`'s interface (docs/v2-invoke.md). One invocation
//! of one action of one plugin, either locally (the plugin's directory under `local.folder`, fetched
//! from the marketplace when missing, its environment built and its process started with the daemon's
//! runtime code, then stopped) or remotely through a daemon's `/v2/invoke`; plus `slim extract`.
//!
//! Owns: the flag syntax (Go's `flag` package: `-id x`, `-id=x`, `--id x`), the configuration (a JSON
//! file or `SLIM_*` variables), the output lines on stdout (`{"event":"chunk"|"done"|"error"|"message",
//! "data":…}`) and the error line on stderr with its exit code. Must not: open a daemon's database or
//! serve HTTP.

pub mod config;
pub mod extract;
pub mod local;
pub mod output;
pub mod remote;

use std::ffi::OsString;
use std::io::Read;

use dify_protocol::access::{AccessType, DISPATCH_ROUTES};
use serde::Serialize;
use serde_json::Value;

pub use config::{ExtractConfigInput, LocalConfig, RemoteConfig, SlimConfig};
pub use output::OutputWriter;

/// The nil UUID: the tenant of an invocation whose arguments name none.
pub const NIL_TENANT: &str = "00000000-0000-0000-0000-000000000000";

pub const EXIT_OK: i32 = 0;
pub const EXIT_PLUGIN_ERROR: i32 = 1;
pub const EXIT_INPUT_ERROR: i32 = 2;
pub const EXIT_NETWORK_ERROR: i32 = 3;
pub const EXIT_DAEMON_ERROR: i32 = 4;

/// Upstream's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorCode {
    #[serde(rename = "INVALID_INPUT")]
    InvalidInput,
    #[serde(rename = "INVALID_ARGS_JSON")]
    InvalidArgsJson,
    #[serde(rename = "CONFIG_LOAD_ERROR")]
    ConfigLoad,
    #[serde(rename = "CONFIG_INVALID")]
    ConfigInvalid,
    #[serde(rename = "UNKNOWN_MODE")]
    UnknownMode,
    #[serde(rename = "UNKNOWN_ACTION")]
    UnknownAction,
    #[serde(rename = "NETWORK_ERROR")]
    Network,
    #[serde(rename = "DAEMON_ERROR")]
    Daemon,
    #[serde(rename = "STREAM_READ_ERROR")]
    StreamRead,
    #[serde(rename = "STREAM_PARSE_ERROR")]
    StreamParse,
    #[serde(rename = "PLUGIN_NOT_FOUND")]
    PluginNotFound,
    #[serde(rename = "PLUGIN_INIT_ERROR")]
    PluginInit,
    #[serde(rename = "PLUGIN_EXEC_ERROR")]
    PluginExec,
    #[serde(rename = "PLUGIN_DOWNLOAD_ERROR")]
    PluginDownload,
    #[serde(rename = "PLUGIN_DOWNLOAD_TIMEOUT")]
    PluginDownloadTimeout,
    #[serde(rename = "PLUGIN_PACKAGE_INVALID")]
    PluginPackageInvalid,
    #[serde(rename = "PLUGIN_PACKAGE_TOO_LARGE")]
    PluginPackageTooLarge,
    #[serde(rename = "PLUGIN_EXTRACT_ERROR")]
    PluginExtract,
}

impl ErrorCode {
    /// The wire name (`INVALID_INPUT`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::InvalidArgsJson => "INVALID_ARGS_JSON",
            ErrorCode::ConfigLoad => "CONFIG_LOAD_ERROR",
            ErrorCode::ConfigInvalid => "CONFIG_INVALID",
            ErrorCode::UnknownMode => "UNKNOWN_MODE",
            ErrorCode::UnknownAction => "UNKNOWN_ACTION",
            ErrorCode::Network => "NETWORK_ERROR",
            ErrorCode::Daemon => "DAEMON_ERROR",
            ErrorCode::StreamRead => "STREAM_READ_ERROR",
            ErrorCode::StreamParse => "STREAM_PARSE_ERROR",
            ErrorCode::PluginNotFound => "PLUGIN_NOT_FOUND",
            ErrorCode::PluginInit => "PLUGIN_INIT_ERROR",
            ErrorCode::PluginExec => "PLUGIN_EXEC_ERROR",
            ErrorCode::PluginDownload => "PLUGIN_DOWNLOAD_ERROR",
            ErrorCode::PluginDownloadTimeout => "PLUGIN_DOWNLOAD_TIMEOUT",
            ErrorCode::PluginPackageInvalid => "PLUGIN_PACKAGE_INVALID",
            ErrorCode::PluginPackageTooLarge => "PLUGIN_PACKAGE_TOO_LARGE",
            ErrorCode::PluginExtract => "PLUGIN_EXTRACT_ERROR",
        }
    }

    /// The process exit status of a failure with this code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::InvalidInput
            | ErrorCode::InvalidArgsJson
            | ErrorCode::ConfigLoad
            | ErrorCode::ConfigInvalid
            | ErrorCode::UnknownMode
            | ErrorCode::UnknownAction => EXIT_INPUT_ERROR,
            ErrorCode::Network | ErrorCode::PluginDownload | ErrorCode::PluginDownloadTimeout => EXIT_NETWORK_ERROR,
            ErrorCode::Daemon => EXIT_DAEMON_ERROR,
            _ => EXIT_PLUGIN_ERROR,
        }
    }
}

/// A failure of the invoker: printed as `{"code","message"}` on stderr, exit status by code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct SlimError {
    pub code: ErrorCode,
    pub message: String,
}

impl SlimError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SlimError { code, message: message.into() }
    }
}

/// One action slim knows: its access type and its `/v2/invoke/dispatch` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRoute {
    pub access_type: AccessType,
    pub path: &'static str,
}

/// The route of an action: every dispatch route but the model polling ones, plus `invoke_endpoint`
/// (which upstream's table lists though no daemon serves it under `/v2/invoke`).
pub fn lookup_route(action: &str) -> Option<ActionRoute> {
    if action == "invoke_endpoint" {
        return Some(ActionRoute { access_type: AccessType::Endpoint, path: "/endpoint/invoke" });
    }
    DISPATCH_ROUTES
        .iter()
        .find(|route| route.action == action && !matches!(route.action, "start_polling" | "check_polling"))
        .map(|route| ActionRoute { access_type: route.access_type, path: route.path })
}

/// What one invocation carries: `-id`, `-action` and the `-args` JSON (`tenant_id`, `user_id`, `data`).
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeContext {
    pub plugin_id: String,
    pub action: String,
    pub tenant_id: String,
    pub user_id: String,
    /// `data` as given (`null` when absent).
    pub data: Value,
}

impl InvokeContext {
    /// Parses the `-args` JSON; a missing tenant becomes the nil UUID.
    pub fn new(id: &str, action: &str, args_json: &str) -> Result<Self, SlimError> {
        let args: Value = serde_json::from_str(args_json).map_err(|e| SlimError::new(ErrorCode::InvalidArgsJson, e.to_string()))?;
        let Value::Object(args) = args else {
            return Err(SlimError::new(ErrorCode::InvalidArgsJson, "arguments must be a JSON object"));
        };
        let text = |key: &str| -> Result<String, SlimError> {
            match args.get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(SlimError::new(ErrorCode::InvalidArgsJson, format!("{key} must be a string, not {other}"))),
            }
        };
        let mut tenant_id = text("tenant_id")?;
        if tenant_id.is_empty() {
            tenant_id = NIL_TENANT.to_string();
        }
        Ok(InvokeContext {
            plugin_id: id.to_string(),
            action: action.to_string(),
            tenant_id,
            user_id: text("user_id")?,
            data: args.get("data").cloned().unwrap_or(Value::Null),
        })
    }

    /// The body sent to `/v2/invoke`: `{"tenant_id","user_id","data"}`.
    pub fn request_body(&self) -> Value {
        serde_json::json!({"tenant_id": self.tenant_id, "user_id": self.user_id, "data": self.data})
    }
}

/// Flags parsed the way Go's `flag` package parses them: `-name value`, `-name=value`, `--name…`;
/// parsing stops at the first non-flag argument or `--`.
#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(String, String)>,
    pub positional: Vec<String>,
    pub help: bool,
}

impl Flags {
    pub fn parse(args: &[String], known: &[&str]) -> Result<Flags, SlimError> {
        let mut flags = Flags::default();
        let mut index = 0;
        while index < args.len() {
            let arg = &args[index];
            if arg == "--" {
                flags.positional.extend(args[index + 1..].iter().cloned());
                break;
            }
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|s| !s.is_empty()) else {
                flags.positional.extend(args[index..].iter().cloned());
                break;
            };
            let (name, inline) = match stripped.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (stripped.to_string(), None),
            };
            if name == "h" || name == "help" {
                flags.help = true;
                index += 1;
                continue;
            }
            if !known.contains(&name.as_str()) {
                return Err(SlimError::new(ErrorCode::InvalidInput, format!("flag provided but not defined: -{name}")));
            }
            let value = match inline {
                Some(value) => value,
                None => {
                    index += 1;
                    args.get(index)
                        .cloned()
                        .ok_or_else(|| SlimError::new(ErrorCode::InvalidInput, format!("flag needs an argument: -{name}")))?
                }
            };
            flags.values.push((name, value));
            index += 1;
        }
        Ok(flags)
    }

    /// The last value given for `name` (empty when absent).
    pub fn get(&self, name: &str) -> String {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

const ROOT_USAGE: &str = "Usage:
  slim -id <plugin_unique_identifier> -action <action> [-args '<json>'] [-config <path>]
  slim extract -id <plugin_unique_identifier> [-config <path>] [-output json]
  slim extract -id <plugin_unique_identifier> -action <action> [-config <path>] [-output json]
  slim extract -path <plugin-dir-or-difypkg> [-config <path>] [-output json]
  slim extract -path <plugin-dir-or-difypkg> -action <action> [-config <path>] [-output json]

Commands:
  extract    Parse plugin schema/declaration from daemon or local files

Invocation flags:
  -action string   plugin access action
  -args string     plugin invocation parameters (JSON); if omitted, read from stdin
  -config string   path to JSON config file (replaces env vars)
  -id string       plugin unique identifier
";

/// Runs slim with `args` (without the program name); returns the exit status. Output lines go to
/// stdout; a failure is one JSON line on stderr.
pub fn run(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&SlimError::new(ErrorCode::PluginExec, format!("cannot start the async runtime: {error}"))),
    };
    let result = runtime.block_on(async {
        if args.first().map(String::as_str) == Some("extract") {
            extract::run_command(&args[1..]).await
        } else {
            run_invoke(&args).await
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => EXIT_OK,
        Err(error) => fail(&error),
    }
}

/// Prints the error line on stderr and returns its exit status.
pub fn fail(error: &SlimError) -> i32 {
    let line =
        serde_json::to_string(error).unwrap_or_else(|_| r#"{"code":"INTERNAL_ERROR","message":"failed to marshal error to JSON"}"#.into());
    eprintln!("{}", output::go_html_escape(&line));
    error.code.exit_code()
}

async fn run_invoke(args: &[String]) -> Result<(), SlimError> {
    let flags = Flags::parse(args, &["id", "action", "args", "config"])?;
    if flags.help {
        eprint!("{ROOT_USAGE}");
        return Ok(());
    }
    let (id, action) = (flags.get("id"), flags.get("action"));
    if id.is_empty() || action.is_empty() {
        return Err(SlimError::new(ErrorCode::InvalidInput, "usage: slim -id <id> -action <action> [-args '<json>'] [-config <path>]"));
    }
    let mut args_json = flags.get("args");
    if args_json.is_empty() {
        let mut stdin = String::new();
        std::io::stdin()
            .read_to_string(&mut stdin)
            .map_err(|e| SlimError::new(ErrorCode::InvalidInput, format!("failed to read stdin: {e}")))?;
        if stdin.trim().is_empty() {
            return Err(SlimError::new(ErrorCode::InvalidInput, "no -args flag and no JSON on stdin"));
        }
        args_json = stdin;
    }
    let context = InvokeContext::new(&id, &action, &args_json)?;
    let config_file = flags.get("config");
    let config = if config_file.is_empty() { SlimConfig::from_env()? } else { SlimConfig::from_file(&config_file)? };
    let mut out = OutputWriter::stdout();
    match &config {
        SlimConfig::Local(local) => local::run_local(&context, local, &mut out).await,
        SlimConfig::Remote(remote) => remote::run_remote(&context, remote, &mut out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_go_flag_syntax() {
        let args: Vec<String> = ["-id", "a/b:1@c", "--action=invoke_tool", "-args", "{}", "rest"].iter().map(|s| s.to_string()).collect();
        let flags = Flags::parse(&args, &["id", "action", "args", "config"]).expect("parse");
        assert_eq!((flags.get("id"), flags.get("action"), flags.get("args")), ("a/b:1@c".into(), "invoke_tool".into(), "{}".into()));
        assert_eq!(flags.positional, vec!["rest"]);
        let unknown = Flags::parse(&["-nope".to_string()], &["id"]).expect_err("unknown flag");
        assert_eq!(unknown.code.exit_code(), EXIT_INPUT_ERROR);
    }

    #[test]
    fn routes_and_exit_codes() {
        assert_eq!(lookup_route("invoke_tool").map(|r| r.path), Some("/tool/invoke"));
        assert_eq!(lookup_route("invoke_agent_strategy").map(|r| r.access_type), Some(AccessType::AgentStrategy));
        assert!(lookup_route("start_polling").is_none());
        assert_eq!(ErrorCode::Daemon.exit_code(), EXIT_DAEMON_ERROR);
        assert_eq!(ErrorCode::Network.exit_code(), EXIT_NETWORK_ERROR);
        assert_eq!(ErrorCode::PluginInit.exit_code(), EXIT_PLUGIN_ERROR);
        let error = SlimError::new(ErrorCode::UnknownAction, "nope");
        assert_eq!(serde_json::to_string(&error).unwrap(), r#"{"code":"UNKNOWN_ACTION","message":"nope"}"#);
        let context = InvokeContext::new("x", "invoke_tool", r#"{"data":{"a":1}}"#).expect("context");
        assert_eq!(context.tenant_id, NIL_TENANT);
    }
}
