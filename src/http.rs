//! `/metrics`, `/healthz` and `/readyz` on `PROCINST_HTTP_ADDR`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, extract::State, http::StatusCode, routing::get};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::worker::Health;

/// How long `/readyz` waits for a database answer.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    pool: Pool,
    metrics: PrometheusHandle,
}

/// Installs the global Prometheus recorder, with histogram buckets suited to
/// batch sizes and latencies.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("procinst_batch_size".into()),
            &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )?
        .install_recorder()?;
    describe_metrics();
    Ok(handle)
}

/// Counters that only move when something goes wrong, shown at zero from
/// the start, so that dashboards and alerts (`deploy/`) see the series
/// before the first incident. Labelled series appear with their first use.
const COUNTERS: [(&str, &str); 11] = [
    (
        "procinst_db_retries_total",
        "Batches retried after database trouble",
    ),
    (
        "procinst_races_total",
        "Batches decided again after losing a race to another writer",
    ),
    (
        "procinst_unread_collisions_total",
        "Rounds decided again because, written without reading the existing processes, they met one",
    ),
    (
        "procinst_contended_batches_total",
        "Batches handed back after losing races too often",
    ),
    ("procinst_reconnects_total", "Broker reconnect attempts"),
    (
        "procinst_stalls_total",
        "Sessions ended because they held deliveries and finished none for two minutes, with nothing to explain it",
    ),
    (
        "procinst_broker_blocked_seconds_total",
        "Seconds the broker blocked the worker's publishes (a memory or disk alarm), in whole seconds",
    ),
    (
        "procinst_redeliveries_total",
        "Deliveries flagged redelivered by the broker",
    ),
    (
        "procinst_publish_nacks_total",
        "Publishes refused by the broker",
    ),
    ("procinst_processes_created_total", "Processes created"),
    (
        "procinst_stored_replies_total",
        "Stored replies sent again for a repeated request_id",
    ),
];

fn describe_metrics() {
    for (name, help) in COUNTERS {
        metrics::describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    metrics::describe_counter!(
        "procinst_requests_total",
        "Requests handled, by outcome, code and lane"
    );
    metrics::describe_counter!(
        "procinst_dead_letters_total",
        "Messages dead-lettered by procinst, by reason"
    );
    metrics::describe_gauge!(
        "procinst_in_flight_deliveries",
        "Deliveries received and not yet acknowledged, by lane"
    );
    for lane in crate::config::Lane::ALL {
        metrics::gauge!("procinst_in_flight_deliveries", "lane" => lane.as_str()).increment(0.0);
    }
    metrics::describe_gauge!(
        "procinst_broker_blocked",
        "1 while the broker blocks the worker's publishes (a memory or disk alarm)"
    );
    metrics::gauge!("procinst_broker_blocked").set(0.0);
    metrics::describe_gauge!(
        "procinst_ready",
        "1 while the worker would answer /readyz with 200 (its own view, without the live database probe)"
    );
    metrics::gauge!("procinst_ready").set(0.0);
}

/// Binds the HTTP address; the error names it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on PROCINST_HTTP_ADDR {addr}"))
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    pool: Pool,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState {
        health,
        pool,
        metrics,
    };
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "http listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

async fn render_metrics(State(state): State<AppState>) -> String {
    let ready = state.health.readiness().is_ok();
    metrics::gauge!("procinst_ready").set(if ready { 1.0 } else { 0.0 });
    state.metrics.render()
}

async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    if let Err(reason) = state.health.readiness() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
    }
    // A standby or a read-only database answers queries but takes no
    // writes: ask whether a session could write.
    let probe = crate::store::writable(&state.pool);
    match tokio::time::timeout(DB_PROBE_TIMEOUT, probe).await {
        Ok(Some(true)) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Some(false)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database is read-only\n".to_owned(),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database is unreachable\n".to_owned(),
        ),
    }
}
