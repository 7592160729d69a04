use futures::StreamExt;
use lapin::{BasicProperties, options::BasicConsumeOptions};
use serde_json::json;

use crate::helpers::{Env, WAIT, header_text, unique};

/// Reads one message from the dead-letter queue: its body and reason header.
async fn dead_letter(env: &Env, client: &crate::helpers::Client) -> (Vec<u8>, String) {
    let (body, reason, _) = dead_letter_with_properties(env, client).await;
    (body, reason)
}

/// Like [`dead_letter`], with the copy's properties.
async fn dead_letter_with_properties(
    env: &Env,
    client: &crate::helpers::Client,
) -> (Vec<u8>, String, BasicProperties) {
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
    let reason = header_text(&delivery.properties, "x-procinst-reason").expect("a reason header");
    (delivery.data, reason, delivery.properties)
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
    // Neither had an id to answer to: the first reply on the queue is the
    // one to a later request (batches are answered in delivery order).
    client
        .send(&crate::helpers::request("marker", 404, 10, "m", 1))
        .await;
    let replies = client.replies(&env.reply_queue, 1).await;
    assert_eq!(replies[0].json["request_id"], json!("marker"));
    assert_eq!(client.depth(&env.reply_queue).await, 0);
}

#[tokio::test]
async fn a_dead_letter_with_no_queue_to_go_to_stays_with_the_broker_until_the_queue_is_back() {
    let mut env = Env::new().await;
    let first = env.start_worker(&[]).await;
    let client = env.client().await;
    client
        .channel
        .queue_delete(env.dead_queue.as_str().into(), Default::default())
        .await
        .expect("delete the dead-letter queue under the worker");
    let body = b"{\"request_id\": \"gone-1\",\n oops";
    client
        .publish(
            body,
            BasicProperties::default()
                .with_message_id("gone-1".into())
                .with_expiration("600000".into()),
        )
        .await;
    // The copy has no queue to go to: the broker returns it.
    env.worker(first).wait_for_log("came back").await;
    // A second worker declares the queue and its binding again; the
    // original, never acknowledged, is dead-lettered now.
    env.start_worker(&[]).await;
    let (kept, reason, properties) = dead_letter_with_properties(&env, &client).await;
    assert_eq!(kept, body);
    assert_eq!(reason, "not_json");
    assert_eq!(
        properties.expiration(),
        &None,
        "a dead letter does not expire"
    );
    let detail = header_text(&properties, "x-procinst-detail").expect("a detail header");
    assert!(!detail.is_empty() && !detail.contains('\n'), "{detail:?}");
}
