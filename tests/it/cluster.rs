//! A worker given all three nodes of a RabbitMQ 4 cluster keeps answering
//! every request exactly once while nodes stop under it mid-burst: the node
//! it is connected to, the node that leads the request queue, and each node
//! in turn. Each test prints how long answering stalled and how many
//! deliveries came again.
//!
//! They need the cluster of `tests/infra/rabbitmq4.sh up`; CI runs them with
//! `cargo test --test it cluster:: -- --ignored --test-threads=1`.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use crate::faults::assert_exactly_once;
use crate::helpers::{Client, Env, WAIT, request};
use crate::support::load::{Sampler, Stall};
use crate::support::rabbitmq4::{
    NODES, Outage, close_worker_connection, cluster_url, queue_leader, worker_node, worker_node_now,
};

/// Steady load before the first fault.
const WARMUP: Duration = Duration::from_secs(2);
/// How long a stopped node stays down.
const DOWN: Duration = Duration::from_secs(5);
/// Requests sent after the faults are over, to see the worker go on.
const TAIL: usize = 200;

#[tokio::test]
#[ignore = "needs the RabbitMQ 4 cluster: tests/infra/rabbitmq4.sh up"]
async fn stopping_the_node_the_worker_is_on_moves_it_to_another_and_loses_nothing() {
    let (mut env, w) = cluster_env().await;
    let outage = Outage::default();
    let pid = env.worker(w).child.id();
    let victim = worker_node(pid).await;
    let sampler = Sampler::start(&env.worker(w).http);
    let fault = async {
        tokio::time::sleep(WARMUP).await;
        let at = sampler.now();
        outage.stop(victim).await;
        tokio::time::sleep(DOWN).await;
        let moved_to = worker_node(pid).await;
        outage.start(victim).await;
        vec![(
            format!("stop_app {} (the worker's node)", victim.name),
            at,
            moved_to,
        )]
    };
    let (n, faults) = under_load(&env, "on", fault).await;
    for (_, _, moved_to) in &faults {
        assert_ne!(*moved_to, victim, "the worker went on to another node");
    }
    assert!(
        !env.worker(w).log().contains("broker unavailable"),
        "the worker went straight to a live node, not back to the lost one; log:\n{}",
        env.worker(w).log()
    );
    let events = faults.into_iter().map(|(what, at, _)| (what, at)).collect();
    finish(&mut env, w, n, &sampler, events).await;
}

#[tokio::test]
#[ignore = "needs the RabbitMQ 4 cluster: tests/infra/rabbitmq4.sh up"]
async fn stopping_the_request_queues_leader_loses_nothing() {
    let (mut env, w) = cluster_env().await;
    let outage = Outage::default();
    let pid = env.worker(w).child.id();
    let leader = queue_leader(&env.request_queue).await;
    if worker_node(pid).await == leader {
        // Keep this test about the leader alone: move the worker off it.
        close_worker_connection(pid).await;
        wait_until(|| async { worker_node_now(pid).await.is_some_and(|n| n != leader) }).await;
    }
    let on = worker_node(pid).await;
    let sampler = Sampler::start(&env.worker(w).http);
    let fault = async {
        tokio::time::sleep(WARMUP).await;
        let at = sampler.now();
        outage.stop(leader).await;
        tokio::time::sleep(DOWN).await;
        outage.start(leader).await;
        vec![(
            format!(
                "stop_app {} (the request queue's leader; worker on {})",
                leader.name, on.name
            ),
            at,
        )]
    };
    let (n, events) = under_load(&env, "lead", fault).await;
    assert_eq!(worker_node(pid).await, on, "the worker kept its connection");
    finish(&mut env, w, n, &sampler, events).await;
}

#[tokio::test]
#[ignore = "needs the RabbitMQ 4 cluster: tests/infra/rabbitmq4.sh up"]
async fn a_rolling_restart_of_all_three_nodes_loses_nothing() {
    let (mut env, w) = cluster_env().await;
    let outage = Outage::default();
    let sampler = Sampler::start(&env.worker(w).http);
    let fault = async {
        tokio::time::sleep(WARMUP).await;
        let mut events = Vec::new();
        for node in &NODES {
            events.push((format!("restart {}", node.name), sampler.now()));
            outage.stop(node).await;
            outage.start(node).await;
            // Let the restarted member catch up before its neighbour goes.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        events
    };
    let (n, events) = under_load(&env, "roll", fault).await;
    finish(&mut env, w, n, &sampler, events).await;
}

/// A database and queues of the test's own, and a worker given all nodes.
async fn cluster_env() -> (Env, usize) {
    let mut env = Env::on_broker(&cluster_url()).await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[("PROCINST_DELIVERY_LIMIT", "10")]).await;
    (env, w)
}

/// Sends requests of 2 processes at a steady pace while `fault` runs, and
/// [`TAIL`] more after it; how many were sent, and what `fault` returned.
/// The sending client moves to another node when its node goes away, and
/// sends again what was not confirmed.
async fn under_load<T>(env: &Env, prefix: &str, fault: impl Future<Output = T>) -> (usize, T) {
    let done = AtomicBool::new(false);
    let send = async {
        let mut client: Option<Client> = None;
        let mut sent = 0;
        let mut tail = None;
        loop {
            let body = serde_json::to_vec(&request(
                &format!("{prefix}-{sent}"),
                1,
                10,
                &format!("{prefix}{sent}"),
                2,
            ))
            .expect("json");
            send_surely(env, &mut client, &body).await;
            sent += 1;
            if done.load(Ordering::Relaxed) && tail.is_none() {
                tail = Some(sent + TAIL);
            }
            if tail.is_some_and(|t| sent >= t) {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let fault = async {
        let out = fault.await;
        done.store(true, Ordering::Relaxed);
        out
    };
    tokio::join!(send, fault)
}

/// Publishes `body` until a node confirms it, reconnecting as needed.
async fn send_surely(env: &Env, client: &mut Option<Client>, body: &[u8]) {
    let attempts = async {
        loop {
            if client.is_none() {
                *client = Some(env.client().await);
            }
            let Some(c) = client.as_ref() else { continue };
            let sent = c.try_publish_to(&env.request_queue, body, Default::default());
            match tokio::time::timeout(Duration::from_secs(10), sent).await {
                Ok(Ok(true)) => return,
                _ => {
                    *client = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, attempts)
        .await
        .expect("a request is confirmed by some node within WAIT");
}

/// Checks the outcome and prints the figures.
async fn finish(env: &mut Env, w: usize, n: usize, sampler: &Sampler, events: Vec<(String, f64)>) {
    let client = env.client().await;
    let duplicates = assert_exactly_once(env, &client, n, 2).await;
    let samples = sampler.stop();
    assert!(
        env.worker(w).child.try_wait().expect("try_wait").is_none(),
        "the worker is alive; log:\n{}",
        env.worker(w).log()
    );
    assert_eq!(
        client.depth(&env.dead_queue).await,
        0,
        "nothing dead-lettered"
    );
    let ends: Vec<f64> = events
        .iter()
        .skip(1)
        .map(|(_, at)| *at)
        .chain([f64::INFINITY])
        .collect();
    for ((what, at), until) in events.iter().zip(ends) {
        let Stall {
            seconds,
            resumed_at,
        } = Stall::longest(&samples, *at, until);
        eprintln!(
            "FIGURE {what}: answering stalled at most {seconds:.2} s (resumed {:.2} s after the fault began)",
            resumed_at - at
        );
    }
    eprintln!(
        "FIGURE {n} requests: {} redelivered (worker metric), {duplicates} duplicate replies, {} reconnects",
        samples.last().map(|s| s.redelivered).unwrap_or(0),
        samples.last().map(|s| s.reconnects).unwrap_or(0),
    );
}

async fn wait_until<F: Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let polled = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::time::timeout(WAIT, polled)
        .await
        .expect("condition met within WAIT");
}
