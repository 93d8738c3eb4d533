//! Dispatch over HTTP for a model provider plugin and an agent strategy plugin (both real SDK
//! plugins from `tests/plugins/`, installed through the management API into the daemon binary):
//! LLM streaming, token counting, embeddings, credential validation, schemas, plugin errors, and the
//! agent path's `blob_chunk` merging.

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use base64::Engine;
use common::{start_daemon, Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};
use sha2::Digest;

const TENANT: &str = "5b3e1d2c-8a9f-4e6d-b7c1-0a2b3c4d5e6f";

/// POSTs a dispatch route and returns the HTTP status and the SSE envelopes (framing checked).
async fn dispatch(daemon: &Daemon, plugin_id: &str, route: &str, data: Value) -> (u16, Vec<Value>) {
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch{route}")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", plugin_id)
        .timeout(Duration::from_secs(120))
        .json(&json!({"user_id": "user-9", "data": data}))
        .send()
        .await
        .expect("dispatch request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = response.text().await.expect("body");
    assert_eq!(content_type, "text/event-stream", "{status} {body}");
    assert!(body.ends_with("\n\n"), "{body:?}");
    let envelopes = body
        .split_terminator("\n\n")
        .map(|line| serde_json::from_str(line.strip_prefix("data: ").expect("data: prefix")).expect("JSON envelope"))
        .collect();
    (status, envelopes)
}

fn success_data(envelopes: &[Value]) -> Vec<Value> {
    envelopes
        .iter()
        .map(|e| {
            assert_eq!((&e["code"], &e["message"]), (&json!(0), &json!("success")), "{e}");
            e["data"].clone()
        })
        .collect()
}

/// The inner error object of a PluginInvokeError line.
fn plugin_error(envelope: &Value) -> Value {
    assert_eq!(envelope["code"], -500, "{envelope}");
    let outer: Value = serde_json::from_str(envelope["message"].as_str().expect("message")).expect("outer");
    assert_eq!(outer["error_type"], "PluginInvokeError", "{outer}");
    serde_json::from_str(outer["message"].as_str().expect("inner message")).expect("inner JSON object")
}

fn llm_data(text: &str) -> Value {
    json!({"provider": "echo_model", "model": "echo-llm", "model_type": "llm", "credentials": {"api_key": "ok"},
           "model_parameters": {"temperature": 0.3}, "prompt_messages": [{"role": "user", "content": text}],
           "tools": [], "stop": [], "stream": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_plugin_over_http_dispatch() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, &[]).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_model")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let plugin = "testing/runtime_model";

    // LLM streaming: one chunk per word, usage and finish reason on the last one.
    let (status, envelopes) = dispatch(&daemon, plugin, "/llm/invoke", llm_data("hello big world")).await;
    assert_eq!(status, 200);
    let chunks = success_data(&envelopes);
    let contents: Vec<&str> = chunks.iter().map(|c| c["delta"]["message"]["content"].as_str().unwrap_or("")).collect();
    assert_eq!(contents, ["hello", " big", " world"]);
    assert!(chunks.iter().all(|c| c["model"] == "echo-llm" && c["delta"]["message"]["role"] == "assistant"));
    assert_eq!(chunks[2]["delta"]["finish_reason"], "stop");
    assert_eq!(chunks[2]["delta"]["usage"]["prompt_tokens"], 3);
    assert!(chunks[0]["delta"]["usage"].is_null());

    // A failing LLM call ends with the mapped invoke error.
    let (_, envelopes) = dispatch(&daemon, plugin, "/llm/invoke", llm_data("fail")).await;
    let error = plugin_error(envelopes.last().expect("error line"));
    assert_eq!(error["error_type"], "InvokeBadRequestError", "{error}");
    assert!(error["message"].as_str().unwrap_or("").contains("asked to fail"), "{error}");

    // Token counting.
    let mut num_tokens = llm_data("one two three four");
    num_tokens
        .as_object_mut()
        .expect("object")
        .retain(|k, _| !matches!(k.as_str(), "stream" | "stop" | "model_parameters"));
    let (_, envelopes) = dispatch(&daemon, plugin, "/llm/num_tokens", num_tokens).await;
    assert_eq!(success_data(&envelopes), vec![json!({"num_tokens": 4})]);

    // Embeddings and their token counts.
    let embedding = json!({"provider": "echo_model", "model": "echo-embedding", "model_type": "text-embedding",
                           "credentials": {}, "texts": ["a b", "ccc"], "input_type": "document"});
    let (_, envelopes) = dispatch(&daemon, plugin, "/text_embedding/invoke", embedding.clone()).await;
    let result = success_data(&envelopes);
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["model"], "echo-embedding");
    assert_eq!(result[0]["embeddings"], json!([[3.0, 2.0, 0.0], [3.0, 1.0, 1.0]]));
    assert_eq!(result[0]["usage"]["tokens"], 3);
    let (_, envelopes) = dispatch(&daemon, plugin, "/text_embedding/num_tokens", embedding).await;
    assert_eq!(success_data(&envelopes), vec![json!({"num_tokens": [2, 1]})]);

    // Credentials validation, good and bad.
    let (_, envelopes) = dispatch(
        &daemon,
        plugin,
        "/model/validate_provider_credentials",
        json!({"provider": "echo_model", "credentials": {"api_key": "ok"}}),
    )
    .await;
    assert_eq!(success_data(&envelopes)[0]["result"], true);
    let (_, envelopes) = dispatch(
        &daemon,
        plugin,
        "/model/validate_provider_credentials",
        json!({"provider": "echo_model", "credentials": {"api_key": "bad"}}),
    )
    .await;
    assert_eq!(envelopes.len(), 1, "{envelopes:?}");
    let error = plugin_error(&envelopes[0]);
    assert_eq!((&error["error_type"], &error["message"]), (&json!("CredentialsValidateFailedError"), &json!("api key rejected")));
    let (_, envelopes) = dispatch(
        &daemon,
        plugin,
        "/model/validate_model_credentials",
        json!({"provider": "echo_model", "model": "echo-llm", "model_type": "llm", "credentials": {"api_key": "ok"}}),
    )
    .await;
    assert_eq!(success_data(&envelopes)[0]["result"], true);

    // Schemas.
    let (_, envelopes) = dispatch(
        &daemon,
        plugin,
        "/model/schema",
        json!({"provider": "echo_model", "model": "echo-llm", "model_type": "llm", "credentials": {}}),
    )
    .await;
    let schema = &success_data(&envelopes)[0]["model_schema"];
    assert_eq!((&schema["model"], &schema["model_type"]), (&json!("echo-llm"), &json!("llm")), "{schema}");
    assert_eq!(schema["model_properties"]["context_size"], 4096);

    // Polling routes answer one JSON envelope, not SSE; this model does not poll, so it is an error.
    let mut polling = llm_data("poll me");
    polling["stream"] = json!(false);
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/model/polling/start")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", plugin)
        .timeout(Duration::from_secs(60))
        .json(&json!({"user_id": "user-9", "data": polling}))
        .send()
        .await
        .expect("polling request");
    assert_eq!(response.status().as_u16(), 500);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .starts_with("application/json"));
    let envelope: Value = response.json().await.expect("JSON envelope");
    let error = plugin_error(&envelope);
    assert_eq!(error["error_type"], "ValueError", "{error}");
    assert!(error["message"].as_str().unwrap_or("").contains("does not support polling"), "{error}");

    // Validation of the route's model type happens before the plugin is reached.
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/llm/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", plugin)
        .json(&json!({"data": {"provider": "echo_model", "model": "echo-llm", "model_type": "rerank"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_strategy_plugin_merges_blob_chunks() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, &[]).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_agent")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let size = 50_000;
    let (status, envelopes) = dispatch(&daemon, "testing/runtime_agent", "/agent_strategy/invoke",
        json!({"agent_strategy_provider": "echo_agent", "agent_strategy": "echo", "agent_strategy_params": {"query": "hi", "blob_size": size}})).await;
    assert_eq!(status, 200);
    let chunks = success_data(&envelopes);
    let types: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap_or("")).collect();
    assert_eq!(types, ["log", "text", "json", "blob", "text"], "{chunks:?}");
    assert_eq!(chunks[1]["message"]["text"], "agent: hi");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(chunks[3]["message"]["blob"].as_str().expect("blob"))
        .expect("base64");
    assert_eq!(blob.len(), size);
    assert_eq!(json!(hex::encode(sha2::Sha256::digest(&blob))), chunks[2]["message"]["json_object"]["sha256"]);
    assert_eq!(chunks[3]["meta"]["filename"], "data.bin");
    assert_eq!(chunks[4]["message"]["text"], "done");
}
