//! A private, exclusive reply queue for commands that wait for replies
//! (`publish --wait`, `loadtest`).

use futures::{Stream, StreamExt};
use lapin::{
    Channel,
    options::{BasicConsumeOptions, QueueDeclareOptions},
    types::FieldTable,
};

use super::BrokerError;

/// An exclusive queue that lives as long as its connection, named after
/// the reply queue (`<reply queue>.inbox.<pid>-<random>`), so that a broker
/// user whose permissions cover only procinst's names may declare it.
pub struct Inbox {
    pub name: String,
    consumer: lapin::Consumer,
}

/// A reply as read from the inbox.
#[derive(Debug, Clone)]
pub struct InboxReply {
    pub body: Vec<u8>,
    pub correlation_id: Option<String>,
}

impl Inbox {
    /// Declares the queue, named after `reply_queue`, and starts consuming
    /// it without acks.
    pub async fn open(channel: &Channel, reply_queue: &str) -> Result<Inbox, BrokerError> {
        let name = format!(
            "{reply_queue}.inbox.{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        );
        let queue = channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::exclusive().auto_delete(),
                FieldTable::default(),
            )
            .await?;
        let name = queue.name().as_str().to_owned();
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Inbox { name, consumer })
    }

    /// The replies as they arrive.
    pub fn replies(self) -> impl Stream<Item = Result<InboxReply, BrokerError>> {
        self.consumer.map(|delivery| {
            let delivery = delivery?;
            Ok(InboxReply {
                correlation_id: delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str().to_owned()),
                body: delivery.data,
            })
        })
    }
}
