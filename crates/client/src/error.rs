//! The client's error type: transport failures, HTTP failures and the daemon's error types mapped
//! one-to-one (docs/http.md §2.3–2.5), plus validation failures caught before a request is sent.
//!
//! Owns the decoding of an error envelope into a [`ClientError`]. It must not decide exit codes or
//! how errors are printed; that belongs to the CLI.

use dify_protocol::envelope::ErrorObject;
use serde_json::Value;

/// The error raised by the plugin inside a `PluginInvokeError` (the innermost object of §2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInnerError {
    /// The plugin's own error type, e.g. `InvokeRateLimitError` or `ValueError`.
    pub error_type: String,
    pub message: String,
    pub args: Value,
}

/// Everything that can go wrong when talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request never got an HTTP answer (connection refused, DNS, TLS, timeout). Dify raises
    /// `PluginDaemonInnerError` (code -500) in this case.
    #[error("PluginDaemonInnerError: {message}")]
    PluginDaemonInnerError { message: String },

    /// The plugin failed while handling an invocation. `inner` is the plugin's error when the
    /// daemon sent it as JSON; `description` is the raw inner text either way.
    #[error("PluginInvokeError: {}", describe_invoke(.inner, .description))]
    PluginInvokeError { inner: Option<Box<PluginInnerError>>, description: String },

    #[error("PluginDaemonBadRequestError: {message}")]
    PluginDaemonBadRequestError { message: String },

    #[error("PluginDaemonNotFoundError: {message}")]
    PluginDaemonNotFoundError { message: String },

    #[error("PluginUniqueIdentifierError: {message}")]
    PluginUniqueIdentifierError { message: String },

    #[error("PluginPermissionDeniedError: {message}")]
    PluginPermissionDeniedError { message: String },

    #[error("PluginDaemonUnauthorizedError: {message}")]
    PluginDaemonUnauthorizedError { message: String },

    #[error("PluginDaemonInternalServerError: {message}")]
    PluginDaemonInternalServerError { message: String },

    #[error("PluginNotFoundError: {message}")]
    PluginNotFoundError { message: String },

    /// An error envelope whose `error_type` this client does not know.
    #[error("got unknown error from plugin daemon: {error_type}: {message} (code {code})")]
    UnknownDaemonError { code: i64, error_type: String, message: String },

    /// A non-success HTTP status whose body is not a daemon envelope (4xx: client side, 5xx: server).
    #[error("HTTP {status} from {url}: {body}")]
    HttpStatus { status: u16, url: String, body: String },

    /// The daemon answered with the router's "route not found": it does not serve this API.
    #[error("the daemon at {url} does not serve this route (route not found); is it a plugin daemon of a compatible version?")]
    RouteNotFound { url: String },

    /// The response could not be read as the expected shape.
    #[error("malformed response from {url}: {message}")]
    MalformedResponse { url: String, message: String },

    /// Waiting for something (an install task) took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),

    /// The caller's input was rejected before any request was sent.
    #[error("invalid input: {0}")]
    Validation(String),
}

fn describe_invoke(inner: &Option<Box<PluginInnerError>>, description: &str) -> String {
    match inner {
        Some(inner) => format!("{}: {}", inner.error_type, inner.message),
        None => description.to_string(),
    }
}

impl ClientError {
    /// The error type name as Dify's Python client spells it (the daemon's `error_type` for daemon
    /// errors), for structured output.
    pub fn kind(&self) -> &str {
        match self {
            ClientError::PluginDaemonInnerError { .. } => "PluginDaemonInnerError",
            ClientError::PluginInvokeError { .. } => "PluginInvokeError",
            ClientError::PluginDaemonBadRequestError { .. } => "PluginDaemonBadRequestError",
            ClientError::PluginDaemonNotFoundError { .. } => "PluginDaemonNotFoundError",
            ClientError::PluginUniqueIdentifierError { .. } => "PluginUniqueIdentifierError",
            ClientError::PluginPermissionDeniedError { .. } => "PluginPermissionDeniedError",
            ClientError::PluginDaemonUnauthorizedError { .. } => "PluginDaemonUnauthorizedError",
            ClientError::PluginDaemonInternalServerError { .. } => "PluginDaemonInternalServerError",
            ClientError::PluginNotFoundError { .. } => "PluginNotFoundError",
            ClientError::UnknownDaemonError { .. } => "UnknownDaemonError",
            ClientError::HttpStatus { status, .. } if *status >= 500 => "PluginDaemonServerSideError",
            ClientError::HttpStatus { .. } => "PluginDaemonClientSideError",
            ClientError::RouteNotFound { .. } => "RouteNotFound",
            ClientError::MalformedResponse { .. } => "MalformedResponse",
            ClientError::Timeout(_) => "Timeout",
            ClientError::Validation(_) => "ValidationError",
        }
    }

    /// Builds the typed error for a failed envelope (`code != 0`) whose `message` is `message`.
    pub(crate) fn from_error_envelope(code: i64, message: &str, url: &str) -> ClientError {
        let object: ErrorObject = match serde_json::from_str(message) {
            Ok(object) => object,
            Err(_) => return ClientError::MalformedResponse { url: url.to_string(), message: format!("{message}, code: {code}") },
        };
        let message = object.message;
        match object.error_type.as_str() {
            "PluginDaemonInnerError" => ClientError::PluginDaemonInnerError { message },
            "PluginInvokeError" => ClientError::invoke_error(message),
            "PluginDaemonBadRequestError" => ClientError::PluginDaemonBadRequestError { message },
            "PluginDaemonNotFoundError" => ClientError::PluginDaemonNotFoundError { message },
            "PluginUniqueIdentifierError" => ClientError::PluginUniqueIdentifierError { message },
            "PluginPermissionDeniedError" => ClientError::PluginPermissionDeniedError { message },
            "PluginDaemonUnauthorizedError" => ClientError::PluginDaemonUnauthorizedError { message },
            "PluginDaemonInternalServerError" => ClientError::PluginDaemonInternalServerError { message },
            "PluginNotFoundError" => ClientError::PluginNotFoundError { message },
            other => ClientError::UnknownDaemonError { code, error_type: other.to_string(), message },
        }
    }

    /// A `PluginInvokeError` whose message is itself the JSON of the plugin's error (§2.4).
    fn invoke_error(description: String) -> ClientError {
        let inner = serde_json::from_str::<Value>(&description).ok().and_then(|value| {
            let object = value.as_object()?;
            Some(Box::new(PluginInnerError {
                error_type: object.get("error_type")?.as_str()?.to_string(),
                message: match object.get("message") {
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
                args: object.get("args").cloned().unwrap_or(Value::Null),
            }))
        });
        ClientError::PluginInvokeError { inner, description }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_daemon_error_type() {
        let cases = [
            ("PluginDaemonBadRequestError", "PluginDaemonBadRequestError"),
            ("PluginDaemonNotFoundError", "PluginDaemonNotFoundError"),
            ("PluginUniqueIdentifierError", "PluginUniqueIdentifierError"),
            ("PluginPermissionDeniedError", "PluginPermissionDeniedError"),
            ("PluginDaemonUnauthorizedError", "PluginDaemonUnauthorizedError"),
            ("PluginDaemonInternalServerError", "PluginDaemonInternalServerError"),
            ("PluginNotFoundError", "PluginNotFoundError"),
            ("PluginDaemonInnerError", "PluginDaemonInnerError"),
            ("SomethingElse", "UnknownDaemonError"),
        ];
        for (wire, kind) in cases {
            let message = format!(r#"{{"message":"boom","error_type":"{wire}","args":null}}"#);
            let error = ClientError::from_error_envelope(-400, &message, "u");
            assert_eq!(error.kind(), kind, "{wire}");
        }
    }

    #[test]
    fn invoke_error_keeps_plugin_inner_error() {
        let message = r#"{"message":"{\"args\":{},\"error_type\":\"InvokeRateLimitError\",\"message\":\"429 too many\"}","error_type":"PluginInvokeError","args":null}"#;
        match ClientError::from_error_envelope(-500, message, "u") {
            ClientError::PluginInvokeError { inner: Some(inner), .. } => {
                assert_eq!(inner.error_type, "InvokeRateLimitError");
                assert_eq!(inner.message, "429 too many");
                assert_eq!(inner.args, serde_json::json!({}));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn invoke_error_with_plain_text_inner_message() {
        let message = r#"{"message":"runtime crashed","error_type":"PluginInvokeError","args":null}"#;
        match ClientError::from_error_envelope(-500, message, "u") {
            ClientError::PluginInvokeError { inner: None, description } => {
                assert_eq!(description, "runtime crashed")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_json_message_is_malformed() {
        let error = ClientError::from_error_envelope(-500, "not json", "u");
        assert_eq!(error.kind(), "MalformedResponse");
        assert!(error.to_string().contains("not json, code: -500"));
    }
}
