//! A fixture plugin daemon for the client tests: an axum server on a free local port that plays
//! one named scenario (happy path, unauthorized, pagination, slow with `Retry-After`, one per
//! daemon error type, failing install, failing invocation) with the daemon's byte-exact payloads,
//! and records every request it receives.
//!
//! Owns canned responses only; it has no plugin logic and must not be used outside tests.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

pub const API_KEY: &str = "fixture-key";
pub const TENANT: &str = "0b5d7c34-9f5e-4a26-9d2e-3f1a2b3c4d5e";
pub const CHECKSUM: &str = "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";
pub const PLUGIN_ID: &str = "fixture/echo";
pub const PROVIDER: &str = "fixture/echo/echo";

pub fn identifier() -> String {
    format!("{PLUGIN_ID}:0.0.1@{CHECKSUM}")
}

/// The daemon's error payloads, byte for byte (docs/http.md §2).
pub mod payloads {
    pub const UNAUTHORIZED: &str = r#"{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",\"args\":null}","data":null}"#;
    pub const PLUGIN_NOT_FOUND: &str =
        r#"{"code":-404,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginNotFoundError\",\"args\":null}","data":null}"#;
    pub const BAD_REQUEST: &str = r#"{"code":-400,"message":"{\"message\":\"plugin verification has been enabled, and the plugin you want to install has a bad signature\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#;
    pub const NOT_FOUND: &str = r#"{"code":-404,"message":"{\"message\":\"plugin installation not found for this tenant\",\"error_type\":\"PluginDaemonNotFoundError\",\"args\":null}","data":null}"#;
    pub const README_NOT_FOUND: &str = r#"{"code":-404,"message":"{\"message\":\"no readme content available for this plugin\",\"error_type\":\"PluginDaemonNotFoundError\",\"args\":null}","data":null}"#;
    pub const UNIQUE_IDENTIFIER: &str = r#"{"code":-400,"message":"{\"message\":\"plugin_unique_identifier is not valid: nope\",\"error_type\":\"PluginUniqueIdentifierError\",\"args\":null}","data":null}"#;
    pub const PERMISSION_DENIED: &str = r#"{"code":-403,"message":"{\"message\":\"permission denied, you need to enable endpoint access in plugin manifest\",\"error_type\":\"PluginPermissionDeniedError\",\"args\":null}","data":null}"#;
    pub const INTERNAL: &str = r#"{"code":-500,"message":"{\"message\":\"record not found\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#;
    pub const INNER: &str = r#"{"code":-500,"message":"{\"message\":\"connection refused\",\"error_type\":\"PluginDaemonInnerError\",\"args\":null}","data":null}"#;
    pub const INVOKE: &str = r#"{"code":-500,"message":"{\"message\":\"{\\\"args\\\":{},\\\"error_type\\\":\\\"InvokeRateLimitError\\\",\\\"message\\\":\\\"429 too many\\\"}\",\"error_type\":\"PluginInvokeError\",\"args\":null}","data":null}"#;
    pub const ROUTE_NOT_FOUND: &str = r#"{"code":"not_found","message":"route not found"}"#;
}

/// What the fixture daemon does.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// A working daemon with one installable tool plugin.
    Happy,
    /// Every authenticated route answers 401 with the middleware's payload.
    Unauthorized,
    /// Like `Happy`, with 5 installed plugins paged by `page`/`page_size`.
    Pagination,
    /// Like `Happy`, but the first `busy_answers` GETs get 503 (then 429) with `Retry-After: 1`.
    Slow { busy_answers: usize },
    /// Every route answers HTTP `status` with `body` (one daemon error type).
    DaemonError { status: u16, body: &'static str },
    /// Like `Happy`, but the install task fails with a per-plugin message.
    InstallFails,
    /// Like `Happy`, but the tool stream breaks with a `PluginInvokeError` after one text chunk.
    InvokeFails,
    /// Every route answers the router's "route not found".
    NotADaemon,
    /// Like `Happy`, but the tool stream's connection breaks after one text chunk, with no error line.
    StreamCut,
}

/// One request as the fixture saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub api_key: Option<String>,
    pub plugin_id: Option<String>,
    /// Every `Content-Type` value sent (the daemon binds JSON only for exactly `application/json`).
    pub content_types: Vec<String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub struct Fixture {
    scenario: Scenario,
    requests: Mutex<Vec<Recorded>>,
    task_polls: AtomicUsize,
    gets: AtomicUsize,
}

/// A running fixture server; stops when dropped.
pub struct FixtureServer {
    pub url: String,
    pub fixture: Arc<Fixture>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FixtureServer {
    /// Starts serving `scenario` on 127.0.0.1 with an OS-chosen port.
    pub async fn start(scenario: Scenario) -> FixtureServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        Self::serve(listener, scenario)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: tokio::net::TcpListener, scenario: Scenario) -> FixtureServer {
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let fixture =
            Arc::new(Fixture { scenario, requests: Mutex::new(Vec::new()), task_polls: AtomicUsize::new(0), gets: AtomicUsize::new(0) });
        let app = axum::Router::new().fallback(handle).with_state(fixture.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FixtureServer { url, fixture, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.fixture.requests.lock().expect("requests lock").clone()
    }

    /// Requests whose path ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path.ends_with(suffix)).collect()
    }
}

fn envelope(data: Value) -> Response {
    raw(StatusCode::OK, json!({"code": 0, "message": "success", "data": data}).to_string())
}

fn raw(status: StatusCode, body: impl Into<String>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(body.into()))
        .expect("response")
}

pub fn declaration() -> Value {
    json!({
        "version": "0.0.1", "type": "plugin", "author": "fixture", "name": "echo",
        "label": {"en_US": "Echo"}, "description": {"en_US": "Echo tool"},
        "icon": "icon.svg", "icon_dark": "",
        "resource": {"memory": 268435456, "permission": {"tool": {"enabled": true}}},
        "plugins": {"tools": ["provider/echo.yaml"], "models": null, "endpoints": null, "agent_strategies": null, "datasources": null, "triggers": null},
        "meta": {"version": "0.0.1", "arch": ["amd64", "arm64"], "runner": {"language": "python", "version": "3.12", "entrypoint": "main"}, "minimum_dify_version": null},
        "tags": [], "created_at": "2025-01-02T03:04:05Z", "verified": false,
        "tool": tool_provider_declaration()
    })
}

fn tool_provider_declaration() -> Value {
    json!({
        "identity": {"author": "fixture", "name": "echo", "description": {"en_US": "Echo"}, "icon": "icon.svg", "label": {"en_US": "Echo"}, "tags": []},
        "credentials_schema": [],
        "tools": [{
            "identity": {"author": "fixture", "name": "echo", "label": {"en_US": "Echo"}},
            "description": {"human": {"en_US": "Echo text"}, "llm": "Echo text"},
            "parameters": [
                {"name": "text", "label": {"en_US": "Text"}, "human_description": {"en_US": "Text"}, "type": "string", "form": "llm", "llm_description": "text", "required": true},
                {"name": "times", "label": {"en_US": "Times"}, "human_description": {"en_US": "Times"}, "type": "number", "form": "form", "llm_description": "", "required": false, "default": 1},
                {"name": "mode", "label": {"en_US": "Mode"}, "human_description": {"en_US": "Mode"}, "type": "select", "form": "form", "llm_description": "", "required": false,
                 "options": [{"value": "plain", "label": {"en_US": "Plain"}}, {"value": "shout", "label": {"en_US": "Shout"}}]}
            ],
            "output_schema": {"type": "object", "properties": {"file": {"$ref": "https://dify.ai/schemas/v1/file.json"}}},
            "has_runtime_parameters": false
        }]
    })
}

fn tool_provider_entity() -> Value {
    json!({
        "id": "11111111-1111-1111-1111-111111111111", "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z",
        "tenant_id": TENANT, "provider": "echo", "plugin_unique_identifier": identifier(), "plugin_id": PLUGIN_ID,
        "declaration": tool_provider_declaration()
    })
}

fn plugin_entity(index: usize) -> Value {
    let plugin_id = if index == 0 { PLUGIN_ID.to_string() } else { format!("fixture/echo{index}") };
    let identifier = format!("{plugin_id}:0.0.1@{CHECKSUM}");
    json!({
        "id": format!("inst-{index}"), "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z",
        "name": "echo", "plugin_id": plugin_id, "tenant_id": TENANT, "plugin_unique_identifier": identifier,
        "endpoints_active": 0, "endpoints_setups": 0, "installation_id": format!("inst-{index}"),
        "declaration": declaration(), "runtime_type": "local", "version": "0.0.1",
        "source": "package", "checksum": CHECKSUM, "meta": {}
    })
}

fn task(status: &str, plugin_status: &str, message: &str, completed: i64) -> Value {
    json!({
        "id": "task-1", "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:06Z",
        "status": status, "tenant_id": TENANT, "total_plugins": 1, "completed_plugins": completed,
        "plugins": [{"plugin_unique_identifier": identifier(), "labels": {"en_US": "Echo"}, "icon": "", "icon_dark": "",
            "plugin_id": PLUGIN_ID, "status": plugin_status, "message": message, "source": "package"}]
    })
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.replace("%2F", "/").replace("%3A", ":").replace("%40", "@"))
    })
}

/// SSE body: each line is written and flushed separately, `delay` apart.
fn sse(lines: Vec<String>, delay: Duration) -> Response {
    let stream = futures::stream::iter(lines.into_iter().enumerate()).then(move |(i, line)| async move {
        if i > 0 {
            tokio::time::sleep(delay).await;
        }
        Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {line}\n\n")))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn text_chunk(text: &str) -> String {
    json!({"code": 0, "message": "success", "data": {"type": "text", "message": {"text": text}, "meta": null}}).to_string()
}

use futures::StreamExt;

async fn handle(State(fixture): State<Arc<Fixture>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        api_key: header("x-api-key"),
        plugin_id: header("x-plugin-id"),
        content_types: headers.get_all("content-type").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect(),
        body: body.to_vec(),
    };
    fixture.requests.lock().expect("requests lock").push(recorded.clone());

    match &fixture.scenario {
        Scenario::NotADaemon => return raw(StatusCode::NOT_FOUND, payloads::ROUTE_NOT_FOUND),
        Scenario::Unauthorized => return raw(StatusCode::UNAUTHORIZED, payloads::UNAUTHORIZED),
        Scenario::DaemonError { status, body } => {
            return raw(StatusCode::from_u16(*status).expect("status"), *body);
        }
        Scenario::Slow { busy_answers } if method == Method::GET => {
            let seen = fixture.gets.fetch_add(1, Ordering::SeqCst);
            if seen < *busy_answers {
                let status = if seen % 2 == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::TOO_MANY_REQUESTS };
                return Response::builder().status(status).header("retry-after", "1").body(Body::from("busy")).expect("response");
            }
        }
        _ => {}
    }
    if recorded.api_key.as_deref() != Some(API_KEY) {
        return raw(StatusCode::UNAUTHORIZED, payloads::UNAUTHORIZED);
    }
    let prefix = format!("/plugin/{TENANT}/");
    let Some(route) = recorded.path.strip_prefix(&prefix) else {
        return raw(StatusCode::NOT_FOUND, payloads::ROUTE_NOT_FOUND);
    };
    let query = recorded.query.as_str();
    match (method.as_str(), route) {
        ("POST", "management/install/upload/package") => {
            let text = String::from_utf8_lossy(&body);
            if !text.contains("name=\"dify_pkg\"") {
                return envelope_error(
                    r#"{"code":-400,"message":"{\"message\":\"http: no such file\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#,
                );
            }
            envelope(json!({"unique_identifier": identifier(), "manifest": declaration(), "verification": null}))
        }
        ("POST", "management/install/upload/bundle") => {
            if !String::from_utf8_lossy(&body).contains("name=\"dify_bundle\"") {
                return envelope_error(
                    r#"{"code":-400,"message":"{\"message\":\"http: no such file\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#,
                );
            }
            envelope(json!([
                {"type": "marketplace", "value": {"organization": "langgenius", "plugin": "openai", "version": "0.0.1"}},
                {"type": "package", "value": {"unique_identifier": identifier(), "manifest": declaration()}}
            ]))
        }
        ("POST", "management/install/identifiers") => {
            let request = recorded.json();
            let ids = request["plugin_unique_identifiers"].as_array().map(Vec::len).unwrap_or(0);
            let metas = request["metas"].as_array().map(Vec::len).unwrap_or(0);
            if ids != metas {
                return envelope_error(
                    r#"{"code":-400,"message":"{\"message\":\"the number of metas must be equal to the number of plugin unique identifiers\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#,
                );
            }
            envelope(json!({"all_installed": false, "task_id": "task-1"}))
        }
        ("GET", "management/install/tasks/task-1") => {
            let polls = fixture.task_polls.fetch_add(1, Ordering::SeqCst);
            if polls == 0 {
                return envelope(task("running", "running", "starting", 0));
            }
            if fixture.scenario == Scenario::InstallFails {
                envelope(task("failed", "failed", "failed to init environment: no matching distribution for dify_plugin", 0))
            } else {
                envelope(task("success", "success", "installed", 1))
            }
        }
        ("GET", "management/install/tasks") => envelope(json!([task("success", "success", "installed", 1)])),
        ("GET", route) if route.starts_with("management/install/tasks/") => envelope_error(payloads::INTERNAL),
        ("POST", "management/install/upgrade") => envelope(json!({"all_installed": true, "task_id": ""})),
        ("GET", "management/list") => {
            let page: usize = query_value(query, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let size: usize = query_value(query, "page_size").and_then(|p| p.parse().ok()).unwrap_or(256);
            let total = if fixture.scenario == Scenario::Pagination { 5 } else { 1 };
            let list: Vec<Value> = (0..total).skip((page - 1) * size).take(size).map(plugin_entity).collect();
            envelope(json!({"list": list, "total": total}))
        }
        ("GET", "management/fetch/manifest") => {
            if query_value(query, "plugin_unique_identifier") == Some(identifier()) {
                envelope(declaration())
            } else {
                envelope_error(
                    r#"{"code":-400,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#,
                )
            }
        }
        ("GET", "management/decode/from_identifier") => envelope(
            json!({"unique_identifier": identifier(), "manifest": declaration(), "verification": {"authorized_category": "langgenius"}}),
        ),
        ("GET", "management/fetch/readme") => {
            if query_value(query, "language").as_deref() == Some("ja_JP") {
                envelope_error(payloads::README_NOT_FOUND)
            } else {
                envelope(json!({"content": "# Echo\n\nRepeats text.\n", "language": "en_US"}))
            }
        }
        ("GET", "management/fetch/identifier") => envelope(json!(query_value(query, "plugin_unique_identifier") == Some(identifier()))),
        ("POST", "management/installation/missing") => {
            let wanted = recorded.json()["plugin_unique_identifiers"].clone();
            let missing: Vec<Value> = wanted
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|id| id.as_str() != Some(identifier().as_str()))
                .map(|id| json!({"plugin_unique_identifier": id, "current_identifier": ""}))
                .collect();
            envelope(json!(missing))
        }
        ("POST", "management/installation/fetch/batch") => {
            let mut row = plugin_entity(0);
            if let Value::Object(map) = &mut row {
                map.remove("name");
                map.remove("installation_id");
            }
            envelope(json!([row]))
        }
        ("POST", "management/uninstall") => envelope(json!(true)),
        ("POST", "management/install/tasks/delete_all") => envelope(json!(true)),
        ("POST", route) if route.starts_with("management/install/tasks/task-1/delete") => envelope(json!(true)),
        ("GET", "management/tools") => envelope(json!([tool_provider_entity()])),
        ("GET", "management/tool") => {
            if query_value(query, "plugin_id").as_deref() == Some(PLUGIN_ID) && query_value(query, "provider").as_deref() == Some("echo") {
                envelope(tool_provider_entity())
            } else {
                envelope_error(payloads::PLUGIN_NOT_FOUND)
            }
        }
        ("POST", "management/tools/check_existence") => {
            let ids = recorded.json()["provider_ids"].as_array().cloned().unwrap_or_default();
            let exists: Vec<bool> = ids.iter().map(|id| id["plugin_id"] == PLUGIN_ID && id["provider_name"] == "echo").collect();
            envelope(json!(exists))
        }
        ("POST", "dispatch/tool/invoke") => {
            if recorded.plugin_id.as_deref() != Some(PLUGIN_ID) {
                return raw(StatusCode::NOT_FOUND, payloads::PLUGIN_NOT_FOUND);
            }
            let request = recorded.json();
            let text = request["data"]["tool_parameters"]["text"].as_str().unwrap_or_default().to_string();
            let mut lines = vec![text_chunk(&format!("{text} ")), text_chunk("again")];
            if fixture.scenario == Scenario::StreamCut {
                let first = Bytes::from(format!("data: {}\n\n", text_chunk(&text)));
                let stream = futures::stream::iter([
                    Ok::<Bytes, std::io::Error>(first),
                    Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "runtime crashed")),
                ])
                .then(|item| async move {
                    // Let the headers and the first chunk go out before the connection breaks.
                    if item.is_err() {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    item
                });
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .expect("response");
            }
            if fixture.scenario == Scenario::InvokeFails {
                lines.truncate(1);
                lines.push(payloads::INVOKE.to_string());
            } else {
                // "hello!" as two base64 blob chunks, merged by the client into one blob.
                for (sequence, (part, end)) in [("aGVs", false), ("bG8h", true)].into_iter().enumerate() {
                    lines.push(
                        json!({"code": 0, "message": "success", "data": {"type": "blob_chunk",
                        "message": {"id": "file-1", "sequence": sequence, "total_length": 6, "blob": part, "end": end},
                        "meta": {"mime_type": "text/plain"}}})
                        .to_string(),
                    );
                }
                lines.push(json!({"code": 0, "message": "success", "data": {"type": "json", "message": {"json_object": {"echoed": text}}, "meta": null}}).to_string());
            }
            sse(lines, Duration::from_millis(150))
        }
        _ => raw(StatusCode::NOT_FOUND, payloads::ROUTE_NOT_FOUND),
    }
}

fn envelope_error(body: &'static str) -> Response {
    raw(StatusCode::OK, body)
}
