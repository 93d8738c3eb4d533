//! Backwards invocations: calls a plugin makes during a session (docs/protocol.md §4).
//!
//! Owns: the permission check against the manifest's `resource.permission`, plugin storage
//! (get/set/del/exist per tenant and plugin, key rules, quota checked before the write), and the
//! client of Dify's inner API (`X-Inner-Api-Key`, JSON envelopes, the length-prefixed frame format of
//! streamed replies, timeouts). Must not: write to the plugin (the session frames the answers and
//! sends the final `end`) or know HTTP routes of the daemon.

use std::sync::Arc;
use std::time::Duration;

use dify_protocol::access::AccessType;
use dify_protocol::manifest::PluginPermissions;
use dify_protocol::message::{BackwardsReply, BackwardsRequest};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::runtime::RuntimeConfig;
use crate::store::{PluginKv, StoreError};

/// Who is calling back: the session's tenant, user, plugin and what the plugin may do.
#[derive(Debug, Clone)]
pub struct CallerContext {
    pub session_id: String,
    pub tenant_id: String,
    pub user_id: String,
    /// `author/name`.
    pub plugin_id: String,
    /// The access type the session was opened with.
    pub access_type: AccessType,
    pub permissions: PluginPermissions,
}

/// Answers backwards invocations. Implementations send `response`/`error` items on `replies`; the
/// session sends the final `end` after `handle` returns.
pub trait BackwardsHandler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        caller: &'a CallerContext,
        request: BackwardsRequest,
        replies: &'a mpsc::UnboundedSender<BackwardsReply>,
    ) -> BoxFuture<'a, ()>;
}

/// A plugin storage backend failure; its text is shown to the plugin.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The daemon's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another backend failed (in-memory storage of tools and tests).
    #[error("{0}")]
    Backend(String),
}

/// Why a storage key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageKeyError {
    #[error("key is required")]
    Empty,
    #[error("key length must be less than 256")]
    TooLong,
    /// Traversal, backslashes or a key that cleans to nothing.
    #[error("invalid key")]
    Invalid,
}

/// Why the inner API's frame stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid frame magic 0x{0:02x} from dify inner api")]
    Magic(u8),
    #[error("invalid frame header length {0} from dify inner api")]
    HeaderLength(usize),
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge { length: usize, limit: usize },
    #[error("dify inner api stream ended inside a frame")]
    Truncated,
}

/// Why a backwards invocation failed; its text is the error sent to the plugin.
#[derive(Debug, thiserror::Error)]
pub enum BackwardsError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] StorageKeyError),
    #[error("load data failed, please check if the key is correct or you have not set it")]
    KeyNotFound,
    #[error("invalid value, value must be hex encoded: {0}")]
    ValueEncoding(#[source] hex::FromHexError),
    #[error("allocated size is greater than max storage size ({after} > {limit} bytes)")]
    QuotaExceeded { after: u64, limit: u64 },
    #[error("unsupported storage operation: {0}")]
    UnsupportedOperation(String),
    #[error("failed to call dify inner api {path}: {source}")]
    Call { path: String, source: reqwest::Error },
    #[error("failed to read dify inner api reply: {0}")]
    ReadReply(#[source] reqwest::Error),
    /// A non-2xx answer; `body` is its start (at most 1 KiB).
    #[error("dify inner api {path} returned HTTP {status}: {body}")]
    Status { path: String, status: reqwest::StatusCode, body: String },
    #[error("invalid dify inner api reply: {0}")]
    InvalidReply(#[source] serde_json::Error),
    #[error("reading dify inner api stream failed: {0}")]
    ReadStream(#[source] reqwest::Error),
    #[error("invalid frame from dify inner api: {0}")]
    InvalidFrame(#[source] serde_json::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The `error` text of Dify's envelope.
    #[error("{0}")]
    Dify(String),
    #[error("dify inner api returned no data")]
    NoData,
}

/// Plugin key-value storage as backwards invocations need it. Error texts are shown to the plugin.
pub trait PluginStorage: Send + Sync + 'static {
    fn get<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>>;
    fn set<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>>;
    fn delete<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<u64, StorageError>>;
    fn exists<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Bytes used by all values of the plugin in the tenant.
    fn usage_bytes<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str) -> BoxFuture<'a, Result<u64, StorageError>>;
}

impl PluginStorage for PluginKv {
    fn get<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        Box::pin(async move { PluginKv::get(self, tenant_id, plugin_id, key).await.map_err(StorageError::from) })
    }
    fn set<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move { PluginKv::set(self, tenant_id, plugin_id, key, value).await.map_err(StorageError::from) })
    }
    fn delete<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move { PluginKv::delete(self, tenant_id, plugin_id, key).await.map_err(StorageError::from) })
    }
    fn exists<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move { PluginKv::exists(self, tenant_id, plugin_id, key).await.map_err(StorageError::from) })
    }
    fn usage_bytes<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move { PluginKv::usage_bytes(self, tenant_id, plugin_id).await.map_err(StorageError::from) })
    }
}

/// How an invoke type is served.
struct InvokeRoute {
    invoke_type: &'static str,
    /// Path under `<DIFY_INNER_API_URL>/inner/api/`.
    path: &'static str,
    /// Streamed (framed) reply instead of one JSON envelope.
    streamed: bool,
    allowed: fn(&PluginPermissions) -> bool,
}

const INVOKE_ROUTES: &[InvokeRoute] = &[
    InvokeRoute { invoke_type: "tool", path: "invoke/tool", streamed: true, allowed: PluginPermissions::allows_tool },
    InvokeRoute { invoke_type: "llm", path: "invoke/llm", streamed: true, allowed: PluginPermissions::allows_llm },
    InvokeRoute {
        invoke_type: "llm_structured_output",
        path: "invoke/llm/structured-output",
        streamed: true,
        allowed: PluginPermissions::allows_llm,
    },
    InvokeRoute {
        invoke_type: "text_embedding",
        path: "invoke/text-embedding",
        streamed: false,
        allowed: PluginPermissions::allows_text_embedding,
    },
    InvokeRoute {
        invoke_type: "multimodal_embedding",
        path: "invoke/multimodal-embedding",
        streamed: false,
        allowed: PluginPermissions::allows_text_embedding,
    },
    InvokeRoute { invoke_type: "rerank", path: "invoke/rerank", streamed: false, allowed: PluginPermissions::allows_rerank },
    InvokeRoute {
        invoke_type: "multimodal_rerank",
        path: "invoke/multimodal-rerank",
        streamed: false,
        allowed: PluginPermissions::allows_rerank,
    },
    InvokeRoute { invoke_type: "tts", path: "invoke/tts", streamed: true, allowed: PluginPermissions::allows_tts },
    InvokeRoute { invoke_type: "speech2text", path: "invoke/speech2text", streamed: false, allowed: PluginPermissions::allows_speech2text },
    InvokeRoute { invoke_type: "moderation", path: "invoke/moderation", streamed: false, allowed: PluginPermissions::allows_moderation },
    InvokeRoute {
        invoke_type: "node_parameter_extractor",
        path: "invoke/parameter-extractor",
        streamed: false,
        allowed: PluginPermissions::allows_node,
    },
    InvokeRoute {
        invoke_type: "node_question_classifier",
        path: "invoke/question-classifier",
        streamed: false,
        allowed: PluginPermissions::allows_node,
    },
    InvokeRoute { invoke_type: "app", path: "invoke/app", streamed: true, allowed: PluginPermissions::allows_app },
    InvokeRoute { invoke_type: "fetch_app", path: "fetch/app/info", streamed: false, allowed: PluginPermissions::allows_app },
    InvokeRoute { invoke_type: "system_summary", path: "invoke/summary", streamed: false, allowed: PluginPermissions::allows_llm },
    InvokeRoute { invoke_type: "upload_file", path: "upload/file/request", streamed: false, allowed: |_| true },
];

/// The daemon's backwards handler: storage served locally, everything else forwarded to Dify.
pub struct DifyBackwards {
    http: reqwest::Client,
    inner_api_url: String,
    inner_api_key: String,
    read_timeout: Duration,
    max_frame_bytes: usize,
    storage: Arc<dyn PluginStorage>,
    storage_max_size: u64,
    /// Serialises storage writes so the quota check and the write are one step.
    storage_writes: tokio::sync::Mutex<()>,
}

impl DifyBackwards {
    pub fn new(config: &RuntimeConfig, storage: Arc<dyn PluginStorage>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(config.backwards_write_timeout)
            .pool_idle_timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Self {
            http,
            inner_api_url: config.dify_inner_api_url.trim_end_matches('/').to_string(),
            inner_api_key: config.dify_inner_api_key.clone(),
            read_timeout: config.backwards_read_timeout,
            max_frame_bytes: config.response_max_buffer_size,
            storage,
            storage_max_size: config.persistence_storage_max_size,
            storage_writes: tokio::sync::Mutex::new(()),
        }
    }

    async fn serve(&self, caller: &CallerContext, request: BackwardsRequest, replies: &mpsc::UnboundedSender<BackwardsReply>) {
        let id = request.backwards_request_id.clone();
        let fail = |message: String| {
            let _ = replies.send(BackwardsReply::error(&id, message));
        };
        if caller.access_type == AccessType::Model {
            return fail("you can not invoke dify from model".into());
        }
        if request.invoke_type == "storage" {
            if !caller.permissions.allows_storage() {
                return fail("permission denied, you need to enable storage access in plugin manifest".into());
            }
            return match self.storage_operation(caller, &request.request).await {
                Ok(data) => {
                    let _ = replies.send(BackwardsReply::structure(&id, data));
                }
                Err(error) => fail(error.to_string()),
            };
        }
        let Some(route) = INVOKE_ROUTES.iter().find(|r| r.invoke_type == request.invoke_type) else {
            return fail(format!("unsupported invoke type: {}", request.invoke_type));
        };
        if !(route.allowed)(&caller.permissions) {
            return fail(format!("permission denied, you need to enable {} access in plugin manifest", request.invoke_type));
        }
        let mut body = request.request.clone();
        body.insert("tenant_id".into(), Value::String(caller.tenant_id.clone()));
        body.insert("user_id".into(), Value::String(caller.user_id.clone()));
        body.insert("type".into(), Value::String(request.invoke_type.clone()));
        let result = if route.streamed {
            self.call_streamed(route.path, &body, |item| {
                let _ = replies.send(BackwardsReply::stream(&id, item));
            })
            .await
        } else {
            self.call_single(route.path, &body).await.map(|item| {
                let _ = replies.send(BackwardsReply::structure(&id, item));
            })
        };
        if let Err(error) = result {
            fail(error.to_string());
        }
    }

    fn post(&self, path: &str, body: &Map<String, Value>) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(format!("{}/inner/api/{path}", self.inner_api_url))
            .header("X-Inner-Api-Key", &self.inner_api_key)
            .timeout(self.read_timeout)
            .json(body);
        // The session's trace (see `crate::trace`), so Dify's side joins the caller's trace.
        match crate::trace::current() {
            Some(trace) => request.header("traceparent", trace.to_traceparent()),
            None => request,
        }
    }

    async fn call_single(&self, path: &str, body: &Map<String, Value>) -> Result<Value, BackwardsError> {
        let response = self.post(path, body).send().await.map_err(|source| BackwardsError::Call { path: path.to_string(), source })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(BackwardsError::ReadReply)?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
            return Err(BackwardsError::Status { path: path.to_string(), status, body });
        }
        let envelope: Value = serde_json::from_slice(&bytes).map_err(BackwardsError::InvalidReply)?;
        envelope_data(envelope)
    }

    async fn call_streamed(&self, path: &str, body: &Map<String, Value>, mut emit: impl FnMut(Value)) -> Result<(), BackwardsError> {
        let response = self.post(path, body).send().await.map_err(|source| BackwardsError::Call { path: path.to_string(), source })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let body = text[..text.len().min(1024)].to_string();
            return Err(BackwardsError::Status { path: path.to_string(), status, body });
        }
        let mut decoder = FrameDecoder::new(self.max_frame_bytes);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BackwardsError::ReadStream)?;
            decoder.push(&chunk);
            while let Some(payload) = decoder.next_frame()? {
                let envelope: Value = serde_json::from_slice(&payload).map_err(BackwardsError::InvalidFrame)?;
                emit(envelope_data(envelope)?);
            }
        }
        Ok(decoder.finish()?)
    }

    async fn storage_operation(&self, caller: &CallerContext, request: &Map<String, Value>) -> Result<Value, BackwardsError> {
        let opt = request.get("opt").and_then(Value::as_str).unwrap_or_default();
        let key = request.get("key").and_then(Value::as_str).unwrap_or_default();
        let key = validate_storage_key(key)?;
        let (tenant, plugin) = (caller.tenant_id.as_str(), caller.plugin_id.as_str());
        match opt {
            "get" => match self.storage.get(tenant, plugin, &key).await? {
                Some(value) => Ok(serde_json::json!({"data": hex::encode(value)})),
                None => Err(BackwardsError::KeyNotFound),
            },
            "set" => {
                let encoded = request.get("value").and_then(Value::as_str).unwrap_or_default();
                let value = hex::decode(encoded).map_err(BackwardsError::ValueEncoding)?;
                let manifest_limit = caller.permissions.storage.as_ref().map(|s| s.size).filter(|s| *s > 0);
                let limit = manifest_limit.map_or(self.storage_max_size, |m| m.min(self.storage_max_size));
                let _write = self.storage_writes.lock().await;
                let used = self.storage.usage_bytes(tenant, plugin).await?;
                let previous = self.storage.get(tenant, plugin, &key).await?.map_or(0, |v| v.len() as u64);
                let after = used.saturating_sub(previous) + value.len() as u64;
                if after > limit {
                    return Err(BackwardsError::QuotaExceeded { after, limit });
                }
                self.storage.set(tenant, plugin, &key, &value).await?;
                Ok(serde_json::json!({"data": "ok"}))
            }
            "del" => {
                let deleted = self.storage.delete(tenant, plugin, &key).await?;
                Ok(serde_json::json!({"data": "ok", "deleted_num": deleted}))
            }
            "exist" => {
                let exists = self.storage.exists(tenant, plugin, &key).await?;
                Ok(serde_json::json!({"data": exists, "exist_num": u64::from(exists)}))
            }
            other => Err(BackwardsError::UnsupportedOperation(other.to_string())),
        }
    }
}

impl BackwardsHandler for DifyBackwards {
    fn handle<'a>(
        &'a self,
        caller: &'a CallerContext,
        request: BackwardsRequest,
        replies: &'a mpsc::UnboundedSender<BackwardsReply>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.serve(caller, request, replies))
    }
}

/// `{"data": T, "error": ""}` → T; a non-empty `error` or null `data` is a failure.
fn envelope_data(envelope: Value) -> Result<Value, BackwardsError> {
    match envelope.get("error") {
        Some(Value::String(error)) if !error.is_empty() => return Err(BackwardsError::Dify(error.clone())),
        _ => {}
    }
    match envelope.get("data") {
        Some(Value::Null) | None => Err(BackwardsError::NoData),
        Some(data) => Ok(data.clone()),
    }
}

/// Cleans a storage key like a path and rejects traversal and over-long keys.
pub fn validate_storage_key(key: &str) -> Result<String, StorageKeyError> {
    if key.is_empty() {
        return Err(StorageKeyError::Empty);
    }
    if key.len() > 256 {
        return Err(StorageKeyError::TooLong);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in key.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(StorageKeyError::Invalid);
                }
            }
            other => parts.push(other),
        }
    }
    let cleaned = if key.starts_with('/') { format!("/{}", parts.join("/")) } else { parts.join("/") };
    if cleaned.is_empty() || cleaned.contains("..") || cleaned.contains("//") || cleaned.contains('\\') || key.contains("..") {
        return Err(StorageKeyError::Invalid);
    }
    Ok(cleaned)
}

/// Magic byte of a Dify inner API stream frame.
pub const FRAME_MAGIC: u8 = 0x0F;
/// Bytes before a frame's payload: magic, reserved, u16 header length (10), u32 payload length, 6 reserved.
pub const FRAME_HEADER_BYTES: usize = 14;

/// Encodes one frame (used by tests and fakes of the inner API).
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.push(FRAME_MAGIC);
    frame.push(0);
    frame.extend_from_slice(&10u16.to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[0u8; 6]);
    frame.extend_from_slice(payload);
    frame
}

/// Incremental decoder of the inner API's length-prefixed frames.
pub struct FrameDecoder {
    buffer: Vec<u8>,
    max_payload: usize,
}

impl FrameDecoder {
    pub fn new(max_payload: usize) -> Self {
        Self { buffer: Vec::new(), max_payload }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete payload, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buffer.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        if self.buffer[0] != FRAME_MAGIC {
            return Err(FrameError::Magic(self.buffer[0]));
        }
        // The header length counts what follows the first 4 bytes: the payload length (4 bytes) and
        // reserved bytes (6 today); honour it so a longer header stays readable.
        let header_len = u16::from_le_bytes([self.buffer[2], self.buffer[3]]) as usize;
        if header_len < 4 {
            return Err(FrameError::HeaderLength(header_len));
        }
        let payload_start = 4 + header_len;
        let payload_len = u32::from_le_bytes([self.buffer[4], self.buffer[5], self.buffer[6], self.buffer[7]]) as usize;
        if payload_len > self.max_payload {
            return Err(FrameError::TooLarge { length: payload_len, limit: self.max_payload });
        }
        if self.buffer.len() < payload_start + payload_len {
            return Ok(None);
        }
        let payload = self.buffer[payload_start..payload_start + payload_len].to_vec();
        self.buffer.drain(..payload_start + payload_len);
        Ok(Some(payload))
    }

    /// Checks the stream ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_splits() {
        let mut bytes = encode_frame(br#"{"data":{"a":1},"error":""}"#);
        bytes.extend(encode_frame(br#"{"data":2,"error":""}"#));
        let mut decoder = FrameDecoder::new(1024);
        let mut payloads = Vec::new();
        for piece in bytes.chunks(5) {
            decoder.push(piece);
            while let Some(p) = decoder.next_frame().unwrap() {
                payloads.push(String::from_utf8(p).unwrap());
            }
        }
        assert_eq!(payloads, vec![r#"{"data":{"a":1},"error":""}"#, r#"{"data":2,"error":""}"#]);
        decoder.finish().unwrap();
        let mut bad = FrameDecoder::new(4);
        bad.push(&encode_frame(b"12345"));
        assert!(bad.next_frame().is_err());
        let mut wrong_magic = FrameDecoder::new(1024);
        wrong_magic.push(b"{\"data\":1,\"error\":\"\"}");
        assert!(wrong_magic.next_frame().is_err());
        // Byte layout of Dify's `<BBHI` + 6 reserved bytes.
        assert_eq!(&encode_frame(b"ab")[..14], &[0x0f, 0, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn storage_keys() {
        assert_eq!(validate_storage_key("a/b").unwrap(), "a/b");
        assert_eq!(validate_storage_key("a/./b/").unwrap(), "a/b");
        assert!(validate_storage_key("../x").is_err());
        assert!(validate_storage_key("a/../../x").is_err());
        assert!(validate_storage_key("a\\b").is_err());
        assert!(validate_storage_key(&"k".repeat(257)).is_err());
        assert!(validate_storage_key("").is_err());
    }

    struct NoStorage;
    impl PluginStorage for NoStorage {
        fn get<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
            Box::pin(async { Err(StorageError::Backend("storage must not be reached".to_string())) })
        }
        fn set<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str, _: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
            Box::pin(async { Err(StorageError::Backend("storage must not be reached".to_string())) })
        }
        fn delete<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
            Box::pin(async { Err(StorageError::Backend("storage must not be reached".to_string())) })
        }
        fn exists<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<bool, StorageError>> {
            Box::pin(async { Err(StorageError::Backend("storage must not be reached".to_string())) })
        }
        fn usage_bytes<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
            Box::pin(async { Err(StorageError::Backend("storage must not be reached".to_string())) })
        }
    }

    async fn answer(access_type: AccessType, permissions: PluginPermissions, invoke_type: &str) -> Vec<BackwardsReply> {
        // An unroutable inner API: any request that gets past the checks fails to connect.
        let config = RuntimeConfig { dify_inner_api_url: "http://127.0.0.1:9".into(), ..RuntimeConfig::default() };
        let handler = DifyBackwards::new(&config, Arc::new(NoStorage));
        let caller = CallerContext {
            session_id: "s".into(),
            tenant_id: "t".into(),
            user_id: "u".into(),
            plugin_id: "a/b".into(),
            access_type,
            permissions,
        };
        let request = BackwardsRequest { invoke_type: invoke_type.into(), backwards_request_id: "r1".into(), request: Map::new() };
        let (sender, mut receiver) = mpsc::unbounded_channel();
        handler.handle(&caller, request, &sender).await;
        drop(sender);
        let mut replies = Vec::new();
        while let Some(reply) = receiver.recv().await {
            replies.push(reply);
        }
        replies
    }

    #[tokio::test]
    async fn permissions_are_checked_before_anything_runs() {
        use dify_protocol::message::BackwardsReplyEvent;
        let none = PluginPermissions::default();
        let replies = answer(AccessType::Tool, none.clone(), "storage").await;
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].event, BackwardsReplyEvent::Error);
        assert!(replies[0].message.contains("storage"), "{:?}", replies[0]);
        let replies = answer(AccessType::Tool, none.clone(), "llm").await;
        assert!(replies[0].message.starts_with("permission denied"), "{:?}", replies[0]);
        let replies = answer(AccessType::Model, none.clone(), "tool").await;
        assert_eq!(replies[0].message, "you can not invoke dify from model");
        let replies = answer(AccessType::Tool, none.clone(), "encrypt").await;
        assert_eq!(replies[0].message, "unsupported invoke type: encrypt");
        // Allowed: the call goes out (and fails to connect here).
        let tool_allowed: PluginPermissions = serde_json::from_value(serde_json::json!({"tool": {"enabled": true}})).unwrap();
        let replies = answer(AccessType::Tool, tool_allowed, "tool").await;
        assert!(replies[0].message.contains("failed to call dify inner api invoke/tool"), "{:?}", replies[0]);
        // upload_file needs no permission.
        let replies = answer(AccessType::Tool, none, "upload_file").await;
        assert!(replies[0].message.contains("upload/file/request"), "{:?}", replies[0]);
    }

    #[test]
    fn envelopes() {
        assert_eq!(envelope_data(serde_json::json!({"data": 1, "error": ""})).unwrap(), 1);
        assert_eq!(envelope_data(serde_json::json!({"data": null, "error": "boom"})).unwrap_err().to_string(), "boom");
        assert!(envelope_data(serde_json::json!({"data": null, "error": ""})).is_err());
    }
}
