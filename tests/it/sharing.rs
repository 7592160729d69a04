//! Businesses sharing the bulk lane: a business seen in the bulk queue is
//! given a shard of its own (bound on the bulk exchange by its
//! `bk_biz_id`), takes turns with the other businesses' shards, and gives
//! its shard back once idle and empty. A publisher needs nothing but the
//! exchange and the routing key.

use std::time::{Duration, Instant};

use futures::future::join_all;
use lapin::{BasicProperties, options::BasicPublishOptions};
use serde_json::Value;

use crate::helpers::{Client, Env, WAIT, request};

/// Publishes `bodies` to the bulk exchange with `business` as the routing
/// key, as another team's job would.
async fn publish_as_business(client: &Client, exchange: &str, business: i64, bodies: &[Value]) {
    publish_routed(client, exchange, &business.to_string(), bodies).await;
}

/// Publishes `bodies` persistently to `exchange` with `key`, confirms
/// awaited together.
async fn publish_routed(client: &Client, exchange: &str, key: &str, bodies: &[Value]) {
    let mut confirms = Vec::with_capacity(bodies.len());
    for body in bodies {
        let confirm = client
            .channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(body).expect("json"),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirmed in join_all(confirms).await {
        assert!(confirmed.expect("confirm").is_ack(), "publish nacked");
    }
}

/// The shard `business` holds, once it holds one (within [`WAIT`]).
async fn shard_of(env: &Env, business: i64) -> i16 {
    let db = env.db().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let row = db
            .query_opt(
                "SELECT shard FROM bulk_shard WHERE bk_biz_id = $1",
                &[&business],
            )
            .await
            .expect("bulk_shard");
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "business {business} was never given a shard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no business holds a shard: each was given back.
async fn every_shard_free(env: &Env) {
    let deadline = Instant::now() + WAIT;
    while env.count("SELECT count(*) FROM bulk_shard").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the idle shards were never given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The routing key → queue bindings of the bulk exchange, from the broker.
fn bindings(env: &Env) -> Vec<(String, String)> {
    let out = crate::helpers::rabbitmqctl()
        .args([
            "list_bindings",
            "-q",
            "source_name",
            "destination_name",
            "routing_key",
        ])
        .output()
        .expect("rabbitmqctl list_bindings");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (source, destination, key) = (fields.next()?, fields.next()?, fields.next()?);
            (source == env.bulk_queue()).then(|| (key.to_owned(), destination.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn a_business_seen_in_the_bulk_queue_is_given_a_shard_then_gives_it_back_when_idle() {
    let mut env = Env::new().await;
    env.service_instance(1, 77, "0", 0, 1).await;
    env.start_worker(&[("PROCINST_BULK_SHARD_IDLE_S", "1")])
        .await;
    let client = env.client().await;

    // With no binding yet, the first request falls through to the bulk
    // queue, is answered from there, and its business is given a shard.
    publish_as_business(
        &client,
        &env.bulk_queue(),
        77,
        &[request("first", 1, 77, "a", 1)],
    )
    .await;
    let replies = client.replies_by_id(&env.reply_queue, 1).await;
    assert_eq!(replies["first"].json["code"], 0);
    let shard = shard_of(&env, 77).await;
    let shard_queue = env.bulk_shard(shard as u16);
    assert_eq!(bindings(&env), [("77".to_owned(), shard_queue.clone())]);

    // Later requests of the business are routed to its shard and answered
    // from there; that keeps the business seen.
    let later: Vec<Value> = (0..20)
        .map(|i| request(&format!("later-{i}"), 1, 77, &format!("l{i}"), 1))
        .collect();
    publish_as_business(&client, &env.bulk_queue(), 77, &later).await;
    let replies = client.replies_by_id(&env.reply_queue, 20).await;
    assert!(replies.values().all(|r| r.json["code"] == 0), "{replies:?}");

    // Idle for the idle time and empty: the binding and the record go.
    every_shard_free(&env).await;
    assert!(bindings(&env).is_empty(), "{:?}", bindings(&env));
    assert_eq!(client.depth(&shard_queue).await, 0);

    // A request published now falls through to the bulk queue again.
    publish_as_business(
        &client,
        &env.bulk_queue(),
        77,
        &[request("again", 1, 77, "g", 1)],
    )
    .await;
    let replies = client.replies_by_id(&env.reply_queue, 1).await;
    assert_eq!(replies["again"].json["code"], 0);
    assert_eq!(env.count("SELECT count(*) FROM process").await, 22);
}

#[tokio::test]
async fn a_request_without_a_business_key_goes_to_the_bulk_queue_and_is_answered() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    // An empty or non-numeric routing key, or the bulk queue by name
    // through the default exchange: all land in the bulk queue.
    for (exchange, key, id) in [
        (env.bulk_queue(), String::new(), "empty-key"),
        (env.bulk_queue(), "biz-ten".to_owned(), "word-key"),
        (String::new(), env.bulk_queue(), "by-name"),
    ] {
        publish_routed(&client, &exchange, &key, &[request(id, 1, 10, id, 1)]).await;
    }
    let replies = client.replies_by_id(&env.reply_queue, 3).await;
    for id in ["empty-key", "word-key", "by-name"] {
        assert_eq!(replies[id].json["code"], 0, "{id}");
    }
    assert_eq!(env.count("SELECT count(*) FROM bulk_shard").await, 0);
}

/// Backfills of two businesses at once share the lane whatever their ids:
/// for 20 random pairs, a small backfill published after a large one is
/// done long before it, where one FIFO queue would answer it last.
#[tokio::test]
async fn two_backfills_share_the_bulk_lane_for_twenty_random_pairs_of_businesses() {
    const LARGE: usize = 1_200;
    const SMALL: usize = 150;
    let seed = fastrand::u64(..);
    eprintln!("pairs drawn with seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut env = Env::new().await;
    // Small batches and prefetch, so that what a worker already holds of
    // the large backfill when the small one starts is small beside it.
    env.start_worker(&[
        ("PROCINST_BULK_SHARD_IDLE_S", "1"),
        ("PROCINST_BATCH_SIZE", "16"),
        ("PROCINST_PREFETCH", "32"),
    ])
    .await;
    let client = env.client().await;
    let exchange = env.bulk_queue();
    let mut worst = 0;
    for pair in 0..20i64 {
        let (a, b) = (rng.i64(1..i64::MAX), rng.i64(1..i64::MAX));
        if a == b {
            continue;
        }
        let (si_a, si_b) = (2 * pair + 1, 2 * pair + 2);
        env.service_instance(si_a, a, "0", 0, 1).await;
        env.service_instance(si_b, b, "0", 0, 1).await;
        let backfill = |business: &str, si: i64, n: usize| -> Vec<Value> {
            (0..n)
                .map(|i| {
                    let id = format!("{pair}-{business}-{i}");
                    request(&id, si, 0, &id, 1)
                })
                .collect()
        };
        let mut large = backfill("a", si_a, LARGE);
        let mut small = backfill("b", si_b, SMALL);
        for r in &mut large {
            r["bk_biz_id"] = a.into();
        }
        for r in &mut small {
            r["bk_biz_id"] = b.into();
        }
        // Each business's first request is seen in the bulk queue and
        // gets it a shard; the rest go to the shard.
        publish_as_business(&client, &exchange, a, &large[..1]).await;
        shard_of(&env, a).await;
        publish_as_business(&client, &exchange, a, &large[1..]).await;
        publish_as_business(&client, &exchange, b, &small[..1]).await;
        shard_of(&env, b).await;
        publish_as_business(&client, &exchange, b, &small[1..]).await;

        let order = client.replies(&env.reply_queue, LARGE + SMALL).await;
        let ids: Vec<String> = order
            .iter()
            .map(|r| r.json["request_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            order.iter().all(|r| r.json["code"] == 0),
            "pair {pair}: every request created"
        );
        let small_done = ids
            .iter()
            .rposition(|id| id.starts_with(&format!("{pair}-b-")))
            .expect("the small backfill answered");
        let small_started = ids
            .iter()
            .position(|id| id.starts_with(&format!("{pair}-b-")))
            .expect("the small backfill answered");
        let large_meanwhile = ids[small_started..small_done]
            .iter()
            .filter(|id| id.starts_with(&format!("{pair}-a-")))
            .count();
        let large_left = ids[small_done..].len();
        eprintln!(
            "pair {pair} ({a}, {b}): {large_meanwhile} of the large backfill answered while the small one was, {large_left} after it"
        );
        // At half the lane each, the small backfill takes about SMALL of
        // the large one's answers; the target allows it twice the time
        // (3 × SMALL of the large one). One FIFO queue would answer it
        // after all of the large one.
        assert!(
            large_meanwhile <= 3 * SMALL,
            "pair {pair} ({a}, {b}): {large_meanwhile} of the large backfill answered while the small one of {SMALL} was"
        );
        assert!(
            large_left > 0,
            "pair {pair}: the small backfill is done before the large one"
        );
        worst = worst.max(large_meanwhile);
        // Both shards go back once idle, for the next pair.
        every_shard_free(&env).await;
    }
    eprintln!(
        "FIGURE sharing: at most {worst} of a backfill of {LARGE} answered while one of {SMALL} published after it was, over 20 random pairs"
    );
}

/// Lowering `PROCINST_BULK_SHARDS`: a business holding a shard beyond the
/// new count loses it at once (unbound, its record gone), also when the
/// shard's queue was deleted by hand; its messages go to the bulk queue.
#[tokio::test]
async fn a_shard_beyond_a_lowered_count_is_given_up_even_when_its_queue_is_gone() {
    let mut env = Env::new().await;
    env.service_instance(1, 31, "0", 0, 1).await;
    env.service_instance(2, 32, "0", 0, 1).await;
    let first = env.start_worker(&[("PROCINST_BULK_SHARDS", "2")]).await;
    let client = env.client().await;
    let exchange = env.bulk_queue();
    publish_as_business(&client, &exchange, 31, &[request("s-31", 1, 31, "a", 1)]).await;
    assert_eq!(shard_of(&env, 31).await, 0);
    publish_as_business(&client, &exchange, 32, &[request("s-32", 2, 32, "b", 1)]).await;
    assert_eq!(shard_of(&env, 32).await, 1);
    client.replies_by_id(&env.reply_queue, 2).await;
    env.worker(first).kill();
    let channel = client.connection.create_channel().await.expect("channel");
    channel
        .queue_delete(env.bulk_shard(1).as_str().into(), Default::default())
        .await
        .expect("delete shard 1");

    env.start_worker(&[("PROCINST_BULK_SHARDS", "1")]).await;
    let db = env.db().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<i64> = db
            .query("SELECT bk_biz_id FROM bulk_shard ORDER BY shard", &[])
            .await
            .expect("bulk_shard")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if left == [31] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shard 1 was never given up: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publish_as_business(
        &client,
        &exchange,
        32,
        &[request("s-32-again", 2, 32, "c", 1)],
    )
    .await;
    let replies = client.replies_by_id(&env.reply_queue, 1).await;
    assert_eq!(replies["s-32-again"].json["code"], 0);
}
