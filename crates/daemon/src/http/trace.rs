//! The trace of each request: the caller's `traceparent` (W3C) when valid, else a new trace; the
//! request runs inside a `request` span carrying `trace_id` (so every log line of it names the trace)
//! and with the context as the current trace (see [`crate::trace`]); the answer carries the daemon's
//! `traceparent` (same trace, the daemon's span id). With span export on ([`crate::telemetry`]) the
//! request is one server span (method, route, status, tenant, plugin) whose id is that span id and
//! whose parent is the caller's span; its sampling decision becomes the trace flags passed on.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use dify_protocol::access::DISPATCH_ROUTES;
use opentelemetry::KeyValue;
use tracing::Instrument;

use crate::telemetry::{self, Kind};
use crate::trace::TraceContext;

pub async fn propagate(request: Request, next: Next) -> Response {
    traced(request, |request| next.run(request)).await
}

/// [`propagate`] around any handler.
pub(super) async fn traced<F, Fut>(request: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let header = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    let caller = header.and_then(TraceContext::parse);
    let exporting = telemetry::enabled();
    let mut context = match &caller {
        Some(caller) => caller.child(),
        // A new trace: its first hop is this one (the same as a generated context's child).
        None => TraceContext::generate(),
    };
    let mut exported = if exporting {
        let (name, attributes) = span_of(&request);
        let span = telemetry::start(name, Kind::Server, &context, caller.as_ref().map(|c| c.span_id.as_str()), attributes);
        if let Some(sampled) = span.sampled() {
            context.flags = if sampled { context.flags | 1 } else { context.flags & !1 };
        }
        span
    } else {
        telemetry::SpanGuard::default()
    };
    let span = tracing::info_span!("request", trace_id = %context.trace_id);
    let traceparent = HeaderValue::from_str(&context.to_traceparent()).ok();
    let mut response = crate::trace::scope(context, handler(request)).instrument(span).await;
    if exporting {
        let status = response.status();
        exported.set_attribute("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            exported.set_error(status.to_string());
        }
    }
    if let Some(value) = traceparent {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

/// The span name (`METHOD /route/{param}`) and attributes of a request.
fn span_of(request: &Request) -> (String, Vec<KeyValue>) {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let route = request.extensions().get::<MatchedPath>().map(|m| concrete_route(m.as_str(), &path));
    let mut attributes = vec![KeyValue::new("http.request.method", method.clone()), KeyValue::new("url.path", path.clone())];
    if let Some(route) = &route {
        attributes.push(KeyValue::new("http.route", route.clone()));
    }
    // Tenant routes name the tenant in the path; `/v2` names it in the body (see the session span).
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if let (Some("plugin"), Some(tenant)) = (segments.next(), segments.next()) {
        attributes.push(KeyValue::new("tenant_id", tenant.to_string()));
    }
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    if let Some(identifier) = header("X-Plugin-Unique-Identifier") {
        attributes.push(KeyValue::new("plugin_unique_identifier", identifier.to_string()));
        let plugin_id = identifier.split(':').next().unwrap_or(identifier);
        attributes.push(KeyValue::new("plugin_id", plugin_id.to_string()));
    } else if let Some(plugin_id) = header("X-Plugin-ID") {
        attributes.push(KeyValue::new("plugin_id", plugin_id.to_string()));
    }
    let name = format!("{method} {}", route.as_deref().unwrap_or("(unmatched)"));
    (name, attributes)
}

/// The dispatch routers match `/dispatch/{*route}`; a known dispatch route is named in full
/// (`/plugin/{tenant_id}/dispatch/tool/invoke`), anything else keeps the template.
fn concrete_route(template: &str, path: &str) -> String {
    if let (Some(prefix), Some((_, suffix))) = (template.strip_suffix("/{*route}"), path.split_once("/dispatch/")) {
        let suffix = format!("/{suffix}");
        if DISPATCH_ROUTES.iter().any(|r| r.path == suffix) {
            return format!("{prefix}{suffix}");
        }
    }
    template.to_string()
}
