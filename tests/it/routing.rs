use lapin::BasicProperties;
use serde_json::json;

use crate::helpers::{Env, request, unique};

#[tokio::test]
async fn replies_go_to_reply_to_with_the_callers_correlation_id() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let own = format!("{}.mine", env.id);
    client.declare_quorum(&own).await;
    let body = serde_json::to_vec(&request("route-1", 1, 10, "p", 1)).expect("json");
    let props = BasicProperties::default()
        .with_reply_to(own.as_str().into())
        .with_correlation_id("corr-42".into());
    client.publish(&body, props).await;
    let reply = client.replies(&own, 1).await.remove(0);
    assert_eq!(reply.correlation_id.as_deref(), Some("corr-42"));
    assert_eq!(reply.json["request_id"], json!("route-1"));
    assert_eq!(
        client.depth(&env.reply_queue).await,
        0,
        "nothing went to the default queue"
    );
    client
        .channel
        .queue_delete(own.as_str().into(), Default::default())
        .await
        .expect("delete own queue");
}

#[tokio::test]
async fn a_reply_to_a_missing_queue_is_dropped_and_nothing_stalls() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let missing = unique("no-such-queue");
    let body = serde_json::to_vec(&request("route-2", 1, 10, "p", 1)).expect("json");
    client
        .publish(
            &body,
            BasicProperties::default().with_reply_to(missing.as_str().into()),
        )
        .await;
    client.send(&request("route-3", 1, 10, "q", 1)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["request_id"], json!("route-3"));
    assert_eq!(
        env.count("SELECT count(*) FROM request_log WHERE request_id = 'route-2'")
            .await,
        1
    );
    assert_eq!(client.depth(&env.request_queue).await, 0);
}

#[tokio::test]
async fn direct_reply_to_reaches_the_requester() {
    use futures::StreamExt;
    use lapin::options::BasicConsumeOptions;
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let channel = client.connection.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "direct".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("consume direct reply-to");
    let body = serde_json::to_vec(&request("route-4", 1, 10, "p", 1)).expect("json");
    channel
        .basic_publish(
            "".into(),
            env.request_queue.as_str().into(),
            Default::default(),
            &body,
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_delivery_mode(2),
        )
        .await
        .expect("publish");
    let delivery = tokio::time::timeout(crate::helpers::WAIT, consumer.next())
        .await
        .expect("reply in time")
        .expect("stream")
        .expect("delivery");
    let reply: serde_json::Value = serde_json::from_slice(&delivery.data).expect("json");
    assert_eq!(reply["request_id"], json!("route-4"));
    assert_eq!(reply["code"], json!(0));
}
