//! The CLI's one error type: an exhaustive code, a message and a hint. The code decides the exit
//! status here and nowhere else (0 ok, 1 generic, 2 usage, 4 auth, 6 version/compat).
//!
//! Owns the mapping from [`ClientError`] to codes and hints. It must not print; `output` does.

use serde_json::{json, Value};

use crate::error::ClientError;

/// What kind of failure ended the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad flags, arguments or input values.
    Usage,
    /// A settings source (config file, environment) is unusable.
    Config,
    /// The daemon rejected the API key.
    Auth,
    /// The daemon is unreachable.
    Network,
    /// The daemon does not know the thing asked for.
    NotFound,
    /// The daemon reported an error.
    Daemon,
    /// A plugin failed while running.
    PluginFailed,
    /// An install or upgrade task ended as `failed`.
    InstallFailed,
    /// Waiting took longer than allowed.
    Timeout,
    /// The daemon speaks a different API (unknown route, unexpected response shapes).
    Compat,
    /// Reading or writing a local file failed.
    Io,
}

impl ErrorCode {
    /// The process exit status for this code.
    pub fn exit_status(self) -> i32 {
        match self {
            ErrorCode::Usage | ErrorCode::Config => 2,
            ErrorCode::Auth => 4,
            ErrorCode::Compat => 6,
            ErrorCode::Network
            | ErrorCode::NotFound
            | ErrorCode::Daemon
            | ErrorCode::PluginFailed
            | ErrorCode::InstallFailed
            | ErrorCode::Timeout
            | ErrorCode::Io => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Usage => "usage",
            ErrorCode::Config => "config",
            ErrorCode::Auth => "auth",
            ErrorCode::Network => "network",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Daemon => "daemon",
            ErrorCode::PluginFailed => "plugin_failed",
            ErrorCode::InstallFailed => "install_failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Compat => "compat",
            ErrorCode::Io => "io",
        }
    }
}

/// An error as the user sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CliError {
    pub code: ErrorCode,
    /// The daemon's or client's error type, when there is one (e.g. `PluginNotFoundError`).
    pub error_type: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// Extra lines (per-plugin task messages).
    pub details: Vec<String>,
}

impl CliError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CliError { code, error_type: None, message: message.into(), hint: None, details: Vec::new() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Usage, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn exit_status(&self) -> i32 {
        self.code.exit_status()
    }

    /// The structured form printed for `-o json|yaml`.
    pub fn to_json(&self) -> Value {
        json!({"error": {
            "code": self.code.as_str(),
            "type": self.error_type,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
            "exit_status": self.exit_status(),
        }})
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        let (code, hint) = match &error {
            ClientError::PluginDaemonUnauthorizedError { .. } => (
                ErrorCode::Auth,
                Some("check the API key: --key, DIFY_PLUGIN_DAEMON_KEY or `key` in the config file must equal the daemon's SERVER_KEY"),
            ),
            ClientError::PluginDaemonInnerError { .. } => {
                (ErrorCode::Network, Some("is the daemon running? set its address with --url or DIFY_PLUGIN_DAEMON_URL"))
            }
            ClientError::PluginNotFoundError { .. } => {
                (ErrorCode::NotFound, Some("the plugin is not installed for this tenant; see `dify-plugin-client list`"))
            }
            ClientError::PluginDaemonNotFoundError { .. } => (ErrorCode::NotFound, None),
            ClientError::PluginUniqueIdentifierError { .. } => {
                (ErrorCode::Usage, Some("identifiers look like author/name:1.0.0@<sha256 hex>"))
            }
            ClientError::PluginInvokeError { .. } => (ErrorCode::PluginFailed, None),
            ClientError::PluginDaemonBadRequestError { .. }
            | ClientError::PluginPermissionDeniedError { .. }
            | ClientError::PluginDaemonInternalServerError { .. }
            | ClientError::UnknownDaemonError { .. }
            | ClientError::HttpStatus { .. } => (ErrorCode::Daemon, None),
            ClientError::RouteNotFound { .. } | ClientError::MalformedResponse { .. } => {
                (ErrorCode::Compat, Some("the server at --url may not be a Dify plugin daemon, or runs an incompatible version"))
            }
            ClientError::Timeout(_) => (ErrorCode::Timeout, None),
            ClientError::Validation(_) => (ErrorCode::Usage, None),
        };
        CliError {
            code,
            error_type: Some(error.kind().to_string()),
            message: error.to_string(),
            hint: hint.map(str::to_string),
            details: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(CliError::from(ClientError::PluginDaemonUnauthorizedError { message: "unauthorized".into() }).exit_status(), 4);
        assert_eq!(CliError::from(ClientError::RouteNotFound { url: "u".into() }).exit_status(), 6);
        assert_eq!(CliError::from(ClientError::Validation("x".into())).exit_status(), 2);
        assert_eq!(CliError::from(ClientError::PluginNotFoundError { message: "plugin not found".into() }).exit_status(), 1);
        assert_eq!(CliError::new(ErrorCode::Config, "bad file").exit_status(), 2);
    }
}
