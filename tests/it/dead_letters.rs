use futures::StreamExt;
use lapin::{BasicProperties, options::BasicConsumeOptions, types::AMQPValue};
use serde_json::json;

use crate::helpers::{Env, WAIT, unique};

/// Reads one message from the dead-letter queue: its body and reason header.
async fn dead_letter(env: &Env, client: &crate::helpers::Client) -> (Vec<u8>, String) {
    let channel = client.connection.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            env.dead_queue.as_str().into(),
            unique("dl").as_str().into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .expect("consume dead letters");
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("dead letter in time")
        .expect("stream")
        .expect("delivery");
    delivery.acker.ack(Default::default()).await.expect("ack");
    let reason = match delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-procinst-reason").cloned())
    {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("no reason header: {other:?}"),
    };
    (delivery.data, reason)
}

#[tokio::test]
async fn invalid_json_is_dead_lettered_with_its_reason_and_answered_when_it_has_an_id() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let body = b"{\"request_id\": \"dl-1\", oops";
    client
        .publish(
            body,
            BasicProperties::default().with_message_id("dl-1".into()),
        )
        .await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(1199000));
    assert_eq!(reply.json["request_id"], json!("dl-1"));
    let (kept, reason) = dead_letter(&env, &client).await;
    assert_eq!(
        kept, body,
        "the original body is kept for a faithful replay"
    );
    assert_eq!(reason, "not_json");
}

#[tokio::test]
async fn a_body_over_the_limit_is_dead_lettered_unparsed_with_1300002() {
    let mut env = Env::new().await;
    env.start_worker(&[("PROCINST_MAX_BODY_BYTES", "1000")])
        .await;
    let client = env.client().await;
    let body =
        serde_json::to_vec(&json!({"request_id": "big", "pad": "x".repeat(2000)})).expect("json");
    client
        .publish(
            &body,
            BasicProperties::default().with_message_id("big-mid".into()),
        )
        .await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(1300002));
    assert_eq!(
        reply.json["request_id"],
        json!("big-mid"),
        "not parsed: the id comes from message_id"
    );
    let (_, reason) = dead_letter(&env, &client).await;
    assert_eq!(reason, "too_large");
}

#[tokio::test]
async fn messages_without_a_usable_request_id_or_not_objects_are_dead_lettered_silently() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client
        .publish(b"[1, 2, 3]", BasicProperties::default())
        .await;
    let (_, reason) = dead_letter(&env, &client).await;
    assert_eq!(reason, "not_object");
    client
        .publish(
            br#"{"bk_biz_id": 1, "request_id": ""}"#,
            BasicProperties::default(),
        )
        .await;
    let (_, reason) = dead_letter(&env, &client).await;
    assert_eq!(reason, "no_request_id");
    // Neither had an id to answer to.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(client.depth(&env.reply_queue).await, 0);
}
