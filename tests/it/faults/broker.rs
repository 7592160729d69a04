//! The broker misbehaving: connections cut by a proxy or closed by
//! RabbitMQ, a consumer cancelled, replies refused, a message handed back
//! until the delivery limit dead-letters it.

use std::time::Duration;

use futures::StreamExt;
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions},
    types::FieldTable,
};
use procinst::broker::{BrokerError, ack_through};
use serde_json::json;

use super::{assert_exactly_once, burst, contend_on};
use crate::helpers::{Env, WAIT, amqp_url, metric, request};
use crate::support::proxy::Proxy;

#[tokio::test]
async fn broker_connections_cut_mid_burst_lose_and_duplicate_nothing() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let proxy = Proxy::start(&crate::helpers::amqp_addr()).await;
    let url = crate::helpers::amqp_url_via(proxy.addr);
    let w = env.start_worker(&[("AMQP_URL", &url)]).await;
    let client = env.client().await;
    burst(&client, "bcut", 600, 150, || proxy.cut()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    assert_exactly_once(&env, &client, 600, 2).await;
    assert!(
        env.worker(w).log().contains("reconnect"),
        "the worker reconnected"
    );
}

#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_is_noticed_and_resubscribed() {
    consumer_cancelled_on(false).await;
}

#[tokio::test]
async fn a_bulk_consumer_cancelled_by_the_broker_is_noticed_and_resubscribed() {
    consumer_cancelled_on(true).await;
}

/// Deletes one lane's queue under a worker; the session ends on both
/// lanes, and the next one declares the queue again and consumes it.
async fn consumer_cancelled_on(bulk: bool) {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    let queue = if bulk {
        env.bulk_queue()
    } else {
        env.request_queue.clone()
    };
    client
        .channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .expect("delete a lane's queue under the worker");
    // The worker reconnects, declares the queue again and consumes it.
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let declared = client.passive_declare(&queue).await;
        if declared.is_ok_and(|q| q.consumer_count() == 1) {
            back = true;
            break;
        }
    }
    assert!(
        back,
        "queue declared again and consumed; log:\n{}",
        env.worker(w).log()
    );
    for (i, id) in ["after-cancel-0", "after-cancel-1"].into_iter().enumerate() {
        client.send_on_both(i, &request(id, 1, 10, id, 1)).await;
    }
    let replies = client.replies_by_id(&env.reply_queue, 2).await;
    assert!(
        replies.values().all(|r| r.json["code"] == json!(0)),
        "{replies:?}"
    );
}

#[tokio::test]
async fn a_connection_closed_by_the_broker_is_reopened_and_nothing_is_lost() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    let pid = env.worker(w).child.id();
    let close = move || {
        // Close this worker's connection from the broker side, by its name.
        let listed = crate::helpers::rabbitmqctl()
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl list_connections");
        let marker = format!("procinst worker {pid} @ ");
        let text = String::from_utf8_lossy(&listed.stdout);
        let connection = text
            .lines()
            .find(|l| l.contains(&marker))
            .and_then(|l| l.split('\t').next())
            .expect("the worker's connection is listed")
            .to_owned();
        let closed = crate::helpers::rabbitmqctl()
            .args(["-q", "close_connection", &connection, "test closes it"])
            .status()
            .expect("rabbitmqctl close_connection");
        assert!(closed.success());
    };
    burst(&client, "bclose", 300, 100, close).await;
    assert_exactly_once(&env, &client, 300, 2).await;
    assert!(
        env.worker(w).log().contains("reconnect"),
        "the worker reconnected"
    );
}

#[tokio::test]
async fn a_message_the_worker_keeps_handing_back_is_dead_lettered_by_the_delivery_limit() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    contend_on(&env, "looping-0").await;
    let w = env.start_worker(&[("PROCINST_DELIVERY_LIMIT", "2")]).await;
    let client = env.client().await;
    client.send(&request("looping", 1, 10, "looping", 1)).await;
    assert!(
        client.settles_at(&env.dead_queue, 1).await,
        "dead-lettered by the delivery limit; log:\n{}",
        env.worker(w).log()
    );
    assert!(env.worker(w).log().contains("contended"));
    let listed = env.procinst_with(
        &["dlq", "list", "--json"],
        None,
        &[("PROCINST_DELIVERY_LIMIT", "2")],
    );
    let row: serde_json::Value = serde_json::from_slice(&listed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&listed.stderr)));
    assert_eq!(row["request_id"], json!("looping"));
    assert_eq!(row["reason"], json!("delivery_limit"));
    assert_eq!(client.depth(&env.request_queue).await, 0);
    assert_eq!(env.count("SELECT count(*) FROM process").await, 0);
}

#[tokio::test]
async fn replies_the_broker_refuses_are_requeued_after_growing_pauses_and_then_delivered() {
    use lapin::types::{AMQPValue, FieldTable};
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    // A reply queue that is full refuses (nacks) what is published to it.
    let full = format!("{}.full", env.id);
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    client
        .channel
        .queue_declare(full.as_str().into(), Default::default(), args)
        .await
        .expect("declare a full reply queue");
    client
        .publish_to(&full, b"filler", Default::default())
        .await;
    let body = serde_json::to_vec(&request("refused", 1, 10, "r", 1)).expect("json");
    let sent = std::time::Instant::now();
    client
        .publish(
            &body,
            lapin::BasicProperties::default().with_reply_to(full.as_str().into()),
        )
        .await;
    // Three requeues in a row: pauses of at least 0.5 s and 1 s between
    // them (without pauses they come about every 0.3 s, and the delivery
    // limit soon dead-letters the request).
    let deadline = sent + crate::helpers::WAIT;
    loop {
        let text = env.worker(w).metrics().await;
        if metric(&text, "procinst_redeliveries_total") >= 3.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sent.elapsed() >= Duration::from_millis(2500),
        "requeued in a tight loop: 3 times in {:?}",
        sent.elapsed()
    );
    // Room in the queue: the next attempt delivers the reply.
    client
        .channel
        .queue_purge(full.as_str().into(), Default::default())
        .await
        .expect("purge");
    let reply = client.replies(&full, 1).await.remove(0);
    assert_eq!(reply.json["request_id"], json!("refused"));
    assert_eq!(reply.json["code"], json!(0));
    assert_eq!(client.depth(&env.dead_queue).await, 0, "not dead-lettered");
    assert_eq!(env.count("SELECT count(*) FROM process").await, 1);
    let _ = client
        .channel
        .queue_delete(full.as_str().into(), Default::default())
        .await;
}

/// The value of an unlabelled counter or gauge in Prometheus text; 0 when absent.
#[tokio::test]
async fn an_idle_worker_whose_connection_is_cut_reconnects() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let proxy = Proxy::start(&crate::helpers::amqp_addr()).await;
    let url = crate::helpers::amqp_url_via(proxy.addr);
    let w = env.start_worker(&[("AMQP_URL", &url)]).await;
    let client = env.client().await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.send(&request("idle-cut", 1, 10, "i", 1)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
    assert!(env.worker(w).log().contains("reconnect"));
}

/// lapin answers an ack on a closed channel with `false`, not an error;
/// the worker must take that as "not acknowledged" (the broker redelivers
/// the batch), never as an answered batch.
#[tokio::test]
async fn an_ack_on_a_closed_channel_is_an_error_not_an_answer() {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions::exclusive(),
            FieldTable::default(),
        )
        .await
        .expect("queue")
        .name()
        .as_str()
        .to_owned();
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
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
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("a delivery")
        .expect("ok");
    consume.close(200, "gone".into()).await.expect("close");

    let acked = ack_through(&delivery).await;
    assert!(
        matches!(acked, Err(BrokerError::ChannelClosed { .. })),
        "{acked:?}"
    );
    let _ = connection.close(200, "bye".into()).await;
}
