//! The loop: deliveries -> batches -> decisions (domain + store) -> replies
//! -> acks, with reconnects and a graceful drain around it.
//!
//! # Layout
//!
//! [`Worker::run`] connects to a node and runs a session on it, again and
//! again. [`Worker::session`] is three stages, one file each, joined by
//! bounded channels and each taking batches in delivery order:
//!
//! 1. collect ([`collect`]): subscribe (topology, prefetch, consumer),
//!    then gather deliveries into batches of [`Message`](message::Message)
//!    records; on shutdown, stop consuming and hand on what came.
//! 2. decide ([`decide`]): parse each message, then decide and write the
//!    batch round by round: the reads, the pure plan, the write, the
//!    failure ladder ([`disposition`]). Several batches at once, a write
//!    waiting only for earlier batches that share a key with it (the
//!    turnstile), the read of existing processes skipped while a stream
//!    creates new ones (the collision read). Its helpers live in its
//!    folder.
//! 3. deliver ([`deliver`]): replies and dead letters published with
//!    confirms, then one ack.
//!
//! The stages overlap (batch N+1 is decided while batch N is delivered),
//! and a slow stage stops the consuming: the prefetch bounds what is held
//! in memory. Each message travels as one record, its delivery, span,
//! parse and [`Fate`](message::Fate) together, from collection to ack.
//! `docs/design.md` tells why each part is there.

mod backoff;
pub(crate) mod collect;
mod decide;
mod deliver;
pub mod disposition;
mod health;
mod message;
mod share;
mod sources;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use health::{Health, Totals};

use crate::broker::{self, Broker, BrokerError, Cluster, LaneChannels, Rotation};
use crate::config::{Lane, Settings};
use crate::telemetry::error_chain;
use collect::Collector;
use decide::Decider;
use deliver::Deliverer;
use share::{Sharer, Sightings};
use sources::Sources;

/// Batches the collector may have ready before the decider takes them.
const COLLECTED_QUEUE: usize = 1;
/// Decided batches that may wait for delivery; they are delivered together.
const DECIDED_QUEUE: usize = 4;
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// How long a session may hold deliveries and finish none, with nothing
/// known to explain it (no database trouble, no alarm), before it is ended
/// and its deliveries go back to the broker: a safety net against a stage
/// that waits for something that never comes.
const STALL_LIMIT: Duration = Duration::from_secs(120);
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
            self.health.set_blocked(Some(broker.blocked.clone()));
            let began = std::time::Instant::now();
            self.health.session_began();
            let end = tokio::select! {
                end = self.session(&broker, &shutdown, &mut backoff) => end,
                held = self.health.stalled(STALL_LIMIT) => {
                    metrics::counter!("procinst_stalls_total").increment(1);
                    tracing::error!(
                        held,
                        limit = ?STALL_LIMIT,
                        "the session holds deliveries and has finished none for the limit, with the database and the broker healthy; ending it so that they are redelivered"
                    );
                    Ok(SessionEnd::Lost(None))
                }
            };
            self.health.set_broker(false);
            self.health.set_blocked(None);
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

    /// One broker session: the topology declared, then both lanes
    /// subscribed and run side by side (collect -> decide -> deliver each),
    /// until shutdown (everything received is answered first) or the
    /// session is lost on either lane (unacked deliveries go back to the
    /// broker, and the other lane ends too).
    async fn session(
        &self,
        broker: &Broker,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<SessionEnd, BrokerError> {
        let topology = &self.settings.topology;
        let lanes = [
            (Lane::Interactive, LaneChannels::of(broker)),
            (
                Lane::Bulk,
                LaneChannels::open(broker, topology.sources(Lane::Bulk).len()).await?,
            ),
        ];
        let consumers = collect::subscribe(broker, &lanes, &self.settings).await?;
        self.health.set_consuming(true);
        backoff.reset();
        tracing::info!(
            interactive = %self.settings.topology.queue(Lane::Interactive),
            bulk = %self.settings.topology.queue(Lane::Bulk),
            bulk_shards = topology.bulk_shards,
            prefetch = self.settings.prefetch,
            "consuming"
        );

        let shared = Shared::new(&self.settings);
        let over = CancellationToken::new();
        let [interactive, bulk] = lanes;
        let mut consumers = consumers.into_iter();
        let (Some(interactive_consumers), Some(bulk_consumers)) =
            (consumers.next(), consumers.next())
        else {
            return Ok(SessionEnd::Lost(None));
        };
        let sightings = Arc::new(Sightings::default());
        let bulk_sources = Sources::new(bulk_consumers)
            .sighted_by(sightings.clone(), topology.bulk_exchange())
            .counted_in(self.health.clone());
        let bulk_done = CancellationToken::new();
        let sharing = async {
            if topology.bulk_shards > 0 {
                Sharer::new(&self.settings, &self.pool, broker, sightings)
                    .run(&bulk_done)
                    .await;
            }
        };
        let bulk_lane = async {
            let end = self
                .lane(broker, bulk, bulk_sources, &shared, shutdown, &over)
                .await;
            bulk_done.cancel();
            end
        };
        let (first, second, ()) = tokio::join!(
            self.lane(
                broker,
                interactive,
                Sources::new(interactive_consumers).counted_in(self.health.clone()),
                &shared,
                shutdown,
                &over
            ),
            bulk_lane,
            sharing,
        );
        Ok(match (first, second) {
            (SessionEnd::Lost(cause), _) | (_, SessionEnd::Lost(cause)) => SessionEnd::Lost(cause),
            (SessionEnd::Shutdown, SessionEnd::Shutdown) => SessionEnd::Shutdown,
        })
    }

    /// One lane of a session: collect -> decide -> deliver. `over` ends the
    /// lane when the other one lost the session.
    async fn lane(
        &self,
        broker: &Broker,
        (lane, channels): (Lane, LaneChannels),
        consumer: Sources,
        shared: &Shared,
        shutdown: &CancellationToken,
        over: &CancellationToken,
    ) -> SessionEnd {
        let (collected, to_decide) = mpsc::channel(COLLECTED_QUEUE);
        let (decided, to_deliver) = mpsc::channel(DECIDED_QUEUE);
        let (end, (), ()) = tokio::join!(
            Collector::new(self, broker, lane, &channels, consumer, shutdown, over).run(collected),
            Decider::new(self, lane, shared).run(to_decide, decided),
            Deliverer::new(self, broker, lane, &channels, shutdown).run(to_deliver),
        );
        end
    }
}

/// What the lanes of a session share: the order of writes that share a
/// key, what was learnt about reading existing processes, and the writer
/// slots, of which bulk batches may hold all but one.
pub(crate) struct Shared {
    turnstile: decide::Turnstile,
    collision_read: decide::CollisionRead,
    writers: decide::Writers,
}

impl Shared {
    fn new(settings: &Settings) -> Self {
        Self {
            turnstile: decide::Turnstile::default(),
            collision_read: decide::CollisionRead::default(),
            writers: decide::Writers::new(settings.concurrent_batches()),
        }
    }
}
