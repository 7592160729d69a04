use lapin::{
    Channel, ErrorKind, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

use super::BrokerError;
use crate::config::Topology;

/// Declares the exchange and queues of contract section 1, idempotently.
///
/// A queue that exists with other arguments makes RabbitMQ close the channel
/// with PRECONDITION_FAILED, naming the argument; that becomes a fatal
/// [`BrokerError::Topology`] and nothing is deleted or redeclared.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), BrokerError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            topology.dead_letter_exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(|e| classify("exchange", &topology.dead_letter_exchange, e))?;

    queue(channel, &topology.dead_letter_queue, quorum()).await?;
    channel
        .queue_bind(
            topology.dead_letter_queue.as_str().into(),
            topology.dead_letter_exchange.as_str().into(),
            topology.dead_letter_queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    queue(
        channel,
        &topology.request_queue,
        request_arguments(topology),
    )
    .await?;
    queue(channel, &topology.reply_queue, quorum()).await?;
    Ok(())
}

/// The request queue's arguments, as the contract fixes them.
pub fn request_arguments(topology: &Topology) -> FieldTable {
    let mut args = quorum();
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(topology.delivery_limit)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(topology.dead_letter_exchange.as_str().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(topology.dead_letter_queue.as_str().into()),
    );
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    args
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

async fn queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), BrokerError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map(|_| ())
        .map_err(|e| classify("queue", name, e))
}

/// AMQP reply code of a channel closed because a declaration does not match.
const PRECONDITION_FAILED: u16 = 406;

fn classify(kind: &'static str, name: &str, error: lapin::Error) -> BrokerError {
    if let ErrorKind::ProtocolError(amqp) = error.kind()
        && amqp.get_id() == PRECONDITION_FAILED
    {
        return BrokerError::Topology {
            kind,
            name: name.to_owned(),
            detail: amqp.get_message().as_str().to_owned(),
        };
    }
    BrokerError::Amqp(error)
}

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPSoftError};

    use super::*;

    fn closed_with(kind: AMQPSoftError, text: &str) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(AMQPErrorKind::Soft(kind), text.into())).into()
    }

    #[test]
    fn precondition_failed_is_known_by_its_reply_code_not_its_text() {
        // The text varies between RabbitMQ versions; the code does not.
        let mismatch = closed_with(
            AMQPSoftError::PRECONDITIONFAILED,
            "inequivalent arg 'x-delivery-limit' for queue 'q'",
        );
        assert!(matches!(
            classify("queue", "q", mismatch),
            BrokerError::Topology { .. }
        ));
        let other = closed_with(
            AMQPSoftError::ACCESSREFUSED,
            "PRECONDITION_FAILED lookalike",
        );
        assert!(matches!(
            classify("queue", "q", other),
            BrokerError::Amqp(_)
        ));
    }
}
