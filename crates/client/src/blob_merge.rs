//! Reassembly of `blob_chunk` tool messages into one `blob` message per file id, as Dify does
//! after every tool invocation (docs/http.md §6.3).
//!
//! Owns the per-id buffers and the size limits (8 KiB per decoded chunk, 30 MiB per file). Other
//! messages pass through untouched and in order. It must not look at any other message type.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::error::ClientError;
use crate::transport::ItemStream;
use crate::wire::ToolInvokeMessage;

/// Largest decoded chunk accepted.
pub const MAX_BLOB_CHUNK_BYTES: usize = 8 * 1024;
/// Largest reassembled file accepted.
pub const MAX_BLOB_FILE_BYTES: usize = 30 * 1024 * 1024;

/// Buffers of files still being received, by chunk id.
#[derive(Debug, Default)]
pub struct BlobAssembler {
    files: HashMap<String, Vec<u8>>,
}

impl BlobAssembler {
    /// Feeds one message: `Ok(Some(_))` is a message to hand on (the input itself, or the merged
    /// blob when this chunk ended a file), `Ok(None)` a chunk that was buffered.
    pub fn push(&mut self, message: ToolInvokeMessage) -> Result<Option<ToolInvokeMessage>, ClientError> {
        if message.message_type != "blob_chunk" {
            return Ok(Some(message));
        }
        let malformed = |why: &str| ClientError::MalformedResponse { url: String::new(), message: format!("blob_chunk {why}") };
        let id = message.message.get("id").and_then(Value::as_str).ok_or_else(|| malformed("without id"))?.to_string();
        let encoded = message.message.get("blob").and_then(Value::as_str).ok_or_else(|| malformed("without blob"))?;
        let bytes = STANDARD.decode(encoded).map_err(|err| malformed(&format!("with invalid base64: {err}")))?;
        let end = message.message.get("end").and_then(Value::as_bool).unwrap_or(false);
        if bytes.len() > MAX_BLOB_CHUNK_BYTES {
            self.files.remove(&id);
            return Err(malformed(&format!("of {} bytes exceeds the {MAX_BLOB_CHUNK_BYTES}-byte limit", bytes.len())));
        }
        let buffer = self.files.entry(id.clone()).or_default();
        if buffer.len() + bytes.len() > MAX_BLOB_FILE_BYTES {
            self.files.remove(&id);
            return Err(malformed(&format!("file exceeds the {MAX_BLOB_FILE_BYTES}-byte limit")));
        }
        buffer.extend_from_slice(&bytes);
        if !end {
            return Ok(None);
        }
        let data = self.files.remove(&id).unwrap_or_default();
        Ok(Some(ToolInvokeMessage {
            message_type: "blob".to_string(),
            message: json!({"blob": STANDARD.encode(data)}),
            meta: message.meta,
        }))
    }
}

/// Applies a [`BlobAssembler`] to a message stream; the stream ends after the first error.
pub fn merge_blob_chunks(stream: ItemStream<ToolInvokeMessage>) -> ItemStream<ToolInvokeMessage> {
    futures::stream::unfold((stream, BlobAssembler::default(), false), |(mut stream, mut assembler, done)| async move {
        if done {
            return None;
        }
        loop {
            match stream.next().await? {
                Ok(message) => match assembler.push(message) {
                    Ok(Some(out)) => return Some((Ok(out), (stream, assembler, false))),
                    Ok(None) => continue,
                    Err(error) => return Some((Err(error), (stream, assembler, true))),
                },
                Err(error) => return Some((Err(error), (stream, assembler, true))),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, bytes: &[u8], end: bool) -> ToolInvokeMessage {
        serde_json::from_value(json!({
            "type": "blob_chunk",
            "message": {"id": id, "sequence": 0, "total_length": 0, "blob": STANDARD.encode(bytes), "end": end},
            "meta": {"mime_type": "text/plain"}
        }))
        .unwrap()
    }

    #[test]
    fn merges_interleaved_files_and_passes_others_through() {
        let mut assembler = BlobAssembler::default();
        assert!(assembler.push(chunk("a", b"hel", false)).unwrap().is_none());
        assert!(assembler.push(chunk("b", b"xy", false)).unwrap().is_none());
        let text: ToolInvokeMessage = serde_json::from_value(json!({"type": "text", "message": {"text": "t"}})).unwrap();
        assert_eq!(assembler.push(text.clone()).unwrap(), Some(text));
        let merged = assembler.push(chunk("a", b"lo", true)).unwrap().unwrap();
        assert_eq!(merged.message_type, "blob");
        assert_eq!(merged.message["blob"], STANDARD.encode(b"hello"));
        assert_eq!(merged.meta.unwrap()["mime_type"], "text/plain");
        let other = assembler.push(chunk("b", b"z", true)).unwrap().unwrap();
        assert_eq!(other.message["blob"], STANDARD.encode(b"xyz"));
    }

    #[test]
    fn oversized_or_malformed_chunks_fail() {
        let mut assembler = BlobAssembler::default();
        assert!(assembler.push(chunk("a", &[0u8; MAX_BLOB_CHUNK_BYTES + 1], false)).is_err());
        let bad: ToolInvokeMessage = serde_json::from_value(json!({"type": "blob_chunk", "message": {"id": "a", "blob": "!!"}})).unwrap();
        assert!(assembler.push(bad).is_err());
    }

    #[tokio::test]
    async fn stream_adapter_merges_and_stops_after_an_error() {
        let items = vec![
            Ok(chunk("f", b"ab", false)),
            Ok(chunk("f", b"cd", true)),
            Err(ClientError::PluginDaemonInternalServerError { message: "killed by timeout".into() }),
            Ok(chunk("g", b"never", true)),
        ];
        let merged: Vec<_> = merge_blob_chunks(futures::stream::iter(items).boxed()).collect().await;
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].as_ref().unwrap().message["blob"], STANDARD.encode(b"abcd"));
        assert!(merged[1].is_err());
    }
}
