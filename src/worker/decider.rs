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
use super::decide::{Context, Input, Limits, decide};
use super::disposition::Disposition;
use super::existing::ExistingCheck;
use super::fate::Fate;
use super::turnstile::{Turn, Turnstile};
use super::{Backoff, Health, Worker, deliver};
use crate::broker::{BrokerError, trace_context};
use crate::telemetry::error_chain;

const DB_RETRY_MIN: Duration = Duration::from_millis(100);
const DB_RETRY_MAX: Duration = Duration::from_secs(2);

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
        let fates = self
            .decide_with_retries(&batch, &turn)
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
        turn: &Turn,
    ) -> Result<Vec<Fate>, Disposition> {
        let inputs: Vec<Input<'_>> = batch
            .iter()
            .map(|d| Input {
                body: &d.data,
                message_id: d.properties.message_id().as_ref().map(|m| m.as_str()),
            })
            .collect();
        let mut retry = Backoff::new(DB_RETRY_MIN, DB_RETRY_MAX);
        loop {
            let e = match decide(&self.context, turn, &inputs).await {
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
