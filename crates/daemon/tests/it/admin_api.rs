//! The admin API against the daemon binary: on `PLATFORM=serverless` with an SDK plugin behind the
//! test connector, `reinstall` launches the package anew (no look-up first) and the next invocation
//! goes to the new function, `switch-endpoint` moves invocations to the named function, and the
//! `X-Admin-Api-Key` check refuses a wrong or missing key. On the local platform both routes answer
//! upstream's "not supported" errors, and with the admin API disabled `/admin` does not exist.

use crate::common;
use crate::runtime_support;
use crate::serverless_support;

use std::time::Duration;

use common::{Backend, Daemon, DaemonOptions, TestDb};
use runtime_support::package_plugin;
use serde_json::{json, Value};
use serverless_support::FakeConnector;

const TENANT: &str = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
const CONNECTOR_KEY: &str = "connector-key-for-admin";
const ADMIN_KEY: &str = "admin-key-0123456789";
const UNAUTHORIZED: &str = r#"{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",\"args\":null}","data":null}"#;

async fn admin(daemon: &Daemon, route: &str, key: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = daemon
        .client
        .post(daemon.url(&format!("/admin/plugin/serverless/{route}")))
        .timeout(Duration::from_secs(150))
        .json(body);
    if let Some(key) = key {
        request = request.header("X-Admin-Api-Key", key);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("admin body"))
}

/// The `data` of each SSE line, each line checked to be a success envelope.
fn sse_data(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.split_terminator("\n\n")
        .map(|line| {
            let envelope: Value = serde_json::from_str(line.strip_prefix("data: ").expect("data: prefix")).expect("envelope");
            assert_eq!(envelope["code"], 0, "{envelope}");
            envelope["data"].clone()
        })
        .collect()
}

/// The port of the function that served a tool invocation (the SDK server's `SERVERLESS_PORT`).
async fn serving_port(daemon: &Daemon) -> String {
    let body = json!({"user_id": "u", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
                      "credential_type": "api-key", "tool_parameters": {"mode": "env"}}});
    let response = daemon
        .client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", "testing/runtime_tools")
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .expect("dispatch");
    let text = response.text().await.expect("body");
    let data = sse_data(&text);
    data[0]["message"]["json_object"]["env"]["SERVERLESS_PORT"]
        .as_str()
        .unwrap_or_else(|| panic!("no port in {text}"))
        .to_string()
}

fn port_of(url: &str) -> String {
    url.rsplit(':').next().expect("port").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstall_and_switch_endpoint_replace_the_serverless_function() {
    let connector = FakeConnector::start(CONNECTOR_KEY).await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let env: Vec<(String, String)> = vec![
        ("PLATFORM".into(), "serverless".into()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL".into(), connector.url.clone()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_API_KEY".into(), CONNECTOR_KEY.into()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_LAUNCH_TIMEOUT".into(), "90".into()),
        ("ADMIN_API_ENABLED".into(), "true".into()),
        ("ADMIN_API_KEY".into(), ADMIN_KEY.into()),
        ("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into()),
    ];
    let daemon = Daemon::start(&db, DaemonOptions { env, ..Default::default() }).await;
    connector.set_daemon_url(&daemon.base);
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let first = connector.functions();
    assert_eq!(first.len(), 1);
    assert_eq!(serving_port(&daemon).await, port_of(&first[0].url));

    // The admin key is checked before anything else.
    let body = json!({"plugin_unique_identifier": uid});
    assert_eq!(admin(&daemon, "reinstall", None, &body).await, (401, UNAUTHORIZED.to_string()));
    assert_eq!(admin(&daemon, "reinstall", Some("admin-key-wrong-value"), &body).await, (401, UNAUTHORIZED.to_string()));
    assert_eq!(admin(&daemon, "switch-endpoint", Some(&daemon.key), &body).await, (401, UNAUTHORIZED.to_string()));

    // Binding: the Go validator's wording for upstream's anonymous request structs.
    assert_eq!(
        admin(&daemon, "reinstall", Some(ADMIN_KEY), &json!({})).await,
        (400, r#"{"code":-400,"message":"{\"message\":\"Key: 'PluginUniqueIdentifier' Error:Field validation for 'PluginUniqueIdentifier' failed on the 'required' tag\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#.to_string())
    );

    // Reinstall: a new launch without a look-up, events in envelopes, the next invocation on the new function.
    let lookups_before = connector.lookups().len();
    let (status, text) = admin(&daemon, "reinstall", Some(ADMIN_KEY), &body).await;
    assert_eq!(status, 200, "{text}");
    let events = sse_data(&text);
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last, &json!({"event": "done", "data": "successfully reinstalled"}), "{text}");
    assert!(!progress.is_empty(), "{text}");
    assert!(progress.iter().all(|e| e == &json!({"event": "info", "data": "reinstalling..."})), "{text}");
    assert_eq!(connector.launches().len(), 2);
    assert_eq!(connector.lookups().len(), lookups_before, "reinstall ignores a function already running");
    let second = connector.functions();
    assert_eq!(second.len(), 2);
    assert_ne!(second[0].url, second[1].url);
    assert_eq!(serving_port(&daemon).await, port_of(&second[1].url), "the next invocation uses the new function");

    // Switch-endpoint: back to the first function.
    let switch = json!({"plugin_unique_identifier": uid, "function_name": second[0].name, "function_url": second[0].url});
    let (status, text) = admin(&daemon, "switch-endpoint", Some(ADMIN_KEY), &switch).await;
    assert_eq!((status, text.as_str()), (200, r#"{"code":0,"message":"success","data":true}"#));
    assert_eq!(serving_port(&daemon).await, port_of(&second[0].url), "invocations go to the switched-to function");
    // …and through /v2/invoke as well.
    let v2 = daemon
        .client
        .post(daemon.url("/v2/invoke/dispatch/tool/invoke"))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-Unique-Identifier", &uid)
        .timeout(Duration::from_secs(120))
        .json(&json!({"tenant_id": TENANT, "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "tool_parameters": {"mode": "env"}}}))
        .send()
        .await
        .expect("v2");
    let data = sse_data(&v2.text().await.expect("v2 body"));
    assert_eq!(data[0]["message"]["json_object"]["env"]["SERVERLESS_PORT"], json!(port_of(&second[0].url)));

    // Unknown version and missing fields.
    let unknown = json!({"plugin_unique_identifier": "testing/unknown:0.0.1@1111111111111111111111111111111111111111111111111111111111111111",
                         "function_name": "f", "function_url": "http://127.0.0.1:9"});
    assert_eq!(
        admin(&daemon, "switch-endpoint", Some(ADMIN_KEY), &unknown).await,
        (200, r#"{"code":-500,"message":"{\"message\":\"record not found\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#.to_string())
    );
    let (status, text) =
        admin(&daemon, "switch-endpoint", Some(ADMIN_KEY), &json!({"plugin_unique_identifier": "bad", "function_name": "f"})).await;
    assert_eq!(status, 400);
    let envelope: Value = serde_json::from_str(&text).expect("envelope");
    let inner: Value = serde_json::from_str(envelope["message"].as_str().expect("message")).expect("inner");
    assert_eq!(
        inner["message"],
        "Key: 'PluginUniqueIdentifier' Error:Field validation for 'PluginUniqueIdentifier' failed on the 'plugin_unique_identifier' tag\nKey: 'FunctionURL' Error:Field validation for 'FunctionURL' failed on the 'required' tag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_on_the_local_platform_and_when_disabled() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let env = vec![("ADMIN_API_ENABLED".into(), "true".into()), ("ADMIN_API_KEY".into(), ADMIN_KEY.into())];
    let daemon = Daemon::start(&db, DaemonOptions { env, ..Default::default() }).await;
    let uid = "testing/any:0.0.1@2222222222222222222222222222222222222222222222222222222222222222";
    let (status, text) = admin(&daemon, "reinstall", Some(ADMIN_KEY), &json!({"plugin_unique_identifier": uid})).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "data: {\"code\":0,\"message\":\"success\",\"data\":{\"event\":\"error\",\"data\":\"reinstall is not supported on local platform\"}}\n\n")
    );
    let switch = json!({"plugin_unique_identifier": uid, "function_name": "f", "function_url": "http://x"});
    assert_eq!(
        admin(&daemon, "switch-endpoint", Some(ADMIN_KEY), &switch).await,
        (200, r#"{"code":-500,"message":"{\"message\":\"switch serverless runtime is not supported on local platform\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#.to_string())
    );
    assert_eq!(admin(&daemon, "reinstall", Some("nope"), &json!({})).await, (401, UNAUTHORIZED.to_string()));
    drop(daemon);

    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = Daemon::start(&db, DaemonOptions::default()).await;
    assert_eq!(
        admin(&daemon, "reinstall", Some(ADMIN_KEY), &json!({"plugin_unique_identifier": uid})).await,
        (404, r#"{"code":"not_found","message":"route not found"}"#.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstalled_and_switched_functions_survive_a_restart() {
    let connector = FakeConnector::start(CONNECTOR_KEY).await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let env: Vec<(String, String)> = vec![
        ("PLATFORM".into(), "serverless".into()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_URL".into(), connector.url.clone()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_API_KEY".into(), CONNECTOR_KEY.into()),
        ("DIFY_PLUGIN_SERVERLESS_CONNECTOR_LAUNCH_TIMEOUT".into(), "90".into()),
        ("ADMIN_API_ENABLED".into(), "true".into()),
        ("ADMIN_API_KEY".into(), ADMIN_KEY.into()),
        ("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into()),
    ];
    let mut daemon = Daemon::start(&db, DaemonOptions { env, ..Default::default() }).await;
    connector.set_daemon_url(&daemon.base);
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    // Reinstall: a second function. The connector, asked for the package, would name the first.
    let (status, text) = admin(&daemon, "reinstall", Some(ADMIN_KEY), &json!({"plugin_unique_identifier": uid})).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(sse_data(&text).last(), Some(&json!({"event": "done", "data": "successfully reinstalled"})), "{text}");
    let functions = connector.functions();
    assert_eq!(functions.len(), 2);

    // After a restart on the same database the reinstalled function serves, taken from the
    // `serverless_runtimes` row without asking the connector.
    daemon.restart_after_kill().await;
    connector.set_daemon_url(&daemon.base);
    let lookups = connector.lookups().len();
    assert_eq!(serving_port(&daemon).await, port_of(&functions[1].url), "{}", daemon.log());
    assert_eq!(connector.lookups().len(), lookups, "the recorded function is used as it is");
    assert_eq!(connector.launches().len(), 2, "no new launch after the restart");

    // Switch back to the first function; it is still the one serving after another restart.
    let switch = json!({"plugin_unique_identifier": uid, "function_name": functions[0].name, "function_url": functions[0].url});
    let (status, text) = admin(&daemon, "switch-endpoint", Some(ADMIN_KEY), &switch).await;
    assert_eq!((status, text.as_str()), (200, r#"{"code":0,"message":"success","data":true}"#));
    daemon.restart_after_kill().await;
    connector.set_daemon_url(&daemon.base);
    assert_eq!(serving_port(&daemon).await, port_of(&functions[0].url), "{}", daemon.log());
    assert_eq!(connector.lookups().len(), lookups);
}
