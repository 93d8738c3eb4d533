//! Endpoint management (`/plugin/{tenant}/endpoint/...`) against the real binary and a fake Dify
//! inner API that encrypts settings, on SQLite, PostgreSQL and MySQL.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};
use common::{assert_error, assert_ok, fixture_bytes, repackage, Daemon, DaemonOptions, TestDb};
use serde_json::{json, Map, Value};

const INNER_KEY: &str = "inner-api-key-for-tests";

type Calls = Arc<Mutex<Vec<Value>>>;

/// A stand-in for Dify's `/inner/api/invoke/encrypt`: "encrypts" by prefixing `enc:`.
async fn fake_dify() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let app = Router::new().route(
        "/inner/api/invoke/encrypt",
        post(move |headers: axum::http::HeaderMap, Json(body): Json<Value>| {
            let recorded = recorded.clone();
            async move {
                if headers.get("x-inner-api-key").and_then(|v| v.to_str().ok()) != Some(INNER_KEY) {
                    return Json(json!({"data": null, "error": "bad inner api key"}));
                }
                recorded.lock().unwrap().push(body.clone());
                let data = body["data"].as_object().cloned().unwrap_or_default();
                let out: Map<String, Value> = match body["opt"].as_str() {
                    Some("encrypt") => data
                        .into_iter()
                        .map(|(k, v)| match v {
                            Value::String(s) => (k, Value::String(format!("enc:{s}"))),
                            other => (k, other),
                        })
                        .collect(),
                    Some("decrypt") => data
                        .into_iter()
                        .map(|(k, v)| match v {
                            Value::String(s) => (k, Value::String(s.trim_start_matches("enc:").to_string())),
                            other => (k, other),
                        })
                        .collect(),
                    _ => Map::new(),
                };
                Json(json!({"data": {"data": out}, "error": ""}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, calls)
}

/// The dummy fixture turned into an endpoint plugin (`permission` says whether endpoints are allowed).
fn endpoint_plugin(name: &str, permission: bool, with_endpoints: bool) -> Vec<u8> {
    let permission = if permission { "\n    endpoint:\n      enabled: true" } else { " {}" };
    let plugins = if with_endpoints { "  endpoints:\n    - group/hooks.yaml\n" } else { "  tools:\n    - provider/test.yaml\n" };
    let manifest = format!(
        "version: 0.0.1\ntype: plugin\nauthor: test\nname: {name}\nlabel:\n  en_US: {name}\ndescription:\n  en_US: {name}\n\
         icon: icon.svg\nresource:\n  memory: 268435456\n  permission:{permission}\nplugins:\n{plugins}meta:\n  version: 0.0.1\n\
         \x20 arch:\n    - amd64\n  runner:\n    language: python\n    version: \"3.12\"\n    entrypoint: main\n\
         created_at: 2025-03-30T14:38:08.927240378Z\n"
    );
    let group = "settings:\n  - name: api_key\n    type: secret-input\n    required: true\n    label:\n      en_US: API key\n\
                 \x20 - name: mode\n    type: select\n    required: false\n    options:\n      - value: fast\n        label:\n          en_US: Fast\n\
                 \x20   label:\n      en_US: Mode\nendpoints:\n  - group/hello.yaml\n";
    let hello = "path: \"/hello\"\nmethod: \"GET\"\nextra:\n  python:\n    source: \"group/hello.py\"\n";
    repackage(
        &fixture_bytes("dummy_plugin.difypkg"),
        &[
            ("manifest.yaml", Some(manifest.as_bytes())),
            ("group/hooks.yaml", Some(group.as_bytes())),
            ("group/hello.yaml", Some(hello.as_bytes())),
            ("group/hello.py", Some(b"def hello():\n    return 'hi'\n")),
        ],
    )
}

fn e(rest: &str) -> String {
    format!("/plugin/t1/endpoint{rest}")
}

async fn endpoint_management(db: &TestDb) {
    let (dify_url, calls) = fake_dify().await;
    let d = Daemon::start(
        db,
        DaemonOptions {
            env: vec![("DIFY_INNER_API_URL".into(), dify_url), ("DIFY_INNER_API_KEY".into(), INNER_KEY.into())],
            ..Default::default()
        },
    )
    .await;
    let (hooks, task) = d.install_package("t1", &endpoint_plugin("hooks", true, true)).await;
    assert_eq!(task["status"], "success", "{task}");
    let (denied, _) = d.install_package("t1", &endpoint_plugin("denied", false, true)).await;
    let (bare, _) = d.install_package("t1", &endpoint_plugin("bare", true, false)).await;

    // Binding and setup errors.
    assert_error(
        &d.post(&e("/setup"), &json!({"plugin_unique_identifier": hooks, "user_id": "u1"})).await,
        400,
        -400,
        "PluginDaemonBadRequestError",
        None,
    );
    let setup =
        |uid: &str, settings: Value| json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "main", "settings": settings});
    let other = "test/other:0.0.1@0123456789abcdef0123456789abcdef";
    assert_error(&d.post(&e("/setup"), &setup(other, json!({}))).await, 200, -404, "PluginNotFoundError", Some("plugin not found"));
    assert_error(
        &d.post(&e("/setup"), &setup(&denied, json!({"api_key": "x"}))).await,
        200,
        -403,
        "PluginPermissionDeniedError",
        Some("permission denied, you need to enable endpoint access in plugin manifest"),
    );
    assert_error(
        &d.post(&e("/setup"), &setup(&bare, json!({}))).await,
        200,
        -400,
        "PluginDaemonBadRequestError",
        Some("plugin does not have an endpoint"),
    );
    assert_error(
        &d.post(&e("/setup"), &setup(&hooks, json!({"mode": "fast"}))).await,
        200,
        -400,
        "PluginDaemonBadRequestError",
        Some("failed to validate settings: api_key is required"),
    );
    assert!(calls.lock().unwrap().is_empty(), "nothing is encrypted for refused setups");

    // Setup: settings are encrypted by Dify before they are stored.
    assert_eq!(assert_ok(&d.post(&e("/setup"), &setup(&hooks, json!({"api_key": "supersecret", "mode": "fast"}))).await), json!(true));
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["opt"], "encrypt");
        assert_eq!(calls[0]["namespace"], "endpoint");
        assert_eq!(calls[0]["tenant_id"], "t1");
        assert_eq!(calls[0]["data"]["api_key"], "supersecret");
    }
    let list = assert_ok(&d.get(&e("/list?page=1&page_size=10")).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let endpoint = list[0].clone();
    let id = endpoint["id"].as_str().unwrap().to_string();
    assert_eq!(calls.lock().unwrap().last().unwrap()["data"]["api_key"], "enc:supersecret", "stored value is the encrypted one");
    assert_eq!(endpoint["settings"], json!({"api_key": "su*******et", "mode": "fast"}));
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["name"], "main");
    assert_eq!(endpoint["plugin_id"], "test/hooks");
    assert_eq!(endpoint["expired_at"], "2050-01-01T00:00:00Z");
    let hook_id = endpoint["hook_id"].as_str().unwrap();
    assert!(hook_id.len() == 16 && hook_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{hook_id}");
    assert_eq!(endpoint["declaration"]["endpoints"], json!([{"path": "/hello", "method": "GET", "hidden": false}]));
    assert_eq!(endpoint["declaration"]["settings"][0]["name"], "api_key");
    let installed = d.list("t1").await.into_iter().find(|p| p["plugin_id"] == "test/hooks").unwrap();
    assert_eq!((installed["endpoints_setups"].clone(), installed["endpoints_active"].clone()), (json!(1), json!(1)));

    // Disable / enable are idempotent and keep the active counter.
    for _ in 0..2 {
        assert_eq!(assert_ok(&d.post(&e("/disable"), &json!({"endpoint_id": id})).await), json!(true));
    }
    let installed = d.list("t1").await.into_iter().find(|p| p["plugin_id"] == "test/hooks").unwrap();
    assert_eq!((installed["endpoints_setups"].clone(), installed["endpoints_active"].clone()), (json!(1), json!(0)));
    assert_eq!(assert_ok(&d.get(&e("/list?page=1&page_size=10")).await)[0]["enabled"], false);
    assert_eq!(assert_ok(&d.post(&e("/enable"), &json!({"endpoint_id": id})).await), json!(true));
    let installed = d.list("t1").await.into_iter().find(|p| p["plugin_id"] == "test/hooks").unwrap();
    assert_eq!(installed["endpoints_active"], 1);

    // Update with the masked secret keeps the stored secret.
    let update = json!({"endpoint_id": id, "user_id": "u2", "name": "renamed", "settings": {"api_key": "su*******et"}});
    assert_eq!(assert_ok(&d.post(&e("/update"), &update).await), json!(true));
    let encrypts: Vec<Value> = calls.lock().unwrap().iter().filter(|c| c["opt"] == "encrypt").cloned().collect();
    assert_eq!(encrypts.last().unwrap()["data"]["api_key"], "supersecret");
    assert!(calls.lock().unwrap().iter().any(|c| c["opt"] == "clear"), "Dify's credential cache is cleared");
    let update = json!({"endpoint_id": id, "user_id": "u2", "name": "renamed", "settings": {"api_key": "another-secret"}});
    assert_eq!(assert_ok(&d.post(&e("/update"), &update).await), json!(true));
    let listed = assert_ok(&d.get(&e("/list/plugin?plugin_id=test/hooks&page=1&page_size=10")).await);
    assert_eq!(listed[0]["name"], "renamed");
    assert_eq!(listed[0]["user_id"], "u2");
    assert_eq!(listed[0]["settings"]["api_key"], "an**********et");

    // Errors on unknown things.
    assert_error(&d.get(&e("/list/plugin?plugin_id=x/y&page=1&page_size=10")).await, 200, -404, "PluginDaemonNotFoundError", None);
    assert_error(&d.get(&e("/list?page=1&page_size=101")).await, 400, -400, "PluginDaemonBadRequestError", None);
    assert_error(
        &d.post(&e("/enable"), &json!({"endpoint_id": "nope"})).await,
        200,
        -404,
        "PluginDaemonNotFoundError",
        Some("endpoint not found"),
    );
    assert_error(
        &d.post(&e("/update"), &json!({"endpoint_id": "nope", "user_id": "u", "name": "n"})).await,
        200,
        -404,
        "PluginDaemonNotFoundError",
        None,
    );

    // Remove, then removing again is the exact upstream error (which Dify treats as success).
    assert_eq!(assert_ok(&d.post(&e("/remove"), &json!({"endpoint_id": id})).await), json!(true));
    assert_error(
        &d.post(&e("/remove"), &json!({"endpoint_id": id})).await,
        200,
        -500,
        "PluginDaemonInternalServerError",
        Some("failed to remove endpoint: record not found"),
    );
    assert_eq!(assert_ok(&d.get(&e("/list?page=1&page_size=10")).await), json!([]));
    let installed = d.list("t1").await.into_iter().find(|p| p["plugin_id"] == "test/hooks").unwrap();
    assert_eq!((installed["endpoints_setups"].clone(), installed["endpoints_active"].clone()), (json!(0), json!(0)));

    // An endpoint of an uninstalled plugin is listed with empty settings and declaration.
    assert_eq!(assert_ok(&d.post(&e("/setup"), &setup(&hooks, json!({"api_key": "supersecret"}))).await), json!(true));
    assert_eq!(
        assert_ok(&d.post("/plugin/t1/management/uninstall", &json!({"plugin_installation_id": installed["id"]})).await),
        json!(true)
    );
    let list = assert_ok(&d.get(&e("/list?page=1&page_size=10")).await);
    assert_eq!(list[0]["settings"], json!({}));
    assert_eq!(list[0]["declaration"], json!({"settings": [], "endpoints": []}));
}
on_every_backend!(endpoint_management, endpoint_management);
