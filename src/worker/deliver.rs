//! Carrying out the fates of a batch: dead-letter copies and replies are
//! published and confirmed first, then the batch is acknowledged at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};

use super::decide::{Fate, Outcome};
use crate::broker::{BrokerError, Outgoing, Publisher, headers, reply_properties};
use crate::config::Topology;

/// Longest wait for the broker to take an ack or nack.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes what `fates` call for, waits for every confirm, then acks the
/// whole batch with one `multiple` ack.
///
/// Batches are carried out one at a time and in delivery order, so the last
/// delivery's tag covers exactly the batch.
pub async fn deliver(
    publisher: &Publisher,
    topology: &Topology,
    batch: &[Delivery],
    fates: &[Fate],
) -> Result<(), BrokerError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut outgoing = Vec::with_capacity(batch.len() + 4);
    for (delivery, fate) in batch.iter().zip(fates) {
        match fate {
            Fate::Reply {
                request_id, body, ..
            } => {
                outgoing.push(reply(topology, delivery, request_id, body));
            }
            Fate::DeadLetter {
                reason,
                detail,
                reply: answer,
            } => {
                let properties =
                    delivery
                        .properties
                        .clone()
                        .with_headers(headers::dead_letter_headers(
                            delivery.properties.headers().as_ref(),
                            reason,
                            detail,
                            now,
                        ));
                outgoing.push(Outgoing {
                    exchange: &topology.dead_letter_exchange,
                    routing_key: &topology.dead_letter_queue,
                    body: &delivery.data,
                    properties,
                });
                if let Some((request_id, body)) = answer {
                    outgoing.push(reply(topology, delivery, request_id, body));
                }
            }
        }
    }
    publisher.publish_all(&outgoing).await?;
    if let Some(last) = batch.last() {
        // An ack racing a dying connection may never be answered.
        tokio::time::timeout(
            ACK_TIMEOUT,
            last.acker.ack(BasicAckOptions { multiple: true }),
        )
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "acknowledging a batch",
            after: ACK_TIMEOUT,
        })??;
    }
    record(fates);
    Ok(())
}

/// Hands a batch back to the broker for redelivery (counts toward the
/// delivery limit), after its replies could not be published.
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

fn reply<'a>(
    topology: &'a Topology,
    delivery: &'a Delivery,
    request_id: &str,
    body: &'a [u8],
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
        .unwrap_or(request_id);
    Outgoing {
        exchange: "",
        routing_key,
        body,
        properties: reply_properties(correlation_id),
    }
}

/// One counter increment per request, labelled by outcome and code.
fn record(fates: &[Fate]) {
    for fate in fates {
        match fate {
            Fate::Reply {
                outcome,
                request_id,
                ..
            } => {
                let (label, code) = match outcome {
                    Outcome::Created { processes } => {
                        metrics::counter!("procinst_processes_created_total")
                            .increment(*processes as u64);
                        ("created", 0)
                    }
                    Outcome::Stored => {
                        metrics::counter!("procinst_stored_replies_total").increment(1);
                        ("stored", 0)
                    }
                    Outcome::Rejected(code) => ("rejected", code.as_u32()),
                };
                tracing::debug!(%request_id, outcome = label, code, "answered");
                metrics::counter!("procinst_requests_total", "outcome" => label, "code" => code.to_string())
                    .increment(1);
            }
            Fate::DeadLetter {
                reason,
                detail,
                reply,
            } => {
                let request_id = reply
                    .as_ref()
                    .map(|(id, _)| id.as_str())
                    .unwrap_or("unknown");
                tracing::warn!(%request_id, reason, %detail, "dead-lettered");
                metrics::counter!("procinst_dead_letters_total", "reason" => *reason).increment(1);
                metrics::counter!("procinst_requests_total", "outcome" => "dead_lettered", "code" => "none")
                    .increment(1);
            }
        }
    }
}
