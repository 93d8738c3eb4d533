//! The `slim` binary end to end with the SDK test plugin `runtime_tools`: remote mode through a
//! daemon's `/v2/invoke` (arguments from `-args` and from stdin, environment and `-config` file),
//! local mode (the package fetched from a marketplace, its environment built, one invocation, the
//! process stopped; a second run reuses the directory), upstream's output lines and exit codes
//! (daemon, network, input errors), and `slim extract` in both modes.

use crate::common;
use crate::runtime_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Backend, TestDb};
use runtime_support::*;
use serde_json::{json, Value};

const TENANT: &str = "3c2b1a0f-9e8d-4c7b-8a69-5f4e3d2c1b0a";

/// `target/debug/slim`, next to the daemon binary.
fn slim_binary() -> PathBuf {
    let daemon = PathBuf::from(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    let slim = daemon.with_file_name("slim");
    assert!(slim.is_file(), "{} is missing: run `cargo build --workspace --bins` first", slim.display());
    slim
}

/// Runs slim with `args`, a clean `SLIM_*` environment plus `env`, and optional stdin; bounded.
fn slim(args: &[&str], env: &[(&str, String)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(slim_binary());
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("SLIM_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start slim");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("write stdin");
    drop(input);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    receiver
        .recv_timeout(Duration::from_secs(600))
        .expect("slim finished within 10 minutes")
        .expect("slim output")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")))
        .collect()
}

fn stderr_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stderr);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stderr line; stdout: {}", String::from_utf8_lossy(&output.stdout)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {text}"))
}

fn tool_args(parameters: Value) -> String {
    json!({"tenant_id": TENANT, "user_id": "slim-user",
           "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_invokes_through_v2_and_extract_reads_the_daemon() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = common::start_daemon(&db, &[]).await;
    let (uid, task) = daemon.install_package(TENANT, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let remote = [("SLIM_DAEMON_ADDR", format!("{}/", daemon.base)), ("SLIM_DAEMON_KEY", daemon.key.clone())];

    // -args: one chunk (the daemon's envelope) and done.
    let output = tokio::task::block_in_place(|| {
        slim(&["-id", &uid, "-action", "invoke_tool", "-args", &tool_args(json!({"text": "hi"}))], &remote, None)
    });
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"event\":\"chunk\",\"data\":{\"code\":0,\"message\":\"success\",\"data\":{\"type\":\"text\",\"message\":{\"text\":\"echo: hi\"},\"meta\":null}}}\n{\"event\":\"done\",\"data\":null}\n"
    );
    // Arguments from stdin, settings from a -config file (the environment is then not read).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("slim.json");
    std::fs::write(&config, json!({"mode": "remote", "remote": {"daemon_addr": daemon.base, "daemon_key": daemon.key}}).to_string())
        .expect("config");
    let config_arg = config.display().to_string();
    let output = tokio::task::block_in_place(|| {
        slim(
            &["--id", &uid, "-action=invoke_tool", "-config", &config_arg],
            &[("SLIM_DAEMON_ADDR", "http://127.0.0.1:9".into())],
            Some(&tool_args(json!({"text": "<&>"}))),
        )
    });
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(r#""text":"echo: \u003c\u0026\u003e""#),
        "Go's HTML escaping: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    // Exit codes: daemon error (4), network error (3), input errors (2).
    let absent = "testing/absent:0.0.1@0000000000000000000000000000000000000000000000000000000000000000";
    let output =
        tokio::task::block_in_place(|| slim(&["-id", absent, "-action", "invoke_tool", "-args", &tool_args(json!({}))], &remote, None));
    assert_eq!(output.status.code(), Some(4));
    let error = stderr_json(&output);
    assert_eq!(error["code"], "DAEMON_ERROR");
    assert_eq!(
        error["message"],
        r#"status 404: {"code":-500,"message":"{\"message\":\"no available node, plugin runtime not found\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#
    );
    let output = tokio::task::block_in_place(|| {
        slim(
            &["-id", &uid, "-action", "invoke_tool", "-args", "{}"],
            &[("SLIM_DAEMON_ADDR", "http://127.0.0.1:9".into()), ("SLIM_DAEMON_KEY", "k".into())],
            None,
        )
    });
    assert_eq!((output.status.code(), &stderr_json(&output)["code"]), (Some(3), &json!("NETWORK_ERROR")));
    let output = tokio::task::block_in_place(|| slim(&["-id", &uid, "-action", "no_such_action", "-args", "{}"], &remote, None));
    assert_eq!((output.status.code(), stderr_json(&output)), (Some(2), json!({"code": "UNKNOWN_ACTION", "message": "no_such_action"})));
    let output = tokio::task::block_in_place(|| slim(&["-id", &uid, "-action", "invoke_tool", "-args", "{"], &remote, None));
    assert_eq!((output.status.code(), &stderr_json(&output)["code"]), (Some(2), &json!("INVALID_ARGS_JSON")));
    let output = tokio::task::block_in_place(|| slim(&["-id", &uid, "-action", "invoke_tool"], &remote, Some("  ")));
    assert_eq!(
        (output.status.code(), stderr_json(&output)),
        (Some(2), json!({"code": "INVALID_INPUT", "message": "no -args flag and no JSON on stdin"}))
    );
    let output = tokio::task::block_in_place(|| slim(&["-id", &uid, "-action", "invoke_tool", "-args", "{}"], &[], None));
    assert_eq!(
        (output.status.code(), stderr_json(&output)),
        (Some(2), json!({"code": "CONFIG_INVALID", "message": "remote.daemon_addr is required"}))
    );
    let output = tokio::task::block_in_place(|| slim(&["-action", "invoke_tool"], &remote, None));
    assert_eq!(output.status.code(), Some(2));

    // extract through the daemon: the cleaned schema, or the data of one action.
    let output = tokio::task::block_in_place(|| slim(&["extract", "-id", &uid], &remote, None));
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let extracted = &lines(&output)[0];
    assert_eq!(extracted["tenant_id"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(extracted["data"]["unique_identifier"], json!(uid));
    assert_eq!(
        (&extracted["data"]["manifest"]["name"], &extracted["data"]["manifest"]["author"]),
        (&json!("runtime_tools"), &json!("testing"))
    );
    let text = serde_json::to_string(extracted).expect("json");
    assert!(!text.contains("\"label\"") && !text.contains("\"description\"") && !text.contains("\"verified\""), "{text}");
    let output = tokio::task::block_in_place(|| slim(&["extract", "-id", &uid, "-action", "invoke_tool"], &remote, None));
    let args = &lines(&output)[0]["data"];
    assert_eq!(
        (&args["provider"], &args["tool"], &args["credentials"]),
        (&json!("runtime_tools"), &json!("exercise"), &json!({})),
        "{args}"
    );
    assert!(args["tool_parameters"].is_object(), "{args}");
    let output = tokio::task::block_in_place(|| slim(&["extract", "-id", absent], &remote, None));
    assert_eq!(
        (output.status.code(), stderr_json(&output)),
        (
            Some(4),
            json!({"code": "DAEMON_ERROR", "message": r#"{"message":"plugin package not found, please upload it firstly","error_type":"PluginDaemonBadRequestError","args":null}"#})
        )
    );
    let output = tokio::task::block_in_place(|| slim(&["extract", "-path", "/nowhere"], &remote, None));
    assert_eq!(
        (output.status.code(), stderr_json(&output)),
        (Some(2), json!({"code": "INVALID_INPUT", "message": "-path is not supported in remote mode"}))
    );
}

/// A marketplace serving one package at `/api/v1/plugins/download?unique_identifier=…`; counts downloads.
async fn marketplace(uid: String, package: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let downloads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = downloads.clone();
    let app = axum::Router::new().route(
        "/api/v1/plugins/download",
        axum::routing::get(move |Query(query): Query<std::collections::HashMap<String, String>>| {
            let (uid, package, counter) = (uid.clone(), package.clone(), counter.clone());
            async move {
                if query.get("unique_identifier") != Some(&uid) {
                    return (StatusCode::NOT_FOUND, "not found").into_response();
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                package.into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind marketplace");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, downloads)
}

fn local_env(folder: &Path, marketplace_url: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("SLIM_MODE", "local".to_string()),
        ("SLIM_FOLDER", folder.display().to_string()),
        ("SLIM_MARKETPLACE_URL", marketplace_url.to_string()),
        ("SLIM_PYTHON_ENV_INIT_TIMEOUT", "240".to_string()),
        ("SLIM_MAX_EXECUTION_TIMEOUT", "60".to_string()),
    ];
    if let Ok(python) = std::env::var("PYTHON_INTERPRETER_PATH") {
        env.push(("SLIM_PYTHON_PATH", python));
    }
    if let Ok(uv) = std::env::var("UV_PATH") {
        env.push(("SLIM_UV_PATH", uv));
    }
    if let Some(cache) = shared_uv_cache() {
        env.push(("UV_CACHE_DIR", cache.display().to_string()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_fetches_builds_invokes_once_and_stops() {
    let package = package_plugin("runtime_tools");
    let (identifier, _) = decode(&package);
    let uid = identifier.as_str().to_string();
    let (market, downloads) = marketplace(uid.clone(), package).await;
    let folder = tempfile::tempdir().expect("folder");
    let env = local_env(folder.path(), &market);

    let output = tokio::task::block_in_place(|| {
        slim(&["-id", &uid, "-action", "invoke_tool", "-args", &tool_args(json!({"text": "local"}))], &env, None)
    });
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let events = lines(&output);
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["message", "message", "message", "message", "chunk", "done"], "{events:#?}");
    assert_eq!(
        events[0],
        json!({"event": "message", "data": {"message": format!("downloading plugin {uid} from marketplace"), "stage": "download"}})
    );
    assert_eq!(events[1]["data"], json!({"message": "plugin downloaded and extracted", "stage": "download"}));
    assert_eq!(events[2]["data"], json!({"message": "initializing python environment", "stage": "init"}));
    assert_eq!(events[3]["data"], json!({"message": "python environment ready", "stage": "init"}));
    assert_eq!(events[4]["data"]["message"]["text"], "echo: local", "local chunks are the plugin's own items");
    assert_eq!(events[5], json!({"event": "done", "data": null}));
    assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 1);
    let working = folder.path().join(uid.replace(':', "-"));
    assert!(working.join("manifest.yaml").is_file() && working.join(".venv").is_dir(), "{}", working.display());

    // A second run reuses the directory; a plugin error is an `error` event and exit status 0.
    let output = tokio::task::block_in_place(|| {
        slim(&["-id", &uid, "-action", "invoke_tool", "-args", &tool_args(json!({"mode": "raise", "text": "boom"}))], &env, None)
    });
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let events = lines(&output);
    assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 1, "no second download");
    assert_eq!(events[0]["data"]["stage"], "init", "{events:#?}");
    let last = events.last().expect("events");
    assert_eq!((&last["event"], &last["data"]["code"]), (&json!("error"), &json!("PLUGIN_EXEC_ERROR")), "{events:#?}");
    let inner: Value = serde_json::from_str(last["data"]["message"].as_str().expect("message")).expect("inner error JSON");
    assert!(inner["message"].as_str().unwrap_or("").contains("boom"), "{inner}");

    // Storage works within the one run (the run's backwards calls are answered locally).
    let output = tokio::task::block_in_place(|| {
        slim(&["-id", &uid, "-action", "invoke_tool", "-args", &tool_args(json!({"mode": "storage", "key": "k", "text": "v"}))], &env, None)
    });
    let events = lines(&output);
    let chunk = events.iter().find(|e| e["event"] == "chunk").unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(chunk["data"]["message"]["json_object"]["read_back"], "v");

    // No plugin process outlives the invocation.
    let leftover = Command::new("pgrep").args(["-f", &working.display().to_string()]).output().expect("pgrep");
    assert!(
        String::from_utf8_lossy(&leftover.stdout).trim().is_empty(),
        "plugin processes left: {}",
        String::from_utf8_lossy(&leftover.stdout)
    );

    // Errors: a plugin the marketplace does not have (1), an unknown action after the build (2).
    let absent = "testing/absent:0.0.1@0000000000000000000000000000000000000000000000000000000000000000";
    let output = tokio::task::block_in_place(|| slim(&["-id", absent, "-action", "invoke_tool", "-args", "{}"], &env, None));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_json(&output),
        json!({"code": "PLUGIN_NOT_FOUND", "message": format!("plugin {absent} not found in marketplace ({market})")})
    );
    let output = tokio::task::block_in_place(|| slim(&["-id", &uid, "-action", "nope", "-args", "{}"], &env, None));
    assert_eq!((output.status.code(), &stderr_json(&output)["code"]), (Some(2), &json!("UNKNOWN_ACTION")));

    // extract: from the plugin folder by -id, and from a directory by -path.
    let output = tokio::task::block_in_place(|| slim(&["extract", "-id", &uid], &env, None));
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let extracted = &lines(&output)[0];
    assert_eq!((&extracted["data"]["unique_identifier"], &extracted["data"]["manifest"]["name"]), (&json!(uid), &json!("runtime_tools")));
    let plugin_path = plugin_dir("runtime_tools").display().to_string();
    let output = tokio::task::block_in_place(|| {
        slim(&["extract", "-path", &plugin_path, "-action", "invoke_tool"], &[("SLIM_MODE", "local".into())], None)
    });
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(lines(&output)[0]["data"]["tool"], "exercise");
    let output = tokio::task::block_in_place(|| slim(&["extract", "-path", "/nowhere/at/all"], &[("SLIM_MODE", "local".into())], None));
    assert_eq!(
        (output.status.code(), stderr_json(&output)),
        (Some(1), json!({"code": "PLUGIN_NOT_FOUND", "message": "plugin path not found: /nowhere/at/all"}))
    );
}
