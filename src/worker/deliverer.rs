//! The deliver stage of a session: the replies and dead letters of decided
//! batches published with confirms ([`deliver`]), then one ack.

use std::time::Duration;

use lapin::Channel;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::decider::Decided;
use super::disposition::Disposition;
use super::fate::Fate;
use super::{Backoff, Totals, Worker, deliver};
use crate::broker::{Broker, Publisher};
use crate::config::Topology;
use crate::telemetry::{error_chain, timed};

/// Pauses before requeueing a batch whose messages the broker refused:
/// refusals (a full queue, a lost quorum, a missing dead-letter queue)
/// take a while to clear, and each requeue is a redelivery.
const REFUSED_RETRY_MIN: Duration = Duration::from_millis(500);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the broker to close the consuming channel.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The deliver stage. The batches that queued up while the previous
/// delivery waited for its confirms are delivered together, with one
/// confirm wait and one ack, so that the confirm round trip does not cap
/// throughput when batches are small.
pub(super) struct Deliverer<'a> {
    publisher: Publisher,
    /// The channel the batches were consumed on, closed when the session
    /// must end.
    consume: &'a Channel,
    topology: &'a Topology,
    totals: &'a Totals,
    shutdown: &'a CancellationToken,
    /// Grows with each refusal in a row.
    refused: Backoff,
}

impl<'a> Deliverer<'a> {
    pub(super) fn new(
        worker: &'a Worker,
        broker: &'a Broker,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            publisher: Publisher::new(broker.publish.clone())
                .waiting_out_alarms(broker.blocked.clone()),
            consume: &broker.consume,
            topology: &worker.settings.topology,
            totals: &worker.totals,
            shutdown,
            refused: Backoff::new(REFUSED_RETRY_MIN, REFUSED_RETRY_MAX),
        }
    }

    /// Runs the stage until the decider closes `decided`.
    pub(super) async fn run(mut self, mut decided: mpsc::Receiver<Decided>) {
        while let Some(first) = decided.recv().await {
            let mut ready = vec![first];
            while let Ok(next) = decided.try_recv() {
                ready.push(next);
            }
            if let Err(Disposition::EndSession) = self.deliver(ready).await {
                // Deliveries left unacked on a live channel would hold
                // their prefetch slots forever: close the channel so the
                // broker requeues them, and the session restarts.
                let close = self
                    .consume
                    .close(320, "delivery failed; reconnecting".into());
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
            }
        }
    }

    /// Publishes the replies and dead letters of one or more decided
    /// batches (in delivery order), waits for every confirm, then acks them
    /// all with one ack. Messages the broker refuses or returns are
    /// requeued after a pause, cut short by shutdown. `Err` when the
    /// session must end for the broker to redeliver: their rows are
    /// committed, so the redeliveries get the stored replies.
    async fn deliver(&mut self, decided: Vec<Decided>) -> Result<(), Disposition> {
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
        let delivered = timed(
            "deliver",
            deliver::deliver(&self.publisher, self.topology, &batch, &fates, &requests),
        );
        let result = match delivered.instrument(span).await {
            Ok(()) => {
                self.refused.reset();
                let dead = fates
                    .iter()
                    .filter(|f| matches!(f, Fate::DeadLetter { .. }))
                    .count() as u64;
                self.totals.add(fates.len() as u64 - dead, dead);
                Ok(())
            }
            Err(e) if Disposition::of(&e) == Disposition::Requeue => {
                let pause = self.refused.next_delay();
                tracing::error!(error = %error_chain(&e), ?pause, "the broker did not take the batch's messages; requeueing it after a pause");
                tokio::select! {
                    _ = self.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                deliver::requeue(&batch).await;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "could not finish the batch; the broker redelivers it");
                Err(Disposition::of(&e))
            }
        };
        metrics::gauge!("procinst_in_flight_deliveries").decrement(batch.len() as f64);
        for started in timings {
            metrics::histogram!("procinst_batch_seconds").record(started.elapsed().as_secs_f64());
        }
        result
    }
}
