use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

/// What the worker knows of its broker session, read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    broker: AtomicBool,
    consuming: AtomicBool,
    /// What the worker is busy with before it can consume, e.g. waiting
    /// for the database; `None` once started.
    stage: Mutex<Option<&'static str>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            broker: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
            stage: Mutex::new(None),
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

    /// Reports a start-up stage (`Some`) or its end (`None`).
    pub fn set_stage(&self, stage: Option<&'static str>) {
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = stage;
    }

    /// `Ok` while the broker side can do its job; otherwise a one-line
    /// reason. The database is probed live by `/readyz` instead, so that an
    /// idle worker does not report an outage that is over.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if let Some(stage) = *self.stage.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(stage);
        }
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
