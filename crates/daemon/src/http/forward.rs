//! Forwarding a request to the node that serves it (`service::cluster::Route::Forward`): the same
//! method, path and query, chosen headers and body, sent with this daemon's server key in the
//! cluster key header and the forwarded-by header, so the receiver serves it itself and never
//! forwards it again; the answer (status, end-to-end headers, body) streamed back chunk by chunk as
//! it arrives, marked with the serving node (`X-Dify-Served-By`).
//!
//! Two kinds of request go through it: invocations (`/plugin/{tenant}/dispatch/...` and
//! `/v2/invoke/dispatch/...`, a fixed set of headers and the server key as `X-Api-Key`) and public
//! endpoint calls (`/e/...`, every end-to-end header of the caller, whose own `X-Api-Key` travels
//! untouched). [`serve_elsewhere`] runs the routing loop the three handlers share.
//!
//! Owns: the proxy's timeouts (connect from the cluster's client, idle per chunk and for the
//! response head), the trust of a forwarded request (the cluster key must match), and how a stream
//! whose node stopped answering ends. Must not: choose the node (the cluster service does) or shape
//! chunks.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use dify_protocol::DaemonError;
use futures::StreamExt;

use super::dispatch::sse_line;
use super::AppState;
use crate::coord::NodeInfo;
use crate::service::cluster::{Route, CLUSTER_KEY_HEADER, FORWARDED_HEADER};
use crate::service::Installation;

/// Header of a forwarded answer naming the node that served it.
pub const SERVED_BY_HEADER: &str = "x-dify-served-by";

/// Headers of an invocation that travel with it.
const INVOCATION_HEADERS: &[&str] =
    &["x-plugin-id", "x-plugin-unique-identifier", "content-type", "traceparent", "tracestate", "dify-plugin-session-id"];

/// Headers that concern one connection, never forwarded in either direction (RFC 9110 §7.6.1,
/// plus the legacy `Proxy-Connection`). `Content-Length` of a request is set again from its body.
const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How many times a request is routed again after its node turned out unreachable.
const ROUTE_ATTEMPTS: usize = 3;

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

/// What the answer of a forwarded request is, for ending a stream that breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// A dispatch answer: an SSE stream ends with an error envelope, anything else with a body error.
    Invocation,
    /// A plugin endpoint's answer: without a declared length it ends with the error text (as a local
    /// endpoint stream that fails does); with one, with a body error.
    Endpoint,
}

/// One request to send to another node.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub method: Method,
    /// Path and query, as received.
    pub target: String,
    /// The headers to send (the cluster headers are added by [`forward`]).
    pub headers: HeaderMap,
    pub body: Bytes,
    pub kind: ForwardKind,
}

impl ForwardRequest {
    /// `POST target` of an invocation: its routing, content and trace headers and the server key
    /// as `X-Api-Key` (the receiver's invocation routes check it).
    pub fn invocation(state: &AppState, target: String, headers: &HeaderMap, body: Bytes) -> ForwardRequest {
        let mut sent = HeaderMap::new();
        for name in INVOCATION_HEADERS {
            if let Some(value) = headers.get(*name) {
                sent.insert(*name, value.clone());
            }
        }
        if let Ok(key) = HeaderValue::from_str(&state.server_key) {
            sent.insert("x-api-key", key);
        }
        ForwardRequest { method: Method::POST, target, headers: sent, body, kind: ForwardKind::Invocation }
    }

    /// A public endpoint call as it arrived: every end-to-end header (`Host` and `X-Forwarded-Proto`
    /// included, so the serving node rewrites it as this one would have; the caller's own
    /// `X-Api-Key` too), without a caller's copy of the cluster headers.
    pub fn endpoint(method: Method, target: String, headers: &HeaderMap, body: Bytes) -> ForwardRequest {
        ForwardRequest { method, target, headers: end_to_end(headers, true), body, kind: ForwardKind::Endpoint }
    }
}

/// `headers` without hop-by-hop headers (and those the `Connection` header names) and without the
/// cluster's own headers; without `Content-Length` when `request` (it is set from the body sent).
fn end_to_end(headers: &HeaderMap, request: bool) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let text = name.as_str();
        let dropped = HOP_BY_HOP_HEADERS.contains(&text)
            || named.iter().any(|n| n == text)
            || text == CLUSTER_KEY_HEADER
            || text == FORWARDED_HEADER
            || text == SERVED_BY_HEADER
            || (request && text == "content-length");
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Whether the request came from another node of this cluster: it names the forwarding node and
/// carries this cluster's server key in the cluster key header. A forwarded-by header alone (from
/// an outside caller) is not trusted.
pub fn is_forwarded(state: &AppState, headers: &HeaderMap) -> bool {
    if !headers.contains_key(FORWARDED_HEADER) {
        return false;
    }
    let Some(given) = headers.get(CLUSTER_KEY_HEADER) else { return false };
    let expected = state.server_key.as_bytes();
    !expected.is_empty() && same_bytes(given.as_bytes(), expected)
}

/// Compares in time independent of where the inputs differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves `installation`'s request elsewhere when the cluster says so: `Some(answer)` when another
/// node answered (or failed after taking it), `None` when this node serves it. A node that cannot
/// be reached is skipped for a while and the route asked again (another placed node, or here); a
/// few rounds at most.
/// `request` is built only when the request is forwarded.
pub async fn serve_elsewhere(
    state: &AppState,
    installation: &Installation,
    forwarded: bool,
    request: impl FnOnce() -> ForwardRequest,
) -> Option<Response> {
    let mut make = Some(request);
    let mut built: Option<ForwardRequest> = None;
    for _ in 0..ROUTE_ATTEMPTS {
        let Route::Forward(node) = state.cluster.route(state, installation, forwarded).await else { return None };
        let request = match (built.as_ref(), make.take()) {
            (Some(request), _) => request.clone(),
            (None, Some(make)) => built.insert(make()).clone(),
            (None, None) => return None,
        };
        match forward(state, &node, request).await {
            Ok(response) => return Some(response),
            Err(error @ ForwardError::Unreachable { .. }) => {
                // Not delivered: another node or this one serves it.
                tracing::warn!(%error, "skipping the node");
                state.cluster.mark_unreachable(&node.id);
            }
            Err(error) => return Some(failure_response(&error)),
        }
    }
    None
}

/// Sends `request` to `node` and streams its answer back.
pub async fn forward(state: &AppState, node: &NodeInfo, request: ForwardRequest) -> Result<Response, ForwardError> {
    let cluster = &state.cluster;
    let idle = cluster.idle_timeout();
    let ForwardRequest { method, target, headers, body, kind } = request;
    let mut sent = cluster
        .client()
        .request(method, format!("{}{target}", node.url))
        .headers(headers)
        .header(CLUSTER_KEY_HEADER, state.server_key.as_ref())
        .header(FORWARDED_HEADER, cluster.node_id());
    if !body.is_empty() {
        sent = sent.body(body);
    }
    let response = match tokio::time::timeout(idle, sent.send()).await {
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
    let answer_headers = end_to_end(response.headers(), false);
    let is_sse = answer_headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    let has_length = answer_headers.contains_key(axum::http::header::CONTENT_LENGTH);
    let ending = match kind {
        ForwardKind::Invocation if is_sse => Ending::SseEnvelope,
        ForwardKind::Endpoint if !has_length => Ending::Text,
        _ => Ending::BodyError,
    };
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
                Ok(Some(Err(error))) => ended(ending, &node_id, &error.to_string()),
                Err(_) => ended(ending, &node_id, &format!("silent for {idle:?}")),
            }
        }
    });
    let mut answer = Response::new(Body::from_stream(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = answer_headers;
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

/// How a forwarded stream that broke ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// One more SSE line with the error envelope, then the end of the body.
    SseEnvelope,
    /// The error envelope as the last body bytes, then the end of the body.
    Text,
    /// A body error (the connection is closed: the caller sees a cut answer).
    BodyError,
}

/// The end of a forwarded stream that broke.
fn ended<S>(ending: Ending, node: &str, reason: &str) -> Option<(Result<Bytes, std::io::Error>, Option<S>)> {
    tracing::warn!(node, reason, "a forwarded request broke off");
    let message = format!("the node serving this invocation ({node}) stopped answering: {reason}");
    match ending {
        Ending::SseEnvelope => Some((Ok(sse_line(&DaemonError::internal(message).to_envelope_json())), None)),
        Ending::Text => Some((Ok(Bytes::from(DaemonError::internal(message).to_envelope_json())), None)),
        Ending::BodyError => Some((Err(std::io::Error::other(message)), None)),
    }
}

/// A forwarding failure as the caller sees it.
pub fn failure_response(error: &ForwardError) -> Response {
    super::fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_headers as headers;

    #[test]
    fn endpoint_requests_keep_end_to_end_headers_only() {
        let incoming = headers(&[
            ("host", "public.example"),
            ("x-forwarded-proto", "https"),
            ("x-api-key", "the caller's own"),
            ("accept", "a"),
            ("accept", "b"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-dify-forwarded-by", "forged"),
            ("x-dify-cluster-key", "guess"),
        ]);
        let request = ForwardRequest::endpoint(Method::PUT, "/e/h/x?q=1".into(), &incoming, Bytes::from_static(b"hello"));
        let mut names: Vec<(String, String)> =
            request.headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string())).collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("accept", "a"),
                ("accept", "b"),
                ("host", "public.example"),
                ("x-api-key", "the caller's own"),
                ("x-forwarded-proto", "https")
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        // An answer keeps its length.
        let answer = end_to_end(&headers(&[("content-length", "3"), ("x-reply", "r"), ("connection", "close")]), false);
        assert_eq!(answer.len(), 2);
    }

    #[test]
    fn keys_compare_as_bytes() {
        assert!(same_bytes(b"key", b"key"));
        assert!(!same_bytes(b"key", b"kez"));
        assert!(!same_bytes(b"key", b"key2"));
        assert!(!same_bytes(b"", b"k"));
    }
}
