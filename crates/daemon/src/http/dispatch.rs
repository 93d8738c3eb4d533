//! The dispatch (invoke) routes `POST /plugin/{tenant_id}/dispatch/...` (docs/http.md §4.6): one
//! handler driven by the route table in `dify_protocol::access`, answering with the SSE framing of
//! docs/http.md §3 (`data: <envelope>\n\n` per chunk, the connection closing at the end).
//!
//! In a cluster, a validated request whose plugin is served by another node goes there through
//! `http::forward` (a node that cannot be reached is skipped and the request served here).
//!
//! Owns: the `X-Plugin-ID` → installation lookup statuses of docs/http.md §1.3, request binding and validation,
//! SSE rendering and error nesting (docs/http.md §2.4). Must not: find, launch or talk to plugin runtimes (the
//! invocation service does) or contain per-route handlers.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use dify_protocol::access::{find_dispatch_route, DispatchRoute, ResponseMode};
use dify_protocol::message::{InvocationContext, PluginSessionError};
use dify_protocol::{DaemonError, ErrorType};
use serde_json::{Map, Value};

use super::forward::{self, ForwardError};
use super::{fail_with_status, ok, AppState, NOT_FOUND_BODY};
use crate::service::cluster::Route;
use crate::service::invocation::{invoke, Invocation, InvocationError};
use crate::service::{capabilities, find_installation, FindInstallationError};
use crate::session::{ChunkShaper, SessionOutput};

/// The dispatch routes, to be nested under `/plugin/{tenant_id}`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/dispatch/{*route}", post(dispatch))
}

async fn dispatch(State(state): State<AppState>, Path(params): Path<HashMap<String, String>>, headers: HeaderMap, body: Bytes) -> Response {
    let tenant_id = params.get("tenant_id").cloned().unwrap_or_default();
    let route_path = format!("/{}", params.get("route").map(String::as_str).unwrap_or_default());
    let Some(route) = find_dispatch_route(&route_path) else {
        return plain_json(StatusCode::NOT_FOUND, NOT_FOUND_BODY.to_string());
    };
    state.active_dispatch_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let response = dispatch_route(&state, &tenant_id, route, &headers, &body).await;
    state.active_dispatch_requests.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    response
}

async fn dispatch_route(state: &AppState, tenant_id: &str, route: &'static DispatchRoute, headers: &HeaderMap, body: &[u8]) -> Response {
    let plugin_id = headers.get("x-plugin-id").and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
    if plugin_id.is_empty() {
        return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request("plugin_id is required"));
    }
    if tenant_id.is_empty() {
        return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request("tenant_id is required"));
    }
    let installation = match find_installation(state, tenant_id, &plugin_id).await {
        Ok(Some(installation)) => installation,
        Ok(None) => return fail_with_status(StatusCode::NOT_FOUND, DaemonError::plugin_not_found()),
        Err(FindInstallationError::BadIdentifier(message)) => {
            return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::unique_identifier(message))
        }
        Err(FindInstallationError::Store(error)) => {
            return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string()))
        }
    };

    let request: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    let mut data = match request.get("data") {
        Some(Value::Object(data)) => data.clone(),
        _ => {
            return fail_with_status(
                StatusCode::BAD_REQUEST,
                DaemonError::bad_request("Key: 'InvokePluginRequest.Data' Error:Field validation for 'Data' failed on the 'required' tag"),
            )
        }
    };
    if let Err(message) = route.validate(&data) {
        return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request(message));
    }
    route.complete_payload(&mut data);
    if let Some(declaration) = &installation.declaration {
        if let Err(unsupported) = capabilities::check_route(&installation.plugin_id, declaration, route, &data) {
            return fail_with_status(StatusCode::BAD_REQUEST, unsupported.to_daemon_error());
        }
    }
    // In a cluster the plugin may be placed on (or, debugging, connected to) another node.
    // A node that cannot be reached is skipped for a while and the route asked again (another placed
    // node, or here); a few rounds at most.
    let forwarded = forward::is_forwarded(headers);
    for _ in 0..3 {
        let Route::Forward(node) = state.cluster.route(state, &installation, forwarded).await else { break };
        let path = format!("/plugin/{tenant_id}/dispatch{}", route.path);
        match forward::forward(state, &node, &path, headers, Bytes::copy_from_slice(body)).await {
            Ok(response) => return response,
            Err(error @ ForwardError::Unreachable { .. }) => {
                // Not delivered: another node or this one serves it.
                tracing::warn!(%error, "skipping the node");
                state.cluster.mark_unreachable(&node.id);
            }
            Err(error) => return forward::failure_response(&error),
        }
    }
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_owned);

    let invocation = Invocation {
        user_id: text("user_id").unwrap_or_default(),
        access_type: route.access_type,
        action: route.action.to_string(),
        payload: data,
        context: InvocationContext {
            conversation_id: text("conversation_id"),
            message_id: text("message_id"),
            app_id: text("app_id"),
            endpoint_id: text("endpoint_id"),
            context: request.get("context").filter(|c| !c.is_null()).cloned(),
        },
    };
    let session = match invoke(state, &installation, invocation).await {
        Ok(session) => session,
        Err(error @ (InvocationError::NoRuntime | InvocationError::Unavailable(_))) => {
            return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string()))
        }
        Err(InvocationError::Start(error)) => {
            let line = sse_line(&DaemonError::internal(error.to_string()).to_envelope_json());
            return event_stream(Body::from(line));
        }
    };

    match route.response {
        ResponseMode::EventStream => event_stream(sse_body(session, ChunkShaper::new(route.chunks))),
        ResponseMode::SingleJson => single_json(session, ChunkShaper::new(route.chunks)).await,
    }
}

/// `data: <json>\n\n`.
pub(super) fn sse_line(json: &str) -> Bytes {
    let mut line = Vec::with_capacity(json.len() + 8);
    line.extend_from_slice(b"data: ");
    line.extend_from_slice(json.as_bytes());
    line.extend_from_slice(b"\n\n");
    Bytes::from(line)
}

/// The SSE line of a successful chunk, `data: {"code":0,"message":"success","data":<chunk>}`,
/// serialised straight into the line's buffer (the same bytes as the protocol's `Envelope::success`).
fn success_sse_line(chunk: &Value) -> Bytes {
    const HEAD: &[u8] = b"data: {\"code\":0,\"message\":\"success\",\"data\":";
    let mut line = Vec::with_capacity(HEAD.len() + 128);
    line.extend_from_slice(HEAD);
    if serde_json::to_writer(&mut line, chunk).is_err() {
        // A `Value` always serialises; keep the old behaviour's empty body if it ever does not.
        return sse_line("");
    }
    line.extend_from_slice(b"}\n\n");
    Bytes::from(line)
}

/// The success envelope through the protocol's `Envelope` type: the reference for [`success_sse_line`].
#[cfg(test)]
fn success_json(chunk: &Value) -> String {
    serde_json::to_string(&dify_protocol::Envelope::success(chunk)).unwrap_or_default()
}

/// The envelope that ends a failed stream: `PluginInvokeError` whose message is the sorted inner JSON.
fn failure_error(output: &SessionOutput) -> Option<DaemonError> {
    match output {
        SessionOutput::Chunk(_) => None,
        SessionOutput::Failed(error) => Some(plugin_invoke_error(error)),
        SessionOutput::TimedOut => Some(DaemonError::internal("killed by timeout")),
    }
}

fn plugin_invoke_error(error: &PluginSessionError) -> DaemonError {
    DaemonError::new(ErrorType::PluginInvokeError, super::plugin_errors::for_caller(error).to_sorted_json())
}

pub(super) fn sse_body(mut session: crate::session::SessionStream, mut shaper: ChunkShaper) -> Body {
    let stream = async_stream_body(move |sender| async move {
        loop {
            // A client that disconnects ends the session even while the plugin is silent.
            let output = tokio::select! {
                output = session.next() => match output { Some(output) => output, None => return },
                _ = sender.closed() => return,
            };
            let line = match output {
                SessionOutput::Chunk(item) => match shaper.shape(item) {
                    Ok(Some(shaped)) => success_sse_line(&shaped),
                    Ok(None) => continue,
                    Err(error) => {
                        let _ = sender.send(sse_line(&plugin_invoke_error(&error).to_envelope_json())).await;
                        return;
                    }
                },
                other => match failure_error(&other) {
                    Some(error) => {
                        let _ = sender.send(sse_line(&error.to_envelope_json())).await;
                        return;
                    }
                    None => continue,
                },
            };
            if sender.send(line).await.is_err() {
                // The client went away: dropping the session ends it.
                return;
            }
        }
    });
    Body::from_stream(stream)
}

/// Runs `produce` in a task and exposes what it sends as a body stream; dropping the body (client
/// disconnect) closes the channel, which the producer sees as a failed send.
fn async_stream_body<F, Fut>(produce: F) -> impl futures::Stream<Item = Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(produce(sender));
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|bytes| (Ok(bytes), receiver)) })
}

pub(super) async fn single_json(mut session: crate::session::SessionStream, mut shaper: ChunkShaper) -> Response {
    while let Some(output) = session.next().await {
        match output {
            SessionOutput::Chunk(item) => match shaper.shape(item) {
                Ok(Some(shaped)) => return ok(shaped),
                Ok(None) => continue,
                Err(error) => return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, plugin_invoke_error(&error)),
            },
            other => {
                if let Some(error) = failure_error(&other) {
                    return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, error);
                }
            }
        }
    }
    fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal("plugin returned no response"))
}

pub(super) fn event_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

pub(super) fn plain_json(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_are_byte_exact() {
        let chunk = serde_json::json!({"type": "text", "message": {"text": "hello"}, "meta": null});
        assert_eq!(
            success_sse_line(&chunk),
            Bytes::from_static(b"data: {\"code\":0,\"message\":\"success\",\"data\":{\"type\":\"text\",\"message\":{\"text\":\"hello\"},\"meta\":null}}\n\n")
        );
        for chunk in [
            serde_json::json!({"z": 1, "a": ["é\u{1F600}", "\"quoted\"\n\t\\", null, 1.5, -3, true]}),
            serde_json::json!("plain"),
            serde_json::json!(null),
            serde_json::json!({}),
        ] {
            assert_eq!(success_sse_line(&chunk), sse_line(&success_json(&chunk)), "{chunk}");
        }
        // A chunk as a plugin writes it (Python separators, `\uXXXX` and `\/` escapes, float spellings):
        // the line built from its canonical compact text is the line built from the parsed value.
        for raw in [
            r#"{"type": "text", "message": {"text": "caf\u00e9 \ud83d\ude00 a\/b"}, "meta": {"n": 1.0, "e": 1e0, "m": -0}}"#,
            r#"{"type":"json","message":{"json_object":{"text":"hi","length":2}},"meta":null}"#,
        ] {
            let parsed: Value = serde_json::from_str(raw).unwrap();
            let mut line = b"data: {\"code\":0,\"message\":\"success\",\"data\":".to_vec();
            line.extend_from_slice(&dify_protocol::compact::canonical_compact(raw.as_bytes()).unwrap());
            line.extend_from_slice(b"}\n\n");
            assert_eq!(success_sse_line(&parsed), Bytes::from(line), "{raw}");
        }
        let error =
            PluginSessionError { error_type: "InvokeRateLimitError".into(), message: "429 too many".into(), args: serde_json::json!({}) };
        assert_eq!(
            sse_line(&plugin_invoke_error(&error).to_envelope_json()),
            Bytes::from_static(
                b"data: {\"code\":-500,\"message\":\"{\\\"message\\\":\\\"{\\\\\\\"args\\\\\\\":{},\\\\\\\"error_type\\\\\\\":\\\\\\\"InvokeRateLimitError\\\\\\\",\\\\\\\"message\\\\\\\":\\\\\\\"429 too many\\\\\\\"}\\\",\\\"error_type\\\":\\\"PluginInvokeError\\\",\\\"args\\\":null}\",\"data\":null}\n\n"
            )
        );
        assert_eq!(
            sse_line(&failure_error(&SessionOutput::TimedOut).unwrap().to_envelope_json()),
            Bytes::from_static(b"data: {\"code\":-500,\"message\":\"{\\\"message\\\":\\\"killed by timeout\\\",\\\"error_type\\\":\\\"PluginDaemonInternalServerError\\\",\\\"args\\\":null}\",\"data\":null}\n\n")
        );
    }
}
