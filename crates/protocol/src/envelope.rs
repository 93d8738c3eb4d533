//! The daemon's JSON response envelope `{code, message, data}` and its error encoding.
//!
//! Owns the wire shape of every management/dispatch response and the error object
//! `{message, error_type, args}` that the daemon serialises into the envelope's `message` string
//! (docs/http.md §2). It must not know about HTTP statuses or transports: callers choose the status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"code": 0, "message": "success", "data": ...}` or an error envelope with `data: null`.
///
/// Field order is fixed (`code`, `message`, `data`) so responses are byte-compatible with upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub code: i64,
    pub message: String,
    pub data: Option<T>,
}

impl<T> Envelope<T> {
    /// A success envelope. `data` must not be JSON `null` on the wire (Dify rejects empty data).
    pub fn success(data: T) -> Self {
        Envelope { code: 0, message: "success".to_string(), data: Some(data) }
    }

    /// True when `code == 0`.
    pub fn is_success(&self) -> bool {
        self.code == 0
    }
}

impl Envelope<Value> {
    /// Builds the error envelope for `err`: negative code, JSON error object in `message`, `data: null`.
    pub fn error(err: &DaemonError) -> Self {
        Envelope { code: err.code(), message: err.to_error_object_json(), data: None }
    }

    /// For a failed envelope, parses the JSON error object inside `message`.
    /// Returns `None` for success envelopes or when `message` is not an error object.
    pub fn decode_error(&self) -> Option<ErrorObject> {
        if self.code == 0 {
            return None;
        }
        serde_json::from_str(&self.message).ok()
    }
}

/// The error object carried (as a JSON string) inside an error envelope's `message`.
/// Field order matters on the wire: `message`, `error_type`, `args`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub message: String,
    pub error_type: String,
    pub args: Option<Value>,
}

/// Every `error_type` the daemon can put on the wire (docs/http.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    PluginDaemonInternalServerError,
    PluginDaemonBadRequestError,
    PluginDaemonNotFoundError,
    PluginDaemonUnauthorizedError,
    PluginDaemonPermissionDeniedError,
    PluginDaemonInvokeError,
    PluginUniqueIdentifierError,
    PluginNotFoundError,
    PluginUnauthorizedError,
    PluginPermissionDeniedError,
    PluginInvokeError,
    ConnectionClosedError,
    /// The generic `unknown` type.
    Unknown,
}

impl ErrorType {
    pub const ALL: [ErrorType; 13] = [
        ErrorType::PluginDaemonInternalServerError,
        ErrorType::PluginDaemonBadRequestError,
        ErrorType::PluginDaemonNotFoundError,
        ErrorType::PluginDaemonUnauthorizedError,
        ErrorType::PluginDaemonPermissionDeniedError,
        ErrorType::PluginDaemonInvokeError,
        ErrorType::PluginUniqueIdentifierError,
        ErrorType::PluginNotFoundError,
        ErrorType::PluginUnauthorizedError,
        ErrorType::PluginPermissionDeniedError,
        ErrorType::PluginInvokeError,
        ErrorType::ConnectionClosedError,
        ErrorType::Unknown,
    ];

    /// The `error_type` string as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::PluginDaemonInternalServerError => "PluginDaemonInternalServerError",
            ErrorType::PluginDaemonBadRequestError => "PluginDaemonBadRequestError",
            ErrorType::PluginDaemonNotFoundError => "PluginDaemonNotFoundError",
            ErrorType::PluginDaemonUnauthorizedError => "PluginDaemonUnauthorizedError",
            ErrorType::PluginDaemonPermissionDeniedError => "PluginDaemonPermissionDeniedError",
            ErrorType::PluginDaemonInvokeError => "PluginDaemonInvokeError",
            ErrorType::PluginUniqueIdentifierError => "PluginUniqueIdentifierError",
            ErrorType::PluginNotFoundError => "PluginNotFoundError",
            ErrorType::PluginUnauthorizedError => "PluginUnauthorizedError",
            ErrorType::PluginPermissionDeniedError => "PluginPermissionDeniedError",
            ErrorType::PluginInvokeError => "PluginInvokeError",
            ErrorType::ConnectionClosedError => "ConnectionClosedError",
            ErrorType::Unknown => "unknown",
        }
    }

    /// The negative envelope `code` that goes with this type.
    pub fn code(self) -> i64 {
        match self {
            ErrorType::PluginDaemonBadRequestError | ErrorType::PluginUniqueIdentifierError => -400,
            ErrorType::PluginDaemonNotFoundError | ErrorType::PluginNotFoundError => -404,
            ErrorType::PluginDaemonUnauthorizedError | ErrorType::PluginUnauthorizedError => -401,
            ErrorType::PluginDaemonPermissionDeniedError | ErrorType::PluginPermissionDeniedError => -403,
            ErrorType::PluginDaemonInternalServerError
            | ErrorType::PluginDaemonInvokeError
            | ErrorType::PluginInvokeError
            | ErrorType::ConnectionClosedError
            | ErrorType::Unknown => -500,
        }
    }

    /// Parses a wire `error_type` string.
    pub fn parse(s: &str) -> Option<ErrorType> {
        ErrorType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error the daemon reports to its caller: a type (which fixes the code) and a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct DaemonError {
    pub error_type: ErrorType,
    pub message: String,
    /// Always `None` for errors the daemon creates itself.
    pub args: Option<Value>,
}

impl DaemonError {
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        DaemonError { error_type, message: message.into(), args: None }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorType::PluginDaemonInternalServerError, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorType::PluginDaemonBadRequestError, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorType::PluginDaemonNotFoundError, message)
    }
    /// `PluginNotFoundError` always carries the message `plugin not found`.
    pub fn plugin_not_found() -> Self {
        Self::new(ErrorType::PluginNotFoundError, "plugin not found")
    }
    pub fn unauthorized() -> Self {
        Self::new(ErrorType::PluginDaemonUnauthorizedError, "unauthorized")
    }
    pub fn unique_identifier(message: impl Into<String>) -> Self {
        Self::new(ErrorType::PluginUniqueIdentifierError, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorType::PluginPermissionDeniedError, message)
    }

    /// The envelope code for this error.
    pub fn code(&self) -> i64 {
        self.error_type.code()
    }

    /// The error object `{"message":..,"error_type":..,"args":..}` as a compact JSON string.
    pub fn to_error_object_json(&self) -> String {
        let object =
            ErrorObject { message: self.message.clone(), error_type: self.error_type.as_str().to_string(), args: self.args.clone() };
        // Serialising a struct of strings and a JSON value cannot fail.
        serde_json::to_string(&object).unwrap_or_default()
    }

    /// The whole error envelope as a compact JSON string.
    pub fn to_envelope_json(&self) -> String {
        serde_json::to_string(&Envelope::<Value>::error(self)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_envelope_is_byte_exact() {
        assert_eq!(
            DaemonError::unauthorized().to_envelope_json(),
            r#"{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",\"args\":null}","data":null}"#
        );
    }

    #[test]
    fn plugin_not_found_envelope_is_byte_exact() {
        assert_eq!(
            DaemonError::plugin_not_found().to_envelope_json(),
            r#"{"code":-404,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginNotFoundError\",\"args\":null}","data":null}"#
        );
    }

    #[test]
    fn success_envelope_shape() {
        let s = serde_json::to_string(&Envelope::success(true)).unwrap();
        assert_eq!(s, r#"{"code":0,"message":"success","data":true}"#);
    }

    #[test]
    fn every_type_round_trips_and_has_negative_code() {
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::parse(t.as_str()), Some(t));
            assert!(t.code() < 0);
        }
        assert_eq!(ErrorType::Unknown.as_str(), "unknown");
        assert_eq!(ErrorType::PluginPermissionDeniedError.code(), -403);
    }

    #[test]
    fn decode_error_reads_message_object() {
        let env = Envelope::<Value>::error(&DaemonError::bad_request("x"));
        let obj = env.decode_error().unwrap();
        assert_eq!(obj.error_type, "PluginDaemonBadRequestError");
        assert_eq!(obj.message, "x");
        assert_eq!(env.code, -400);
    }
}
