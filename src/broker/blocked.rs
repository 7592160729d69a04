//! Whether RabbitMQ blocks a connection's publishes: a memory or disk
//! alarm (`connection.blocked`) until it clears (`connection.unblocked`).
//!
//! While blocked, the broker reads nothing more from the connection, and
//! lapin writes nothing to it: no publish, no ack. A worker then takes no
//! new work, keeps what it holds unacked, and waits without counting the
//! time against its confirm timeout; its `/readyz` says why.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use lapin::{Connection, Event};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

/// The blocked state of one connection, watched from its events.
#[derive(Clone, Debug)]
pub struct Blocked {
    reason: watch::Receiver<Option<String>>,
    /// Ends the watching task with the last clone of this handle.
    _watching: Option<Arc<AbortOnDropHandle<()>>>,
}

impl Blocked {
    /// Watches `connection`'s events for as long as a handle lives. While
    /// blocked, the `procinst_broker_blocked` gauge is 1 and
    /// `procinst_broker_blocked_seconds_total` counts on, second by second.
    pub fn watch(connection: &Connection) -> Blocked {
        let events = connection.events_listener();
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut period: Option<Period> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    _ = tick.tick(), if period.is_some() => {
                        if let Some(period) = &mut period {
                            period.count();
                        }
                        continue;
                    }
                };
                match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(%reason, "RabbitMQ blocks publishing on this connection; holding the work in hand until it clears");
                        period.get_or_insert_with(Period::start);
                        tx.send_replace(Some(reason));
                    }
                    Some(Event::ConnectionUnblocked) => {
                        if let Some(period) = period.take() {
                            tracing::info!(blocked_for = ?period.since.elapsed(), "RabbitMQ unblocked publishing");
                        }
                        tx.send_replace(None);
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        });
        Blocked {
            reason: rx,
            _watching: Some(Arc::new(AbortOnDropHandle::new(task))),
        }
    }

    /// A state that never changes: `Some(reason)` blocked, `None` not.
    pub fn fixed(reason: Option<&str>) -> Blocked {
        let (_, rx) = watch::channel(reason.map(str::to_owned));
        Blocked {
            reason: rx,
            _watching: None,
        }
    }

    /// The broker's reason while it blocks the connection.
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Resolves at once when not blocked, else when the block clears (or
    /// the connection is gone, which the session notices on its own).
    pub async fn cleared(&self) {
        let mut reason = self.reason.clone();
        let _ = reason.wait_for(Option::is_none).await;
    }
}

/// A time blocked, counted in whole seconds as it goes and when it ends
/// (also when the connection or the watch ends first).
struct Period {
    since: Instant,
    counted: u64,
}

impl Period {
    fn start() -> Period {
        metrics::gauge!("procinst_broker_blocked").set(1.0);
        Period {
            since: Instant::now(),
            counted: 0,
        }
    }

    fn count(&mut self) {
        let whole = self.since.elapsed().as_secs();
        metrics::counter!("procinst_broker_blocked_seconds_total").increment(whole - self.counted);
        self.counted = whole;
    }
}

impl Drop for Period {
    fn drop(&mut self) {
        self.count();
        metrics::gauge!("procinst_broker_blocked").set(0.0);
    }
}
