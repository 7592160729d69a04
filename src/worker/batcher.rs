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

/// Keeps adding deliveries to `batch` until it is full or `ready` completes
/// (the next stage can take the batch), then returns what `ready` gave.
/// Under load, batches grow while the database is busy; when idle, a batch
/// leaves as soon as its linger is over. `Err` when the consumer ended.
pub async fn top_up<T>(
    consumer: &mut Consumer,
    batch: &mut Vec<Delivery>,
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
