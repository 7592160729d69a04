use std::{process::ExitCode, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::broker::Cluster;
use crate::config::Settings;
use crate::http;
use crate::store::{self, request_log};
use crate::telemetry::error_chain;
use crate::worker::{Backoff, Health, Totals, Worker};

/// How often the worker prunes expired request_log rows in the background.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The worker: prepares the database, serves HTTP, consumes until SIGTERM or
/// SIGINT, then drains within the shutdown timeout and exits 0.
pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        settings = %settings.summary(),
        held_body_mib_at_most = settings.held_body_bytes_at_most() >> 20,
        "procinst starting"
    );
    // Before anything else: a taken address is a configuration error to
    // report at once, and probes get answers while the database is awaited.
    let listener = http::bind(settings.http_addr).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    // A bad address list or CA file cannot get better: say so before waiting
    // for the database.
    let cluster = Cluster::from_settings(&settings)?;

    // Connections are made lazily: the pool only serves /readyz until the
    // database is prepared.
    let pool = store::connect_worker_pool(settings.database_url.expose(), settings.db_pool_size)?;
    let metrics = http::install_metrics()?;
    let health = Arc::new(Health::default());
    health.set_stage(Some(
        "waiting for the database (connecting, applying migrations)",
    ));
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        health.clone(),
        pool.clone(),
        metrics,
        http_stop.clone(),
    ));

    // The database may still be starting: wait for it rather than exit.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match super::migrate::prepare_database(&settings).await {
            Ok(()) => break,
            Err(e) if shutdown.is_cancelled() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "database not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    health.set_stage(None);
    tokio::spawn(prune_periodically(
        pool.clone(),
        settings.retention(),
        shutdown.clone(),
    ));

    let timeout = settings.shutdown_timeout();
    let worker = Worker {
        settings,
        cluster,
        pool,
        health,
        totals: Totals::default(),
    };
    let started = std::time::Instant::now();
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(timeout).await;
    };
    let result = tokio::select! {
        result = worker.run(shutdown.clone()) => result,
        () = drained => {
            tracing::warn!(?timeout, "shutdown timeout reached; unfinished deliveries stay unacked for redelivery");
            Ok(())
        }
    };
    http_stop.cancel();
    let _ = server.await;
    match result {
        Ok(()) => {
            let (answered, dead_lettered) = worker.totals.get();
            tracing::info!(
                answered,
                dead_lettered,
                uptime_s = started.elapsed().as_secs(),
                "procinst stopped"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
    shutdown.cancel();
}

/// Deletes expired request_log rows in small chunks, so that no long lock
/// ever blocks the batch path.
async fn prune_periodically(
    pool: deadpool_postgres::Pool,
    retention: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        let Ok(client) = pool.get().await else {
            continue;
        };
        match request_log::prune(&client, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned expired request_log rows"),
            Err(e) => tracing::warn!(error = %error_chain(&e), "pruning request_log failed"),
        }
    }
}
