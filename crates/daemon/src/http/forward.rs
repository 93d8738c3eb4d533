//! Forwarding an invocation to the node that serves it (`service::cluster::Route::Forward`): the
//! same request (path, body, `X-Plugin-ID`, trace headers) sent with this daemon's server key and the
//! forwarded-by header, so the receiver serves it itself and never forwards it again; the answer
//! streamed back chunk by chunk as it arrives, marked with the serving node (`X-Dify-Served-By`).
//!
//! Owns: the proxy's timeouts (connect from the cluster's client, idle per chunk and for the
//! response head) and the error envelope that ends a forwarded stream whose node stopped answering.
//! Must not: choose the node (the cluster service does) or shape chunks.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use dify_protocol::DaemonError;
use futures::StreamExt;

use super::dispatch::sse_line;
use super::AppState;
use crate::coord::NodeInfo;
use crate::service::cluster::FORWARDED_HEADER;

/// Header of a forwarded answer naming the node that served it.
pub const SERVED_BY_HEADER: &str = "x-dify-served-by";

/// Headers of the original request that travel with it.
const FORWARDED_REQUEST_HEADERS: &[&str] = &["x-plugin-id", "content-type", "traceparent", "tracestate", "dify-plugin-session-id"];

/// Why a forward did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The node could not be reached: the request was not delivered, so it may be served here.
    #[error("node {node} is unreachable: {reason}")]
    Unreachable { node: String, reason: String },
    /// The node took the request but did not answer properly: it must not be served twice.
    #[error("node {node} failed a forwarded invocation: {reason}")]
    Failed { node: String, reason: String },
}

/// Whether the request came from another node.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// Sends `POST path` with `body` to `node` and streams its answer back.
pub async fn forward(state: &AppState, node: &NodeInfo, path: &str, headers: &HeaderMap, body: Bytes) -> Result<Response, ForwardError> {
    let cluster = &state.cluster;
    let idle = cluster.idle_timeout();
    let mut request = cluster
        .client()
        .post(format!("{}{path}", node.url))
        .header("x-api-key", state.server_key.as_ref())
        .header(FORWARDED_HEADER, cluster.node_id())
        .body(body);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(*name) {
            request = request.header(*name, value.as_bytes());
        }
    }
    let response = match tokio::time::timeout(idle, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) if error.is_connect() => return Err(ForwardError::Unreachable { node: node.id.clone(), reason: error.to_string() }),
        // A pooled connection to a node that just died fails like this too: when the node no longer
        // accepts connections at all, it did not (and will not) answer, so the request may be served here.
        Ok(Err(error)) if !accepts_connections(&node.url).await => {
            return Err(ForwardError::Unreachable { node: node.id.clone(), reason: error.to_string() })
        }
        Ok(Err(error)) => return Err(ForwardError::Failed { node: node.id.clone(), reason: error.to_string() }),
        Err(_) => return Err(ForwardError::Failed { node: node.id.clone(), reason: format!("no response within {idle:?}") }),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).map(|value| value.as_bytes().to_vec());
    let is_sse = content_type.as_deref().is_some_and(|value| value.starts_with(b"text/event-stream"));
    let node_id = node.id.clone();
    let chunks = response.bytes_stream();
    // Pulled by the client's writes: the next chunk is read only when the previous one was taken.
    let body = futures::stream::unfold(Some(chunks), move |chunks| {
        let node_id = node_id.clone();
        async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok::<Bytes, std::io::Error>(bytes), Some(chunks))),
                Ok(None) => None,
                Ok(Some(Err(error))) => ended(is_sse, &node_id, &error.to_string()),
                Err(_) => ended(is_sse, &node_id, &format!("silent for {idle:?}")),
            }
        }
    });
    let mut answer = Response::new(Body::from_stream(body));
    *answer.status_mut() = status;
    if let Some(value) = content_type.and_then(|value| HeaderValue::from_bytes(&value).ok()) {
        answer.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&node.id) {
        answer.headers_mut().insert(SERVED_BY_HEADER, value);
    }
    Ok(answer)
}

/// Whether a fresh TCP connection to the node behind `url` succeeds (bounded by one second).
async fn accepts_connections(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let (Some(host), Some(port)) = (url.host_str().map(str::to_owned), url.port_or_known_default()) else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), tokio::net::TcpStream::connect((host.as_str(), port))).await,
        Ok(Ok(_))
    )
}

/// The end of a forwarded stream that broke: an SSE error envelope, or a body error otherwise.
fn ended<S>(is_sse: bool, node: &str, reason: &str) -> Option<(Result<Bytes, std::io::Error>, Option<S>)> {
    tracing::warn!(node, reason, "a forwarded invocation broke off");
    let message = format!("the node serving this invocation ({node}) stopped answering: {reason}");
    if is_sse {
        Some((Ok(sse_line(&DaemonError::internal(message).to_envelope_json())), None))
    } else {
        Some((Err(std::io::Error::other(message)), None))
    }
}

/// A forwarding failure as the caller sees it.
pub fn failure_response(error: &ForwardError) -> Response {
    super::fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string()))
}
