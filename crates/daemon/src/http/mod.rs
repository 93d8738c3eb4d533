//! The HTTP API: routing, the `X-Api-Key` check, the response envelope, the not-found body, panic
//! and request accounting middleware. Handlers are thin: bind the request, call a service, render.
//! The server runs [`Front`]: this router, with invocations taken on a direct path through the same
//! steps (see `front`).
//!
//! Only this module knows axum. It must not contain business rules or SQL.

mod admin;
mod bind;
mod dispatch;
mod endpoint;
mod endpoint_proxy;
mod forward;
mod front;
mod invoke_v2;
mod logs;
mod management;
mod openapi;
mod plugin_errors;
mod serverless;
mod status;
mod system;
mod trace;

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dify_protocol::{DaemonError, Envelope};
use futures::FutureExt;
use serde::Serialize;

pub use crate::service::state::AppState;
pub use front::Front;

/// Body of every unknown route (and wrong method), sent with HTTP 404.
pub const NOT_FOUND_BODY: &str = r#"{"code":"not_found","message":"route not found"}"#;

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// HTTP 200 with a success envelope around `data`.
pub fn ok<T: Serialize>(data: T) -> Response {
    match serde_json::to_vec(&Envelope::success(data)) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => fail(DaemonError::internal(format!("cannot encode response: {e}"))),
    }
}

/// HTTP 200 with an error envelope (how service-level failures travel, docs/http.md §A.3).
pub fn fail(err: DaemonError) -> Response {
    fail_with_status(StatusCode::OK, err)
}

/// An error envelope with an explicit HTTP status (middleware and binding failures).
pub fn fail_with_status(status: StatusCode, err: DaemonError) -> Response {
    json_response(status, err.to_envelope_json().into_bytes())
}

/// Renders a service result: success envelope or HTTP 200 error envelope.
pub fn respond<T: Serialize>(result: Result<T, DaemonError>) -> Response {
    match result {
        Ok(data) => ok(data),
        Err(e) => fail(e),
    }
}

async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, NOT_FOUND_BODY.as_bytes().to_vec())
}

/// Rejects requests whose `X-Api-Key` differs from the server key (HTTP 401, fixed body).
async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(refused) = api_key_refused(&state, request.headers()) {
        return refused;
    }
    next.run(request).await
}

/// The HTTP 401 answer when the request's `X-Api-Key` is not the server key.
fn api_key_refused(state: &AppState, headers: &axum::http::HeaderMap) -> Option<Response> {
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    if given.as_bytes() != state.server_key.as_bytes() {
        return Some(fail_with_status(StatusCode::UNAUTHORIZED, DaemonError::unauthorized()));
    }
    None
}

/// Counts requests in flight and per route, and turns a handler panic into a bare HTTP 500.
async fn account_and_recover(State(state): State<AppState>, request: Request, next: Next) -> Response {
    accounted(&state, request, |request| next.run(request)).await
}

/// [`account_and_recover`] around any handler: the request log line, the in-flight gauge, the
/// per-route metric, panic recovery.
async fn accounted<F, Fut>(state: &AppState, request: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    // Clones share the request's buffers (no copy); the log line and the metric borrow them.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let path = uri.path();
    // Route families keep the metric's label set small whatever ids the paths carry.
    let route = route_family(path);
    let skip_log = path == "/health/check" && !state.settings.health_api_log_enabled;
    state.active_requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let response = match std::panic::AssertUnwindSafe(handler(request)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(%method, %route, "request handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    state.active_requests.fetch_sub(1, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    if !skip_log {
        tracing::info!(%method, %path, status, elapsed_ms = elapsed * 1000.0, "request");
    }
    if state.settings.prometheus_enabled {
        state.metrics.observe_request(method.as_str(), route, status, elapsed);
    }
    response
}

/// Largest plain-text rejection body turned into an envelope (axum's rejection texts are short).
const MAX_REJECTION_TEXT: usize = 64 * 1024;

/// Turns the plain-text error answers axum's extractors produce (an invalid UTF-8 path segment, a
/// body over the limit, an unreadable body) into the daemon's JSON envelope, keeping their status:
/// `PluginDaemonBadRequestError` as upstream's binding failures, `PluginDaemonInternalServerError`
/// for a 5xx. Plugin endpoint answers (`/e/...`) are the plugin's own and pass untouched.
async fn envelope_rejections(request: Request, next: Next) -> Response {
    let proxied = request.uri().path().starts_with("/e/");
    let response = next.run(request).await;
    if proxied {
        return response;
    }
    envelope_rejection(response).await
}

/// The envelope of [`envelope_rejections`] for a plain-text 4xx/5xx answer; any other answer as is.
async fn envelope_rejection(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/plain"));
    if !plain {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_REJECTION_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() { status.canonical_reason().unwrap_or("bad request").to_string() } else { text };
    let error = if status.is_server_error() { DaemonError::internal(text) } else { DaemonError::bad_request(text) };
    fail_with_status(status, error)
}

fn route_family(path: &str) -> &'static str {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.nth(1)) {
        (Some("plugin"), Some("management")) => "management",
        (Some("plugin"), Some("dispatch")) => "dispatch",
        (Some("plugin"), Some("endpoint")) => "endpoint",
        (Some("plugin"), Some(_)) => "plugin",
        (Some("health"), _) => "health",
        (Some("metrics"), _) => "metrics",
        (Some("e"), _) => "endpoint_invoke",
        (Some("v2"), _) => "v2_invoke",
        (Some("admin"), _) => "admin",
        _ => "other",
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    plugin_errors::remember_host_paths(&state.settings);
    let tenant = management::routes(&state).merge(endpoint::routes()).merge(dispatch_routes()).merge(logs::routes());
    let tenant = tenant.route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));

    Router::new()
        .nest("/plugin/{tenant_id}", tenant)
        .nest("/v2/invoke", invoke_v2::routes())
        .merge(system::routes(&state))
        .merge(openapi::routes())
        .merge(status::routes(&state))
        .merge(serverless::routes(&state))
        .merge(admin::routes(&state))
        .merge(endpoint_proxy::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn(envelope_rejections))
        .layer(middleware::from_fn_with_state(state.clone(), account_and_recover))
        .layer(middleware::from_fn(trace::propagate))
        .with_state(state)
}

/// The invocation routes (`/plugin/{tenant_id}/dispatch/...`), owned by the dispatch module.
fn dispatch_routes() -> Router<AppState> {
    dispatch::routes()
}

/// A header map of `(name, value)` pairs in order (repeated names kept), for tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> axum::http::HeaderMap {
    let mut map = axum::http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), axum::http::HeaderValue::from_str(value).unwrap());
    }
    map
}
