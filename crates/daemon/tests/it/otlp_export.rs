//! OTLP span export through the real daemon: a collector in the test speaks OTLP/HTTP (protobuf
//! `ExportTraceServiceRequest`, decoded with `opentelemetry-proto`). A caller's `traceparent` becomes
//! the parent of the request's server span, whose children are the plugin session and the backwards
//! call the plugin makes; the ids match the `traceparent` headers the daemon answers with and sends
//! on. Shutdown flushes queued spans within the drain budget, and a collector that never answers does
//! not hold requests or the shutdown.

use crate::common;
use crate::runtime_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{Backend, Daemon, TestDb};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use runtime_support::*;
use serde_json::json;

const TENANT: &str = "3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b";
const TRACE_ID: &str = "5cf92f3577b34da6a3ce929d0e0e4737";
const CALLER_SPAN: &str = "10f067aa0ba902b8";

/// One exported span, flattened: ids as lowercase hex, string attributes.
#[derive(Debug, Clone)]
struct Exported {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: Vec<(String, String)>,
    service: String,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn text_of(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                _ => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// An OTLP/HTTP collector: `POST /v1/traces` with a protobuf body.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
        let authorizations: Arc<Mutex<Vec<String>>> = Arc::default();
        let (recorded, auth) = (spans.clone(), authorizations.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (recorded, auth) = (recorded.clone(), auth.clone());
                async move {
                    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if content_type != "application/x-protobuf" {
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
                        auth.lock().unwrap().push(value.to_string());
                    }
                    let mut out = recorded.lock().unwrap();
                    for resource_spans in request.resource_spans {
                        let resource = resource_spans.resource.map(|r| text_of(&r.attributes)).unwrap_or_default();
                        let service = resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone()).unwrap_or_default();
                        for scope in resource_spans.scope_spans {
                            for span in scope.spans {
                                out.push(Exported {
                                    trace_id: hex::encode(&span.trace_id),
                                    span_id: hex::encode(&span.span_id),
                                    parent_span_id: hex::encode(&span.parent_span_id),
                                    name: span.name.clone(),
                                    kind: span.kind,
                                    attributes: text_of(&span.attributes),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { url, spans, authorizations, task }
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Exported> {
        self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect()
    }
}

/// The shared launcher, with the daemon's log at info level (the tests read its log lines).
async fn start_daemon(db: &TestDb, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![("LOG_LEVEL", "info")];
    env.extend_from_slice(extra);
    common::start_daemon(db, &env).await
}

fn span_part(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_trace_is_exported_with_session_and_backwards_spans() {
    let collector = Collector::start().await;
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_daemon(
        &db,
        &[
            ("DIFY_TEST_SKIP_RUNTIME_PREPARATION", "false"),
            ("PYTHON_ENV_INIT_TIMEOUT", "60"),
            ("DIFY_INNER_API_URL", &inner.url),
            ("DIFY_INNER_API_KEY", "inner-key"),
            ("ENABLE_OTEL", "true"),
            ("OTLP_BASE_ENDPOINT", &collector.url),
            ("OTEL_API_KEY", "collector-key"),
            ("OTEL_BATCH_EXPORT_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let (_, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    // A caller that did not sample its trace: nothing of it is exported.
    let unsampled = "6df92f3577b34da6a3ce929d0e0e4738";
    let response = daemon
        .client
        .get(daemon.url(&format!("/plugin/{TENANT}/management/list?page=1&page_size=10")))
        .header("X-Api-Key", &daemon.key)
        .header("traceparent", format!("00-{unsampled}-{CALLER_SPAN}-00"))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status().as_u16(), 200);
    let answer = response.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(answer.ends_with("-00"), "an unsampled caller stays unsampled: {answer}");

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

    let complete = |spans: &[Exported]| spans.iter().any(|s| s.name.starts_with("backwards")) && spans.len() >= 3;
    let arrived = runtime_support::eventually(Duration::from_secs(20), || complete(&collector.of_trace(TRACE_ID))).await;
    let spans = collector.of_trace(TRACE_ID);
    assert!(arrived, "spans of the trace: {spans:#?}\n{}", daemon.log());

    // The request: a server span whose parent is the caller's span and whose id the answer names.
    let request = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no server span: {spans:#?}"));
    assert_eq!(request.parent_span_id, CALLER_SPAN, "{request:?}");
    assert_eq!(request.span_id, span_part(&answer), "the answer's traceparent names the request span: {answer}");
    assert_eq!(request.name, "POST /plugin/{tenant_id}/dispatch/tool/invoke", "{request:?}");
    assert_eq!(request.attribute("http.route"), Some("/plugin/{tenant_id}/dispatch/tool/invoke"), "{request:?}");
    assert_eq!(request.attribute("http.response.status_code"), Some("200"), "{request:?}");
    assert_eq!(request.attribute("tenant_id"), Some(TENANT), "{request:?}");
    assert_eq!(request.attribute("plugin_id"), Some("testing/runtime_tools"), "{request:?}");
    assert_eq!(request.service, "dify-plugin-daemon");

    // The plugin session: a child of the request.
    let session = spans.iter().find(|s| s.name == "plugin session").unwrap_or_else(|| panic!("no session span: {spans:#?}"));
    assert_eq!(session.parent_span_id, request.span_id, "{session:?}");
    assert_eq!(session.attribute("plugin.action"), Some("invoke_tool"), "{session:?}");
    assert_eq!(session.attribute("plugin.access_type"), Some("tool"), "{session:?}");
    assert_eq!(session.attribute("tenant_id"), Some(TENANT), "{session:?}");
    assert_eq!(session.attribute("plugin_id"), Some("testing/runtime_tools"), "{session:?}");

    // The backwards call: a child of the session, and the traceparent Dify's inner API received names it.
    let backwards = spans.iter().find(|s| s.name == "backwards tool").unwrap_or_else(|| panic!("no backwards span: {spans:#?}"));
    assert_eq!(backwards.parent_span_id, session.span_id, "{backwards:?}");
    assert_eq!(backwards.kind, SpanKind::Client as i32, "{backwards:?}");
    assert_eq!(backwards.attribute("backwards.type"), Some("tool"), "{backwards:?}");
    let calls = inner.traceparents.lock().unwrap().clone();
    let tool_call = calls.iter().find(|(path, _)| path == "/inner/api/invoke/tool").unwrap_or_else(|| panic!("{calls:?}"));
    assert_eq!(span_part(&tool_call.1), backwards.span_id, "{calls:?}");

    assert!(collector.authorizations.lock().unwrap().iter().all(|a| a == "Bearer collector-key"));
    assert!(!collector.authorizations.lock().unwrap().is_empty());
    assert!(collector.of_trace(unsampled).is_empty(), "an unsampled trace was exported: {:#?}", collector.of_trace(unsampled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_queued_spans() {
    let collector = Collector::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    // Batches would wait a minute: only the shutdown flush can deliver the span in time.
    let mut daemon = start_daemon(
        &db,
        &[
            ("ENABLE_OTEL", "true"),
            ("OTLP_TRACE_ENDPOINT", &format!("{}/v1/traces", collector.url)),
            ("OTEL_BATCH_EXPORT_SCHEDULE_DELAY", "60000"),
        ],
    )
    .await;
    let trace_id = "7ef92f3577b34da6a3ce929d0e0e4739";
    let response = daemon
        .client
        .get(daemon.url(&format!("/plugin/{TENANT}/management/list?page=1&page_size=10")))
        .header("X-Api-Key", &daemon.key)
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.of_trace(trace_id).is_empty(), "exported before the batch delay: {:#?}", collector.spans());
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| daemon.terminate(Duration::from_secs(25)));
    assert!(status.is_some_and(|s| s.success()), "clean exit: {status:?}\n{}", daemon.log());
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let spans = collector.of_trace(trace_id);
    assert!(
        spans.iter().any(|s| s.attribute("http.route") == Some("/plugin/{tenant_id}/management/list")),
        "the request span was flushed at shutdown: {spans:#?}\n{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_never_blocks_requests() {
    // A collector that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let held: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
    let holder = held.clone();
    let accept = tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            holder.lock().unwrap().push(socket);
        }
    });
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let mut daemon = start_daemon(
        &db,
        &[
            ("ENABLE_OTEL", "true"),
            ("OTLP_BASE_ENDPOINT", &silent_url),
            ("OTEL_BATCH_EXPORT_SCHEDULE_DELAY", "20"),
            ("OTEL_MAX_QUEUE_SIZE", "8"),
            ("OTEL_MAX_EXPORT_BATCH_SIZE", "4"),
            ("OTEL_BATCH_EXPORT_TIMEOUT", "3000"),
        ],
    )
    .await;
    // Far more spans than the queue holds, while the exporter hangs on the silent collector.
    let started = Instant::now();
    for _ in 0..100 {
        let response = daemon
            .client
            .get(daemon.url(&format!("/plugin/{TENANT}/management/list?page=1&page_size=10")))
            .header("X-Api-Key", &daemon.key)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("list must answer while the collector hangs");
        assert_eq!(response.status().as_u16(), 200);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "100 requests took {elapsed:?}");
    assert!(
        runtime_support::eventually(Duration::from_secs(10), || !held.lock().unwrap().is_empty()).await,
        "the exporter never connected to the collector"
    );
    let stopping = Instant::now();
    let status = tokio::task::block_in_place(|| daemon.terminate(Duration::from_secs(30)));
    assert!(status.is_some_and(|s| s.success()), "clean exit: {status:?}\n{}", daemon.log());
    assert!(stopping.elapsed() < Duration::from_secs(21), "shutdown took {:?} (drain budget 20 s)", stopping.elapsed());
    accept.abort();
}
