//! The two ways the bench invokes a tool: through the daemon (`POST /plugin/{tenant}/dispatch/tool/invoke`,
//! SSE read to the end) and directly over a plugin process's stdin/stdout with the very request line
//! the daemon would write (docs/protocol.md §0, §1.3, §6). Both count stream items and decoded blob
//! bytes the same way, so the two sides do the same client-side work.
//!
//! Owns: the plugin process of a direct run, session routing of its output, SSE parsing.
//! Must not: time or judge anything (callers do).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::daemon::{Daemon, SERVER_KEY};
use crate::http1::Http1Pool;

/// What one invocation returned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub items: u64,
    pub blob_bytes: u64,
}

impl Outcome {
    /// Counts one item of type `kind` whose `message.blob` is `blob` (blob bytes only for blobs).
    fn count(&mut self, kind: Option<&str>, blob: Option<&str>) {
        self.items += 1;
        if let (Some("blob_chunk" | "blob"), Some(b64)) = (kind, blob) {
            self.blob_bytes += decoded_len(b64);
        }
    }

    fn add(&mut self, item: &Value) {
        self.count(item["type"].as_str(), item["message"]["blob"].as_str());
    }

    /// Adds what another read counted.
    fn absorb(&mut self, other: Outcome) {
        self.items += other.items;
        self.blob_bytes += other.blob_bytes;
    }

    /// Counts one stream item given as JSON text: read through [`ItemView`] (strings borrowed,
    /// the rest skipped), or as a tree when the item does not fit that shape.
    fn add_text(&mut self, item: &[u8]) -> Result<()> {
        match serde_json::from_slice::<ItemView>(item) {
            Ok(view) => self.count(view.kind.as_deref(), view.message.as_ref().and_then(|m| m.blob.as_deref())),
            Err(_) => self.add(&serde_json::from_slice(item).context("stream item is not JSON")?),
        }
        Ok(())
    }
}

/// Bytes a base64 text decodes to.
fn decoded_len(b64: &str) -> u64 {
    let padding = b64.bytes().rev().take_while(|b| *b == b'=').count() as u64;
    (b64.len() as u64 / 4) * 3 - padding.min(2)
}

/// The parts of a stream item the bench counts. Reading an item into this borrows its strings
/// from the input and skips every other field without building anything, so the client spends
/// as little CPU per byte as a parser can; both sides of a ratio read items this way.
#[derive(Deserialize)]
struct ItemView<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<MessageView<'a>>,
}

#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default)]
    blob: Option<Cow<'a, str>>,
}

/// One SSE event's envelope: the code, and the item left as text for [`Outcome::add_text`].
#[derive(Deserialize)]
struct EnvelopeView<'a> {
    code: i64,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// One line of a plugin's output: what the direct reader routes on, the item left as text.
#[derive(Deserialize)]
struct LineView<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<SessionView<'a>>,
}

#[derive(Deserialize)]
struct SessionView<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The tool being invoked: provider/tool names and the plugin id header.
#[derive(Debug, Clone)]
pub struct ToolRef {
    pub plugin_id: String,
    pub provider: String,
    pub tool: String,
}

/// Invokes a tool through the daemon's dispatch route.
///
/// Invocations go through [`Http1Pool`], a lean keep-alive client, so the load rows measure the
/// server rather than a general-purpose client; held streams use `reqwest`.
#[derive(Clone)]
pub struct ThroughDaemon {
    client: reqwest::Client,
    url: String,
    tool: ToolRef,
    pool: Arc<Http1Pool>,
    /// Request line and headers up to (not including) `Content-Length`.
    head: Arc<Vec<u8>>,
}

impl ThroughDaemon {
    pub fn new(daemon: &Daemon, tenant: &str, tool: ToolRef) -> Self {
        Self::at(daemon.client.clone(), daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke")), tool)
    }

    /// The same requests, sent with `client` to `url` (another server answering like the daemon).
    pub fn at(client: reqwest::Client, url: String, tool: ToolRef) -> Self {
        let pool = Http1Pool::for_url(&url).unwrap_or_else(|error| panic!("bench URL {url}: {error}"));
        let path = url.strip_prefix("http://").and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nx-api-key: {SERVER_KEY}\r\nx-plugin-id: {}\r\ncontent-type: application/json\r\n",
            pool.address(),
            tool.plugin_id
        );
        Self { client, url, tool, pool: Arc::new(pool), head: Arc::new(head.into_bytes()) }
    }

    fn body(&self, parameters: &Value) -> Value {
        json!({
            "user_id": "bench-user", "conversation_id": null, "app_id": null, "message_id": null,
            "data": {"provider": self.tool.provider, "tool": self.tool.tool, "credentials": {},
                     "credential_type": "api-key", "tool_parameters": parameters}
        })
    }

    fn request(&self, parameters: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .header("X-Api-Key", SERVER_KEY)
            .header("X-Plugin-ID", &self.tool.plugin_id)
            .json(&self.body(parameters))
    }

    /// Starts an invocation and returns its body once the first SSE bytes arrived (the stream stays
    /// open while the returned value lives).
    pub async fn open_stream(&self, parameters: &Value) -> Result<impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>> {
        let response = self.request(parameters).send().await.context("dispatch request")?;
        let status = response.status();
        if !status.is_success() {
            bail!("dispatch answered HTTP {status}: {}", response.text().await.unwrap_or_default());
        }
        let mut body = response.bytes_stream();
        let first = body.next().await.ok_or_else(|| anyhow!("stream ended before its first chunk"))??;
        let text = String::from_utf8_lossy(&first);
        if !text.contains("\"code\":0") {
            bail!("first chunk is not a success: {text:.300}");
        }
        Ok(body)
    }

    pub async fn invoke(&self, parameters: &Value) -> Result<Outcome> {
        let body = serde_json::to_vec(&self.body(parameters))?;
        let mut request = Vec::with_capacity(self.head.len() + 32 + body.len());
        request.extend_from_slice(&self.head);
        request.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(&body);
        let mut outcome = Outcome::default();
        let mut buffer: Vec<u8> = Vec::new();
        let answer = self
            .pool
            .send(&request, &mut |piece| {
                // Whole events are read straight from the piece; only a split one is buffered.
                let mut rest = piece;
                if !buffer.is_empty() {
                    buffer.extend_from_slice(piece);
                    rest = &[];
                }
                let source: &[u8] = if buffer.is_empty() { rest } else { &buffer };
                let mut start = 0;
                while let Some(pos) = memchr::memmem::find(&source[start..], b"\n\n") {
                    sse_event(&source[start..start + pos], &mut outcome)?;
                    start += pos + 2;
                }
                if buffer.is_empty() {
                    buffer.extend_from_slice(&rest[start..]);
                } else {
                    buffer.drain(..start);
                }
                Ok(())
            })
            .await
            .context("dispatch request")?;
        if !(200..300).contains(&answer.status) {
            bail!("dispatch answered HTTP {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
        }
        if !buffer.iter().all(u8::is_ascii_whitespace) {
            sse_event(&buffer, &mut outcome)?;
        }
        Ok(outcome)
    }
}

fn sse_event(event: &[u8], outcome: &mut Outcome) -> Result<()> {
    let text = event.trim_ascii();
    if text.is_empty() {
        return Ok(());
    }
    let json_text = text.strip_prefix(b"data:").unwrap_or(text).trim_ascii_start();
    let envelope: EnvelopeView = serde_json::from_slice(json_text)
        .with_context(|| format!("SSE event is not JSON: {}", String::from_utf8_lossy(&text[..text.len().min(200)])))?;
    if envelope.code != 0 {
        bail!("plugin invocation failed: {}", String::from_utf8_lossy(json_text));
    }
    outcome.add_text(envelope.data.map_or("null", RawValue::get).as_bytes())
}

/// What the direct reader passes to the invocation waiting on a session.
enum Routed {
    /// One stream item, counted where it was read.
    Item(Outcome),
    End,
    Error(String),
    /// A line of the session the reader could not read.
    Unreadable(String),
}

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Routed>>>>;

/// A plugin process driven directly over its stdin/stdout.
pub struct DirectPlugin {
    /// Kept so the process lives as long as this value (killed on drop).
    process: tokio::process::Child,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    routes: Routes,
    tool: ToolRef,
}

impl DirectPlugin {
    /// The plugin process's id.
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// Starts `program args…` in `cwd` and waits (bounded) for its first heartbeat.
    pub async fn start(program: &Path, args: &[&str], cwd: &Path, env: &[(&str, &str)], tool: ToolRef) -> Result<Self> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| format!("spawn {}", program.display()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                let mut reader = BufReader::with_capacity(1 << 16, stdout);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if line.trim_ascii().is_empty() {
                        continue;
                    }
                    let Ok(view) = serde_json::from_slice::<LineView>(&line) else { continue };
                    match view.event.as_ref() {
                        "heartbeat" => {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(());
                            }
                        }
                        "session" => {
                            let (Some(session), Some(data)) = (view.session_id, view.data) else { continue };
                            let text = data.data.map_or("null", RawValue::get);
                            let (routed, finished) = match data.kind.as_deref().unwrap_or_default() {
                                "stream" => {
                                    let mut item = Outcome::default();
                                    match item.add_text(text.as_bytes()) {
                                        Ok(()) => (Routed::Item(item), false),
                                        Err(error) => (Routed::Unreadable(format!("{error:#}")), false),
                                    }
                                }
                                "end" => (Routed::End, true),
                                "error" => (Routed::Error(text.to_string()), false),
                                _ => continue,
                            };
                            let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(tx) = routes.get(session.as_ref()) {
                                let _ = tx.send(routed);
                            }
                            if finished {
                                routes.remove(session.as_ref());
                            }
                        }
                        _ => {}
                    }
                }
                // EOF: every open session ends with an error.
                routes.lock().unwrap_or_else(|p| p.into_inner()).clear();
            });
        }
        let (writer, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(line) = queue.recv().await {
                if stdin.write_all(&line).await.is_err() {
                    return;
                }
                while let Ok(more) = queue.try_recv() {
                    if stdin.write_all(&more).await.is_err() {
                        return;
                    }
                }
                if stdin.flush().await.is_err() {
                    return;
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(120), ready_rx)
            .await
            .map_err(|_| anyhow!("{} sent no heartbeat within 120 s", program.display()))?
            .map_err(|_| anyhow!("{} closed stdout before its first heartbeat", program.display()))?;
        Ok(Self { process: child, writer, routes, tool })
    }

    pub async fn invoke(&self, parameters: &Value) -> Result<Outcome> {
        let session = uuid::Uuid::new_v4().to_string();
        let request = json!({
            "session_id": session, "conversation_id": null, "message_id": null, "app_id": null,
            "endpoint_id": null, "context": null, "event": "request",
            "data": {"action": "invoke_tool", "credential_type": "api-key", "credentials": {},
                     "provider": self.tool.provider, "tool": self.tool.tool, "tool_parameters": parameters,
                     "type": "tool", "user_id": "bench-user"}
        });
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).insert(session.clone(), tx);
        self.writer.send(line).map_err(|_| anyhow!("plugin stdin closed"))?;
        let mut outcome = Outcome::default();
        while let Some(routed) = rx.recv().await {
            match routed {
                Routed::Item(item) => outcome.absorb(item),
                Routed::End => return Ok(outcome),
                Routed::Error(data) => bail!("plugin error: {data}"),
                Routed::Unreadable(error) => bail!("unreadable stream item: {error}"),
            }
        }
        bail!("plugin closed the session without `end`")
    }
}

/// Either way of invoking, for code that runs the same load against both.
#[derive(Clone)]
pub enum Invoker {
    Daemon(ThroughDaemon),
    Direct(Arc<DirectPlugin>),
    /// Round robin over several daemons (a load balancer in front of a cluster).
    Spread(Arc<Vec<ThroughDaemon>>, Arc<std::sync::atomic::AtomicUsize>),
}

impl Invoker {
    pub async fn invoke(&self, parameters: &Value) -> Result<Outcome> {
        match self {
            Invoker::Daemon(d) => d.invoke(parameters).await,
            Invoker::Direct(p) => p.invoke(parameters).await,
            Invoker::Spread(daemons, next) => {
                let turn = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                daemons[turn % daemons.len()].invoke(parameters).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_bytes_are_counted_after_base64_decoding() {
        let mut outcome = Outcome::default();
        for (blob, _) in [("aGVsbG8gd29ybGQ=", 11), ("aGk=", 2), ("YWJj", 3), ("", 0)] {
            outcome.add(&json!({"type": "blob_chunk", "message": {"blob": blob}}));
        }
        outcome.add(&json!({"type": "text", "message": {"text": "x"}}));
        assert_eq!(outcome.items, 5);
        assert_eq!(outcome.blob_bytes, 16);
    }

    #[test]
    fn items_read_as_text_count_like_items_read_as_trees() {
        let items = [
            r#"{"type":"blob_chunk","message":{"id":"x","sequence":0,"blob":"aGVsbG8gd29ybGQ=","end":false},"meta":null}"#,
            r#"{"type": "blob", "message": {"blob": "aGk="}}"#,
            r#"{"type":"text","message":{"text":"a \"quoted\" \\ text\n"},"meta":{"k":[1,2.5]}}"#,
            // An escaped blob string is read into an owned string.
            r#"{"type":"blob_chunk","message":{"blob":"YW\u0062j"}}"#,
            // Shapes the view does not fit fall back to the tree.
            r#"{"type":"text","message":"a plain string"}"#,
            r#"{"type":7}"#,
            "null",
            "[1,2]",
        ];
        let (mut text, mut tree) = (Outcome::default(), Outcome::default());
        for item in items {
            text.add_text(item.as_bytes()).unwrap();
            tree.add(&serde_json::from_str(item).unwrap());
        }
        assert_eq!((text.items, text.blob_bytes), (tree.items, tree.blob_bytes));
        assert_eq!((text.items, text.blob_bytes), (8, 16));
        assert!(Outcome::default().add_text(b"{not json").is_err());
    }

    #[test]
    fn sse_events_count_items_and_fail_on_error_envelopes() {
        let mut outcome = Outcome::default();
        sse_event(br#"data: {"code":0,"message":"success","data":{"type":"text","message":{"text":"a"}}}"#, &mut outcome).unwrap();
        sse_event(b"   ", &mut outcome).unwrap();
        assert_eq!(outcome.items, 1);
        let error = sse_event(br#"data: {"code":-500,"message":"boom","data":null}"#, &mut outcome).unwrap_err();
        assert!(error.to_string().contains("boom"), "{error}");
        assert!(sse_event(b"data: not json", &mut outcome).is_err());
    }
}
