//! The deliver stage: the replies and dead letters of decided batches
//! published with confirms, then one ack. The batches that queued up
//! while the previous delivery waited for its confirms are delivered
//! together, with one confirm wait and one ack, so that the confirm round
//! trip does not cap throughput when batches are small.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::{BasicProperties, Channel, message::Delivery, types::FieldTable};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::decide::Decided;
use super::disposition::OnBroker;
use super::message::{Answered, Fate, Reply, last_of_each_source};
use super::{Backoff, Health, Totals, Worker};
use crate::broker::{
    self, Broker, BrokerError, LaneChannels, Outgoing, Publisher, headers, reply_properties,
    trace_context,
};
use crate::config::{Lane, Topology};
use crate::telemetry::{error_chain, timed};

/// Pauses before requeueing a batch whose messages the broker refused:
/// refusals (a full queue, a lost quorum, a missing dead-letter queue)
/// take a while to clear, and each requeue is a redelivery.
const REFUSED_RETRY_MIN: Duration = Duration::from_millis(500);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the broker to close the consuming channel.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The deliver stage.
pub(super) struct Deliverer<'a> {
    lane: Lane,
    publisher: Publisher,
    /// The channels the batches were consumed on, closed when the session
    /// must end.
    consume: &'a [Channel],
    topology: &'a Topology,
    totals: &'a Totals,
    health: &'a Health,
    shutdown: &'a CancellationToken,
    /// Grows with each refusal in a row.
    refused: Backoff,
}

impl<'a> Deliverer<'a> {
    pub(super) fn new(
        worker: &'a Worker,
        broker: &'a Broker,
        lane: Lane,
        channels: &'a LaneChannels,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            lane,
            publisher: Publisher::new(channels.publish.clone())
                .waiting_out_alarms(broker.blocked.clone()),
            consume: &channels.consume,
            topology: &worker.settings.topology,
            totals: &worker.totals,
            health: &worker.health,
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
            if let Err(OnBroker::EndSession) = self.deliver(ready).await {
                // Deliveries left unacked on a live channel would hold
                // their prefetch slots forever: close the channel so the
                // broker requeues them, and the session restarts.
                let close = futures::future::join_all(
                    self.consume
                        .iter()
                        .map(|c| c.close(320, "delivery failed; reconnecting".into())),
                );
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
            }
        }
    }

    /// Publishes the replies and dead letters of one or more decided
    /// batches (in delivery order), waits for every confirm, then acks them
    /// all with one ack, carrying out rungs 5 and 6 of the failure ladder
    /// ([`disposition`](super::disposition)) in one match. `Err` when the
    /// session must end for the broker to redeliver: their rows are
    /// committed, so the redeliveries get the stored replies.
    async fn deliver(&mut self, decided: Vec<Decided>) -> Result<(), OnBroker> {
        let mut messages = Vec::new();
        let mut timings = Vec::with_capacity(decided.len());
        let mut span = Span::none();
        for d in decided {
            messages.extend(d.messages);
            timings.push(d.started);
            span = d.span;
        }
        let delivered = timed(
            "deliver",
            self.lane.as_str(),
            publish_and_ack(&self.publisher, self.topology, self.lane, &messages),
        );
        let result = match delivered
            .instrument(span)
            .await
            .map_err(|e| (OnBroker::of(&e), e))
        {
            Ok(()) => {
                self.refused.reset();
                let dead = messages
                    .iter()
                    .filter(|m| matches!(m.fate, Fate::DeadLetter { .. }))
                    .count() as u64;
                self.totals.add(messages.len() as u64 - dead, dead);
                Ok(())
            }
            // 5. Requeue after a pause, cut short by shutdown.
            Err((OnBroker::Requeue, e)) => {
                let pause = self.refused.next_delay();
                tracing::error!(error = %error_chain(&e), ?pause, "the broker did not take the batch's messages; requeueing it after a pause");
                tokio::select! {
                    _ = self.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                for last in last_of_each_source(&messages) {
                    broker::requeue_through(last).await;
                }
                Ok(())
            }
            // 6. End the session.
            Err((OnBroker::EndSession, e)) => {
                tracing::warn!(error = %error_chain(&e), "could not finish the batch; the broker redelivers it");
                Err(OnBroker::EndSession)
            }
        };
        let lane = self.lane.as_str();
        metrics::gauge!("procinst_in_flight_deliveries", "lane" => lane)
            .decrement(messages.len() as f64);
        self.health.finished(messages.len());
        for started in timings {
            metrics::histogram!("procinst_batch_seconds", "lane" => lane)
                .record(started.elapsed().as_secs_f64());
        }
        result
    }
}

/// Publishes what each message's fate calls for, waits for every confirm,
/// then acks the whole batch with one `multiple` ack per source (the
/// queue it came from, on its own channel), and records each
/// message's outcome.
///
/// Batches are carried out one at a time and in delivery order, so each
/// source's last delivery's tag covers exactly the batch's deliveries from
/// it. Each message's span gives the
/// trace context of its reply and dead-letter copy.
async fn publish_and_ack(
    publisher: &Publisher,
    topology: &Topology,
    lane: Lane,
    messages: &[Answered],
) -> Result<(), BrokerError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut outgoing = Vec::with_capacity(messages.len() + 4);
    for Answered {
        delivery,
        span,
        fate,
        ..
    } in messages
    {
        let trace = span.context();
        match fate {
            Fate::Reply(reply) => {
                outgoing.push(reply_message(topology, delivery, reply, &trace));
            }
            Fate::DeadLetter {
                reason,
                detail,
                reply,
            } => {
                let mut copy_headers = headers::dead_letter_headers(
                    delivery.properties.headers().as_ref(),
                    reason,
                    detail,
                    now,
                );
                trace_context::inject(&trace, &mut copy_headers);
                let properties =
                    dead_letter_properties(&delivery.properties).with_headers(copy_headers);
                outgoing.push(Outgoing {
                    exchange: &topology.dead_letter_exchange,
                    routing_key: &topology.dead_letter_queue,
                    body: &delivery.data,
                    properties,
                    // An unroutable copy comes back instead of vanishing.
                    mandatory: true,
                });
                if let Some(reply) = reply {
                    outgoing.push(reply_message(topology, delivery, reply, &trace));
                }
            }
        }
    }
    publisher.publish_all(&outgoing).await?;
    for last in last_of_each_source(messages) {
        broker::ack_through(last).await?;
    }
    for message in messages {
        message.fate.record(&message.span, lane);
    }
    Ok(())
}

/// The original's properties for its dead-letter copy, without
/// `expiration` (a dead letter must not expire in the dead-letter queue)
/// and without `user_id` (RabbitMQ refuses a publish whose user_id is not
/// the publishing user's).
fn dead_letter_properties(original: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(v) = original.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = original.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = original.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = original.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = original.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = original.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
}

/// The reply as published: to the request's `reply_to` (else the reply
/// queue), correlated to it, in the request's trace.
fn reply_message<'a>(
    topology: &'a Topology,
    delivery: &'a Delivery,
    reply: &'a Reply,
    trace: &opentelemetry::Context,
) -> Outgoing<'a> {
    let properties = &delivery.properties;
    let routing_key = properties
        .reply_to()
        .as_ref()
        .map(|r| r.as_str())
        .filter(|r| !r.is_empty())
        .unwrap_or(&topology.reply_queue);
    let correlation_id = properties
        .correlation_id()
        .as_ref()
        .map(|c| c.as_str())
        .unwrap_or(&reply.request_id);
    Outgoing {
        exchange: "",
        routing_key,
        body: &reply.body,
        properties: {
            let mut headers = FieldTable::default();
            trace_context::inject(trace, &mut headers);
            reply_properties(correlation_id).with_headers(headers)
        },
        // A reply_to queue that does not exist drops the reply (contract 5).
        mandatory: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_copy_keeps_the_properties_but_expiration_and_user_id() {
        let original = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_correlation_id("c-1".into())
            .with_reply_to("back".into())
            .with_delivery_mode(2)
            .with_expiration("60000".into())
            .with_user_id("alice".into())
            .with_app_id("app".into());
        let copy = dead_letter_properties(&original);
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.user_id(), &None);
        let expected = original
            .clone()
            .with_expiration("".into())
            .with_user_id("".into());
        let blank =
            |p: &BasicProperties| p.clone().with_expiration("".into()).with_user_id("".into());
        assert_eq!(blank(&copy), expected);
    }
}
