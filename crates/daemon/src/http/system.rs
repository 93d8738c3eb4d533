//! Unauthenticated system routes: `/health/check` (plain JSON, no envelope) and `/metrics`
//! (Prometheus text, when `PROMETHEUS_ENABLED`).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new().route("/health/check", get(health));
    if state.settings.prometheus_enabled {
        router = router.route("/metrics", get(metrics)).route("/metrics/", get(metrics));
    }
    router
}

async fn health(State(state): State<AppState>) -> Response {
    let total = state.settings.routine_pool_size.clamp(1, tokio::sync::Semaphore::MAX_PERMITS) as i64;
    let free = state.job_slots.available_permits() as i64;
    Json(json!({
        "status": "ok",
        "pool_status": {"free": free, "busy": (total - free).max(0), "total": total},
        "version": env!("CARGO_PKG_VERSION"),
        "build_time": option_env!("DIFY_BUILD_TIME").unwrap_or("unknown"),
        "platform": state.settings.platform,
        "active_requests": state.active_requests.load(Ordering::Relaxed),
        "active_dispatch_requests": state.active_dispatch_requests.load(Ordering::Relaxed),
        // Where plugins connect for remote debugging (null when that server does not run).
        "remote_debugging_address": state.runtime.debug_server_address().map(|a| a.to_string()),
        // Which plugin isolation layers are active (see the README's plugin isolation section).
        "sandbox": state.runtime.config().sandbox.report(),
    }))
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = [
        ("active_requests", "HTTP requests in flight.", state.active_requests.load(Ordering::Relaxed) as f64),
        ("active_dispatch_requests", "Plugin invocations in flight.", state.active_dispatch_requests.load(Ordering::Relaxed) as f64),
    ];
    let mut response = state.metrics.render(&gauges).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
