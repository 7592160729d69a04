//! Writes in delivery order while batches are decided concurrently.
//!
//! Batches read the database and plan at the same time, but each writes
//! only when every earlier batch has finished: a later batch's insert then
//! meets the earlier batch's committed rows (and is decided again), so the
//! earlier delivery wins a collision between batches of one worker, as it
//! does within a batch.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

/// Hands out turns in order and lets each one through when all earlier
/// ones are finished.
#[derive(Debug, Clone)]
pub struct Turnstile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The first turn not yet finished.
    current: watch::Sender<u64>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Turns finished out of order (abandoned before their turn came).
    finished: BTreeSet<u64>,
}

/// One batch's place in the order; finishing (or dropping) it lets the
/// next batch write.
#[derive(Debug)]
pub struct Turn {
    seq: u64,
    turnstile: Turnstile,
}

impl Default for Turnstile {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                current: watch::Sender::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Turnstile {
    /// The next turn, in the order of the calls.
    pub fn take(&self) -> Turn {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = state.next;
        state.next += 1;
        Turn {
            seq,
            turnstile: self.clone(),
        }
    }

    fn finish(&self, seq: u64) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.finished.insert(seq);
        let mut current = *self.inner.current.borrow();
        while state.finished.remove(&current) {
            current += 1;
        }
        self.inner.current.send_replace(current);
    }
}

impl Turn {
    /// Waits until every earlier turn is finished.
    pub async fn wait(&self) {
        let mut current = self.turnstile.inner.current.subscribe();
        // The sender lives in `self.turnstile`, so this cannot fail.
        let _ = current.wait_for(|c| *c >= self.seq).await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turnstile.finish(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn later_turns_wait_for_earlier_ones_even_when_abandoned_out_of_order() {
        let turnstile = Turnstile::default();
        let first = turnstile.take();
        let second = turnstile.take();
        let third = turnstile.take();
        first.wait().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), third.wait()).await;
        assert!(waiting.is_err(), "the third waits while the first runs");
        drop(second); // abandoned before its turn came
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), third.wait())
            .await
            .expect("the third goes once both earlier turns finished");
    }
}
