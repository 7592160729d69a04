//! Carrying out the fates of a batch: dead-letter copies and replies are
//! published and confirmed first, then the batch is acknowledged at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::{
    BasicProperties,
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions},
};

use lapin::types::FieldTable;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::fate::{Fate, Reply};
use crate::broker::{BrokerError, Outgoing, Publisher, headers, reply_properties, trace_context};
use crate::config::Topology;

/// Longest wait for the broker to take an ack or nack.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes what `fates` call for, waits for every confirm, then acks the
/// whole batch with one `multiple` ack.
///
/// Batches are carried out one at a time and in delivery order, so the last
/// delivery's tag covers exactly the batch.
/// `requests` holds each delivery's span: its trace context goes out on the
/// reply and the dead-letter copy.
pub async fn deliver(
    publisher: &Publisher,
    topology: &Topology,
    batch: &[Delivery],
    fates: &[Fate],
    requests: &[Span],
) -> Result<(), BrokerError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut outgoing = Vec::with_capacity(batch.len() + 4);
    for ((delivery, fate), span) in batch.iter().zip(fates).zip(requests) {
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
    if let Some(last) = batch.last() {
        // An ack racing a dying connection may never be answered.
        let acked = tokio::time::timeout(
            ACK_TIMEOUT,
            last.acker.ack(BasicAckOptions { multiple: true }),
        )
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "acknowledging a batch",
            after: ACK_TIMEOUT,
        })??;
        // lapin answers `false` for an acker whose channel is gone: the
        // broker redelivers the batch, so it is not answered yet.
        if !acked {
            return Err(BrokerError::ChannelClosed {
                what: "acknowledging a batch",
            });
        }
    }
    for (fate, span) in fates.iter().zip(requests) {
        fate.record(span);
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

/// Hands a batch back to the broker for redelivery (counts toward the
/// delivery limit), after its replies could not be published
/// ([`Disposition::Requeue`](super::disposition::Disposition::Requeue)).
pub async fn requeue(batch: &[Delivery]) {
    if let Some(last) = batch.last() {
        let options = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        match tokio::time::timeout(ACK_TIMEOUT, last.acker.nack(options)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not requeue a batch; the broker will on channel close")
            }
            Err(_) => {
                tracing::warn!("no answer to a requeue; the broker will requeue on channel close")
            }
        }
    }
}

/// Returns a batch that could not be decided to the broker
/// ([`Disposition::HandBack`](super::disposition::Disposition::HandBack)),
/// one delivery at a time (a `multiple` reject would also cover earlier
/// batches still being delivered). basic.reject counts toward the delivery limit on every
/// RabbitMQ version, so a batch that can never be written ends in the
/// dead-letter queue instead of going round forever.
pub async fn hand_back(batch: &[Delivery]) {
    for delivery in batch {
        let reject = delivery.acker.reject(BasicRejectOptions { requeue: true });
        match tokio::time::timeout(ACK_TIMEOUT, reject).await {
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
    use futures::StreamExt;
    use lapin::{
        Connection, ConnectionProperties,
        options::{BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions},
        types::FieldTable,
    };

    use super::*;
    use crate::worker::fate::Outcome;

    /// Needs the RabbitMQ of the integration tests.
    #[tokio::test]
    async fn an_ack_on_a_closed_channel_is_an_error_not_an_answer() {
        let url = std::env::var("PROCINST_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let publish = connection.create_channel().await.expect("channel");
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let queue = publish
            .queue_declare(
                "".into(),
                QueueDeclareOptions::exclusive(),
                FieldTable::default(),
            )
            .await
            .expect("queue");
        let queue = queue.name().as_str().to_owned();
        publish
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        let consume = connection.create_channel().await.expect("channel");
        let mut consumer = consume
            .basic_consume(
                queue.as_str().into(),
                "t".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let delivery = consumer.next().await.expect("a delivery").expect("ok");
        consume.close(200, "gone".into()).await.expect("close");

        let topology = Topology {
            quorum_initial_group_size: None,
            request_queue: queue.clone(),
            reply_queue: queue.clone(),
            dead_letter_queue: "unused".into(),
            dead_letter_exchange: "unused".into(),
            delivery_limit: 10,
        };
        let fate = Fate::Reply(Reply {
            request_id: "r".into(),
            body: b"{}".to_vec(),
            outcome: Outcome::Stored,
        });
        let delivered = deliver(
            &Publisher::new(publish),
            &topology,
            &[delivery],
            &[fate],
            &[Span::none()],
        )
        .await;
        assert!(
            matches!(delivered, Err(BrokerError::ChannelClosed { .. })),
            "{delivered:?}"
        );
        let _ = connection.close(200, "bye".into()).await;
    }

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
