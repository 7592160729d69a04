//! What happened to every message of a chaos run, as its clients saw it:
//! each publication and whether the broker confirmed it, every reply, every
//! dead-letter copy. The publisher and the reply reader move to another
//! node when theirs goes away, as a careful client does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use lapin::{
    BasicProperties, Channel, Connection,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
        ConfirmSelectOptions,
    },
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use super::stream::Message;
use crate::helpers::unique;
use crate::support::rabbitmq4::cluster_url;

/// Longest wait for one publish or one confirm before the publisher takes
/// its connection for lost (an alarm blocks publishers for seconds).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Every message's record, by its index in the stream.
#[derive(Debug, Default)]
pub struct History {
    /// Publications sent, and of them confirmed, per message.
    pub sent: Vec<u32>,
    pub confirmed: Vec<u32>,
    /// Every reply body, by request_id, in arrival order.
    pub replies: HashMap<String, Vec<Vec<u8>>>,
    /// When the last reply arrived, and the last publication was confirmed.
    pub last_reply: Option<Instant>,
    pub last_confirmed: Option<Instant>,
    /// The dead-letter queue's messages: (message_id, body, reason header).
    pub dead: Vec<(Option<String>, Vec<u8>, Option<String>)>,
}

pub type Shared = Arc<Mutex<History>>;

pub fn shared(messages: usize) -> Shared {
    Arc::new(Mutex::new(History {
        sent: vec![0; messages],
        confirmed: vec![0; messages],
        ..History::default()
    }))
}

fn record(history: &Shared, f: impl FnOnce(&mut History)) {
    f(&mut history.lock().unwrap_or_else(|e| e.into_inner()));
}

/// A channel in confirm mode on the first node that answers.
async fn publishing_channel() -> Option<(Connection, Channel)> {
    let connection = crate::helpers::connect_any(&cluster_url()).await?;
    let channel = connection.create_channel().await.ok()?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .ok()?;
    Some((connection, channel))
}

/// How the broker answered one publication.
enum Confirmed {
    Ack,
    /// Refused: sent again on the same connection.
    Nack,
    /// No answer in time, or the connection went: sent again, and the
    /// connection is left if it is still the current one.
    Lost,
}

/// Publishes `messages` at `rate` per second, even ones to the interactive
/// queue and odd ones to the bulk exchange as one of three businesses (so
/// that the bulk lane's shards are given and taken back meanwhile), each
/// until a node
/// confirms it: a publication that fails or is not confirmed is sent again
/// (so a message may be in the queue twice, as a repeat). Returns when
/// every message is confirmed.
///
/// The pace is kept on average: what a fault held back (an alarm blocks
/// every publisher, a lost node costs a reconnect) is sent in a burst
/// afterwards, as upstream systems that kept producing meanwhile would.
pub async fn publish(
    messages: Arc<Vec<Message>>,
    interactive_queue: String,
    bulk_exchange: String,
    rate: f64,
    history: Shared,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = 0usize;
    let mut again: Vec<usize> = Vec::new();
    let mut link: Option<(Connection, Channel)> = None;
    // Which connection a publication went out on: only a failure on the
    // current one is a reason to leave it. (Leaving it for every late
    // failure of an older connection would drop each new one in turn.)
    let mut generation = 0u64;
    let mut confirms = FuturesUnordered::new();
    while next < messages.len() || !again.is_empty() || !confirms.is_empty() {
        tokio::select! {
            Some((i, on, confirmed)) = confirms.next(), if !confirms.is_empty() => {
                match confirmed {
                    Confirmed::Ack => record(&history, |h| {
                        h.confirmed[i] += 1;
                        h.last_confirmed = Some(Instant::now());
                    }),
                    Confirmed::Nack => again.push(i),
                    Confirmed::Lost => {
                        again.push(i);
                        if on == generation {
                            link = None;
                        }
                    }
                }
                continue;
            }
            _ = tick.tick(), if next < messages.len() || !again.is_empty() => {}
        }
        let i = match again.pop() {
            Some(i) => i,
            None => {
                next += 1;
                next - 1
            }
        };
        if link.is_none() {
            link = publishing_channel().await;
            generation += 1;
        }
        let Some((_, channel)) = &link else {
            again.push(i);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let m = &messages[i];
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = &m.message_id {
            properties = properties.with_message_id(id.as_str().into());
        }
        record(&history, |h| h.sent[i] += 1);
        let (exchange, routing_key) = if i.is_multiple_of(2) {
            ("", interactive_queue.clone())
        } else {
            (bulk_exchange.as_str(), (10 + (i / 2) % 3).to_string())
        };
        let sent = channel.basic_publish(
            exchange.into(),
            routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &m.body,
            properties,
        );
        let on = generation;
        match tokio::time::timeout(PUBLISH_TIMEOUT, sent).await {
            Ok(Ok(confirm)) => confirms.push(async move {
                let confirmed = match tokio::time::timeout(PUBLISH_TIMEOUT, confirm).await {
                    Ok(Ok(c)) if c.is_ack() => Confirmed::Ack,
                    Ok(Ok(_)) => Confirmed::Nack,
                    _ => Confirmed::Lost,
                };
                (i, on, confirmed)
            }),
            _ => {
                again.push(i);
                link = None;
            }
        }
    }
}

/// Reads replies from `queue` until `stop`, acking each after recording
/// it, and consuming again (on any node) when the consumer is lost.
pub async fn read_replies(queue: String, history: Shared, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let consumer = async {
            let connection = crate::helpers::connect_any(&cluster_url()).await?;
            let channel = connection.create_channel().await.ok()?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    unique("chaos").as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .ok()?;
            Some((connection, channel, consumer))
        };
        let Some((_connection, _channel, mut consumer)) = consumer.await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        loop {
            let delivery = tokio::select! {
                _ = stop.cancelled() => return,
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    _ => break,
                },
            };
            let id = serde_json::from_slice::<serde_json::Value>(&delivery.data)
                .ok()
                .and_then(|v| v["request_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let body = delivery.data.clone();
            if delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .is_err()
            {
                // Not acked: it comes again, and is recorded then.
                break;
            }
            record(&history, |h| {
                h.replies.entry(id).or_default().push(body);
                h.last_reply = Some(Instant::now());
            });
        }
    }
}

/// Takes every message from the dead-letter queue into the history.
pub async fn read_dead_letters(queue: &str, history: &Shared) {
    let connection = crate::helpers::connect_any(&cluster_url())
        .await
        .expect("a node answers");
    let channel = connection.create_channel().await.expect("channel");
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get on the dead-letter queue")
    {
        let message_id = message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned());
        let reason = crate::helpers::header_text(&message.delivery.properties, "x-procinst-reason");
        let body = message.delivery.data;
        record(history, |h| h.dead.push((message_id, body, reason)));
    }
    let _ = connection.close(200, "bye".into()).await;
}
