use std::sync::atomic::{AtomicBool, Ordering};

/// What the worker knows of its broker session, read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    broker: AtomicBool,
    consuming: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            broker: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
        }
    }
}

impl Health {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
    }

    pub fn set_consuming(&self, up: bool) {
        self.consuming.store(up, Ordering::Relaxed);
    }

    /// `Ok` while the broker side can do its job; otherwise a one-line
    /// reason. The database is probed live by `/readyz` instead, so that an
    /// idle worker does not report an outage that is over.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.broker.load(Ordering::Relaxed) {
            return Err("broker connection is down");
        }
        if !self.consuming.load(Ordering::Relaxed) {
            return Err("not consuming");
        }
        Ok(())
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
