//! The two working stages of a batch: deciding it against the database,
//! and delivering its replies and acks to the broker.

use std::time::{Duration, Instant};

use lapin::message::Delivery;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::broker::trace_context;

use super::decide::{Input, Limits, decide};
use super::disposition::Disposition;
use super::fate::Fate;
use super::turnstile::Turn;
use super::{Backoff, Worker, deliver};
use crate::broker::{BrokerError, Publisher};
use crate::telemetry::{error_chain, timed};

const DB_RETRY_MIN: Duration = Duration::from_millis(100);
const DB_RETRY_MAX: Duration = Duration::from_secs(2);
/// Pauses before requeueing a batch whose messages the broker refused:
/// refusals (a full queue, a lost quorum, a missing dead-letter queue)
/// take a while to clear, and each requeue is a redelivery.
pub(super) const REFUSED_RETRY_MIN: Duration = Duration::from_millis(500);
pub(super) const REFUSED_RETRY_MAX: Duration = Duration::from_secs(30);

/// A batch with its fates decided and written, waiting for delivery.
pub(super) struct Decided {
    batch: Vec<Delivery>,
    fates: Vec<Fate>,
    /// One span per delivery, in the trace its publisher started.
    requests: Vec<Span>,
    started: Instant,
    span: Span,
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
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        span.context().span().span_context().trace_id()
    };
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

impl Worker {
    /// Decides a batch. Database trouble is retried with backoff for as long
    /// as the batch's channel lives; `None` when the channel died meanwhile
    /// (the broker redelivers the batch).
    pub(super) async fn decide_batch(&self, batch: Vec<Delivery>, turn: Turn) -> Option<Decided> {
        let span = tracing::info_span!("batch", size = batch.len());
        let requests: Vec<Span> = batch.iter().map(request_span).collect();
        {
            use opentelemetry::trace::TraceContextExt;
            // The batch's shared database round trips show in each request's
            // trace through these links.
            for request in &requests {
                span.add_link(request.context().span().span_context().clone());
            }
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
        // Later batches write as soon as this one is decided or given up.
        drop(turn);
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
    /// [`Disposition::RetryLater`]; `Err` with how the batch was given up:
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
        let limits = Limits {
            max_body_bytes: self.settings.max_body_bytes,
            retention: self.settings.retention(),
        };
        let mut retry = Backoff::new(DB_RETRY_MIN, DB_RETRY_MAX);
        loop {
            let e = match decide(&self.pool, limits, turn, &inputs).await {
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

    /// Publishes the replies and dead letters of one or more decided batches
    /// (in delivery order), waits for every confirm, then acks them all with
    /// one ack. Merging the batches that queued up while the previous
    /// delivery waited for its confirms keeps the confirm round trip from
    /// capping throughput when batches are small. Broker trouble abandons
    /// them: their rows are committed, so the redeliveries get the stored
    /// replies. Messages the broker refuses or returns are requeued after a
    /// pause that grows with each refusal in a row (`refused`), cut short
    /// by `shutdown`. Returns false when the session must end for the
    /// broker to redeliver.
    pub(super) async fn deliver_batches(
        &self,
        publisher: &Publisher,
        decided: Vec<Decided>,
        refused: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut batch = Vec::new();
        let mut fates = Vec::new();
        let mut requests = Vec::new();
        let mut timings = Vec::with_capacity(decided.len());
        let mut span = Span::none();
        for d in decided {
            batch.extend(d.batch);
            fates.extend(d.fates);
            requests.extend(d.requests);
            timings.push(d.started);
            span = d.span;
        }
        let topology = &self.settings.topology;
        let delivered = timed(
            "deliver",
            deliver::deliver(publisher, topology, &batch, &fates, &requests),
        );
        let session_ok = match delivered.instrument(span).await {
            Ok(()) => {
                refused.reset();
                let dead = fates
                    .iter()
                    .filter(|f| matches!(f, Fate::DeadLetter { .. }))
                    .count() as u64;
                self.totals.add(fates.len() as u64 - dead, dead);
                true
            }
            Err(e) if Disposition::of(&e) == Disposition::Requeue => {
                let pause = refused.next_delay();
                tracing::error!(error = %error_chain(&e), ?pause, "the broker did not take the batch's messages; requeueing it after a pause");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                deliver::requeue(&batch).await;
                true
            }
            // Disposition::EndSession
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "could not finish the batch; the broker redelivers it");
                false
            }
        };
        metrics::gauge!("procinst_in_flight_deliveries").decrement(batch.len() as f64);
        for started in timings {
            metrics::histogram!("procinst_batch_seconds").record(started.elapsed().as_secs_f64());
        }
        session_ok
    }
}
