//! The direct invocation API `/v2/invoke/...` (docs/v2-invoke.md): every dispatch route of the
//! route table except the two model polling routes, under `/v2/invoke/dispatch`, plus
//! `GET /v2/invoke/extract`. Requests name the plugin version in the `X-Plugin-Unique-Identifier`
//! header instead of a tenant's installation, and carry the tenant in the body's `tenant_id`.
//!
//! In a cluster a request for a version that another node serves (placement, or the debugging
//! connection) is forwarded there through `http::forward` before the presence check.
//!
//! Owns: the header checks, the "is the plugin here" answer (HTTP 404 `no available node, …`),
//! binding the body (`tenant_id` and `data` required) and mapping invocation failures to upstream's
//! statuses. Answers are rendered by the dispatch module's SSE / single-JSON functions. Must not:
//! talk to runtimes (the invocation service does) or read packages (the packages service does).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use dify_protocol::access::{find_dispatch_route, DispatchRoute, ResponseMode};
use dify_protocol::message::InvocationContext;
use dify_protocol::{DaemonError, PluginUniqueIdentifier};
use serde_json::{Map, Value};

use super::dispatch::{event_stream, plain_json, single_json, sse_body, sse_line};
use super::forward::{self, ForwardRequest};
use super::{fail_with_status, respond, AppState, NOT_FOUND_BODY};
use crate::config::Platform;
use crate::service::invocation::{find_runtime, Invocation, InvocationError, PluginRuntime};
use crate::service::Installation;
use crate::session::ChunkShaper;
use crate::store::RuntimeType;

/// The header naming the plugin version on every `/v2/invoke` route.
pub const UNIQUE_IDENTIFIER_HEADER: &str = "X-Plugin-Unique-Identifier";

/// Actions the table serves under `/plugin/{tenant}/dispatch` only (upstream registers the model
/// polling routes outside the generated group that `/v2/invoke/dispatch` shares).
const TENANT_ONLY_ACTIONS: &[&str] = &["start_polling", "check_polling"];

/// The routes, to be nested under `/v2/invoke`. Each handler checks `X-Api-Key` itself, after the
/// route is known: an unknown route is the not-found body whatever the key (upstream's router answers
/// it before any middleware runs).
pub fn routes() -> Router<AppState> {
    Router::new().route("/dispatch/{*route}", post(dispatch)).route("/extract", get(extract))
}

/// The `X-Api-Key` check of the `/v2/invoke` group (HTTP 401, fixed body).
fn key_refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    (given.as_bytes() != state.server_key.as_bytes()).then(|| fail_with_status(StatusCode::UNAUTHORIZED, DaemonError::unauthorized()))
}

/// The dispatch route a `/v2/invoke/dispatch{path}` request addresses, if it serves one.
pub fn v2_route(path: &str) -> Option<&'static DispatchRoute> {
    find_dispatch_route(path).filter(|route| !TENANT_ONLY_ACTIONS.contains(&route.action))
}

/// The identifier from the header: missing → 400 bad request, unparsable → 400 identifier error.
#[allow(clippy::result_large_err)]
fn identifier_from(headers: &HeaderMap) -> Result<PluginUniqueIdentifier, Response> {
    let raw = headers.get(UNIQUE_IDENTIFIER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if raw.is_empty() {
        return Err(fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request("X-Plugin-Unique-Identifier header is required")));
    }
    PluginUniqueIdentifier::parse(raw).map_err(|e| fail_with_status(StatusCode::BAD_REQUEST, DaemonError::unique_identifier(e.to_string())))
}

async fn extract(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = key_refused(&state, &headers) {
        return refused;
    }
    let uid = match identifier_from(&headers) {
        Ok(uid) => uid,
        Err(response) => return response,
    };
    respond(crate::service::extract::extract_schema(&state, &uid).await)
}

async fn dispatch(State(state): State<AppState>, Path(params): Path<HashMap<String, String>>, headers: HeaderMap, body: Bytes) -> Response {
    let route_path = format!("/{}", params.get("route").map(String::as_str).unwrap_or_default());
    let Some(route) = v2_route(&route_path) else {
        return plain_json(StatusCode::NOT_FOUND, NOT_FOUND_BODY.to_string());
    };
    if let Some(refused) = key_refused(&state, &headers) {
        return refused;
    }
    state.active_dispatch_requests.fetch_add(1, Ordering::Relaxed);
    let response = dispatch_route(&state, route, &headers, &body).await;
    state.active_dispatch_requests.fetch_sub(1, Ordering::Relaxed);
    response
}

/// What the stored rows say about a version, for finding or lazily launching its runtime.
async fn target(state: &AppState, uid: &PluginUniqueIdentifier, tenant_id: &str) -> Installation {
    let runtime_type = match state.db.plugin(uid.as_str()).await {
        Ok(Some(record)) => RuntimeType::parse(&record.install_type),
        _ => None,
    };
    let declaration = crate::service::load_declaration(state, uid.as_str()).await.ok().flatten();
    Installation {
        id: String::new(),
        tenant_id: tenant_id.to_string(),
        plugin_id: uid.plugin_id().to_string(),
        plugin_unique_identifier: uid.clone(),
        runtime_type,
        source: String::new(),
        meta: Value::Object(Map::new()),
        declaration,
    }
}

/// `target` as the cluster routes it: a debugging plugin's connection is registered under the
/// tenant that attached it (the identifier's author), whatever tenant the body names.
fn routing_target<'a>(target: &'a Installation, uid: &PluginUniqueIdentifier) -> Cow<'a, Installation> {
    if !uid.is_remote() {
        return Cow::Borrowed(target);
    }
    let mut routed = target.clone();
    routed.tenant_id = uid.author().to_string();
    routed.runtime_type = Some(RuntimeType::Remote);
    Cow::Owned(routed)
}

/// Upstream's redirect step: on the local platform (and for debugging plugins anywhere) a plugin
/// whose runtime is not on this node is answered with HTTP 404 `no available node, …`.
fn needs_presence(state: &AppState, uid: &PluginUniqueIdentifier) -> bool {
    uid.is_remote() || state.settings.platform() != Platform::Serverless
}

fn no_available_node() -> Response {
    fail_with_status(StatusCode::NOT_FOUND, DaemonError::internal("no available node, plugin runtime not found"))
}

/// Validation messages in the Go validator's wording, all failures joined by newlines.
fn validation_failures(request: &Map<String, Value>, route: &DispatchRoute) -> Result<Map<String, Value>, String> {
    let mut failures = Vec::new();
    if request.get("tenant_id").and_then(Value::as_str).unwrap_or("").is_empty() {
        failures.push(
            "Key: 'InvokePluginRequest.InvokePluginUserIdentity.TenantId' Error:Field validation for 'TenantId' failed on the 'required' tag"
                .to_string(),
        );
    }
    let data = match request.get("data") {
        Some(Value::Object(data)) => Some(data.clone()),
        _ => {
            failures.push("Key: 'InvokePluginRequest.Data' Error:Field validation for 'Data' failed on the 'required' tag".to_string());
            None
        }
    };
    if let Some(data) = &data {
        if let Err(message) = route.validate(data) {
            failures.push(message);
        }
    }
    match data {
        Some(data) if failures.is_empty() => Ok(data),
        _ => Err(failures.join("\n")),
    }
}

async fn dispatch_route(state: &AppState, route: &'static DispatchRoute, headers: &HeaderMap, body: &Bytes) -> Response {
    let uid = match identifier_from(headers) {
        Ok(uid) => uid,
        Err(response) => return response,
    };
    let request: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_owned);
    let tenant_id = text("tenant_id").unwrap_or_default();
    let target = target(state, &uid, &tenant_id).await;

    // In a cluster the version may be placed on (or, debugging, connected to) another node: routed
    // before the presence check, so "no available node" means no live node serves it.
    let forwarded = forward::is_forwarded(state, headers);
    let elsewhere = || ForwardRequest::invocation(state, format!("/v2/invoke/dispatch{}", route.path), headers, body.clone());
    if let Some(response) = forward::serve_elsewhere(state, &routing_target(&target, &uid), forwarded, elsewhere).await {
        return response;
    }

    // Presence first (upstream's redirect middleware runs before the body is bound).
    let mut runtime: Option<PluginRuntime> = None;
    if needs_presence(state, &uid) {
        match find_runtime(state, &target).await {
            Ok(found) => runtime = Some(found),
            Err(_) => return no_available_node(),
        }
    }

    let mut data = match validation_failures(&request, route) {
        Ok(data) => data,
        Err(message) => return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request(message)),
    };
    route.complete_payload(&mut data);

    let runtime = match runtime {
        Some(runtime) => runtime,
        None => match find_runtime(state, &target).await {
            Ok(runtime) => runtime,
            Err(error) => return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string())),
        },
    };
    let invocation = Invocation {
        user_id: text("user_id").unwrap_or_default(),
        access_type: route.access_type,
        action: route.action.to_string(),
        payload: data.into(),
        context: InvocationContext {
            conversation_id: text("conversation_id"),
            message_id: text("message_id"),
            app_id: text("app_id"),
            endpoint_id: text("endpoint_id"),
            context: request.get("context").filter(|c| !c.is_null()).cloned(),
        },
    };
    let session = match runtime.start(state, invocation).await {
        Ok(session) => session,
        Err(error @ (InvocationError::NoRuntime | InvocationError::Unavailable(_))) => {
            return fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(error.to_string()))
        }
        Err(InvocationError::Start(error)) => {
            let line = sse_line(&DaemonError::internal(error.to_string()).to_envelope_json());
            return event_stream(Body::from(line));
        }
    };
    match route.response {
        ResponseMode::EventStream => event_stream(sse_body(session, ChunkShaper::new(route.chunks)).await),
        ResponseMode::SingleJson => single_json(session, ChunkShaper::new(route.chunks)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_routes_are_tenant_only() {
        assert!(v2_route("/model/polling/start").is_none());
        assert!(v2_route("/model/polling/check").is_none());
        assert!(v2_route("/agent_strategy/invoke").is_some());
        assert!(v2_route("/tool/invoke").is_some());
    }
}
