use lapin::BasicProperties;
use serde_json::json;

use crate::helpers::{Env, WAIT, eventually_true, request};

#[tokio::test]
async fn a_repeated_request_gets_the_stored_reply_byte_for_byte_and_writes_nothing() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let body = request("idem-1", 1, 10, "p", 4);
    client.send(&body).await;
    let first = client.replies(&env.reply_queue, 1).await.remove(0);
    // Same meaning, other caller identity: still the same request.
    let mut again = body.clone();
    again["bk_username"] = json!("someone-else");
    again["bk_token"] = json!("t");
    client.send(&again).await;
    let second = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(first.body, second.body);
    assert_eq!(env.count("SELECT count(*) FROM process").await, 4);
    assert_eq!(env.count("SELECT count(*) FROM audit_log").await, 1);
}

#[tokio::test]
async fn the_same_request_id_with_another_meaning_is_1300001() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("idem-2", 1, 10, "p", 1)).await;
    client.replies(&env.reply_queue, 1).await;
    client.send(&request("idem-2", 1, 10, "other", 1)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(1300001));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 1);
}

#[tokio::test]
async fn a_failed_request_is_not_stored_and_can_be_sent_again_after_the_fix() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("idem-3", 1, 10, "p", 1)).await;
    assert_eq!(
        client.replies(&env.reply_queue, 1).await[0].json["code"],
        json!(1199019)
    );
    env.service_instance(1, 10, "0", 0, 1).await;
    client.send(&request("idem-3", 1, 10, "p", 1)).await;
    assert_eq!(
        client.replies(&env.reply_queue, 1).await[0].json["code"],
        json!(0)
    );
}

#[tokio::test]
async fn message_id_stands_in_for_a_missing_request_id() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let mut body = request("ignored", 1, 10, "p", 1);
    body.as_object_mut().expect("object").remove("request_id");
    let bytes = serde_json::to_vec(&body).expect("json");
    client
        .publish(
            &bytes,
            BasicProperties::default().with_message_id("from-message-id".into()),
        )
        .await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["request_id"], json!("from-message-id"));
    assert_eq!(reply.json["code"], json!(0));
    assert_eq!(
        env.count("SELECT count(*) FROM request_log WHERE request_id = 'from-message-id'")
            .await,
        1
    );
}

#[tokio::test]
async fn two_workers_fed_the_same_requests_create_each_exactly_once() {
    let mut env = Env::new().await;
    for si in 1..=4 {
        env.service_instance(si, 10, "0", 0, 1).await;
    }
    env.start_worker(&[]).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let n = 150;
    for copy in 0..2 {
        for i in 0..n {
            let body = request(
                &format!("twice-{i}"),
                1 + (i % 4) as i64,
                10,
                &format!("t{i}"),
                3,
            );
            let _ = copy;
            client.send(&body).await;
        }
    }
    let replies = client.replies(&env.reply_queue, 2 * n).await;
    let mut by_id: std::collections::HashMap<String, Vec<Vec<u8>>> = Default::default();
    for r in replies {
        by_id
            .entry(r.json["request_id"].as_str().expect("id").to_owned())
            .or_default()
            .push(r.body);
    }
    assert_eq!(by_id.len(), n);
    for (id, bodies) in &by_id {
        assert_eq!(bodies.len(), 2, "{id}");
        assert_eq!(bodies[0], bodies[1], "{id}: both replies identical");
        let json: serde_json::Value = serde_json::from_slice(&bodies[0]).expect("json");
        assert_eq!(json["code"], json!(0), "{id}: {json}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM process").await,
        3 * n as i64
    );
    assert_eq!(
        env.count("SELECT count(*) FROM request_log").await,
        n as i64
    );
}

#[tokio::test]
async fn past_retention_a_request_id_is_processed_anew_and_its_row_replaced() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[("PROCINST_REQUEST_RETENTION_HOURS", "1")])
        .await;
    let client = env.client().await;
    client.send(&request("aged", 1, 10, "p", 2)).await;
    assert_eq!(
        client.replies(&env.reply_queue, 1).await[0].json["code"],
        json!(0)
    );
    // Two hours old: past retention, not yet pruned.
    env.db()
        .await
        .execute(
            "UPDATE request_log SET created_at = now() - interval '2 hours'",
            &[],
        )
        .await
        .expect("age the row");

    // The same request meets its own processes (bk-cmdb's answer to a
    // replay after retention), and nothing is stored for a failure.
    client.send(&request("aged", 1, 10, "p", 2)).await;
    assert_eq!(
        client.replies(&env.reply_queue, 1).await[0].json["code"],
        json!(1199014)
    );
    // Another meaning is not 1300001 any more: it is created, and its
    // reply replaces the old row.
    client.send(&request("aged", 1, 10, "q", 2)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
    let db = env.db().await;
    let row = db
        .query_one(
            "SELECT reply, created_at > now() - interval '1 hour' FROM request_log WHERE request_id = 'aged'",
            &[],
        )
        .await
        .expect("one row for the request_id");
    assert_eq!(row.get::<_, Vec<u8>>(0), reply.body);
    assert!(row.get::<_, bool>(1), "the row is the new one");
    assert_eq!(env.count("SELECT count(*) FROM process").await, 4);
}

/// Another writer commits a request while a worker decides the same
/// request in the gap between its reads (a frozen worker, a paused VM).
/// The gap is held open here by a lock on `process`: the worker's read of
/// existing processes waits for it, and the test commits the request's
/// rows (the ones a first worker wrote) in the transaction holding it.
/// Whatever the worker read before the wait, its answer must be the
/// stored reply, never 1199014 against the request's own processes.
#[tokio::test]
async fn a_request_committed_by_another_writer_between_the_reads_gets_its_stored_reply() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // One batch at a time, on a connection whose statements are prepared
    // by the first request: then only the reads themselves can wait.
    env.start_worker(&[("PROCINST_DB_POOL_SIZE", "2")]).await;
    let client = env.client().await;
    let body = request("gap-1", 1, 10, "p", 3);
    client.send(&body).await;
    let first = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(first.json["code"], json!(0), "{}", first.json);

    // The first writer's rows, kept aside, then gone: as if its commit
    // had not happened yet.
    let tables = [
        "process",
        "process_instance_relation",
        "audit_log",
        "request_log",
    ];
    let db = env.db().await;
    for table in tables {
        db.batch_execute(&format!(
            "CREATE TABLE kept_{table} AS SELECT * FROM {table}; DELETE FROM {table}"
        ))
        .await
        .expect("keep the first writer's rows");
    }

    db.batch_execute("BEGIN; LOCK TABLE process IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock process");
    client.send(&body).await;
    let waiting = "SELECT count(*) > 0 FROM pg_locks \
                   WHERE NOT granted AND relation = 'process'::regclass";
    let observer = env.db().await;
    assert!(
        eventually_true(&observer, WAIT, waiting).await,
        "the worker's round waits for the lock on process"
    );
    // The first writer commits: its processes and its stored reply at once.
    for table in tables {
        db.batch_execute(&format!("INSERT INTO {table} SELECT * FROM kept_{table}"))
            .await
            .expect("the first writer's rows");
    }
    db.batch_execute("COMMIT").await.expect("commit");

    let second = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(
        String::from_utf8_lossy(&second.body),
        String::from_utf8_lossy(&first.body),
        "the repeat gets the stored reply byte for byte"
    );
    assert_eq!(env.count("SELECT count(*) FROM process").await, 3);
}
