//! Trace ids through the real daemon: a caller's `traceparent` names the trace of the request's log
//! lines, of the plugin session's log line, and of the backwards call the plugin makes to (a fake of)
//! Dify's inner API; without one, the daemon starts a trace and answers with it. With
//! `LOG_OUTPUT_FORMAT=json` each log line is one JSON object carrying the trace id.

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use common::{Backend, Daemon, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT: &str = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The shared launcher, with the daemon's log at info level (the tests read its log lines).
async fn start_daemon(db: &TestDb, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![("LOG_LEVEL", "info")];
    env.extend_from_slice(extra);
    common::start_daemon(db, &env).await
}

/// The trace id of a `traceparent` value.
fn trace_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_trace_reaches_the_session_log_and_the_backwards_call() {
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(
        &db,
        &[
            ("DIFY_TEST_SKIP_RUNTIME_PREPARATION", "false"),
            ("PYTHON_ENV_INIT_TIMEOUT", "60"),
            ("DIFY_INNER_API_URL", &inner.url),
            ("DIFY_INNER_API_KEY", "inner-key"),
        ],
    )
    .await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let body = json!({"user_id": "user-1", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": "backwards_tool", "text": "traced"}}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", "testing/runtime_tools")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .expect("dispatch");
    let answer = response.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.text().await.expect("body");
    assert!(text.contains("from_dify"), "the backwards call must have been answered: {text}");
    // The answer names the same trace, with the daemon's own span id.
    assert_eq!(trace_of(&answer), TRACE_ID, "{answer}");
    assert_ne!(answer.split('-').nth(2), Some(CALLER_SPAN));

    // The backwards call to the inner API carried the trace on.
    let calls = inner.traceparents.lock().unwrap().clone();
    let tool_call = calls.iter().find(|(path, _)| path == "/inner/api/invoke/tool").unwrap_or_else(|| panic!("{calls:?}"));
    assert_eq!(trace_of(&tool_call.1), TRACE_ID, "{calls:?}");
    assert!(tool_call.1.starts_with("00-") && tool_call.1.ends_with("-01"), "{calls:?}");

    // The daemon's log lines of the session and of the request name the trace.
    let log = daemon.log();
    let session_line = log
        .lines()
        .find(|l| l.contains("plugin session started"))
        .unwrap_or_else(|| panic!("no session line:\n{log}"));
    assert!(session_line.contains(&format!("trace_id={TRACE_ID}")), "{session_line}");
    assert!(log.lines().any(|l| l.contains("backwards invocation") && l.contains(TRACE_ID)), "{log}");
    assert!(log.lines().any(|l| l.contains("request") && l.contains("/dispatch/tool/invoke") && l.contains(TRACE_ID)), "{log}");

    // Without a traceparent (or with a malformed one) the daemon starts a trace of its own.
    for header in [None, Some("00-not-a-trace-01")] {
        let mut request = daemon
            .client
            .get(daemon.url(&format!("/plugin/{TENANT}/management/list?page=1&page_size=10")))
            .header("X-Api-Key", &daemon.key);
        if let Some(header) = header {
            request = request.header("traceparent", header);
        }
        let response = request.send().await.expect("list");
        let answer = response.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let generated = trace_of(&answer).to_string();
        assert!(generated.len() == 32 && generated != TRACE_ID, "{answer}");
        assert!(
            runtime_support::eventually(Duration::from_secs(5), || daemon
                .log()
                .lines()
                .any(|l| l.contains(&generated) && l.contains("/management/list")))
            .await,
            "no log line with the generated trace {generated}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_id() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(&db, &[("LOG_OUTPUT_FORMAT", "json")]).await;
    let response = daemon
        .client
        .get(daemon.url(&format!("/plugin/{TENANT}/management/list?page=1&page_size=10")))
        .header("X-Api-Key", &daemon.key)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status().as_u16(), 200);
    let found = runtime_support::eventually(Duration::from_secs(5), || daemon.log().contains(TRACE_ID)).await;
    let log = daemon.log();
    assert!(found, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(TRACE_ID) && l.contains("/management/list"))
        .unwrap_or_else(|| panic!("{log}"));
    let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
    assert_eq!(parsed["span"]["trace_id"], TRACE_ID, "{parsed}");
    assert_eq!(parsed["fields"]["path"], format!("/plugin/{TENANT}/management/list"), "{parsed}");
    // Every line the tracing subscriber wrote is JSON (the start-up banner lines are plain prints).
    for line in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("bad JSON line ({e}): {line}"));
    }
}
