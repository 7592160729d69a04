//! The decide stage of a session: each batch read, planned and written in
//! PostgreSQL ([`decide`]), several batches at once, their output in
//! delivery order.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use opentelemetry::trace::TraceContextExt;
use tokio::sync::mpsc;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::batcher::Occupied;
use super::collector::Handed;
use super::decide::{self, Context, Input, Limits, Read, decide};
use super::disposition::Disposition;
use super::existing::ExistingCheck;
use super::fate::Fate;
use super::turnstile::{Turn, Turnstile};
use super::{Backoff, Health, Worker, deliver};
use crate::broker::{BrokerError, trace_context};
use crate::telemetry::error_chain;

const DB_RETRY_MIN: Duration = Duration::from_millis(100);
const DB_RETRY_MAX: Duration = Duration::from_secs(2);
/// Batches at least this large are read on the blocking pool, beside the
/// runtime's thread; a smaller one is read in place, sparing the hand-off
/// (a thread wake-up each way) where there is little to parse. Not tuned:
/// at 4,500 req/s batches average 16.5 and latency did not change.
const READ_APART_FROM: usize = 16;

/// A batch with its fates decided and written, waiting for delivery.
pub(super) struct Decided {
    pub(super) batch: Vec<Delivery>,
    pub(super) fates: Vec<Fate>,
    /// One span per delivery, in the trace its publisher started.
    pub(super) requests: Vec<Span>,
    pub(super) started: Instant,
    pub(super) span: Span,
}

/// The decide stage. Several batches are decided at once on their own
/// database connections and come out in delivery order, so acks stay in
/// order; a batch writes once no earlier batch sharing a key with it is
/// still unfinished ([`Turnstile`]).
/// Database trouble keeps a batch and retries it; a batch given up leaves
/// nothing for the deliverer.
pub(super) struct Decider<'a> {
    context: Context<'a>,
    health: &'a Health,
    concurrent_batches: usize,
}

impl<'a> Decider<'a> {
    pub(super) fn new(worker: &'a Worker) -> Self {
        Self {
            context: Context {
                pool: &worker.pool,
                limits: Limits {
                    max_body_bytes: worker.settings.max_body_bytes,
                    retention: worker.settings.retention(),
                },
                existing: ExistingCheck::default(),
            },
            health: &worker.health,
            concurrent_batches: worker.settings.concurrent_batches(),
        }
    }

    /// Runs the stage until the collector closes `batches` and every batch
    /// taken is decided, or the deliverer is gone.
    pub(super) async fn run(
        self,
        mut batches: mpsc::Receiver<Handed>,
        decided: mpsc::Sender<Decided>,
    ) {
        let turnstile = Turnstile::default();
        let mut in_order = futures::stream::poll_fn(|cx| batches.poll_recv(cx))
            .map(|(batch, deciding)| self.decide_batch(batch, deciding, turnstile.take()))
            .buffered(self.concurrent_batches);
        while let Some(batch) = in_order.next().await {
            if let Some(batch) = batch
                && decided.send(batch).await.is_err()
            {
                break;
            }
        }
    }

    /// Decides a batch in its spans; `None` when it was given up: handed
    /// back, or left to the broker with its closed channel.
    async fn decide_batch(
        &self,
        batch: Vec<Delivery>,
        deciding: Occupied,
        turn: Turn,
    ) -> Option<Decided> {
        let span = tracing::info_span!("batch", size = batch.len());
        let requests: Vec<Span> = batch.iter().map(request_span).collect();
        // The batch's shared database round trips show in each request's
        // trace through these links.
        for request in &requests {
            span.add_link(request.context().span().span_context().clone());
        }
        let started = Instant::now();
        metrics::histogram!("procinst_batch_size").record(batch.len() as f64);
        metrics::gauge!("procinst_in_flight_deliveries").increment(batch.len() as f64);
        let redelivered = batch.iter().filter(|d| d.redelivered).count();
        if redelivered > 0 {
            metrics::counter!("procinst_redeliveries_total").increment(redelivered as u64);
        }
        let (batch, read) = read_batch(batch, self.context.limits).await;
        let fates = self
            .decide_with_retries(&batch, &read, &turn)
            .instrument(span.clone())
            .await;
        // Later batches write as soon as this one is decided or given up,
        // and the batch being gathered may leave.
        drop(turn);
        drop(deciding);
        match fates {
            Ok(fates) => Some(Decided {
                batch,
                fates,
                requests,
                started,
                span,
            }),
            Err(given_up) => {
                if given_up == Disposition::HandBack {
                    deliver::hand_back(&batch).instrument(span).await;
                }
                metrics::gauge!("procinst_in_flight_deliveries").decrement(batch.len() as f64);
                None
            }
        }
    }

    /// Decides a batch, retrying what [`Disposition::of`] calls
    /// [`Disposition::RetryLater`] for as long as the batch's channel
    /// lives; `Err` with how the batch was given up:
    /// [`Disposition::HandBack`], or [`Disposition::EndSession`] when its
    /// channel closed meanwhile.
    async fn decide_with_retries(
        &self,
        batch: &[Delivery],
        read: &Read,
        turn: &Turn,
    ) -> Result<Vec<Fate>, Disposition> {
        let mut retry = Backoff::new(DB_RETRY_MIN, DB_RETRY_MAX);
        loop {
            let e = match decide(&self.context, turn, read).await {
                Ok(fates) => {
                    self.health.store_succeeded();
                    return Ok(fates);
                }
                Err(e) => e,
            };
            if Disposition::of(&e) == Disposition::HandBack {
                metrics::counter!("procinst_contended_batches_total").increment(1);
                tracing::warn!(error = %error_chain(&e), "contended: handing the batch back to the broker");
                return Err(Disposition::HandBack);
            }
            // Retried later: only the database's trouble leaves a round
            // (a race that escaped one, too, is decided again this way).
            self.health.store_failed(e.readiness_reason());
            metrics::counter!("procinst_db_retries_total").increment(1);
            tracing::error!(error = %error_chain(&e), "database unavailable; keeping the batch and retrying");
            if batch.iter().any(|d| d.acker.poisoned()) {
                tracing::warn!("the batch's channel closed meanwhile; the broker redelivers it");
                let closed = BrokerError::ChannelClosed {
                    what: "the batch was decided",
                };
                return Err(Disposition::of(&closed));
            }
            tokio::time::sleep(retry.next_delay()).await;
        }
    }
}

/// Reads a batch ([`decide::read`]): on the blocking pool when it is large
/// enough to be worth the hand-off, else in place.
async fn read_batch(batch: Vec<Delivery>, limits: Limits) -> (Vec<Delivery>, Read) {
    let apart = batch.len() >= READ_APART_FROM;
    beside(batch, apart, move |batch| {
        decide::read(&batch.iter().map(input).collect::<Vec<_>>(), limits)
    })
    .await
}

/// `work` on `owned`, which travels there and back: on the blocking pool
/// when `apart`, else in place. The worker's runtime has one thread; work
/// done beside it leaves that thread to the broker and the database, and
/// lets a second core take the CPU-bound part.
async fn beside<T, R>(owned: T, apart: bool, work: impl FnOnce(&T) -> R + Send + 'static) -> (T, R)
where
    T: Send + 'static,
    R: Send + 'static,
{
    let run = move || {
        let out = work(&owned);
        (owned, out)
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
        Err(e) => panic!("the blocking pool is gone while a batch is read: {e}"),
    }
}

fn input(delivery: &Delivery) -> Input<'_> {
    Input {
        body: &delivery.data,
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str()),
    }
}

/// The span of one request: a child of the publisher's span when the
/// message carries `traceparent`, else the root of a new trace. Its
/// `trace_id` is a field, so that every log line inside it names the trace;
/// `request_id` is recorded once the body is read.
fn request_span(delivery: &Delivery) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "request",
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = trace_context::extract(delivery.properties.headers().as_ref());
    // Fails only when spans are off (no subscriber); there is no trace then.
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_apart_runs_on_another_thread_and_hands_back_what_it_took() {
        let here = std::thread::current().id();
        let (owned, there) = beside(vec![1, 2, 3], true, |v| {
            (std::thread::current().id(), v.iter().sum::<i32>())
        })
        .await;
        assert_eq!(owned, vec![1, 2, 3]);
        assert_ne!(there.0, here);
        assert_eq!(there.1, 6);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_in_place_stays_on_the_runtime_thread() {
        let here = std::thread::current().id();
        let (_, there) = beside((), false, |_| std::thread::current().id()).await;
        assert_eq!(there, here);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "reading failed")]
    async fn a_panic_apart_is_a_panic_of_the_caller() {
        let _ = beside((), true, |_| -> () { panic!("reading failed") }).await;
    }
}
