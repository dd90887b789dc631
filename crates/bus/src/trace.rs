//! W3C trace context in message headers, so one deployment is one trace
//! across services. The propagator is whatever the process installed
//! globally (the telemetry setup installs `TraceContextPropagator`).

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Message headers carrying trace context (`traceparent`, `tracestate`).
pub type TraceHeaders = BTreeMap<String, String>;

/// The trace context of the current tracing span, as message headers. Empty
/// when no OpenTelemetry layer or propagator is installed.
pub fn current_trace_headers() -> TraceHeaders {
    let context = tracing::Span::current().context();
    let mut headers = TraceHeaders::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Carrier(&mut headers));
    });
    headers
}

/// Makes `span` a child of the trace context found in `headers`, if any.
pub(crate) fn set_parent(span: &tracing::Span, headers: &TraceHeaders) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Reader(headers))
    });
    // Fails only when no OpenTelemetry layer is installed: nothing to link then.
    let _ = span.set_parent(parent);
}

/// Links `span` to the trace context found in `headers`, if any (a batch
/// span has one parent but belongs to every message's trace).
pub(crate) fn add_link(span: &tracing::Span, headers: &TraceHeaders) {
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Reader(headers))
    });
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

struct Carrier<'a>(&'a mut TraceHeaders);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Reader<'a>(&'a TraceHeaders);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
