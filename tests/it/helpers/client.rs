//! The AMQP client of a test: publishes requests with confirms, reads
//! replies (acking them) and looks at queues.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Queue,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;

use super::env::{Env, WAIT, unique};

/// A text header of a message.
pub fn header_text(properties: &BasicProperties, key: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// A reply as received.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Vec<u8>,
    pub json: Value,
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` header, when the reply carries one.
    pub traceparent: Option<String>,
}

impl From<Delivery> for Reply {
    fn from(delivery: Delivery) -> Reply {
        Reply {
            json: serde_json::from_slice(&delivery.data).expect("reply is JSON"),
            traceparent: header_text(&delivery.properties, "traceparent"),
            correlation_id: delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            body: delivery.data,
        }
    }
}

/// Publishes requests and reads replies from a queue.
pub struct Client {
    pub connection: Connection,
    pub channel: Channel,
    request_queue: String,
    bulk_queue: String,
}

/// A connection to the first node of `list` (comma-separated URLs) that
/// answers within a few seconds.
pub async fn connect_any(list: &str) -> Option<Connection> {
    for url in list.split(',').map(str::trim) {
        let attempt = Connection::connect(url, ConnectionProperties::default());
        if let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            return Some(connection);
        }
    }
    None
}

impl Client {
    pub async fn new(env: &Env) -> Client {
        let connection = connect_any(&env.amqp)
            .await
            .unwrap_or_else(|| panic!("no broker node answers of {}", env.amqp));
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        Client {
            connection,
            channel,
            request_queue: env.request_queue.clone(),
            bulk_queue: env.bulk_queue(),
        }
    }

    /// Publishes `body` persistently to the request queue, confirmed.
    pub async fn publish(&self, body: &[u8], properties: BasicProperties) {
        self.publish_to(&self.request_queue.clone(), body, properties)
            .await;
    }

    pub async fn publish_to(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        let acked = self
            .try_publish_to(queue, body, properties)
            .await
            .expect("publish");
        assert!(acked, "publish nacked");
    }

    /// Publishes persistently; whether the broker confirmed it, or the
    /// error of a connection that went away meanwhile.
    pub async fn try_publish_to(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<bool, lapin::Error> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_delivery_mode(2),
            )
            .await?;
        Ok(confirm.await?.is_ack())
    }

    pub async fn send(&self, body: &Value) {
        self.publish(
            &serde_json::to_vec(body).expect("json"),
            BasicProperties::default(),
        )
        .await;
    }

    /// Publishes `body` to the bulk lane, confirmed. A worker must have
    /// declared the lane's queue first: the broker drops a message for a
    /// queue that does not exist.
    pub async fn send_bulk(&self, body: &Value) {
        self.publish_to(
            &self.bulk_queue.clone(),
            &serde_json::to_vec(body).expect("json"),
            BasicProperties::default(),
        )
        .await;
    }

    /// Publishes `body` on the interactive lane when `i` is even, else on
    /// the bulk lane: traffic on both lanes at once.
    pub async fn send_on_both(&self, i: usize, body: &Value) {
        if i.is_multiple_of(2) {
            self.send(body).await;
        } else {
            self.send_bulk(body).await;
        }
    }

    /// Publishes `requests` and waits until the worker has taken every one
    /// of them from `queue`.
    pub async fn send_all_taken(&self, queue: &str, requests: impl IntoIterator<Item = Value>) {
        for body in requests {
            self.send(&body).await;
        }
        assert!(
            self.settles_at(queue, 0).await,
            "every request reached the worker"
        );
    }

    /// Declares a durable quorum queue of the test's own, with no other
    /// arguments: a queue for replies, or one as an older procinst declared.
    pub async fn declare_quorum(&self, name: &str) {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        self.channel
            .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await
            .expect("declare a quorum queue");
    }

    /// A channel of its own consuming `queue`, with manual acks.
    async fn consume(&self, queue: &str) -> (Channel, lapin::Consumer) {
        let channel = self.connection.create_channel().await.expect("channel");
        let consumer = channel
            .basic_consume(
                queue.into(),
                unique("c").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        (channel, consumer)
    }

    /// Reads `n` replies from `queue` (acking them), within [`WAIT`].
    pub async fn replies(&self, queue: &str, n: usize) -> Vec<Reply> {
        let (channel, mut consumer) = self.consume(queue).await;
        let mut out = Vec::with_capacity(n);
        let collect = async {
            while out.len() < n {
                out.push(acked(consumer.next().await).await.into());
            }
        };
        if tokio::time::timeout(WAIT, collect).await.is_err() {
            panic!(
                "timed out waiting for {n} replies on {queue}; got {}",
                out.len()
            );
        }
        let _ = channel.close(200, "bye".into()).await;
        out
    }

    /// Reads replies until `n` distinct request_ids have answered, then for a
    /// moment longer; every reply body per request_id, in arrival order.
    pub async fn replies_per_request(
        &self,
        queue: &str,
        n: usize,
    ) -> HashMap<String, Vec<Vec<u8>>> {
        let (channel, mut consumer) = self.consume(queue).await;
        let mut seen: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut settle = Duration::from_millis(0);
        loop {
            let limit = if seen.len() < n { WAIT } else { settle };
            let Ok(next) = tokio::time::timeout(limit, consumer.next()).await else {
                assert!(
                    seen.len() >= n,
                    "timed out: {} of {n} requests answered on {queue}",
                    seen.len()
                );
                break;
            };
            let delivery = acked(next).await;
            let json: Value = serde_json::from_slice(&delivery.data).expect("reply is JSON");
            let id = json["request_id"].as_str().unwrap_or_default().to_owned();
            seen.entry(id).or_default().push(delivery.data);
            if seen.len() >= n {
                settle = Duration::from_millis(500);
            }
        }
        let _ = channel.close(200, "bye".into()).await;
        seen
    }

    /// Replies keyed by request_id (the last one wins).
    pub async fn replies_by_id(&self, queue: &str, n: usize) -> HashMap<String, Reply> {
        self.replies(queue, n)
            .await
            .into_iter()
            .map(|r| {
                (
                    r.json["request_id"].as_str().unwrap_or_default().to_owned(),
                    r,
                )
            })
            .collect()
    }

    /// Waits until `queue` holds `n` ready messages (quorum queues settle
    /// returns through Raft, a moment after the nack); false after 10 s.
    pub async fn settles_at(&self, queue: &str, n: u32) -> bool {
        for _ in 0..100 {
            if self.depth(queue).await == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Messages currently in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        self.passive_declare(queue)
            .await
            .expect("passive declare")
            .message_count()
    }

    /// `queue` as the broker has it now (its messages and consumers), on a
    /// channel of its own: an error closes that channel, not the client's.
    pub async fn passive_declare(&self, queue: &str) -> Result<Queue, lapin::Error> {
        let ch = self.connection.create_channel().await.expect("channel");
        let declared = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await;
        let _ = ch.close(200, "bye".into()).await;
        declared
    }
}

/// The next delivery of a reply stream, acknowledged.
async fn acked(next: Option<Result<Delivery, lapin::Error>>) -> Delivery {
    let delivery = next.expect("reply stream ended").expect("delivery");
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    delivery
}
