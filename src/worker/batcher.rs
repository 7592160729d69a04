use std::time::Duration;

use futures::StreamExt;
use lapin::{Consumer, message::Delivery};
use tokio::time::{Instant, timeout_at};

/// What one call to [`next_batch`] collected.
pub enum Collected {
    /// Deliveries to process; the consumer is still open.
    Batch(Vec<Delivery>),
    /// The consumer ended (channel closed, or cancelled by the broker);
    /// with the deliveries received before that.
    Ended(Vec<Delivery>, Option<lapin::Error>),
}

/// Waits for one delivery, then gathers more until `max` are in hand or
/// `linger` has passed since the first. Bounded by `max` (and so by the
/// prefetch), never by how fast the broker sends.
pub async fn next_batch(consumer: &mut Consumer, max: usize, linger: Duration) -> Collected {
    let mut batch = Vec::with_capacity(max);
    match consumer.next().await {
        Some(Ok(delivery)) => batch.push(delivery),
        Some(Err(e)) => return Collected::Ended(batch, Some(e)),
        None => return Collected::Ended(batch, None),
    }
    let deadline = Instant::now() + linger;
    while batch.len() < max {
        match timeout_at(deadline, consumer.next()).await {
            Ok(Some(Ok(delivery))) => batch.push(delivery),
            Ok(Some(Err(e))) => return Collected::Ended(batch, Some(e)),
            Ok(None) => return Collected::Ended(batch, None),
            Err(_) => break,
        }
    }
    Collected::Batch(batch)
}
