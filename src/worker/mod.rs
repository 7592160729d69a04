//! The loop: deliveries -> batches -> decisions (domain + store) -> replies
//! -> acks, with reconnects and a graceful drain around it.
//!
//! Two tasks per broker session: a collector that gathers deliveries into
//! batches, and a processor that decides and delivers them one at a time,
//! in order. A bounded channel of one batch between them lets the next
//! batch gather while the current one is written, and stops consuming when
//! the database is slow (the prefetch bounds what is held in memory).

mod backoff;
pub(crate) mod batcher;
pub mod decide;
mod deliver;
mod health;
pub mod plan;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use lapin::{
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use backoff::Backoff;
pub use decide::error_chain;
pub use health::{Health, Totals};

use crate::broker::{self, Broker, BrokerError, Publisher};
use crate::config::Settings;
use batcher::{Collected, next_batch};
use decide::{Input, Limits, decide};

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
const DB_RETRY_MIN: Duration = Duration::from_millis(100);
const DB_RETRY_MAX: Duration = Duration::from_secs(5);

/// Everything a worker session shares.
pub struct Worker {
    pub settings: Settings,
    pub pool: Pool,
    pub health: Arc<Health>,
    pub totals: Totals,
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Lost(Option<lapin::Error>),
}

impl Worker {
    /// Runs until `shutdown` is cancelled (then drains and returns `Ok`) or
    /// the broker topology is misconfigured (`Err`). Connection losses are
    /// retried with capped exponential backoff.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
        let mut attempt = 0u64;
        loop {
            if attempt > 0 {
                metrics::counter!("procinst_reconnects_total").increment(1);
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            attempt += 1;
            let broker = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                connected = broker::connect(&self.settings.amqp_url, "procinst worker") => connected,
            };
            let broker = match broker {
                Ok(broker) => broker,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "broker unavailable; retrying");
                    continue;
                }
            };
            self.health.set_broker(true);
            let end = self.session(&broker, &shutdown, &mut backoff).await;
            self.health.set_broker(false);
            self.health.set_consuming(false);
            broker.close().await;
            match end {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Lost(cause)) => {
                    let cause = cause
                        .map(|e| error_chain(&e))
                        .unwrap_or_else(|| "consumer cancelled".into());
                    tracing::warn!(%cause, "broker session lost; reconnecting");
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "broker session failed; reconnecting")
                }
            }
        }
    }

    async fn session(
        &self,
        broker: &Broker,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<SessionEnd, BrokerError> {
        let settings = &self.settings;
        broker::declare(&broker.consume, &settings.topology).await?;
        broker
            .consume
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("procinst-{}", std::process::id());
        let mut consumer = broker
            .consume
            .basic_consume(
                settings.topology.request_queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.health.set_consuming(true);
        backoff.reset();
        tracing::info!(queue = %settings.topology.request_queue, prefetch = settings.prefetch, "consuming");

        let publisher = Publisher::new(broker.publish.clone());
        let (tx, mut rx) = mpsc::channel::<Vec<Delivery>>(1);
        let processor = async {
            while let Some(batch) = rx.recv().await {
                self.process(&publisher, batch).await;
            }
        };
        let collector = async {
            let end = loop {
                let collected = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                    collected = next_batch(&mut consumer, settings.batch_size, settings.batch_linger()) => collected,
                };
                match collected {
                    Collected::Batch(batch) => {
                        if tx.send(batch).await.is_err() {
                            break SessionEnd::Lost(None);
                        }
                    }
                    Collected::Ended(batch, cause) => {
                        if !batch.is_empty() {
                            let _ = tx.send(batch).await;
                        }
                        break SessionEnd::Lost(cause);
                    }
                }
            };
            if matches!(end, SessionEnd::Shutdown) {
                self.health.set_consuming(false);
                let _ = broker
                    .consume
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await;
                tracing::info!("stopped consuming; finishing the batches in flight");
            }
            drop(tx);
            end
        };
        let (end, ()) = tokio::join!(collector, processor);
        Ok(end)
    }

    /// Decides and delivers one batch. Database trouble is retried with
    /// backoff for as long as the batch's channel lives; broker trouble
    /// abandons the batch, which the broker then redelivers.
    async fn process(&self, publisher: &Publisher, batch: Vec<Delivery>) {
        let span = tracing::info_span!("batch", size = batch.len());
        async {
            let started = std::time::Instant::now();
            metrics::histogram!("procinst_batch_size").record(batch.len() as f64);
            metrics::gauge!("procinst_in_flight_deliveries").set(batch.len() as f64);
            let redelivered = batch.iter().filter(|d| d.redelivered).count();
            if redelivered > 0 {
                metrics::counter!("procinst_redeliveries_total").increment(redelivered as u64);
            }
            let inputs: Vec<Input<'_>> = batch
                .iter()
                .map(|d| Input {
                    body: &d.data,
                    message_id: d.properties.message_id().as_ref().map(|m| m.as_str()),
                })
                .collect();
            let limits = Limits {
                max_body_bytes: self.settings.max_body_bytes,
                retention: self.settings.retention(),
            };
            let mut retry = Backoff::new(DB_RETRY_MIN, DB_RETRY_MAX);
            let fates = loop {
                match decide(&self.pool, limits, &inputs).await {
                    Ok(fates) => break fates,
                    Err(e) => {
                        metrics::counter!("procinst_db_retries_total").increment(1);
                        tracing::error!(error = %error_chain(&e), "database unavailable; keeping the batch and retrying");
                        if batch.iter().any(|d| d.acker.poisoned()) {
                            tracing::warn!("the batch's channel closed meanwhile; the broker redelivers it");
                            return;
                        }
                        tokio::time::sleep(retry.next_delay()).await;
                    }
                }
            };
            match deliver::deliver(publisher, &self.settings.topology, &batch, &fates).await {
                Ok(()) => {
                    let dead = fates.iter().filter(|f| matches!(f, decide::Fate::DeadLetter { .. })).count() as u64;
                    self.totals.add(fates.len() as u64 - dead, dead);
                }
                Err(e @ BrokerError::Nacked { .. }) => {
                    tracing::error!(error = %error_chain(&e), "replies refused; requeueing the batch");
                    deliver::requeue(&batch).await;
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "could not finish the batch; the broker redelivers it");
                }
            }
            metrics::gauge!("procinst_in_flight_deliveries").set(0.0);
            metrics::histogram!("procinst_batch_seconds").record(started.elapsed().as_secs_f64());
        }
        .instrument(span)
        .await
    }
}
