//! The linger is an upper bound: a batch leaves as soon as the database has
//! no batch to work on, and gathers for as long as it has one.

use std::time::{Duration, Instant};

use crate::helpers::{Env, request};

/// Far longer than any test waits: a batch that leaves before it did not
/// wait for its linger.
const LINGER_MS: &str = "30000";

#[tokio::test]
async fn a_lone_request_does_not_wait_for_the_linger_when_the_database_is_idle() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[("PROCINST_BATCH_LINGER_MS", LINGER_MS)])
        .await;
    let client = env.client().await;
    let sent = Instant::now();
    client.send(&request("alone-1", 1, 10, "a", 2)).await;
    let reply = &client.replies(&env.reply_queue, 1).await[0];
    assert_eq!(reply.json["code"], 0, "{}", reply.json);
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "answered after {:?}, not at once",
        sent.elapsed()
    );
}

#[tokio::test]
async fn while_the_database_is_busy_the_next_batch_gathers_and_leaves_once_it_is_free() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env
        .start_worker(&[("PROCINST_BATCH_LINGER_MS", LINGER_MS)])
        .await;
    let client = env.client().await;
    let held = env.hold_process_writes().await;

    // The first request finds the database idle and goes alone; its write
    // waits for the lock.
    client.send(&request("busy-0", 1, 10, "b0", 1)).await;
    env.worker(w).wait_for_batches(1.0).await;

    // The rest arrive while it writes: they gather into one batch.
    let n = 30;
    let rest = (1..=n).map(|i| request(&format!("busy-{i}"), 1, 10, &format!("b{i}"), 1));
    client.send_all_taken(&env.request_queue, rest).await;
    assert_eq!(
        env.worker(w).batches().await,
        1.0,
        "nothing else left while the database was busy"
    );

    held.batch_execute("COMMIT").await.expect("release process");
    let released = Instant::now();
    let replies = client.replies_by_id(&env.reply_queue, n + 1).await;
    assert!(replies.values().all(|r| r.json["code"] == 0));
    assert!(
        released.elapsed() < Duration::from_secs(10),
        "the gathered batch left once the database was free, not after its linger: {:?}",
        released.elapsed()
    );
    assert_eq!(
        env.worker(w).batches().await,
        2.0,
        "the {n} that waited went as one batch"
    );
}
