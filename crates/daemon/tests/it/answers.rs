//! Answers of the daemon in unusual cases, over HTTP against the real binary: requests axum's
//! extractors refuse (a body over the limit, a path segment that is not UTF-8) still get the JSON
//! envelope; ids that cannot name a stored object are refused before storage is touched; a dispatch
//! route the plugin does not provide is refused with an error naming the action, and plugin errors
//! reach callers without tracebacks or the host's paths; single unsigned `langgenius` packages upload
//! as upstream allows (bundles keep the rule).

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use common::{assert_error, assert_ok, fixture_bytes, Backend, Daemon, DaemonOptions, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const BAD_REQUEST: &str = "PluginDaemonBadRequestError";

/// Sends a raw request and returns status, content type and the body parsed as JSON (or text).
async fn send(daemon: &Daemon, request: reqwest::RequestBuilder) -> (u16, String, Value) {
    let response = request.header("X-Api-Key", &daemon.key).send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.text().await.unwrap_or_default();
    (status, content_type, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn assert_envelope(answer: &(u16, String, Value), status: u16, code: i64, error_type: &str, message: Option<&str>) {
    assert!(answer.1.starts_with("application/json"), "content type {:?} of {}", answer.1, answer.2);
    assert_error(&(answer.0, answer.2.clone()), status, code, error_type, message);
}

#[tokio::test]
async fn refused_bodies_and_non_utf8_paths_answer_envelopes() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let d = Daemon::start(&db, DaemonOptions::default()).await;

    // A JSON body over the 2 MiB limit of ordinary routes: 413, as an envelope.
    // (Its own client: the server closes that connection, the rest of the body being unread.)
    let big = vec![b' '; 3 * 1024 * 1024];
    let once = reqwest::Client::new();
    let answer = send(&d, once.post(d.url("/plugin/t1/management/uninstall")).header("content-type", "application/json").body(big)).await;
    assert_envelope(&answer, 413, -400, BAD_REQUEST, None);
    let inner: Value = serde_json::from_str(answer.2["message"].as_str().unwrap()).unwrap();
    assert!(inner["message"].as_str().unwrap().contains("length limit exceeded"), "{inner}");

    // A tenant, task, identifier or asset segment that is not UTF-8: 400 envelopes.
    for path in
        ["/plugin/%FF%FE/management/list?page=1&page_size=10", "/plugin/t1/management/install/tasks/%FF%FE", "/plugin/t1/asset/%FF%FE"]
    {
        let answer = send(&d, d.client.get(d.url(path))).await;
        assert_envelope(&answer, 400, -400, BAD_REQUEST, None);
    }
    let answer = send(&d, d.client.post(d.url("/plugin/t1/management/install/tasks/x/delete/%FF%FE"))).await;
    assert_envelope(&answer, 400, -400, BAD_REQUEST, None);
    let answer = send(&d, d.client.post(d.url("/plugin/%FF/dispatch/tool/invoke")).header("X-Plugin-ID", "a/b").json(&json!({}))).await;
    assert_envelope(&answer, 400, -400, BAD_REQUEST, None);
}

#[tokio::test]
async fn ids_that_cannot_name_a_stored_object_are_refused_before_storage() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let d = Daemon::start(&db, DaemonOptions::default()).await;

    for id in ["a%00b".to_string(), "a".repeat(4096), "a%0Ab".to_string(), ".hidden".to_string(), "a%5Cb".to_string()] {
        let answer = send(&d, d.client.get(d.url(&format!("/plugin/t1/asset/{id}")))).await;
        assert_envelope(&answer, 400, -400, BAD_REQUEST, Some("invalid asset id"));
    }
    // A well-formed id of an asset that is not stored: an empty answer, as upstream.
    let response = d
        .client
        .get(d.url(&format!("/plugin/t1/asset/{}.svg", "0".repeat(64))))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.bytes().await.unwrap().is_empty());

    // A valid identifier whose package file name is longer than the file system allows names no
    // stored package: the ordinary "not found" answers, not a storage error.
    let uid = format!("a/{}:1.0.0@{}", "n".repeat(255), "0".repeat(64));
    let q = format!("plugin_unique_identifier={}", uid.replace('/', "%2F").replace(':', "%3A").replace('@', "%40"));
    let r = d.get(&format!("/plugin/t1/management/decode/from_identifier?{q}")).await;
    assert_error(&r, 200, -400, BAD_REQUEST, Some("plugin package not found, please upload it firstly"));
    let r = d.get(&format!("/plugin/t1/management/fetch/readme?{q}")).await;
    assert_error(&r, 200, -404, "PluginDaemonNotFoundError", Some("no readme content available for this plugin"));
    assert!(!d.log().contains("File name too long"), "{}", d.log());
}

#[tokio::test]
async fn single_unsigned_langgenius_packages_upload_and_bundles_keep_the_rule() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let d = Daemon::start(&db, DaemonOptions::default()).await;
    let openai = fixture_bytes("openai.difypkg");
    let data = assert_ok(&d.upload_package("t1", &openai, None).await);
    assert_eq!(data["unique_identifier"].as_str().unwrap().split(':').next(), Some("langgenius/openai"));
    assert_eq!(data["verification"], Value::Null);

    let manifest = "name: b\nlabels: {en_US: b}\ndescription: {en_US: b}\nicon: icon.svg\nversion: 0.0.1\nauthor: acme\ntype: bundle\ndependencies:\n  - type: package\n    value: {path: official}\ntags: []\n";
    let bundle =
        dify_package::write::package_files([("manifest.yaml", manifest.as_bytes()), ("_assets/official", openai.as_slice())]).unwrap();
    assert_error(&d.upload_bundle("t1", &bundle, None).await, 200, -400, BAD_REQUEST, None);
}

// ------------------------------------------------------------------------------- dispatch

const TENANT: &str = "5b0f3c1e-2d4a-4e6b-8c9d-0a1b2c3d4e5f";
const TOOLS_PLUGIN: &str = "testing/runtime_tools";

async fn start_runtime_daemon(db: &TestDb) -> Daemon {
    common::start_daemon(db, &[]).await
}

async fn dispatch(d: &Daemon, route: &str, data: Value) -> (u16, String, String) {
    let response = d
        .client
        .post(d.url(&format!("/plugin/{TENANT}/dispatch{route}")))
        .header("X-Api-Key", &d.key)
        .header("X-Plugin-ID", TOOLS_PLUGIN)
        .timeout(Duration::from_secs(120))
        .json(&json!({"user_id": "u", "data": data}))
        .send()
        .await
        .expect("dispatch");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, content_type, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_actions_and_plugin_errors_answer_cleanly() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let d = start_runtime_daemon(&db).await;
    let (_, task) = d.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", d.log());
    let host_dir = d.workdir.display().to_string();

    // Model routes on a tool-only plugin: a 4xx PluginInvokeError naming the action, nothing else.
    let llm = json!({"provider": "p", "model": "m", "model_type": "llm", "credentials": {}, "prompt_messages": [],
                     "model_parameters": {}, "stop": [], "tools": [], "stream": true});
    for (route, action) in [("/llm/invoke", "invoke_llm"), ("/model/polling/start", "start_polling")] {
        let (status, content_type, body) = dispatch(&d, route, llm.clone()).await;
        let context = format!("{route}: {status} {content_type} {body}");
        assert_eq!(status, 400, "{context}");
        assert!(content_type.starts_with("application/json"), "{context}");
        assert!(!body.contains("Traceback") && !body.contains(&host_dir), "{context}");
        let envelope: Value = serde_json::from_str(&body).expect(&context);
        let outer: Value = serde_json::from_str(envelope["message"].as_str().expect(&context)).expect(&context);
        assert_eq!(outer["error_type"], "PluginInvokeError", "{context}");
        let inner: Value = serde_json::from_str(outer["message"].as_str().expect(&context)).expect(&context);
        assert_eq!(inner["error_type"], "PluginActionNotSupportedError", "{context}");
        let message = inner["message"].as_str().unwrap();
        assert!(message.contains(action) && message.contains(TOOLS_PLUGIN) && message.contains("model provider"), "{context}");
    }

    // An error the plugin raises: its type and message, no traceback and no host path.
    let (status, _, body) = dispatch(
        &d,
        "/tool/invoke",
        json!({"provider": "runtime_tools", "tool": "exercise",
        "credentials": {}, "tool_parameters": {"mode": "raise", "text": "boom"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("data: {\"code\":0,"), "{body}");
    assert!(!body.contains("Traceback") && !body.contains("traceback") && !body.contains(&host_dir), "{body}");
    let last: Value = serde_json::from_str(body.trim_end().rsplit("\n\n").next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    let outer: Value = serde_json::from_str(last["message"].as_str().unwrap()).unwrap();
    let inner: Value = serde_json::from_str(outer["message"].as_str().unwrap()).unwrap();
    assert_eq!((&inner["error_type"], &inner["message"]), (&json!("ValueError"), &json!("requested failure: boom")), "{body}");
    // The traceback is kept for the operator, in the daemon's log.
    assert!(d.log().contains("requested failure: boom"), "{}", d.log());
}
