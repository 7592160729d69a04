use std::time::Duration;

use futures::StreamExt;
use lapin::{Consumer, message::Delivery};
use tokio::time::{Instant, timeout_at};

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
/// `max` are in hand or `linger` has passed since the first. Bounded by
/// `max` (and so by the prefetch), never by how fast the broker sends.
///
/// The batch lives with the caller, so a shutdown that cancels this call
/// keeps what was gathered: it is in flight like any other batch.
pub async fn next_batch(
    consumer: &mut Consumer,
    batch: &mut Vec<Delivery>,
    max: usize,
    linger: Duration,
) -> Collected {
    if batch.is_empty() {
        match consumer.next().await {
            Some(Ok(delivery)) => batch.push(delivery),
            Some(Err(e)) => return Collected::Ended(Some(e)),
            None => return Collected::Ended(None),
        }
    }
    let deadline = Instant::now() + linger;
    while batch.len() < max {
        match timeout_at(deadline, consumer.next()).await {
            Ok(Some(Ok(delivery))) => batch.push(delivery),
            Ok(Some(Err(e))) => return Collected::Ended(Some(e)),
            Ok(None) => return Collected::Ended(None),
            Err(_) => break,
        }
    }
    Collected::Batch
}

/// After basic.cancel: the deliveries the broker had already sent, in
/// batches of at most `max`. lapin ends the stream behind them once the
/// cancel is confirmed.
pub async fn remaining(consumer: &mut Consumer, max: usize) -> Vec<Vec<Delivery>> {
    let mut batches: Vec<Vec<Delivery>> = Vec::new();
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
