use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{Consumer, message::Delivery};
use tokio::sync::watch;
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
pub async fn next_batch(
    consumer: &mut Consumer,
    batch: &mut Vec<Delivery>,
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
