//! Logs and traces for every Slipway process.
//!
//! - Logs go to standard error, readable by default, one JSON object per
//!   line with `telemetry.log_format = "json"`.
//! - Spans are exported over OTLP/HTTP when `telemetry.otlp_endpoint` is
//!   set, under the process's service name, so a tracing backend (Jaeger,
//!   an OpenTelemetry collector) shows one deployment as one trace.
//! - Exported spans pass the same `telemetry.log_filter` as logs.
//! - The W3C trace-context propagator is always installed: without it no
//!   `traceparent` header is ever written, and traces stop at each service.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

use crate::config::{LogFormat, OtlpProtocol, TelemetryConfig};

/// Keeps the span exporter alive; dropping it flushes the spans not yet sent.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("slipway: could not flush the last spans: {err}");
        }
    }
}

/// Install the global subscriber and propagator for `service_name`.
/// Call once, at the start of `main`.
pub fn init(service_name: &str, config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter).with_context(|| {
        format!(
            "telemetry.log_filter `{}` is not a valid filter",
            config.log_filter
        )
    })?;
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = match &config.otlp_endpoint {
        Some(endpoint) if !endpoint.trim().is_empty() => Some(tracer_provider(
            service_name,
            endpoint,
            config.otlp_protocol,
        )?),
        _ => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("slipway"))
            .with_filter(EnvFilter::new(&config.log_filter))
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .context("a global tracing subscriber was already installed")?;
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(
    service_name: &str,
    endpoint: &str,
    protocol: OtlpProtocol,
) -> anyhow::Result<SdkTracerProvider> {
    // An https collector needs a TLS crypto provider; ring is the one the
    // workspace builds with. A second install attempt is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_protocol(match protocol {
            OtlpProtocol::Protobuf => Protocol::HttpBinary,
            OtlpProtocol::Json => Protocol::HttpJson,
        })
        .build()
        .with_context(|| format!("cannot build the OTLP exporter for {url}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}
