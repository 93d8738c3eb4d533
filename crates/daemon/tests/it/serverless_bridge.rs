//! The serverless runtime's HTTP bridge driven through the session layer, against a local HTTP server
//! standing in for a function that misbehaves the way a serverless platform can (HTTP 502, Lambda error
//! payloads and headers, empty bodies, bodies without `end`, unsupported in-body `invoke` events). The
//! well-behaved path with the real SDK plugin is covered by `serverless_runtime.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dify_daemon::backwards::{BackwardsHandler, CallerContext};
use dify_daemon::runtime::serverless::{FunctionRecord, ServerlessConfig, ServerlessRuntime};
use dify_daemon::session::{start_session, SessionOutput, SessionRequest};
use dify_protocol::access::AccessType;
use dify_protocol::compact::RawChunk;
use dify_protocol::message::{BackwardsReply, BackwardsRequest, InvocationContext, PluginSessionError};
use dify_protocol::PluginUniqueIdentifier;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// What the function received.
#[derive(Debug, Clone)]
struct Received {
    action: String,
    session_header: String,
    content_type: String,
    accept: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct FunctionState {
    received: Mutex<Vec<Received>>,
}

async fn invoke(
    State(state): State<Arc<FunctionState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let session_id = request["session_id"].as_str().unwrap_or("").to_string();
    let mode = request["data"]["tool_parameters"]["mode"].as_str().unwrap_or("").to_string();
    let attempts = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            action: query.get("action").cloned().unwrap_or_default(),
            session_header: header("dify-plugin-session-id"),
            content_type: header("content-type"),
            accept: header("accept"),
            body: body.to_vec(),
        });
        received.len()
    };
    let line = |data: Value| format!("{}\n\n", json!({"event": "session", "session_id": session_id, "data": data}));
    if request["data"]["action"] == "invoke_text_embedding" {
        // One embedding per text (its length), priced per text; a text "drop" loses its embedding.
        let texts: Vec<String> = request["data"]["texts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        let embeddings: Vec<Value> = texts.iter().filter(|t| t.as_str() != "drop").map(|t| json!([t.len() as f64])).collect();
        let usage = json!({"tokens": texts.len(), "total_tokens": texts.len(), "unit_price": "0.0001", "price_unit": "0.001",
                           "total_price": format!("0.000000{}", texts.len()), "currency": "USD", "latency": 0.25});
        let result = json!({"model": "embed-1", "embeddings": embeddings, "usage": usage});
        return format!("{}{}", line(json!({"type": "stream", "data": result})), line(json!({"type": "end", "data": {}}))).into_response();
    }
    match mode.as_str() {
        "flaky" if attempts == 1 => (StatusCode::BAD_GATEWAY, "bad gateway").into_response(),
        "flaky" | "ok" => format!(
            "{}{}{}{}",
            "{\"event\": \"log\", \"data\": {\"level\": \"INFO\", \"message\": \"hi\", \"timestamp\": 1.0}}\n\n",
            "{\"event\":\"heartbeat\",\"session_id\":null,\"data\":{}}\n\n",
            line(json!({"type": "stream", "data": {"type": "text", "message": {"text": "fine"}, "meta": null}})),
            line(json!({"type": "end", "data": {}})),
        )
        .into_response(),
        "no_end" => line(json!({"type": "stream", "data": {"result": true}})).into_response(),
        "lambda_error" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("x-amzn-RequestId", "req-9")],
            r#"{"errorType":"Runtime.ExitError","errorMessage":"exited with 137"}"#,
        )
            .into_response(),
        "header_error" => ([("x-amzn-ErrorType", "Function.ResponseSizeTooLarge")], "").into_response(),
        "body_error" => {
            "{\"errorType\":\"Sandbox.Timedout\",\"errorMessage\":\"Task timed out\",\"requestId\":\"req-3\"}\n".into_response()
        }
        "invoke" => line(
            json!({"type": "invoke", "data": {"type": "storage", "backwards_request_id": "b1", "request": {"opt": "get", "key": "k"}}}),
        )
        .into_response(),
        _ => "".into_response(),
    }
}

/// Answers nothing: the bridge tests make no backwards calls through the session layer.
struct NoBackwards;

impl BackwardsHandler for NoBackwards {
    fn handle<'a>(
        &'a self,
        _caller: &'a CallerContext,
        request: BackwardsRequest,
        replies: &'a mpsc::UnboundedSender<BackwardsReply>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = replies.send(BackwardsReply::error(&request.backwards_request_id, "not served here"));
        })
    }
}

struct Bridge {
    runtime: Arc<ServerlessRuntime>,
    connection: Arc<dify_daemon::runtime::PluginConnection>,
    /// Kept alive for the test: the runtime itself holds only weak references to its plugins.
    _plugin: Arc<dify_daemon::runtime::ServerlessPlugin>,
    function: Arc<FunctionState>,
    _server: tokio::task::JoinHandle<()>,
}

async fn bridge(max_request_bytes: usize) -> Bridge {
    let function = Arc::new(FunctionState::default());
    let app = Router::new().route("/invoke", post(invoke)).with_state(function.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let runtime = ServerlessRuntime::new(ServerlessConfig {
        connector_url: "http://127.0.0.1:9".into(),
        connector_api_key: String::new(),
        launch_timeout: Duration::from_secs(5),
        transaction_timeout: Duration::from_secs(5),
        max_retry_times: 3,
        max_request_bytes,
        execution_timeout: Duration::from_secs(20),
        max_line_bytes: 1024 * 1024,
    });
    let identifier = PluginUniqueIdentifier::parse(&format!("testing/bridge:0.0.1@{}", "a".repeat(64))).expect("identifier");
    let plugin = runtime.attach(identifier, FunctionRecord { url, name: "fn-bridge".into(), resource_name: String::new() });
    let connection = plugin.connection().expect("connection");
    Bridge { runtime, connection, _plugin: plugin, function, _server: server }
}

/// Runs one `invoke_tool` session with `mode` and returns every output (bounded).
async fn run(bridge: &Bridge, mode: &str, text: &str) -> (String, Vec<SessionOutput>) {
    let payload = json!({"provider": "bridge", "tool": "t", "credentials": {}, "tool_parameters": {"mode": mode, "text": text}});
    run_request(bridge, AccessType::Tool, "invoke_tool", payload).await
}

/// Runs one session of `action` and returns every output (bounded).
async fn run_request(bridge: &Bridge, access_type: AccessType, action: &str, payload: Value) -> (String, Vec<SessionOutput>) {
    let request = SessionRequest {
        tenant_id: "tenant".into(),
        user_id: "user-1".into(),
        plugin_id: "testing/bridge".into(),
        access_type,
        action: action.into(),
        payload: payload.as_object().cloned().unwrap_or_default().into(),
        invocation: InvocationContext::default(),
        permissions: Default::default(),
        trace: None,
    };
    let mut session = start_session(bridge.connection.clone(), request, Arc::new(NoBackwards), Duration::from_secs(30))
        .await
        .expect("session starts");
    let mut outputs = Vec::new();
    while let Some(output) = tokio::time::timeout(Duration::from_secs(30), session.next()).await.expect("session output in time") {
        outputs.push(output);
    }
    (session.session_id.clone(), outputs)
}

fn failure(outputs: &[SessionOutput]) -> PluginSessionError {
    match outputs.last() {
        Some(SessionOutput::Failed(error)) => error.clone(),
        other => panic!("expected a failure, got {other:?} in {outputs:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_posted_as_the_sri_contract_says_and_502_is_retried() {
    let bridge = bridge(5_242_880).await;
    let (session_id, outputs) = run(&bridge, "flaky", "x").await;
    assert_eq!(
        outputs,
        vec![SessionOutput::Chunk(RawChunk::from_value(&json!({"type": "text", "message": {"text": "fine"}, "meta": null})))]
    );
    let received = bridge.function.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "one retry after the 502");
    for attempt in &received {
        assert_eq!(attempt.action, "invoke_tool");
        assert_eq!(attempt.session_header, session_id);
        assert_eq!((attempt.content_type.as_str(), attempt.accept.as_str()), ("application/json", "text/event-stream"));
        assert!(!attempt.body.ends_with(b"\n"), "the body is the request line without its newline");
        let body: Value = serde_json::from_slice(&attempt.body).expect("JSON body");
        assert_eq!((&body["session_id"], &body["event"]), (&json!(session_id), &json!("request")));
        assert_eq!(body["data"]["action"], "invoke_tool");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_is_synthesised_when_the_body_ends_without_one() {
    let bridge = bridge(5_242_880).await;
    let (_, outputs) = run(&bridge, "no_end", "").await;
    assert_eq!(outputs, vec![SessionOutput::Chunk(RawChunk::from_value(&json!({"result": true})))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_failures_become_plugin_runtime_errors() {
    let bridge = bridge(5_242_880).await;
    let error = failure(&run(&bridge, "lambda_error", "").await.1);
    assert_eq!(error.error_type, "PluginRuntimeError");
    assert_eq!(error.message, "Plugin runtime request failed: Runtime.ExitError: exited with 137");
    assert_eq!(error.args, json!({"status_code": 500, "request_id": "req-9"}));

    let error = failure(&run(&bridge, "header_error", "").await.1);
    assert_eq!(
        (error.error_type.as_str(), error.message.as_str()),
        ("PluginRuntimeError", "Plugin runtime request failed: Function.ResponseSizeTooLarge")
    );
    assert_eq!(error.args, json!({"status_code": 200}));

    let error = failure(&run(&bridge, "body_error", "").await.1);
    assert_eq!(error.message, "Plugin runtime request failed: Sandbox.Timedout: Task timed out");
    assert_eq!(error.args, json!({"status_code": 200, "request_id": "req-3"}));

    let error = failure(&run(&bridge, "silent", "").await.1);
    assert_eq!(
        (error.error_type.as_str(), error.message.as_str()),
        ("PluginRuntimeError", "Plugin runtime request failed: no valid session response")
    );

    let error = failure(&run(&bridge, "invoke", "").await.1);
    assert_eq!(error.error_type, "serverless_event_not_supported");
    // 502 is not the only failure: nothing else was retried.
    assert_eq!(bridge.function.received.lock().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_before_sending() {
    let bridge = bridge(1024).await;
    let (_, outputs) = run(&bridge, "ok", &"x".repeat(2000)).await;
    let error = failure(&outputs);
    assert_eq!(error.error_type, "ServerlessPayloadTooLarge");
    assert!(error.message.starts_with("ServerlessPayloadTooLarge: action=invoke_tool payload_bytes="), "{}", error.message);
    assert!(error.message.ends_with(" max_request_bytes=1024"), "{}", error.message);
    assert!(bridge.function.received.lock().unwrap().is_empty());
    let (_, outputs) = run(&bridge, "ok", "small").await;
    assert_eq!(outputs.len(), 1, "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_need_a_running_session() {
    let bridge = bridge(5_242_880).await;
    let body = br#"{"event":"session","session_id":"s-1","data":{"type":"invoke","data":{"type":"storage","backwards_request_id":"r-1","request":{}}}}"#;
    match bridge.runtime.open_transaction("s-1", body) {
        Err(dify_daemon::runtime::serverless::TransactionError::SessionNotFound { session_id, backwards_request_id, .. }) => {
            assert_eq!((session_id.as_str(), backwards_request_id.as_str()), ("s-1", "r-1"));
        }
        other => panic!("expected SessionNotFound, got {other:?}"),
    }
    assert!(bridge.runtime.open_transaction("s-1", b"not json").is_err());
}

fn embedding_payload(texts: &[String]) -> Value {
    json!({"provider": "bridge", "model": "embed-1", "model_type": "text-embedding", "credentials": {"key": "k"}, "texts": texts, "input_type": "document"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_text_embedding_requests_run_in_batches_and_merge() {
    let bridge = bridge(700).await;
    let texts: Vec<String> = (0..24).map(|i| format!("document {i:02} {}", "z".repeat(i % 5 * 10))).collect();
    let (session_id, outputs) = run_request(&bridge, AccessType::Model, "invoke_text_embedding", embedding_payload(&texts)).await;
    let [SessionOutput::Chunk(result)] = outputs.as_slice() else { panic!("expected one merged result: {outputs:?}") };
    let result = result.to_value();
    let expected: Vec<Value> = texts.iter().map(|t| json!([t.len() as f64])).collect();
    assert_eq!(result["embeddings"], Value::Array(expected));
    assert_eq!(result["model"], "embed-1");
    assert_eq!((&result["usage"]["tokens"], &result["usage"]["total_tokens"]), (&json!(24), &json!(24)));
    let received = bridge.function.received.lock().unwrap().clone();
    assert!(received.len() > 2, "expected several batches, got {}", received.len());
    assert_eq!(result["usage"]["latency"], json!(0.25 * received.len() as f64));
    let mut sent_texts = Vec::new();
    for call in &received {
        assert!(call.body.len() <= 700, "batch body of {} bytes", call.body.len());
        assert_eq!((call.action.as_str(), call.session_header.as_str()), ("invoke_text_embedding", session_id.as_str()));
        let body: Value = serde_json::from_slice(&call.body).expect("JSON");
        assert_eq!(body["data"]["credentials"], json!({"key": "k"}));
        sent_texts.extend(body["data"]["texts"].as_array().expect("texts").iter().map(|t| t.as_str().unwrap_or("").to_string()));
    }
    assert_eq!(sent_texts, texts, "every text sent once, in order");

    // A batch answering with the wrong number of embeddings fails the whole request.
    let mut broken = texts.clone();
    broken[20] = "drop".into();
    let (_, outputs) = run_request(&bridge, AccessType::Model, "invoke_text_embedding", embedding_payload(&broken)).await;
    let error = failure(&outputs);
    assert_eq!(error.error_type, "ServerlessBatchResultMismatch");
    assert!(error.message.contains("reason=embeddings count does not match the batch"), "{}", error.message);

    // Other actions are never split.
    let (_, outputs) = run(&bridge, "ok", &"x".repeat(800)).await;
    assert_eq!(failure(&outputs).error_type, "ServerlessPayloadTooLarge");
}
