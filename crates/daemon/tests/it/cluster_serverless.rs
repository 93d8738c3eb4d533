//! Serverless plugins in a cluster: three daemon nodes on `PLATFORM=serverless` sharing PostgreSQL,
//! Redis and a moto S3 bucket, with the SRI connector of `serverless_support` running the SDK test
//! plugin as a real HTTP function. The function's backwards calls go to a round-robin load balancer
//! in front of the two nodes that did not start the invocation, so every transaction reaches a node
//! without the session and is forwarded to the one holding it: the invocation succeeds and the
//! storage values are in the bucket. A transaction naming an unknown session answers
//! `SessionNotFound` on every node, and one whose node was just killed answers a clear error at once
//! (then `SessionNotFound` once the node has left the registry).
//!
//! Without PostgreSQL, Redis or moto the test is skipped with a message, unless `CI` is set.

use crate::cluster::{TestCluster, REDIS_URL};
use crate::runtime_support;
use crate::serverless_support::FakeConnector;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

const TENANT: &str = "5b8e1f0a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
const PLUGIN_ID: &str = "testing/runtime_tools";
const CONNECTOR_KEY: &str = "connector-key-for-cluster-tests";

/// One request the load balancer passed on.
#[derive(Debug, Clone)]
struct Passed {
    /// Index of the target (in the balancer's list).
    target: usize,
    path: String,
    /// 0 when the target could not be reached.
    status: u16,
    served_by: Option<String>,
}

struct BalancerState {
    targets: Vec<String>,
    next: AtomicUsize,
    passed: Mutex<Vec<Passed>>,
    client: reqwest::Client,
}

/// A load balancer in front of some nodes: each request goes to the next node in turn, its answer
/// streamed back as it comes.
struct Balancer {
    url: String,
    state: Arc<BalancerState>,
    server: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(targets: Vec<String>) -> Balancer {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("client");
        let state = Arc::new(BalancerState { targets, next: AtomicUsize::new(0), passed: Mutex::new(Vec::new()), client });
        let app = Router::new().fallback(balance).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind balancer");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Balancer { url, state, server }
    }

    fn passed(&self) -> Vec<Passed> {
        self.state.passed.lock().unwrap().clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn balance(State(state): State<Arc<BalancerState>>, request: Request) -> Response {
    let target = state.next.fetch_add(1, Ordering::SeqCst) % state.targets.len();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method");
    let mut outgoing = state.client.request(method, format!("{}{path}", state.targets[target])).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let mut passed = Passed { target, path, status: 0, served_by: None };
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => {
            state.passed.lock().unwrap().push(passed);
            let mut response = Response::new(Body::from(format!("balancer: {error}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            return response;
        }
    };
    passed.status = answer.status().as_u16();
    passed.served_by = answer.headers().get("x-dify-served-by").and_then(|v| v.to_str().ok()).map(str::to_owned);
    state.passed.lock().unwrap().push(passed);
    let mut response = Response::builder().status(answer.status().as_u16());
    for name in ["content-type", "x-dify-served-by"] {
        if let Some(value) = answer.headers().get(name) {
            response = response.header(name, value.as_bytes());
        }
    }
    response.body(Body::from_stream(answer.bytes_stream())).expect("response")
}

fn tool_invoke(parameters: Value) -> Value {
    json!({"user_id": "user-1", "conversation_id": null, "app_id": null, "message_id": null,
           "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}})
}

/// A tool invocation through node `index`: status and body.
async fn dispatch(cluster: &TestCluster, index: usize, parameters: Value) -> (u16, String) {
    let node = &cluster.nodes[index];
    let response = node
        .client
        .post(node.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &node.key)
        .header("X-Plugin-ID", PLUGIN_ID)
        .timeout(Duration::from_secs(120))
        .json(&tool_invoke(parameters))
        .send()
        .await
        .expect("dispatch");
    let status = response.status().as_u16();
    (status, response.text().await.expect("dispatch body"))
}

fn envelopes(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "SSE body must end with a blank line: {body:?}");
    body.split_terminator("\n\n")
        .map(|line| serde_json::from_str(line.strip_prefix("data: ").unwrap_or_else(|| panic!("not SSE: {line:?}"))).expect("JSON"))
        .collect()
}

/// A storage `get` transaction naming `session_id`, posted to `base`: status, body and how long the
/// answer took.
async fn transaction(base: &str, session_id: &str) -> (u16, String, Duration) {
    let body = json!({"event": "session", "session_id": session_id,
        "data": {"type": "invoke", "data": {"type": "storage", "backwards_request_id": "r1", "request": {"opt": "get", "key": "k"}}}});
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{base}/backwards-invocation/transaction"))
        .header("Dify-Plugin-Session-ID", session_id)
        .timeout(Duration::from_secs(30))
        .body(format!("{body}\n\n"))
        .send()
        .await
        .expect("transaction");
    let status = response.status().as_u16();
    let text = response.text().await.expect("transaction body");
    (status, text, started.elapsed())
}

async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(REDIS_URL).expect("redis client");
    client.get_multiplexed_async_connection().await.expect("redis connection")
}

/// The session owner keys under the cluster's prefix, with their values.
async fn session_keys(cluster: &TestCluster) -> Vec<(String, String)> {
    let mut connection = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:session:*", cluster.prefix))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let mut pairs = Vec::new();
    for key in keys {
        let value: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut connection).await.expect("GET");
        pairs.push((key, value.unwrap_or_default()));
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backwards_calls_reach_the_session_through_any_node() {
    let connector = FakeConnector::start(CONNECTOR_KEY).await;
    let env = [
        ("PLATFORM", "serverless"),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL", connector.url.as_str()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_API_KEY", CONNECTOR_KEY),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_LAUNCH_TIMEOUT", "90"),
    ];
    let Some(mut cluster) = TestCluster::start(3, 6379, &env).await else { return };
    cluster.wait_registry(3).await;
    let ids: Vec<String> = (0..3).map(|i| cluster.node_id(i)).collect();
    // The function calls back through a load balancer over nodes 2 and 3, never node 1 that invokes it.
    let balancer = Balancer::start(vec![cluster.nodes[1].base.clone(), cluster.nodes[2].base.clone()]).await;
    connector.set_daemon_url(&balancer.url);

    let (_uid, task) = cluster.nodes[0].install_package(TENANT, &runtime_support::package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());

    // Six storage calls (exist, set, get, exist, delete, exist), alternating between nodes 2 and 3.
    let (status, body) = dispatch(&cluster, 0, json!({"mode": "storage", "key": "color", "text": "blue"})).await;
    assert_eq!(status, 200, "{body}\n{}", cluster.logs());
    let items = envelopes(&body);
    assert_eq!(items.len(), 1, "{body}\n{}", cluster.logs());
    assert_eq!(
        items[0]["data"]["message"]["json_object"],
        json!({"exists_before": false, "read_back": "blue", "exists_after": true, "exists_deleted": false}),
        "{body}\n{}",
        cluster.logs()
    );
    let passed = balancer.passed();
    let transactions: Vec<&Passed> = passed.iter().filter(|p| p.path == "/backwards-invocation/transaction").collect();
    assert_eq!(transactions.len(), 6, "{passed:?}");
    for target in [0, 1] {
        assert!(transactions.iter().any(|p| p.target == target), "node {} received no transaction: {passed:?}", target + 2);
    }
    for transaction in &transactions {
        assert_eq!(transaction.status, 200, "{passed:?}");
        assert_eq!(transaction.served_by.as_deref(), Some(ids[0].as_str()), "forwarded to the node holding the session: {passed:?}");
    }

    // A value written through the other nodes is really in the bucket.
    let (status, body) = dispatch(&cluster, 0, json!({"mode": "storage_set", "key": "kept", "count": 3})).await;
    assert_eq!((status, envelopes(&body)[0]["data"]["message"]["text"].clone()), (200, json!("stored")), "{body}");
    let prefix = format!("persistence/{TENANT}/{PLUGIN_ID}/");
    assert_eq!(cluster.s3.keys(&prefix).await, vec![format!("{prefix}kept")], "the bucket holds the value");
    // Ended sessions leave no owner key behind.
    assert_eq!(session_keys(&cluster).await, Vec::<(String, String)>::new());

    // An unknown session answers SessionNotFound on every node, the same bytes as on a single node.
    let mut answers = Vec::new();
    for node in &cluster.nodes {
        let (status, body, _) = transaction(&node.base, "no-such-session").await;
        assert_eq!(status, 400, "{body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON answer");
        assert_eq!(answer["backwards_request_id"], "r1");
        assert_eq!((&answer["event"], &answer["message"]), (&json!("error"), &json!("failed to get session info from cache")));
        assert_eq!((&answer["data"]["error_type"], &answer["data"]["session_id"]), (&json!("SessionNotFound"), &json!("no-such-session")));
        answers.push(body);
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");

    // A session whose node is killed: the other nodes answer at once, with a clear error while the
    // registry still lists the dead node, then with SessionNotFound.
    let (base, key) = (cluster.nodes[0].base.clone(), cluster.nodes[0].key.clone());
    let sleeper = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(format!("{base}/plugin/{TENANT}/dispatch/tool/invoke"))
            .header("X-Api-Key", key)
            .header("X-Plugin-ID", PLUGIN_ID)
            .timeout(Duration::from_secs(60))
            .json(&tool_invoke(json!({"mode": "sleep", "count": 30})))
            .send()
            .await
            .map(|response| response.status());
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let (session_key, owner) = loop {
        if let Some(pair) = session_keys(&cluster).await.into_iter().next() {
            break pair;
        }
        assert!(Instant::now() < deadline, "no session owner key appeared\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(owner, ids[0], "the invoking node owns the session");
    let session_id = session_key.rsplit(':').next().expect("session id").to_string();
    cluster.nodes[0].kill();
    let (status, body, took) = transaction(&cluster.nodes[1].base, &session_id).await;
    println!("transaction for a killed node's session answered in {:.3} s: {status} {body}", took.as_secs_f64());
    assert_eq!(status, 502, "{body}\n{}", cluster.logs());
    let answer: Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!((&answer["event"], &answer["data"]["error_type"]), (&json!("error"), &json!("SessionNodeUnreachable")), "{body}");
    assert_eq!((&answer["data"]["node_id"], &answer["data"]["session_id"]), (&json!(ids[0]), &json!(session_id)), "{body}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    cluster.wait_registry(2).await;
    let (status, body, took) = transaction(&cluster.nodes[2].base, &session_id).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"SessionNotFound\""), "{body}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    sleeper.abort();
    drop(balancer);
    drop(connector);
    cluster.finish().await;
}
