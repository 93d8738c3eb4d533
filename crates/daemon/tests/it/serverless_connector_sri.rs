//! The SRI client against connectors that differ from the reference one in the ways a connector
//! written from the SRI document does: a ping answered with a bare `pong` (not the JSON string) is
//! refused with the body shown as received, and a launch stream that ends without its `end` stage
//! yields no function (upstream saves the function only on `end`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::routing::post;
use axum::Router;
use dify_daemon::runtime::serverless::{ConnectorClient, ServerlessConfig, ServerlessError};
use dify_protocol::PluginUniqueIdentifier;

async fn connector(ping_body: &'static str, launch_lines: Vec<String>) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().route("/ping", post(move || async move { ping_body })).route(
        "/v1/launch",
        post(move || {
            let lines = launch_lines.clone();
            async move { Body::from(Bytes::from(lines.concat())) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

fn client(url: &str) -> ConnectorClient {
    ConnectorClient::new(&ServerlessConfig {
        connector_url: url.to_string(),
        connector_api_key: "k".into(),
        launch_timeout: Duration::from_secs(10),
        transaction_timeout: Duration::from_secs(5),
        max_retry_times: 1,
        max_request_bytes: 1024,
        execution_timeout: Duration::from_secs(5),
        max_line_bytes: 1024,
    })
}

fn stage(stage: &str, state: &str, message: &str) -> String {
    format!("data: {}\n\n", serde_json::json!({"Stage": stage, "State": state, "Obj": "", "Message": message}))
}

#[tokio::test]
async fn a_bare_pong_is_refused_and_shown_as_received() {
    let (url, _server) = connector("pong", Vec::new()).await;
    let error = client(&url).ping().await.expect_err("a bare pong is not the JSON string");
    assert_eq!(
        error.to_string(),
        "unexpected response from serverless connector: ping answered `pong` instead of the JSON string \"pong\""
    );
    let (url, _server) = connector("\"pong\"", Vec::new()).await;
    client(&url).ping().await.expect("the JSON string pong");
}

#[tokio::test]
async fn a_launch_without_its_end_stage_yields_no_function() {
    let identifier = PluginUniqueIdentifier::parse(&format!("testing/sri:0.0.1@{}", "b".repeat(64))).expect("identifier");
    let success = stage("run", "success", "endpoint=http://127.0.0.1:1, name=fn-x, id=drn:x");
    let (progress, _lines) = tokio::sync::mpsc::unbounded_channel();

    let (url, _server) = connector("\"pong\"", vec![stage("start", "running", ""), success.clone()]).await;
    let error = client(&url).launch(&identifier, "f.difypkg", b"zip", false, &progress).await.expect_err("no end stage");
    assert_eq!(error, ServerlessError::LaunchIncomplete);

    let (url, _server) = connector("\"pong\"", vec![stage("start", "running", ""), success, stage("end", "success", "")]).await;
    let function = client(&url).launch(&identifier, "f.difypkg", b"zip", false, &progress).await.expect("complete launch");
    assert_eq!((function.url.as_str(), function.name.as_str()), ("http://127.0.0.1:1", "fn-x"));
}
