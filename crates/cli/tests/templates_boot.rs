//! Every `dify plugin init` template really starts on the official SDK. Each generated plugin is
//! packaged with `plugin package`, extracted from the `.difypkg` (so only packaged files are
//! present, as in the daemon's working directory), its requirements are installed into a uv venv,
//! `python -m main` is launched like the daemon's local runtime does, and the first heartbeat must
//! arrive within a bounded time. Some templates also answer a real request.

mod support;

use std::path::Path;
use std::time::Duration;

use dify_cli::commands::plugin::init::{self, Category, InitOptions, PermissionFlags};
use dify_cli::commands::plugin::package;
use dify_cli::output::OutputFormat;
use serde_json::json;
use support::{request, venv_for, PluginProcess};

/// Up to the first heartbeat: Python start-up and the SDK import, minutes on a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn generate(dir: &Path, name: &str, category: Category) -> std::path::PathBuf {
    let opts = InitOptions {
        name: name.into(),
        author: "acme".into(),
        description: "Template boot check".into(),
        repo: None,
        category,
        language: "python".into(),
        min_dify_version: None,
        permissions: PermissionFlags::default(),
        readme_languages: vec![],
        parent_dir: dir.to_path_buf(),
        created_at: None,
    };
    init::run(&opts).expect("init").directory
}

/// init → package → extract: the directory the daemon would run the plugin from.
fn packaged_and_extracted(dir: &Path, name: &str, category: Category) -> std::path::PathBuf {
    let source = generate(dir, name, category);
    let pkg = dir.join(format!("{name}.difypkg"));
    package::run(&package::PackageOptions {
        plugin_path: source,
        output_path: Some(pkg.clone()),
        max_size_mb: 50,
        format: OutputFormat::Json,
    })
    .expect("package");
    let decoded = dify_package::Package::from_bytes(std::fs::read(&pkg).unwrap(), &dify_package::DecodeLimits::default()).unwrap();
    let work = dir.join("work").join(name);
    decoded.extract_to(&work).expect("extract");
    work
}

fn boots(category: Category, name: &str) -> (tempfile::TempDir, PluginProcess) {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = packaged_and_extracted(dir.path(), name, category);
    let venv = venv_for(&plugin_dir);
    let mut plugin = PluginProcess::start(&plugin_dir, &venv);
    plugin.wait_for_heartbeat(BOOT_TIMEOUT);
    (dir, plugin)
}

#[test]
fn tool_template_boots_and_answers_invoke_tool() {
    let (_dir, mut plugin) = boots(Category::Tool, "boot_tool");
    plugin.send(&request(
        "s-tool-1",
        json!({
            "action": "invoke_tool",
            "credential_type": "api-key",
            "credentials": {},
            "provider": "boot_tool",
            "tool": "boot_tool",
            "tool_parameters": {"query": "hello world"},
            "type": "tool",
            "user_id": "user-1"
        }),
    ));
    let events = plugin.session("s-tool-1", Duration::from_secs(30));
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["stream", "stream", "end"], "{events:?}");
    assert_eq!(events[0]["data"]["type"], "text");
    assert_eq!(events[0]["data"]["message"]["text"], "boot_tool received: hello world");
    assert_eq!(events[1]["data"]["type"], "json");
    assert_eq!(events[1]["data"]["message"]["json_object"], json!({"query": "hello world", "length": 11}));
}

#[test]
fn llm_template_boots_and_streams_an_answer() {
    let (_dir, mut plugin) = boots(Category::Llm, "boot_llm");
    plugin.send(&request(
        "s-llm-1",
        json!({
            "action": "invoke_llm",
            "credentials": {},
            "model": "boot_llm-echo",
            "model_parameters": {},
            "model_type": "llm",
            "prompt_messages": [{"role": "user", "content": "ping pong"}],
            "provider": "boot_llm",
            "stop": null,
            "stream": true,
            "tools": null,
            "type": "model",
            "user_id": "user-1"
        }),
    ));
    let events = plugin.session("s-llm-1", Duration::from_secs(30));
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "stream")
        .filter_map(|e| e["data"]["delta"]["message"]["content"].as_str())
        .collect();
    assert_eq!(text, "ping pong", "{events:?}");
    assert_eq!(events.last().unwrap()["type"], "end");
}

#[test]
fn text_embedding_template_boots() {
    let _ = boots(Category::TextEmbedding, "boot_embedding");
}

#[test]
fn rerank_template_boots_and_ranks() {
    let (_dir, mut plugin) = boots(Category::Rerank, "boot_rerank");
    plugin.send(&request(
        "s-rerank-1",
        json!({
            "action": "invoke_rerank",
            "credentials": {},
            "docs": ["nothing here", "the cat sat"],
            "model": "boot_rerank-overlap-rerank",
            "model_type": "rerank",
            "provider": "boot_rerank",
            "query": "cat",
            "score_threshold": null,
            "top_n": null,
            "type": "model",
            "user_id": "user-1"
        }),
    ));
    let events = plugin.session("s-rerank-1", Duration::from_secs(30));
    assert_eq!(events[0]["type"], "stream", "{events:?}");
    assert_eq!(events[0]["data"]["docs"][0]["index"], 1);
    assert_eq!(events.last().unwrap()["type"], "end");
}

#[test]
fn tts_template_boots() {
    let _ = boots(Category::Tts, "boot_tts");
}

#[test]
fn speech2text_template_boots() {
    let _ = boots(Category::Speech2text, "boot_speech2text");
}

#[test]
fn moderation_template_boots() {
    let _ = boots(Category::Moderation, "boot_moderation");
}

#[test]
fn extension_template_boots_and_serves_its_endpoint() {
    let (_dir, mut plugin) = boots(Category::Extension, "boot_extension");
    let raw = b"GET /boot_extension/hello?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let raw_hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    plugin.send(&request(
        "s-endpoint-1",
        json!({"action": "invoke_endpoint", "raw_http_request": raw_hex, "settings": {}, "type": "endpoint", "user_id": "user-1"}),
    ));
    let events = plugin.session("s-endpoint-1", Duration::from_secs(30));
    assert_eq!(events[0]["data"]["status"], 200, "{events:?}");
    let body_hex = events.iter().filter_map(|e| e["data"]["result"].as_str()).collect::<String>();
    let body: Vec<u8> = (0..body_hex.len()).step_by(2).map(|i| u8::from_str_radix(&body_hex[i..i + 2], 16).unwrap()).collect();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"plugin": "boot_extension", "path": "/boot_extension/hello", "query": {"x": "1"}}));
    assert_eq!(events.last().unwrap()["type"], "end");
}

#[test]
fn agent_strategy_template_boots() {
    let _ = boots(Category::AgentStrategy, "boot_agent");
}

#[test]
fn datasource_template_boots_and_lists_pages() {
    let (_dir, mut plugin) = boots(Category::Datasource, "boot_datasource");
    plugin.send(&request(
        "s-ds-1",
        json!({
            "action": "invoke_online_document_datasource_get_pages",
            "credentials": {},
            "datasource": "boot_datasource",
            "datasource_parameters": {},
            "provider": "boot_datasource",
            "type": "datasource",
            "user_id": "user-1"
        }),
    ));
    let events = plugin.session("s-ds-1", Duration::from_secs(30));
    assert_eq!(events[0]["data"]["result"][0]["pages"][0]["page_id"], "welcome", "{events:?}");
    assert_eq!(events.last().unwrap()["type"], "end");
}

#[test]
fn trigger_template_boots() {
    let _ = boots(Category::Trigger, "boot_trigger");
}
