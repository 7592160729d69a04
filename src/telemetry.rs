//! The tracing subscriber (text or JSON lines on stderr, filtered by
//! `RUST_LOG`, default `info`), OpenTelemetry spans, stage timings, and
//! errors as one line.
//!
//! Every request gets a span with a W3C trace id, whether or not spans are
//! exported: its reply and dead-letter copy carry the `traceparent`, and its
//! log lines the `trace_id`. Spans leave the process over OTLP/HTTP only
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; the
//! other standard `OTEL_*` variables (protocol, headers, timeout, batch
//! delays, service name) are read by the OpenTelemetry SDK.

use std::io::IsTerminal;

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::{EnvFilter, filter::Targets, fmt, prelude::*};

/// Log line format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The span pipeline; [`Telemetry::shutdown`] sends what is still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes and stops span export; call once, before the process exits.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("procinst: spans not exported at exit: {e}");
        }
    }
}

/// Installs the global subscriber and propagator. Colours only on a
/// terminal: in files and log collectors escape codes are noise.
///
/// `RUST_LOG` filters log lines only: the spans of procinst are always
/// made, so that trace context flows whatever the log level. Call before
/// starting a Tokio runtime (the OTLP HTTP client is a blocking one).
pub fn init(format: LogFormat) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider();
    // A span per request is made whatever the log level: it carries only
    // what a trace needs. Source locations, thread names and busy/idle
    // timings would be attributes (and allocations) on every one of them.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("procinst"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target("procinst", Level::INFO));
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(spans);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_ansi(false)
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter()),
            )
            .try_init(),
    };
    Telemetry { provider }
}

/// Crates whose debug and trace lines print SQL parameters or message
/// contents: held at `info` unless `RUST_LOG` names them, so that
/// `RUST_LOG=debug` shows procinst's own detail and no request data.
const QUIET_UNLESS_NAMED: [&str; 3] = ["tokio_postgres", "lapin", "amq_protocol"];

/// The log line filter: `RUST_LOG`, default `info`, with
/// [`QUIET_UNLESS_NAMED`] held at `info`.
fn log_filter() -> EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_new(&spec)
        .ok()
        .filter(|_| !spec.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for target in QUIET_UNLESS_NAMED {
        if !spec.contains(target)
            && let Ok(directive) = format!("{target}=info").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Environment variables that switch span export on.
const EXPORT_ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

fn tracer_provider() -> SdkTracerProvider {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("procinst");
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    let export = EXPORT_ENDPOINTS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if export {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => eprintln!("procinst: spans will not be exported: {e}"),
        }
    }
    builder.build()
}

/// Runs a stage of a lane's batch path and records its duration.
pub async fn timed<T>(
    stage: &'static str,
    lane: &'static str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    let out = work.await;
    metrics::histogram!("procinst_stage_seconds", "stage" => stage, "lane" => lane)
        .record(started.elapsed().as_secs_f64());
    out
}

pub fn timed_sync<T>(stage: &'static str, lane: &'static str, work: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = work();
    metrics::histogram!("procinst_stage_seconds", "stage" => stage, "lane" => lane)
        .record(started.elapsed().as_secs_f64());
    out
}

/// An error with its causes, one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
