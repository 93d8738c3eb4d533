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
use bytes::BytesMut;
use dify_protocol::access::{find_dispatch_route, DispatchRoute, ResponseMode};
use dify_protocol::compact::RawChunk;
use dify_protocol::invoke::InvokeBody;
use dify_protocol::message::{InvocationContext, PluginSessionError};
use dify_protocol::{DaemonError, ErrorType};
use serde_json::Value;

use super::forward::{self, ForwardRequest};
use super::{fail_with_status, AppState, NOT_FOUND_BODY};
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
    serve(&state, &tenant_id, route, &headers, &body).await
}

/// Serves one invocation of `route` for `tenant_id` (counted in `active_dispatch_requests`).
pub(super) async fn serve(state: &AppState, tenant_id: &str, route: &'static DispatchRoute, headers: &HeaderMap, body: &Bytes) -> Response {
    state.active_dispatch_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let response = dispatch_route(state, tenant_id, route, headers, body).await;
    state.active_dispatch_requests.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    response
}

async fn dispatch_route(state: &AppState, tenant_id: &str, route: &'static DispatchRoute, headers: &HeaderMap, body: &Bytes) -> Response {
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

    // The body in one pass with the route fields kept as raw JSON; the tree when only it gives the
    // exact answer (see `dify_protocol::invoke`).
    let parsed = InvokeBody::parse(body).or_else(|| InvokeBody::from_tree(serde_json::from_slice(body).unwrap_or(Value::Null)));
    let Some(InvokeBody { user_id, conversation_id, message_id, app_id, endpoint_id, context, mut data }) = parsed else {
        return fail_with_status(
            StatusCode::BAD_REQUEST,
            DaemonError::bad_request("Key: 'InvokePluginRequest.Data' Error:Field validation for 'Data' failed on the 'required' tag"),
        );
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
    let forwarded = forward::is_forwarded(state, headers);
    if state.cluster.is_shared() && !forwarded {
        // (Boxed: only a cluster routes, and these futures are large; inline they would grow every
        // invocation's future.)
        let elsewhere = || ForwardRequest::invocation(state, format!("/plugin/{tenant_id}/dispatch{}", route.path), headers, body.clone());
        if let Some(response) = Box::pin(forward::serve_elsewhere(state, &installation, forwarded, elsewhere)).await {
            return response;
        }
    }
    let invocation = Invocation {
        user_id: user_id.unwrap_or_default(),
        access_type: route.access_type,
        action: route.action.to_string(),
        payload: data,
        context: InvocationContext { conversation_id, message_id, app_id, endpoint_id, context },
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
        ResponseMode::EventStream => event_stream(sse_body(session, ChunkShaper::new(route.chunks)).await),
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

/// The head of a success envelope, up to its `data` value (the field order of `Envelope::success`).
const SUCCESS_HEAD: &[u8] = SSE_SUCCESS_OPENING.split_at(b"data: ".len()).1;

/// The SSE line of one successful chunk alone ([`push_success_sse_line`]).
#[cfg(test)]
fn success_sse_line(chunk: &RawChunk) -> Bytes {
    let mut line = BytesMut::new();
    push_success_sse_line(&mut line, chunk);
    line.freeze()
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

/// Appends the SSE line of a successful chunk to `out`,
/// `data: {"code":0,"message":"success","data":<chunk>}`: the chunk's canonical compact text spliced
/// in, the same bytes as serialising the protocol's `Envelope::success` of the chunk's `Value`.
fn push_success_sse_line(out: &mut BytesMut, chunk: &RawChunk) {
    let json = chunk.as_bytes();
    out.reserve(SSE_SUCCESS_OPENING.len() + json.len() + 3);
    out.extend_from_slice(SSE_SUCCESS_OPENING);
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n\n");
}

/// Most bytes gathered into one body chunk from items that are already there.
const GATHER_BYTES: usize = 256 * 1024;

/// Items at least this long go out as their own body chunk, their line written around the item
/// where the line reader left it ([`RawChunk::wrap`]) instead of copied into a gathered chunk.
const OWN_CHUNK_BYTES: usize = 4096;

/// The opening of a successful chunk's SSE line, before the chunk's text: `data: ` and the head of
/// a success envelope up to its `data` value (the field order of `Envelope::success`).
const SSE_SUCCESS_OPENING: &[u8] = b"data: {\"code\":0,\"message\":\"success\",\"data\":";

/// The body chunks of one session's SSE stream: each poll waits for the next item, then also takes
/// every item that is already there (up to [`GATHER_BYTES`]), so a fast plugin's stream goes out in
/// few large writes while a single item is never held back. Small items' lines are copied into one
/// gathered chunk; a large item's line is its own chunk, without a copy.
struct SseChunks {
    session: crate::session::SessionStream,
    shaper: ChunkShaper,
    /// Lines of small items gathered so far.
    gathered: BytesMut,
    /// Chunks ready to go, in order.
    ready: std::collections::VecDeque<Bytes>,
    /// The session gave its last output.
    ended: bool,
}

impl SseChunks {
    fn new(session: crate::session::SessionStream, shaper: ChunkShaper) -> Self {
        Self { session, shaper, gathered: BytesMut::new(), ready: Default::default(), ended: false }
    }

    /// The next body chunk; `None` once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.ready.pop_front() {
            return Some(chunk);
        }
        // Wait until an output gives a line.
        while !self.ended && self.gathered.is_empty() && self.ready.is_empty() {
            match self.session.next().await {
                Some(output) => self.ended = self.render(output),
                None => self.ended = true,
            }
        }
        while !self.ended && self.pending_bytes() < GATHER_BYTES {
            let std::task::Poll::Ready(Some(output)) = self.session.try_next() else { break };
            self.ended = self.render(output);
        }
        self.seal();
        self.ready.pop_front()
    }

    fn pending_bytes(&self) -> usize {
        self.gathered.len() + self.ready.iter().map(Bytes::len).sum::<usize>()
    }

    /// Moves the gathered lines to the ready chunks.
    fn seal(&mut self) {
        if !self.gathered.is_empty() {
            self.ready.push_back(self.gathered.split().freeze());
        }
    }

    /// Renders the SSE line for one session output (nothing for an item that produces no line, a
    /// blob chunk being merged); true when it was the last line of the stream.
    fn render(&mut self, output: SessionOutput) -> bool {
        let error = match output {
            SessionOutput::Chunk(item) => match self.shaper.shape(item) {
                Ok(Some(shaped)) => {
                    self.push_item(shaped);
                    return false;
                }
                Ok(None) => return false,
                Err(error) => Some(plugin_invoke_error(&error)),
            },
            other => failure_error(&other),
        };
        if let Some(error) = error {
            self.gathered.extend_from_slice(&sse_line(&error.to_envelope_json()));
        }
        true
    }

    fn push_item(&mut self, item: RawChunk) {
        let item = if item.as_bytes().len() >= OWN_CHUNK_BYTES {
            match item.wrap(SSE_SUCCESS_OPENING, b"}\n\n") {
                Ok((buffer, start)) => {
                    self.seal();
                    self.ready.push_back(Bytes::from(buffer).slice(start..));
                    return;
                }
                Err(item) => item,
            }
        } else {
            item
        };
        let line = SSE_SUCCESS_OPENING.len() + item.as_bytes().len() + 3;
        if !self.gathered.is_empty() && self.gathered.capacity() - self.gathered.len() < line {
            // More lines are coming: grow the gathered chunk once to its cap instead of doubling it
            // (and copying what it holds) line by line.
            self.gathered.reserve(line.max(GATHER_BYTES.saturating_sub(self.gathered.len())));
        }
        push_success_sse_line(&mut self.gathered, &item);
    }
}

/// The SSE body of a session, answered once the session's first line is there ([`SseChunks`]).
///
/// Waiting for the first line before answering puts the response head and that line in one write
/// (as upstream, whose head goes out with the first flushed line); answering at once would send the
/// head alone and cost the client a read and the daemon a write per invocation. A client that
/// disconnects makes the server drop the body (or this future), which drops the session and so
/// ends it, even while the plugin is silent.
pub(super) async fn sse_body(session: crate::session::SessionStream, shaper: ChunkShaper) -> Body {
    let mut chunks = SseChunks::new(session, shaper);
    let Some(first) = chunks.next().await else {
        // The session ended without a line: an empty stream.
        return Body::empty();
    };
    let rest = futures::stream::unfold(chunks, |mut chunks| async move { chunks.next().await.map(|chunk| (chunk, chunks)) });
    Body::from_stream(futures::StreamExt::map(futures::StreamExt::chain(futures::stream::iter([first]), rest), Ok::<_, Infallible>))
}

pub(super) async fn single_json(mut session: crate::session::SessionStream, mut shaper: ChunkShaper) -> Response {
    while let Some(output) = session.next().await {
        match output {
            SessionOutput::Chunk(item) => match shaper.shape(item) {
                Ok(Some(shaped)) => return success_json_response(&shaped),
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

/// HTTP 200 with the success envelope around `chunk` (what `ok` gives for the chunk's `Value`).
fn success_json_response(chunk: &RawChunk) -> Response {
    let json = chunk.as_bytes();
    let mut body = Vec::with_capacity(SUCCESS_HEAD.len() + json.len() + 1);
    body.extend_from_slice(SUCCESS_HEAD);
    body.extend_from_slice(json);
    body.push(b'}');
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
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
    use dify_protocol::access::{ChunkHandling, TOOL_MESSAGE_TYPES};
    use dify_protocol::json_text::Json;
    use dify_protocol::message::{parse_plugin_line, PluginEvent, SessionMessage};
    use proptest::prelude::*;
    use serde_json::Map;

    fn raw(value: &Value) -> RawChunk {
        RawChunk::from_value(value)
    }

    #[test]
    fn sse_lines_are_byte_exact() {
        let chunk = serde_json::json!({"type": "text", "message": {"text": "hello"}, "meta": null});
        assert_eq!(
            success_sse_line(&raw(&chunk)),
            Bytes::from_static(b"data: {\"code\":0,\"message\":\"success\",\"data\":{\"type\":\"text\",\"message\":{\"text\":\"hello\"},\"meta\":null}}\n\n")
        );
        for chunk in [
            serde_json::json!({"z": 1, "a": ["é\u{1F600}", "\"quoted\"\n\t\\", null, 1.5, -3, true]}),
            serde_json::json!("plain"),
            serde_json::json!(null),
            serde_json::json!({}),
        ] {
            assert_eq!(success_sse_line(&raw(&chunk)), sse_line(&success_json(&chunk)), "{chunk}");
        }
        // A chunk as a plugin writes it (Python separators, `\uXXXX` and `\/` escapes, float spellings),
        // read from its session line: the line built from its canonical compact text is the line built
        // from the parsed value.
        for item in [
            r#"{"type": "text", "message": {"text": "caf\u00e9 \ud83d\ude00 a\/b"}, "meta": {"n": 1.0, "e": 1e0, "m": -0}}"#,
            r#"{"type":"json","message":{"json_object":{"text":"hi","length":2}},"meta":null}"#,
        ] {
            let parsed: Value = serde_json::from_str(item).unwrap();
            let line = format!(r#"{{"event": "session", "session_id": "s", "data": {{"type": "stream", "data": {item}}}}}"#);
            let Ok(Some(PluginEvent::Session { message: SessionMessage::Stream(chunk), .. })) = parse_plugin_line(line.as_bytes()) else {
                panic!("{line}")
            };
            assert_eq!(success_sse_line(&chunk), sse_line(&success_json(&parsed)), "{item}");
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

    #[test]
    fn a_large_plain_item_is_wrapped_where_it_lies() {
        let blob = "QUJD".repeat(3000);
        let item = format!(
            r#"{{"type":"blob_chunk","message":{{"id":"b","sequence":0,"total_length":9000,"blob":"{blob}","end":false}},"meta":{{"mime_type":"x/y"}}}}"#
        );
        let line = format!(r#"{{"event":"session","session_id":"s","data":{{"type":"stream","data":{item}}}}}"#);
        let Ok(Some(PluginEvent::Session { message: SessionMessage::Stream(chunk), .. })) = parse_plugin_line(line.as_bytes()) else {
            panic!("not a stream item")
        };
        let shaped = ChunkShaper::new(ChunkHandling::ToolMessage).shape(chunk).unwrap().unwrap();
        let expected = sse_line(&success_json(&serde_json::from_str(&item).unwrap()));
        let (buffer, start) = shaped.wrap(SSE_SUCCESS_OPENING, b"}\n\n").expect("the line reader leaves room for the opening");
        assert_eq!(Bytes::from(buffer).slice(start..), expected);
        // A chunk built from a value has no such room and is answered back.
        assert!(raw(&serde_json::json!({"a": 1})).wrap(SSE_SUCCESS_OPENING, b"}\n\n").is_err());
    }

    /// The path before the pass-through: the plugin's line parsed into a tree, the item shaped as a
    /// tree and serialised into the envelope. Answers the SSE line, or the shaping error's text.
    fn through_tree(line: &[u8], handling: ChunkHandling) -> Result<Bytes, String> {
        let mut value: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let item = value["data"]["data"].take();
        let shaped = match handling {
            ChunkHandling::PassThrough => item,
            _ => {
                let Value::Object(mut object) = item else { return Err("tool response chunk is not an object".into()) };
                match object.get("type") {
                    Some(Value::String(kind)) if TOOL_MESSAGE_TYPES.contains(&kind.as_str()) => {}
                    other => {
                        return Err(format!(
                            "invalid tool response chunk type: {}",
                            other.map(Value::to_string).unwrap_or_else(|| "missing".into())
                        ))
                    }
                }
                let mut shaped = Map::new();
                shaped.insert("type".into(), object.remove("type").unwrap_or(Value::Null));
                shaped.insert("message".into(), object.remove("message").unwrap_or(Value::Null));
                shaped.insert("meta".into(), object.remove("meta").unwrap_or(Value::Null));
                Value::Object(shaped)
            }
        };
        Ok(sse_line(&success_json(&shaped)))
    }

    /// The live path: the line read by the protocol's single pass, shaped and spliced.
    fn through_raw(line: &[u8], handling: ChunkHandling) -> Result<Bytes, String> {
        let chunk = match parse_plugin_line(line) {
            Ok(Some(PluginEvent::Session { message: SessionMessage::Stream(chunk), .. })) => chunk,
            other => return Err(format!("{other:?}")),
        };
        match ChunkShaper::new(handling).shape(chunk) {
            Ok(Some(shaped)) => {
                let gathered = success_sse_line(&shaped);
                // A line written around the item where it lies is the same bytes.
                if let Ok((buffer, start)) = shaped.wrap(SSE_SUCCESS_OPENING, b"}\n\n") {
                    assert_eq!(Bytes::from(buffer).slice(start..), gathered);
                }
                Ok(gathered)
            }
            Ok(None) => Err("no line".into()),
            Err(error) => Err(error.message),
        }
    }

    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Raw("null".into())),
            any::<bool>().prop_map(|b| Json::Raw(b.to_string())),
            any::<i64>().prop_map(|n| Json::Raw(n.to_string())),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Json::Raw(format!("{f:e}"))),
            prop_oneof![Just("1.0"), Just("-0"), Just("1E+2"), Just("0.1e-6"), Just("18446744073709551615")]
                .prop_map(|n| Json::Raw(n.into())),
            any::<String>().prop_map(Json::Str),
            "[a-z/\"\\\\ é\u{1F600}\n\t\\x00-\\x1f]{0,12}".prop_map(Json::Str),
            prop::sample::select(TOOL_MESSAGE_TYPES).prop_map(|t| Json::Str(t.into())),
        ];
        let key = prop_oneof![Just("type".to_string()), Just("message".to_string()), Just("meta".to_string()), "[a-zé/\"]{0,6}"];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::vec((key.clone(), inner), 0..6).prop_map(Json::Object),
            ]
        })
    }

    /// Items shaped like tool messages most of the time (`type`, `message`, `meta` in some order,
    /// sometimes with more keys or a repeated one), anything else otherwise.
    fn arb_item() -> impl Strategy<Value = Json> {
        let kind = prop_oneof![
            3 => prop::sample::select(TOOL_MESSAGE_TYPES).prop_map(|t| Json::Str(t.into())),
            1 => arb_json(),
        ];
        let tool = (kind, arb_json(), arb_json(), prop::collection::vec(("[a-z]{1,5}", arb_json()), 0..2), any::<u8>()).prop_map(
            |(kind, message, meta, extra, order)| {
                let mut entries = vec![("type".to_string(), kind), ("message".to_string(), message), ("meta".to_string(), meta)];
                entries.extend(extra);
                let n = entries.len();
                entries.rotate_left(order as usize % n);
                if order % 7 == 0 {
                    entries.truncate(n - 1);
                }
                Json::Object(entries)
            },
        );
        prop_oneof![4 => tool, 1 => arb_json()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        /// The pass-through writes exactly the SSE line (or fails with exactly the error) that parsing
        /// the line into a tree, shaping the tree and serialising it gave.
        #[test]
        fn pass_through_matches_the_tree_path(
            item in arb_item(),
            spaced in any::<bool>(),
            ascii in any::<bool>(),
            data_first in any::<bool>(),
            tool in any::<bool>(),
        ) {
            let text = item.render(spaced, ascii);
            let line = if data_first {
                format!(r#"{{"data": {{"data": {text}, "type": "stream"}}, "session_id": "s-1", "event": "session"}}"#)
            } else {
                format!(r#"{{"event":"session","session_id":"s-1","data":{{"type":"stream","data":{text}}}}}"#)
            };
            let handling = if tool { ChunkHandling::ToolMessage } else { ChunkHandling::PassThrough };
            prop_assert_eq!(through_raw(line.as_bytes(), handling), through_tree(line.as_bytes(), handling), "{}", line);
        }
    }
}
