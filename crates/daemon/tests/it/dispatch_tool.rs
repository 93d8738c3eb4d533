//! Dispatch over HTTP against the real daemon binary: the SDK test tool plugin is packaged with
//! `dify-package`, uploaded and installed through the management API (its environment built by uv),
//! then invoked through `/plugin/{tenant}/dispatch/...`, the SSE stream checked line by line.
//! Backwards tool/LLM calls are answered by a fake Dify inner API speaking the real frame format;
//! storage goes to the daemon's database.

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use base64::Engine;
use common::{Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};
use sha2::Digest;

const TENANT: &str = "0c7a9a5e-6d5f-4c3e-9b1a-2f4e6d8c0b1a";
const PLUGIN_ID: &str = "testing/runtime_tools";
const INNER_KEY: &str = "inner-key-for-tests";

/// Secrets the daemon holds that must never reach a plugin.
const DAEMON_SECRETS: &[(&str, &str)] = &[
    ("AWS_SECRET_KEY", "aws-secret-value"),
    ("REDIS_PASSWORD", "redis-secret-value"),
    ("DB_PASSWORD", "db-secret-value"),
    ("S3_ENDPOINT", "http://s3.invalid"),
    ("ALIYUN_OSS_ACCESS_KEY_SECRET", "oss-secret-value"),
];

/// The shared launcher with the fake Dify inner API, the secrets above and `extra`.
async fn start_with_inner_api(db: &TestDb, extra: &[(&str, &str)], inner_api_url: &str) -> Daemon {
    let mut env = vec![("DIFY_INNER_API_URL", inner_api_url), ("DIFY_INNER_API_KEY", INNER_KEY)];
    env.extend(DAEMON_SECRETS.iter().chain(extra.iter()).copied());
    common::start_daemon(db, &env).await
}

/// POSTs a dispatch route and returns the status, content type and the raw body.
async fn dispatch_raw(daemon: &Daemon, route: &str, plugin_id: Option<&str>, body: &Value) -> (u16, String, String) {
    let mut request = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch{route}")))
        .header("X-Api-Key", &daemon.key)
        .timeout(Duration::from_secs(120))
        .json(body);
    if let Some(plugin_id) = plugin_id {
        request = request.header("X-Plugin-ID", plugin_id);
    }
    let response = request.send().await.expect("dispatch request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = response.text().await.expect("dispatch body");
    (status, content_type, body)
}

/// Splits an SSE body into its JSON envelopes, checking the exact framing on the way.
fn sse_envelopes(body: &str) -> Vec<Value> {
    assert!(
        body.is_empty() || body.ends_with("\n\n"),
        "SSE body must end with a blank line: {:?}",
        &body[body.len().saturating_sub(200)..]
    );
    body.split_terminator("\n\n")
        .map(|line| {
            let json = line.strip_prefix("data: ").unwrap_or_else(|| panic!("line without `data: `: {line:?}"));
            assert!(!json.contains('\n'), "an SSE line must be one line");
            serde_json::from_str(json).unwrap_or_else(|e| panic!("bad JSON in {json:?}: {e}"))
        })
        .collect()
}

fn tool_invoke(parameters: Value) -> Value {
    json!({"user_id": "user-1", "conversation_id": null, "app_id": null, "message_id": null,
           "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}})
}

async fn invoke_tool(daemon: &Daemon, parameters: Value) -> Vec<Value> {
    let (status, content_type, body) = dispatch_raw(daemon, "/tool/invoke", Some(PLUGIN_ID), &tool_invoke(parameters)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/event-stream");
    sse_envelopes(&body)
}

fn data_of(envelopes: &[Value]) -> Vec<Value> {
    envelopes
        .iter()
        .map(|e| {
            assert_eq!((&e["code"], &e["message"]), (&json!(0), &json!("success")), "{e}");
            e["data"].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_plugin_over_http_dispatch() {
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_with_inner_api(&db, &[], &inner.url).await;
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    assert!(uid.starts_with("testing/runtime_tools:0.0.1@"), "{uid}");

    // Request errors of the dispatch middleware and binding.
    let (status, _, body) = dispatch_raw(&daemon, "/tool/invoke", None, &tool_invoke(json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"code":-400,"message":"{\"message\":\"plugin_id is required\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#
    );
    let (status, _, body) = dispatch_raw(&daemon, "/tool/invoke", Some("testing/not_installed"), &tool_invoke(json!({}))).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        r#"{"code":-404,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginNotFoundError\",\"args\":null}","data":null}"#
    );
    let (status, _, body) = dispatch_raw(&daemon, "/tool/invoke", Some(PLUGIN_ID), &json!({"data": {"provider": "runtime_tools"}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("PluginDaemonBadRequestError") && body.contains("'tool'"), "{body}");
    let (status, _, body) = dispatch_raw(&daemon, "/tool/nope", Some(PLUGIN_ID), &tool_invoke(json!({}))).await;
    assert_eq!((status, body.as_str()), (404, r#"{"code":"not_found","message":"route not found"}"#));

    // Credentials validation.
    let (status, _, body) = dispatch_raw(
        &daemon,
        "/tool/validate_credentials",
        Some(PLUGIN_ID),
        &json!({"data": {"provider": "runtime_tools", "credentials": {}}}),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "data: {\"code\":0,\"message\":\"success\",\"data\":{\"result\":true}}\n\n"));

    // Each message kind, byte-exact for the text line.
    let (_, _, raw) = dispatch_raw(&daemon, "/tool/invoke", Some(PLUGIN_ID), &tool_invoke(json!({"mode": "kinds", "text": "hi"}))).await;
    assert!(
        raw.starts_with(
            "data: {\"code\":0,\"message\":\"success\",\"data\":{\"type\":\"text\",\"message\":{\"text\":\"hi\"},\"meta\":null}}\n\n"
        ),
        "{raw}"
    );
    let kinds = data_of(&sse_envelopes(&raw));
    assert_eq!(
        kinds.iter().map(|k| k["type"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        ["text", "json", "link", "image", "variable", "log"]
    );
    assert_eq!(kinds[1]["message"], json!({"json_object": {"text": "hi", "length": 2}}));
    assert_eq!(kinds[2]["message"], json!({"text": "https://example.com/link"}));
    assert_eq!(kinds[3]["message"], json!({"text": "https://example.com/image.png"}));
    assert_eq!(kinds[4]["message"], json!({"variable_name": "upper", "variable_value": "HI", "stream": false}));
    assert_eq!((&kinds[5]["message"]["label"], &kinds[5]["message"]["status"]), (&json!("step"), &json!("success")));

    // A blob over 10 MiB arrives as blob_chunks (the tool path passes them through) that reassemble.
    let size = 10 * 1024 * 1024 + 12345;
    let blob = data_of(&invoke_tool(&daemon, json!({"mode": "blob", "count": size})).await);
    let expected_hash = blob[0]["message"]["text"].as_str().expect("hash line").to_string();
    let mut assembled = Vec::with_capacity(size);
    let pieces: Vec<&Value> = blob[1..].iter().collect();
    assert!(pieces.len() > 1280, "{} chunks", pieces.len());
    for (sequence, piece) in pieces.iter().enumerate() {
        assert_eq!(piece["type"], "blob_chunk");
        assert_eq!(piece["message"]["sequence"], json!(sequence));
        assert_eq!(piece["meta"]["mime_type"], "application/octet-stream");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(piece["message"]["blob"].as_str().unwrap_or(""))
            .expect("base64");
        assert!(bytes.len() <= 8192);
        assembled.extend(bytes);
    }
    assert_eq!(pieces.last().map(|p| p["message"]["end"].clone()), Some(json!(true)));
    assert_eq!(assembled.len(), size);
    assert_eq!(hex::encode(sha2::Sha256::digest(&assembled)), expected_hash);

    // 1,000 streamed chunks, in order.
    let streamed = data_of(&invoke_tool(&daemon, json!({"mode": "stream", "count": 1000})).await);
    assert_eq!(streamed.len(), 1000);
    for (i, chunk) in streamed.iter().enumerate() {
        assert_eq!(chunk["message"]["text"], json!(format!("chunk {i}")));
    }

    // A raised error: earlier output, then one PluginInvokeError line with the sorted inner object.
    let raised = invoke_tool(&daemon, json!({"mode": "raise", "text": "boom"})).await;
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert_eq!(raised[0]["data"]["message"]["text"], "about to fail");
    assert_eq!((&raised[1]["code"], &raised[1]["data"]), (&json!(-500), &Value::Null));
    let outer: Value = serde_json::from_str(raised[1]["message"].as_str().expect("message")).expect("outer error JSON");
    assert_eq!(outer["error_type"], "PluginInvokeError");
    assert_eq!(outer["args"], Value::Null);
    let inner_text = outer["message"].as_str().expect("inner message");
    assert!(inner_text.starts_with("{\"args\":{"), "inner keys must be sorted: {inner_text}");
    let inner_error: Value = serde_json::from_str(inner_text).expect("inner error JSON");
    assert_eq!((&inner_error["error_type"], &inner_error["message"]), (&json!("ValueError"), &json!("requested failure: boom")));

    // 200 concurrent invocations of the one plugin process each get their own complete answer.
    let answers = futures::future::join_all((0..200).map(|i| {
        let daemon = &daemon;
        async move { (i, invoke_tool(daemon, json!({"text": format!("c{i}")})).await) }
    }))
    .await;
    for (i, envelopes) in answers {
        assert_eq!(data_of(&envelopes), vec![json!({"type": "text", "message": {"text": format!("echo: c{i}")}, "meta": null})]);
    }

    // Storage set/get/del/exist served by the daemon from its database.
    let stored = data_of(&invoke_tool(&daemon, json!({"mode": "storage", "text": "green", "key": "colour"})).await);
    assert_eq!(
        stored[0]["message"]["json_object"],
        json!({"exists_before": false, "read_back": "green", "exists_after": true, "exists_deleted": false})
    );

    // Backwards tool and LLM calls go to the inner API with the key, tenant and user.
    let from_tool = data_of(&invoke_tool(&daemon, json!({"mode": "backwards_tool", "text": "q1"})).await);
    let texts: Vec<&Value> = from_tool.iter().map(|c| &c["message"]["json_object"]["from_dify"]["message"]["text"]).collect();
    assert_eq!(texts, [&json!("from"), &json!("dify")]);
    let from_llm = data_of(&invoke_tool(&daemon, json!({"mode": "backwards_llm", "text": "ping"})).await);
    assert_eq!(from_llm[0]["message"]["text"], "fake llm: ping");
    let refused = data_of(&invoke_tool(&daemon, json!({"mode": "backwards_denied"})).await);
    let refusal = refused[0]["message"]["text"].as_str().unwrap_or_default();
    assert!(refusal.starts_with("refused: ") && refusal.contains("permission denied"), "{refusal}");
    let recorded = inner.recorded();
    assert!(!recorded.iter().any(|(path, _, _)| path.contains("text-embedding")), "a refused call reached Dify");
    let tool_call = recorded.iter().find(|(path, _, _)| path == "/inner/api/invoke/tool").expect("tool call recorded");
    assert_eq!(tool_call.1, INNER_KEY);
    assert_eq!(
        (&tool_call.2["tenant_id"], &tool_call.2["user_id"], &tool_call.2["type"]),
        (&json!(TENANT), &json!("user-1"), &json!("tool"))
    );
    assert_eq!(
        (&tool_call.2["provider"], &tool_call.2["tool"], &tool_call.2["tool_parameters"]),
        (&json!("fake/provider"), &json!("fake_tool"), &json!({"q": "q1"}))
    );
    let llm_call = recorded.iter().find(|(path, _, _)| path == "/inner/api/invoke/llm").expect("llm call recorded");
    assert_eq!((&llm_call.2["model"], &llm_call.2["type"]), (&json!("fake-model"), &json!("llm")));

    // The plugin's environment holds none of the daemon's secrets.
    let env = data_of(&invoke_tool(&daemon, json!({"mode": "env"})).await);
    let plugin_env = env[0]["message"]["json_object"]["env"].as_object().expect("env object").clone();
    assert_eq!(plugin_env.get("INSTALL_METHOD"), Some(&json!("local")));
    for name in ["SERVER_KEY", "DIFY_INNER_API_KEY", "DB_TYPE", "DB_SQLITE_PATH"]
        .iter()
        .chain(DAEMON_SECRETS.iter().map(|(k, _)| k))
    {
        assert!(!plugin_env.contains_key(*name), "{name} leaked into the plugin environment");
    }
    let all_values = serde_json::to_string(&plugin_env).expect("env json");
    for secret in [common::TEST_KEY, INNER_KEY].iter().chain(DAEMON_SECRETS.iter().map(|(_, v)| v)) {
        assert!(!all_values.contains(secret), "a secret value leaked into the plugin environment");
    }

    // Uninstall stops the process; nothing is left behind as a zombie.
    let plugin_pids: Vec<u32> = plugin_processes(&daemon);
    assert_eq!(plugin_pids.len(), 1, "exactly one plugin process: {plugin_pids:?}");
    let installations = daemon.list(TENANT).await;
    let installation_id = installations[0]["installation_id"]
        .as_str()
        .or(installations[0]["id"].as_str())
        .expect("installation id")
        .to_string();
    let (status, body) = daemon
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": installation_id}))
        .await;
    assert_eq!((status, &body["code"]), (200, &json!(0)), "{body}");
    assert!(eventually(Duration::from_secs(20), || plugin_pids.iter().all(|pid| !process_alive(*pid))).await, "plugin survived uninstall");
    assert!(zombie_children_of(daemon_pid(&daemon)).is_empty());
}

fn daemon_pid(daemon: &Daemon) -> u32 {
    let pid = daemon.pid().expect("the daemon runs");
    assert!(children_of(std::process::id()).iter().any(|(child, _)| *child == pid), "the daemon is a child of this test");
    pid
}

fn plugin_processes(daemon: &Daemon) -> Vec<u32> {
    children_of(daemon_pid(daemon)).into_iter().filter(|(_, state)| *state != 'Z').map(|(pid, _)| pid).collect()
}

fn zombie_children_of(parent: u32) -> Vec<u32> {
    children_of(parent).into_iter().filter(|(_, state)| *state == 'Z').map(|(pid, _)| pid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_crashes_and_a_silent_plugin_over_http() {
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_with_inner_api(&db, &[("PLUGIN_MAX_EXECUTION_TIMEOUT", "3"), ("PYTHON_ENV_INIT_TIMEOUT", "20")], &inner.url).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    // Over the execution timeout: the stream ends with the upstream "killed by timeout" line.
    let (status, _, body) =
        dispatch_raw(&daemon, "/tool/invoke", Some(PLUGIN_ID), &tool_invoke(json!({"mode": "sleep", "count": 30}))).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = body.split_terminator("\n\n").collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert_eq!(
        lines[1],
        r#"data: {"code":-500,"message":"{\"message\":\"killed by timeout\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#
    );

    // A crash mid-stream fails its session with a clear error; the plugin comes back.
    let crashed = invoke_tool(&daemon, json!({"mode": "exit"})).await;
    assert_eq!(crashed[0]["data"]["message"]["text"], "exiting");
    let last = crashed.last().expect("an error line");
    assert_eq!(last["code"], -500);
    assert!(last["message"].as_str().unwrap_or("").contains("plugin process exited unexpectedly"), "{last}");
    let mut recovered = false;
    for _ in 0..60 {
        let (status, _, body) = dispatch_raw(&daemon, "/tool/invoke", Some(PLUGIN_ID), &tool_invoke(json!({"text": "back"}))).await;
        if status == 200 && body.contains("echo: back") {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(recovered, "plugin did not come back after the crash\n{}", daemon.log());
    let daemon_pid = daemon_pid(&daemon);
    assert!(eventually(Duration::from_secs(10), || zombie_children_of(daemon_pid).is_empty()).await, "zombies after crash");

    // A plugin that never sends a heartbeat: killed, and the install task says why.
    let (_, task) = daemon.install_package(TENANT, &package_plugin("no_heartbeat")).await;
    assert_eq!(task["status"], "failed", "{task}");
    let message = task.to_string();
    assert!(message.contains("no heartbeat received within 20 seconds"), "{message}");
    assert!(eventually(Duration::from_secs(10), || zombie_children_of(daemon_pid).is_empty()).await, "zombies after the silent plugin");
    let silent_alive = children_of(daemon_pid)
        .into_iter()
        .any(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/cwd/manifest.yaml")).is_ok_and(|m| m.contains("name: no_heartbeat")));
    assert!(!silent_alive, "the silent plugin process is still running");

    // Daemon shutdown (SIGTERM) stops the plugins it runs.
    let plugin_pids = plugin_processes(&daemon);
    assert!(!plugin_pids.is_empty());
    let mut daemon = daemon;
    assert!(daemon.terminate(Duration::from_secs(30)).is_some_and(|s| s.success()), "daemon did not exit cleanly");
    assert!(
        eventually(Duration::from_secs(30), || plugin_pids.iter().all(|pid| !process_alive(*pid))).await,
        "plugins outlived the daemon"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_plugin_runs_again_after_the_daemon_is_killed_and_restarted() {
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut daemon = start_with_inner_api(&db, &[], &inner.url).await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    assert_eq!(data_of(&invoke_tool(&daemon, json!({"text": "before"})).await)[0]["message"]["text"], "echo: before");
    let old_plugins = plugin_processes(&daemon);
    assert_eq!(old_plugins.len(), 1);

    // SIGKILL: the daemon cannot clean up, yet its plugin does not outlive it.
    daemon.restart_after_kill().await;
    assert!(
        eventually(Duration::from_secs(10), || old_plugins.iter().all(|pid| !process_alive(*pid))).await,
        "plugin outlived a killed daemon"
    );

    // The installation is still there; the first dispatch launches the plugin from its stored package.
    assert_eq!(data_of(&invoke_tool(&daemon, json!({"text": "after"})).await)[0]["message"]["text"], "echo: after");
    assert_eq!(plugin_processes(&daemon).len(), 1);
}
