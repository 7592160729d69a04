//! The database misbehaving: lost races, an outage behind a proxy,
//! terminated backends, a row it rejects.

use std::time::Duration;

use serde_json::json;

use super::{assert_exactly_once, burst, contend_on};
use crate::helpers::{Env, http_get, request};
use crate::proxy::Proxy;

#[tokio::test]
async fn a_batch_that_keeps_losing_races_goes_back_without_stalling_the_batches_behind_it() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    contend_on(&env, "hot-0").await;
    // One request per batch, and a limit high enough that the broker keeps
    // the contended request for the whole test.
    let w = env
        .start_worker(&[
            ("PROCINST_BATCH_SIZE", "1"),
            ("PROCINST_DELIVERY_LIMIT", "1000"),
        ])
        .await;
    let client = env.client().await;
    client.send(&request("hot", 1, 10, "hot", 1)).await;
    env.worker(w).wait_for_log("contended").await;
    for i in 0..5 {
        client
            .send(&request(&format!("behind-{i}"), 1, 10, &format!("b{i}"), 1))
            .await;
    }
    let behind = client.replies_by_id(&env.reply_queue, 5).await;
    assert!(
        (0..5).all(|i| behind[&format!("behind-{i}")].json["code"] == json!(0)),
        "the batches behind are written: {behind:?}"
    );

    env.db()
        .await
        .execute("DELETE FROM contend", &[])
        .await
        .expect("end the contention");
    let hot = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(hot.json["request_id"], json!("hot"), "nothing is lost");
    assert_eq!(hot.json["code"], json!(0));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 6);
    let log = env.worker(w).log();
    assert!(
        !log.contains("database unavailable"),
        "a lost race reads as contention, not as an outage: {log}"
    );
}

#[tokio::test]
async fn a_database_outage_pauses_the_worker_which_then_goes_on() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = format!("postgres://postgres@{}/{}", proxy.addr, env.database);
    let w = env
        .start_worker(&[
            ("DATABASE_URL", &url),
            ("PROCINST_PREFETCH", "64"),
            ("PROCINST_BATCH_SIZE", "32"),
        ])
        .await;
    let client = env.client().await;
    burst(&client, "dbout", 400, 100, || proxy.outage()).await;
    let ready = format!("http://{}/readyz", env.worker(w).http);
    let (status, reason) = http_get(&ready).await.expect("readyz answers");
    assert_eq!(
        status, 503,
        "not ready while the database is down: {reason}"
    );
    assert!(
        client.depth(&env.request_queue).await > 0,
        "messages are kept, not answered with errors"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    assert_exactly_once(&env, &client, 400, 2).await;
    env.worker(w).wait_ready().await;
}

#[tokio::test]
async fn terminated_backends_mid_burst_are_retried() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let admin = crate::helpers::connect(crate::helpers::PG_ADMIN_URL).await;
    let database = env.database.clone();
    for i in 0..500 {
        client
            .send(&request(
                &format!("term-be-{i}"),
                1,
                10,
                &format!("tb{i}"),
                2,
            ))
            .await;
        if i % 125 == 60 {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'procinst'",
                    &[&database],
                )
                .await
                .expect("terminate backends");
        }
    }
    assert_exactly_once(&env, &client, 500, 2).await;
}

#[tokio::test]
async fn a_request_the_database_rejects_is_isolated_and_dead_lettered() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // A rule the worker does not know, enforced by the database alone.
    env.db()
        .await
        .batch_execute(
            "CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.bk_process_name = 'poison-0' THEN \
               RAISE EXCEPTION 'poisoned row' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER reject_poison BEFORE INSERT ON process \
               FOR EACH ROW EXECUTE FUNCTION reject_poison();",
        )
        .await
        .expect("create trigger");
    env.start_worker(&[("PROCINST_BATCH_LINGER_MS", "300")])
        .await;
    let client = env.client().await;
    for i in 0..12 {
        let prefix = if i == 5 {
            "poison".to_owned()
        } else {
            format!("ok{i}")
        };
        client
            .send(&request(&format!("poison-{i}"), 1, 10, &prefix, 1))
            .await;
    }
    let replies = client.replies_by_id(&env.reply_queue, 11).await;
    assert!(!replies.contains_key("poison-5"));
    assert!(
        replies.values().all(|r| r.json["code"] == json!(0)),
        "the neighbours are answered"
    );
    assert!(client.settles_at(&env.dead_queue, 1).await);
    let listed = env.procinst(&["dlq", "list", "--json"], None);
    let row: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one json row");
    assert_eq!(row["request_id"], json!("poison-5"));
    assert_eq!(row["reason"], json!("store_rejected"));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 11);
}

/// The server refusing the COPY of processes before it starts: here the
/// database turned read-only, as a primary does when it becomes a standby,
/// so the id allocation before the COPY fails and the COPY is refused in
/// the aborted transaction. That is the database's trouble: the batch is
/// kept and retried, the connection it happened on (which tokio-postgres
/// leaves expecting one reply too few, and which would stay read-only) is
/// closed rather than reused, and once the cause is gone every request is
/// answered once.
#[tokio::test]
async fn a_copy_the_server_refuses_to_start_is_retried_on_a_fresh_connection() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let db = env.db().await;
    let w = env.start_worker(&[]).await;
    // The worker's sessions begun from now on are read-only.
    set_read_only(&db, &env.database, true).await;
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'procinst'",
        &[&env.database],
    )
    .await
    .expect("end the worker's sessions");
    let client = env.client().await;
    for i in 0..20 {
        client
            .send(&request(
                &format!("refused-{i}"),
                1,
                10,
                &format!("rf{i}"),
                2,
            ))
            .await;
    }
    env.worker(w)
        .wait_for_log("cannot execute nextval() in a read-only transaction")
        .await;
    let ready = format!("http://{}/readyz", env.worker(w).http);
    let (status, reason) = http_get(&ready).await.expect("readyz answers");
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("SQLSTATE 25006"), "{reason}");
    assert_eq!(env.count("SELECT count(*) FROM process").await, 0);

    // Only sessions begun from now on are writable again.
    set_read_only(&db, &env.database, false).await;
    assert_exactly_once(&env, &client, 20, 2).await;
    let log = env.worker(w).log();
    assert!(
        !log.contains("unexpected message from server"),
        "no connection is reused after a refused COPY: {log}"
    );
}

/// Makes the sessions begun on `database` from now on read-only, or not.
async fn set_read_only(db: &tokio_postgres::Client, database: &str, on: bool) {
    let setting = if on {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    db.batch_execute(&format!("ALTER DATABASE \"{database}\" {setting}"))
        .await
        .expect("ALTER DATABASE default_transaction_read_only");
}
