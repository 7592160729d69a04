//! The loop: deliveries -> batches -> decisions (domain + store) -> replies
//! -> acks, with reconnects and a graceful drain around it.
//!
//! Three stages per broker session, each handling one batch at a time and in
//! delivery order: a collector that gathers deliveries into batches, a
//! decider that reads and writes the database, and a deliverer that
//! publishes replies and acks. A bounded channel of one batch between
//! stages lets them overlap, and stops consuming when a later stage is slow:
//! the prefetch bounds what is held in memory.

mod backoff;
pub(crate) mod batcher;
mod created;
pub mod decide;
mod deliver;
pub mod disposition;
pub mod fate;
mod health;
mod pipeline;
pub mod plan;
mod turnstile;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use health::{Health, Totals};

use crate::broker::{self, Broker, BrokerError, Cluster, Publisher, Rotation};
use crate::config::Settings;
use crate::telemetry::error_chain;
use batcher::{Collected, next_batch, remaining, top_up};
use turnstile::Turnstile;

/// Decided batches that may wait for delivery; they are delivered together.
const DECIDED_QUEUE: usize = 4;
/// Longest wait for the broker to declare the topology and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the collector checks that the connection is still usable.
const HEALTH_CHECK: Duration = Duration::from_secs(1);
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// A session lost sooner than this counts as a failed node, so that a node
/// that accepts and then drops the worker again and again is not retried
/// without pause.
const STABLE_SESSION: Duration = Duration::from_secs(5);

/// Everything a worker session shares.
pub struct Worker {
    pub settings: Settings,
    /// The broker's nodes, parsed from the settings once.
    pub cluster: Cluster,
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
    /// the broker topology is misconfigured (`Err`).
    ///
    /// The nodes are taken in a shuffled rotation: a lost connection goes
    /// straight on to the next node rather than waiting for the lost one to
    /// come back, and the capped exponential backoff starts only when a
    /// whole round of nodes gave no working session.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
        let mut nodes = Rotation::shuffled(self.cluster.endpoints.len());
        // Nodes tried since the last session that consumed.
        let mut failed = 0;
        let mut attempt = 0u64;
        // Shown by `rabbitmqctl list_connections` with the node appended,
        // so an operator can tell workers apart and see where each is.
        let connection_name = format!("procinst worker {}", std::process::id());
        loop {
            if failed >= nodes.len() {
                failed = 0;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            if attempt > 0 {
                metrics::counter!("procinst_reconnects_total").increment(1);
            }
            attempt += 1;
            let node = nodes.next_node();
            let broker = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                connected = broker::connect_node(&self.cluster, node, &connection_name) => connected,
            };
            let broker = match broker {
                Ok(broker) => broker,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %error_chain(&e), "broker unavailable; trying the next node");
                    continue;
                }
            };
            self.health.set_broker(true);
            let began = std::time::Instant::now();
            let end = self.session(&broker, &shutdown, &mut backoff).await;
            self.health.set_broker(false);
            self.health.set_consuming(false);
            broker.close().await;
            match end {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Lost(cause)) => {
                    failed = if began.elapsed() < STABLE_SESSION {
                        failed + 1
                    } else {
                        0
                    };
                    let cause = cause
                        .map(|e| error_chain(&e))
                        .unwrap_or_else(|| "consumer cancelled".into());
                    tracing::warn!(node = %broker.node, %cause, "broker session lost; reconnecting to the next node");
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(node = %broker.node, error = %error_chain(&e), "broker session failed; reconnecting")
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
        let tag = format!("procinst-{}", std::process::id());
        let subscribe = async {
            broker::declare(&broker.connection, &settings.topology).await?;
            broker
                .consume
                .basic_qos(settings.prefetch, BasicQosOptions::default())
                .await?;
            let consumer = broker
                .consume
                .basic_consume(
                    settings.topology.request_queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, BrokerError>(consumer)
        };
        let mut consumer = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
            .await
            .map_err(|_| BrokerError::Timeout {
                what: "declaring the topology and subscribing",
                after: SUBSCRIBE_TIMEOUT,
            })??;
        self.health.set_consuming(true);
        backoff.reset();
        tracing::info!(queue = %settings.topology.request_queue, prefetch = settings.prefetch, "consuming");

        let publisher = Publisher::new(broker.publish.clone());
        // collector -> decider -> deliverer, one batch queued between each:
        // batch N+1 is decided (database) while batch N is delivered (broker).
        let (tx, mut rx) = mpsc::channel::<Vec<Delivery>>(1);
        let (decided_tx, mut decided_rx) = mpsc::channel(DECIDED_QUEUE);
        let decider = async move {
            // Several batches are decided at once on their own connections
            // and come out in delivery order, so acks stay in order; their
            // writes take turns in the same order.
            let turnstile = Turnstile::default();
            let mut decided = futures::stream::poll_fn(|cx| rx.poll_recv(cx))
                .map(|batch| self.decide_batch(batch, turnstile.take()))
                .buffered(settings.concurrent_batches());
            while let Some(batch) = decided.next().await {
                if let Some(batch) = batch
                    && decided_tx.send(batch).await.is_err()
                {
                    break;
                }
            }
        };
        let deliverer = async {
            let mut refused =
                Backoff::new(pipeline::REFUSED_RETRY_MIN, pipeline::REFUSED_RETRY_MAX);
            while let Some(first) = decided_rx.recv().await {
                let mut ready = vec![first];
                while let Ok(next) = decided_rx.try_recv() {
                    ready.push(next);
                }
                if !self
                    .deliver_batches(&publisher, ready, &mut refused, shutdown)
                    .await
                {
                    // Deliveries left unacked on a live channel would hold
                    // their prefetch slots forever: close the channel so
                    // the broker requeues them, and the session restarts.
                    let close = broker
                        .consume
                        .close(320, "delivery failed; reconnecting".into());
                    let _ = tokio::time::timeout(Duration::from_secs(10), close).await;
                }
            }
        };
        let collector = async {
            // The batch being gathered; kept here so that a shutdown
            // cancelling the gathering does not drop it.
            let mut held = Vec::with_capacity(settings.batch_size);
            let end = loop {
                let collected = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                    _ = broker_lost(broker) => break SessionEnd::Lost(None),
                    collected = next_batch(&mut consumer, &mut held, settings.batch_size, settings.batch_linger()) => collected,
                };
                match collected {
                    Collected::Batch => {
                        let handed = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                            _ = broker_lost(broker) => break SessionEnd::Lost(None),
                            handed = top_up(&mut consumer, &mut held, settings.batch_size, tx.reserve()) => handed,
                        };
                        match handed {
                            Ok(Ok(permit)) => permit.send(std::mem::take(&mut held)),
                            Ok(Err(_decider_gone)) => break SessionEnd::Lost(None),
                            Err(cause) => {
                                let _ = tx.send(std::mem::take(&mut held)).await;
                                break SessionEnd::Lost(cause);
                            }
                        }
                    }
                    Collected::Ended(cause) => {
                        if !held.is_empty() {
                            let _ = tx.send(std::mem::take(&mut held)).await;
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
                // Everything received is in flight: the batch being
                // gathered, then what the broker sent before the cancel.
                if !held.is_empty() {
                    let _ = tx.send(std::mem::take(&mut held)).await;
                }
                for batch in remaining(&mut consumer, settings.batch_size).await {
                    let _ = tx.send(batch).await;
                }
                tracing::info!("stopped consuming; finishing the batches in flight");
            }
            drop(tx);
            end
        };
        let (end, (), ()) = tokio::join!(collector, decider, deliverer);
        Ok(end)
    }
}

/// Resolves once the connection or a channel is no longer usable. The
/// consumer stream normally ends then too; this makes sure the session
/// ends even when the collector is waiting on something else.
async fn broker_lost(broker: &Broker) {
    let mut check = tokio::time::interval(HEALTH_CHECK);
    loop {
        check.tick().await;
        if !broker.is_healthy() {
            return;
        }
    }
}
