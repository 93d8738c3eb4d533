//! Every dispatch route of the route table, over HTTP against the daemon binary: a plugin process
//! written without the SDK (`tests/plugins/protocol_echo`) answers each request with the exact line
//! it received, so the test checks, per route, the in-stream request the daemon wrote: its layout,
//! the access type and action from the table, the flattened and completed `data`, and the
//! pass-through fields of the invocation. Routes go to an echo plugin declaring their provider kind.

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use common::{start_daemon, Backend, TestDb};
use dify_protocol::access::{AccessType, ModelTypeRule, ResponseMode, DISPATCH_ROUTES};
use runtime_support::*;
use serde_json::{json, Map, Value};

const TENANT: &str = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b";
const PLUGIN_ID: &str = "testing/protocol_echo";
/// Author of the echo plugins of the other provider kinds.
const AUTHOR: &str = "testing";

/// The echo plugin declared as a provider of `category` (a plugin declares one kind only, and the
/// daemon refuses routes of kinds a plugin does not declare): `dify plugin init` writes a valid
/// plugin of that kind, whose process is then replaced by the echo's `main.py`.
fn echo_variant(category: &str, name: &str) -> Vec<u8> {
    let dify = std::path::Path::new(env!("CARGO_BIN_EXE_dify-plugin-daemon")).parent().expect("bin dir").join("dify");
    assert!(dify.is_file(), "{} is not built; run `cargo build --workspace --bins` first", dify.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new(&dify)
        .args(["plugin", "init", "--quick", "--name", name, "--author", AUTHOR, "--category", category, "--description", "Echo"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run dify plugin init");
    assert!(status.success(), "dify plugin init --category {category} failed");
    let plugin = dir.path().join(name);
    let echo = plugin_dir("protocol_echo");
    for file in ["main.py", "requirements.txt"] {
        std::fs::copy(echo.join(file), plugin.join(file)).expect("copy the echo process");
    }
    let _ = std::fs::remove_file(plugin.join("pyproject.toml"));
    if category == "llm" {
        // One model provider serving every model type the routes use.
        let provider = plugin.join(format!("provider/{name}.yaml"));
        let text = std::fs::read_to_string(&provider).expect("provider yaml");
        let all = "supported_model_types:\n  - llm\n  - text-embedding\n  - rerank\n  - tts\n  - speech2text\n  - moderation\n";
        let changed = text.replace("supported_model_types:\n  - llm\n", all);
        assert_ne!(changed, text, "the llm template lists its model types differently");
        std::fs::write(&provider, changed).expect("write provider yaml");
    }
    dify_package::write::package_dir(&plugin).unwrap_or_else(|e| panic!("package {name}: {e}"))
}

/// The installed echo plugin serving routes of `access`.
fn echo_for(access: AccessType) -> String {
    match access {
        AccessType::Model => format!("{AUTHOR}/echo_model"),
        AccessType::AgentStrategy => format!("{AUTHOR}/echo_agent"),
        AccessType::Datasource => format!("{AUTHOR}/echo_datasource"),
        AccessType::Trigger => format!("{AUTHOR}/echo_trigger"),
        _ => PLUGIN_ID.to_string(),
    }
}

/// A plausible value for a required field.
fn sample(field: &str) -> Value {
    match field {
        "texts" | "docs" | "documents" | "prompt_messages" => json!(["x"]),
        "credentials" | "subscription" | "page" | "datasource_parameters" | "plugin_state" | "parameters" => json!({"k": "v"}),
        "request" => json!({"prefix": "", "max_keys": 10}),
        "input_type" => json!("document"),
        _ => json!(format!("{field}-value")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_reaches_the_plugin_with_its_type_action_and_data() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, &[]).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("protocol_echo")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    for (category, name) in
        [("llm", "echo_model"), ("agent-strategy", "echo_agent"), ("datasource", "echo_datasource"), ("trigger", "echo_trigger")]
    {
        let (_, task) = daemon.install_package(TENANT, &echo_variant(category, name)).await;
        assert_eq!(task["status"], "success", "install task of {name}: {task}\n{}", daemon.log());
    }

    let mut seen_sessions = std::collections::HashSet::new();
    for route in DISPATCH_ROUTES {
        let mut data = Map::new();
        for field in route.required {
            data.insert(field.to_string(), sample(field));
        }
        match route.model_type {
            ModelTypeRule::Exactly(value) => {
                data.insert("model_type".into(), json!(value));
            }
            ModelTypeRule::Valid | ModelTypeRule::NonEmpty => {
                data.insert("model_type".into(), json!("llm"));
            }
            ModelTypeRule::None => {}
        }
        data.insert("extra_field".into(), json!({"nested": [1, 2]}));
        let body = json!({"user_id": "user-7", "conversation_id": "conv-1", "app_id": "app-1", "message_id": null,
                          "context": {"credentials": {"tool_credentials": {"p": "cred-1"}}}, "data": data.clone()});
        let response = daemon
            .client
            .post(daemon.url(&format!("/plugin/{TENANT}/dispatch{}", route.path)))
            .header("X-Api-Key", &daemon.key)
            .header("X-Plugin-ID", echo_for(route.access_type))
            .timeout(Duration::from_secs(60))
            .json(&body)
            .send()
            .await
            .expect("dispatch");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "{}: {text}", route.path);
        let item = match route.response {
            ResponseMode::EventStream => {
                assert_eq!(content_type, "text/event-stream", "{}", route.path);
                let lines: Vec<&str> = text.split_terminator("\n\n").collect();
                assert_eq!(lines.len(), 1, "{}: {text}", route.path);
                let envelope: Value = serde_json::from_str(lines[0].strip_prefix("data: ").expect("data: prefix")).expect("envelope");
                assert_eq!((&envelope["code"], &envelope["message"]), (&json!(0), &json!("success")), "{}", route.path);
                envelope["data"].clone()
            }
            ResponseMode::SingleJson => {
                let envelope: Value = serde_json::from_str(&text).expect("JSON envelope");
                assert_eq!(envelope["code"], 0, "{}: {text}", route.path);
                envelope["data"].clone()
            }
        };
        let raw = item["raw"]
            .as_str()
            .or(item["message"]["text"].as_str())
            .unwrap_or_else(|| panic!("{}: no echo in {item}", route.path));

        // The line's top-level layout, in the Go daemon's field order.
        let prefix = "{\"session_id\":\"";
        assert!(raw.starts_with(prefix), "{raw}");
        let session_id = &raw[prefix.len()..prefix.len() + 36];
        assert!(uuid::Uuid::parse_str(session_id).is_ok(), "{raw}");
        assert!(seen_sessions.insert(session_id.to_string()), "session ids must be fresh");
        let after_id = &raw[prefix.len() + 36..];
        assert!(
            after_id.starts_with("\",\"conversation_id\":\"conv-1\",\"message_id\":null,\"app_id\":\"app-1\",\"endpoint_id\":null,\"context\":{\"credentials\":{\"tool_credentials\":{\"p\":\"cred-1\"}}},\"event\":\"request\",\"data\":{"),
            "{}: {raw}",
            route.path
        );
        let line: Value = serde_json::from_str(raw).expect("request line is JSON");
        let sent = line["data"].as_object().expect("data object");
        // `data` keys are sorted, like the Go daemon's map.
        let keys: Vec<&String> = sent.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{}", route.path);
        assert_eq!(sent["type"], json!(route.access_type.as_str()), "{}", route.path);
        assert_eq!(sent["action"], json!(route.action), "{}", route.path);
        assert_eq!(sent["user_id"], "user-7");
        assert_eq!(sent["extra_field"], json!({"nested": [1, 2]}));
        for (field, value) in &data {
            assert_eq!(&sent[field.as_str()], value, "{} field {field}", route.path);
        }
    }
    assert_eq!(seen_sessions.len(), DISPATCH_ROUTES.len());

    // SDK-required keys are completed: LLM invocations always carry `stop` and `tools`.
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/llm/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", echo_for(AccessType::Model))
        .json(&json!({"data": {"provider": "p", "model": "m", "model_type": "llm"}}))
        .send()
        .await
        .expect("dispatch");
    let text = response.text().await.expect("body");
    let envelope: Value = serde_json::from_str(text.trim_end().strip_prefix("data: ").expect("prefix")).expect("envelope");
    let line: Value = serde_json::from_str(envelope["data"]["raw"].as_str().expect("raw")).expect("line");
    assert_eq!((&line["data"]["stop"], &line["data"]["tools"]), (&Value::Null, &Value::Null));
    assert!(line["data"].as_object().expect("data").contains_key("stop"));
    assert_eq!(line["data"]["credentials"], json!({}));
    assert_eq!(line["data"]["user_id"], "", "a missing user id is sent as an empty string");
}
