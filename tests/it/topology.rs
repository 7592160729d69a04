use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
};

use crate::helpers::{Env, Worker};

#[tokio::test]
async fn a_request_queue_with_other_arguments_stops_the_worker_and_is_left_alone() {
    let env = Env::new().await;
    let client = env.client().await;
    // The contract's arguments, but for the delivery limit.
    let mut args = FieldTable::default();
    for (key, value) in [
        ("x-queue-type", "quorum".to_owned()),
        ("x-dead-letter-exchange", env.dlx.clone()),
        ("x-dead-letter-routing-key", env.dead_queue.clone()),
        ("x-dead-letter-strategy", "at-least-once".to_owned()),
        ("x-overflow", "reject-publish".to_owned()),
    ] {
        args.insert(key.into(), AMQPValue::LongString(value.as_str().into()));
    }
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(3));
    client
        .channel
        .queue_declare(
            env.request_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("pre-declare");
    client.send(&serde_json::json!({"keep": "me"})).await;

    let mut worker = Worker::spawn(&env, &[]);
    let code = worker.wait_exit(std::time::Duration::from_secs(30)).await;
    assert_ne!(code, Some(0), "exit non-zero");
    let log = worker.log();
    assert!(log.contains(&env.request_queue), "names the queue: {log}");
    assert!(
        log.contains("x-delivery-limit"),
        "names the argument: {log}"
    );
    assert_eq!(
        client.depth(&env.request_queue).await,
        1,
        "queue and message untouched"
    );
}

#[tokio::test]
async fn declaring_the_topology_twice_is_idempotent() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    assert_eq!(client.depth(&env.dead_queue).await, 0);
}
