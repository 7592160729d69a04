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
    client
        .channel
        .queue_declare(
            env.request_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            request_queue_arguments(&env, 3),
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

/// The request queue's arguments as contract section 1 gives them.
fn request_queue_arguments(env: &Env, delivery_limit: i64) -> FieldTable {
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
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(delivery_limit),
    );
    args
}

/// Whether RabbitMQ finds `args` equivalent to the request queue's: a
/// declaration with other arguments is refused (PRECONDITION_FAILED).
async fn request_queue_has(env: &Env, client: &crate::helpers::Client, args: FieldTable) -> bool {
    let channel = client.connection.create_channel().await.expect("channel");
    let declared = channel
        .queue_declare(
            env.request_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await;
    if declared.is_ok() {
        let _ = channel.close(200, "bye".into()).await;
    }
    declared.is_ok()
}

#[tokio::test]
async fn declaring_the_topology_twice_is_idempotent() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    // The second worker declares everything again and starts consuming.
    env.start_worker(&[]).await;
    let client = env.client().await;
    assert!(
        request_queue_has(&env, &client, request_queue_arguments(&env, 10)).await,
        "the request queue keeps the contract's arguments"
    );
    assert!(
        !request_queue_has(&env, &client, request_queue_arguments(&env, 3)).await,
        "the check tells arguments apart"
    );
    // And it still dead-letters into the DLX, bound to the dead queue.
    client
        .channel
        .basic_publish(
            env.dlx.as_str().into(),
            env.dead_queue.as_str().into(),
            Default::default(),
            b"probe",
            Default::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(client.settles_at(&env.dead_queue, 1).await);
}
