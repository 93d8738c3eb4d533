//! slim's remote mode: one `POST <daemon>/v2/invoke/dispatch<route>` with `X-Api-Key` and
//! `X-Plugin-Unique-Identifier`; every `data: ` line of the answer is printed as a `chunk` event (the
//! daemon's envelope as it is), then `done`. A non-200 answer is a `DAEMON_ERROR`, a transport failure
//! a `NETWORK_ERROR`. Also the daemon side of `slim extract` (`GET /v2/invoke/extract`).

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::{lookup_route, ErrorCode, InvokeContext, OutputWriter, RemoteConfig, SlimError};

/// Upstream's client timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

fn client() -> Result<reqwest::Client, SlimError> {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .map_err(|e| SlimError::new(ErrorCode::Network, e.to_string()))
}

fn base(remote: &RemoteConfig) -> String {
    remote.daemon_addr.trim_end_matches('/').to_string()
}

fn network(error: reqwest::Error) -> SlimError {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    SlimError::new(ErrorCode::Network, text)
}

/// Invokes through the daemon and prints the answer.
pub async fn run_remote(context: &InvokeContext, remote: &RemoteConfig, out: &mut OutputWriter) -> Result<(), SlimError> {
    let route = lookup_route(&context.action).ok_or_else(|| SlimError::new(ErrorCode::UnknownAction, context.action.clone()))?;
    let url = format!("{}/v2/invoke/dispatch{}", base(remote), route.path);
    let response = client()?
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Api-Key", &remote.daemon_key)
        .header("X-Plugin-Unique-Identifier", &context.plugin_id)
        .body(context.request_body().to_string())
        .send()
        .await
        .map_err(network)?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        return Err(SlimError::new(ErrorCode::Daemon, format!("status {status}: {body}")));
    }
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => return Err(SlimError::new(ErrorCode::StreamRead, network(error).message)),
            None => break,
        };
        pending.extend_from_slice(&chunk);
        while let Some(index) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=index).collect();
            handle_line(&line, out).map_err(|e| e.unwrap_or_else(write_failed))?;
        }
    }
    if !pending.is_empty() {
        handle_line(&pending, out).map_err(|e| e.unwrap_or_else(write_failed))?;
    }
    out.done().map_err(write_failed)?;
    Ok(())
}

fn write_failed(error: std::io::Error) -> SlimError {
    SlimError::new(ErrorCode::StreamRead, error.to_string())
}

/// One line of the SSE answer: `data: <json>` becomes a chunk event; other lines are skipped.
fn handle_line(line: &[u8], out: &mut OutputWriter) -> Result<(), Result<SlimError, std::io::Error>> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches(['\n', '\r']);
    let Some(payload) = line.strip_prefix("data: ") else { return Ok(()) };
    let value: Value =
        serde_json::from_str(payload).map_err(|_| Ok(SlimError::new(ErrorCode::StreamParse, "invalid JSON in SSE frame")))?;
    out.chunk(value).map_err(Err)
}

/// `GET /v2/invoke/extract`: the daemon's `{unique_identifier, manifest, verification}`.
pub async fn extract(remote: &RemoteConfig, plugin_id: &str) -> Result<Value, SlimError> {
    let response = client()?
        .get(format!("{}/v2/invoke/extract", base(remote)))
        .header("X-Api-Key", &remote.daemon_key)
        .header("X-Plugin-Unique-Identifier", plugin_id)
        .send()
        .await
        .map_err(network)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| SlimError::new(ErrorCode::Network, format!("read daemon response: {e}")))?;
    if status != 200 {
        return Err(SlimError::new(ErrorCode::Daemon, format!("status {status}: {body}")));
    }
    let parsed: Value = serde_json::from_str(&body)
        .map_err(|e| SlimError::new(ErrorCode::StreamParse, format!("invalid JSON response from daemon: {e}")))?;
    if parsed["code"].as_i64() != Some(0) {
        return Err(SlimError::new(ErrorCode::Daemon, parsed["message"].as_str().unwrap_or_default()));
    }
    Ok(parsed["data"].clone())
}
