//! The collect stage: subscribing to the request queue, then gathering its
//! deliveries into [`Batch`]es of [`Message`]s for the decide stage.
//!
//! A batch leaves as soon as the database stage holds no batch (what has
//! already arrived goes with it), else when its linger is over, and keeps
//! growing while the decide stage cannot take it: at low rates a request
//! does not wait for company, under load batches fill while the database
//! works. The [`Occupancy`] that says whether the database stage holds a
//! batch travels with each batch as its [`Occupied`] guard.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use lapin::{
    Consumer,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::message::Message;
use super::sources::{Sourced, Sources};
use super::{Health, SessionEnd, Worker};
use crate::broker::{self, Broker, BrokerError, LaneChannels};
use crate::config::{Lane, Settings};

/// Longest wait for the broker to declare the topology and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the collector checks that the connection is still usable.
const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// The consumer tag of a lane's source, so that the drain can cancel what
/// it subscribed.
fn consumer_tag(lane: Lane, source: usize) -> String {
    match source {
        0 => format!("procinst-{}-{lane}", std::process::id()),
        _ => format!("procinst-{}-{lane}-{source}", std::process::id()),
    }
}

/// Declares the topology (both lanes' queues alike), then, on the channel
/// of each queue a lane consumes, sets the prefetch (which bounds what it
/// holds in memory) and starts consuming the queue. Bounded by
/// [`SUBSCRIBE_TIMEOUT`]: a broker that takes the connection but never
/// answers counts as a lost session. The consumers come back in the order
/// of `lanes`, each lane's in the order of its sources.
pub(super) async fn subscribe(
    broker: &Broker,
    lanes: &[(Lane, LaneChannels)],
    settings: &Settings,
) -> Result<Vec<Vec<Consumer>>, BrokerError> {
    let subscribe = async {
        broker::declare(&broker.connection, &settings.topology).await?;
        let mut consumers = Vec::with_capacity(lanes.len());
        for (lane, channels) in lanes {
            let mut lane_consumers = Vec::with_capacity(channels.consume.len());
            let queues = settings.topology.sources(*lane);
            for (source, (queue, channel)) in queues.iter().zip(&channels.consume).enumerate() {
                channel
                    .basic_qos(settings.prefetch, BasicQosOptions::default())
                    .await?;
                let consumer = channel
                    .basic_consume(
                        queue.as_str().into(),
                        consumer_tag(*lane, source).as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                lane_consumers.push(consumer);
            }
            consumers.push(lane_consumers);
        }
        Ok::<_, BrokerError>(consumers)
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "declaring the topology and subscribing",
            after: SUBSCRIBE_TIMEOUT,
        })?
}

/// A batch handed to the decide stage: its messages in delivery order,
/// counted in the collector's [`Occupancy`] while the database works on it.
pub(super) struct Batch {
    pub(super) messages: Vec<Message>,
    /// Dropped by the decide stage once the batch is written or given up
    /// (see `Decider::decide_batch`): only then may the batch being
    /// gathered leave without waiting for its linger.
    pub(super) deciding: Occupied,
}

/// The collect stage: gathers deliveries into batches of at most the batch
/// size, each leaving once the database holds no batch or its linger is
/// over (and the decider can take it), until shutdown or the session is
/// lost. On shutdown it stops consuming and hands on everything already
/// received, so that it is answered.
pub(super) struct Collector<'a> {
    broker: &'a Broker,
    lane: Lane,
    channels: &'a LaneChannels,
    consumer: Sources,
    settings: &'a Settings,
    health: &'a Health,
    shutdown: &'a CancellationToken,
    /// Cancelled when either lane of the session is lost, so that the other
    /// one ends too.
    over: &'a CancellationToken,
    /// The batch being gathered; kept here so that a shutdown cancelling
    /// the gathering does not drop it.
    held: Vec<Sourced>,
    /// The batches handed on whose database work is not done.
    deciding: Occupancy,
}

impl<'a> Collector<'a> {
    pub(super) fn new(
        worker: &'a Worker,
        broker: &'a Broker,
        lane: Lane,
        channels: &'a LaneChannels,
        consumer: Sources,
        shutdown: &'a CancellationToken,
        over: &'a CancellationToken,
    ) -> Self {
        Self {
            broker,
            lane,
            channels,
            consumer,
            settings: &worker.settings,
            health: &worker.health,
            shutdown,
            over,
            held: Vec::with_capacity(worker.settings.batch_size),
            deciding: Occupancy::default(),
        }
    }

    /// Runs the stage; closing `batches` (on return) ends the decider once
    /// it has decided what it was handed.
    pub(super) async fn run(mut self, batches: mpsc::Sender<Batch>) -> SessionEnd {
        let end = self.collect(&batches).await;
        match end {
            SessionEnd::Shutdown => self.drain(&batches).await,
            SessionEnd::Lost(_) => self.over.cancel(),
        }
        end
    }

    /// Hands on batches until shutdown or the session is lost. A batch in
    /// hand when the consumer ends is handed on too: a consumer the broker
    /// cancelled leaves a channel that still takes acks.
    async fn collect(&mut self, batches: &mpsc::Sender<Batch>) -> SessionEnd {
        let (size, linger) = (self.settings.batch_size, self.settings.batch_linger());
        loop {
            let collected = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = lost(self.broker, self.channels, self.over) => return SessionEnd::Lost(None),
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
                _ = lost(self.broker, self.channels, self.over) => return SessionEnd::Lost(None),
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
    async fn drain(&mut self, batches: &mpsc::Sender<Batch>) {
        self.health.set_consuming(false);
        for (source, channel) in self.channels.consume.iter().enumerate() {
            let _ = channel
                .basic_cancel(
                    consumer_tag(self.lane, source).as_str().into(),
                    BasicCancelOptions::default(),
                )
                .await;
        }
        self.consumer.draining();
        self.hand_on(batches).await;
        for batch in remaining(&mut self.consumer, self.settings.batch_size).await {
            let _ = batches.send(self.counted(batch)).await;
        }
        tracing::info!("stopped consuming; finishing the batches in flight");
    }

    /// `deliveries` as a batch of messages, counted as the decide stage's
    /// until it is done with the database for them.
    fn counted(&self, deliveries: Vec<Sourced>) -> Batch {
        Batch {
            messages: deliveries.into_iter().map(Message::received).collect(),
            deciding: self.deciding.enter(),
        }
    }

    /// Hands the batch in hand, if any, to the decider.
    async fn hand_on(&mut self, batches: &mpsc::Sender<Batch>) {
        if !self.held.is_empty() {
            let batch = std::mem::take(&mut self.held);
            let _ = batches.send(self.counted(batch)).await;
        }
    }
}

/// Resolves once the connection or a channel of the lane is no longer
/// usable, or the other lane lost the session. The consumer stream
/// normally ends then too; this makes sure the session ends even when the
/// collector is waiting on something else.
async fn lost(broker: &Broker, channels: &LaneChannels, over: &CancellationToken) {
    let mut check = tokio::time::interval(HEALTH_CHECK);
    loop {
        tokio::select! {
            _ = over.cancelled() => return,
            _ = check.tick() => {}
        }
        if !broker.is_healthy() || !channels.is_healthy() {
            return;
        }
    }
}

/// How a call to [`next_batch`] ended.
pub enum Collected {
    /// `batch` holds deliveries to process; the consumer is still open.
    Batch,
    /// The consumer ended (channel closed, or cancelled by the broker);
    /// `batch` holds the deliveries received before that.
    Ended(Option<lapin::Error>),
}

/// Longest wait, after basic.cancel, for the deliveries already sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for one delivery into the empty `batch`, then gathers more until
/// `max` are in hand, `linger` has passed since the first, or `next` (the
/// stage the batch goes to, when given) holds no batch. Bounded by `max`
/// (and so by the prefetch), never by how fast the broker sends.
///
/// So the linger is only an upper bound: while the database works on one
/// batch, the next gathers what arrives meanwhile and leaves the moment the
/// database is free, and a request that finds it idle does not wait for
/// company. Under load the database is never idle and batches fill as
/// before. Deliveries already received are always taken first.
///
/// The batch lives with the caller, so a shutdown that cancels this call
/// keeps what was gathered: it is in flight like any other batch.
pub async fn next_batch<T>(
    consumer: &mut (impl Stream<Item = Result<T, lapin::Error>> + Unpin),
    batch: &mut Vec<T>,
    max: usize,
    linger: Duration,
    next: Option<&mut Occupancy>,
) -> Collected {
    if batch.is_empty() {
        match consumer.next().await {
            Some(Ok(delivery)) => batch.push(delivery),
            Some(Err(e)) => return Collected::Ended(Some(e)),
            None => return Collected::Ended(None),
        }
    }
    // One timer and one wait per batch, not one per delivery.
    let mut linger = std::pin::pin!(tokio::time::sleep(linger));
    let mut idle = std::pin::pin!(async {
        match next {
            Some(next) => next.idle().await,
            None => std::future::pending().await,
        }
    });
    while batch.len() < max {
        tokio::select! {
            biased;
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => batch.push(delivery),
                Some(Err(e)) => return Collected::Ended(Some(e)),
                None => return Collected::Ended(None),
            },
            () = &mut idle => break,
            () = &mut linger => break,
        }
    }
    Collected::Batch
}

/// How many batches a stage holds: each [`Occupied`] handed on with a batch
/// counts until the stage drops it. Cloned, it counts the same batches.
#[derive(Clone)]
pub struct Occupancy {
    count: Arc<watch::Sender<usize>>,
    seen: watch::Receiver<usize>,
}

/// One batch held by a stage; dropping it says the stage is done with it.
pub struct Occupied(Arc<watch::Sender<usize>>);

impl Default for Occupancy {
    fn default() -> Self {
        let (count, seen) = watch::channel(0);
        Self {
            count: Arc::new(count),
            seen,
        }
    }
}

impl Occupancy {
    /// Counts one more batch until the returned guard is dropped.
    pub fn enter(&self) -> Occupied {
        self.count.send_modify(|n| *n += 1);
        Occupied(Arc::clone(&self.count))
    }

    /// Resolves once the stage holds no batch (at once if it holds none).
    pub async fn idle(&mut self) {
        // The sender lives in `self`, so the wait cannot fail.
        let _ = self.seen.wait_for(|&n| n == 0).await;
    }
}

impl Drop for Occupied {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// After basic.cancel: the deliveries the broker had already sent, in
/// batches of at most `max`. lapin ends the stream behind them once the
/// cancel is confirmed.
pub async fn remaining<T>(
    consumer: &mut (impl Stream<Item = Result<T, lapin::Error>> + Unpin),
    max: usize,
) -> Vec<Vec<T>> {
    let mut batches: Vec<Vec<T>> = Vec::new();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while let Ok(Some(Ok(delivery))) = timeout_at(deadline, consumer.next()).await {
        match batches.last_mut() {
            Some(batch) if batch.len() < max => batch.push(delivery),
            _ => batches.push(vec![delivery]),
        }
    }
    batches
}

/// Keeps adding deliveries to `batch` until it is full or `ready` completes
/// (the next stage can take the batch), then returns what `ready` gave.
/// Under load, batches grow while the database is busy; when idle, a batch
/// leaves as soon as its linger is over. `Err` when the consumer ended.
pub async fn top_up<D, T>(
    consumer: &mut (impl Stream<Item = Result<D, lapin::Error>> + Unpin),
    batch: &mut Vec<D>,
    max: usize,
    ready: impl Future<Output = T>,
) -> Result<T, Option<lapin::Error>> {
    let mut ready = std::pin::pin!(ready);
    loop {
        if batch.len() >= max {
            return Ok(ready.await);
        }
        tokio::select! {
            biased;
            value = &mut ready => return Ok(value),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => batch.push(delivery),
                Some(Err(e)) => return Err(Some(e)),
                None => return Err(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `idle` resolves without waiting.
    fn idle_now(occupancy: &mut Occupancy) -> bool {
        use futures::FutureExt;
        occupancy.idle().now_or_never().is_some()
    }

    #[test]
    fn idle_only_when_every_batch_handed_on_is_done() {
        let mut occupancy = Occupancy::default();
        assert!(idle_now(&mut occupancy));
        let first = occupancy.enter();
        let second = occupancy.clone().enter();
        assert!(!idle_now(&mut occupancy));
        drop(first);
        assert!(!idle_now(&mut occupancy));
        drop(second);
        assert!(idle_now(&mut occupancy));
    }

    #[tokio::test]
    async fn a_waiting_batch_learns_when_the_last_one_is_done() {
        let mut occupancy = Occupancy::default();
        let held = occupancy.enter();
        let waiter = tokio::spawn({
            let mut occupancy = occupancy.clone();
            async move { occupancy.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("idle within the timeout")
            .expect("the waiting task ran to its end");
        assert!(idle_now(&mut occupancy));
    }
}
