//! OpenTelemetry span export: with `ENABLE_OTEL=true` the daemon sends its spans over OTLP
//! (HTTP/protobuf) to `OTLP_TRACE_ENDPOINT`, else `OTLP_BASE_ENDPOINT` + `/v1/traces`. Without it no
//! exporter, provider or thread is built and [`start`] returns an inert [`SpanGuard`].
//!
//! The spans mirror the hops of [`crate::trace`]: each [`TraceContext`] hop (the request, its plugin
//! session, each backwards call) becomes one span whose trace id and span id are the hop's own, so the
//! `traceparent` the daemon answers with and sends on names exactly the exported spans.
//!
//! Owns: building the provider (sampler, batch processor with a bounded queue, exporter timeout),
//! starting spans for hops, and the bounded flush at shutdown. Must not: block a caller — a span's end
//! only enqueues it (dropped when the queue is full); exports run on the batch processor's own thread.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::Settings;
use crate::trace::TraceContext;

/// The service name spans are reported under (the upstream daemon's own).
pub const SERVICE_NAME: &str = "dify-plugin-daemon";

/// The only protocol exported.
const HTTP_PROTOBUF: &str = "http/protobuf";

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP span exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

struct Export {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static EXPORT: OnceLock<Export> = OnceLock::new();

/// What the exporter is built from (the `OTEL_*` / `OTLP_*` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// The full URL spans are posted to.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Ratio of new traces sampled; a caller's sampled flag decides for its trace.
    pub sampling_rate: f64,
    pub schedule_delay: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    /// Limit of one export request.
    pub export_timeout: Duration,
}

impl ExportSettings {
    /// The export settings, or `None` when `ENABLE_OTEL` is off.
    pub fn from_settings(settings: &Settings) -> Option<ExportSettings> {
        if !settings.enable_otel {
            return None;
        }
        let endpoint = match settings.otlp_trace_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            Some(endpoint) => endpoint.to_string(),
            None => format!("{}/v1/traces", settings.otlp_base_endpoint.trim().trim_end_matches('/')),
        };
        // Like upstream: a rate outside [0, 1] samples everything.
        let rate = settings.otel_sampling_rate;
        let sampling_rate = if (0.0..=1.0).contains(&rate) { rate } else { 1.0 };
        Some(ExportSettings {
            endpoint,
            api_key: settings.otel_api_key.clone().filter(|k| !k.is_empty()),
            sampling_rate,
            schedule_delay: Duration::from_millis(settings.otel_batch_export_schedule_delay.max(1)),
            max_queue_size: settings.otel_max_queue_size.max(1),
            max_export_batch_size: settings.otel_max_export_batch_size.max(1),
            export_timeout: Duration::from_millis(settings.otel_batch_export_timeout.max(1)),
        })
    }
}

/// Builds the exporter when `ENABLE_OTEL=true`; returns whether spans are exported. Called once at
/// start-up, from outside any span.
pub fn init(settings: &Settings) -> Result<bool, TelemetryError> {
    let Some(export) = ExportSettings::from_settings(settings) else {
        return Ok(false);
    };
    if !settings.otel_exporter_otlp_protocol.eq_ignore_ascii_case(HTTP_PROTOBUF) {
        tracing::warn!(
            protocol = %settings.otel_exporter_otlp_protocol,
            "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is implemented; exporting over HTTP/protobuf"
        );
    }
    install(&export)?;
    tracing::info!(endpoint = %export.endpoint, sampling_rate = export.sampling_rate, "exporting spans over OTLP");
    Ok(true)
}

fn install(export: &ExportSettings) -> Result<(), TelemetryError> {
    let mut headers = HashMap::new();
    if let Some(key) = &export.api_key {
        headers.insert("Authorization".to_string(), format!("Bearer {key}"));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(export.endpoint.clone())
        .with_timeout(export.export_timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| TelemetryError::Exporter { endpoint: export.endpoint.clone(), reason: e.to_string() })?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(export.max_queue_size)
        .with_max_export_batch_size(export.max_export_batch_size)
        .with_scheduled_delay(export.schedule_delay)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(export.sampling_rate))))
        .with_resource(Resource::builder_empty().with_service_name(SERVICE_NAME).build())
        .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, SERVICE_NAME);
    if EXPORT.set(Export { provider, tracer }).is_err() {
        tracing::warn!("the span exporter was already built; keeping the first");
    }
    Ok(())
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    EXPORT.get().is_some()
}

/// Sends what is queued and stops the exporter, waiting at most `budget`. A collector that does not
/// answer costs at most the budget; spans still queued then are lost.
pub async fn shutdown(budget: Duration) {
    let Some(export) = EXPORT.get() else { return };
    let provider = export.provider.clone();
    let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(budget));
    match tokio::time::timeout(budget + Duration::from_millis(200), flush).await {
        Ok(Ok(Ok(()))) => tracing::info!("span exporter flushed"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "span exporter did not flush cleanly"),
        Ok(Err(error)) => tracing::warn!(%error, "span exporter flush failed"),
        Err(_) => tracing::warn!("span exporter did not flush within the drain budget"),
    }
}

/// The kind of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request the daemon serves.
    Server,
    /// A call the daemon makes (backwards invocations).
    Client,
    /// Work inside the daemon (a plugin session).
    Internal,
}

/// A started span; it ends (and is queued for export) when dropped. Inert when export is off or the
/// trace is not sampled.
#[derive(Default)]
pub struct SpanGuard(Option<opentelemetry_sdk::trace::Span>);

impl SpanGuard {
    /// Adds an attribute (no-op when inert).
    pub fn set_attribute(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed.
    pub fn set_error(&mut self, message: impl Into<String>) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(message.into()));
        }
    }

    /// Whether the span is exported (`None` when export is off).
    pub fn sampled(&self) -> Option<bool> {
        self.0.as_ref().map(|span| span.span_context().is_sampled())
    }
}

fn trace_id(hex: &str) -> Option<TraceId> {
    TraceId::from_hex(hex).ok().filter(|id| *id != TraceId::INVALID)
}

fn span_id(hex: &str) -> Option<SpanId> {
    SpanId::from_hex(hex).ok().filter(|id| *id != SpanId::INVALID)
}

/// Starts the span of one hop: its trace id and span id are `hop`'s; `parent_span_id` (same trace) is
/// its parent, whose sampled flag is `hop.flags` (a caller's or the daemon's own decision). Without a
/// parent the span is a root and the sampling rate decides.
pub fn start(
    name: impl Into<String>,
    kind: Kind,
    hop: &TraceContext,
    parent_span_id: Option<&str>,
    attributes: Vec<KeyValue>,
) -> SpanGuard {
    let Some(export) = EXPORT.get() else { return SpanGuard(None) };
    let (Some(trace), Some(span)) = (trace_id(&hop.trace_id), span_id(&hop.span_id)) else {
        return SpanGuard(None);
    };
    let parent = match parent_span_id.and_then(span_id) {
        Some(parent) => {
            let flags = TraceFlags::new(hop.flags);
            Context::new().with_remote_span_context(SpanContext::new(trace, parent, flags, true, TraceState::default()))
        }
        None => Context::new(),
    };
    let kind = match kind {
        Kind::Server => SpanKind::Server,
        Kind::Client => SpanKind::Client,
        Kind::Internal => SpanKind::Internal,
    };
    let mut builder = SpanBuilder::from_name(name.into()).with_kind(kind).with_attributes(attributes);
    builder.trace_id = Some(trace);
    builder.span_id = Some(span);
    SpanGuard(Some(export.tracer.build_with_context(builder, &parent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_choose_the_endpoint_and_clamp_the_rate() {
        let mut settings = Settings::from_lookup(&|_| None).expect("defaults");
        assert_eq!(ExportSettings::from_settings(&settings), None, "off by default");
        settings.enable_otel = true;
        settings.otel_sampling_rate = 7.0;
        let export = ExportSettings::from_settings(&settings).expect("on");
        assert_eq!(export.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(export.sampling_rate, 1.0);
        assert_eq!(export.export_timeout, Duration::from_millis(10_000));
        settings.otlp_trace_endpoint = Some("http://collector:4318/custom".into());
        settings.otel_api_key = Some(String::new());
        let export = ExportSettings::from_settings(&settings).expect("on");
        assert_eq!(export.endpoint, "http://collector:4318/custom");
        assert_eq!(export.api_key, None);
    }

    #[test]
    fn spans_are_inert_without_an_exporter() {
        let hop = TraceContext::generate();
        let mut span = start("request", Kind::Server, &hop, None, vec![]);
        span.set_attribute("k", "v");
        span.set_error("boom");
        assert_eq!(span.sampled(), None);
    }
}
