//! Trace context (W3C `traceparent`): every HTTP request has a trace id, taken from the caller's
//! `traceparent` header when it is valid and generated otherwise. The id travels with the request
//! (a task-local set by the HTTP layer), into the plugin session ([`crate::session::SessionRequest`])
//! and out again as the `traceparent` of backwards calls to Dify's inner API, and every log line of
//! the request and its session carries it as the `trace_id` span field.
//!
//! Owns parsing, generating and rendering the header value and the task-local. Must not: export
//! spans (that is [`crate::telemetry`], which turns each hop into one span).

use std::future::Future;

/// One position in a trace: the trace id shared by every hop and this hop's span id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub span_id: String,
    /// The trace flags byte (bit 0: sampled).
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

fn is_hex_id(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) && text.bytes().any(|b| b != b'0')
}

/// `bytes` random bytes as lowercase hex, never all zeros. Ids only need to be unique, not secret:
/// they come from the thread's generator (seeded from the OS once), not from a system call each.
fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 16];
    let raw = &mut raw[..bytes.min(16)];
    let mut rng = rand::thread_rng();
    loop {
        rng.fill_bytes(raw);
        if raw.iter().any(|b| *b != 0) {
            break;
        }
    }
    let mut out = String::with_capacity(raw.len() * 2);
    for b in raw.iter() {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

impl TraceContext {
    /// Parses a `traceparent` value (`version-traceid-spanid-flags`, lowercase hex). Version `ff` and
    /// all-zero ids are invalid; a future version may carry more fields after the four.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version_ok = version.len() == 2 && version.bytes().all(|b| b.is_ascii_hexdigit()) && version != "ff";
        let extra_ok = parts.next().is_none() || version != "00";
        if !version_ok || !extra_ok || !is_hex_id(trace_id, 32) || !is_hex_id(span_id, 16) || flags.len() != 2 {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext { trace_id: trace_id.to_string(), span_id: span_id.to_string(), flags })
    }

    /// A new trace (random ids, sampled).
    pub fn generate() -> TraceContext {
        TraceContext { trace_id: random_hex(16), span_id: random_hex(8), flags: 1 }
    }

    /// The caller's context from its `traceparent` header, or a new trace when absent or invalid.
    pub fn from_header(header: Option<&str>) -> TraceContext {
        header.and_then(TraceContext::parse).unwrap_or_else(TraceContext::generate)
    }

    /// The same trace with a new span id: the daemon's hop, as it calls out.
    pub fn child(&self) -> TraceContext {
        TraceContext { trace_id: self.trace_id.clone(), span_id: random_hex(8), flags: self.flags }
    }

    /// The `traceparent` header value.
    pub fn to_traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        self.write_traceparent(&mut out);
        out
    }

    /// Appends the `traceparent` header value to `out`.
    pub fn write_traceparent(&self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.push_str("00-");
        out.push_str(&self.trace_id);
        out.push('-');
        out.push_str(&self.span_id);
        out.push('-');
        out.push(DIGITS[usize::from(self.flags >> 4)] as char);
        out.push(DIGITS[usize::from(self.flags & 0x0f)] as char);
    }
}

/// Runs `future` with `context` as the current trace.
pub async fn scope<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The current trace, when running inside [`scope`].
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).expect("valid");
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id, "00f067aa0ba902b7");
        assert_eq!(context.to_traceparent(), header);
        let child = context.child();
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
        assert!(is_hex_id(&child.span_id, 16));
        // A future version may append fields; version 00 may not.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        let generated = TraceContext::from_header(Some("garbage"));
        assert!(is_hex_id(&generated.trace_id, 32) && is_hex_id(&generated.span_id, 16));
        assert_ne!(generated.trace_id, TraceContext::generate().trace_id);
    }

    #[tokio::test]
    async fn the_current_trace_is_scoped() {
        assert!(current().is_none());
        let context = TraceContext::generate();
        let seen = scope(context.clone(), async { current() }).await;
        assert_eq!(seen, Some(context));
        assert!(current().is_none());
    }
}
