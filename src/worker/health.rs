use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::broker::Blocked;

/// How long a recorded database failure keeps the worker not-ready without
/// being recorded again. A batch that keeps failing records it on every
/// attempt (at least every few seconds, see the decider's retry cap), so
/// this only ends a report whose batch went away without succeeding
/// (its channel closed): an idle worker must not report an outage forever.
const STORE_TROUBLE_SHOWN: Duration = Duration::from_secs(30);

/// What the worker knows of its broker session and of its last database
/// write, read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    broker: AtomicBool,
    consuming: AtomicBool,
    /// What the worker is busy with before it can consume, e.g. waiting
    /// for the database; `None` once started.
    stage: Mutex<Option<&'static str>>,
    store_trouble: Mutex<Option<(Instant, String)>>,
    /// The session's connection's alarm state, while there is a session.
    blocked: Mutex<Option<Blocked>>,
    /// Deliveries of the session received and not yet acked or handed
    /// back.
    held: AtomicI64,
    /// When the session last finished a batch (or began), on tokio's clock.
    progressed: Mutex<tokio::time::Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            broker: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
            stage: Mutex::new(None),
            store_trouble: Mutex::new(None),
            blocked: Mutex::new(None),
            held: AtomicI64::new(0),
            progressed: Mutex::new(tokio::time::Instant::now()),
        }
    }
}

impl Health {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    /// The alarm state of the session's connection; `None` between sessions.
    pub fn set_blocked(&self, blocked: Option<Blocked>) {
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = blocked;
    }

    pub fn set_consuming(&self, up: bool) {
        self.consuming.store(up, Ordering::Relaxed);
    }

    /// Reports a start-up stage (`Some`) or its end (`None`).
    pub fn set_stage(&self, stage: Option<&'static str>) {
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = stage;
    }

    /// A batch failed for the database's reasons (read-only after a
    /// failover, no connection, ...) and is being retried. A live probe
    /// cannot see all of these (a read-only server answers `SELECT 1`), so
    /// the worker says what its writes meet.
    pub fn store_failed(&self, reason: String) {
        self.store_failed_at(Instant::now(), reason);
    }

    /// A batch was written: whatever failed before is over.
    pub fn store_succeeded(&self) {
        if let Ok(mut trouble) = self.store_trouble.lock() {
            *trouble = None;
        }
    }

    fn store_failed_at(&self, at: Instant, reason: String) {
        if let Ok(mut trouble) = self.store_trouble.lock() {
            // One line, whatever the error's text holds.
            *trouble = Some((at, reason.replace(['\n', '\r'], " ")));
        }
    }

    /// A session begins: it holds nothing yet.
    pub fn session_began(&self) {
        self.held.store(0, Ordering::Relaxed);
        *self.progressed.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    }

    /// A delivery was received.
    pub fn received(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` deliveries were acked or handed back: progress.
    pub fn finished(&self, n: usize) {
        self.held.fetch_sub(n as i64, Ordering::Relaxed);
        *self.progressed.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    }

    /// Resolves when the session has held deliveries and finished nothing
    /// for `limit`, while neither the database (a batch retrying records
    /// its trouble) nor the broker (an alarm) explains it; with how many
    /// it holds.
    pub async fn stalled(&self, limit: Duration) -> i64 {
        let mut check = tokio::time::interval(limit.min(Duration::from_secs(5)));
        loop {
            check.tick().await;
            let held = self.held.load(Ordering::Relaxed);
            let since = *self.progressed.lock().unwrap_or_else(|e| e.into_inner());
            if held > 0 && since.elapsed() >= limit && self.readiness_at(Instant::now()).is_ok() {
                return held;
            }
        }
    }

    /// `Ok` while the worker can do its job as far as it knows; otherwise
    /// a one-line reason. The database is also probed live by `/readyz`, so
    /// that an outage shows before a batch meets it.
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness_at(Instant::now())
    }

    fn readiness_at(&self, now: Instant) -> Result<(), String> {
        if let Some(stage) = *self.stage.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(stage.into());
        }
        if !self.broker.load(Ordering::Relaxed) {
            return Err("broker connection is down".into());
        }
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = blocked.as_ref().and_then(Blocked::reason) {
            return Err(format!("RabbitMQ blocks publishing: {reason}").replace(['\n', '\r'], " "));
        }
        drop(blocked);
        if !self.consuming.load(Ordering::Relaxed) {
            return Err("not consuming".into());
        }
        let trouble = self.store_trouble.lock().ok().and_then(|t| t.clone());
        match trouble {
            Some((at, reason)) if now.saturating_duration_since(at) < STORE_TROUBLE_SHOWN => {
                Err(reason)
            }
            _ => Ok(()),
        }
    }
}

/// Running totals for the shutdown summary.
#[derive(Debug, Default)]
pub struct Totals {
    answered: std::sync::atomic::AtomicU64,
    dead_lettered: std::sync::atomic::AtomicU64,
}

impl Totals {
    pub fn add(&self, answered: u64, dead_lettered: u64) {
        self.answered.fetch_add(answered, Ordering::Relaxed);
        self.dead_lettered
            .fetch_add(dead_lettered, Ordering::Relaxed);
    }

    /// (answered, dead-lettered) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.answered.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consuming() -> Health {
        let health = Health::default();
        health.set_broker(true);
        health.set_consuming(true);
        health
    }

    #[test]
    fn a_consuming_worker_without_database_trouble_is_ready() {
        assert_eq!(consuming().readiness(), Ok(()));
    }

    #[test]
    fn a_failed_write_makes_the_worker_not_ready_with_its_reason() {
        let health = consuming();
        health.store_failed("database: read-only transaction (SQLSTATE 25006), retrying".into());
        assert_eq!(
            health.readiness(),
            Err("database: read-only transaction (SQLSTATE 25006), retrying".into())
        );
    }

    #[test]
    fn the_next_successful_write_makes_it_ready_again() {
        let health = consuming();
        health.store_failed("database: connection refused, retrying".into());
        health.store_succeeded();
        assert_eq!(health.readiness(), Ok(()));
    }

    #[test]
    fn a_failure_not_seen_again_for_a_while_is_forgotten() {
        let health = consuming();
        let then = Instant::now();
        health.store_failed_at(then, "database: gone".into());
        assert!(health.readiness_at(then + Duration::from_secs(1)).is_err());
        assert_eq!(health.readiness_at(then + STORE_TROUBLE_SHOWN), Ok(()));
    }

    #[test]
    fn the_reason_is_one_line() {
        let health = consuming();
        health.store_failed("database: first\nsecond".into());
        assert_eq!(health.readiness(), Err("database: first second".into()));
    }

    #[test]
    fn a_connection_the_broker_blocks_makes_the_worker_not_ready_with_the_alarm() {
        let health = consuming();
        health.set_blocked(Some(Blocked::fixed(Some("low on disk"))));
        assert_eq!(
            health.readiness(),
            Err("RabbitMQ blocks publishing: low on disk".into())
        );
        health.set_blocked(Some(Blocked::fixed(None)));
        assert_eq!(health.readiness(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn held_deliveries_with_no_progress_and_nothing_to_explain_it_are_a_stall() {
        let health = consuming();
        health.session_began();
        let limit = Duration::from_secs(60);
        // Holding nothing is never a stall.
        let idle = tokio::time::timeout(Duration::from_secs(600), health.stalled(limit)).await;
        assert!(idle.is_err());
        health.received();
        health.received();
        // A batch retrying for the database explains the wait.
        health.store_failed("database: gone".into());
        let retrying = tokio::time::timeout(Duration::from_secs(25), health.stalled(limit)).await;
        assert!(retrying.is_err());
        health.store_succeeded();
        health.finished(1);
        let stalled = tokio::time::timeout(Duration::from_secs(600), health.stalled(limit))
            .await
            .expect("a stall");
        assert_eq!(stalled, 1);
    }

    #[test]
    fn broker_trouble_is_reported_before_database_trouble() {
        let health = consuming();
        health.store_failed("database: gone".into());
        health.set_broker(false);
        assert_eq!(health.readiness(), Err("broker connection is down".into()));
    }
}
