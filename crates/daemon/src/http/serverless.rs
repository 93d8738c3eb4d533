//! `POST /backwards-invocation/transaction` (docs/protocol.md §3.4): the channel a serverless plugin
//! uses for its backwards invocations. The route exists only on `PLATFORM=serverless`; it is not behind
//! `X-Api-Key` (the `Dify-Plugin-Session-ID` header names the session instead).
//!
//! In a cluster the session may live on another node (the one that started the invocation): a
//! transaction for a session this node does not hold is forwarded, through `http::forward`, to the
//! node the session's owner key names, and its answer streamed back.
//!
//! Owns: binding the request (≤ 6 MiB body), the `SessionNotFound` answer, the answer when the node
//! holding the session cannot be reached, and framing the answers as `text/event-stream` with `\n\n`
//! keep-alives every 25 s, ending after the `end` event or at `MAX_SERVERLESS_TRANSACTION_TIMEOUT`.
//! Must not: execute invocations (the session layer does, through the serverless runtime's bridge) or
//! look up sessions' nodes (the cluster service does).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::json;

use super::forward::{self, ForwardError};
use super::AppState;
use crate::coord::NodeInfo;
use crate::runtime::serverless::TransactionError;

/// Where a transaction is forwarded to (the route's path).
const TRANSACTION_PATH: &str = "/backwards-invocation/transaction";

/// Largest transaction body accepted.
const MAX_TRANSACTION_BODY: usize = 6 * 1024 * 1024;
/// Interval of the `\n\n` keep-alives written while an answer is pending.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(25);

/// The transaction route on `PLATFORM=serverless`, nothing otherwise.
pub fn routes(state: &AppState) -> Router<AppState> {
    if state.settings.platform() != crate::config::Platform::Serverless {
        return Router::new();
    }
    Router::new()
        .route("/backwards-invocation/transaction", post(transaction))
        .layer(DefaultBodyLimit::max(MAX_TRANSACTION_BODY))
}

async fn transaction(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let session_id = headers.get("dify-plugin-session-id").and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
    let Some(serverless) = state.runtime.serverless() else {
        return json_response(StatusCode::BAD_REQUEST, json!({"event": "error", "message": "serverless runtime is not enabled"}));
    };
    let opened = serverless.open_transaction(&session_id, &body);
    let mut answers = match opened {
        Ok(answers) => answers,
        Err(TransactionError::SessionNotFound { session_id, backwards_request_id, detail }) => {
            // Another node may hold the session (never asked again for a forwarded request).
            if !forward::is_forwarded(&state, &headers) {
                if let Some(owner) = state.cluster.session_owner(&session_id).await {
                    return forward_to_owner(&state, &owner, &session_id, &backwards_request_id, &headers, body).await;
                }
            }
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({
                    "backwards_request_id": backwards_request_id,
                    "event": "error",
                    "message": "failed to get session info from cache",
                    "data": {"error_type": "SessionNotFound", "detail": detail, "session_id": session_id},
                }),
            );
        }
        Err(error @ TransactionError::BadRequest(_)) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"event": "error", "message": error.to_string()}));
        }
    };
    let deadline = tokio::time::Instant::now() + serverless.config().transaction_timeout;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE_INTERVAL, KEEP_ALIVE_INTERVAL);
        loop {
            let chunk = tokio::select! {
                answer = answers.recv() => match answer {
                    Some(answer) => answer,
                    None => return,
                },
                _ = keep_alive.tick() => Bytes::from_static(b"\n\n"),
                _ = tokio::time::sleep_until(deadline) => return,
                _ = sender.closed() => return,
            };
            if sender.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<Bytes, Infallible>(bytes), receiver))
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

/// Sends the transaction to `owner`, the node holding the session, and streams its answer back
/// (keep-alives included); a node that cannot be reached or fails is answered with an error object
/// (HTTP 502) naming it, bounded by the cluster's connect and idle timeouts.
async fn forward_to_owner(
    state: &AppState,
    owner: &NodeInfo,
    session_id: &str,
    backwards_request_id: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let request = forward::ForwardRequest::invocation(state, TRANSACTION_PATH.to_string(), headers, body);
    match forward::forward(state, owner, request).await {
        Ok(response) => response,
        Err(error) => {
            if matches!(error, ForwardError::Unreachable { .. }) {
                state.cluster.mark_unreachable(&owner.id);
            }
            tracing::warn!(%error, session_id, "cannot forward a backwards-invocation transaction to the node holding its session");
            json_response(
                StatusCode::BAD_GATEWAY,
                json!({
                    "backwards_request_id": backwards_request_id,
                    "event": "error",
                    "message": format!("the node holding session {session_id} ({}) did not answer", owner.id),
                    "data": {"error_type": "SessionNodeUnreachable", "detail": error.to_string(), "session_id": session_id, "node_id": owner.id},
                }),
            )
        }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}
