//! The public endpoint proxy (`/e/...`) and `/v2/invoke/dispatch/...` in a cluster of three daemon
//! processes on PostgreSQL, Redis and moto S3 (the `cluster` module's set-up): a debugging plugin
//! (`tests/plugins/cluster_echo`, attached over TCP to one node) answers its endpoint and `/v2`
//! through every node, with the caller's request (headers, `Host`, body) reaching it unchanged and
//! the cluster's key never; a forged forwarded-by header is not trusted; `/v2` answers "no available
//! node" once no node serves the plugin; and an installed (local) plugin is reached through placement
//! on both routes.
//!
//! Without PostgreSQL, Redis or moto a test is skipped with a message, unless `CI` is set.

use crate::cluster::TestCluster;
use crate::common;
use crate::debug_support;
use crate::runtime_support;

use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use common::{assert_ok, Daemon};
use serde_json::{json, Value};

const INNER_KEY: &str = "inner-key-for-cluster-routes";
const CALLER_KEY: &str = "the caller's own key for the plugin";
const NO_NODE: &str = r#"{"code":-500,"message":"{\"message\":\"no available node, plugin runtime not found\",\"error_type\":\"PluginDaemonInternalServerError\",\"args\":null}","data":null}"#;

/// A stand-in for Dify's `/inner/api/invoke/encrypt` that keeps settings as they are. Returns its URL.
async fn plain_encrypt_api() -> String {
    let app = Router::new().route(
        "/inner/api/invoke/encrypt",
        post(|Json(body): Json<Value>| async move {
            let data = body["data"].as_object().cloned().unwrap_or_default();
            Json(json!({"data": {"data": data}, "error": ""}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake dify");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Status, headers and body of one answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    async fn of(request: reqwest::RequestBuilder) -> Answer {
        let response = request.timeout(Duration::from_secs(120)).send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body").to_vec();
        Answer { status, headers, body }
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// What the plugin's `/headers` endpoint saw: the value of header `name` (case-insensitive).
fn seen<'a>(echoed: &'a Value, name: &str) -> Option<&'a str> {
    echoed["headers"]
        .as_array()?
        .iter()
        .find_map(|pair| (pair[0].as_str()?.eq_ignore_ascii_case(name)).then(|| pair[1].as_str()).flatten())
}

/// The plugin saw neither cluster header, nor the server key anywhere.
fn assert_no_cluster_headers(echoed: &Value, server_key: &str, context: &str) {
    for name in ["x-dify-cluster-key", "x-dify-forwarded-by"] {
        assert_eq!(seen(echoed, name), None, "{context}: {name} reached the plugin: {echoed}");
    }
    assert!(!echoed.to_string().contains(server_key), "{context}: the server key reached the plugin: {echoed}");
}

/// `POST /v2/invoke/dispatch/tool/invoke` for `uid` through `node`.
async fn v2_tool(node: &Daemon, uid: &str, tenant: &str, provider: &str, tool: &str, parameters: Value) -> Answer {
    let body = json!({"tenant_id": tenant, "user_id": "user-1", "data": {"provider": provider, "tool": tool,
        "credentials": {}, "credential_type": "api-key", "tool_parameters": parameters}});
    Answer::of(
        node.client
            .post(node.url("/v2/invoke/dispatch/tool/invoke"))
            .header("X-Api-Key", &node.key)
            .header("X-Plugin-Unique-Identifier", uid)
            .json(&body),
    )
    .await
}

fn echo_line(text: &str) -> String {
    let data = json!({"type": "text", "message": {"text": format!("echo: {text}")}, "meta": null});
    format!("data: {}\n\n", json!({"code": 0, "message": "success", "data": data}))
}

/// Sets up an endpoint of `uid` for `tenant` through `node`; returns its hook id.
async fn setup_endpoint(node: &Daemon, tenant: &str, uid: &str, settings: Value) -> String {
    let setup = json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "hooks", "settings": settings});
    assert_eq!(assert_ok(&node.post(&format!("/plugin/{tenant}/endpoint/setup"), &setup).await), json!(true));
    let listed = assert_ok(&node.get(&format!("/plugin/{tenant}/endpoint/list?page=1&page_size=10")).await);
    listed[0]["hook_id"].as_str().expect("hook_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debugging_plugin_answers_its_endpoint_and_v2_through_every_node() {
    let dify = plain_encrypt_api().await;
    let env = [
        ("PLUGIN_REMOTE_INSTALLING_ENABLED", "true"),
        ("PLUGIN_REMOTE_INSTALLING_HOST", "127.0.0.1"),
        ("PLUGIN_REMOTE_INSTALLING_PORT", "0"),
        ("DIFY_INNER_API_URL", dify.as_str()),
        ("DIFY_INNER_API_KEY", INNER_KEY),
    ];
    let Some(cluster) = TestCluster::start(3, 6379, &env).await else { return };
    cluster.wait_registry(3).await;
    let holder = &cluster.nodes[1];
    let holder_id = cluster.node_id(1);
    let health: Value = holder.client.get(holder.url("/health/check")).send().await.expect("health").json().await.expect("json");
    let address = health["remote_debugging_address"].as_str().expect("debugging address").to_string();
    let tenant = debug_support::new_tenant();
    let key = debug_support::debugging_key(&cluster.nodes[0], &tenant).await;
    let mut plugin = debug_support::RemotePluginProcess::start("cluster_echo", &address, &key, &holder.workdir);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let uid = loop {
        let listed = cluster.nodes[0].list(&tenant).await;
        if let Some(entry) = listed.iter().find(|p| p["runtime_type"] == "remote") {
            break entry["plugin_unique_identifier"].as_str().expect("identifier").to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the debugging plugin never appeared; plugin log:\n{}\n{}",
            plugin.log_text(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let hook = setup_endpoint(&cluster.nodes[2], &tenant, &uid, json!({})).await;

    // The endpoint through every node: the plugin's status, header and body; the caller's headers
    // (its own X-Api-Key included) and Host reach the plugin, the cluster's never.
    for index in [0, 2, 1] {
        let node = &cluster.nodes[index];
        let answer = Answer::of(
            node.client
                .get(node.url(&format!("/e/{hook}/headers/a/b?x=1&x=2")))
                .header("X-Echo", format!("caller {index}"))
                .header("X-Api-Key", CALLER_KEY)
                .header("X-Forwarded-Proto", "https"),
        )
        .await;
        assert_eq!(answer.status, 203, "through node {index}: {}\n{}", answer.text(), cluster.logs());
        assert_eq!(answer.header("x-plugin-reply"), Some("get"), "through node {index}");
        assert_eq!(answer.header("content-type"), Some("application/json"), "through node {index}");
        let served_by = answer.header("x-dify-served-by");
        if index == 1 {
            assert_eq!(served_by, None, "the holder serves its own requests");
        } else {
            assert_eq!(served_by, Some(holder_id.as_str()), "node {index} forwards to the node holding the connection");
        }
        let echoed = answer.json();
        let host = format!("127.0.0.1:{}", node.port);
        assert_eq!((&echoed["method"], &echoed["path"]), (&json!("GET"), &json!("/headers/a/b")), "{echoed}");
        assert_eq!(echoed["query"], json!({"x": ["1", "2"]}));
        assert_eq!(seen(&echoed, "x-echo"), Some(format!("caller {index}").as_str()), "{echoed}");
        assert_eq!(seen(&echoed, "x-api-key"), Some(CALLER_KEY), "{echoed}");
        assert_eq!(seen(&echoed, "host"), Some(host.as_str()), "{echoed}");
        assert_eq!(seen(&echoed, "dify-hook-url"), Some(format!("https://{host}/e/{hook}/headers/a/b").as_str()), "{echoed}");
        assert_no_cluster_headers(&echoed, &node.key, &format!("through node {index}"));
    }

    // A POST body, and a 2.5 MiB streamed answer, through the nodes that forward.
    let node = &cluster.nodes[0];
    let answer = Answer::of(node.client.post(node.url(&format!("/e/{hook}/headers/up"))).body("posted through node 1")).await;
    assert_eq!((answer.status, answer.header("x-plugin-reply")), (203, Some("post")), "{}", answer.text());
    assert_eq!(answer.json()["body"], "posted through node 1");
    let node = &cluster.nodes[2];
    let answer = Answer::of(node.client.get(node.url(&format!("/e/{hook}/stream/40")))).await;
    assert_eq!((answer.status, answer.header("x-dify-served-by")), (200, Some(holder_id.as_str())), "{}", cluster.logs());
    assert_eq!(answer.body.len(), 40 * 65536);
    for (index, line) in answer.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        assert!(line.starts_with(format!("{index}:").as_bytes()) && line.len() == 65535, "piece {index} of the stream");
    }

    // The plugin's redirect comes back to the caller; the node in between does not follow it.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let answer = Answer::of(no_redirects.get(cluster.nodes[0].url(&format!("/e/{hook}/redirect")))).await;
    assert_eq!(
        (answer.status, answer.header("location"), answer.header("x-dify-served-by")),
        (302, Some("https://example.invalid/moved"), Some(holder_id.as_str())),
        "{}",
        answer.text()
    );

    // A forged forwarded-by header (with or without a wrong key) from an outside caller: the
    // request is routed as any other, and neither header reaches the plugin.
    for (index, headers) in [
        (0, vec![("X-Dify-Forwarded-By", "some-node")]),
        (2, vec![("X-Dify-Forwarded-By", "some-node"), ("X-Dify-Cluster-Key", "a guess")]),
        (1, vec![("X-Dify-Forwarded-By", "some-node"), ("X-Dify-Cluster-Key", "a guess")]),
    ] {
        let node = &cluster.nodes[index];
        let mut request = node.client.get(node.url(&format!("/e/{hook}/headers/forged")));
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let answer = Answer::of(request).await;
        assert_eq!(answer.status, 203, "forged through node {index}: {}", answer.text());
        let expected = (index != 1).then_some(holder_id.as_str());
        assert_eq!(answer.header("x-dify-served-by"), expected, "forged through node {index}");
        assert_no_cluster_headers(&answer.json(), &node.key, &format!("forged through node {index}"));
    }
    // The same on a dispatch route: a forged header is not trusted, the request is forwarded.
    let node = &cluster.nodes[0];
    let dispatch = json!({"user_id": "u", "data": {"provider": "cluster_echo", "tool": "echo", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"text": "forged"}}});
    let answer = Answer::of(
        node.client
            .post(node.url(&format!("/plugin/{tenant}/dispatch/tool/invoke")))
            .header("X-Api-Key", &node.key)
            .header("X-Plugin-ID", format!("{tenant}/cluster_echo"))
            .header("X-Dify-Forwarded-By", "some-node")
            .json(&dispatch),
    )
    .await;
    assert_eq!((answer.status, answer.text()), (200, echo_line("forged")), "{}", cluster.logs());
    assert_eq!(answer.header("x-dify-served-by"), Some(holder_id.as_str()));

    // /v2/invoke through every node: the tenant in the body need not be the plugin's.
    let other_tenant = debug_support::new_tenant();
    for index in [0, 2, 1] {
        let body_tenant = if index == 2 { other_tenant.as_str() } else { tenant.as_str() };
        let text = format!("v2 n{index}");
        let answer = v2_tool(&cluster.nodes[index], &uid, body_tenant, "cluster_echo", "echo", json!({"text": text})).await;
        assert_eq!((answer.status, answer.text()), (200, echo_line(&text)), "through node {index}\n{}", cluster.logs());
        let expected = (index != 1).then_some(holder_id.as_str());
        assert_eq!(answer.header("x-dify-served-by"), expected, "v2 through node {index}");
    }

    // The plugin gone: no node serves it, so every node answers "no available node".
    plugin.kill();
    let gone = debug_support::eventually(Duration::from_secs(20), || async {
        let answer = v2_tool(&cluster.nodes[0], &uid, &tenant, "cluster_echo", "echo", json!({"text": "gone"})).await;
        answer.status == 404 && answer.text() == NO_NODE
    })
    .await;
    assert!(gone, "node 1 never answered no available node\n{}", cluster.logs());
    for index in [1, 2] {
        let answer = v2_tool(&cluster.nodes[index], &uid, &tenant, "cluster_echo", "echo", json!({"text": "gone"})).await;
        assert_eq!((answer.status, answer.text()), (404, NO_NODE.to_string()), "through node {index}");
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_plugin_is_reached_through_placement_on_the_endpoint_and_v2_routes() {
    let dify = plain_encrypt_api().await;
    let env = [("PLUGIN_PLACEMENT_REPLICAS", "1"), ("DIFY_INNER_API_URL", dify.as_str()), ("DIFY_INNER_API_KEY", INNER_KEY)];
    let Some(cluster) = TestCluster::start(3, 6379, &env).await else { return };
    cluster.wait_registry(3).await;
    let tenant = debug_support::new_tenant();
    let (uid, task) = cluster.nodes[0].install_package(&tenant, &runtime_support::package_plugin("cluster_echo")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());
    let ids: Vec<String> = (0..3).map(|i| cluster.node_id(i)).collect();
    let infos: Vec<_> = ids.iter().map(|id| dify_daemon::coord::NodeInfo { id: id.clone(), url: String::new() }).collect();
    let owner = dify_daemon::coord::placement(&uid, &infos, 1)[0].id.clone();
    let hook = setup_endpoint(&cluster.nodes[1], &tenant, &uid, json!({})).await;

    for index in [0, 1, 2, 0, 1, 2] {
        let node = &cluster.nodes[index];
        let expected = (ids[index] != owner).then_some(owner.as_str());
        let text = format!("placed n{index}");
        let answer = v2_tool(node, &uid, &tenant, "cluster_echo", "echo", json!({"text": text})).await;
        assert_eq!((answer.status, answer.text()), (200, echo_line(&text)), "v2 through node {index}\n{}", cluster.logs());
        assert_eq!(answer.header("x-dify-served-by"), expected, "v2 through node {index}");

        let answer = Answer::of(node.client.get(node.url(&format!("/e/{hook}/headers/placed"))).header("X-Echo", text.as_str())).await;
        assert_eq!(answer.status, 203, "endpoint through node {index}: {}\n{}", answer.text(), cluster.logs());
        assert_eq!(answer.header("x-dify-served-by"), expected, "endpoint through node {index}");
        let echoed = answer.json();
        assert_eq!(seen(&echoed, "x-echo"), Some(text.as_str()));
        assert_no_cluster_headers(&echoed, &node.key, &format!("endpoint through node {index}"));
    }
    cluster.finish().await;
}
