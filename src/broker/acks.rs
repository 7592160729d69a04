//! Acknowledging what was consumed, a batch at a time: one `multiple` ack
//! or nack through the batch's last delivery.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::BrokerError;

/// Longest wait for the broker to take an ack or nack.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Acks every delivery of the channel up to and including `last`.
///
/// `Err(ChannelClosed)` when the channel is gone: lapin answers `false`
/// then, and the broker redelivers the batch, so it is not answered yet.
/// An ack racing a dying connection may never be answered: bounded by a
/// timeout.
pub async fn ack_through(last: &Delivery) -> Result<(), BrokerError> {
    let acked = tokio::time::timeout(
        ACK_TIMEOUT,
        last.acker.ack(BasicAckOptions { multiple: true }),
    )
    .await
    .map_err(|_| BrokerError::Timeout {
        what: "acknowledging a batch",
        after: ACK_TIMEOUT,
    })??;
    if !acked {
        return Err(BrokerError::ChannelClosed {
            what: "acknowledging a batch",
        });
    }
    Ok(())
}

/// Hands every delivery of the channel up to and including `last` back to
/// the broker for redelivery (counts toward the delivery limit). A
/// failure is logged: the broker requeues them anyway when the channel
/// closes.
pub async fn requeue_through(last: &Delivery) {
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
