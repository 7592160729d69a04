//! Looking at dead letters never loses one: on RabbitMQ 4.0 to 4.2 every
//! `basic.get` given back counts as a delivery, and a quorum queue drops a
//! message at its delivery limit (20 by default on 4.x). Run against both
//! brokers (see `tests/infra/rabbitmq4.sh`).

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;

use crate::helpers::{Client, Env};

/// More listings than RabbitMQ 4's default delivery limit.
const LISTINGS: usize = 25;

async fn dead_letters(client: &Client, env: &Env, n: usize) {
    for i in 0..n {
        client
            .publish_to(
                &env.dead_queue,
                format!("not json {i}").as_bytes(),
                BasicProperties::default()
                    .with_message_id(format!("browse-{i}").into())
                    .with_headers(reason("not_json")),
            )
            .await;
    }
}

fn reason(reason: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-procinst-reason".into(),
        AMQPValue::LongString(reason.into()),
    );
    headers
}

/// Runs `dlq list --json` and returns the request_ids it shows, sorted.
fn listed(env: &Env) -> Vec<String> {
    let out = env.procinst(&["dlq", "list", "--json"], None);
    assert!(
        out.status.success(),
        "dlq list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).expect("a JSON row");
            assert_eq!(row["reason"], "not_json");
            row["request_id"].as_str().expect("request_id").to_owned()
        })
        .collect();
    ids.sort();
    ids
}

fn expected(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("browse-{i}")).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn dead_letters_survive_any_number_of_listings_and_dry_runs() {
    let env = Env::new().await;
    // The first listing declares the topology; the queue is empty then.
    assert!(listed(&env).is_empty());
    let client = env.client().await;
    dead_letters(&client, &env, 3).await;
    for round in 0..LISTINGS {
        assert!(client.settles_at(&env.dead_queue, 3).await, "round {round}");
        assert_eq!(listed(&env), expected(3), "listing {round}");
        let dry = env.procinst(&["dlq", "replay", "--dry-run"], None);
        assert!(dry.status.success());
    }
    assert!(client.settles_at(&env.dead_queue, 3).await);
}

#[tokio::test]
async fn a_dead_letter_queue_from_an_older_procinst_is_used_and_listing_loses_nothing() {
    let env = Env::new().await;
    let client = env.client().await;
    // An older procinst declared the dead-letter queue as a bare quorum
    // queue, so RabbitMQ 4.x applies its default delivery limit to it.
    client.declare_quorum(&env.dead_queue).await;
    dead_letters(&client, &env, 2).await;
    for round in 0..LISTINGS {
        assert!(client.settles_at(&env.dead_queue, 2).await, "round {round}");
        assert_eq!(listed(&env), expected(2), "listing {round}");
    }
    assert!(client.settles_at(&env.dead_queue, 2).await);
}
