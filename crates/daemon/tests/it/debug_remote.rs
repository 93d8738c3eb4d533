//! Remote debugging against the real daemon binary: an SDK plugin dials the debug TCP server with a
//! key from `POST /plugin/{tenant}/debugging/key`, appears as installed for that tenant only, is
//! invoked through the dispatch routes, and disappears (with its open stream failing with
//! `ConnectionClosedError`) when it is killed. Raw TCP clients check the registration rules and
//! upstream's rejection texts, the heartbeat timeout, several plugins at once and shutdown.

use crate::common;
use crate::debug_support;

use std::time::Duration;

use common::{Backend, TestDb};
use debug_support::*;
use serde_json::{json, Value};

const SDK_PLUGIN: &str = "runtime_tools";

async fn sqlite() -> TestDb {
    TestDb::create(Backend::Sqlite).await.expect("sqlite needs no server")
}

/// The tenant's installations whose runtime is `remote`.
async fn remote_installations(daemon: &common::Daemon, tenant: &str) -> Vec<Value> {
    daemon.list(tenant).await.into_iter().filter(|p| p["runtime_type"] == "remote").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_plugin_is_invoked_over_tcp_and_removed_when_killed() {
    let db = sqlite().await;
    let (daemon, address) = start_daemon(&db, &[]).await;
    let tenant = new_tenant();
    let other_tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    assert_eq!(debugging_key(&daemon, &tenant).await, key, "a live key is reused");
    assert_ne!(debugging_key(&daemon, &other_tenant).await, key, "keys are per tenant");

    let mut plugin = RemotePluginProcess::start(SDK_PLUGIN, &address, &key, &daemon.workdir);
    let appeared = eventually(Duration::from_secs(180), || async { !remote_installations(&daemon, &tenant).await.is_empty() }).await;
    assert!(appeared, "the debugging plugin never appeared; plugin log:\n{}\ndaemon log:\n{}", plugin.log_text(), daemon.log());

    // Listed for its tenant with the tenant id as author, source `remote`.
    let installed = remote_installations(&daemon, &tenant).await;
    assert_eq!(installed.len(), 1, "{installed:?}");
    let entry = &installed[0];
    let plugin_id = format!("{tenant}/{SDK_PLUGIN}");
    assert_eq!(entry["plugin_id"], plugin_id.as_str(), "{entry}");
    assert_eq!(entry["source"], "remote", "{entry}");
    assert_eq!(entry["name"], SDK_PLUGIN, "{entry}");
    assert_eq!(entry["version"], "0.0.1", "{entry}");
    let uid = entry["plugin_unique_identifier"].as_str().expect("identifier").to_string();
    assert!(uid.starts_with(&format!("{plugin_id}:0.0.1@")), "{uid}");
    let checksum = entry["checksum"].as_str().expect("checksum");
    assert_eq!(checksum.len(), 64, "{entry}");
    assert!(uid.ends_with(checksum));
    assert_eq!(entry["declaration"]["tool"]["identity"]["name"], SDK_PLUGIN, "{entry}");
    // The icon was transferred as an asset and remapped to its content id, which is served.
    let icon = entry["declaration"]["icon"].as_str().expect("icon").to_string();
    assert!(icon.ends_with(".svg") && icon.len() == 64 + 4, "icon not remapped: {icon}");
    let asset = daemon
        .client
        .get(daemon.url(&format!("/plugin/{tenant}/asset/{icon}")))
        .header("X-Api-Key", &daemon.key)
        .send()
        .await
        .expect("asset");
    assert_eq!(asset.status(), 200);
    let svg = asset.bytes().await.expect("asset bytes");
    assert_eq!(&svg[..], &std::fs::read(plugin_source(SDK_PLUGIN).join("_assets/icon.svg")).expect("icon")[..]);
    // The tool provider row and the manifest lookup use the same identifier.
    let (_, tools) = daemon.get(&format!("/plugin/{tenant}/management/tools?page=1&page_size=10")).await;
    let tools = tools["data"].as_array().cloned().unwrap_or_default();
    assert!(tools.iter().any(|t| t["plugin_id"] == plugin_id.as_str() && t["provider"] == SDK_PLUGIN), "{tools:?}");
    let (_, manifest) = daemon.get(&format!("/plugin/{tenant}/management/fetch/manifest?plugin_unique_identifier={uid}")).await;
    assert_eq!(manifest["data"]["name"], SDK_PLUGIN, "{manifest}");

    // Invoked like a local plugin: SSE with one envelope per message.
    let response = invoke_tool(&daemon, &tenant, &plugin_id, SDK_PLUGIN, "exercise", json!({"mode": "stream", "count": 3})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(response);
    for i in 0..3 {
        let event = events.next(Duration::from_secs(30)).await.expect("stream chunk");
        assert_eq!(
            event,
            json!({"code": 0, "message": "success", "data": {"type": "text", "message": {"text": format!("chunk {i}")}, "meta": null}})
        );
    }
    assert_eq!(events.next(Duration::from_secs(30)).await, None, "the stream ends after the plugin's end");

    // Backwards invocations (plugin storage) work over the socket too.
    let response =
        invoke_tool(&daemon, &tenant, &plugin_id, SDK_PLUGIN, "exercise", json!({"mode": "storage", "text": "over tcp", "key": "k1"}))
            .await;
    let mut events = SseReader::new(response);
    let event = events.next(Duration::from_secs(60)).await.expect("storage result");
    assert_eq!(event["code"], 0, "{event}");
    assert_eq!(
        event["data"]["message"]["json_object"],
        json!({"exists_before": false, "read_back": "over tcp", "exists_after": true, "exists_deleted": false})
    );

    // Another tenant neither sees nor reaches it.
    assert!(daemon.list(&other_tenant).await.is_empty());
    let foreign = invoke_tool(&daemon, &other_tenant, &plugin_id, SDK_PLUGIN, "exercise", json!({"mode": "echo"})).await;
    let foreign = common::read_json(foreign).await;
    common::assert_error(&foreign, 404, -404, "PluginNotFoundError", None);

    // Killed mid-stream: the open stream ends with the connection-closed error.
    let response = invoke_tool(&daemon, &tenant, &plugin_id, SDK_PLUGIN, "exercise", json!({"mode": "sleep", "count": 60})).await;
    let mut events = SseReader::new(response);
    let first = events.next(Duration::from_secs(30)).await.expect("first chunk");
    assert_eq!(first["data"]["message"]["text"], "sleeping", "{first}");
    plugin.kill();
    let failure = events.next(Duration::from_secs(30)).await.expect("an error event after the plugin died");
    let (error_type, message) = envelope_error(&failure);
    assert_eq!(error_type, "PluginInvokeError", "{failure}");
    let inner: Value = serde_json::from_str(&message).expect("plugin error JSON");
    assert_eq!(inner, json!({"args": {}, "error_type": "ConnectionClosedError", "message": "Connection closed unexpectedly"}));
    assert_eq!(events.next(Duration::from_secs(10)).await, None, "nothing after the error");

    // And it is no longer installed: list, provider rows and dispatch all forget it.
    let gone = eventually(Duration::from_secs(30), || async { remote_installations(&daemon, &tenant).await.is_empty() }).await;
    assert!(gone, "the debugging plugin stayed installed after it died; log:\n{}", daemon.log());
    let (_, tools) = daemon.get(&format!("/plugin/{tenant}/management/tools?page=1&page_size=10")).await;
    assert_eq!(tools["data"], json!([]), "{tools}");
    let after = common::read_json(invoke_tool(&daemon, &tenant, &plugin_id, SDK_PLUGIN, "exercise", json!({"mode": "echo"})).await).await;
    common::assert_error(&after, 404, -404, "PluginNotFoundError", None);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_rejections_use_upstream_texts() {
    let db = sqlite().await;
    // The handshake deadline must outlast a loaded machine's gap between connecting and writing.
    let (daemon, address) = start_daemon(&db, &[("PLUGIN_REMOTE_INSTALLING_HANDSHAKE_TIMEOUT", "5")]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    let within = Duration::from_secs(15);

    // A key nobody issued.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send_raw(format!("{{\"type\":\"handshake\",\"data\":{{\"key\":\"{}\"}}}}\n", uuid::Uuid::new_v4()).as_bytes())
        .await;
    assert_eq!(raw.read_to_end(within).await, "handshake failed, invalid key\n");

    // Not JSON.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send_raw(b"hello daemon\n").await;
    assert_eq!(raw.read_to_end(within).await, "handshake failed, invalid handshake message\n");

    // A long first line: nothing but a short key line is buffered before a valid key.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send_raw(format!("{{\"type\":\"handshake\",\"data\":{{\"key\":\"{}\"}}}}\n", "k".repeat(100_000)).as_bytes())
        .await;
    assert_eq!(raw.read_to_end(within).await, "handshake failed, registration message too large\n");

    // A declaration before the key.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send(&json!({"type": "manifest_declaration", "data": manifest_json("raw", "early")})).await;
    assert_eq!(raw.read_to_end(within).await, "handshake failed, registration message before handshake\n");

    // A second handshake.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    raw.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    assert_eq!(raw.read_to_end(within).await, "handshake already completed\n");

    // `end` without any provider declaration.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    raw.send(&json!({"type": "manifest_declaration", "data": manifest_json("raw", "empty")})).await;
    raw.send(&json!({"type": "end", "data": {}})).await;
    assert_eq!(raw.read_to_end(within).await, "no registration transferred, cannot initialize\n");

    // A tool declaration that is not a list of providers.
    let mut raw = RawPlugin::connect(&address).await;
    raw.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    raw.send(&json!({"type": "tool_declaration", "data": {"identity": 1}})).await;
    let text = raw.read_to_end(within).await;
    assert!(text.starts_with("tools register failed, invalid tools declaration: ") && text.ends_with('\n'), "{text:?}");

    // Assets over 50 MiB (counted on the base64 text, before decoding).
    let mut raw = RawPlugin::connect(&address).await;
    raw.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    let huge = "A".repeat(50 * 1024 * 1024 + 4);
    raw.send(&json!({"type": "asset_chunk", "data": {"filename": "big.bin", "data": huge, "end": true}})).await;
    assert_eq!(raw.read_to_end(Duration::from_secs(60)).await, "assets too large, at most 50MB\n");

    // Silence: closed without a word once the handshake deadline (5 s here) passes.
    let mut raw = RawPlugin::connect(&address).await;
    let started = std::time::Instant::now();
    assert_eq!(raw.read_to_end(within).await, "");
    assert!(started.elapsed() >= Duration::from_millis(4900), "closed too early: {:?}", started.elapsed());

    // None of these left an installation behind.
    assert!(daemon.list(&tenant).await.is_empty());
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_plugins_are_dispatched_and_dropped_without_heartbeats() {
    let db = sqlite().await;
    // Long enough that alpha (silent between its last heartbeat and the request) is not dropped early.
    let (daemon, address) = start_daemon(&db, &[("PLUGIN_REMOTE_INSTALLING_HEARTBEAT_TIMEOUT", "15")]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;

    // Two debugging plugins of one tenant at once.
    let mut alpha = RawPlugin::connect(&address).await;
    alpha.register(&key, "alpha").await;
    let mut beta = RawPlugin::connect(&address).await;
    beta.register(&key, "beta").await;
    // Registration lines repeated after `end` (the SDK's reconnect race) are ignored.
    beta.send(&json!({"type": "end", "data": {}})).await;
    alpha.heartbeat().await;
    // Beta keeps sending heartbeats until told to stop; alpha stops after the invocation below.
    let (stop_beta, mut beta_stopped) = tokio::sync::oneshot::channel::<()>();
    let beta_alive = tokio::spawn(async move {
        loop {
            beta.heartbeat().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = &mut beta_stopped => return beta,
            }
        }
    });
    let both = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.len() == 2 }).await;
    assert!(both, "both plugins should be installed: {:?}\n{}", daemon.list(&tenant).await, daemon.log());

    // A request reaches the raw plugin as the in-stream line of the protocol; its answer streams back.
    let alpha_id = format!("{tenant}/alpha");
    alpha.heartbeat().await;
    let response = tokio::spawn({
        let client = daemon.client.clone();
        let url = daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke"));
        let key = daemon.key.clone();
        let alpha_id = alpha_id.clone();
        async move {
            client
                .post(url)
                .header("X-Api-Key", key)
                .header("X-Plugin-ID", alpha_id)
                .json(&json!({"user_id": "u", "data": {"provider": "alpha", "tool": "say", "tool_parameters": {"x": 1}}}))
                .send()
                .await
                .expect("dispatch")
        }
    });
    let request_line = alpha.read_line(Duration::from_secs(20)).await.expect("a request line");
    let request: Value = serde_json::from_str(&request_line).expect("request JSON");
    assert_eq!(request["event"], "request", "{request}");
    assert_eq!(request["data"]["type"], "tool");
    assert_eq!(request["data"]["action"], "invoke_tool");
    assert_eq!(request["data"]["tool"], "say");
    assert_eq!(request["data"]["tool_parameters"], json!({"x": 1}));
    let session_id = request["session_id"].as_str().expect("session id").to_string();
    let stream = json!({"event": "session", "session_id": session_id, "data": {"type": "stream", "data": {"type": "text", "message": {"text": "hi from alpha"}, "meta": null}}});
    alpha.send(&stream).await;
    alpha.send(&json!({"event": "session", "session_id": session_id, "data": {"type": "end", "data": {}}})).await;
    let response = tokio::time::timeout(Duration::from_secs(20), response).await.expect("response in time").expect("task");
    let mut events = SseReader::new(response);
    let event = events.next(Duration::from_secs(20)).await.expect("chunk");
    assert_eq!(event["data"]["message"]["text"], "hi from alpha", "{event}");
    assert_eq!(events.next(Duration::from_secs(20)).await, None);

    // Only beta keeps sending heartbeats: alpha is disconnected after the timeout and uninstalled.
    let closed = alpha.read_to_end(Duration::from_secs(60)).await;
    assert_eq!(closed, "", "no text on a heartbeat timeout");
    let only_beta = eventually(Duration::from_secs(10), || async {
        let ids: Vec<String> = remote_installations(&daemon, &tenant)
            .await
            .iter()
            .map(|p| p["plugin_id"].as_str().unwrap_or("").to_string())
            .collect();
        ids == vec![format!("{tenant}/beta")]
    })
    .await;
    assert!(only_beta, "{:?}", daemon.list(&tenant).await);
    let _ = stop_beta.send(());
    let mut beta = beta_alive.await.expect("heartbeat task");

    // A graceful shutdown closes the listener and every plugin connection, and removes their rows.
    let mut daemon = daemon;
    let status = daemon.terminate(Duration::from_secs(30)).expect("daemon exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert_eq!(beta.read_to_end(Duration::from_secs(10)).await, "");
    assert!(tokio::net::TcpStream::connect(&address).await.is_err(), "the debug listener must be closed");
    let remaining = remote_rows(&db, &daemon.workdir).await;
    assert_eq!(remaining, 0, "debugging installations left after shutdown");
    drop(daemon);
    db.drop_now().await;
}

/// Installation rows of runtime type `remote`, read directly from the daemon's database.
async fn remote_rows(db: &TestDb, workdir: &std::path::Path) -> i64 {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&db.url(workdir)).await.expect("connect");
    let row = sqlx::query("SELECT COUNT(*) AS n FROM plugin_installations WHERE runtime_type = 'remote'")
        .fetch_one(&pool)
        .await
        .expect("count");
    let count: i64 = row.get(0);
    pool.close().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_reconnect_is_accepted_after_the_daemon_drops_the_plugin() {
    let db = sqlite().await;
    let (daemon, address) = start_daemon(&db, &[]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    let plugin = RemotePluginProcess::start_host_port(SDK_PLUGIN, &address, &key, &daemon.workdir);
    let appeared = eventually(Duration::from_secs(180), || async { !remote_installations(&daemon, &tenant).await.is_empty() }).await;
    assert!(appeared, "plugin log:\n{}\ndaemon log:\n{}", plugin.log_text(), daemon.log());
    let first = remote_installations(&daemon, &tenant).await.remove(0);

    // Uninstalling it through the management API disconnects it ...
    let (status, body) = daemon
        .post(&format!("/plugin/{tenant}/management/uninstall"), &json!({"plugin_installation_id": first["id"]}))
        .await;
    assert_eq!((status, &body["data"]), (200, &json!(true)), "{body}");
    assert!(remote_installations(&daemon, &tenant).await.is_empty());

    // ... and the SDK reconnects on its own (after 5 s) with the whole registration again.
    let back = eventually(Duration::from_secs(120), || async { !remote_installations(&daemon, &tenant).await.is_empty() }).await;
    assert!(back, "the SDK's reconnect was not accepted; plugin log:\n{}\ndaemon log:\n{}", plugin.log_text(), daemon.log());
    let second = remote_installations(&daemon, &tenant).await.remove(0);
    assert_eq!(second["plugin_unique_identifier"], first["plugin_unique_identifier"], "same code, same identifier");
    assert_ne!(second["id"], first["id"], "a new installation row");
    let plugin_id = format!("{tenant}/{SDK_PLUGIN}");
    let mut events = SseReader::new(invoke_tool(&daemon, &tenant, &plugin_id, SDK_PLUGIN, "exercise", json!({"text": "again"})).await);
    let event = events.next(Duration::from_secs(30)).await.expect("echo");
    assert_eq!(event["data"]["message"]["text"], "echo: again", "{event}");
    drop(plugin);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_line_cap_and_manifest_checks() {
    let db = sqlite().await;
    let (daemon, address) =
        start_daemon(&db, &[("PLUGIN_REMOTE_INSTALLING_MAX_CONN", "1"), ("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "65536")]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    let within = Duration::from_secs(15);

    let mut first = RawPlugin::connect(&address).await;
    first.register(&key, "first").await;
    first.heartbeat().await;
    let listed = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.len() == 1 }).await;
    assert!(listed, "{}", daemon.log());
    let mut second = RawPlugin::connect(&address).await;
    second.register(&key, "second").await;
    assert_eq!(second.read_to_end(within).await, "server is busy now, please try again later\n");

    // A registration line over the line cap.
    let mut long = RawPlugin::connect(&address).await;
    long.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    long.send(&json!({"type": "manifest_declaration", "data": {"padding": "x".repeat(100_000)}})).await;
    assert_eq!(long.read_to_end(within).await, "handshake failed, registration message too large\n");

    // A manifest the daemon's validation rejects once the registration is complete.
    let mut invalid = RawPlugin::connect(&address).await;
    invalid.send(&json!({"type": "handshake", "data": {"key": key}})).await;
    invalid.send(&json!({"type": "manifest_declaration", "data": manifest_json("Not Valid", "bad")})).await;
    invalid.send(&json!({"type": "tool_declaration", "data": [tool_provider_json("raw", "bad")]})).await;
    invalid.send(&json!({"type": "end", "data": {}})).await;
    let text = invalid.read_to_end(within).await;
    assert!(text.starts_with("register failed, invalid manifest detected: author: ") && text.ends_with('\n'), "{text:?}");

    // Only the first plugin is installed.
    let ids: Vec<Value> = remote_installations(&daemon, &tenant).await.iter().map(|p| p["plugin_id"].clone()).collect();
    assert_eq!(ids, vec![json!(format!("{tenant}/first"))]);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_remote_installing_runs_no_server() {
    let db = sqlite().await;
    let daemon = common::Daemon::start(
        &db,
        common::DaemonOptions {
            env: vec![("PLUGIN_REMOTE_INSTALLING_ENABLED".into(), "false".into()), ("PLUGIN_REMOTE_INSTALLING_PORT".into(), "0".into())],
            ..Default::default()
        },
    )
    .await;
    let health: Value = daemon.client.get(daemon.url("/health/check")).send().await.expect("health").json().await.expect("json");
    assert_eq!(health["remote_debugging_address"], Value::Null, "{health}");
    let (status, _) = daemon.post_empty(&format!("/plugin/{}/debugging/key", new_tenant())).await;
    assert_eq!(status, 404);
    drop(daemon);
    db.drop_now().await;
}

/// Registration and clean-up rows on every database engine.
async fn raw_plugin_rows_follow_the_connection(db: &TestDb) {
    let (daemon, address) = start_daemon(db, &[]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    let mut raw = RawPlugin::connect(&address).await;
    raw.register(&key, "rows").await;
    raw.heartbeat().await;
    let listed = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.len() == 1 }).await;
    assert!(listed, "{}", daemon.log());
    assert_eq!(remote_rows(db, &daemon.workdir).await, 1);
    // Every lookup sees it under the tenant-author identifier.
    let plugin_id = format!("{tenant}/rows");
    let (_, tool) = daemon.get(&format!("/plugin/{tenant}/management/tool?plugin_id={plugin_id}&provider=rows")).await;
    assert_eq!(tool["data"]["declaration"]["identity"]["name"], "rows", "{tool}");
    let (_, ids) = daemon.get(&format!("/plugin/{tenant}/management/installation/ids?category=tool")).await;
    assert_eq!(ids["data"], json!({"plugin_ids": [plugin_id]}), "{ids}");
    let (_, batch) = daemon
        .post(&format!("/plugin/{tenant}/management/installation/fetch/batch"), &json!({"plugin_ids": [plugin_id]}))
        .await;
    assert_eq!(batch["data"][0]["runtime_type"], "remote", "{batch}");
    assert_eq!(batch["data"][0]["source"], "remote", "{batch}");
    let (_, by_category) = daemon.get(&format!("/plugin/{tenant}/management/tool/list?page=1&page_size=10")).await;
    assert_eq!(by_category["data"]["list"][0]["plugin_id"], plugin_id.as_str(), "{by_category}");
    let uid = by_category["data"]["list"][0]["plugin_unique_identifier"].as_str().unwrap_or_default().to_string();
    let (_, missing) = daemon
        .post(&format!("/plugin/{tenant}/management/installation/missing"), &json!({"plugin_unique_identifiers": [uid]}))
        .await;
    assert_eq!(missing["data"], json!([]), "{missing}");
    drop(raw);
    let gone = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.is_empty() }).await;
    assert!(gone, "{}", daemon.log());
    assert_eq!(remote_rows(db, &daemon.workdir).await, 0);
    drop(daemon);
}

on_every_backend!(rows_on_every_backend, raw_plugin_rows_follow_the_connection);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debugging_keys_expire_unless_renewed() {
    let db = sqlite().await;
    // TTL 10 s: renewed at 4 s (new expiry 14 s), used at 11 s (past the first expiry), rejected 12 s
    // after the renewal; every check has seconds of margin on a loaded machine.
    let (daemon, address) = start_daemon(&db, &[("DEBUGGING_KEY_TTL", "10")]).await;
    let tenant = new_tenant();
    // Accepted = the daemon got past the key and judged the (empty) registration.
    let accepted = |key: String| {
        let address = address.clone();
        async move {
            let mut raw = RawPlugin::connect(&address).await;
            raw.send(&json!({"type": "handshake", "data": {"key": key}})).await;
            raw.send(&json!({"type": "end", "data": {}})).await;
            match raw.read_to_end(Duration::from_secs(15)).await.as_str() {
                "no registration transferred, cannot initialize\n" => true,
                "handshake failed, invalid key\n" => false,
                other => panic!("unexpected reply {other:?}"),
            }
        }
    };
    let key = debugging_key(&daemon, &tenant).await;
    let issued = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(debugging_key(&daemon, &tenant).await, key, "renewed, not replaced");
    let renewed = std::time::Instant::now();
    tokio::time::sleep_until((issued + Duration::from_secs(11)).into()).await;
    assert!(accepted(key.clone()).await, "a renewed key outlives its first expiry");
    tokio::time::sleep_until((renewed + Duration::from_secs(12)).into()).await;
    assert!(!accepted(key.clone()).await, "an expired key is rejected");
    let fresh = debugging_key(&daemon, &tenant).await;
    assert_ne!(fresh, key, "an expired key is replaced");
    assert!(accepted(fresh).await);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_removes_its_dead_debugging_installations_on_start() {
    let db = sqlite().await;
    let (mut daemon, address) = start_daemon(&db, &[]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    let mut raw = RawPlugin::connect(&address).await;
    raw.register(&key, "orphan").await;
    let listed = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.len() == 1 }).await;
    assert!(listed, "{}", daemon.log());

    // SIGKILL: no clean-up runs, the row outlives the connection ...
    daemon.kill();
    assert_eq!(raw.read_to_end(Duration::from_secs(10)).await, "");
    assert_eq!(remote_rows(&db, &daemon.workdir).await, 1);
    // ... until the same node starts again.
    daemon.restart_after_kill().await;
    assert!(remote_installations(&daemon, &tenant).await.is_empty(), "{:?}", daemon.list(&tenant).await);
    assert_eq!(remote_rows(&db, &daemon.workdir).await, 0);
    drop(daemon);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_the_same_build_takes_over_when_the_newest_leaves() {
    let db = sqlite().await;
    let (daemon, address) = start_daemon(&db, &[]).await;
    let tenant = new_tenant();
    let key = debugging_key(&daemon, &tenant).await;
    let mut older = RawPlugin::connect(&address).await;
    older.register(&key, "twin").await;
    let listed = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.len() == 1 }).await;
    assert!(listed, "{}", daemon.log());
    let first_uid = remote_installations(&daemon, &tenant).await[0]["plugin_unique_identifier"].clone();
    let mut newer = RawPlugin::connect(&address).await;
    newer.register(&key, "twin").await;
    newer.heartbeat().await;
    // Same build, same identifier: still one installation; once the daemon has taken the newer
    // registration, requests go to the newest connection.
    let plugin_id = format!("{tenant}/twin");
    let event = request_reaching(&daemon, &tenant, &plugin_id, &mut newer, Some(&mut older)).await;
    assert_eq!(event["data"]["message"]["text"], "answered", "{event}");
    let installed = remote_installations(&daemon, &tenant).await;
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert_eq!(installed[0]["plugin_unique_identifier"], first_uid);

    // The newest leaves: the older connection takes over and the plugin stays installed (a request
    // sent before the daemon noticed the closed socket fails; those are retried).
    drop(newer);
    let event = request_reaching(&daemon, &tenant, &plugin_id, &mut older, None).await;
    assert_eq!(event["data"]["message"]["text"], "answered", "{event}");
    assert_eq!(remote_installations(&daemon, &tenant).await.len(), 1);

    // The last one leaves: uninstalled.
    drop(older);
    let gone = eventually(Duration::from_secs(20), || async { remote_installations(&daemon, &tenant).await.is_empty() }).await;
    assert!(gone, "{}", daemon.log());
    drop(daemon);
    db.drop_now().await;
}

/// Sends tool requests through the daemon until one reaches `target` (requests reaching `other`
/// are answered there and retried, as are requests that fail before reaching either), answers it and
/// returns the caller's first event. Each request is watched on both connections at once, so a slow
/// daemon cannot leave a request line unread for the next round.
async fn request_reaching(
    daemon: &common::Daemon,
    tenant: &str,
    plugin_id: &str,
    target: &mut RawPlugin,
    mut other: Option<&mut RawPlugin>,
) -> Value {
    use tokio::io::AsyncBufReadExt;

    enum Reached {
        Target(std::io::Result<usize>),
        Other(std::io::Result<usize>),
        Neither(Result<Option<Value>, tokio::task::JoinError>),
    }
    let provider = plugin_id.rsplit('/').next().unwrap_or_default().to_string();
    // Kept across rounds: a partly read line is finished by the next read (read_line appends).
    let mut target_line = String::new();
    let mut other_line = String::new();
    for _ in 0..20 {
        let mut probe = tokio::spawn({
            let client = daemon.client.clone();
            let url = daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke"));
            let (api_key, plugin_id, provider) = (daemon.key.clone(), plugin_id.to_string(), provider.clone());
            async move {
                let response = client
                    .post(url)
                    .header("X-Api-Key", api_key)
                    .header("X-Plugin-ID", plugin_id)
                    .json(&json!({"user_id": "u", "data": {"provider": provider, "tool": "say", "tool_parameters": {}}}))
                    .send()
                    .await
                    .expect("dispatch");
                SseReader::new(response).next(Duration::from_secs(60)).await
            }
        });
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            let other_read = async {
                match other.as_deref_mut() {
                    Some(other) => other.reader.read_line(&mut other_line).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = target.reader.read_line(&mut target_line) => Reached::Target(read),
                read = other_read => Reached::Other(read),
                finished = &mut probe => Reached::Neither(finished),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("a request neither reached a connection nor failed within 60 s; log:\n{}", daemon.log()));
        match reached {
            Reached::Target(Ok(0) | Err(_)) => panic!("the target connection was closed"),
            Reached::Other(Ok(0) | Err(_)) => panic!("the other connection was closed"),
            Reached::Target(Ok(_)) => {
                let line = std::mem::take(&mut target_line);
                answer_request(target, line.trim_end_matches('\n'), "answered").await;
                let event = tokio::time::timeout(Duration::from_secs(60), probe).await.expect("probe in time").expect("probe task");
                return event.expect("an event");
            }
            Reached::Other(Ok(_)) => {
                let line = std::mem::take(&mut other_line);
                if let Some(other) = other.as_deref_mut() {
                    answer_request(other, line.trim_end_matches('\n'), "elsewhere").await;
                }
                let answered = tokio::time::timeout(Duration::from_secs(60), probe).await.expect("probe in time").expect("probe task");
                assert!(answered.is_some(), "the request answered elsewhere got no event");
            }
            // Sent before the daemon noticed a closed socket: failed without reaching either; retried.
            Reached::Neither(finished) => {
                finished.expect("probe task");
            }
        }
    }
    panic!("no request reached the target connection; log:\n{}", daemon.log());
}

/// Answers the request `line` with one text message and the end of the session.
async fn answer_request(plugin: &mut RawPlugin, line: &str, text: &str) {
    let request: Value = serde_json::from_str(line).expect("request JSON");
    let session_id = request["session_id"].as_str().expect("session id").to_string();
    plugin
        .send(&json!({"event": "session", "session_id": session_id, "data": {"type": "stream", "data": {"type": "text", "message": {"text": text}, "meta": null}}}))
        .await;
    plugin.send(&json!({"event": "session", "session_id": session_id, "data": {"type": "end", "data": {}}})).await;
}
