//! The `--echo` responder: consumes a queue of the same kind as the request
//! queue and answers every message with a reply of the worker's shape,
//! batched and confirmed the same way, but without touching the database.
//! It measures what the broker alone allows on this machine.

use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Cluster, Outgoing, Publisher, reply_properties};
use crate::config::Settings;
use crate::domain::reply;
use crate::worker::collect::{Collected, next_batch};

/// Declares `queue` (durable quorum, like the request queue) and answers
/// its messages until `stop` is cancelled; then deletes the queue.
pub async fn serve(
    settings: &Settings,
    queue: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let broker =
        broker::connect(&Cluster::from_settings(settings)?, "procinst loadtest echo").await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    broker
        .consume
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await?;
    broker
        .consume
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = broker
        .consume
        .basic_consume(
            queue.into(),
            "echo".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher = Publisher::new(broker.publish.clone());
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let collected = tokio::select! {
            _ = stop.cancelled() => break,
            c = next_batch(&mut consumer, &mut batch, settings.batch_size, settings.batch_linger(), None) => c,
        };
        if let Collected::Ended(..) = collected {
            anyhow::bail!("the echo consumer ended");
        }
        let bodies: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|d| {
                let id = d
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default();
                let body = reply::success(&id, &[1, 2, 3, 4]);
                (id, body)
            })
            .collect();
        let outgoing: Vec<Outgoing<'_>> = batch
            .iter()
            .zip(&bodies)
            .map(|(d, (id, body))| Outgoing {
                exchange: "",
                routing_key: d
                    .properties
                    .reply_to()
                    .as_ref()
                    .map(|r| r.as_str())
                    .unwrap_or_default(),
                body,
                properties: reply_properties(id),
                mandatory: false,
            })
            .collect();
        publisher.publish_all(&outgoing).await?;
        if let Some(last) = batch.last() {
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
    }
    let _ = broker
        .publish
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    broker.close().await;
    Ok(())
}
