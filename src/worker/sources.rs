//! The queues a lane consumes, as one stream of deliveries: the
//! interactive lane's one queue; the bulk queue and its shards. Each queue
//! is consumed on its own channel with its own prefetch, and the stream
//! takes from them in turn, so that every business with a shard gets an
//! equal share of the batches (and of the prefetch) while it has
//! deliveries waiting. Each delivery carries its source, the position of
//! its queue in [`Topology::sources`](crate::config::Topology::sources),
//! which its ack goes through.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use lapin::{Consumer, message::Delivery};

use super::Health;
use super::share::Sightings;

/// A delivery and the source it came from.
pub struct Sourced {
    pub source: usize,
    pub delivery: Delivery,
}

/// The lane's consumers, taken from in turn. The stream ends when any
/// consumer ends (a channel closed or a consumer cancelled: the session is
/// over), or, once [`draining`](Self::draining), when all have.
pub struct Sources {
    consumers: Vec<Option<Consumer>>,
    /// The source to look at first on the next poll: the one after the
    /// last that gave a delivery.
    next: usize,
    draining: bool,
    /// The bulk lane's: which businesses its deliveries carry.
    sightings: Option<(Arc<Sightings>, String)>,
    /// Counts each delivery received, for the stall watch.
    health: Option<Arc<Health>>,
}

impl Sources {
    pub fn new(consumers: Vec<Consumer>) -> Self {
        Self {
            consumers: consumers.into_iter().map(Some).collect(),
            next: 0,
            draining: false,
            sightings: None,
            health: None,
        }
    }

    /// Counts each delivery in `health`, which the deliver stage counts
    /// off as it acks.
    pub fn counted_in(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Tells `sightings` the business of each delivery that came through
    /// `exchange`, the bulk lane's: from the bulk queue (source 0), a
    /// business without a shard; from a shard, one that holds it.
    pub fn sighted_by(mut self, sightings: Arc<Sightings>, exchange: String) -> Self {
        self.sightings = Some((sightings, exchange));
        self
    }

    /// After basic.cancel: a consumer that ends is done, and the stream
    /// ends when every consumer has given what the broker had sent.
    pub fn draining(&mut self) {
        self.draining = true;
    }

    fn sight(&self, source: usize, delivery: &Delivery) {
        let Some((sightings, exchange)) = &self.sightings else {
            return;
        };
        if delivery.exchange.as_str() != exchange {
            return;
        }
        if let Ok(business) = delivery.routing_key.as_str().parse::<i64>() {
            sightings.saw(business, source > 0);
        }
    }
}

impl Stream for Sources {
    type Item = Result<Sourced, lapin::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let n = self.consumers.len();
        for k in 0..n {
            let source = (self.next + k) % n;
            let Some(consumer) = self.consumers[source].as_mut() else {
                continue;
            };
            match consumer.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    self.next = (source + 1) % n;
                    self.sight(source, &delivery);
                    if let Some(health) = &self.health {
                        health.received();
                    }
                    return Poll::Ready(Some(Ok(Sourced { source, delivery })));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if self.draining => self.consumers[source] = None,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
        }
        if self.consumers.iter().all(Option::is_none) {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
