//! The exchange and queues of contract section 1, declared idempotently.
//!
//! Declarations run on a channel of their own: RabbitMQ closes a channel on
//! PRECONDITION_FAILED, and the one case procinst recovers from (a
//! dead-letter queue made by an older procinst) needs a second try.

use lapin::{
    Channel, Connection, ErrorKind, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

use super::BrokerError;
use crate::config::{Lane, Topology};

/// AMQP reply code of PRECONDITION_FAILED: a queue exists with other
/// arguments.
const PRECONDITION_FAILED: u16 = 406;

/// The dead-letter queue's own delivery limit: high enough that browsing
/// (`procinst dlq list` returns what it looked at) can never reach it, on
/// every RabbitMQ version.
///
/// Why not `-1`: RabbitMQ 4.x reads `-1` as "no limit", but 3.x reads it as
/// a limit below every count and drops a message the first time it is
/// returned (measured on 3.10). Why not leave it out: 4.x then applies its
/// default limit of 20, and each browse of a message counts as a delivery on
/// 4.0 to 4.2. `i32::MAX` means the same on both, and a queue declared on
/// 3.x keeps meaning it after an upgrade to 4.x.
pub const DEAD_LETTER_DELIVERY_LIMIT: i64 = i32::MAX as i64;

/// Declares the dead-letter exchange, the dead-letter queue and its binding,
/// the request queues of both lanes and the bulk lane's shards (alike:
/// quorum, the delivery limit, dead-lettering), the bulk exchange, and the
/// default reply queue.
///
/// A queue that exists with other arguments is a configuration error
/// ([`BrokerError::Topology`], naming the argument): nothing is deleted or
/// redeclared. The one exception is a dead-letter queue that an older
/// procinst declared without [`DEAD_LETTER_DELIVERY_LIMIT`]: it is used as
/// it is, with a warning, since the contract keeps such a queue working.
pub async fn declare(connection: &Connection, topology: &Topology) -> Result<(), BrokerError> {
    let channel = connection.create_channel().await?;
    let channel = match declare_dead_letter_queue(&channel, topology).await {
        Ok(()) => channel,
        Err(BrokerError::Topology { detail, .. }) => {
            let retry = connection.create_channel().await?;
            adopt_legacy_dead_letter_queue(&retry, topology, &detail).await?;
            retry
        }
        Err(e) => return Err(e),
    };
    channel
        .queue_bind(
            topology.dead_letter_queue.as_str().into(),
            topology.dead_letter_exchange.as_str().into(),
            topology.dead_letter_queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for lane in Lane::ALL {
        for source in topology.sources(lane) {
            queue(&channel, &source, request_arguments(topology)).await?;
        }
    }
    declare_bulk_exchange(&channel, topology).await?;
    queue(&channel, &topology.reply_queue, quorum(topology)).await?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

async fn declare_dead_letter_queue(
    channel: &Channel,
    topology: &Topology,
) -> Result<(), BrokerError> {
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
    queue(
        channel,
        &topology.dead_letter_queue,
        dead_letter_arguments(topology),
    )
    .await
}

/// The bulk lane's routing: the bulk exchange, whose messages go to the
/// shard their routing key (a `bk_biz_id`) is bound to, and otherwise
/// through its alternate exchange to the bulk queue. The shards' bindings
/// come and go with the businesses publishing ([`crate::worker`]'s
/// sharing); these never change.
async fn declare_bulk_exchange(channel: &Channel, topology: &Topology) -> Result<(), BrokerError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let (exchange, unrouted) = (topology.bulk_exchange(), topology.bulk_unrouted());
    channel
        .exchange_declare(
            unrouted.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(|e| classify("exchange", &unrouted, e))?;
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(unrouted.as_str().into()),
    );
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            args,
        )
        .await
        .map_err(|e| classify("exchange", &exchange, e))?;
    channel
        .queue_bind(
            topology.queue(Lane::Bulk).as_str().into(),
            unrouted.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Accepts a dead-letter queue declared with the arguments an older
/// procinst gave it (a quorum queue and nothing else), or fails with the
/// first mismatch, `first_detail`.
async fn adopt_legacy_dead_letter_queue(
    channel: &Channel,
    topology: &Topology,
    first_detail: &str,
) -> Result<(), BrokerError> {
    queue(channel, &topology.dead_letter_queue, quorum(topology))
        .await
        .map_err(|_| BrokerError::Topology {
            kind: "queue",
            name: topology.dead_letter_queue.clone(),
            detail: first_detail.to_owned(),
        })?;
    tracing::warn!(
        queue = %topology.dead_letter_queue,
        "the dead-letter queue was declared by an older procinst, without x-delivery-limit; \
         using it as it is. On RabbitMQ 4.x the broker's default delivery limit applies to it: \
         `procinst dlq` refreshes a message before browsing could reach that limit, and a policy \
         with a high delivery-limit for this queue removes the concern"
    );
    Ok(())
}

/// The request queue's arguments, as the contract fixes them.
pub fn request_arguments(topology: &Topology) -> FieldTable {
    let mut args = quorum(topology);
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

/// The dead-letter queue's arguments: a quorum queue whose delivery limit
/// browsing cannot reach.
pub fn dead_letter_arguments(topology: &Topology) -> FieldTable {
    let mut args = quorum(topology);
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_DELIVERY_LIMIT),
    );
    args
}

/// A quorum queue, replicated to `quorum_initial_group_size` nodes when the
/// setting is given, else to as many as the broker's default.
fn quorum(topology: &Topology) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(size) = topology.quorum_initial_group_size {
        args.insert(
            "x-quorum-initial-group-size".into(),
            AMQPValue::LongLongInt(i64::from(size)),
        );
    }
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

    fn topology(group: Option<u32>) -> Topology {
        Topology {
            request_queue: "r".into(),
            bulk_queue: None,
            bulk_shards: 2,
            reply_queue: "p".into(),
            dead_letter_queue: "d".into(),
            dead_letter_exchange: "x".into(),
            delivery_limit: 10,
            quorum_initial_group_size: group,
        }
    }

    #[test]
    fn the_dead_letter_queue_has_a_limit_that_browsing_cannot_reach() {
        let args = dead_letter_arguments(&topology(None));
        assert_eq!(
            args.inner().get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(2_147_483_647))
        );
        assert_eq!(
            args.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }

    #[test]
    fn the_replication_factor_is_the_brokers_unless_set() {
        let default = request_arguments(&topology(None));
        assert!(!default.inner().contains_key("x-quorum-initial-group-size"));
        for args in [
            request_arguments(&topology(Some(3))),
            dead_letter_arguments(&topology(Some(3))),
            quorum(&topology(Some(3))),
        ] {
            assert_eq!(
                args.inner().get("x-quorum-initial-group-size"),
                Some(&AMQPValue::LongLongInt(3))
            );
        }
    }

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
