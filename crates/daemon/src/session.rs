//! Sessions: one invocation of a plugin = one session id on a plugin connection.
//!
//! Owns: registering the session before the request is written, turning the plugin's session
//! messages into [`SessionOutput`]s, running backwards invocations the plugin makes during the
//! session and framing their answers back as `backwards_response` lines (always ending each with
//! `end`), the execution timeout, and ending the session when the caller goes away. Also the
//! per-route chunk shaping (tool message validation, agent `blob_chunk` merging).
//!
//! Must not: know HTTP, SSE or tenants' database rows. Dispatch (HTTP), `dify plugin run` and the
//! debug runtime drive sessions through [`start_session`] with their own [`BackwardsHandler`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use dify_protocol::access::{AccessType, ChunkHandling, TOOL_MESSAGE_TYPES};
use dify_protocol::compact::RawChunk;
use dify_protocol::invoke::Payload;
use dify_protocol::manifest::PluginPermissions;
use dify_protocol::message::{BackwardsReply, InvocationContext, PluginInStream, PluginSessionError, SessionMessage};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::backwards::{BackwardsHandler, CallerContext};
use crate::runtime::{PluginConnection, SessionEvent};
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Kind, SpanGuard};
use crate::trace::TraceContext;
use opentelemetry::KeyValue;

/// What one invocation asks the plugin to do.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub tenant_id: String,
    pub user_id: String,
    /// `author/name`.
    pub plugin_id: String,
    pub access_type: AccessType,
    pub action: String,
    /// Route fields, flattened into the request's `data`.
    pub payload: Payload,
    pub invocation: InvocationContext,
    /// `resource.permission` of the plugin, for backwards invocations.
    pub permissions: PluginPermissions,
    /// The caller's trace: the session's log lines carry its id, backwards calls send it on.
    pub trace: Option<TraceContext>,
}

/// One item of a session as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    /// One response item from the plugin, as its canonical compact JSON text.
    Chunk(RawChunk),
    /// The invocation failed: the plugin's error or a daemon-side failure of the session, rendered as
    /// `PluginInvokeError` with this object as its (sorted) inner message. Always the last item.
    Failed(PluginSessionError),
    /// The session outlived `PLUGIN_MAX_EXECUTION_TIMEOUT`. Always the last item.
    TimedOut,
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SessionStartError {
    /// The request could not be written to the plugin.
    #[error("failed to write the request to the plugin: {0}")]
    Write(String),
}

/// The receiving end of a running session. Dropping it ends the session on the daemon side.
///
/// The session is driven by whoever reads it: [`SessionStream::next`] takes the plugin's messages
/// off the connection, starts the backwards invocations they ask for and watches the execution
/// timeout, so an item goes from the connection's reader straight to the caller's task.
pub struct SessionStream {
    pub session_id: String,
    /// `None` after the last item.
    driver: Option<SessionDriver>,
}

impl SessionStream {
    /// The next item; `None` after the last one.
    pub async fn next(&mut self) -> Option<SessionOutput> {
        let driver = self.driver.as_mut()?;
        match driver.next().await {
            Step::Item(chunk) => Some(SessionOutput::Chunk(chunk)),
            Step::Last(output) => {
                self.driver = None;
                Some(output)
            }
            Step::End => {
                self.driver = None;
                None
            }
        }
    }

    /// The next item if one is already there, without waiting: `Ready(None)` after the last item,
    /// `Pending` when the plugin has sent nothing more yet. Lets a reader gather every item that is
    /// ready into one write without ever holding an item back.
    pub fn try_next(&mut self) -> std::task::Poll<Option<SessionOutput>> {
        use std::task::Poll;
        let Some(driver) = self.driver.as_mut() else { return Poll::Ready(None) };
        match driver.try_next() {
            None => Poll::Pending,
            Some(Step::Item(chunk)) => Poll::Ready(Some(SessionOutput::Chunk(chunk))),
            Some(Step::Last(output)) => {
                self.driver = None;
                Poll::Ready(Some(output))
            }
            Some(Step::End) => {
                self.driver = None;
                Poll::Ready(None)
            }
        }
    }
}

/// Writes the request to the plugin and returns the stream of its results. The listener is
/// registered before the request is written, so no message can be missed. The session's tasks are
/// not tracked by any shutdown handle (tools and tests); the daemon uses [`start_tracked_session`].
pub async fn start_session(
    connection: Arc<PluginConnection>,
    request: SessionRequest,
    backwards: Arc<dyn BackwardsHandler>,
    execution_timeout: Duration,
) -> Result<SessionStream, SessionStartError> {
    start_tracked_session(connection, request, backwards, execution_timeout, &Shutdown::new()).await
}

/// Like [`start_session`], with every task the session spawns (the writer of backwards answers,
/// each backwards invocation) tracked by `shutdown`, so the daemon's stop waits for them.
pub async fn start_tracked_session(
    connection: Arc<PluginConnection>,
    request: SessionRequest,
    backwards: Arc<dyn BackwardsHandler>,
    execution_timeout: Duration,
    shutdown: &Shutdown,
) -> Result<SessionStream, SessionStartError> {
    // A version 4 UUID from the thread's generator (no system call per session).
    let session_id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
    // The session is its own hop of the caller's trace (one exported span when export is on); its
    // backwards calls are children of it.
    let session_trace = request.trace.as_ref().map(TraceContext::child);
    let exported = match (&session_trace, &request.trace) {
        (Some(hop), Some(parent)) if telemetry::enabled() => telemetry::start(
            "plugin session",
            Kind::Internal,
            hop,
            Some(&parent.span_id),
            vec![
                KeyValue::new("session_id", session_id.clone()),
                KeyValue::new("tenant_id", request.tenant_id.clone()),
                KeyValue::new("plugin_id", request.plugin_id.clone()),
                KeyValue::new("plugin.access_type", request.access_type.as_str().to_string()),
                KeyValue::new("plugin.action", request.action.clone()),
            ],
        ),
        _ => SpanGuard::default(),
    };
    let trace_id = request.trace.as_ref().map(|t| t.trace_id.as_str()).unwrap_or("");
    let span = tracing::info_span!("session", trace_id = %trace_id, %session_id, plugin = %request.plugin_id);
    span.in_scope(|| tracing::info!(action = %request.action, "plugin session started"));
    let listener = connection.open_session(&session_id).map_err(|e| SessionStartError::Write(e.to_string()))?;
    let line = PluginInStream::payload_request_line(
        &session_id,
        &request.invocation,
        &request.user_id,
        request.access_type.as_str(),
        &request.action,
        &request.payload,
    );
    connection.send_line(&line).await.map_err(|e| SessionStartError::Write(e.to_string()))?;

    let caller = Arc::new(CallerContext {
        session_id: session_id.clone(),
        tenant_id: request.tenant_id,
        user_id: request.user_id,
        plugin_id: request.plugin_id,
        access_type: request.access_type,
        permissions: request.permissions,
    });
    let driver = SessionDriver {
        listener,
        deadline: Box::pin(tokio::time::sleep(execution_timeout)),
        connection,
        caller,
        invocation: request.invocation,
        backwards,
        replies: None,
        tasks: shutdown.clone(),
        trace: session_trace,
        exported,
        span,
        failed: false,
    };
    Ok(SessionStream { session_id, driver: Some(driver) })
}

/// What one step of a session gives its reader.
enum Step {
    /// A response item; more may follow.
    Item(RawChunk),
    /// The last output (a failure or the timeout).
    Last(SessionOutput),
    /// The plugin ended the session.
    End,
}

struct SessionDriver {
    listener: crate::runtime::SessionListener,
    /// Fires at the execution timeout (one timer for the whole session).
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    connection: Arc<PluginConnection>,
    caller: Arc<CallerContext>,
    invocation: InvocationContext,
    backwards: Arc<dyn BackwardsHandler>,
    /// The writer of backwards answers, started with the first backwards call (most sessions make none).
    replies: Option<mpsc::UnboundedSender<BackwardsReply>>,
    /// Tracks the tasks this session spawns.
    tasks: Shutdown,
    /// The session's hop of the caller's trace.
    trace: Option<TraceContext>,
    /// The session's exported span (inert when export is off).
    exported: SpanGuard,
    span: tracing::Span,
    /// How the session ended, for the per-plugin invocation chart.
    failed: bool,
}

impl SessionDriver {
    async fn next(&mut self) -> Step {
        loop {
            let event = tokio::select! {
                event = self.listener.recv() => event,
                _ = &mut self.deadline => {
                    self.failed = true;
                    return Step::Last(SessionOutput::TimedOut);
                }
            };
            if let Some(step) = self.step(event) {
                return step;
            }
        }
    }

    /// [`Self::next`] without waiting: `None` when no message is there yet.
    fn try_next(&mut self) -> Option<Step> {
        loop {
            if self.deadline.is_elapsed() {
                self.failed = true;
                return Some(Step::Last(SessionOutput::TimedOut));
            }
            let event = match self.listener.try_recv() {
                Ok(event) => Some(event),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            if let Some(step) = self.step(event) {
                return Some(step);
            }
        }
    }

    /// What one event of the listener (`None`: the connection dropped the session) gives the reader;
    /// `None` when it gives nothing (a backwards invocation was started).
    fn step(&mut self, event: Option<SessionEvent>) -> Option<Step> {
        let output = match event {
            None => {
                SessionOutput::Failed(PluginSessionError::new("PluginDaemonInternalServerError", "plugin connection closed the session"))
            }
            Some(SessionEvent::Failed(error)) => SessionOutput::Failed(error),
            Some(SessionEvent::Message(message)) => match message {
                SessionMessage::Stream(item) => return Some(Step::Item(item)),
                SessionMessage::Invoke(Ok(request)) => {
                    self.start_backwards(request);
                    return None;
                }
                SessionMessage::Invoke(Err(reason)) => SessionOutput::Failed(PluginSessionError::new(
                    "invoke_dify_error",
                    format!("invalid backwards invocation request: {reason}"),
                )),
                SessionMessage::Error(error) => SessionOutput::Failed(error),
                SessionMessage::End(_) => return Some(Step::End),
                SessionMessage::Unknown(kind) => SessionOutput::Failed(PluginSessionError::new(
                    "unknown_stream_message_type",
                    format!("unknown stream message type: {kind}"),
                )),
            },
        };
        self.failed = matches!(output, SessionOutput::Failed(_));
        Some(Step::Last(output))
    }

    /// Runs one backwards invocation in its own task; its answers and their `end` go through the
    /// session's reply writer.
    fn start_backwards(&mut self, request: dify_protocol::message::BackwardsRequest) {
        let replies = match &self.replies {
            Some(replies) => replies.clone(),
            None => self.replies.insert(self.spawn_reply_writer()).clone(),
        };
        let handler = self.backwards.clone();
        let caller = self.caller.clone();
        let trace = self.trace.as_ref().map(TraceContext::child);
        let exported = match (&trace, &self.trace) {
            (Some(hop), Some(session)) if telemetry::enabled() => telemetry::start(
                format!("backwards {}", request.invoke_type),
                Kind::Client,
                hop,
                Some(&session.span_id),
                vec![
                    KeyValue::new("backwards.type", request.invoke_type.clone()),
                    KeyValue::new("backwards.request_id", request.backwards_request_id.clone()),
                    KeyValue::new("session_id", caller.session_id.clone()),
                    KeyValue::new("tenant_id", caller.tenant_id.clone()),
                    KeyValue::new("plugin_id", caller.plugin_id.clone()),
                ],
            ),
            _ => SpanGuard::default(),
        };
        let call = async move {
            let _exported = exported;
            let request_id = request.backwards_request_id.clone();
            tracing::info!(%request_id, "backwards invocation");
            handler.handle(&caller, request, &replies).await;
            let _ = replies.send(BackwardsReply::end(&request_id));
        }
        .instrument(self.span.clone());
        match trace {
            Some(trace) => self.tasks.spawn(crate::trace::scope(trace, call)),
            None => self.tasks.spawn(call),
        };
    }

    /// Backwards answers go through one writer per session so their lines keep their order.
    fn spawn_reply_writer(&self) -> mpsc::UnboundedSender<BackwardsReply> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<BackwardsReply>();
        let connection = self.connection.clone();
        let session_id = self.caller.session_id.clone();
        let invocation = self.invocation.clone();
        self.tasks.spawn(async move {
            while let Some(reply) = receiver.recv().await {
                let line = PluginInStream::backwards_response(&session_id, &invocation, &reply).to_line();
                if let Err(error) = connection.send_line(&line).await {
                    tracing::warn!(%session_id, %error, "cannot deliver a backwards response");
                    return;
                }
            }
        });
        sender
    }
}

impl Drop for SessionDriver {
    /// Counts the session in the per-plugin invocation chart however it ends (also when its reader
    /// goes away), and ends its exported span.
    fn drop(&mut self) {
        if self.failed {
            self.exported.set_error("plugin session failed");
        }
        crate::runtime::stats::record(&self.caller.plugin_id, self.failed);
    }
}

/// Largest decoded `blob_chunk` piece the daemon accepts when merging.
const MAX_BLOB_CHUNK_BYTES: usize = 8192;
/// Largest merged blob.
const MAX_MERGED_BLOB_BYTES: usize = 15 * 1024 * 1024;

/// Applies a route's [`ChunkHandling`] to each plugin item: validation and reshaping of tool
/// messages, merging of agent `blob_chunk`s. Items stay canonical compact text; only a merged blob
/// goes through a `Value`.
#[derive(Debug)]
pub struct ChunkShaper {
    handling: ChunkHandling,
    blobs: HashMap<String, Vec<u8>>,
}

impl ChunkShaper {
    pub fn new(handling: ChunkHandling) -> Self {
        Self { handling, blobs: HashMap::new() }
    }

    /// The items to send for one plugin item (none while a blob is being merged), or the error that
    /// ends the session.
    pub fn shape(&mut self, item: RawChunk) -> Result<Option<RawChunk>, PluginSessionError> {
        match self.handling {
            ChunkHandling::PassThrough => Ok(Some(item)),
            ChunkHandling::ToolMessage => tool_message(item).map(Some),
            ChunkHandling::AgentMessage => {
                let message = tool_message(item)?;
                if message.field("type") != Some(b"\"blob_chunk\"".as_slice()) {
                    return Ok(Some(message));
                }
                self.merge_blob_chunk(message.to_value()).map(|merged| merged.map(|value| RawChunk::from_value(&value)))
            }
        }
    }

    fn merge_blob_chunk(&mut self, message: Value) -> Result<Option<Value>, PluginSessionError> {
        let body = &message["message"];
        let (Some(id), Some(encoded), Some(end)) = (body["id"].as_str(), body["blob"].as_str(), body["end"].as_bool()) else {
            // Malformed chunks are skipped, as upstream does.
            return Ok(None);
        };
        let Ok(piece) = base64::engine::general_purpose::STANDARD.decode(encoded) else { return Ok(None) };
        if piece.len() > MAX_BLOB_CHUNK_BYTES {
            return Err(PluginSessionError::new(
                "unmarshal_error",
                format!("blob chunk of {} bytes exceeds {MAX_BLOB_CHUNK_BYTES} bytes", piece.len()),
            ));
        }
        let buffer = self.blobs.entry(id.to_string()).or_default();
        buffer.extend_from_slice(&piece);
        if buffer.len() > MAX_MERGED_BLOB_BYTES {
            self.blobs.remove(id);
            return Err(PluginSessionError::new("unmarshal_error", "file is too large"));
        }
        if !end {
            return Ok(None);
        }
        let bytes = self.blobs.remove(id).unwrap_or_default();
        Ok(Some(json!({
            "type": "blob",
            "message": {"blob": base64::engine::general_purpose::STANDARD.encode(bytes)},
            "meta": message["meta"].clone(),
        })))
    }
}

/// Validates a ToolInvokeMessage and keeps only its known fields, in this order: `type`, `message`,
/// `meta` (a missing one is `null`). An item that already is exactly that is passed on untouched.
fn tool_message(item: RawChunk) -> Result<RawChunk, PluginSessionError> {
    if !item.is_object() {
        return Err(PluginSessionError::new("unmarshal_error", "tool response chunk is not an object"));
    }
    let kind = item.field("type");
    // The compact text of a string without escapes is the string between quotes.
    let known = kind
        .and_then(|text| text.strip_prefix(b"\"")?.strip_suffix(b"\""))
        .is_some_and(|name| TOOL_MESSAGE_TYPES.iter().any(|known| known.as_bytes() == name));
    if !known {
        let shown = kind.map(|text| String::from_utf8_lossy(text).into_owned()).unwrap_or_else(|| "missing".into());
        return Err(PluginSessionError::new("unmarshal_error", format!("invalid tool response chunk type: {shown}")));
    }
    if item.is_type_message_meta() {
        return Ok(item);
    }
    let null: &[u8] = b"null";
    Ok(RawChunk::object(&[
        ("type", kind.unwrap_or(null)),
        ("message", item.field("message").unwrap_or(null)),
        ("meta", item.field("meta").unwrap_or(null)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes `item` and answers the result as a tree.
    fn shape(shaper: &mut ChunkShaper, item: Value) -> Result<Option<Value>, PluginSessionError> {
        shaper.shape(RawChunk::from_value(&item)).map(|shaped| shaped.map(|chunk| chunk.to_value()))
    }

    #[test]
    fn merges_agent_blob_chunks() {
        let mut shaper = ChunkShaper::new(ChunkHandling::AgentMessage);
        let chunk = |seq: u64, data: &[u8], end: bool| json!({"type": "blob_chunk", "message": {"id": "b", "sequence": seq, "total_length": 6, "blob": base64::engine::general_purpose::STANDARD.encode(data), "end": end}, "meta": {"mime_type": "text/plain"}});
        assert_eq!(shape(&mut shaper, chunk(0, b"abc", false)).unwrap(), None);
        assert_eq!(shape(&mut shaper, chunk(1, b"def", false)).unwrap(), None);
        let merged = shape(&mut shaper, chunk(2, b"", true)).unwrap().unwrap();
        assert_eq!(merged, json!({"type": "blob", "message": {"blob": "YWJjZGVm"}, "meta": {"mime_type": "text/plain"}}));
        let text = shape(&mut shaper, json!({"type": "text", "message": {"text": "x"}, "meta": null, "extra": 1}))
            .unwrap()
            .unwrap();
        assert_eq!(text, json!({"type": "text", "message": {"text": "x"}, "meta": null}));
        let big = json!({"type": "blob_chunk", "message": {"id": "c", "sequence": 0, "total_length": 1, "blob": base64::engine::general_purpose::STANDARD.encode(vec![0u8; 9000]), "end": false}, "meta": null});
        assert!(shape(&mut shaper, big).is_err());
    }

    #[test]
    fn tool_messages_are_validated() {
        let mut shaper = ChunkShaper::new(ChunkHandling::ToolMessage);
        assert!(shape(&mut shaper, json!({"type": "nonsense", "message": {}})).is_err());
        assert!(shape(&mut shaper, json!("text")).is_err());
        let chunk = json!({"type": "blob_chunk", "message": {"id": "x"}, "meta": null});
        assert_eq!(shape(&mut shaper, chunk.clone()).unwrap(), Some(chunk));
        let mut pass = ChunkShaper::new(ChunkHandling::PassThrough);
        assert_eq!(shape(&mut pass, json!({"result": true})).unwrap(), Some(json!({"result": true})));
    }
}
