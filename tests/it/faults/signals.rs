//! The worker's process signalled or killed, with traffic on both lanes:
//! SIGTERM answers what it holds, SIGKILL and a restart lose and duplicate
//! nothing.

use std::time::Duration;

use serde_json::json;

use super::assert_exactly_once;
use crate::helpers::{Env, Worker, request};

#[tokio::test]
async fn sigterm_answers_everything_received_including_a_batch_being_gathered() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // While the database holds the first batch, the rest gather for up to
    // 20 s: at SIGTERM one batch is writing and one is being gathered.
    let w = env
        .start_worker(&[("PROCINST_BATCH_LINGER_MS", "20000")])
        .await;
    let client = env.client().await;
    let held = env.hold_process_writes().await;
    client.send(&request("term-0", 1, 10, "t0", 2)).await;
    env.worker(w).wait_for_batches(1.0).await;
    let n = 50;
    for i in 1..n {
        let body = request(&format!("term-{i}"), 1, 10, &format!("t{i}"), 2);
        client.send_on_both(i, &body).await;
    }
    for queue in [env.request_queue.clone(), env.bulk_queue()] {
        assert!(
            client.settles_at(&queue, 0).await,
            "every request reached the worker on {queue}"
        );
    }
    env.worker(w).signal("TERM");
    env.worker(w)
        .wait_for_log("finishing the batches in flight")
        .await;
    held.batch_execute("COMMIT").await.expect("release process");
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
    for queue in [env.request_queue.clone(), env.bulk_queue()] {
        assert_eq!(
            client.depth(&queue).await,
            0,
            "nothing was left unacknowledged on {queue} for redelivery"
        );
    }
}

#[tokio::test]
async fn kill_9_mid_burst_then_restart_creates_everything_exactly_once() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    let n = 2000;
    for i in 0..n {
        let body = request(&format!("kill-{i}"), 1, 10, &format!("k{i}"), 4);
        client.send_on_both(i, &body).await;
        if i == n / 3 {
            env.worker(w).kill();
        }
    }
    env.start_worker(&[]).await;
    assert_exactly_once(&env, &client, n, 4).await;
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
        let body = request(&format!("three-{i}"), 1, 10, &format!("th{i}"), 2);
        client.send_on_both(i, &body).await;
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
