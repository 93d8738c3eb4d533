//! The serverless runtime end to end against the real daemon binary with `PLATFORM=serverless`: a
//! connector speaking the SRI wire format launches the uploaded SDK test plugin as a real HTTP function
//! (`INSTALL_METHOD=serverless`), the install task follows the launch stages, dispatch streams the
//! plugin's answers over SSE, plugin errors nest as `PluginInvokeError`, storage calls come back through
//! `/backwards-invocation/transaction`, and an unreachable or failing connector fails the install task.

use crate::common;
use crate::runtime_support;
use crate::serverless_support;

use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestDb};
use runtime_support::{decode, package_plugin};
use serde_json::{json, Value};
use serverless_support::FakeConnector;

const TENANT: &str = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const PLUGIN_ID: &str = "testing/runtime_tools";
const CONNECTOR_KEY: &str = "connector-key-for-tests";

/// The shared launcher on the serverless platform, talking to the connector at `connector_url`.
async fn start_serverless(db: &TestDb, connector_url: &str) -> Daemon {
    let env = [
        ("PLATFORM", "serverless"),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL", connector_url),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_API_KEY", CONNECTOR_KEY),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_LAUNCH_TIMEOUT", "90"),
    ];
    common::start_daemon(db, &env).await
}

/// Uploads and installs `package`, polling the task (bounded) and returning the finished task with
/// every entry message seen while it ran.
async fn install_watching(daemon: &Daemon, package: &[u8]) -> (String, Value, Vec<String>) {
    let (status, body) = daemon.upload_package(TENANT, package, None).await;
    assert_eq!((status, &body["code"]), (200, &json!(0)), "upload: {body}");
    let uid = body["data"]["unique_identifier"].as_str().expect("identifier").to_string();
    let (status, body) = daemon
        .post(
            &format!("/plugin/{TENANT}/management/install/identifiers"),
            &json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
        )
        .await;
    assert_eq!((status, &body["code"]), (200, &json!(0)), "install: {body}");
    let task_id = body["data"]["task_id"].as_str().expect("task id").to_string();
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut messages: Vec<String> = Vec::new();
    loop {
        let (_, body) = daemon.get(&format!("/plugin/{TENANT}/management/install/tasks/{task_id}")).await;
        let task = body["data"].clone();
        if let Some(message) = task["plugins"][0]["message"].as_str() {
            if messages.last().map(String::as_str) != Some(message) {
                messages.push(message.to_string());
            }
        }
        if matches!(task["status"].as_str(), Some("success" | "failed")) {
            return (uid, task, messages);
        }
        assert!(Instant::now() < deadline, "install task did not finish: {body}\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn dispatch_raw(daemon: &Daemon, route: &str, body: &Value) -> (u16, String) {
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch{route}")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", PLUGIN_ID)
        .timeout(Duration::from_secs(120))
        .json(body)
        .send()
        .await
        .expect("dispatch");
    let status = response.status().as_u16();
    (status, response.text().await.expect("dispatch body"))
}

fn tool_invoke(parameters: Value) -> Value {
    json!({"user_id": "user-1", "conversation_id": null, "app_id": null, "message_id": null,
           "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}})
}

fn envelopes(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "SSE body must end with a blank line: {body:?}");
    body.split_terminator("\n\n")
        .map(|line| serde_json::from_str(line.strip_prefix("data: ").unwrap_or_else(|| panic!("not SSE: {line:?}"))).expect("JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_plugin_installs_and_answers_over_http() {
    let connector = FakeConnector::start(CONNECTOR_KEY).await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut daemon = start_serverless(&db, &connector.url).await;
    connector.set_daemon_url(&daemon.base);
    assert_eq!(daemon.get("/health/check").await.1["platform"], "serverless");

    // Install: the package goes to the connector, the task follows the launch stages.
    let package = package_plugin("runtime_tools");
    let (identifier, _) = decode(&package);
    let (uid, task, messages) = install_watching(&daemon, &package).await;
    assert_eq!(uid, identifier.as_str());
    assert_eq!(task["status"], "success", "task: {task}\nmessages: {messages:?}\n{}", daemon.log());
    assert_eq!(task["plugins"][0]["message"], "installed");
    assert!(messages.iter().any(|m| m == "Launching plugin... starting function"), "progress seen: {messages:?}");
    let launches = connector.launches();
    assert_eq!(launches.len(), 1, "{launches:?}");
    let expected_filename = format!("testing@runtime_tools@0.0.1@{}.difypkg", identifier.checksum());
    assert_eq!(launches[0].filename, expected_filename);
    assert_eq!(launches[0].authorization, CONNECTOR_KEY);
    assert_eq!(launches[0].verified, "false");
    assert_eq!(launches[0].metadata, json!({"plugin_unique_identifier": uid}));
    assert_eq!(launches[0].package_bytes, package.len());
    assert_eq!(connector.lookups(), vec![expected_filename.clone()], "a launch is preceded by one look-up");
    let listed = daemon.list(TENANT).await;
    assert_eq!((listed.len(), &listed[0]["runtime_type"]), (1, &json!("serverless")), "{listed:?}");

    // Invocation: the SDK function's answer streams back over SSE, byte-exact.
    let (status, body) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "echo", "text": "over http"}))).await;
    assert_eq!((status, body.as_str()), (200, "data: {\"code\":0,\"message\":\"success\",\"data\":{\"type\":\"text\",\"message\":{\"text\":\"echo: over http\"},\"meta\":null}}\n\n"));
    let (_, body) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "stream", "count": 5}))).await;
    let texts: Vec<Value> = envelopes(&body).iter().map(|e| e["data"]["message"]["text"].clone()).collect();
    assert_eq!(texts, (0..5).map(|i| json!(format!("chunk {i}"))).collect::<Vec<_>>());
    let (status, body) =
        dispatch_raw(&daemon, "/tool/validate_credentials", &json!({"data": {"provider": "runtime_tools", "credentials": {}}})).await;
    assert_eq!((status, body.as_str()), (200, "data: {\"code\":0,\"message\":\"success\",\"data\":{\"result\":true}}\n\n"));

    // A plugin error ends the stream with the nested PluginInvokeError.
    let (_, body) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "raise", "text": "boom"}))).await;
    let items = envelopes(&body);
    assert_eq!(items.len(), 2, "{body}");
    assert_eq!(items[0]["data"]["message"]["text"], "about to fail");
    assert_eq!(items[1]["code"], -500);
    let outer: Value = serde_json::from_str(items[1]["message"].as_str().expect("message")).expect("outer JSON");
    assert_eq!(outer["error_type"], "PluginInvokeError");
    let inner: Value = serde_json::from_str(outer["message"].as_str().expect("inner")).expect("inner JSON");
    assert_eq!((&inner["error_type"], &inner["message"]), (&json!("ValueError"), &json!("requested failure: boom")));

    // Backwards storage calls travel over /backwards-invocation/transaction into the daemon's database.
    let (_, body) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "storage", "key": "color", "text": "blue"}))).await;
    let items = envelopes(&body);
    assert_eq!(items.len(), 1, "{body}\n{}", daemon.log());
    assert_eq!(
        items[0]["data"]["message"]["json_object"],
        json!({"exists_before": false, "read_back": "blue", "exists_after": true, "exists_deleted": false})
    );
    let (_, body) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "storage_set", "key": "kept", "count": 3}))).await;
    assert_eq!(envelopes(&body)[0]["data"]["message"]["text"], "stored", "{body}");

    // The transaction route answers an unknown session with SessionNotFound.
    let response = daemon
        .client
        .post(daemon.url("/backwards-invocation/transaction"))
        .header("Dify-Plugin-Session-ID", "no-such-session")
        .body(r#"{"event":"session","session_id":"no-such-session","data":{"type":"invoke","data":{"type":"storage","backwards_request_id":"r1","request":{"opt":"get","key":"k"}}}}"#.to_string() + "\n\n")
        .send()
        .await
        .expect("transaction");
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(answer["backwards_request_id"], "r1");
    assert_eq!((&answer["event"], &answer["message"]), (&json!("error"), &json!("failed to get session info from cache")));
    assert_eq!((&answer["data"]["error_type"], &answer["data"]["session_id"]), (&json!("SessionNotFound"), &json!("no-such-session")));

    // After a restart the function is taken from the version's `serverless_runtimes` row: neither
    // looked up at the connector again nor relaunched.
    daemon.restart_after_kill().await;
    let (status, body) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "echo", "text": "again"}))).await;
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
    assert_eq!(envelopes(&body)[0]["data"]["message"]["text"], "echo: again");
    assert_eq!(connector.launches().len(), 1);
    assert_eq!(connector.lookups().len(), 1);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_down_or_failing_fails_the_install_task() {
    let mut connector = FakeConnector::start(CONNECTOR_KEY).await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_serverless(&db, &connector.url).await;
    connector.set_daemon_url(&daemon.base);

    // A launch stage reported as failed fails the task with the connector's message.
    connector.fail_launches_with("image build failed: no space left");
    let (_, task, _) = install_watching(&daemon, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["plugins"][0]["message"], "serverless connector failed to launch the plugin: image build failed: no space left");
    assert!(daemon.list(TENANT).await.is_empty());

    // An unreachable connector fails the task with a clear message naming it.
    connector.shut_down().await;
    let (_, task, _) = install_watching(&daemon, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "failed", "{task}");
    let message = task["plugins"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("serverless connector unreachable at {}", connector.url)), "{message}");
    assert!(daemon.list(TENANT).await.is_empty());

    // Dispatch to a plugin that is not installed still answers with the usual 404 envelope.
    let (status, _) = dispatch_raw(&daemon, "/tool/invoke", &tool_invoke(json!({"mode": "echo"}))).await;
    assert_eq!(status, 404);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_platform_requires_a_connector_url() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let workdir = tempfile::tempdir().expect("tempdir");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"))
            .current_dir(workdir.path())
            .env_clear()
            .envs(db.env())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SERVER_KEY", common::TEST_KEY)
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", common::free_port().to_string())
            .env("PLUGIN_REMOTE_INSTALLING_PORT", common::free_port().to_string())
            .env("PLATFORM", "serverless")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the daemon exits at once")
    .expect("run daemon");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL is required when PLATFORM=serverless"), "{stderr}");
}
