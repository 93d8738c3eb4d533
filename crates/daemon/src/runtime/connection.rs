//! One plugin connection: newline-delimited JSON over any `AsyncRead`/`AsyncWrite` pair, with many
//! sessions multiplexed on it by `session_id`.
//!
//! Owns: line framing (blank lines and lines without `event` skipped, a configurable line cap that
//! fails only the session an oversized line belongs to), routing `session` messages to the listener
//! registered for their id, heartbeat and activity tracking, serialised writes. Must not: spawn or
//! kill processes, build environments, or interpret what a session's items mean. The stdio runtime,
//! the debug TCP runtime and `dify plugin run` all sit on top of this.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dify_protocol::message::{parse_plugin_line, peek_session_id, PluginEvent, PluginSessionError, SessionMessage};
use dify_protocol::observe::PluginLogSource;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

/// What a session listener receives.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A message the plugin sent for this session.
    Message(SessionMessage),
    /// The connection failed the session (plugin died, line too long, connection closed).
    Failed(PluginSessionError),
}

/// Why a write to the plugin failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ConnectionError {
    #[error("plugin connection is closed")]
    Closed,
    #[error("writing to the plugin failed: {0}")]
    Write(String),
    #[error("writing to the plugin timed out")]
    WriteTimeout,
}

/// Limits of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// Longest accepted plugin line in bytes.
    pub max_line_bytes: usize,
    /// Longest time one write may block (a plugin that stops reading its input).
    pub write_timeout: Duration,
    /// A label for log lines (the plugin identifier).
    pub label: String,
    /// Where the plugin's `log` and `error` events are also kept for operators.
    pub logs: Option<Arc<super::logs::LogRing>>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self { max_line_bytes: 64 * 1024 * 1024, write_timeout: Duration::from_secs(30), label: String::new(), logs: None }
    }
}

type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A live plugin connection shared by every session on it.
pub struct PluginConnection {
    writer: tokio::sync::Mutex<BoxedWriter>,
    sessions: Mutex<HashMap<String, mpsc::UnboundedSender<SessionEvent>>>,
    closed: AtomicBool,
    closed_reason: Mutex<Option<PluginSessionError>>,
    started: Instant,
    last_activity_ms: AtomicU64,
    heartbeats: watch::Sender<u64>,
    options: ConnectionOptions,
}

/// The receiving end of one session. Dropping it unregisters the session (a disconnected client).
pub struct SessionListener {
    session_id: String,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    connection: Weak<PluginConnection>,
}

impl SessionListener {
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The next event; `None` when the connection dropped the session without a message.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_recv(&mut self) -> Result<SessionEvent, mpsc::error::TryRecvError> {
        self.events.try_recv()
    }
}

impl Drop for SessionListener {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.upgrade() {
            connection.forget_session(&self.session_id);
        }
    }
}

impl PluginConnection {
    /// Starts reading `reader` in a background task. The returned handle finishes when the plugin's
    /// output ends or fails (its result says why); sessions stay registered until [`Self::close`].
    pub fn start<R, W>(reader: R, writer: W, options: ConnectionOptions) -> (Arc<Self>, tokio::task::JoinHandle<String>)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let (heartbeats, _) = watch::channel(0);
        let connection = Arc::new(Self {
            writer: tokio::sync::Mutex::new(Box::pin(writer)),
            sessions: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            closed_reason: Mutex::new(None),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            heartbeats,
            options,
        });
        let reading = connection.clone();
        let handle = tokio::spawn(async move { reading.read_loop(reader).await });
        (connection, handle)
    }

    /// Registers a listener for `session_id`; do this before writing the request.
    pub fn open_session(self: &Arc<Self>, session_id: &str) -> Result<SessionListener, ConnectionError> {
        if self.is_closed() {
            return Err(ConnectionError::Closed);
        }
        let (sender, events) = mpsc::unbounded_channel();
        self.lock_sessions().insert(session_id.to_owned(), sender);
        Ok(SessionListener { session_id: session_id.to_owned(), events, connection: Arc::downgrade(self) })
    }

    /// Writes one line (a trailing `\n` is added when missing) and flushes it.
    pub async fn send_line(&self, line: &[u8]) -> Result<(), ConnectionError> {
        if self.is_closed() {
            return Err(ConnectionError::Closed);
        }
        let mut writer = self.writer.lock().await;
        let write = async {
            writer.write_all(line).await?;
            if !line.ends_with(b"\n") {
                writer.write_all(b"\n").await?;
            }
            writer.flush().await
        };
        let mut write = std::pin::pin!(write);
        // A write the pipe or socket takes at once needs no timer; only one that has to wait for the
        // plugin to read gets the write timeout.
        let written = match std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(write.as_mut(), cx))).await {
            std::task::Poll::Ready(result) => Ok(result),
            std::task::Poll::Pending => tokio::time::timeout(self.options.write_timeout, write).await,
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ConnectionError::Write(error.to_string())),
            Err(_) => Err(ConnectionError::WriteTimeout),
        }
    }

    /// Number of heartbeats seen so far; `changed()` on the receiver wakes on each.
    pub fn heartbeats(&self) -> watch::Receiver<u64> {
        self.heartbeats.subscribe()
    }

    /// Time since the plugin last produced any output (or since the connection started).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Counts as plugin activity (used for stderr lines, which do not pass through this connection).
    pub fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(now, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Number of sessions currently registered.
    pub fn open_sessions(&self) -> usize {
        self.lock_sessions().len()
    }

    /// Closes the connection: every registered session receives `reason` and later writes fail.
    pub fn close(&self, reason: PluginSessionError) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut slot) = self.closed_reason.lock() {
            slot.get_or_insert(reason.clone());
        }
        let sessions: Vec<_> = self.lock_sessions().drain().collect();
        for (_, sender) in sessions {
            let _ = sender.send(SessionEvent::Failed(reason.clone()));
        }
    }

    /// Why the connection was closed, if it was.
    pub fn closed_reason(&self) -> Option<PluginSessionError> {
        self.closed_reason.lock().ok().and_then(|r| r.clone())
    }

    fn forget_session(&self, session_id: &str) {
        self.lock_sessions().remove(session_id);
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<SessionEvent>>> {
        // A poisoned map only means another thread panicked mid-insert; the map itself is still usable.
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn read_loop<R: AsyncRead + Unpin>(self: Arc<Self>, reader: R) -> String {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let mut line: Vec<u8> = Vec::new();
        // When a line outgrows the cap: the session id found in its beginning; bytes are then skipped
        // up to the next newline.
        let mut oversized: Option<Option<String>> = None;
        loop {
            let chunk = match reader.fill_buf().await {
                Ok(chunk) => chunk,
                Err(error) => return format!("reading plugin output failed: {error}"),
            };
            if chunk.is_empty() {
                return "plugin output ended".to_string();
            }
            let (part, complete) = match memchr::memchr(b'\n', chunk) {
                Some(index) => (&chunk[..index], Some(index + 1)),
                None => (chunk, None),
            };
            if let (Some(consumed), None, true) = (complete, &oversized, line.is_empty()) {
                if part.len() <= self.options.max_line_bytes {
                    // The whole line is in the read buffer: read it from there, without a copy.
                    self.touch();
                    self.handle_line(part);
                    reader.consume(consumed);
                    continue;
                }
            }
            if oversized.is_none() {
                if line.len() + part.len() > self.options.max_line_bytes {
                    line.extend_from_slice(&part[..part.len().min(4096)]);
                    oversized = Some(peek_session_id(&line));
                    line.clear();
                } else {
                    line.extend_from_slice(part);
                }
            }
            let consumed = complete.unwrap_or(chunk.len());
            reader.consume(consumed);
            self.touch();
            if complete.is_some() {
                match oversized.take() {
                    Some(session_id) => self.reject_oversized_line(session_id),
                    None => self.handle_line(&line),
                }
                line.clear();
                if line.capacity() > 1024 * 1024 {
                    line.shrink_to(64 * 1024);
                }
            }
        }
    }

    fn reject_oversized_line(&self, session_id: Option<String>) {
        let limit = self.options.max_line_bytes;
        tracing::warn!(plugin = %self.options.label, ?session_id, limit, "plugin output line exceeds the line limit");
        let Some(session_id) = session_id else { return };
        let sender = self.lock_sessions().remove(&session_id);
        if let Some(sender) = sender {
            let _ = sender.send(SessionEvent::Failed(PluginSessionError::new(
                "PluginResponseTooLarge",
                format!("plugin response line exceeds the limit of {limit} bytes (PLUGIN_RUNTIME_MAX_BUFFER_SIZE)"),
            )));
        }
    }

    fn handle_line(&self, line: &[u8]) {
        let event = match parse_plugin_line(line) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(plugin = %self.options.label, %error, "ignoring a plugin output line");
                return;
            }
        };
        match event {
            PluginEvent::Heartbeat => {
                self.heartbeats.send_modify(|count| *count += 1);
            }
            PluginEvent::Log(log) => {
                tracing::info!(plugin = %self.options.label, level = %log.level, "{}", log.message);
                if let Some(ring) = &self.options.logs {
                    ring.push(PluginLogSource::Log, &log.level, &log.message);
                }
            }
            PluginEvent::Error(text) => {
                tracing::warn!(plugin = %self.options.label, "plugin reported an error: {text}");
                if let Some(ring) = &self.options.logs {
                    ring.push(PluginLogSource::Error, "ERROR", &text);
                }
            }
            PluginEvent::Unknown(event) => {
                tracing::warn!(plugin = %self.options.label, event, "ignoring an unknown plugin event");
            }
            PluginEvent::Session { session_id, message } => {
                let finished = matches!(message, SessionMessage::End(_));
                let mut sessions = self.lock_sessions();
                let delivered = match sessions.get(&session_id) {
                    Some(sender) => sender.send(SessionEvent::Message(message)).is_ok(),
                    None => false,
                };
                if finished || !delivered {
                    sessions.remove(&session_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dify_protocol::compact::RawChunk;
    use tokio::io::{duplex, AsyncReadExt};

    #[tokio::test]
    async fn multiplexes_sessions_and_skips_noise() {
        let (plugin_side, daemon_side) = duplex(1 << 16);
        let (daemon_read, daemon_write) = tokio::io::split(daemon_side);
        let (mut plugin_read, mut plugin_write) = tokio::io::split(plugin_side);
        let (connection, _reader) = PluginConnection::start(daemon_read, daemon_write, ConnectionOptions::default());
        let mut a = connection.open_session("a").unwrap();
        let mut b = connection.open_session("b").unwrap();
        let mut heartbeats = connection.heartbeats();
        connection.send_line(b"{\"hello\":1}").await.unwrap();
        let mut buf = [0u8; 12];
        plugin_read.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"{\"hello\":1}\n");
        plugin_write
            .write_all(
                b"{\"version\":\"1\"}\n\n{\"event\":\"heartbeat\",\"session_id\":null,\"data\":{}}\n\nnot json\n\
                  {\"event\":\"session\",\"session_id\":\"b\",\"data\":{\"type\":\"stream\",\"data\":{\"n\":2}}}\n\n\
                  {\"event\":\"session\",\"session_id\":\"a\",\"data\":{\"type\":\"stream\",\"data\":{\"n\":1}}}\n\n\
                  {\"event\":\"session\",\"session_id\":\"a\",\"data\":{\"type\":\"end\",\"data\":{}}}\n",
            )
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), a.recv()).await.unwrap().unwrap();
        assert_eq!(first, SessionEvent::Message(SessionMessage::Stream(RawChunk::from_value(&serde_json::json!({"n": 1})))));
        let end = tokio::time::timeout(Duration::from_secs(5), a.recv()).await.unwrap().unwrap();
        assert!(matches!(end, SessionEvent::Message(SessionMessage::End(_))));
        let other = tokio::time::timeout(Duration::from_secs(5), b.recv()).await.unwrap().unwrap();
        assert_eq!(other, SessionEvent::Message(SessionMessage::Stream(RawChunk::from_value(&serde_json::json!({"n": 2})))));
        tokio::time::timeout(Duration::from_secs(5), heartbeats.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
        assert_eq!(connection.open_sessions(), 1);
        drop(b);
        assert_eq!(connection.open_sessions(), 0);
    }

    #[tokio::test]
    async fn oversized_line_fails_only_its_session() {
        let (plugin_side, daemon_side) = duplex(1 << 16);
        let (daemon_read, daemon_write) = tokio::io::split(daemon_side);
        let (_plugin_read, mut plugin_write) = tokio::io::split(plugin_side);
        let options = ConnectionOptions { max_line_bytes: 1000, ..Default::default() };
        let (connection, _reader) = PluginConnection::start(daemon_read, daemon_write, options);
        let mut big = connection.open_session("big").unwrap();
        let mut small = connection.open_session("small").unwrap();
        let huge = format!(
            "{{\"event\":\"session\",\"session_id\":\"big\",\"data\":{{\"type\":\"stream\",\"data\":{{\"text\":\"{}\"}}}}}}\n",
            "x".repeat(200_000)
        );
        plugin_write.write_all(huge.as_bytes()).await.unwrap();
        plugin_write
            .write_all(b"{\"event\":\"session\",\"session_id\":\"small\",\"data\":{\"type\":\"stream\",\"data\":{\"ok\":true}}}\n")
            .await
            .unwrap();
        let failed = tokio::time::timeout(Duration::from_secs(5), big.recv()).await.unwrap().unwrap();
        assert!(matches!(failed, SessionEvent::Failed(ref e) if e.error_type == "PluginResponseTooLarge"), "{failed:?}");
        let fine = tokio::time::timeout(Duration::from_secs(5), small.recv()).await.unwrap().unwrap();
        assert_eq!(fine, SessionEvent::Message(SessionMessage::Stream(RawChunk::from_value(&serde_json::json!({"ok": true})))));
        assert!(!connection.is_closed());
    }

    #[tokio::test]
    async fn a_plugin_that_stops_reading_gets_a_write_timeout() {
        let (_plugin_side, daemon_side) = duplex(1024);
        let (daemon_read, daemon_write) = tokio::io::split(daemon_side);
        let options = ConnectionOptions { write_timeout: Duration::from_millis(200), ..Default::default() };
        let (connection, _reader) = PluginConnection::start(daemon_read, daemon_write, options);
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), connection.send_line(&[b'x'; 4096])).await.unwrap();
        assert_eq!(result, Err(ConnectionError::WriteTimeout));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(connection.send_line(b"next").await, Err(ConnectionError::WriteTimeout));
    }

    #[tokio::test]
    async fn closing_fails_open_sessions_and_rejects_writes() {
        let (_plugin_side, daemon_side) = duplex(1024);
        let (daemon_read, daemon_write) = tokio::io::split(daemon_side);
        let (connection, _reader) = PluginConnection::start(daemon_read, daemon_write, ConnectionOptions::default());
        let mut session = connection.open_session("s").unwrap();
        connection.close(PluginSessionError::new("ConnectionClosedError", "gone"));
        let event = session.recv().await.unwrap();
        assert!(matches!(event, SessionEvent::Failed(ref e) if e.message == "gone"));
        assert_eq!(connection.send_line(b"x").await, Err(ConnectionError::Closed));
        assert!(connection.open_session("t").is_err());
    }
}
