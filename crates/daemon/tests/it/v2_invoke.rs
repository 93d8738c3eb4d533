//! `/v2/invoke` against the daemon binary: every dispatch route it serves reaches a plugin keyed by
//! its unique identifier (the protocol echo plugin shows the exact request line), real SDK plugins
//! answer the tool, dynamic select, OAuth, datasource, trigger, agent and model routes
//! (docs/v2-invoke.md lists the routes no SDK plugin answers and why), backwards calls and storage
//! belong to the body's tenant, the error envelopes of the header checks and of an absent plugin are
//! byte-exact, and `extract` answers `{unique_identifier, manifest, verification}`.

use crate::common;
use crate::runtime_support;

use std::time::Duration;

use common::{Backend, Daemon, TestDb};
use dify_protocol::access::{ModelTypeRule, ResponseMode, DISPATCH_ROUTES};
use runtime_support::*;
use serde_json::{json, Map, Value};

const INSTALLER: &str = "0d3c2b1a-0000-4000-8000-00000000a001";
const OTHER_TENANT: &str = "0d3c2b1a-0000-4000-8000-00000000b002";
const INNER_KEY: &str = "inner-key-for-v2";
const ABSENT: &str = "testing/absent:0.0.1@0000000000000000000000000000000000000000000000000000000000000000";

/// The daemon with the shared launcher's environment, plus Dify's inner API when given.
async fn start_runtime_daemon(db: &TestDb, inner_api_url: Option<&str>) -> Daemon {
    match inner_api_url {
        Some(url) => common::start_daemon(db, &[("DIFY_INNER_API_URL", url), ("DIFY_INNER_API_KEY", INNER_KEY)]).await,
        None => common::start_daemon(db, &[]).await,
    }
}

/// A plausible value for a required field.
fn sample(field: &str) -> Value {
    match field {
        "texts" | "docs" | "documents" | "prompt_messages" => json!(["x"]),
        "credentials" | "subscription" | "page" | "datasource_parameters" | "plugin_state" | "parameters" => json!({"k": "v"}),
        "request" => json!({"prefix": "", "max_keys": 10}),
        "input_type" => json!("document"),
        _ => json!(format!("{field}-value")),
    }
}

/// POSTs `/v2/invoke/dispatch{route}`; returns status, content type and raw body.
async fn v2(daemon: &Daemon, route: &str, key: Option<&str>, identifier: Option<&str>, body: &Value) -> (u16, String, String) {
    let mut request = daemon
        .client
        .post(daemon.url(&format!("/v2/invoke/dispatch{route}")))
        .timeout(Duration::from_secs(120))
        .json(body);
    if let Some(key) = key {
        request = request.header("X-Api-Key", key);
    }
    if let Some(identifier) = identifier {
        request = request.header("X-Plugin-Unique-Identifier", identifier);
    }
    let response = request.send().await.expect("v2 request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, content_type, response.text().await.expect("v2 body"))
}

fn sse_data(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.split_terminator("\n\n")
        .map(|line| {
            let envelope: Value = serde_json::from_str(line.strip_prefix("data: ").expect("data: prefix")).expect("envelope");
            assert_eq!((&envelope["code"], &envelope["message"]), (&json!(0), &json!("success")), "{envelope}");
            envelope["data"].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v2_route_reaches_the_plugin_named_by_its_identifier() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_runtime_daemon(&db, None).await;
    let (uid, task) = daemon.install_package(INSTALLER, &package_plugin("protocol_echo")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let mut served = 0;
    for route in DISPATCH_ROUTES {
        let mut data = Map::new();
        for field in route.required {
            data.insert(field.to_string(), sample(field));
        }
        match route.model_type {
            ModelTypeRule::Exactly(value) => {
                data.insert("model_type".into(), json!(value));
            }
            ModelTypeRule::Valid | ModelTypeRule::NonEmpty => {
                data.insert("model_type".into(), json!("llm"));
            }
            ModelTypeRule::None => {}
        }
        data.insert("extra_field".into(), json!({"nested": [1, 2]}));
        // The tenant in the body need not have installed the plugin.
        let body = json!({"tenant_id": OTHER_TENANT, "user_id": "user-9", "conversation_id": "conv-2", "app_id": "app-2",
                          "message_id": null, "data": data.clone()});
        let (status, content_type, text) = v2(&daemon, route.path, Some(&daemon.key), Some(&uid), &body).await;
        if matches!(route.action, "start_polling" | "check_polling") {
            // Upstream registers the polling routes for tenant dispatch only.
            assert_eq!((status, text.as_str()), (404, r#"{"code":"not_found","message":"route not found"}"#), "{}", route.path);
            continue;
        }
        assert_eq!(route.response, ResponseMode::EventStream, "{}", route.path);
        assert_eq!((status, content_type.as_str()), (200, "text/event-stream"), "{}: {text}", route.path);
        let items = sse_data(&text);
        assert_eq!(items.len(), 1, "{}: {text}", route.path);
        let raw = items[0]["raw"]
            .as_str()
            .or(items[0]["message"]["text"].as_str())
            .unwrap_or_else(|| panic!("{}: {text}", route.path));
        let line: Value = serde_json::from_str(raw).expect("request line");
        assert_eq!((&line["event"], &line["conversation_id"], &line["app_id"]), (&json!("request"), &json!("conv-2"), &json!("app-2")));
        let sent = line["data"].as_object().expect("data object");
        assert_eq!(sent["type"], json!(route.access_type.as_str()), "{}", route.path);
        assert_eq!(sent["action"], json!(route.action), "{}", route.path);
        assert_eq!(sent["user_id"], "user-9");
        for (field, value) in &data {
            assert_eq!(&sent[field.as_str()], value, "{} field {field}", route.path);
        }
        served += 1;
    }
    assert_eq!(served, DISPATCH_ROUTES.len() - 2, "every route but the two polling routes");
    assert!(DISPATCH_ROUTES.iter().any(|r| r.path == "/agent_strategy/invoke"));

    // Error envelopes, byte for byte, in upstream's middleware order. An unknown route is the
    // not-found body even without a key.
    let (status, _, text) = v2(&daemon, "/tool/nope", None, None, &json!({})).await;
    assert_eq!((status, text.as_str()), (404, r#"{"code":"not_found","message":"route not found"}"#));
    let body = json!({"tenant_id": OTHER_TENANT, "data": {"provider": "p", "tool": "t", "credentials": {}, "tool_parameters": {}}});
    let (status, _, text) = v2(&daemon, "/tool/invoke", None, Some(&uid), &body).await;
    assert_eq!(
        (status, text.as_str()),
        (
            401,
            r#"{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",\"args\":null}","data":null}"#
        )
    );
    let (status, _, text) = v2(&daemon, "/tool/invoke", Some(&daemon.key), None, &body).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            r#"{"code":-400,"message":"{\"message\":\"X-Plugin-Unique-Identifier header is required\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#
        )
    );
    let (status, _, text) = v2(&daemon, "/tool/invoke", Some(&daemon.key), Some("testing/protocol_echo"), &body).await;
    assert_eq!(status, 400, "{text}");
    let envelope: Value = serde_json::from_str(&text).expect("envelope");
    let inner: Value = serde_json::from_str(envelope["message"].as_str().expect("message")).expect("inner");
    assert_eq!((&envelope["code"], &inner["error_type"]), (&json!(-400), &json!("PluginUniqueIdentifierError")), "{text}");
    assert_eq!(inner["message"], "plugin_unique_identifier is not valid: testing/protocol_echo");
    let (status, _, text) = v2(&daemon, "/tool/invoke", Some(&daemon.key), Some(ABSENT), &body).await;
    assert_eq!(
        (status, text.as_str()),
        (
            404,
            r#"{"code":-500,"message":"{\"message\":\"no available node, plugin runtime not found\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#
        )
    );
    // The body is bound after the plugin is found: `tenant_id` and `data` are required.
    let (status, _, text) = v2(&daemon, "/tool/invoke", Some(&daemon.key), Some(&uid), &json!({"user_id": "u"})).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            r#"{"code":-400,"message":"{\"message\":\"Key: 'InvokePluginRequest.InvokePluginUserIdentity.TenantId' Error:Field validation for 'TenantId' failed on the 'required' tag\\nKey: 'InvokePluginRequest.Data' Error:Field validation for 'Data' failed on the 'required' tag\",\"error_type\":\"PluginDaemonBadRequestError\",\"args\":null}","data":null}"#
        )
    );

    // extract: the package's own schema.
    let extract = |identifier: Option<&str>| {
        let mut request = daemon.client.get(daemon.url("/v2/invoke/extract")).header("X-Api-Key", &daemon.key);
        if let Some(identifier) = identifier {
            request = request.header("X-Plugin-Unique-Identifier", identifier);
        }
        request.send()
    };
    let (status, envelope) = common::read_json(extract(Some(&uid)).await.expect("extract")).await;
    assert_eq!((status, &envelope["code"]), (200, &json!(0)), "{envelope}");
    assert_eq!(envelope["data"]["unique_identifier"], json!(uid));
    assert_eq!(
        (&envelope["data"]["manifest"]["name"], &envelope["data"]["manifest"]["author"]),
        (&json!("protocol_echo"), &json!("testing"))
    );
    assert_eq!(envelope["data"]["verification"], Value::Null);
    assert!(envelope["data"]["manifest"]["plugins"]["tools"].is_array(), "{envelope}");
    let absent = common::read_json(extract(Some(ABSENT)).await.expect("extract")).await;
    common::assert_error(&absent, 200, -400, "PluginDaemonBadRequestError", Some("plugin package not found, please upload it firstly"));
    let missing = common::read_json(extract(None).await.expect("extract")).await;
    common::assert_error(&missing, 400, -400, "PluginDaemonBadRequestError", Some("X-Plugin-Unique-Identifier header is required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_plugins_answer_v2_with_the_body_tenant() {
    let inner = FakeInnerApi::start().await;
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_runtime_daemon(&db, Some(&inner.url)).await;
    let (tools_uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let (model_uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_model")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let (agent_uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_agent")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let tool = |tenant: &str, parameters: Value| {
        json!({"tenant_id": tenant, "user_id": "user-3",
               "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}})
    };
    let (status, _, text) =
        v2(&daemon, "/tool/invoke", Some(&daemon.key), Some(&tools_uid), &tool(OTHER_TENANT, json!({"text": "hi"}))).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(sse_data(&text), vec![json!({"type": "text", "message": {"text": "echo: hi"}, "meta": null})]);

    // The non-model routes this test exercises (`/agent_strategy/invoke` further down).
    let hit = std::sync::Mutex::new(std::collections::BTreeSet::from(["/tool/invoke", "/agent_strategy/invoke"]));
    let hit = &hit;

    // The other tool routes: credential validation (good and rejected), runtime parameters.
    let (d, tools) = (&daemon, tools_uid.as_str());
    let tool_route = move |route: &'static str, data: Value| {
        hit.lock().expect("routes").insert(route);
        let body = json!({"tenant_id": OTHER_TENANT, "user_id": "user-3", "data": data});
        async move { v2(d, route, Some(&d.key), Some(tools), &body).await }
    };
    let (status, _, text) =
        tool_route("/tool/validate_credentials", json!({"provider": "runtime_tools", "credentials": {"token": "fine"}})).await;
    assert_eq!((status, sse_data(&text)), (200, vec![json!({"result": true})]), "{text}");
    let (_, _, text) =
        tool_route("/tool/validate_credentials", json!({"provider": "runtime_tools", "credentials": {"token": "bad"}})).await;
    let error = final_plugin_error(&text);
    assert_eq!((&error["error_type"], &error["message"]), (&json!("ToolProviderCredentialValidationError"), &json!("token rejected")));
    // The SDK (0.10) registers no handler for `get_tool_runtime_parameters`: the plugin ends the
    // session without a chunk (not even the executor's "does not implement runtime parameters"
    // error), so the stream is empty. Should an SDK answer it, this fails.
    let (status, content_type, text) = tool_route(
        "/tool/get_runtime_parameters",
        json!({"provider": "runtime_tools", "tool": "exercise", "credentials": {"token": "t42"}}),
    )
    .await;
    assert_eq!((status, content_type.as_str(), text.as_str()), (200, "text/event-stream", ""));

    // Dynamic select: the tool's options, derived from the parameter and the credentials.
    let (status, _, text) = tool_route(
        "/dynamic_select/fetch_parameter_options",
        json!({"provider": "runtime_tools", "provider_action": "exercise", "parameter": "region",
               "credentials": {"token": "t7"}, "credential_type": "api-key"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let options = sse_data(&text)[0]["options"].clone();
    let values: Vec<&str> = options.as_array().expect("options").iter().map(|o| o["value"].as_str().unwrap_or("")).collect();
    assert_eq!(values, ["region-t7-1", "region-t7-2"], "{text}");
    assert_eq!(options[1]["label"]["en_US"], "region 2", "{text}");

    // A backwards call carries the body's tenant.
    let (_, _, text) = v2(
        &daemon,
        "/tool/invoke",
        Some(&daemon.key),
        Some(&tools_uid),
        &tool(OTHER_TENANT, json!({"mode": "backwards_tool", "text": "q"})),
    )
    .await;
    assert!(!sse_data(&text).is_empty());
    let recorded = inner.recorded();
    let call = recorded.iter().find(|(path, _, _)| path == "/inner/api/invoke/tool").expect("backwards tool call");
    assert_eq!((&call.2["tenant_id"], &call.2["user_id"]), (&json!(OTHER_TENANT), &json!("user-3")));

    // Storage belongs to the body's tenant (and the plugin id of the identifier).
    let (_, _, text) = v2(
        &daemon,
        "/tool/invoke",
        Some(&daemon.key),
        Some(&tools_uid),
        &tool(OTHER_TENANT, json!({"mode": "storage_set", "key": "shade", "count": 3})),
    )
    .await;
    assert_eq!(sse_data(&text)[0]["message"]["text"], "stored");
    let probe = |tenant: &str| tool(tenant, json!({"mode": "storage", "key": "shade", "text": "blue"}));
    let (_, _, text) = v2(&daemon, "/tool/invoke", Some(&daemon.key), Some(&tools_uid), &probe(INSTALLER)).await;
    assert_eq!(sse_data(&text)[0]["message"]["json_object"]["exists_before"], false, "another tenant's storage");
    let (_, _, text) = v2(&daemon, "/tool/invoke", Some(&daemon.key), Some(&tools_uid), &probe(OTHER_TENANT)).await;
    assert_eq!(sse_data(&text)[0]["message"]["json_object"]["exists_before"], true, "the body tenant's storage");

    // A plugin error ends the stream with the PluginInvokeError envelope.
    let (status, _, text) =
        v2(&daemon, "/tool/invoke", Some(&daemon.key), Some(&tools_uid), &tool(OTHER_TENANT, json!({"mode": "raise", "text": "boom"})))
            .await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(text.trim_end().rsplit("\n\n").next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["code"], -500, "{text}");
    assert!(
        last["message"].as_str().unwrap_or("").contains("PluginInvokeError") && last["message"].as_str().unwrap_or("").contains("boom"),
        "{text}"
    );

    // The agent strategy route of /v2.
    let agent = json!({"tenant_id": OTHER_TENANT, "user_id": "u",
        "data": {"agent_strategy_provider": "echo_agent", "agent_strategy": "echo", "agent_strategy_params": {"query": "hi", "blob_size": 8}}});
    let (status, _, text) = v2(&daemon, "/agent_strategy/invoke", Some(&daemon.key), Some(&agent_uid), &agent).await;
    assert_eq!(status, 200, "{text}");
    let chunks = sse_data(&text);
    let types: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap_or("")).collect();
    assert_eq!(types, ["log", "text", "json", "blob", "text"], "{chunks:?}");
    assert_eq!(chunks[1]["message"]["text"], "agent: hi");

    // OAuth: the SDK tool provider with an `oauth_schema` answers from what it was sent.
    let (oauth_uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_oauth")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let oauth = |route: &'static str, data: Value| {
        hit.lock().expect("routes").insert(route);
        let body = json!({"tenant_id": OTHER_TENANT, "user_id": "u", "data": data});
        let (d, uid) = (&daemon, oauth_uid.clone());
        async move {
            let (status, _, text) = v2(d, route, Some(&d.key), Some(&uid), &body).await;
            assert_eq!(status, 200, "{route}: {text}");
            sse_data(&text)
        }
    };
    let answer = oauth(
        "/oauth/get_authorization_url",
        json!({"provider": "echo_oauth", "redirect_uri": "https://dify.example/cb", "system_credentials": {"client_id": "c-1"}}),
    )
    .await;
    assert_eq!(
        answer,
        vec![json!({"authorization_url": "https://auth.example.com/authorize?client_id=c-1&redirect_uri=https%3A%2F%2Fdify.example%2Fcb"})]
    );
    let callback = hex::encode("GET /cb?code=xyz HTTP/1.1\r\nHost: dify.example\r\n\r\n");
    let answer = oauth(
        "/oauth/get_credentials",
        json!({"provider": "echo_oauth", "redirect_uri": "https://dify.example/cb", "system_credentials": {"client_id": "c-1"},
               "raw_http_request": callback}),
    )
    .await;
    assert_eq!(
        answer,
        vec![json!({"metadata": {}, "credentials": {"access_token": "token-xyz-c-1", "method": "GET"}, "expires_at": 1000})]
    );
    let answer = oauth(
        "/oauth/refresh_credentials",
        json!({"provider": "echo_oauth", "redirect_uri": "https://dify.example/cb", "system_credentials": {"client_id": "c-1"},
               "credentials": {"access_token": "token-xyz-c-1"}}),
    )
    .await;
    assert_eq!(answer, vec![json!({"credentials": {"access_token": "token-xyz-c-1+1"}, "expires_at": 2000})]);

    // Datasource (online documents): credentials, pages and page content derived from the request.
    let (docs_uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_datasource")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let datasource = |route: &'static str, data: Value| {
        hit.lock().expect("routes").insert(route);
        let body = json!({"tenant_id": OTHER_TENANT, "user_id": "u", "data": data});
        let (d, uid) = (&daemon, docs_uid.clone());
        async move { v2(d, route, Some(&d.key), Some(&uid), &body).await.2 }
    };
    let text = datasource("/datasource/validate_credentials", json!({"provider": "echo_docs", "credentials": {"api_key": "w1"}})).await;
    assert_eq!(sse_data(&text), vec![json!({"result": true})]);
    let text = datasource("/datasource/validate_credentials", json!({"provider": "echo_docs", "credentials": {"api_key": "bad"}})).await;
    assert_eq!(final_plugin_error(&text)["message"], "api key rejected", "{text}");
    let text = datasource(
        "/datasource/get_online_document_pages",
        json!({"provider": "echo_docs", "datasource": "pages", "credentials": {"api_key": "w1"},
               "datasource_parameters": {"names": "alpha,beta"}}),
    )
    .await;
    let result = sse_data(&text);
    assert_eq!(result.len(), 1, "{text}");
    let workspace = &result[0]["result"][0];
    assert_eq!((&workspace["workspace_id"], &workspace["total"]), (&json!("w1"), &json!(2)), "{text}");
    let ids: Vec<&Value> = workspace["pages"].as_array().expect("pages").iter().map(|p| &p["page_id"]).collect();
    assert_eq!(ids, [&json!("id-alpha"), &json!("id-beta")], "{text}");
    let text = datasource(
        "/datasource/get_online_document_page_content",
        json!({"provider": "echo_docs", "datasource": "pages", "credentials": {},
               "page": {"workspace_id": "w1", "page_id": "id-beta", "type": "page"}}),
    )
    .await;
    let variables: Vec<(Value, Value)> = sse_data(&text)
        .iter()
        .map(|m| (m["message"]["variable_name"].clone(), m["message"]["variable_value"].clone()))
        .collect();
    assert_eq!(variables, [(json!("page_id"), json!("id-beta")), (json!("content"), json!("content of id-beta in w1"))], "{text}");

    // Website crawl: a progress message, then the pages of the requested paths.
    let text = datasource(
        "/datasource/get_website_crawl",
        json!({"provider": "echo_crawl", "datasource": "site", "credentials": {},
               "datasource_parameters": {"url": "https://site.example", "paths": "a,b"}}),
    )
    .await;
    let crawl = sse_data(&text);
    let statuses: Vec<&Value> = crawl.iter().map(|m| &m["result"]["status"]).collect();
    assert_eq!(statuses, [&json!("processing"), &json!("completed")], "{text}");
    let urls: Vec<&Value> = crawl[1]["result"]["web_info_list"].as_array().expect("pages").iter().map(|p| &p["source_url"]).collect();
    assert_eq!(urls, [&json!("https://site.example/a"), &json!("https://site.example/b")], "{text}");

    // Online drive: a listing shaped by the request, and a download naming the file asked for.
    let text = datasource(
        "/datasource/online_drive_browse_files",
        json!({"provider": "echo_drive", "datasource": "files", "credentials": {},
               "request": {"bucket": "bk", "prefix": "dir/", "max_keys": 2}}),
    )
    .await;
    let listing = sse_data(&text);
    assert_eq!(listing.len(), 1, "{text}");
    let bucket = &listing[0]["result"][0];
    assert_eq!(bucket["bucket"], "bk", "{text}");
    let ids: Vec<&Value> = bucket["files"].as_array().expect("files").iter().map(|f| &f["id"]).collect();
    assert_eq!(ids, [&json!("dir/file-0"), &json!("dir/file-1")], "{text}");
    let text = datasource(
        "/datasource/online_drive_download_file",
        json!({"provider": "echo_drive", "datasource": "files", "credentials": {}, "request": {"bucket": "bk", "id": "dir/file-1"}}),
    )
    .await;
    let variables: Vec<(Value, Value)> = sse_data(&text)
        .iter()
        .map(|m| (m["message"]["variable_name"].clone(), m["message"]["variable_value"].clone()))
        .collect();
    assert_eq!(variables, [(json!("file_id"), json!("dir/file-1")), (json!("bucket"), json!("bk"))], "{text}");

    // Triggers: credentials, the subscription's life cycle, a webhook's dispatch and its event.
    let (trigger_uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_trigger")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());
    let trigger = |route: &'static str, data: Value| {
        hit.lock().expect("routes").insert(route);
        let body = json!({"tenant_id": OTHER_TENANT, "user_id": "u", "data": data});
        let (d, uid) = (&daemon, trigger_uid.clone());
        async move { v2(d, route, Some(&d.key), Some(&uid), &body).await.2 }
    };
    let text = trigger("/trigger/validate_credentials", json!({"provider": "echo_trigger", "credentials": {"api_key": "k1"}})).await;
    assert_eq!(sse_data(&text), vec![json!({"result": true})]);
    let text = trigger("/trigger/validate_credentials", json!({"provider": "echo_trigger", "credentials": {"api_key": "bad"}})).await;
    let error = final_plugin_error(&text);
    assert_eq!((&error["error_type"], &error["message"]), (&json!("TriggerProviderCredentialValidationError"), &json!("api key rejected")));
    let text = trigger(
        "/trigger/subscribe",
        json!({"provider": "echo_trigger", "credentials": {"api_key": "k1"}, "credential_type": "api-key",
               "endpoint": "https://hook.example/e1", "parameters": {"events": ["echo_event"]}}),
    )
    .await;
    let subscription = sse_data(&text)[0]["subscription"].clone();
    assert_eq!(
        (&subscription["endpoint"], &subscription["expires_at"], &subscription["properties"]),
        (&json!("https://hook.example/e1"), &json!(4102444800_i64), &json!({"events": ["echo_event"], "key": "k1"})),
        "{text}"
    );
    let text = trigger(
        "/trigger/refresh",
        json!({"provider": "echo_trigger", "credentials": {}, "credential_type": "api-key", "subscription": subscription}),
    )
    .await;
    assert_eq!(sse_data(&text)[0]["subscription"]["expires_at"], 4102444900_i64, "{text}");
    let text = trigger(
        "/trigger/unsubscribe",
        json!({"provider": "echo_trigger", "credentials": {}, "credential_type": "api-key", "subscription": subscription}),
    )
    .await;
    assert_eq!(sse_data(&text), vec![json!({"subscription": {"success": true, "message": "removed https://hook.example/e1"}})]);
    let webhook = |body: &str| {
        hex::encode(format!(
            "POST /hook/e1 HTTP/1.1\r\nHost: hook.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    let text = trigger(
        "/trigger/dispatch_event",
        json!({"provider": "echo_trigger", "credentials": {}, "credential_type": "api-key", "subscription": subscription,
               "raw_http_request": webhook(r#"{"events": ["echo_event"], "n": 1}"#)}),
    )
    .await;
    let dispatched = &sse_data(&text)[0];
    assert_eq!(dispatched["events"], json!(["echo_event"]), "{text}");
    let response = String::from_utf8(hex::decode(dispatched["response"].as_str().expect("response")).expect("hex")).expect("utf-8");
    assert!(response.starts_with("HTTP/1.1 202") && response.ends_with("seen by https://hook.example/e1"), "{response}");
    let event = |body: &str, keyword: &str| {
        json!({"provider": "echo_trigger", "event": "echo_event", "credentials": {}, "credential_type": "api-key",
               "subscription": subscription, "raw_http_request": webhook(body), "parameters": {"keyword": keyword}})
    };
    let text = trigger("/trigger/invoke_event", event(r#"{"n": 7}"#, "")).await;
    assert_eq!(sse_data(&text), vec![json!({"variables": {"payload": {"n": 7}, "path": "/hook/e1"}, "cancelled": false})]);
    let text = trigger("/trigger/invoke_event", event(r#"{"n": 7}"#, "absent")).await;
    assert_eq!(sse_data(&text), vec![json!({"variables": {}, "cancelled": true})]);

    // Every non-model route `/v2` serves was answered by an SDK plugin above.
    let expected: std::collections::BTreeSet<&str> = DISPATCH_ROUTES
        .iter()
        .filter(|r| r.access_type.as_str() != "model" && r.response == ResponseMode::EventStream)
        .map(|r| r.path)
        .collect();
    assert_eq!(*hit.lock().expect("routes"), expected);

    // A model route of /v2: LLM streaming from the SDK model plugin.
    let llm = json!({"tenant_id": OTHER_TENANT, "user_id": "u",
        "data": {"provider": "echo_model", "model": "echo-llm", "model_type": "llm", "credentials": {"api_key": "ok"},
                 "model_parameters": {}, "prompt_messages": [{"role": "user", "content": "hello v2"}], "tools": [], "stop": [], "stream": true}});
    let (status, _, text) = v2(&daemon, "/llm/invoke", Some(&daemon.key), Some(&model_uid), &llm).await;
    assert_eq!(status, 200, "{text}");
    let contents: Vec<String> =
        sse_data(&text).iter().map(|c| c["delta"]["message"]["content"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(contents, ["hello", " v2"], "{text}");
}

/// The inner error object of the final `PluginInvokeError` envelope of an SSE body.
fn final_plugin_error(body: &str) -> Value {
    let last = body.trim_end().rsplit("\n\n").next().expect("a line");
    let envelope: Value = serde_json::from_str(last.strip_prefix("data: ").expect("data: prefix")).expect("envelope");
    assert_eq!(envelope["code"], -500, "{body}");
    let outer: Value = serde_json::from_str(envelope["message"].as_str().expect("message")).expect("outer");
    assert_eq!(outer["error_type"], "PluginInvokeError", "{outer}");
    serde_json::from_str(outer["message"].as_str().expect("inner message")).expect("inner JSON object")
}

/// POSTs a model route of `/v2` with the echo provider and good credentials unless `data` names
/// others; records the route in `covered` and returns the SSE body.
async fn v2_model(
    daemon: &Daemon,
    uid: &str,
    covered: &mut std::collections::BTreeSet<&'static str>,
    route: &'static str,
    mut data: Value,
) -> String {
    covered.insert(route);
    let fields = data.as_object_mut().expect("object");
    fields.entry("provider").or_insert(json!("echo_model"));
    fields.entry("credentials").or_insert(json!({"api_key": "ok"}));
    let body = json!({"tenant_id": OTHER_TENANT, "user_id": "user-v2", "data": data});
    let (status, content_type, text) = v2(daemon, route, Some(&daemon.key), Some(uid), &body).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"), "{route}: {text}");
    text
}

/// Every model route `/v2` serves, answered by the SDK model plugin (`tests/plugins/runtime_model`):
/// each answer is derived from the request's data, so it shows the SDK decoded the right action,
/// model type and fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_model_plugin_answers_every_v2_model_route() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = start_runtime_daemon(&db, None).await;
    let (uid, task) = daemon.install_package(INSTALLER, &package_plugin("runtime_model")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", daemon.log());

    let mut covered = std::collections::BTreeSet::new();
    macro_rules! call {
        ($route:expr, $data:expr) => {
            v2_model(&daemon, &uid, &mut covered, $route, $data).await
        };
    }

    // LLM: streaming and token counting.
    let prompt = json!([{"role": "user", "content": "one two three"}]);
    let text = call!(
        "/llm/invoke",
        json!({"model": "echo-llm", "model_type": "llm", "model_parameters": {},
        "prompt_messages": prompt, "tools": [], "stop": [], "stream": true})
    );
    let contents: Vec<Value> = sse_data(&text).iter().map(|c| c["delta"]["message"]["content"].clone()).collect();
    assert_eq!(contents, [json!("one"), json!(" two"), json!(" three")], "{text}");
    let text = call!("/llm/num_tokens", json!({"model": "echo-llm", "model_type": "llm", "prompt_messages": prompt, "tools": []}));
    assert_eq!(sse_data(&text), vec![json!({"num_tokens": 3})]);

    // Embeddings: [characters, words, position] per text; multimodal: [length, is image, position].
    let text = call!(
        "/text_embedding/invoke",
        json!({"model": "echo-embedding", "model_type": "text-embedding",
        "texts": ["abc", "x y"], "input_type": "query"})
    );
    let result = sse_data(&text);
    assert_eq!(result.len(), 1, "{text}");
    assert_eq!((&result[0]["model"], &result[0]["embeddings"]), (&json!("echo-embedding"), &json!([[3.0, 1.0, 0.0], [3.0, 2.0, 1.0]])));
    assert_eq!(result[0]["usage"]["tokens"], 3);
    let text = call!(
        "/text_embedding/num_tokens",
        json!({"model": "echo-embedding", "model_type": "text-embedding",
        "texts": ["abc", "x y z"]})
    );
    assert_eq!(sse_data(&text), vec![json!({"num_tokens": [1, 3]})]);
    let text = call!(
        "/multimodal_embedding/invoke",
        json!({"model": "echo-embedding", "model_type": "text-embedding",
        "documents": [{"content": "abcd", "content_type": "text"}, {"content": "aGVsbG8=", "content_type": "image"}],
        "input_type": "document"})
    );
    let result = sse_data(&text);
    assert_eq!(result[0]["embeddings"], json!([[4.0, 0.0, 0.0], [8.0, 1.0, 1.0]]), "{text}");
    assert_eq!(result[0]["usage"]["tokens"], 2);

    // Rerank: the share of the query's words in each document, best first, threshold and top_n applied.
    let text = call!(
        "/rerank/invoke",
        json!({"model": "echo-rerank", "model_type": "rerank", "query": "red apple",
        "docs": ["green pear", "red apple pie", "a red car", "red"], "score_threshold": 0.4, "top_n": 2})
    );
    assert_eq!(
        sse_data(&text),
        vec![json!({"model": "echo-rerank", "docs": [{"index": 1, "text": "red apple pie", "score": 1.0},
                                                     {"index": 2, "text": "a red car", "score": 0.5}]})]
    );
    let text = call!(
        "/multimodal_rerank/invoke",
        json!({"model": "echo-rerank", "model_type": "rerank",
        "query": {"content": "cat", "content_type": "text"},
        "docs": [{"content": "dog", "content_type": "text"}, {"content": "cat", "content_type": "image"}],
        "score_threshold": null, "top_n": null})
    );
    assert_eq!(
        sse_data(&text),
        vec![json!({"model": "echo-rerank", "docs": [{"index": 1, "text": "cat (image)", "score": 1.0},
                                                     {"index": 0, "text": "dog (text)", "score": 0.0}]})]
    );

    // TTS: the text's bytes, hex-encoded, one chunk per word, with the schema's MIME type; voices by language.
    let text = call!(
        "/tts/invoke",
        json!({"model": "echo-tts", "model_type": "tts", "content_text": "hello tts world",
        "voice": "loud", "tenant_id": OTHER_TENANT})
    );
    let chunks = sse_data(&text);
    assert_eq!(chunks.len(), 3, "{text}");
    assert!(chunks.iter().all(|c| c["mime_type"] == "audio/mpeg"), "{text}");
    let audio: Vec<u8> = chunks.iter().flat_map(|c| hex::decode(c["result"].as_str().expect("hex")).expect("hex")).collect();
    assert_eq!(String::from_utf8(audio).expect("utf-8"), "HELLO TTS WORLD");
    let text = call!("/tts/model/voices", json!({"model": "echo-tts", "model_type": "tts", "language": "de-DE"}));
    assert_eq!(sse_data(&text), vec![json!({"voices": [{"name": "Loud", "value": "loud"}]})]);
    let text = call!("/tts/model/voices", json!({"model": "echo-tts", "model_type": "tts", "language": null}));
    assert_eq!(sse_data(&text)[0]["voices"].as_array().map(Vec::len), Some(2), "{text}");

    // Speech to text: the audio (hex on the wire) read back as text.
    let text = call!(
        "/speech2text/invoke",
        json!({"model": "echo-s2t", "model_type": "speech2text",
        "file": hex::encode("spoken words")})
    );
    assert_eq!(sse_data(&text), vec![json!({"result": "heard 12 bytes: spoken words"})]);

    // Moderation flags the keyword only.
    let text = call!("/moderation/invoke", json!({"model": "echo-moderation", "model_type": "moderation", "text": "this is Forbidden"}));
    assert_eq!(sse_data(&text), vec![json!({"result": true})]);
    let text = call!("/moderation/invoke", json!({"model": "echo-moderation", "model_type": "moderation", "text": "all fine"}));
    assert_eq!(sse_data(&text), vec![json!({"result": false})]);

    // Credentials, for the provider and per model type; the SDK's error reaches the caller.
    let text = call!("/model/validate_provider_credentials", json!({}));
    assert_eq!(sse_data(&text)[0]["result"], true, "{text}");
    let text = call!("/model/validate_provider_credentials", json!({"credentials": {"api_key": "bad"}}));
    let error = final_plugin_error(&text);
    assert_eq!((&error["error_type"], &error["message"]), (&json!("CredentialsValidateFailedError"), &json!("api key rejected")));
    for (model, model_type) in
        [("echo-rerank", "rerank"), ("echo-tts", "tts"), ("echo-s2t", "speech2text"), ("echo-moderation", "moderation")]
    {
        let text = call!("/model/validate_model_credentials", json!({"model": model, "model_type": model_type}));
        assert_eq!(sse_data(&text)[0]["result"], true, "{model}: {text}");
        let text = call!(
            "/model/validate_model_credentials",
            json!({"model": model, "model_type": model_type, "credentials": {"api_key": "bad"}})
        );
        assert_eq!(final_plugin_error(&text)["error_type"], "CredentialsValidateFailedError", "{model}: {text}");
    }

    // Schemas come from the model's YAML, per type.
    for (model, model_type, key, value) in [
        ("echo-tts", "tts", "default_voice", json!("plain")),
        ("echo-s2t", "speech2text", "supported_file_extensions", json!("mp3,wav")),
        ("echo-moderation", "moderation", "max_characters_per_chunk", json!(2000)),
        ("echo-rerank", "rerank", "context_size", json!(512)),
    ] {
        let text = call!("/model/schema", json!({"model": model, "model_type": model_type}));
        let schema = &sse_data(&text)[0]["model_schema"];
        assert_eq!((&schema["model"], &schema["model_type"]), (&json!(model), &json!(model_type)), "{text}");
        assert_eq!(schema["model_properties"][key], value, "{text}");
    }

    // A provider the plugin does not have is the SDK's error, not a hang.
    let text = call!(
        "/rerank/invoke",
        json!({"model": "echo-rerank", "model_type": "rerank", "query": "q", "docs": ["d"],
        "score_threshold": null, "top_n": null, "provider": "no_such_provider"})
    );
    let error = final_plugin_error(&text);
    assert_eq!(error["error_type"], "ValueError", "{text}");
    assert_eq!(error["message"], "Model `ModelType.RERANK` not found for provider `no_such_provider`", "{text}");

    // Every model route `/v2` serves was exercised above (the polling routes are tenant-only).
    let model_routes: std::collections::BTreeSet<&str> = DISPATCH_ROUTES
        .iter()
        .filter(|r| r.access_type.as_str() == "model" && r.response == ResponseMode::EventStream)
        .map(|r| r.path)
        .collect();
    assert_eq!(covered, model_routes);
}
