//! The public endpoint proxy `/e/{hook_id}/*path` against the real daemon binary: the SDK extension
//! plugin `tests/plugins/endpoint_echo` is installed (its environment built by uv), an endpoint is
//! set up through the management API with settings "encrypted" by a fake Dify inner API, and real
//! HTTP requests go through the proxy to the plugin and back.

use crate::common;
use crate::runtime_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use common::{assert_ok, Backend, Daemon, DaemonOptions, TestDb};
use runtime_support::*;
use serde_json::{json, Map, Value};
use sha2::Digest;

const TENANT: &str = "5b1f0c2e-8d7a-4e3b-9c6d-1a2b3c4d5e6f";
const INNER_KEY: &str = "inner-key-for-endpoint-tests";

/// A stand-in for Dify's `/inner/api/invoke/encrypt`: "encrypts" by prefixing `enc:`; decryption
/// fails on demand.
struct FakeEncryptApi {
    url: String,
    calls: Arc<Mutex<Vec<Value>>>,
    fail_decrypt: Arc<AtomicBool>,
}

impl FakeEncryptApi {
    async fn start() -> FakeEncryptApi {
        let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
        let fail_decrypt = Arc::new(AtomicBool::new(false));
        let (recorded, failing) = (calls.clone(), fail_decrypt.clone());
        let app = Router::new().route(
            "/inner/api/invoke/encrypt",
            post(move |headers: axum::http::HeaderMap, Json(body): Json<Value>| {
                let (recorded, failing) = (recorded.clone(), failing.clone());
                async move {
                    if headers.get("x-inner-api-key").and_then(|v| v.to_str().ok()) != Some(INNER_KEY) {
                        return Json(json!({"data": null, "error": "bad inner api key"}));
                    }
                    recorded.lock().unwrap().push(body.clone());
                    let data = body["data"].as_object().cloned().unwrap_or_default();
                    let rewrite = |f: &dyn Fn(&str) -> String| -> Map<String, Value> {
                        data.iter()
                            .map(|(k, v)| match v {
                                Value::String(s) => (k.clone(), Value::String(f(s))),
                                other => (k.clone(), other.clone()),
                            })
                            .collect()
                    };
                    let out = match body["opt"].as_str() {
                        Some("encrypt") => rewrite(&|s| format!("enc:{s}")),
                        Some("decrypt") if failing.load(Ordering::SeqCst) => {
                            return Json(json!({"data": null, "error": "decryption is broken"}))
                        }
                        Some("decrypt") => rewrite(&|s| s.trim_start_matches("enc:").to_string()),
                        _ => Map::new(),
                    };
                    Json(json!({"data": {"data": out}, "error": ""}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake dify");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeEncryptApi { url, calls, fail_decrypt }
    }

    fn decrypt_calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().iter().filter(|c| c["opt"] == "decrypt").cloned().collect()
    }
}

/// The shared launcher with the fake Dify inner API and `extra`.
async fn start_with_inner_api(db: &TestDb, inner_api_url: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![("DIFY_INNER_API_URL", inner_api_url), ("DIFY_INNER_API_KEY", INNER_KEY)];
    env.extend(extra.iter().copied());
    common::start_daemon(db, &env).await
}

/// Status, headers and raw body of one request through the proxy.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.timeout(Duration::from_secs(120)).send().await.expect("proxy request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("proxy body").to_vec();
    Answer { status, headers, body }
}

fn error_envelope(code: i64, error_type: &str, message: &str) -> String {
    json!({"code": code, "message": json!({"message": message, "error_type": error_type, "args": null}).to_string(), "data": null})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_requests_reach_the_sdk_plugin_and_stream_back() {
    let dify = FakeEncryptApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_with_inner_api(&db, &dify.url, &[]).await;
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("endpoint_echo")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let setup = json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "hooks", "settings": {"api_key": "secret-value-1"}});
    assert_eq!(assert_ok(&daemon.post(&format!("/plugin/{TENANT}/endpoint/setup"), &setup).await), json!(true));
    let listed = assert_ok(&daemon.get(&format!("/plugin/{TENANT}/endpoint/list?page=1&page_size=10")).await);
    let hook_id = listed[0]["hook_id"].as_str().expect("hook_id").to_string();
    let endpoint_id = listed[0]["id"].as_str().expect("id").to_string();
    let url = |rest: &str| daemon.url(&format!("/e/{hook_id}{rest}"));
    let host = format!("127.0.0.1:{}", daemon.port);

    // GET: method, path, query, a header, hook headers, decrypted settings; proxy headers removed.
    let before = dify.decrypt_calls().len();
    let answer = send(
        daemon
            .client
            .get(url("/echo/a/b?x=1&x=2&y=z"))
            .header("X-Echo", "hello")
            .header("X-Forwarded-For", "10.1.2.3"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), daemon.log());
    assert_eq!(answer.header("x-echo-reply"), "get");
    assert_eq!(answer.header("content-type"), "application/json");
    assert_eq!(answer.header("content-length"), answer.body.len().to_string(), "the plugin's length is kept");
    let echoed = answer.json();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/echo/a/b");
    assert_eq!(echoed["values"], json!({"rest": "a/b"}));
    assert_eq!(echoed["query"], json!({"x": ["1", "2"], "y": ["z"]}));
    assert_eq!(echoed["echo_header"], "hello");
    assert_eq!(echoed["forwarded_for"], Value::Null);
    assert_eq!(echoed["host"], json!(host));
    assert_eq!(echoed["hook_id"], json!(hook_id));
    assert_eq!(echoed["hook_url"], json!(format!("http://{host}/e/{hook_id}/echo/a/b")));
    assert_eq!(echoed["settings"], json!({"api_key": "secret-value-1"}));
    assert_eq!(echoed["body_length"], 0);
    let decrypts = dify.decrypt_calls();
    assert_eq!(decrypts.len(), before + 1, "one decryption per call");
    let call = decrypts.last().expect("decrypt call");
    assert_eq!((&call["tenant_id"], &call["user_id"], &call["namespace"]), (&json!(TENANT), &json!(""), &json!("endpoint")));
    assert_eq!((&call["identity"], &call["data"]["api_key"]), (&json!(endpoint_id), &json!("enc:secret-value-1")));

    // X-Original-Host becomes the Host; X-Forwarded-Proto https gives an https hook URL.
    let answer = send(
        daemon
            .client
            .get(url("/echo/x"))
            .header("X-Original-Host", "hooks.example.com")
            .header("X-Forwarded-Proto", "https"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let echoed = answer.json();
    assert_eq!(echoed["host"], "hooks.example.com");
    assert_eq!(echoed["hook_url"], json!(format!("https://hooks.example.com/e/{hook_id}/echo/x")));
    let answer = send(daemon.client.get(url("/echo/x")).header("Dify-Hook-Url", "https://given.example/hook")).await;
    assert_eq!(answer.json()["hook_url"], "https://given.example/hook");

    // Percent-encoded path and query reach the plugin as sent.
    let answer = send(daemon.client.get(url("/echo/a%20b/%C3%A9?q=%C3%A9&sp=a+b"))).await;
    let echoed = answer.json();
    assert_eq!((&echoed["path"], &echoed["values"]["rest"]), (&json!("/echo/a b/é"), &json!("a b/é")));
    assert_eq!(echoed["query"], json!({"q": ["é"], "sp": ["a b"]}));

    // Concurrent calls each get their own answer.
    let answers = futures::future::join_all((0..40).map(|i| {
        let request = daemon.client.get(url(&format!("/echo/c{i}"))).header("X-Echo", format!("caller {i}"));
        async move { (i, send(request).await) }
    }))
    .await;
    for (i, answer) in answers {
        let echoed = answer.json();
        assert_eq!((&echoed["values"]["rest"], &echoed["echo_header"]), (&json!(format!("c{i}")), &json!(format!("caller {i}"))));
    }

    // HEAD is served by the GET rule; the plugin's headers come back without a body.
    let answer = send(daemon.client.head(url("/echo/x"))).await;
    assert_eq!((answer.status, answer.header("x-echo-reply"), answer.body.len()), (200, "get", 0));

    // POST with a 3 MiB body: the plugin's status and headers, the body intact.
    let body: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 253) as u8).collect();
    let answer = send(daemon.client.post(url("/echo/upload?kind=bin")).header("X-Echo", "posted").body(body.clone())).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.header("x-echo-reply"), "post");
    let echoed = answer.json();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["query"], json!({"kind": ["bin"]}));
    assert_eq!(echoed["echo_header"], "posted");
    assert_eq!(echoed["body_length"], json!(body.len()));
    assert_eq!(echoed["body_sha256"], json!(hex::encode(sha2::Sha256::digest(&body))));
    let answer = send(daemon.client.post(url("/echo/text")).body("hello plugin")).await;
    assert_eq!(answer.json()["body_head"], "hello plugin");

    // A streamed body of 8 MiB arrives complete and in order.
    let size = 8 * 1024 * 1024 + 5;
    let answer = send(daemon.client.get(url(&format!("/stream/{size}")))).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]));
    assert_eq!(answer.header("x-stream-size"), size.to_string());
    assert_eq!(answer.header("content-type"), "application/octet-stream");
    assert_eq!(answer.body.len(), size);
    assert!(answer.body.iter().enumerate().all(|(i, b)| *b as usize == i % 251), "streamed body corrupted");

    // No declared endpoint matches: the SDK's own 404 (for an unknown path and for a wrong method).
    let answer = send(daemon.client.get(url("/nowhere"))).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert!(answer.text().starts_with("Failed to dispatch endpoint request: 404 Not Found"), "{}", answer.text());
    let answer = send(daemon.client.delete(url("/echo/x"))).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert!(answer.text().starts_with("Failed to dispatch endpoint request: 405 Method Not Allowed"), "{}", answer.text());

    // The plugin raising: the SDK answers 500 with the error.
    let answer = send(daemon.client.get(url("/fail"))).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.text(), "Internal Server Error: endpoint exploded on purpose");

    // A stream that breaks after its headers: the status is sent, the error text ends the body.
    let answer = send(daemon.client.get(url("/broken"))).await;
    assert_eq!(answer.status, 200);
    let text = answer.text();
    assert!(text.starts_with("partial body;"), "{text}");
    assert!(text.contains("stream broke on purpose"), "{text}");

    // A request the SDK cannot even parse (an underscore in a header name) fails the session
    // before any status: a JSON 500 with the plugin's error.
    let answer = send(daemon.client.get(url("/echo/x")).header("X_Bad_Header", "1")).await;
    assert_eq!(answer.status, 500, "{}", answer.text());
    let envelope = answer.json();
    assert_eq!(envelope["code"], -500);
    let inner: Value = serde_json::from_str(envelope["message"].as_str().expect("message")).expect("inner error");
    assert_eq!(inner["error_type"], "PluginDaemonInternalServerError");
    assert!(inner["message"].as_str().unwrap_or("").contains("Invalid HTTP header"), "{inner}");

    // Bodies over 10 MiB are refused, with or without a Content-Length.
    let too_large = vec![b'x'; 10 * 1024 * 1024 + 1];
    let expected = error_envelope(-400, "PluginDaemonBadRequestError", "request body is larger than 10485760 bytes");
    let answer = send(daemon.client.post(url("/echo/big")).body(too_large.clone())).await;
    assert_eq!((answer.status, answer.text()), (413, expected.clone()));
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = too_large.chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    let answer = send(daemon.client.post(url("/echo/big")).body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))).await;
    assert_eq!((answer.status, answer.text()), (413, expected));

    // Unknown hook: upstream's 404 with a bad-request body.
    let answer = send(daemon.client.get(daemon.url("/e/0000000000000000/echo/x"))).await;
    assert_eq!((answer.status, answer.text()), (404, error_envelope(-400, "PluginDaemonBadRequestError", "endpoint not found")));

    // Settings that Dify cannot decrypt: a JSON 500.
    dify.fail_decrypt.store(true, Ordering::SeqCst);
    let answer = send(daemon.client.get(url("/echo/x"))).await;
    assert_eq!(answer.status, 500);
    let envelope = answer.json();
    assert_eq!(envelope["code"], -500);
    assert!(envelope["message"].as_str().unwrap_or("").contains("decryption is broken"), "{envelope}");
    dify.fail_decrypt.store(false, Ordering::SeqCst);

    // Disabled endpoint: 404 not found; enabled again, it answers.
    let toggle = |action: &str| format!("/plugin/{TENANT}/endpoint/{action}");
    assert_eq!(assert_ok(&daemon.post(&toggle("disable"), &json!({"endpoint_id": endpoint_id})).await), json!(true));
    let answer = send(daemon.client.get(url("/echo/x"))).await;
    assert_eq!((answer.status, answer.text()), (404, error_envelope(-404, "PluginDaemonNotFoundError", "endpoint not found")));
    assert_eq!(assert_ok(&daemon.post(&toggle("enable"), &json!({"endpoint_id": endpoint_id})).await), json!(true));
    assert_eq!(send(daemon.client.get(url("/echo/x"))).await.status, 200);

    // The plugin uninstalled: the endpoint row stays, its installation is gone.
    let installation = daemon.list(TENANT).await.into_iter().find(|p| p["plugin_id"] == "testing/endpoint_echo").expect("installed");
    let uninstall = json!({"plugin_installation_id": installation["id"]});
    assert_eq!(assert_ok(&daemon.post(&format!("/plugin/{TENANT}/management/uninstall"), &uninstall).await), json!(true));
    let answer = send(daemon.client.get(url("/echo/x"))).await;
    assert_eq!((answer.status, answer.text()), (404, error_envelope(-400, "PluginDaemonBadRequestError", "plugin installation not found")));
}

/// Installs the echo plugin and sets up an endpoint; returns the hook id.
async fn install_with_endpoint(daemon: &Daemon) -> String {
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("endpoint_echo")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let setup = json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "hooks", "settings": {"api_key": "k"}});
    assert_eq!(assert_ok(&daemon.post(&format!("/plugin/{TENANT}/endpoint/setup"), &setup).await), json!(true));
    let listed = assert_ok(&daemon.get(&format!("/plugin/{TENANT}/endpoint/list?page=1&page_size=10")).await);
    listed[0]["hook_id"].as_str().expect("hook_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_calls_past_the_execution_timeout_are_killed() {
    let dify = FakeEncryptApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_with_inner_api(&db, &dify.url, &[("PLUGIN_MAX_EXECUTION_TIMEOUT", "3")]).await;
    let hook_id = install_with_endpoint(&daemon).await;
    let killed = error_envelope(-500, "PluginDaemonInternalServerError", "killed by timeout");

    // Nothing sent yet: a JSON 500.
    let started = std::time::Instant::now();
    let answer = send(daemon.client.get(daemon.url(&format!("/e/{hook_id}/slow/before")))).await;
    assert_eq!((answer.status, answer.text()), (500, killed.clone()));
    assert!(started.elapsed() < Duration::from_secs(25), "the timeout must cut the call short: {:?}", started.elapsed());

    // Status and a first piece already sent: the error text ends the body.
    let answer = send(daemon.client.get(daemon.url(&format!("/e/{hook_id}/slow/during")))).await;
    assert_eq!(answer.status, 202);
    assert_eq!(answer.text(), format!("started;{killed}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_routes_follow_plugin_endpoint_enabled() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let off =
        Daemon::start(&db, DaemonOptions { env: vec![("PLUGIN_ENDPOINT_ENABLED".into(), "false".into())], ..Default::default() }).await;
    let answer = send(off.client.get(off.url("/e/0000000000000000/x"))).await;
    assert_eq!((answer.status, answer.text()), (404, r#"{"code":"not_found","message":"route not found"}"#.to_string()));

    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let on = Daemon::start(&db, DaemonOptions::default()).await;
    let unknown = error_envelope(-400, "PluginDaemonBadRequestError", "endpoint not found");
    for path in ["/e/0000000000000000", "/e/0000000000000000/", "/e/0000000000000000/deep/path?q=1"] {
        for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::OPTIONS, reqwest::Method::PATCH]
        {
            let answer = send(on.client.request(method.clone(), on.url(path))).await;
            assert_eq!((answer.status, answer.text()), (404, unknown.clone()), "{method} {path}");
        }
    }
    // No API key is needed, and a wrong one does not matter either.
    let answer = send(on.client.delete(on.url("/e/0000000000000000/x")).header("X-Api-Key", "wrong")).await;
    assert_eq!((answer.status, answer.text()), (404, unknown));
    let (status, _) = common::read_json(on.client.head(on.url("/e/0000000000000000/x")).send().await.expect("head")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_of_a_plugin_that_cannot_run_is_not_found() {
    // Installed without its runtime and with its stored package gone: nothing can serve the hook.
    let dify = FakeEncryptApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let env = vec![("DIFY_INNER_API_URL".into(), dify.url.clone()), ("DIFY_INNER_API_KEY".into(), INNER_KEY.into())];
    let daemon = Daemon::start(&db, DaemonOptions { env, ..Default::default() }).await;
    let hook_id = install_with_endpoint(&daemon).await;
    let packages = daemon.workdir.join("storage/plugin_packages");
    assert!(packages.is_dir(), "stored packages expected at {}", packages.display());
    std::fs::remove_dir_all(&packages).expect("remove stored packages");

    let decrypts_before = dify.decrypt_calls().len();
    let answer = send(daemon.client.get(daemon.url(&format!("/e/{hook_id}/echo/x")))).await;
    assert_eq!((answer.status, answer.text()), (404, error_envelope(-404, "PluginNotFoundError", "plugin not found")));
    assert_eq!(dify.decrypt_calls().len(), decrypts_before, "settings are not decrypted for a plugin that cannot run");
}
