//! Trace context crosses the bus: the handler's span belongs to the trace of
//! the span that published, on both transports.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;

use common::*;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use slipway_bus::{FnHandler, QueueName, Transport, current_trace_headers};
use slipway_messages::{Envelope, Role};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

on_both_transports!(handler_span_joins_the_publishers_trace);

/// One global subscriber with an OpenTelemetry layer exporting to memory, and
/// the W3C propagator, as the services' telemetry setup installs them.
fn telemetry() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bus-test")))
            .init();
        exporter
    })
}

fn ids_of_current_span() -> (TraceId, SpanId) {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    (span_context.trace_id(), span_context.span_id())
}

async fn handler_span_joins_the_publishers_trace(transport: Transport) {
    let exporter = telemetry();
    let t = test_bus(transport).await;
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let handler = FnHandler(move |envelope: Envelope| {
        tx.send((envelope.message_id, ids_of_current_span()))
            .unwrap();
        async { Ok(()) }
    });
    let (_stop, _task) = spawn_consumer(&t.bus, QueueName::Role(Role::Exporter), handler);

    let envelope = export_command();
    let (headers, (trace_id, publisher_span)) = async {
        t.bus.publish(&envelope).await.unwrap();
        (current_trace_headers(), ids_of_current_span())
    }
    .instrument(tracing::info_span!("deploy"))
    .await;
    assert_ne!(trace_id, TraceId::INVALID, "the test span is recorded");
    let traceparent = headers.get("traceparent").expect("a traceparent header");
    assert!(traceparent.contains(&trace_id.to_string()), "{traceparent}");

    let (_, (handler_trace, handler_span)) = next_matching(&mut seen, "the delivery", |(id, _)| {
        *id == envelope.message_id
    })
    .await;
    assert_eq!(
        handler_trace, trace_id,
        "the handler runs in the publisher's trace"
    );
    assert_ne!(handler_span, publisher_span, "in a span of its own");

    eventually(
        "the handler span exported as a child of the publisher's",
        || async {
            exporter.get_finished_spans().unwrap().iter().any(|span| {
                span.name == "bus.handle"
                    && span.span_context.span_id() == handler_span
                    && span.parent_span_id == publisher_span
            })
        },
    )
    .await;
}
