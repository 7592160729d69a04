//! Faults injected for real: SIGTERM and SIGKILL of worker processes, a TCP
//! proxy that cuts broker or database connections, terminated backends.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Client, Env, Worker, http_get, request};
use crate::proxy::Proxy;

#[tokio::test]
async fn sigterm_finishes_the_work_in_hand_and_exits_zero() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    for i in 0..300 {
        client
            .send(&request(&format!("term-{i}"), 1, 10, &format!("t{i}"), 2))
            .await;
    }
    env.worker(w).signal("TERM");
    let code = env.worker(w).wait_exit(Duration::from_secs(25)).await;
    assert_eq!(code, Some(0), "log:\n{}", env.worker(w).log());
    assert!(env.worker(w).log().contains("procinst stopped"));
    // What the first worker did not take, a second one finishes.
    env.start_worker(&[]).await;
    let replies = client.replies_by_id(&env.reply_queue, 300).await;
    assert_eq!(replies.len(), 300);
    assert_eq!(env.count("SELECT count(*) FROM process").await, 600);
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
async fn assert_exactly_once(env: &Env, client: &Client, n: usize, per_request: i64) {
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
    let (status, body) = http_get(&format!("{base}/metrics")).await.expect("metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"procinst_requests_total{outcome="created",code="0"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"procinst_requests_total{outcome="rejected",code="1199019"} 1"#),
        "{body}"
    );
    assert!(
        body.contains("procinst_processes_created_total 3"),
        "{body}"
    );
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.depth(&env.dead_queue).await, 1);
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
        let marker = format!("procinst worker {pid}\"");
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
async fn a_message_redelivered_past_the_limit_is_dead_lettered_by_the_broker() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicNackOptions};
    let mut env = Env::new().await;
    let w = env.start_worker(&[("PROCINST_DELIVERY_LIMIT", "2")]).await;
    // Stop the worker, keeping the topology it declared; a stand-in
    // consumer then fails the message every time, like a crash loop.
    env.worker(w).signal("TERM");
    assert_eq!(
        env.worker(w).wait_exit(Duration::from_secs(25)).await,
        Some(0)
    );
    let client = env.client().await;
    client.send(&request("looping", 1, 10, "l", 1)).await;
    let channel = client.connection.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            env.request_queue.as_str().into(),
            "crashy".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .expect("consume");
    for _ in 0..3 {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
        else {
            break;
        };
        delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .expect("nack");
    }
    assert!(
        client.settles_at(&env.dead_queue, 1).await,
        "dead-lettered by the delivery limit"
    );
    let listed = env.procinst_with(
        &["dlq", "list", "--json"],
        None,
        &[("PROCINST_DELIVERY_LIMIT", "2")],
    );
    let row: serde_json::Value = serde_json::from_slice(&listed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&listed.stderr)));
    assert_eq!(row["request_id"], json!("looping"));
    assert_eq!(row["reason"], json!("delivery_limit"));
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
