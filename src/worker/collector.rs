//! The first stages of a session: subscribing to the request queue, then
//! gathering its deliveries into batches for the decider.

use std::time::Duration;

use lapin::{
    Consumer,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batcher::{Collected, Occupancy, Occupied, next_batch, remaining, top_up};
use super::{Health, SessionEnd, Worker};
use crate::broker::{self, Broker, BrokerError};
use crate::config::Settings;

/// Longest wait for the broker to declare the topology and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the collector checks that the connection is still usable.
const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// The consumer tag, so that the drain can cancel what it subscribed.
fn consumer_tag() -> String {
    format!("procinst-{}", std::process::id())
}

/// Declares the topology, sets the prefetch (which bounds what a session
/// holds in memory) and starts consuming the request queue. Bounded by
/// [`SUBSCRIBE_TIMEOUT`]: a broker that takes the connection but never
/// answers counts as a lost session.
pub(super) async fn subscribe(
    broker: &Broker,
    settings: &Settings,
) -> Result<Consumer, BrokerError> {
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
                consumer_tag().as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, BrokerError>(consumer)
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "declaring the topology and subscribing",
            after: SUBSCRIBE_TIMEOUT,
        })?
}

/// A batch handed to the decider, counted in its [`Occupancy`] until the
/// decider is done with the database for it.
pub(super) type Handed = (Vec<Delivery>, Occupied);

/// The collect stage: gathers deliveries into batches of at most the batch
/// size, each leaving once the database holds no batch or its linger is
/// over (and the decider can take it), until shutdown or the session is
/// lost. On shutdown it stops consuming and hands on everything already
/// received, so that it is answered.
pub(super) struct Collector<'a> {
    broker: &'a Broker,
    consumer: Consumer,
    settings: &'a Settings,
    health: &'a Health,
    shutdown: &'a CancellationToken,
    /// The batch being gathered; kept here so that a shutdown cancelling
    /// the gathering does not drop it.
    held: Vec<Delivery>,
    /// The batches handed on whose database work is not done.
    deciding: Occupancy,
}

impl<'a> Collector<'a> {
    pub(super) fn new(
        worker: &'a Worker,
        broker: &'a Broker,
        consumer: Consumer,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            broker,
            consumer,
            settings: &worker.settings,
            health: &worker.health,
            shutdown,
            held: Vec::with_capacity(worker.settings.batch_size),
            deciding: Occupancy::default(),
        }
    }

    /// Runs the stage; closing `batches` (on return) ends the decider once
    /// it has decided what it was handed.
    pub(super) async fn run(mut self, batches: mpsc::Sender<Handed>) -> SessionEnd {
        let end = self.collect(&batches).await;
        if matches!(end, SessionEnd::Shutdown) {
            self.drain(&batches).await;
        }
        end
    }

    /// Hands on batches until shutdown or the session is lost. A batch in
    /// hand when the consumer ends is handed on too: a consumer the broker
    /// cancelled leaves a channel that still takes acks.
    async fn collect(&mut self, batches: &mpsc::Sender<Handed>) -> SessionEnd {
        let (size, linger) = (self.settings.batch_size, self.settings.batch_linger());
        loop {
            let collected = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = broker_lost(self.broker) => return SessionEnd::Lost(None),
                collected = next_batch(&mut self.consumer, &mut self.held, size, linger, Some(&mut self.deciding)) => collected,
            };
            if let Collected::Ended(cause) = collected {
                self.hand_on(batches).await;
                return SessionEnd::Lost(cause);
            }
            // No batch leaves while the broker blocks publishing (an
            // alarm): its replies could not go out. What is held stays
            // unacked.
            let blocked = &self.broker.blocked;
            let ready = async {
                blocked.cleared().await;
                batches.reserve().await
            };
            let handed = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = broker_lost(self.broker) => return SessionEnd::Lost(None),
                handed = top_up(&mut self.consumer, &mut self.held, size, ready) => handed,
            };
            match handed {
                Ok(Ok(permit)) => {
                    let batch = std::mem::take(&mut self.held);
                    permit.send(self.counted(batch));
                }
                Ok(Err(_decider_gone)) => return SessionEnd::Lost(None),
                Err(cause) => {
                    self.hand_on(batches).await;
                    return SessionEnd::Lost(cause);
                }
            }
        }
    }

    /// After shutdown: not ready, basic.cancel, then everything received
    /// is in flight: the batch being gathered, then what the broker sent
    /// before the cancel.
    async fn drain(&mut self, batches: &mpsc::Sender<Handed>) {
        self.health.set_consuming(false);
        let _ = self
            .broker
            .consume
            .basic_cancel(
                consumer_tag().as_str().into(),
                BasicCancelOptions::default(),
            )
            .await;
        self.hand_on(batches).await;
        for batch in remaining(&mut self.consumer, self.settings.batch_size).await {
            let _ = batches.send(self.counted(batch)).await;
        }
        tracing::info!("stopped consuming; finishing the batches in flight");
    }

    /// `batch`, counted as the decider's until it is done with it.
    fn counted(&self, batch: Vec<Delivery>) -> Handed {
        (batch, self.deciding.enter())
    }

    /// Hands the batch in hand, if any, to the decider.
    async fn hand_on(&mut self, batches: &mpsc::Sender<Handed>) {
        if !self.held.is_empty() {
            let batch = std::mem::take(&mut self.held);
            let _ = batches.send(self.counted(batch)).await;
        }
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
