use std::{task::Poll, time::Duration};

use futures::future::{self, Either, join_all};
use lapin::{BasicProperties, Channel, Confirmation, options::BasicPublishOptions};

use super::{Blocked, BrokerError};

/// Times a nacked message is published again before the caller is told.
const NACK_RETRIES: u32 = 3;
const NACK_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait for the broker to confirm a set of messages; past it the
/// caller treats the channel as broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// A message to publish: where, what, and with which properties.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
    /// Published mandatory: when no queue takes it, the broker returns it
    /// and [`Publisher::publish_all`] fails with [`BrokerError::Unroutable`].
    pub mandatory: bool,
}

/// Publishes on a channel in confirm mode, many messages in flight at once.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    /// The connection's alarm state, when known: time spent blocked does
    /// not count against [`CONFIRM_TIMEOUT`].
    blocked: Option<Blocked>,
}

impl Publisher {
    /// `channel` must already be in confirm mode.
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            blocked: None,
        }
    }

    /// Waits out the broker's alarms on this connection instead of timing
    /// out: a blocked connection is healthy, only held back.
    pub fn waiting_out_alarms(self, blocked: Blocked) -> Self {
        Self {
            blocked: Some(blocked),
            ..self
        }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes every message and returns once the broker confirmed all of
    /// them. Confirms are awaited together, not one by one; a nacked message
    /// is published again a few times before [`BrokerError::Nacked`].
    pub async fn publish_all(&self, messages: &[Outgoing<'_>]) -> Result<(), BrokerError> {
        let mut pending: Vec<&Outgoing<'_>> = messages.iter().collect();
        for attempt in 0..=NACK_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(NACK_BACKOFF * attempt).await;
            }
            let round = async {
                let confirms = self.send_all(&pending).await?;
                Ok::<_, BrokerError>(join_all(confirms).await)
            };
            // Bounds the sends too: a publish racing a dying connection must
            // not hold the batch (and its prefetch slots) forever.
            let results = self.confirmed_in_time(round).await??;
            let mut nacked = Vec::new();
            for (message, result) in pending.iter().zip(results) {
                match result? {
                    Confirmation::Nack(_) => nacked.push(*message),
                    // Sending it again would only bring it back again.
                    Confirmation::Ack(Some(_)) if message.mandatory => {
                        return Err(BrokerError::Unroutable {
                            exchange: message.exchange.to_owned(),
                            routing_key: message.routing_key.to_owned(),
                        });
                    }
                    _ => {}
                }
            }
            if nacked.is_empty() {
                return Ok(());
            }
            metrics::counter!("procinst_publish_nacks_total").increment(nacked.len() as u64);
            pending = nacked;
        }
        Err(BrokerError::Nacked {
            routing_key: pending
                .first()
                .map(|m| m.routing_key.to_owned())
                .unwrap_or_default(),
        })
    }

    /// `round`'s output, unless it takes longer than [`CONFIRM_TIMEOUT`]
    /// while the connection is not blocked.
    async fn confirmed_in_time<T>(&self, round: impl Future<Output = T>) -> Result<T, BrokerError> {
        let mut round = std::pin::pin!(round);
        loop {
            if let Ok(output) = tokio::time::timeout(CONFIRM_TIMEOUT, &mut round).await {
                return Ok(output);
            }
            let Some(blocked) = self.blocked.as_ref().filter(|b| b.reason().is_some()) else {
                return Err(BrokerError::Timeout {
                    what: "publishing with confirms",
                    after: CONFIRM_TIMEOUT,
                });
            };
            tokio::select! {
                output = &mut round => return Ok(output),
                () = blocked.cleared() => {}
            }
        }
    }

    /// Sends every message, in order, without waiting for the connection's
    /// I/O thread between them (see [`started`]); all are then awaited
    /// together.
    async fn send_all(
        &self,
        messages: &[&Outgoing<'_>],
    ) -> Result<Vec<lapin::PublisherConfirm>, BrokerError> {
        let mut sends = Vec::with_capacity(messages.len());
        for message in messages {
            sends.push(started(self.send(message)).await);
        }
        join_all(sends).await.into_iter().collect()
    }

    async fn send(&self, message: &Outgoing<'_>) -> Result<lapin::PublisherConfirm, BrokerError> {
        Ok(self
            .channel
            .basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                BasicPublishOptions {
                    mandatory: message.mandatory,
                    ..Default::default()
                },
                message.body,
                message.properties.clone(),
            )
            .await?)
    }
}

/// Polls a publish once and returns it, to be awaited later. lapin queues
/// a publish's frames (and takes its confirm's delivery tag) the first
/// time its future is polled, so publishes started one after the other go
/// out in that order, and one wake-up of the I/O thread writes them all;
/// awaiting each publish before the next cost two thread switches per
/// message.
pub async fn started<F: Future>(publish: F) -> impl Future<Output = F::Output> {
    let mut publish = Box::pin(publish);
    match futures::poll!(publish.as_mut()) {
        Poll::Ready(done) => Either::Left(future::ready(done)),
        Poll::Pending => Either::Right(publish),
    }
}

/// Properties of a reply: persistent JSON, correlated to its request.
pub fn reply_properties(correlation_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_correlation_id(correlation_id.into())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn a_started_publish_has_run_up_to_its_first_wait_and_finishes_when_awaited() {
        let queued = Cell::new(false);
        let publish = started(async {
            queued.set(true);
            tokio::task::yield_now().await;
            7
        })
        .await;
        assert!(queued.get(), "started polls the future once");
        assert_eq!(publish.await, 7);

        let ready = started(async { 8 }).await;
        assert_eq!(ready.await, 8);
    }
}
