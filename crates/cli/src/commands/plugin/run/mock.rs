//! Backwards invocations of `dify plugin run`: no Dify behind it, so calls get canned answers (an LLM
//! chunk, a tool text message, an embedding, …) and storage works in memory for the life of the run.
//!
//! Owns: the canned answers and the in-memory [`PluginStorage`]. Permission checks mirror the daemon's
//! (same manifest flags, same refusal texts); storage requests go through the daemon's own
//! [`DifyBackwards`] so key rules and the quota are exactly the daemon's. Must not: reach the network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dify_daemon::backwards::{BackwardsHandler, CallerContext, DifyBackwards, PluginStorage, StorageError};
use dify_daemon::runtime::RuntimeConfig;
use dify_protocol::access::AccessType;
use dify_protocol::manifest::PluginPermissions;
use dify_protocol::message::{BackwardsReply, BackwardsRequest};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Plugin storage held in memory: `(tenant, plugin, key) → bytes`.
#[derive(Default)]
pub struct MemoryStorage {
    values: Mutex<HashMap<(String, String, String), Vec<u8>>>,
}

impl MemoryStorage {
    fn with_values<T>(&self, f: impl FnOnce(&mut HashMap<(String, String, String), Vec<u8>>) -> T) -> T {
        let mut guard = self.values.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

fn storage_key(tenant: &str, plugin: &str, key: &str) -> (String, String, String) {
    (tenant.to_string(), plugin.to_string(), key.to_string())
}

impl PluginStorage for MemoryStorage {
    fn get<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        let value = self.with_values(|v| v.get(&storage_key(tenant_id, plugin_id, key)).cloned());
        Box::pin(async move { Ok(value) })
    }
    fn set<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
        self.with_values(|v| v.insert(storage_key(tenant_id, plugin_id, key), value.to_vec()));
        Box::pin(async { Ok(()) })
    }
    fn delete<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        let removed = self.with_values(|v| v.remove(&storage_key(tenant_id, plugin_id, key)).is_some());
        Box::pin(async move { Ok(u64::from(removed)) })
    }
    fn exists<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, StorageError>> {
        let exists = self.with_values(|v| v.contains_key(&storage_key(tenant_id, plugin_id, key)));
        Box::pin(async move { Ok(exists) })
    }
    fn usage_bytes<'a>(&'a self, tenant_id: &'a str, plugin_id: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        let used = self
            .with_values(|v| v.iter().filter(|((t, p, _), _)| t == tenant_id && p == plugin_id).map(|(_, value)| value.len() as u64).sum());
        Box::pin(async move { Ok(used) })
    }
}

/// How a mocked invoke type answers.
enum Canned {
    /// Streamed items (`response` events with message `stream`).
    Stream(Vec<Value>),
    /// One item (`response` event with message `struct`).
    Single(Value),
}

/// The backwards handler of `dify plugin run`.
pub struct MockBackwards {
    storage: DifyBackwards,
}

impl MockBackwards {
    pub fn new(config: &RuntimeConfig) -> Self {
        // Only storage requests ever reach this handler; its inner API client is never used.
        let config = RuntimeConfig { dify_inner_api_url: "http://127.0.0.1:9".into(), ..config.clone() };
        Self { storage: DifyBackwards::new(&config, Arc::new(MemoryStorage::default())) }
    }

    async fn serve(&self, caller: &CallerContext, request: BackwardsRequest, replies: &mpsc::UnboundedSender<BackwardsReply>) {
        if request.invoke_type == "storage" {
            return self.storage.handle(caller, request, replies).await;
        }
        let id = request.backwards_request_id.clone();
        let answer = if caller.access_type == AccessType::Model {
            Err("you can not invoke dify from model".to_string())
        } else {
            canned_answer(&request, &caller.permissions)
        };
        match answer {
            Ok(Canned::Stream(items)) => {
                for item in items {
                    let _ = replies.send(BackwardsReply::stream(&id, item));
                }
            }
            Ok(Canned::Single(item)) => {
                let _ = replies.send(BackwardsReply::structure(&id, item));
            }
            Err(message) => {
                let _ = replies.send(BackwardsReply::error(&id, message));
            }
        }
    }
}

impl BackwardsHandler for MockBackwards {
    fn handle<'a>(
        &'a self,
        caller: &'a CallerContext,
        request: BackwardsRequest,
        replies: &'a mpsc::UnboundedSender<BackwardsReply>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.serve(caller, request, replies))
    }
}

fn canned_answer(request: &BackwardsRequest, permissions: &PluginPermissions) -> Result<Canned, String> {
    let model = request.request.get("model").and_then(Value::as_str).unwrap_or("mock-model").to_string();
    let (allowed, canned) = match request.invoke_type.as_str() {
        "tool" => (
            permissions.allows_tool(),
            Canned::Stream(vec![json!({"type": "text", "message": {"text": "mocked tool output"}, "meta": null})]),
        ),
        "llm" | "llm_structured_output" => {
            let mut chunk = json!({
                "model": model,
                "prompt_messages": [],
                "system_fingerprint": null,
                "delta": {
                    "index": 0,
                    "message": {"role": "assistant", "content": "mocked LLM answer", "name": null, "tool_calls": []},
                    "usage": null,
                    "finish_reason": "stop",
                },
            });
            if request.invoke_type == "llm_structured_output" {
                chunk["structured_output"] = json!({});
            }
            (permissions.allows_llm(), Canned::Stream(vec![chunk]))
        }
        "text_embedding" | "multimodal_embedding" => (
            permissions.allows_text_embedding(),
            Canned::Single(json!({
                "model": model,
                "embeddings": [[0.1, 0.2, 0.3]],
                "usage": {"tokens": 1, "total_tokens": 1, "unit_price": "0", "price_unit": "0", "total_price": "0", "currency": "USD", "latency": 0.0},
            })),
        ),
        "rerank" | "multimodal_rerank" => (permissions.allows_rerank(), Canned::Single(json!({"model": model, "docs": []}))),
        "tts" => (permissions.allows_tts(), Canned::Stream(vec![json!({"result": hex::encode(b"mocked audio")})])),
        "speech2text" => (permissions.allows_speech2text(), Canned::Single(json!({"result": "mocked transcript"}))),
        "moderation" => (permissions.allows_moderation(), Canned::Single(json!({"result": false}))),
        "node_parameter_extractor" | "node_question_classifier" => (
            permissions.allows_node(),
            Canned::Single(json!({"inputs": {}, "process_data": {}, "outputs": {}, "metadata": {}, "edge_source_handle": null})),
        ),
        "app" => (permissions.allows_app(), Canned::Stream(vec![json!({"event": "message", "answer": "mocked app answer"})])),
        "fetch_app" => (permissions.allows_app(), Canned::Single(json!({}))),
        "system_summary" => (permissions.allows_llm(), Canned::Single(json!("mocked summary"))),
        "upload_file" => (true, Canned::Single(json!({"url": "http://127.0.0.1/files/upload/mocked"}))),
        other => return Err(format!("unsupported invoke type: {other}")),
    };
    if !allowed {
        return Err(format!("permission denied, you need to enable {} access in plugin manifest", request.invoke_type));
    }
    Ok(canned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn caller(permissions: Value) -> CallerContext {
        CallerContext {
            session_id: "s".into(),
            tenant_id: "t".into(),
            user_id: "u".into(),
            plugin_id: "a/b".into(),
            access_type: AccessType::Tool,
            permissions: serde_json::from_value(permissions).unwrap(),
        }
    }

    async fn call(handler: &MockBackwards, caller: &CallerContext, invoke_type: &str, request: Value) -> Vec<BackwardsReply> {
        let Value::Object(request) = request else { panic!("request must be an object") };
        let request = BackwardsRequest { invoke_type: invoke_type.into(), backwards_request_id: "r".into(), request };
        let (sender, mut receiver) = mpsc::unbounded_channel();
        handler.handle(caller, request, &sender).await;
        drop(sender);
        let mut replies = Vec::new();
        while let Some(reply) = receiver.recv().await {
            replies.push(reply);
        }
        replies
    }

    #[tokio::test]
    async fn storage_round_trips_in_memory() {
        let handler = MockBackwards::new(&RuntimeConfig::default());
        let caller = caller(json!({"storage": {"enabled": true, "size": 1024}}));
        let set = call(&handler, &caller, "storage", json!({"opt": "set", "key": "k", "value": hex::encode(b"v1")})).await;
        assert_eq!(set[0].data, json!({"data": "ok"}));
        let get = call(&handler, &caller, "storage", json!({"opt": "get", "key": "k"})).await;
        assert_eq!(get[0].data, json!({"data": hex::encode(b"v1")}));
        let too_big = call(&handler, &caller, "storage", json!({"opt": "set", "key": "big", "value": hex::encode(vec![0u8; 2000])})).await;
        assert!(too_big[0].message.contains("max storage size"), "{too_big:?}");
        let denied = call(&handler, &self::caller(json!({})), "storage", json!({"opt": "get", "key": "k"})).await;
        assert!(denied[0].message.contains("permission denied"), "{denied:?}");
    }

    #[tokio::test]
    async fn canned_answers_respect_permissions() {
        let handler = MockBackwards::new(&RuntimeConfig::default());
        let allowed = caller(json!({"model": {"enabled": true, "llm": true}, "tool": {"enabled": true}}));
        let llm = call(&handler, &allowed, "llm", json!({"model": "m"})).await;
        assert_eq!(llm[0].data["delta"]["message"]["content"], "mocked LLM answer");
        assert_eq!(llm[0].data["model"], "m");
        let tool = call(&handler, &allowed, "tool", json!({})).await;
        assert_eq!(tool[0].data["message"]["text"], "mocked tool output");
        let refused = call(&handler, &allowed, "rerank", json!({})).await;
        assert_eq!(refused[0].message, "permission denied, you need to enable rerank access in plugin manifest");
        let unknown = call(&handler, &allowed, "nope", Value::Object(Map::new())).await;
        assert_eq!(unknown[0].message, "unsupported invoke type: nope");
    }
}
