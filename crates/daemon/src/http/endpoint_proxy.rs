//! The public plugin endpoints `/e/{hook_id}/*path` (docs/http.md §4.7, docs/state.md §3.2):
//! no API key; the request is rewritten (path, host, hook headers, proxy headers removed), serialised
//! as an HTTP/1.1 request and sent hex-encoded to the plugin as `endpoint`/`invoke_endpoint` with
//! the decrypted settings; the plugin's status, headers and hex body chunks are streamed back raw.
//!
//! In a cluster, once the endpoint is found, a request whose plugin is served by another node goes
//! there unchanged through `http::forward` (that node rewrites it); the cluster's headers are
//! stripped from every request before it is serialised for a plugin.
//!
//! Owns: the request rewrite and its wire form, the error statuses of docs/http.md §4.7, the response streaming.
//! Must not: look rows up or decrypt settings itself (`service::endpoint_invoke` does), or find,
//! launch or talk to runtimes (`service::invocation` does, as for dispatch).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;
use dify_protocol::access::AccessType;
use dify_protocol::message::InvocationContext;
use dify_protocol::DaemonError;
use serde_json::{Map, Value};

use super::forward::{self, ForwardRequest};
use super::{fail_with_status, AppState};
use crate::service::cluster::{CLUSTER_KEY_HEADER, FORWARDED_HEADER};
use crate::service::endpoint_invoke::{decrypted_settings, find_endpoint_target, EndpointInvokeError};
use crate::service::invocation::{find_runtime, Invocation};
use crate::session::{SessionOutput, SessionStream};

/// Largest request body forwarded to a plugin. Upstream silently truncates beyond it; a body that
/// is too large is refused here instead (HTTP 413), so a plugin never sees a cut request.
pub const MAX_ENDPOINT_REQUEST_BODY: usize = 10 * 1024 * 1024;

/// Request headers removed before the request is handed to the plugin: those that would leak the
/// caller's network path, and the cluster's own (the server key must never reach a plugin, whether
/// or not the request really came from another node).
const STRIPPED_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-original-url",
    "x-original-host",
    CLUSTER_KEY_HEADER,
    FORWARDED_HEADER,
];

/// Headers the serialised request carries in its own way (Host line, recomputed length, no chunking).
const FRAMING_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "trailer"];

/// Plugin response headers that concern a connection, not the answer; the daemon's server sets its
/// own. A plugin's `Content-Length` is kept (the body is cut to it, as upstream's writer does).
const HOP_BY_HOP_RESPONSE_HEADERS: &[&str] = &["transfer-encoding", "connection", "keep-alive"];

/// The proxy routes; none when `PLUGIN_ENDPOINT_ENABLED` is false.
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.settings.plugin_endpoint_enabled {
        return Router::new();
    }
    let methods = MethodFilter::GET
        .or(MethodFilter::HEAD)
        .or(MethodFilter::POST)
        .or(MethodFilter::PUT)
        .or(MethodFilter::DELETE)
        .or(MethodFilter::OPTIONS)
        .or(MethodFilter::PATCH);
    Router::new()
        .route("/e/{hook_id}", on(methods, proxy))
        .route("/e/{hook_id}/", on(methods, proxy))
        .route("/e/{hook_id}/{*path}", on(methods, proxy))
}

/// `/e/abc/x/y` → (`abc`, `/x/y`), from the raw (still percent-encoded) path.
fn split_hook_path(raw_path: &str) -> (&str, &str) {
    let rest = raw_path.strip_prefix("/e/").unwrap_or(raw_path);
    match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    }
}

fn invoke_error_response(error: EndpointInvokeError) -> Response {
    match error {
        EndpointInvokeError::UnknownHook => fail_with_status(StatusCode::NOT_FOUND, DaemonError::bad_request("endpoint not found")),
        EndpointInvokeError::InstallationMissing => {
            fail_with_status(StatusCode::NOT_FOUND, DaemonError::bad_request("plugin installation not found"))
        }
        EndpointInvokeError::BadIdentifier(message) => fail_with_status(StatusCode::BAD_REQUEST, DaemonError::unique_identifier(message)),
        EndpointInvokeError::Disabled => fail_with_status(StatusCode::NOT_FOUND, DaemonError::not_found("endpoint not found")),
        EndpointInvokeError::NoEndpointDeclaration => fail_with_status(StatusCode::NOT_FOUND, DaemonError::plugin_not_found()),
        EndpointInvokeError::Decrypt(message) => {
            fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(format!("failed to decrypt settings: {message}")))
        }
        EndpointInvokeError::Store(error) => {
            tracing::error!(%error, "endpoint lookup failed");
            fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal("internal server error"))
        }
    }
}

fn body_too_large() -> Response {
    fail_with_status(
        StatusCode::PAYLOAD_TOO_LARGE,
        DaemonError::bad_request(format!("request body is larger than {MAX_ENDPOINT_REQUEST_BODY} bytes")),
    )
}

async fn proxy(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (hook_id, path) = split_hook_path(parts.uri.path());
    let (hook_id, path) = (hook_id.to_string(), path.to_string());

    let target = match find_endpoint_target(&state, &hook_id).await {
        Ok(target) => target,
        Err(error) => return invoke_error_response(error),
    };

    let declared_length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_ENDPOINT_REQUEST_BODY as u64) {
        discard_body(body.into_data_stream()).await;
        return body_too_large();
    }
    let body = match read_limited_body(body).await {
        Ok(body) => body,
        Err(BodyReadError::TooLarge) => return body_too_large(),
        Err(BodyReadError::Read(message)) => {
            return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request(format!("failed to read request body: {message}")))
        }
    };

    let body = Bytes::from(body);
    // In a cluster the plugin may be placed on (or, debugging, connected to) another node: the
    // request goes there as it arrived, and that node rewrites it for the plugin.
    let forwarded = forward::is_forwarded(&state, &parts.headers);
    let elsewhere = || {
        let target = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| parts.uri.path().to_owned());
        let mut request = ForwardRequest::endpoint(parts.method.clone(), target, &parts.headers, body.clone());
        if !request.headers.contains_key(header::HOST) {
            // The host this node would have used, rather than the serving node's address.
            let host = parts.uri.authority().map(|a| a.to_string()).unwrap_or_else(|| "localhost".to_string());
            if let Ok(host) = HeaderValue::from_str(&host) {
                request.headers.insert(header::HOST, host);
            }
        }
        request
    };
    if let Some(response) = forward::serve_elsewhere(&state, &target.installation, forwarded, elsewhere).await {
        return response;
    }

    let request_target = match parts.uri.query() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.clone(),
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let raw = raw_http_request(&RawRequestParts {
        method: &parts.method,
        request_target: &request_target,
        path: &path,
        headers: &parts.headers,
        incoming_host: host.as_deref().unwrap_or("localhost"),
        hook_id: &hook_id,
        body: &body,
    });

    let runtime = match find_runtime(&state, &target.installation).await {
        Ok(runtime) => runtime,
        Err(_) => return fail_with_status(StatusCode::NOT_FOUND, DaemonError::plugin_not_found()),
    };
    if let Err(error) = target.settings_schema() {
        return invoke_error_response(error);
    }
    let settings = match decrypted_settings(&state, &target).await {
        Ok(settings) => settings,
        Err(error) => return invoke_error_response(error),
    };
    let mut payload = Map::new();
    payload.insert("raw_http_request".into(), Value::String(hex::encode(&raw)));
    payload.insert("settings".into(), Value::Object(settings));
    let invocation = Invocation {
        user_id: String::new(),
        access_type: AccessType::Endpoint,
        action: "invoke_endpoint".to_string(),
        payload: payload.into(),
        context: InvocationContext { endpoint_id: Some(target.endpoint.id.clone()), ..Default::default() },
    };
    let session = match runtime.start(&state, invocation).await {
        Ok(session) => session,
        Err(error) => return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string())),
    };
    plugin_response(session).await
}

enum BodyReadError {
    TooLarge,
    Read(String),
}

/// The whole request body, refused as soon as it grows past [`MAX_ENDPOINT_REQUEST_BODY`].
async fn read_limited_body(body: Body) -> Result<Vec<u8>, BodyReadError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| BodyReadError::Read(e.to_string()))?;
        if out.len() + piece.len() > MAX_ENDPOINT_REQUEST_BODY {
            discard_body(stream).await;
            return Err(BodyReadError::TooLarge);
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// How much of a refused body is read and thrown away, and for how long, before answering 413.
const DISCARD_LIMIT: usize = 4 * MAX_ENDPOINT_REQUEST_BODY;
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops the rest of a refused body (bounded in bytes and time), so a client that is still
/// sending receives the 413 answer instead of a reset connection in the middle of its upload.
async fn discard_body(mut stream: axum::body::BodyDataStream) {
    use futures::StreamExt;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(piece)) = stream.next().await {
            seen += piece.len();
            if seen > DISCARD_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
}

/// What [`raw_http_request`] serialises.
struct RawRequestParts<'a> {
    method: &'a Method,
    /// Path and query as sent on the request line.
    request_target: &'a str,
    /// The `*path` part, for `Dify-Hook-Url`.
    path: &'a str,
    headers: &'a HeaderMap,
    incoming_host: &'a str,
    hook_id: &'a str,
    body: &'a [u8],
}

/// `content-type` → `Content-Type`, as Go writes header names.
fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        upper = c == '-';
    }
    out
}

/// The rewritten request in HTTP/1.1 wire format: request line, `Host`, `Content-Length`, the other
/// headers sorted by name (one line per value), a blank line and the body.
fn raw_http_request(parts: &RawRequestParts<'_>) -> Vec<u8> {
    let header_text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let host = header_text("x-original-host").unwrap_or(parts.incoming_host);
    let mut headers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, value) in parts.headers {
        let name = name.as_str();
        if STRIPPED_HEADERS.contains(&name) || FRAMING_HEADERS.contains(&name) {
            continue;
        }
        headers.entry(canonical_header_name(name)).or_default().push(value.as_bytes().to_vec());
    }
    headers.insert("Dify-Hook-Id".into(), vec![parts.hook_id.as_bytes().to_vec()]);
    if header_text("dify-hook-url").is_none() {
        let https = header_text("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
        let scheme = if https { "https" } else { "http" };
        headers.insert("Dify-Hook-Url".into(), vec![format!("{scheme}://{host}/e/{}{}", parts.hook_id, parts.path).into_bytes()]);
    }

    let mut out = Vec::with_capacity(parts.body.len() + 1024);
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", parts.method, parts.request_target).as_bytes());
    let body_methods = [Method::POST, Method::PUT, Method::PATCH];
    if !parts.body.is_empty() || body_methods.contains(parts.method) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", parts.body.len()).as_bytes());
    }
    for (name, values) in &headers {
        for value in values {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(parts.body);
    out
}

/// One plugin chunk `{status?, headers?, result?}`.
#[derive(Debug, Default, PartialEq)]
struct EndpointChunk {
    status: Option<u16>,
    headers: Vec<(String, String)>,
    /// The decoded body piece, when the chunk carries `result`.
    body: Option<Vec<u8>>,
}

fn parse_chunk(item: &Value) -> Result<EndpointChunk, String> {
    let Value::Object(object) = item else {
        return Err(format!("endpoint response chunk is not an object: {item}"));
    };
    let status = match object.get("status") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().and_then(|s| u16::try_from(s).ok()).ok_or_else(|| format!("invalid endpoint status {value}"))?),
    };
    let headers = match object.get("headers") {
        Some(Value::Object(map)) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect()
        }
        _ => Vec::new(),
    };
    let body = match object.get("result") {
        None | Some(Value::Null) => None,
        Some(Value::String(encoded)) => Some(hex::decode(encoded).map_err(|e| format!("invalid hex in endpoint response: {e}"))?),
        Some(other) => return Err(format!("invalid endpoint response result: {other}")),
    };
    Ok(EndpointChunk { status, headers, body })
}

/// Reads the session up to the first body piece, then answers with the collected status and
/// headers and streams the rest of the body. Failures before that point are JSON 500s; later ones
/// are written into the body as text, since the status is already sent.
async fn plugin_response(mut session: SessionStream) -> Response {
    let mut status: Option<u16> = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    let first_piece = loop {
        match session.next().await {
            Some(SessionOutput::Chunk(item)) => match parse_chunk(&item.to_value()) {
                Ok(chunk) => {
                    status = chunk.status.or(status);
                    headers.extend(chunk.headers);
                    if let Some(body) = chunk.body {
                        break Some(body);
                    }
                }
                Err(message) => return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(message)),
            },
            Some(SessionOutput::Failed(error)) => {
                return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_sorted_json()))
            }
            Some(SessionOutput::TimedOut) => {
                return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal("killed by timeout"))
            }
            None => break None,
        }
    };

    // Upstream's default of 100 cannot be a final status; a plugin that never sets one gets 200.
    let status = match status.map(StatusCode::from_u16) {
        None => StatusCode::OK,
        Some(Ok(code)) if !code.is_informational() => code,
        Some(_) => {
            return fail_with_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                DaemonError::internal(format!("plugin answered an invalid status {}", status.unwrap_or_default())),
            )
        }
    };
    let body = match first_piece {
        Some(piece) => Body::from_stream(body_stream(Bytes::from(piece), session)),
        None => Body::empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::warn!(header = %name, "plugin endpoint answered an invalid header name");
            continue;
        };
        if HOP_BY_HOP_RESPONSE_HEADERS.contains(&name.as_str()) || response.headers().contains_key(&name) {
            continue;
        }
        // Bytes rather than text: UTF-8 values pass as obs-text, as Go's writer sends them.
        match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(value) => {
                response.headers_mut().insert(name, value);
            }
            Err(_) => tracing::warn!(header = %name, "plugin endpoint answered an invalid header value"),
        }
    }
    response
}

/// The first body piece, then every later `result` of the session; a failure ends the body with
/// its text. Dropping the body (client gone) drops the session, which ends it.
fn body_stream(first: Bytes, session: SessionStream) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let head = futures::stream::once(async move { Ok::<Bytes, Infallible>(first) });
    let rest = futures::stream::unfold(Some(session), |session| async move {
        let mut session = session?;
        loop {
            let piece = match session.next().await? {
                SessionOutput::Chunk(item) => match parse_chunk(&item.to_value()) {
                    Ok(EndpointChunk { body: Some(body), .. }) => Bytes::from(body),
                    Ok(_) => continue,
                    Err(message) => return Some((Ok(Bytes::from(message)), None)),
                },
                SessionOutput::Failed(error) => {
                    return Some((Ok(Bytes::from(super::plugin_errors::for_caller(&error).to_sorted_json())), None))
                }
                SessionOutput::TimedOut => {
                    return Some((Ok(Bytes::from(DaemonError::internal("killed by timeout").to_envelope_json())), None))
                }
            };
            return Some((Ok(piece), Some(session)));
        }
    });
    futures::StreamExt::chain(head, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_headers as headers;
    use serde_json::json;

    #[test]
    fn splits_hook_and_path() {
        assert_eq!(split_hook_path("/e/abc/x/y%20z"), ("abc", "/x/y%20z"));
        assert_eq!(split_hook_path("/e/abc/"), ("abc", "/"));
        assert_eq!(split_hook_path("/e/abc"), ("abc", "/"));
    }

    #[test]
    fn serialises_the_rewritten_request() {
        let incoming = headers(&[
            ("host", "daemon:5002"),
            ("x-original-host", "public.example"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("transfer-encoding", "chunked"),
            ("content-length", "99"),
            ("accept", "a"),
            ("accept", "b"),
            ("x-echo", "yes"),
        ]);
        let raw = raw_http_request(&RawRequestParts {
            method: &Method::POST,
            request_target: "/hook/p?x=1",
            path: "/hook/p",
            headers: &incoming,
            incoming_host: "daemon:5002",
            hook_id: "h123",
            body: b"hello",
        });
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "POST /hook/p?x=1 HTTP/1.1\r\nHost: public.example\r\nContent-Length: 5\r\nAccept: a\r\nAccept: b\r\n\
             Dify-Hook-Id: h123\r\nDify-Hook-Url: https://public.example/e/h123/hook/p\r\nX-Echo: yes\r\n\
             X-Forwarded-Proto: https\r\n\r\nhello"
        );
    }

    #[test]
    fn cluster_headers_never_reach_the_plugin() {
        let incoming = headers(&[
            ("x-dify-cluster-key", "server-key"),
            ("x-dify-forwarded-by", "node-a"),
            ("x-api-key", "caller key"),
            ("dify-hook-url", "https://given/x"),
        ]);
        let raw = raw_http_request(&RawRequestParts {
            method: &Method::GET,
            request_target: "/",
            path: "/",
            headers: &incoming,
            incoming_host: "h",
            hook_id: "h",
            body: b"",
        });
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "GET / HTTP/1.1\r\nHost: h\r\nDify-Hook-Id: h\r\nDify-Hook-Url: https://given/x\r\nX-Api-Key: caller key\r\n\r\n"
        );
    }

    #[test]
    fn keeps_a_given_hook_url_and_defaults_the_host() {
        let incoming = headers(&[("dify-hook-url", "https://given/x")]);
        let raw = raw_http_request(&RawRequestParts {
            method: &Method::GET,
            request_target: "/",
            path: "/",
            headers: &incoming,
            incoming_host: "127.0.0.1:1",
            hook_id: "h",
            body: b"",
        });
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nDify-Hook-Id: h\r\nDify-Hook-Url: https://given/x\r\n\r\n"
        );
    }

    #[test]
    fn parses_plugin_chunks() {
        let chunk = parse_chunk(&json!({"status": 201, "headers": {"X-A": "1"}, "result": "6869"})).unwrap();
        assert_eq!(chunk, EndpointChunk { status: Some(201), headers: vec![("X-A".into(), "1".into())], body: Some(b"hi".to_vec()) });
        assert_eq!(parse_chunk(&json!({"result": ""})).unwrap().body, Some(Vec::new()));
        assert!(parse_chunk(&json!({"result": "zz"})).is_err());
        assert!(parse_chunk(&json!({"status": 70000})).is_err());
        assert!(parse_chunk(&json!("text")).is_err());
    }
}
