//! Businesses sharing the bulk lane: each business publishing a backfill
//! is given a shard of its own, a queue of the bulk lane that the
//! [`Sources`](super::sources::Sources) stream takes from in turn with the
//! others, so that two backfills running at once drain at about the same
//! rate whatever their `bk_biz_id`s, and one alone drains at full speed.
//!
//! A publisher sends to the bulk exchange with the business's id as the
//! routing key. A business without a shard falls through the exchange's
//! alternate exchange into the bulk queue; when a worker sees it there, the
//! [`Sharer`] gives it a free shard (recorded in `bulk_shard`, bound on the
//! broker in the same transaction) and its later messages go there. While
//! its deliveries come through the shard, the sharer bumps its
//! `last_seen`; once it has been idle for `PROCINST_BULK_SHARD_IDLE_S` and
//! its shard is empty, the binding is removed and the shard is free again.
//! Sharing never decides what happens to a request: a business with no
//! shard (all taken, or the sharer failing) is served from the bulk queue
//! like any other message, and a message in an unbound shard is still
//! consumed.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use lapin::{
    Channel,
    options::{QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::{Settings, Topology};
use crate::store::shards;
use crate::telemetry::error_chain;

/// How long a business just given a shard (or found without one) is not
/// looked up again: its messages published before the binding are still
/// coming through the bulk queue.
const RECENT: Duration = Duration::from_secs(5);
/// The sharer's pace at most: how often it records sightings and looks for
/// idle shards.
const TICK_MAX: Duration = Duration::from_secs(10);

/// The businesses the bulk lane's deliveries carried since the sharer last
/// looked, told by the [`Sources`](super::sources::Sources) stream.
#[derive(Default)]
pub struct Sightings {
    unsharded: Mutex<HashSet<i64>>,
    sharded: Mutex<HashSet<i64>>,
    wake: Notify,
}

impl Sightings {
    /// `business`'s delivery came through its shard (`sharded`) or the bulk
    /// queue.
    pub fn saw(&self, business: i64, sharded: bool) {
        let set = if sharded {
            &self.sharded
        } else {
            &self.unsharded
        };
        let new = set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(business);
        if new && !sharded {
            self.wake.notify_one();
        }
    }

    fn take(set: &Mutex<HashSet<i64>>) -> Vec<i64> {
        set.lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect()
    }
}

/// Gives shards to the businesses seen in the bulk queue and takes back
/// the idle ones, for one session's bulk lane.
pub struct Sharer<'a> {
    topology: &'a Topology,
    idle: Duration,
    pool: &'a Pool,
    broker: &'a Broker,
    sightings: Arc<Sightings>,
    /// The channel bindings are changed on; opened again after a failure.
    channel: Option<Channel>,
    /// Businesses looked up lately, and when.
    recent: HashMap<i64, Instant>,
}

impl<'a> Sharer<'a> {
    pub fn new(
        settings: &'a Settings,
        pool: &'a Pool,
        broker: &'a Broker,
        sightings: Arc<Sightings>,
    ) -> Self {
        Self {
            topology: &settings.topology,
            idle: settings.bulk_shard_idle(),
            pool,
            broker,
            sightings,
            channel: None,
            recent: HashMap::new(),
        }
    }

    /// Runs until `done`. Failures are logged and tried again on the next
    /// sighting or tick: they cost fairness, never a request.
    pub async fn run(mut self, done: &CancellationToken) {
        let mut tick =
            tokio::time::interval((self.idle / 4).clamp(Duration::from_millis(250), TICK_MAX));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = self.sightings.wake.notified() => self.give_shards().await,
                _ = tick.tick() => {
                    self.give_shards().await;
                    self.record_seen().await;
                    self.take_back_idle().await;
                }
            }
        }
    }

    /// A shard for each business seen in the bulk queue and not looked up
    /// lately.
    async fn give_shards(&mut self) {
        let now = Instant::now();
        self.recent.retain(|_, at| now.duration_since(*at) < RECENT);
        for business in Sightings::take(&self.sightings.unsharded) {
            if self.recent.contains_key(&business) {
                continue;
            }
            self.recent.insert(business, now);
            if let Err(e) = self.give(business).await {
                self.channel = None;
                tracing::warn!(bk_biz_id = business, error = %error_chain(&*e), "could not give a business a shard of the bulk lane; it is served from the bulk queue");
            }
        }
    }

    async fn give(&mut self, business: i64) -> anyhow::Result<()> {
        let exchange = self.topology.bulk_exchange();
        let mut client = self.pool.get().await?;
        let held =
            shards::hold(&mut client, &exchange, self.topology.bulk_shards, business).await?;
        let Some(held) = held else {
            tracing::debug!(
                bk_biz_id = business,
                "every shard of the bulk lane is held; the business shares the bulk queue"
            );
            return Ok(());
        };
        let shard = self.topology.bulk_shard(held.shard);
        // Bound again when the business held the shard already: a binding
        // the broker lost comes back.
        self.channel()
            .await?
            .queue_bind(
                shard.as_str().into(),
                exchange.as_str().into(),
                business.to_string().as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let new = held.new;
        held.commit().await?;
        if new {
            metrics::counter!("procinst_bulk_shard_changes_total", "change" => "given")
                .increment(1);
            tracing::info!(bk_biz_id = business, %shard, "business given a shard of the bulk lane");
        }
        Ok(())
    }

    async fn record_seen(&mut self) {
        let seen = Sightings::take(&self.sightings.sharded);
        if seen.is_empty() {
            return;
        }
        let recorded = async {
            let client = self.pool.get().await?;
            shards::seen(&client, &self.topology.bulk_exchange(), &seen).await?;
            anyhow::Ok(())
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %error_chain(&*e), "could not record which businesses the bulk lane's shards served");
        }
    }

    /// Takes back the shards of businesses idle for the idle time once
    /// they are empty: first the binding, then the record, in the record's
    /// transaction. A message published meanwhile lands in the shard and
    /// is consumed like any other: shards are never deleted.
    async fn take_back_idle(&mut self) {
        if let Err(e) = self.take_back().await {
            self.channel = None;
            tracing::warn!(error = %error_chain(&*e), "could not take back the bulk lane's idle shards");
        }
    }

    async fn take_back(&mut self) -> anyhow::Result<()> {
        let exchange = self.topology.bulk_exchange();
        let shards_now = self.topology.bulk_shards;
        let mut client = self.pool.get().await?;
        let idle = shards::idle(&mut client, &exchange, shards_now, self.idle).await?;
        for holder in &idle.holders {
            let shard = self.topology.bulk_shard(holder.shard);
            // A shard beyond the count is no longer consumed: unbound at
            // once, so that nothing more is stranded in it.
            if holder.shard < shards_now {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                let declared = self
                    .channel()
                    .await?
                    .queue_declare(shard.as_str().into(), passive, FieldTable::default())
                    .await;
                match declared {
                    Ok(queue) if queue.message_count() > 0 => continue,
                    Ok(_) => {}
                    // Deleted by hand: nothing to unbind, and the record goes.
                    Err(e) if not_found(&e) => {
                        self.channel = None;
                        idle.release(&exchange, *holder).await?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let unbound = self
                .channel()
                .await?
                .queue_unbind(
                    shard.as_str().into(),
                    exchange.as_str().into(),
                    holder.bk_biz_id.to_string().as_str().into(),
                    FieldTable::default(),
                )
                .await;
            match unbound {
                Ok(()) => {}
                Err(e) if not_found(&e) => self.channel = None,
                Err(e) => return Err(e.into()),
            }
            idle.release(&exchange, *holder).await?;
            metrics::counter!("procinst_bulk_shard_changes_total", "change" => "taken back")
                .increment(1);
            tracing::info!(bk_biz_id = holder.bk_biz_id, %shard, "idle business's shard of the bulk lane taken back");
        }
        Ok(idle.commit().await?)
    }
}

/// RabbitMQ's NOT_FOUND: the queue (or exchange) is not there.
fn not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}

impl Sharer<'_> {
    async fn channel(&mut self) -> anyhow::Result<&Channel> {
        if self
            .channel
            .as_ref()
            .is_none_or(|c| !c.status().connected())
        {
            let channel = self.broker.connection.create_channel().await?;
            self.channel = Some(channel);
        }
        Ok(self.channel.as_ref().expect("opened above"))
    }
}
