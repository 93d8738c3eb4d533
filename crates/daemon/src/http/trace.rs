//! The trace of each request: the caller's `traceparent` (W3C) when valid, else a new trace; the
//! request runs inside a `request` span carrying `trace_id` (so every log line of it names the trace)
//! and with the context as the current trace (see [`crate::trace`]); the answer carries the daemon's
//! `traceparent` (same trace, the daemon's span id).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::trace::TraceContext;

pub async fn propagate(request: Request, next: Next) -> Response {
    let header = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    let caller = TraceContext::from_header(header);
    let context = caller.child();
    let span = tracing::info_span!("request", trace_id = %context.trace_id);
    let mut response = crate::trace::scope(context.clone(), next.run(request)).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&context.to_traceparent()) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}
