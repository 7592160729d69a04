//! Writes in delivery order where the order matters, at the same time where
//! it cannot.
//!
//! Batches read the database and plan at the same time. A batch writes
//! once every earlier batch that shares a key with it has finished: a
//! `request_id`, or a process name or (func name, start param regex)
//! within one service instance. The later batch's insert then meets the
//! earlier batch's committed rows (and is decided again), so the earlier
//! delivery wins a collision between batches of one worker, as it does
//! within a batch. Batches without a key in common cannot change each
//! other's answers (the service instances they read are never written
//! here), so they write at the same time.

use std::{
    collections::{BTreeMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use super::plan::process_keys;
use crate::store::ProcessKey;
use crate::worker::message::Parsed;

/// What a batch reads and writes that another batch could too, as hashes:
/// a hash collision only makes a batch wait when it need not.
#[derive(Debug, Default)]
pub struct Keys(HashSet<u64>);

impl Keys {
    /// What a batch's answers depend on besides read-only service
    /// instances: every request's stored reply, and the uniqueness keys of
    /// the processes it may create.
    pub fn of<'a>(requests: impl IntoIterator<Item = &'a Parsed>) -> Self {
        let mut keys = Keys::default();
        for parsed in requests {
            keys.request_id(&parsed.decoded.request_id);
            for key in process_keys(parsed.checked.iter()) {
                keys.process(&key);
            }
        }
        keys
    }

    pub fn request_id(&mut self, request_id: &str) {
        self.add((0u8, request_id));
    }

    /// A new process's name and (func name, start param regex), each
    /// within its service instance.
    pub fn process(&mut self, key: &ProcessKey<'_>) {
        let si = key.service_instance_id;
        self.add((1u8, si, key.name));
        self.add((2u8, si, key.func_name, key.start_param_regex));
    }

    fn add(&mut self, key: impl Hash) {
        // SipHash with fixed keys: the same in every batch.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.0.insert(hasher.finish());
    }

    fn meets(&self, other: &Keys) -> bool {
        let (small, large) = if self.0.len() <= other.0.len() {
            (self, other)
        } else {
            (other, self)
        };
        small.0.iter().any(|k| large.0.contains(k))
    }
}

/// Hands out turns in delivery order and lets each write when no earlier
/// unfinished turn shares a key with it.
#[derive(Debug, Clone)]
pub struct Turnstile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bumped whenever a turn claims its keys or finishes.
    changed: watch::Sender<u64>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Unfinished turns with their keys; `None` until claimed, which
    /// counts as sharing a key with every later turn.
    open: BTreeMap<u64, Option<Keys>>,
}

/// One batch's place in the order; finishing (or dropping) it lets later
/// batches that share its keys write.
#[derive(Debug)]
pub struct Turn {
    seq: u64,
    turnstile: Turnstile,
}

impl Default for Turnstile {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                changed: watch::Sender::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Turnstile {
    /// The next turn, in the order of the calls.
    pub fn take(&self) -> Turn {
        let mut state = self.state();
        let seq = state.next;
        state.next += 1;
        state.open.insert(seq, None);
        Turn {
            seq,
            turnstile: self.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether `seq` may write: every earlier unfinished turn has claimed
    /// keys, and none of them meets the keys of `seq`. A turn that has not
    /// claimed its own waits for every earlier one.
    fn clear(&self, seq: u64) -> bool {
        let state = self.state();
        let mine = state.open.get(&seq).and_then(Option::as_ref);
        state
            .open
            .range(..seq)
            .all(|(_, earlier)| match (earlier, mine) {
                (Some(earlier), Some(mine)) => !earlier.meets(mine),
                _ => false,
            })
    }
}

impl Turn {
    /// Records what this turn's batch reads and writes; until then, every
    /// later turn waits for it.
    pub fn claim(&self, keys: Keys) {
        if let Some(open) = self.turnstile.state().open.get_mut(&self.seq) {
            *open = Some(keys);
        }
        self.turnstile.changed();
    }

    /// Waits until no earlier unfinished turn may share a key with this one.
    pub async fn wait(&self) {
        let mut changed = self.turnstile.inner.changed.subscribe();
        while !self.turnstile.clear(self.seq) {
            // The sender lives in `self.turnstile`, so this cannot fail.
            let _ = changed.changed().await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turnstile.state().open.remove(&self.seq);
        self.turnstile.changed();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn keys(request_ids: &[&str]) -> Keys {
        let mut keys = Keys::default();
        for id in request_ids {
            keys.request_id(id);
        }
        keys
    }

    fn process(si: i64, name: &str, func_name: &str) -> Keys {
        let mut keys = Keys::default();
        keys.process(&ProcessKey {
            service_instance_id: si,
            name,
            func_name,
            start_param_regex: "",
        });
        keys
    }

    async fn assert_waits(turn: &Turn, why: &str) {
        let waiting = tokio::time::timeout(Duration::from_millis(50), turn.wait()).await;
        assert!(waiting.is_err(), "{why}");
    }

    async fn assert_goes(turn: &Turn, why: &str) {
        tokio::time::timeout(Duration::from_secs(1), turn.wait())
            .await
            .expect(why);
    }

    #[tokio::test]
    async fn later_turns_wait_for_earlier_ones_even_when_abandoned_out_of_order() {
        let turnstile = Turnstile::default();
        let first = turnstile.take();
        let second = turnstile.take();
        let third = turnstile.take();
        first.wait().await;
        assert_waits(&third, "the third waits while the first runs").await;
        drop(second); // abandoned before its turn came
        drop(first);
        assert_goes(&third, "the third goes once both earlier turns finished").await;
    }

    #[tokio::test]
    async fn batches_without_a_common_key_write_at_once_and_a_shared_key_waits() {
        let turnstile = Turnstile::default();
        let first = turnstile.take();
        let second = turnstile.take();
        let third = turnstile.take();
        first.claim(keys(&["a", "b"]));
        second.claim(keys(&["c"]));
        third.claim(keys(&["d", "b"]));
        assert_goes(
            &second,
            "no key in common with the first: it writes at once",
        )
        .await;
        assert_waits(&third, "the third shares \"b\" with the first").await;
        drop(first);
        assert_goes(&third, "the third goes once the first finished").await;
    }

    #[tokio::test]
    async fn an_earlier_turn_that_has_not_claimed_holds_every_later_one() {
        let turnstile = Turnstile::default();
        let first = turnstile.take();
        let second = turnstile.take();
        second.claim(keys(&["x"]));
        assert_waits(&second, "the first's keys are not known yet").await;
        first.claim(keys(&["y"]));
        assert_goes(&second, "disjoint once claimed").await;
    }

    #[test]
    fn the_kinds_of_key_do_not_meet_each_other() {
        let name_a = process(1, "a", "x");
        assert!(
            !name_a.meets(&process(1, "y", "a")),
            "a name is not a func name"
        );
        assert!(
            !name_a.meets(&process(2, "a", "x")),
            "another service instance"
        );
        assert!(name_a.meets(&process(1, "a", "z")), "the same name");
        assert!(
            name_a.meets(&process(1, "z", "x")),
            "the same func name and regex"
        );
        assert!(!keys(&["a"]).meets(&name_a), "a request_id is not a name");
    }
}
