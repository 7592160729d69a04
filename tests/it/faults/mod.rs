//! Faults injected for real, by subject: the broker ([`broker`]), the
//! database ([`database`]), signals and killed processes ([`signals`]), and
//! what the worker tells about them ([`observability`]). This module holds
//! what they share: a burst of requests on both lanes with a fault in the
//! middle, the exactly-once check after it, and contention made to order.

mod broker;
mod database;
mod observability;
mod signals;

use serde_json::json;

use crate::helpers::{Client, Env, request};

/// Makes every insert of a process named in the table `contend` fail as if
/// another writer had just inserted the same row.
async fn contend_on(env: &Env, process_name: &str) {
    let db = env.db().await;
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS contend (name text PRIMARY KEY); \
         CREATE OR REPLACE FUNCTION contend() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF EXISTS (SELECT 1 FROM contend WHERE name = NEW.bk_process_name) THEN \
           RAISE EXCEPTION 'lost a race (test)' USING ERRCODE = 'unique_violation'; END IF; \
           RETURN NEW; END $$; \
         CREATE OR REPLACE TRIGGER contend BEFORE INSERT ON process \
           FOR EACH ROW EXECUTE FUNCTION contend();",
    )
    .await
    .expect("create the contention trigger");
    db.execute("INSERT INTO contend VALUES ($1)", &[&process_name])
        .await
        .expect("contend");
}

/// Sends `n` requests of 2 processes, on both lanes in turn (even ones
/// interactive, odd ones bulk), calling `fault` once after `at` of them.
pub(crate) async fn burst(
    client: &Client,
    prefix: &str,
    n: usize,
    at: usize,
    mut fault: impl FnMut(),
) {
    for i in 0..n {
        let body = request(&format!("{prefix}-{i}"), 1, 10, &format!("{prefix}{i}"), 2);
        client.send_on_both(i, &body).await;
        if i == at {
            fault();
        }
    }
}

/// Every request answered `0`, identical replies per id, rows exactly once.
/// Gives the number of replies beyond one per request (redeliveries).
pub async fn assert_exactly_once(env: &Env, client: &Client, n: usize, per_request: i64) -> usize {
    let replies = client.replies_per_request(&env.reply_queue, n).await;
    assert_eq!(replies.len(), n, "every request answered");
    for (id, bodies) in &replies {
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "{id}: every reply to one request_id is identical"
        );
        let json: serde_json::Value = serde_json::from_slice(&bodies[0]).expect("json");
        assert_eq!(json["code"], json!(0), "{id}: {json}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM process").await,
        per_request * n as i64
    );
    assert_eq!(
        env.count("SELECT count(*) FROM request_log").await,
        n as i64
    );
    replies.values().map(|bodies| bodies.len() - 1).sum()
}
