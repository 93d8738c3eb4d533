//! The single error type of the `dify` CLI.
//!
//! Owns the mapping from an error's [`ErrorCode`] to the process exit status (one place, see
//! [`ErrorCode::exit_status`]) and guarantees that every error carries a hint for the user.
//! It must not print anything itself: rendering is the job of [`crate::output`].

use serde::Serialize;

/// What kind of failure happened; decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Anything that is not one of the more specific kinds below (I/O, invalid plugin, ...).
    Generic,
    /// The command line itself is wrong: unknown flag, missing argument, invalid value.
    Usage,
    /// A signature or key did not verify.
    Auth,
    /// A version or compatibility requirement is not met.
    VersionCompat,
}

impl ErrorCode {
    /// The exit status for this kind of error: 1 generic, 2 usage, 4 auth, 6 version/compat.
    pub fn exit_status(self) -> i32 {
        match self {
            ErrorCode::Generic => 1,
            ErrorCode::Usage => 2,
            ErrorCode::Auth => 4,
            ErrorCode::VersionCompat => 6,
        }
    }
}

/// An error reported to the user: what went wrong, and what to try next.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct CliError {
    pub code: ErrorCode,
    pub message: String,
    pub hint: String,
}

impl CliError {
    pub fn new(code: ErrorCode, message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError { code, message: message.into(), hint: hint.into() }
    }

    pub fn generic(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorCode::Generic, message, hint)
    }

    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorCode::Usage, message, hint)
    }

    pub fn auth(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorCode::Auth, message, hint)
    }

    pub fn exit_status(&self) -> i32 {
        self.code.exit_status()
    }

    /// An I/O failure on `path`, with a hint that names the path.
    pub fn io(action: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Self::generic(
            format!("failed to {action} {}: {err}", path.display()),
            format!("check that {} exists and is accessible", path.display()),
        )
    }
}

pub type CliResult<T> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_fixed() {
        assert_eq!(ErrorCode::Generic.exit_status(), 1);
        assert_eq!(ErrorCode::Usage.exit_status(), 2);
        assert_eq!(ErrorCode::Auth.exit_status(), 4);
        assert_eq!(ErrorCode::VersionCompat.exit_status(), 6);
    }

    #[test]
    fn error_serializes_with_code_and_hint() {
        let e = CliError::auth("bad signature", "use the matching public key");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], "auth");
        assert_eq!(v["hint"], "use the matching public key");
        assert_eq!(e.exit_status(), 4);
    }
}
