//! The admin API `/admin/...` (upstream's `adminGroup`), served only when `ADMIN_API_ENABLED`:
//! `POST /admin/plugin/serverless/reinstall` (an SSE stream of install events) and
//! `POST /admin/plugin/serverless/switch-endpoint` (`data: true`), both behind `X-Admin-Api-Key`.
//!
//! Owns: the admin key check, binding (Go validator wording for upstream's anonymous request
//! structs) and framing the reinstall events as SSE lines. Must not: launch or bridge functions
//! (the admin service does).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dify_protocol::{DaemonError, Envelope, PluginUniqueIdentifier};
use serde_json::Value;

use super::bind::json_body;
use super::dispatch::{event_stream, sse_line};
use super::{fail_with_status, respond, AppState};
use crate::service::admin::{self, REINSTALL_TIMEOUT_SECS};

/// The admin key header.
pub const ADMIN_KEY_HEADER: &str = "X-Admin-Api-Key";

/// The admin routes when the admin API is enabled, nothing otherwise.
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.settings.admin_api_enabled {
        return Router::new();
    }
    Router::new()
        .route("/admin/plugin/serverless/reinstall", post(reinstall))
        .route("/admin/plugin/serverless/switch-endpoint", post(switch_endpoint))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin_key))
}

/// Rejects requests whose `X-Admin-Api-Key` differs from `ADMIN_API_KEY` (HTTP 401).
async fn require_admin_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request.headers().get(ADMIN_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let expected = state.settings.admin_api_key.as_deref().unwrap_or("");
    if expected.is_empty() || given.as_bytes() != expected.as_bytes() {
        return fail_with_status(StatusCode::UNAUTHORIZED, DaemonError::unauthorized());
    }
    next.run(request).await
}

/// The Go validator's message for a field of an anonymous request struct (no struct prefix).
fn field_failure(field: &str, tag: &str) -> String {
    format!("Key: '{field}' Error:Field validation for '{field}' failed on the '{tag}' tag")
}

/// Binds the body's fields, reporting every failure the way the validator does (one per line).
fn bind(body: &Value, fields: &[(&str, &str)]) -> Result<(PluginUniqueIdentifier, Vec<String>), super::bind::BindError> {
    let mut failures = Vec::new();
    let mut values = Vec::new();
    let mut uid = None;
    for (key, go_field) in fields {
        let value = body.get(*key).and_then(Value::as_str).unwrap_or("").to_string();
        if value.is_empty() {
            failures.push(field_failure(go_field, "required"));
        } else if *key == "plugin_unique_identifier" {
            match PluginUniqueIdentifier::parse(&value) {
                Ok(parsed) => uid = Some(parsed),
                Err(_) => failures.push(field_failure(go_field, "plugin_unique_identifier")),
            }
        }
        values.push(value);
    }
    match uid {
        Some(uid) if failures.is_empty() => Ok((uid, values)),
        _ => Err(super::bind::BindError::new(DaemonError::bad_request(failures.join("\n")))),
    }
}

async fn reinstall(State(state): State<AppState>, body: Bytes) -> Response {
    let (uid, _) = match bind(&json_body(&body), &[("plugin_unique_identifier", "PluginUniqueIdentifier")]) {
        Ok(bound) => bound,
        Err(error) => return error.into_response(),
    };
    let mut events = admin::reinstall(&state, uid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(REINSTALL_TIMEOUT_SECS);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => match serde_json::to_string(&Envelope::success(&event)) {
                        Ok(json) => sse_line(&json),
                        Err(_) => return,
                    },
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = sender.send(sse_line(&DaemonError::internal("killed by timeout").to_envelope_json())).await;
                    return;
                }
                _ = sender.closed() => return,
            };
            if sender.send(line).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<Bytes, Infallible>(bytes), receiver))
    });
    event_stream(Body::from_stream(stream))
}

async fn switch_endpoint(State(state): State<AppState>, body: Bytes) -> Response {
    let fields =
        [("plugin_unique_identifier", "PluginUniqueIdentifier"), ("function_name", "FunctionName"), ("function_url", "FunctionURL")];
    let (uid, values) = match bind(&json_body(&body), &fields) {
        Ok(bound) => bound,
        Err(error) => return error.into_response(),
    };
    respond(admin::switch_endpoint(&state, &uid, &values[1], &values[2]).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_wording_has_no_struct_prefix() {
        assert_eq!(
            field_failure("FunctionURL", "required"),
            "Key: 'FunctionURL' Error:Field validation for 'FunctionURL' failed on the 'required' tag"
        );
    }
}
