//! The library against the fixture daemon: every call's route and body, error mapping of each
//! daemon error type, SSE streaming (incremental, mid-stream errors), retries and validation.

mod support;

use std::time::{Duration, Instant};

use dify_client::wire::{PluginBundleDependency, PluginInstallTaskStatus, ToolProviderRef};
use dify_client::{ClientConfig, ClientError, PluginDaemonClient, RetryPolicy};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use support::{identifier, payloads, FixtureServer, Scenario, API_KEY, PLUGIN_ID, PROVIDER, TENANT};

const LIMIT: Duration = Duration::from_secs(30);

fn client_for(server: &FixtureServer) -> PluginDaemonClient {
    let config = ClientConfig::new(&server.url, API_KEY).with_timeout(Duration::from_secs(10));
    PluginDaemonClient::new(config).unwrap()
}

fn params(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn install_life_cycle_and_discovery() {
    tokio::time::timeout(LIMIT, async {
        let server = FixtureServer::start(Scenario::Happy).await;
        let client = client_for(&server);

        let uploaded = client.upload_pkg(TENANT, b"PK\x03\x04 fake package".to_vec(), true).await.unwrap();
        assert_eq!(uploaded.unique_identifier.as_str(), identifier());
        assert_eq!(uploaded.manifest.name, "echo");
        assert!(uploaded.verification.is_none());
        let upload = &server.requests_to("install/upload/package")[0];
        assert_eq!(upload.api_key.as_deref(), Some(API_KEY));
        let body = String::from_utf8_lossy(&upload.body);
        assert!(body.contains("name=\"dify_pkg\"; filename=\"dify_pkg\""), "{body}");
        assert!(body.contains("fake package"));
        assert!(body.contains("name=\"verify_signature\"\r\n\r\ntrue"), "{body}");

        let dependencies = client.upload_bundle(TENANT, b"PK bundle".to_vec(), false).await.unwrap();
        assert_eq!(dependencies.len(), 2);
        assert_eq!(dependencies[0].dependency_type(), "marketplace");
        match &dependencies[1] {
            PluginBundleDependency::Package(package) => {
                assert_eq!(package.unique_identifier.as_str(), identifier());
                assert_eq!(package.manifest.name, "echo");
            }
            other => panic!("expected the embedded package, got {other:?}"),
        }
        let bundle = String::from_utf8_lossy(&server.requests_to("install/upload/bundle")[0].body).into_owned();
        assert!(bundle.contains("name=\"dify_bundle\"; filename=\"dify_bundle\""), "{bundle}");
        assert!(bundle.contains("name=\"verify_signature\"\r\n\r\nfalse"), "{bundle}");

        let started = client.install_from_identifiers(TENANT, &[identifier()], "package", &[json!({})]).await.unwrap();
        assert!(!started.all_installed);
        assert_eq!(server.requests_to("install/identifiers")[0].content_types, vec!["application/json"]);
        let install = server.requests_to("install/identifiers")[0].json();
        assert_eq!(install, json!({"plugin_unique_identifiers": [identifier()], "source": "package", "metas": [{}]}));

        let mut seen = Vec::new();
        let task = client
            .wait_for_installation_task(TENANT, &started.task_id, Duration::from_millis(20), Duration::from_secs(5), |t| {
                seen.push(t.status)
            })
            .await
            .unwrap();
        assert_eq!(task.status, PluginInstallTaskStatus::Success);
        assert_eq!(seen, vec![PluginInstallTaskStatus::Running, PluginInstallTaskStatus::Success]);

        let tasks = client.fetch_plugin_installation_tasks(TENANT, 1, 10).await.unwrap();
        assert_eq!(tasks.len(), 1);
        assert!(client.delete_plugin_installation_task(TENANT, "task-1").await.unwrap());
        assert!(client.delete_all_plugin_installation_task_items(TENANT).await.unwrap());
        assert!(client.delete_plugin_installation_task_item(TENANT, "task-1", &identifier()).await.unwrap());
        let item_delete = server.requests_to(&format!("delete/{}", identifier()));
        assert_eq!(item_delete.len(), 1, "identifier goes raw into the path");

        let plugins = client.list_plugins(TENANT).await.unwrap();
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0].plugin_id, PLUGIN_ID);
        let list_query = &server.requests_to("management/list")[0].query;
        assert_eq!(list_query, "page=1&page_size=256&response_type=paged");

        let manifest = client.fetch_plugin_manifest(TENANT, &identifier()).await.unwrap();
        assert_eq!(manifest.author, "fixture");
        let decoded = client.decode_plugin_from_identifier(TENANT, &identifier()).await.unwrap();
        assert_eq!(decoded.verification.unwrap().authorized_category, "langgenius");
        assert_eq!(client.fetch_plugin_readme(TENANT, &identifier(), "en_US").await.unwrap(), "# Echo\n\nRepeats text.\n");
        assert_eq!(client.fetch_plugin_readme(TENANT, &identifier(), "ja_JP").await.unwrap(), "", "no readme is empty");
        assert!(client.fetch_plugin_by_identifier(TENANT, &identifier()).await.unwrap());

        let other = format!("fixture/other:1.0.0@{}", support::CHECKSUM);
        let missing = client.fetch_missing_dependencies(TENANT, &[identifier(), other.clone()]).await.unwrap();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].plugin_unique_identifier.as_str(), other);
        assert_eq!(missing[0].current_identifier, "");

        let installations = client.fetch_plugin_installation_by_ids(TENANT, &[PLUGIN_ID.to_string()]).await.unwrap();
        assert_eq!(installations[0].plugin_unique_identifier, identifier());

        let upgraded = client.upgrade_plugin(TENANT, &identifier(), &other, "package", json!({})).await.unwrap();
        assert!(upgraded.all_installed);
        assert!(client.uninstall(TENANT, &plugins[0].installation_id).await.unwrap());
        assert_eq!(server.requests_to("management/uninstall")[0].json(), json!({"plugin_installation_id": "inst-0"}));
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn validation_errors_are_raised_before_any_request() {
    let server = FixtureServer::start(Scenario::Happy).await;
    let client = client_for(&server);
    let error = client
        .install_from_identifiers(TENANT, &[identifier(), identifier()], "package", &[json!({})])
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Validation(ref m) if m.contains("number of metas")), "{error}");
    let error = client.install_from_identifiers(TENANT, &[identifier()], "ftp", &[json!({})]).await.unwrap_err();
    assert_eq!(error.kind(), "ValidationError");
    assert!(client.list_plugins_with_total(TENANT, 0, 10).await.is_err());
    let error = client
        .install_from_identifiers(TENANT, &["Bad/ID:1@x".to_string()], "package", &[json!({})])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Bad/ID:1@x"), "{error}");
    assert!(client.upgrade_plugin(TENANT, &identifier(), "nope", "package", json!({})).await.is_err());
    assert!(client.fetch_missing_dependencies(TENANT, &["x".to_string()]).await.is_err());
    assert!(client.fetch_tool_provider(TENANT, "Not A Provider").await.is_err());
    assert!(server.requests().is_empty(), "nothing may be sent: {:?}", server.requests());
}

#[tokio::test]
async fn tool_providers_are_renamed_and_refs_resolved() {
    let server = FixtureServer::start(Scenario::Happy).await;
    let client = client_for(&server);
    let providers = client.fetch_tool_providers(TENANT).await.unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].declaration.identity.name, "fixture/echo/echo");
    assert_eq!(providers[0].provider, "echo");
    let schema = providers[0].declaration.tools[0].output_schema.clone().unwrap();
    assert_eq!(schema["properties"]["file"]["type"], "object");
    assert_eq!(schema["properties"]["file"]["required"], json!(["name"]));
    assert!(schema["properties"]["file"].get("$ref").is_none());
    assert_eq!(server.requests_to("management/tools")[0].query, "page=1&page_size=256");

    let provider = client.fetch_tool_provider(TENANT, PROVIDER).await.unwrap();
    assert_eq!(provider.declaration.identity.name, "fixture/echo/echo");
    let query = &server.requests_to("management/tool")[0].query;
    assert!(query.contains("provider=echo") && query.contains("plugin_id=fixture%2Fecho"), "{query}");

    let error = client.fetch_tool_provider(TENANT, "fixture/echo/nope").await.unwrap_err();
    assert!(matches!(error, ClientError::PluginNotFoundError { ref message } if message == "plugin not found"));

    let exists = client
        .check_tools_existence(
            TENANT,
            &[
                ToolProviderRef { plugin_id: PLUGIN_ID.into(), provider_name: "echo".into() },
                ToolProviderRef { plugin_id: "x/y".into(), provider_name: "z".into() },
            ],
        )
        .await
        .unwrap();
    assert_eq!(exists, vec![true, false]);
}

#[tokio::test]
async fn invoke_streams_messages_as_they_arrive() {
    tokio::time::timeout(LIMIT, async {
        let server = FixtureServer::start(Scenario::Happy).await;
        let client = client_for(&server);
        let started = Instant::now();
        let mut stream = client
            .invoke(TENANT, "user-1", PROVIDER, "echo", Map::new(), params(json!({"text": "hello", "times": "2"})))
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let first_at = started.elapsed();
        assert_eq!(first.text(), Some("hello "));
        let rest: Vec<_> = stream.collect().await;
        let total = started.elapsed();
        // The fixture waits 150 ms between lines: the first item must not wait for the last.
        assert!(total >= first_at + Duration::from_millis(200), "first {first_at:?}, total {total:?}");
        assert_eq!(rest.len(), 3, "{rest:?}");
        let second = rest[0].as_ref().unwrap();
        assert_eq!(second.text(), Some("again"));
        let blob = rest[1].as_ref().unwrap();
        assert_eq!(blob.message_type, "blob", "blob chunks are merged");
        assert_eq!(blob.message["blob"], "aGVsbG8h");
        assert_eq!(blob.meta.as_ref().unwrap()["mime_type"], "text/plain");
        let third = rest[2].as_ref().unwrap();
        assert_eq!(third.message_type, "json");
        assert_eq!(third.message["json_object"]["echoed"], "hello");

        let dispatch = &server.requests_to("dispatch/tool/invoke")[0];
        assert_eq!(dispatch.plugin_id.as_deref(), Some(PLUGIN_ID));
        assert_eq!(dispatch.content_types, vec!["application/json"]);
        let body = dispatch.json();
        assert_eq!(body["user_id"], "user-1");
        assert_eq!(body["data"]["provider"], "echo");
        assert_eq!(body["data"]["tool"], "echo");
        assert_eq!(body["data"]["credential_type"], "api-key");
        assert_eq!(body["data"]["tool_parameters"], json!({"text": "hello", "times": 2}), "cast by declaration");
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn invoke_rejects_bad_parameters_before_dispatch() {
    let server = FixtureServer::start(Scenario::Happy).await;
    let client = client_for(&server);
    let error = match client
        .invoke(TENANT, "u", PROVIDER, "echo", Map::new(), params(json!({"times": "many", "mode": "loud"})))
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("expected a validation error"),
    };
    let text = error.to_string();
    assert!(text.contains("`text` is required"), "{text}");
    assert!(text.contains("`many` is not a number"), "{text}");
    assert!(text.contains("`loud` is not one of the options [plain, shout]"), "{text}");
    let unknown_tool = client.invoke(TENANT, "u", PROVIDER, "nope", Map::new(), Map::new()).await;
    assert!(matches!(unknown_tool, Err(ClientError::Validation(ref m)) if m.contains("no tool `nope`")));
    assert!(server.requests_to("dispatch/tool/invoke").is_empty());
}

#[tokio::test]
async fn mid_stream_invoke_error_carries_the_plugin_error() {
    tokio::time::timeout(LIMIT, async {
        let server = FixtureServer::start(Scenario::InvokeFails).await;
        let client = client_for(&server);
        let items: Vec<_> = client
            .invoke(TENANT, "u", PROVIDER, "echo", Map::new(), params(json!({"text": "hi"})))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().text(), Some("hi "));
        match &items[1] {
            Err(ClientError::PluginInvokeError { inner: Some(inner), .. }) => {
                assert_eq!(inner.error_type, "InvokeRateLimitError");
                assert_eq!(inner.message, "429 too many");
            }
            other => panic!("unexpected {other:?}"),
        }
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn every_daemon_error_type_maps_one_to_one() {
    let cases: [(u16, &'static str, &str, &str); 9] = [
        (401, payloads::UNAUTHORIZED, "PluginDaemonUnauthorizedError", "unauthorized"),
        (200, payloads::PLUGIN_NOT_FOUND, "PluginNotFoundError", "plugin not found"),
        (404, payloads::PLUGIN_NOT_FOUND, "PluginNotFoundError", "plugin not found"),
        (200, payloads::BAD_REQUEST, "PluginDaemonBadRequestError", "bad signature"),
        (200, payloads::NOT_FOUND, "PluginDaemonNotFoundError", "plugin installation not found"),
        (400, payloads::UNIQUE_IDENTIFIER, "PluginUniqueIdentifierError", "is not valid"),
        (200, payloads::PERMISSION_DENIED, "PluginPermissionDeniedError", "permission denied"),
        (200, payloads::INTERNAL, "PluginDaemonInternalServerError", "record not found"),
        (200, payloads::INNER, "PluginDaemonInnerError", "connection refused"),
    ];
    for (status, body, kind, text) in cases {
        let server = FixtureServer::start(Scenario::DaemonError { status, body }).await;
        let client = client_for(&server);
        let error = client.fetch_plugin_manifest(TENANT, &identifier()).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{body}");
        assert!(error.to_string().contains(text), "{error}");
        let error = client.uninstall(TENANT, "inst-0").await.unwrap_err();
        assert_eq!(error.kind(), kind, "POST {body}");
    }
    // Invoke errors on a non-stream route keep the inner error too.
    let server = FixtureServer::start(Scenario::DaemonError { status: 200, body: payloads::INVOKE }).await;
    let error = client_for(&server).fetch_plugin_by_identifier(TENANT, &identifier()).await.unwrap_err();
    assert!(matches!(error, ClientError::PluginInvokeError { inner: Some(ref inner), .. } if inner.error_type == "InvokeRateLimitError"));
    // An SSE route answered with a plain error body (dispatch middleware) is read as one line.
    let server = FixtureServer::start(Scenario::DaemonError { status: 404, body: payloads::PLUGIN_NOT_FOUND }).await;
    let client = client_for(&server);
    let dispatch = dify_client::ToolInvocation::new("u", PROVIDER, "echo");
    let items: Vec<_> = client.invoke_tool_unchecked(TENANT, &dispatch).await.unwrap().collect().await;
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(ClientError::PluginNotFoundError { .. })));
}

#[tokio::test]
async fn unauthorized_and_not_a_daemon() {
    let server = FixtureServer::start(Scenario::Unauthorized).await;
    let error = client_for(&server).list_plugins(TENANT).await.unwrap_err();
    assert!(matches!(error, ClientError::PluginDaemonUnauthorizedError { ref message } if message == "unauthorized"));

    let server = FixtureServer::start(Scenario::NotADaemon).await;
    let error = client_for(&server).list_plugins(TENANT).await.unwrap_err();
    assert!(matches!(error, ClientError::RouteNotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn pagination_pages_through_the_list() {
    let server = FixtureServer::start(Scenario::Pagination).await;
    let client = client_for(&server);
    let mut ids = Vec::new();
    for page in 1..=3 {
        let response = client.list_plugins_with_total(TENANT, page, 2).await.unwrap();
        assert_eq!(response.total, 5);
        assert_eq!(response.list.len(), if page < 3 { 2 } else { 1 });
        ids.extend(response.list.into_iter().map(|p| p.plugin_id));
    }
    assert_eq!(ids.len(), 5);
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn busy_daemon_is_retried_honouring_retry_after() {
    tokio::time::timeout(LIMIT, async {
        let server = FixtureServer::start(Scenario::Slow { busy_answers: 2 }).await;
        let client = client_for(&server);
        let started = Instant::now();
        let plugins = client.list_plugins(TENANT).await.unwrap();
        assert_eq!(plugins.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(1900), "waited {:?}", started.elapsed());
        assert_eq!(server.requests_to("management/list").len(), 3);
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = FixtureServer::start(Scenario::Slow { busy_answers: 100 }).await;
    let retry = RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) };
    let client = PluginDaemonClient::new(ClientConfig::new(&server.url, API_KEY).with_retry(retry)).unwrap();
    let started = Instant::now();
    let error = client.list_plugins(TENANT).await.unwrap_err();
    assert!(matches!(error, ClientError::HttpStatus { status: 503, .. }), "{error:?}");
    assert_eq!(server.requests().len(), 3, "first try and two retries");
    assert!(started.elapsed() < Duration::from_millis(1500), "Retry-After is capped by max_delay");
    // POSTs are never retried.
    let error = client.uninstall(TENANT, "inst-0").await;
    assert!(error.is_ok(), "slow scenario only delays GETs");
    assert_eq!(server.requests_to("uninstall").len(), 1);
}

#[tokio::test]
async fn connect_errors_are_retried_then_reported() {
    tokio::time::timeout(LIMIT, async {
        // A port nobody listens on yet; the server appears after the first attempt failed.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        let retry = RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(400) };
        let client = PluginDaemonClient::new(ClientConfig::new(format!("http://{address}"), API_KEY).with_retry(retry)).unwrap();
        let late_server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let listener = tokio::net::TcpListener::bind(address).await.unwrap();
            FixtureServer::serve(listener, Scenario::Happy)
        });
        let plugins = client.list_plugins(TENANT).await.unwrap();
        assert_eq!(plugins.len(), 1);
        let server = late_server.await.unwrap();
        assert_eq!(server.requests().len(), 1);

        let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let retry = RetryPolicy { max_retries: 1, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(10) };
        let client = PluginDaemonClient::new(ClientConfig::new(format!("http://{nobody}"), API_KEY).with_retry(retry)).unwrap();
        let error = client.list_plugins(TENANT).await.unwrap_err();
        assert_eq!(error.kind(), "PluginDaemonInnerError");
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn a_broken_stream_ends_with_a_transport_error() {
    tokio::time::timeout(LIMIT, async {
        let server = FixtureServer::start(Scenario::StreamCut).await;
        let client = client_for(&server);
        let items: Vec<_> = client
            .invoke(TENANT, "u", PROVIDER, "echo", Map::new(), params(json!({"text": "hi"})))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].as_ref().unwrap().text(), Some("hi"));
        assert!(matches!(items[1], Err(ClientError::PluginDaemonInnerError { .. })), "{:?}", items[1]);
    })
    .await
    .expect("bounded");
}
