//! RabbitMQ's resource alarms (disk and memory) mid-burst: the broker
//! blocks every publishing connection of the cluster, so the worker cannot
//! publish replies. It takes no new work, says why on `/readyz`, keeps what
//! it holds unacked, and goes on by itself when the alarm clears, with
//! nothing lost or duplicated.
//!
//! An alarm blocks every publisher of the broker, so these tests run on the
//! RabbitMQ 4 cluster with the other cluster tests, one at a time:
//! `cargo test --test it -- --ignored --test-threads=1`.

use std::time::{Duration, Instant};

use crate::faults::{assert_exactly_once, burst};
use crate::helpers::{Env, WAIT, http_get, metric};
use crate::support::rabbitmq4::{Alarm, NODES, cluster_url};

/// Requests in the burst: many more than the worker has in flight when
/// it is blocked, with small batches.
const BURST: usize = 600;
/// How long an alarm is held once the worker is blocked: a short one, and
/// one longer than the 30 s the worker waits for confirms when not blocked.
const SHORT: Duration = Duration::from_secs(4);
const LONGER_THAN_CONFIRMS: Duration = Duration::from_secs(35);

#[tokio::test]
#[ignore = "needs the RabbitMQ 4 cluster: tests/infra/rabbitmq4.sh up"]
async fn a_disk_alarm_mid_burst_pauses_the_worker_which_goes_on_when_it_clears() {
    blocked_mid_burst("disk", SHORT).await;
}

#[tokio::test]
#[ignore = "needs the RabbitMQ 4 cluster: tests/infra/rabbitmq4.sh up"]
async fn a_memory_alarm_longer_than_the_confirm_timeout_ends_no_session() {
    blocked_mid_burst("memory", LONGER_THAN_CONFIRMS).await;
}

async fn blocked_mid_burst(kind: &str, hold: Duration) {
    let mut env = Env::on_broker(&cluster_url()).await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env
        .start_worker(&[("PROCINST_BATCH_SIZE", "20"), ("PROCINST_PREFETCH", "100")])
        .await;
    let client = env.client().await;
    // The burst waits at the database while the alarm is raised, so that
    // the worker meets it with work in hand.
    let held = env.hold_process_writes().await;
    burst(&client, "alarm", BURST, BURST, || ()).await;
    env.worker(w).wait_for_batches(1.0).await;
    let alarm = Alarm::raise(&NODES[1], kind).await;
    held.batch_execute("COMMIT").await.expect("release process");

    let http = env.worker(w).http.clone();
    let ready = format!("http://{http}/readyz");
    let deadline = Instant::now() + WAIT;
    let reason = loop {
        if let Some((503, body)) = http_get(&ready).await
            && body.contains("RabbitMQ blocks publishing")
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the worker reports the alarm; log:\n{}",
            env.worker(w).log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("FIGURE /readyz while blocked: {}", reason.trim());

    // Blocked: no new work is taken, and what is held stays unacked
    // (batches handed on before the block may still start a moment later).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let batches = env.worker(w).batches().await;
    let written = env.count("SELECT count(*) FROM request_log").await;
    tokio::time::sleep(hold).await;
    let page = env.worker(w).metrics().await;
    assert_eq!(metric(&page, "procinst_broker_blocked"), 1.0);
    assert!(
        metric(&page, "procinst_in_flight_deliveries") > 0.0,
        "the worker holds its deliveries unacked"
    );
    assert_eq!(
        env.worker(w).batches().await,
        batches,
        "no batch is taken while blocked"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM request_log").await,
        written,
        "nothing more is written while blocked"
    );
    assert!(
        (written as usize) < BURST,
        "the alarm came mid-burst: {written} of {BURST} written"
    );

    alarm.clear().await;
    let duplicates = assert_exactly_once(&env, &client, BURST, 2).await;
    let page = env.worker(w).metrics().await;
    assert_eq!(metric(&page, "procinst_broker_blocked"), 0.0);
    let blocked_for = metric(&page, "procinst_broker_blocked_seconds_total");
    assert!(
        blocked_for >= hold.as_secs_f64() - 1.0,
        "the time blocked is counted: {blocked_for} s"
    );
    assert_eq!(
        metric(&page, "procinst_reconnects_total"),
        0.0,
        "the session outlived the alarm; log:\n{}",
        env.worker(w).log()
    );
    env.worker(w).wait_ready().await;
    assert_eq!(
        client.depth(&env.dead_queue).await,
        0,
        "nothing dead-lettered"
    );
    eprintln!(
        "FIGURE {kind} alarm: {written} of {BURST} written before it, blocked {blocked_for} s, {duplicates} duplicate replies"
    );
}
