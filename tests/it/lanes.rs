//! The two lanes: the interactive lane (the request queue) and the bulk
//! lane (`<request queue>.bulk`), declared alike, both served by every
//! worker, interactive first; which lane each publisher uses; one request
//! whatever lane it came through.

use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

use crate::helpers::{Env, WAIT, request, unique};

fn lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

#[tokio::test]
async fn the_bulk_lane_is_named_after_the_request_queue_declared_alike_and_answered() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let bulk = client
        .passive_declare(&env.bulk_queue())
        .await
        .expect("the bulk lane's queue is declared by the worker");
    assert_eq!(
        bulk.consumer_count(),
        1,
        "the worker consumes the bulk lane"
    );

    // Alike: declaring it as the request queue is declared succeeds, since
    // RabbitMQ refuses a declaration whose arguments differ.
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(10));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(env.dlx.as_str().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(env.dead_queue.as_str().into()),
    );
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    for queue in [env.request_queue.clone(), env.bulk_queue()] {
        let channel = client.connection.create_channel().await.expect("channel");
        channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions::durable(),
                args.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("{queue} is declared with the same arguments: {e}"));
        let _ = channel.close(200, "bye".into()).await;
    }

    client.send_bulk(&request("bulk-1", 1, 10, "b", 2)).await;
    client
        .send_bulk(&json!({"request_id": "bulk-bad", "bk_biz_id": 10}))
        .await;
    let replies = client.replies_by_id(&env.reply_queue, 2).await;
    assert_eq!(replies["bulk-1"].json["code"], json!(0));
    assert_eq!(replies["bulk-bad"].json["result"], json!(false));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 2);
}

#[tokio::test]
async fn a_deployment_that_names_its_bulk_queue_gets_it() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let own = unique("own-bulk");
    env.start_worker(&[("PROCINST_BULK_QUEUE", own.as_str())])
        .await;
    let client = env.client().await;
    let declared = client.passive_declare(&own).await.expect("declared");
    assert_eq!(declared.consumer_count(), 1);
    client
        .publish_to(
            &own,
            &serde_json::to_vec(&request("own-1", 1, 10, "o", 1)).expect("json"),
            BasicProperties::default(),
        )
        .await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
    // The environment removes the names it made; these are the test's.
    env.worker(0).kill();
    let queues = std::iter::once(own.clone())
        .chain((0..crate::helpers::MAX_TEST_BULK_SHARDS).map(|i| format!("{own}.{i}")));
    for queue in queues {
        let _ = client
            .channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    for exchange in [own.clone(), format!("{own}.unrouted")] {
        let _ = client
            .channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await;
    }
}

#[tokio::test]
async fn procinst_publish_uses_the_bulk_lane_unless_told_interactive() {
    let env = Env::new().await;
    let client = env.client().await;
    let backfill = lines(&[request("p-1", 1, 10, "a", 1), request("p-2", 1, 10, "b", 1)]);
    let run = env.procinst(&["publish", "-"], Some(&backfill));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(client.depth(&env.bulk_queue()).await, 2);
    assert_eq!(client.depth(&env.request_queue).await, 0);

    let urgent = lines(&[request("p-3", 1, 10, "c", 1)]);
    let run = env.procinst(&["publish", "--lane", "interactive", "-"], Some(&urgent));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(client.depth(&env.bulk_queue()).await, 2);
    assert_eq!(client.depth(&env.request_queue).await, 1);
}

#[tokio::test]
async fn one_request_id_on_both_lanes_is_one_request() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let body = request("both-lanes", 1, 10, "both", 3);
    client.send(&body).await;
    client.send_bulk(&body).await;
    let replies = client.replies(&env.reply_queue, 2).await;
    assert_eq!(
        replies[0].body, replies[1].body,
        "the same reply, byte for byte"
    );
    assert_eq!(replies[0].json["code"], json!(0));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 3);
    assert_eq!(env.count("SELECT count(*) FROM request_log").await, 1);
}

/// A backlog on the bulk lane does not delay an interactive request: it is
/// answered while the backlog is still draining.
#[tokio::test]
async fn an_interactive_request_is_answered_while_a_bulk_backlog_drains() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let client = env.client().await;
    let n = 20_000;
    let backfill = lines(
        &(0..n)
            .map(|i| request(&format!("backlog-{i}"), 1, 10, &format!("bl{i}"), 1))
            .collect::<Vec<_>>(),
    );
    let run = env.procinst(&["publish", "-"], Some(&backfill));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(client.depth(&env.bulk_queue()).await, n);

    let w = env.start_worker(&[]).await;
    // The worker is draining the backlog.
    let started = Instant::now();
    while client.depth(&env.bulk_queue()).await == n {
        assert!(
            started.elapsed() < WAIT,
            "the worker never took the backlog"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let inbox = unique("inbox");
    client.declare_quorum(&inbox).await;
    let sent = Instant::now();
    client
        .publish(
            &serde_json::to_vec(&request("urgent", 1, 10, "urgent", 1)).expect("json"),
            BasicProperties::default().with_reply_to(inbox.as_str().into()),
        )
        .await;
    let reply = client.replies(&inbox, 1).await.remove(0);
    let waited = sent.elapsed();
    let left = client.depth(&env.bulk_queue()).await;
    assert_eq!(reply.json["code"], json!(0));
    assert!(
        left > 0,
        "answered after {waited:?}, only once the backlog was drained; log:\n{}",
        env.worker(w).log()
    );
    let _ = client
        .channel
        .queue_delete(inbox.as_str().into(), Default::default())
        .await;
}

#[tokio::test]
async fn request_show_names_the_lane_a_request_came_through() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client
        .send(&request("came-interactive", 1, 10, "ci", 1))
        .await;
    client
        .send_bulk(&request("came-bulk", 1, 10, "cb", 1))
        .await;
    client.replies(&env.reply_queue, 2).await;
    for (id, lane) in [("came-interactive", "interactive"), ("came-bulk", "bulk")] {
        let shown = env.procinst(&["request", "show", id], None);
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            text.lines()
                .any(|l| l.trim() == format!("lane            {lane}")),
            "{id}: {text}"
        );
        let json = env.procinst(&["request", "show", "--json", id], None);
        let json: Value = serde_json::from_slice(&json.stdout).expect("json");
        assert_eq!(json["stored"]["lane"], json!(lane), "{json}");
    }
}
