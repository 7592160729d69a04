//! The tracing subscriber (text or JSON lines on stderr, filtered by
//! `RUST_LOG`, default `info`), stage timings, and errors as one line.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls do nothing. Colours
/// only on a terminal: in files and log collectors escape codes are noise.
pub fn init(format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

/// Runs a stage of the batch path and records its duration.
pub async fn timed<T>(stage: &'static str, work: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = work.await;
    metrics::histogram!("procinst_stage_seconds", "stage" => stage)
        .record(started.elapsed().as_secs_f64());
    out
}

pub fn timed_sync<T>(stage: &'static str, work: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = work();
    metrics::histogram!("procinst_stage_seconds", "stage" => stage)
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
