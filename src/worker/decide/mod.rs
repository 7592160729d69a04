//! The decide stage: each batch parsed, then decided and written in
//! PostgreSQL round by round; several batches at once, their output in
//! delivery order.
//!
//! A batch's life here:
//! 1. its messages are parsed ([`Message::parse`]), on the blocking pool
//!    when the batch is large;
//! 2. it claims its keys at the [`Turnstile`];
//! 3. its parsed requests are split into rounds of distinct `request_id`s
//!    (a `request_id` seen twice is decided again in a later round, which
//!    sees the first one's result);
//! 4. each round is read, planned ([`plan`], no I/O) and written
//!    ([`Decider::attempt`]), its failures carried out by the failure
//!    ladder ([`Decider::decide`]; see [`disposition`](super::disposition));
//! 5. the batch goes on to the deliver stage with a fate for every message,
//!    or is handed back to the broker.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures::StreamExt;
use lapin::options::BasicRejectOptions;
use opentelemetry::trace::TraceContextExt;
use tokio::sync::mpsc;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod collision_read;
mod plan;
mod turnstile;

use super::Shared;
use super::collect::Batch;
use super::disposition::{OnStore, RACE_ATTEMPTS, STORE_REJECTED};
use super::message::{Answered, Fate, Limits, Message, Parsed};
use super::{Backoff, Health, Worker};
use crate::config::Lane;
use crate::store::{self, StoreError};
use crate::telemetry::{error_chain, timed, timed_sync};
pub(super) use collision_read::CollisionRead;
use plan::Query;
use tokio::sync::{Semaphore, SemaphorePermit};
pub(super) use turnstile::Turnstile;
use turnstile::{Keys, Turn};

const DB_RETRY_MIN: Duration = Duration::from_millis(100);
const DB_RETRY_MAX: Duration = Duration::from_secs(2);
/// Batches at least this large are parsed on the blocking pool, beside the
/// runtime's thread; a smaller one is parsed in place, sparing the
/// hand-off (a thread wake-up each way) where there is little to parse.
/// Not tuned: at 4,500 req/s batches average 16.5 and latency did not
/// change.
const PARSE_APART_FROM: usize = 16;
/// Longest wait for the broker to take a reject.
const REJECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch with a fate for every message, its rows committed, waiting for
/// delivery.
pub(super) struct Decided {
    pub(super) messages: Vec<Answered>,
    pub(super) started: Instant,
    pub(super) span: Span,
}

/// The writer slots of a session: `concurrent_batches` that either lane may
/// take, and one more that only the interactive lane may. A bulk batch
/// therefore never holds the last slot, and an interactive batch never
/// queues behind bulk batches waiting for one: it takes the reserved slot
/// when that is free, else whichever shared slot frees first.
pub(crate) struct Writers {
    shared: Semaphore,
    reserved: Semaphore,
}

impl Writers {
    pub(crate) fn new(shared: usize) -> Self {
        Self {
            shared: Semaphore::new(shared),
            reserved: Semaphore::new(1),
        }
    }

    /// A slot for a batch of `lane`, held until dropped. The semaphores are
    /// never closed, so a slot always comes.
    async fn acquire(&self, lane: Lane) -> Option<SemaphorePermit<'_>> {
        match lane {
            Lane::Bulk => self.shared.acquire().await.ok(),
            Lane::Interactive => tokio::select! {
                biased;
                reserved = self.reserved.acquire() => reserved.ok(),
                shared = self.shared.acquire() => shared.ok(),
            },
        }
    }
}

/// How a batch was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GivenUp {
    /// Rung 4: handed back to the broker, one reject per delivery.
    HandBack,
    /// Rung 6: its channel closed while the database was in trouble; the
    /// broker redelivers it.
    ChannelClosed,
}

/// The decide stage. Several batches are decided at once on their own
/// database connections and come out in delivery order, so acks stay in
/// order; a batch writes once no earlier batch sharing a key with it is
/// still unfinished ([`Turnstile`]).
pub(super) struct Decider<'a> {
    lane: Lane,
    pool: &'a Pool,
    limits: Limits,
    /// Whether rounds read the existing processes; learnt over the session
    /// by both lanes.
    collision_read: &'a CollisionRead,
    /// Orders the writes of both lanes' batches that share a key.
    turnstile: &'a Turnstile,
    /// The writer slots both lanes share, held by a batch from its claim
    /// at the turnstile to its end.
    writers: &'a Writers,
    health: &'a Health,
    concurrent_batches: usize,
}

/// A round: parsed messages of one batch with distinct `request_id`s,
/// decided and written together, by their positions in the batch.
struct Round {
    members: Vec<usize>,
    /// Attempts lost to a race so far.
    races: usize,
    /// Whether to read the existing processes: `None` asks the
    /// [`CollisionRead`]; a round decided again after a collision reads.
    read_collisions: Option<bool>,
}

impl Round {
    fn new(members: Vec<usize>) -> Self {
        Self {
            members,
            races: 0,
            read_collisions: None,
        }
    }
}

impl<'a> Decider<'a> {
    pub(super) fn new(worker: &'a Worker, lane: Lane, shared: &'a Shared) -> Self {
        Self {
            lane,
            pool: &worker.pool,
            limits: Limits {
                max_body_bytes: worker.settings.max_body_bytes,
                retention: worker.settings.retention(),
            },
            collision_read: &shared.collision_read,
            turnstile: &shared.turnstile,
            writers: &shared.writers,
            health: &worker.health,
            concurrent_batches: worker.settings.concurrent_batches(),
        }
    }

    /// Runs the stage until the collector closes `batches` and every batch
    /// taken is decided, or the deliverer is gone.
    pub(super) async fn run(
        self,
        mut batches: mpsc::Receiver<Batch>,
        decided: mpsc::Sender<Decided>,
    ) {
        let mut in_order = futures::stream::poll_fn(|cx| batches.poll_recv(cx))
            .map(|batch| self.decide_batch(batch, self.turnstile.take()))
            .buffered(self.concurrent_batches);
        while let Some(batch) = in_order.next().await {
            if let Some(batch) = batch
                && decided.send(batch).await.is_err()
            {
                break;
            }
        }
    }

    /// Decides a batch in its span; `None` when it was given up.
    async fn decide_batch(&self, batch: Batch, turn: Turn) -> Option<Decided> {
        let Batch { messages, deciding } = batch;
        let lane = self.lane.as_str();
        let span = tracing::info_span!("batch", lane, size = messages.len());
        // The batch's shared database round trips show in each request's
        // trace through these links.
        for message in &messages {
            span.add_link(message.span.context().span().span_context().clone());
        }
        let started = Instant::now();
        metrics::histogram!("procinst_batch_size", "lane" => lane).record(messages.len() as f64);
        metrics::gauge!("procinst_in_flight_deliveries", "lane" => lane)
            .increment(messages.len() as f64);
        let redelivered = messages.iter().filter(|m| m.delivery.redelivered).count();
        if redelivered > 0 {
            metrics::counter!("procinst_redeliveries_total").increment(redelivered as u64);
        }
        let mut messages = parse_batch(messages, self.limits, lane).await;
        let decided = self
            .decide(&mut messages, &turn)
            .instrument(span.clone())
            .await;
        // The batch is written or given up: later batches that share a key
        // with it may write, and the batch being gathered may leave. Kept
        // until delivery instead, the next batch would also wait for this
        // one's confirms, and batches would grow and latency with them;
        // dropped before the write, the next batch would leave while the
        // database is still busy, and batches would shrink to what arrives
        // in one write.
        drop(turn);
        drop(deciding);
        let given_up = match decided {
            Ok(()) if messages.iter().all(|m| m.fate.is_some()) => {
                return Some(Decided {
                    messages: messages.into_iter().filter_map(Message::answered).collect(),
                    started,
                    span,
                });
            }
            Ok(()) => {
                tracing::error!("a message was left without a fate; handing the batch back");
                GivenUp::HandBack
            }
            Err(given_up) => given_up,
        };
        if given_up == GivenUp::HandBack {
            hand_back(&messages).instrument(span).await;
        }
        metrics::gauge!("procinst_in_flight_deliveries", "lane" => lane)
            .decrement(messages.len() as f64);
        self.health.finished(messages.len());
        None
    }

    /// Decides every parsed message of a batch, round by round, carrying
    /// out rungs 1 to 4 and 6 of the failure ladder
    /// ([`disposition`](super::disposition)) in one match. Rounds that
    /// committed keep their fates whatever happens to later ones.
    async fn decide(&self, messages: &mut [Message], turn: &Turn) -> Result<(), GivenUp> {
        turn.claim(Keys::of(messages.iter().filter_map(|m| m.parsed.as_ref())));
        // Never closed, so the permit is always there once it is our turn.
        let _slot = timed("slot", self.lane.as_str(), self.writers.acquire(self.lane)).await;
        let mut rounds = rounds(messages);
        let mut retry = Backoff::new(DB_RETRY_MIN, DB_RETRY_MAX);
        while let Some(mut round) = rounds.pop_front() {
            let read_collisions = round
                .read_collisions
                .unwrap_or_else(|| self.collision_read.wanted());
            let e = match self
                .attempt(messages, &round.members, read_collisions, turn)
                .await
            {
                Ok(fates) => {
                    for (at, fate) in fates {
                        messages[at].fate = Some(fate);
                    }
                    self.health.store_succeeded();
                    continue;
                }
                Err(e) => e,
            };
            match OnStore::of(&e) {
                // 1. Decide again: another writer won a race, or a round
                //    that skipped the collision read met a collision.
                OnStore::DecideAgain if round.races + 1 < RACE_ATTEMPTS => {
                    if read_collisions {
                        metrics::counter!("procinst_races_total").increment(1);
                        tracing::debug!(error = %error_chain(&e), "lost a race to another writer; deciding again");
                    } else {
                        self.collision_read.skipped_and_collided();
                        metrics::counter!("procinst_unread_collisions_total").increment(1);
                        tracing::debug!(error = %error_chain(&e), "a round that skipped reading existing processes met one; deciding again with the read");
                    }
                    round.races += 1;
                    round.read_collisions = Some(true);
                    rounds.push_front(round);
                }
                // 4. Hand back: the round kept losing races.
                OnStore::DecideAgain => {
                    metrics::counter!("procinst_contended_batches_total").increment(1);
                    tracing::warn!(error = %error_chain(&e), "contended: handing the batch back to the broker");
                    return Err(GivenUp::HandBack);
                }
                // 2. Split in halves, down to the one request at fault.
                OnStore::Split if round.members.len() == 1 => {
                    let at = round.members[0];
                    let request_id = messages[at]
                        .parsed
                        .as_ref()
                        .map(|p| p.decoded.request_id.as_str())
                        .unwrap_or_default();
                    tracing::error!(%request_id, error = %error_chain(&e), "the database rejects this request's data; dead-lettering it");
                    messages[at].fate = Some(Fate::DeadLetter {
                        reason: STORE_REJECTED,
                        detail: error_chain(&e),
                        reply: None,
                    });
                }
                OnStore::Split => {
                    tracing::warn!(error = %error_chain(&e), size = round.members.len(), "batch write failed; splitting it");
                    let right = round.members.split_off(round.members.len() / 2);
                    rounds.push_front(Round::new(right));
                    rounds.push_front(Round::new(round.members));
                }
                // 3. Retry later, for as long as the batch's channel lives
                //    (6. end the session once it is gone).
                OnStore::RetryLater => {
                    self.health.store_failed(e.readiness_reason());
                    metrics::counter!("procinst_db_retries_total").increment(1);
                    tracing::error!(error = %error_chain(&e), "database unavailable; keeping the batch and retrying");
                    if messages.iter().any(|m| m.delivery.acker.poisoned()) {
                        tracing::warn!(
                            "the batch's channel closed meanwhile; the broker redelivers it"
                        );
                        return Err(GivenUp::ChannelClosed);
                    }
                    tokio::time::sleep(retry.next_delay()).await;
                    rounds.push_front(Round::new(round.members));
                }
            }
        }
        Ok(())
    }

    /// One attempt at a round, the I/O around the pure [`plan`]: the reads
    /// (one round trip), the plan, the turn, the write and commit (one
    /// more round trip), on one pooled connection ([`store::Round`]). The
    /// fates are those of the round's members, by position in the batch.
    /// Each attempt reads afresh: a round decided again sees what the
    /// writer that beat it committed.
    async fn attempt(
        &self,
        messages: &[Message],
        members: &[usize],
        read_collisions: bool,
        turn: &Turn,
    ) -> Result<Vec<(usize, Fate)>, StoreError> {
        let round: Vec<(usize, &Parsed)> = members
            .iter()
            .filter_map(|&at| Some((at, messages[at].parsed.as_ref()?)))
            .collect();
        let query = Query::of(&round);
        let wanted = store::Wanted {
            request_ids: &query.request_ids,
            retention: self.limits.retention,
            service_instance_ids: &query.service_instance_ids,
            colliding_with: if read_collisions { &query.keys } else { &[] },
            new_processes: query.keys.len(),
        };
        let client = self.pool.get().await?;
        let (write, lookup) = timed(
            "lookup",
            self.lane.as_str(),
            store::Round::begin(client, &wanted),
        )
        .await?;
        if read_collisions {
            self.collision_read.found(!lookup.existing.is_empty());
        }
        let planned = plan::plan(&round, &lookup, self.lane);
        // Earlier batches that share a key with this one commit first.
        // Meanwhile this round holds its pooled connection and, when it
        // creates processes, an open transaction whose COPY has started
        // and received no row. That blocks no other writer: the round has
        // taken no row lock, only the table locks every writer takes
        // (ROW EXCLUSIVE on `process`, ACCESS SHARE on what it read),
        // which conflict with schema changes alone. And it cannot deadlock:
        // a turn waits only for earlier turns, which never wait for it. The
        // pool holds twice as many connections as batches decided at once.
        timed("turn", self.lane.as_str(), turn.wait()).await;
        timed(
            "write",
            self.lane.as_str(),
            write.commit(&planned.rows, self.limits.retention),
        )
        .await?;
        Ok(planned.fates)
    }
}

/// The batch's parsed requests as rounds of distinct `request_id`s, in
/// delivery order: the k-th delivery of a `request_id` in the k-th round,
/// so that it sees the result of the one before it.
fn rounds(messages: &[Message]) -> VecDeque<Round> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (at, message) in messages.iter().enumerate() {
        let Some(parsed) = &message.parsed else {
            continue;
        };
        let nth = seen.entry(parsed.decoded.request_id.as_str()).or_default();
        if rounds.len() <= *nth {
            rounds.push(Vec::new());
        }
        rounds[*nth].push(at);
        *nth += 1;
    }
    rounds.into_iter().map(Round::new).collect()
}

/// Parses every message of a batch ([`Message::parse`]): on the blocking
/// pool when the batch is large enough to be worth the hand-off, else in
/// place.
async fn parse_batch(messages: Vec<Message>, limits: Limits, lane: &'static str) -> Vec<Message> {
    let apart = messages.len() >= PARSE_APART_FROM;
    beside(messages, apart, move |messages| {
        timed_sync("parse", lane, || {
            for message in messages {
                message.parse(limits);
            }
        })
    })
    .await
}

/// `work` on `owned`, which travels there and back: on the blocking pool
/// when `apart`, else in place. The worker's runtime has one thread; work
/// done beside it leaves that thread to the broker and the database, and
/// lets a second core take the CPU-bound part.
async fn beside<T>(mut owned: T, apart: bool, work: impl FnOnce(&mut T) + Send + 'static) -> T
where
    T: Send + 'static,
{
    let run = move || {
        work(&mut owned);
        owned
    };
    if !apart {
        return run();
    }
    match tokio::task::spawn_blocking(run).await {
        Ok(done) => done,
        // A panic there is a panic here, as in place.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The blocking pool is shut down only with the runtime, after the
        // worker's session has returned.
        Err(e) => panic!("the blocking pool is gone while a batch is parsed: {e}"),
    }
}

/// Rung 4: returns a batch that could not be decided to the broker, one
/// delivery at a time (a `multiple` reject would also cover earlier
/// batches still being delivered). basic.reject counts toward the delivery
/// limit on every RabbitMQ version, so a batch that can never be written
/// ends in the dead-letter queue instead of going round forever.
async fn hand_back(messages: &[Message]) {
    for message in messages {
        let reject = message
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: true });
        match tokio::time::timeout(REJECT_TIMEOUT, reject).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not hand a delivery back; the broker will on channel close");
                return;
            }
            Err(_) => {
                tracing::warn!("no answer to a reject; the broker will requeue on channel close");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `slot` resolves without waiting.
    fn now<'a>(
        slot: impl Future<Output = Option<SemaphorePermit<'a>>>,
    ) -> Option<SemaphorePermit<'a>> {
        use futures::FutureExt;
        slot.now_or_never().flatten()
    }

    #[tokio::test]
    async fn bulk_never_holds_the_last_writer_slot_and_interactive_never_queues_behind_it() {
        let writers = std::sync::Arc::new(Writers::new(2));
        let bulk: Vec<_> = (0..2)
            .map(|_| now(writers.acquire(Lane::Bulk)).expect("a shared slot"))
            .collect();
        // A third bulk batch queues for a slot.
        let queued = tokio::spawn({
            let writers = writers.clone();
            async move { writers.acquire(Lane::Bulk).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!queued.is_finished(), "a third bulk batch waits");
        let interactive = now(writers.acquire(Lane::Interactive));
        assert!(
            interactive.is_some(),
            "an interactive batch takes the reserved slot, ahead of the queued bulk one"
        );
        assert!(
            now(writers.acquire(Lane::Interactive)).is_none(),
            "a second interactive batch waits for a slot to free"
        );
        drop(bulk);
        let took = tokio::time::timeout(Duration::from_secs(5), queued)
            .await
            .expect("the queued bulk batch gets a freed slot")
            .expect("the task ran");
        assert!(took);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_apart_runs_on_another_thread_and_hands_back_what_it_took() {
        let here = std::thread::current().id();
        let (numbers, there) = beside((vec![1, 2, 3], None), true, |(v, there)| {
            *there = Some((std::thread::current().id(), v.iter().sum::<i32>()));
        })
        .await;
        assert_eq!(numbers, vec![1, 2, 3]);
        let (thread, sum) = there.expect("the work ran");
        assert_ne!(thread, here);
        assert_eq!(sum, 6);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_in_place_stays_on_the_runtime_thread() {
        let here = std::thread::current().id();
        let there = beside(None, false, |there| {
            *there = Some(std::thread::current().id())
        })
        .await;
        assert_eq!(there, Some(here));
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "parsing failed")]
    async fn a_panic_apart_is_a_panic_of_the_caller() {
        let _ = beside((), true, |_| panic!("parsing failed")).await;
    }
}
