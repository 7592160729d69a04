//! Faults injected for real: SIGTERM and SIGKILL of worker processes, a TCP
//! proxy that cuts broker or database connections, terminated backends.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Client, Env, Worker, http_get, request};
use crate::proxy::Proxy;

#[tokio::test]
async fn sigterm_answers_everything_received_including_a_batch_being_gathered() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // A batch gathers for 20 s: at SIGTERM one is still being gathered.
    let w = env
        .start_worker(&[("PROCINST_BATCH_LINGER_MS", "20000")])
        .await;
    let client = env.client().await;
    let n = 50;
    for i in 0..n {
        client
            .send(&request(&format!("term-{i}"), 1, 10, &format!("t{i}"), 2))
            .await;
    }
    assert!(
        client.settles_at(&env.request_queue, 0).await,
        "every request reached the worker"
    );
    env.worker(w).signal("TERM");
    // Well before the linger is over, and no other worker helps.
    let code = env.worker(w).wait_exit(Duration::from_secs(10)).await;
    let log = env.worker(w).log();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(
        log.contains(&format!("answered={n}")),
        "the stop line counts every request: {log}"
    );
    let replies = client.replies_by_id(&env.reply_queue, n).await;
    assert!(replies.values().all(|r| r.json["code"] == json!(0)));
    assert_eq!(
        env.count("SELECT count(*) FROM process").await,
        2 * n as i64
    );
    assert_eq!(
        client.depth(&env.request_queue).await,
        0,
        "nothing was left unacknowledged for redelivery"
    );
}

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

async fn wait_for_log(env: &mut Env, w: usize, text: &str) {
    let deadline = std::time::Instant::now() + crate::helpers::WAIT;
    while !env.worker(w).log().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            env.worker(w).log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    wait_for_log(&mut env, w, "contended").await;
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
async fn kill_9_mid_burst_then_restart_creates_everything_exactly_once() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    let n = 2000;
    for i in 0..n {
        client
            .send(&request(&format!("kill-{i}"), 1, 10, &format!("k{i}"), 4))
            .await;
        if i == n / 3 {
            env.worker(w).kill();
        }
    }
    env.start_worker(&[]).await;
    assert_exactly_once(&env, &client, n, 4).await;
}

/// Sends `n` requests of 2 processes, calling `fault` once after `at` of them.
pub(crate) async fn burst(
    client: &Client,
    prefix: &str,
    n: usize,
    at: usize,
    mut fault: impl FnMut(),
) {
    for i in 0..n {
        client
            .send(&request(
                &format!("{prefix}-{i}"),
                1,
                10,
                &format!("{prefix}{i}"),
                2,
            ))
            .await;
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
async fn three_workers_with_one_killed_and_restarted_create_exactly_once() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    env.start_worker(&[]).await;
    let victim = env.start_worker(&[]).await;
    let client = env.client().await;
    let n = 900;
    for i in 0..n {
        client
            .send(&request(&format!("three-{i}"), 1, 10, &format!("th{i}"), 2))
            .await;
        if i == n / 3 {
            env.worker(victim).kill();
        }
        if i == 2 * n / 3 {
            let replacement = Worker::spawn(&env, &[]);
            *env.worker(victim) = replacement;
        }
    }
    assert_exactly_once(&env, &client, n, 2).await;
}

#[tokio::test]
async fn metrics_and_health_endpoints_report_the_work() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("m-1", 1, 10, "m", 3)).await;
    client.send(&request("m-2", 404, 10, "m", 1)).await;
    client.replies(&env.reply_queue, 2).await;
    let base = format!("http://{}", env.worker(w).http);
    assert_eq!(
        http_get(&format!("{base}/healthz")).await.map(|r| r.0),
        Some(200)
    );
    // Counters are bumped after the ack, a moment after the reply is out.
    let expected = [
        r#"procinst_requests_total{outcome="created",code="0"} 1"#,
        r#"procinst_requests_total{outcome="rejected",code="1199019"} 1"#,
        "procinst_processes_created_total 3",
        "procinst_batch_seconds_bucket",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(&format!("{base}/metrics")).await.expect("metrics");
        assert_eq!(status, 200);
        if expected.iter().all(|line| body.contains(line)) {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{expected:?} in {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("procinst_batch_seconds_bucket"), "{body}");
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

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_sigint_stops_cleanly() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env
        .start_worker(&[
            ("PROCINST_LOG_FORMAT", "json"),
            ("RUST_LOG", "procinst=debug"),
        ])
        .await;
    let client = env.client().await;
    client.send(&request("json-1", 1, 10, "j", 1)).await;
    client.replies(&env.reply_queue, 1).await;
    // SIGINT takes the same graceful path as SIGTERM.
    env.worker(w).signal("INT");
    assert_eq!(
        env.worker(w).wait_exit(Duration::from_secs(25)).await,
        Some(0)
    );
    let log = env.worker(w).log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["request_id"] == json!("json-1"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == json!("procinst starting"))
    );
    let stopped = lines
        .iter()
        .find(|l| l["fields"]["message"] == json!("procinst stopped"))
        .expect("a summary at shutdown");
    assert_eq!(stopped["fields"]["answered"], json!(1));
}

#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_is_noticed_and_resubscribed() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    client
        .channel
        .queue_delete(env.request_queue.as_str().into(), Default::default())
        .await
        .expect("delete the request queue under the worker");
    // The worker reconnects, declares the queue again and consumes it.
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ch = client.connection.create_channel().await.expect("channel");
        let declared = ch
            .queue_declare(
                env.request_queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await;
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
    client.send(&request("after-cancel", 1, 10, "c", 1)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
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
    let metrics = format!("http://{}/metrics", env.worker(w).http);
    let deadline = sent + crate::helpers::WAIT;
    loop {
        let (_, text) = http_get(&metrics).await.expect("metrics");
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
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

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
