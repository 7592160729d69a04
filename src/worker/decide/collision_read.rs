//! The collision read: whether a round reads the existing processes its
//! new ones could collide with (check 7 against the database), or skips it
//! and leaves that to the unique indexes.
//!
//! Reading them costs two index probes per new process, about a fifth of
//! PostgreSQL's work per request, and in a stream of new processes it
//! finds nothing. So once enough rounds in a row found nothing, rounds
//! skip the read: a collision then surfaces as a unique violation when the
//! round is written, the transaction rolls back, and the round is decided
//! again with the read, exactly like a race lost to another worker, so
//! every answer is the one the read would have given. The first collision
//! (or lost race) goes back to reading, until the streak is rebuilt; a
//! stream that keeps meeting existing processes keeps reading, and wastes
//! no writes.

use std::sync::atomic::{AtomicU32, Ordering};

/// Rounds in a row whose read found no existing process before rounds
/// skip it. A skipped read that meets a collision costs one rolled-back
/// write, about ten reads' worth of database work: after a collision,
/// this many rounds read again.
const CLEAN_ROUNDS_TO_SKIP: u32 = 16;

/// The worker's running judgement, shared by the batches decided at once.
#[derive(Debug, Default)]
pub struct CollisionRead {
    /// Rounds in a row that read and found nothing, capped.
    clean: AtomicU32,
}

impl CollisionRead {
    /// Whether the next round reads the existing processes.
    pub fn wanted(&self) -> bool {
        self.clean.load(Ordering::Relaxed) < CLEAN_ROUNDS_TO_SKIP
    }

    /// A round that read: `found` whether any existing process collided.
    pub fn found(&self, found: bool) {
        if found {
            self.clean.store(0, Ordering::Relaxed);
        } else {
            let _ = self
                .clean
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some((n + 1).min(CLEAN_ROUNDS_TO_SKIP))
                });
        }
    }

    /// A round that skipped the read lost its write to a unique index:
    /// read again until the streak is rebuilt.
    pub fn skipped_and_collided(&self) {
        self.clean.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_until_enough_clean_rounds_then_skips_until_a_collision() {
        let check = CollisionRead::default();
        for _ in 0..CLEAN_ROUNDS_TO_SKIP {
            assert!(check.wanted());
            check.found(false);
        }
        assert!(!check.wanted(), "a stream of new processes skips the read");
        check.skipped_and_collided();
        assert!(check.wanted(), "a collision brings the read back");
    }

    #[test]
    fn rounds_that_find_existing_processes_keep_reading() {
        let check = CollisionRead::default();
        for i in 0..100 {
            check.found(i % 10 == 0);
            assert!(check.wanted(), "round {i}");
        }
        for _ in 0..CLEAN_ROUNDS_TO_SKIP - 1 {
            check.found(false);
        }
        check.found(true);
        assert!(check.wanted());
    }
}
