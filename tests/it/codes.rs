//! Every code of contract section 4, through the real queue path.

use serde_json::{Value, json};

use crate::helpers::{Env, metric, request};

async fn answers(env: &mut Env, cases: Vec<(&str, Value, i64)>) {
    let client = env.client().await;
    for (_, body, _) in &cases {
        client.send(body).await;
    }
    let replies = client.replies_by_id(&env.reply_queue, cases.len()).await;
    for (name, body, code) in &cases {
        let id = body["request_id"].as_str().expect("request_id");
        let reply = &replies[id];
        assert_eq!(reply.json["code"], json!(code), "{name}: {}", reply.json);
        assert_eq!(reply.json["result"], json!(*code == 0), "{name}");
        if *code != 0 {
            assert_eq!(reply.json["data"], json!(null), "{name}");
            assert!(
                reply.json["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{name}"
            );
        }
    }
}

fn with(mut body: Value, path: &[&str], value: Value) -> Value {
    let mut target = &mut body;
    for key in &path[..path.len() - 1] {
        target = if let Ok(i) = key.parse::<usize>() {
            &mut target[i]
        } else {
            &mut target[*key]
        };
    }
    target[path[path.len() - 1]] = value;
    body
}

#[tokio::test]
async fn every_code_of_the_contract_reaches_the_requester() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.service_instance(2, 10, "0", 55, 1).await; // from a template
    env.service_instance(3, 10, "tenant-b", 0, 1).await;
    let ok = |id: &str, prefix: &str| request(id, 1, 10, prefix, 1);
    let mut missing_biz = ok("c-1199010", "a");
    missing_biz
        .as_object_mut()
        .expect("object")
        .remove("bk_biz_id");
    let mut missing_name = ok("c-1199010-name", "a");
    missing_name["processes"][0]["process_info"]
        .as_object_mut()
        .expect("object")
        .remove("bk_process_name");
    let too_many = request("c-1199035", 1, 10, "many", 101);
    let cases = vec![
        ("created", ok("c-0", "created"), 0),
        (
            "biz as string",
            with(ok("c-1199000", "a"), &["bk_biz_id"], json!("10")),
            1199000,
        ),
        (
            "processes not array",
            with(ok("c-1199000-p", "a"), &["processes"], json!({})),
            1199000,
        ),
        ("missing bk_biz_id", missing_biz, 1199010),
        ("missing bk_process_name", missing_name, 1199010),
        (
            "empty processes",
            with(ok("c-1199011-empty", "a"), &["processes"], json!([])),
            1199011,
        ),
        (
            "biz zero",
            with(ok("c-1199011-biz", "a"), &["bk_biz_id"], json!(0)),
            1199011,
        ),
        (
            "bad port",
            with(
                ok("c-1199011-port", "a"),
                &["processes", "0", "process_info", "bind_info", "0", "port"],
                json!("0"),
            ),
            1199011,
        ),
        (
            "NUL",
            with(
                ok("c-1199011-nul", "a"),
                &["processes", "0", "process_info", "start_cmd"],
                json!("a\u{0}b"),
            ),
            1199011,
        ),
        ("too many", too_many, 1199035),
        (
            "unknown instance",
            request("c-1199019", 404, 10, "a", 1),
            1199019,
        ),
        (
            "other supplier",
            request("c-1199019-supplier", 3, 10, "a", 1),
            1199019,
        ),
        (
            "other business",
            request("c-1199006", 1, 11, "a", 1),
            1199006,
        ),
        ("template", request("c-1108035", 2, 10, "a", 1), 1108035),
        ("duplicate of created", ok("c-1199014", "created"), 1199014),
    ];
    // Small enough for 1300002 to be cheap, large enough for 101 processes.
    env.start_worker(&[("PROCINST_MAX_BODY_BYTES", "100000")])
        .await;
    answers(&mut env, cases).await;
    assert_eq!(env.count("SELECT count(*) FROM process").await, 1);

    // 1300001: c-0 again, with another meaning (the same id cannot share
    // the reply map above).
    answers(
        &mut env,
        vec![(
            "request_id reused",
            request("c-0", 1, 10, "other", 1),
            1300001,
        )],
    )
    .await;
    // 1300002: larger than PROCINST_MAX_BODY_BYTES; not parsed, so the
    // request_id comes from message_id.
    let mut large = ok("c-1300002", "a");
    large["padding"] = json!("x".repeat(150_000));
    let client = env.client().await;
    client
        .publish(
            &serde_json::to_vec(&large).expect("json"),
            lapin::BasicProperties::default().with_message_id("c-1300002".into()),
        )
        .await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["request_id"], json!("c-1300002"));
    assert_eq!(reply.json["code"], json!(1300002), "{}", reply.json);
    assert_eq!(env.count("SELECT count(*) FROM process").await, 1);
}

#[tokio::test]
async fn the_first_problem_is_named_with_its_path() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let mut body = request("path-1", 1, 10, "p", 3);
    body["processes"][2]["process_info"]["bind_info"][0]["port"] = json!("0");
    body["processes"][2]["process_info"]["proc_num"] = json!(0);
    client.send(&body).await;
    let reply = &client.replies(&env.reply_queue, 1).await[0];
    let message = reply.json["message"].as_str().expect("message");
    assert!(
        message.starts_with("processes[2].process_info.proc_num"),
        "{message}"
    );
}

#[tokio::test]
async fn duplicates_within_a_request_and_a_batch_resolve_in_delivery_order() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[("PROCINST_BATCH_LINGER_MS", "200")])
        .await;
    let client = env.client().await;
    let mut within = request("dup-within", 1, 10, "w", 2);
    within["processes"][1]["process_info"]["bk_process_name"] = json!("w-0");
    client.send(&within).await;
    client.send(&request("dup-first", 1, 10, "same", 1)).await;
    client.send(&request("dup-second", 1, 10, "same", 1)).await;
    let replies = client.replies_by_id(&env.reply_queue, 3).await;
    assert_eq!(replies["dup-within"].json["code"], json!(1199014));
    assert_eq!(replies["dup-first"].json["code"], json!(0));
    assert_eq!(replies["dup-second"].json["code"], json!(1199014));
    assert_eq!(env.count("SELECT count(*) FROM process").await, 1);
}

#[tokio::test]
async fn earlier_deliveries_win_across_batches_written_at_once() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    // One request per batch: neighbours are decided concurrently, on
    // different connections, and must still write in delivery order.
    env.start_worker(&[("PROCINST_BATCH_SIZE", "1")]).await;
    let client = env.client().await;
    let pairs = 40;
    for i in 0..pairs {
        let name = format!("ord{i}");
        client
            .send(&request(&format!("first-{i}"), 1, 10, &name, 1))
            .await;
        client
            .send(&request(&format!("second-{i}"), 1, 10, &name, 1))
            .await;
    }
    let replies = client.replies_by_id(&env.reply_queue, 2 * pairs).await;
    for i in 0..pairs {
        assert_eq!(
            replies[&format!("first-{i}")].json["code"],
            json!(0),
            "pair {i}"
        );
        assert_eq!(
            replies[&format!("second-{i}")].json["code"],
            json!(1199014),
            "pair {i}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM process").await,
        pairs as i64
    );
}

/// After a stream of new processes a worker writes rounds without reading
/// the existing processes first; a request that collides with one is still
/// answered 1199014, naming the process, and leaves nothing behind.
#[tokio::test]
async fn a_collision_with_an_existing_process_is_found_after_a_stream_of_new_ones() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[("PROCINST_BATCH_SIZE", "1")]).await;
    let client = env.client().await;
    // One round each: enough rounds that found nothing to stop reading.
    for i in 0..20 {
        client
            .send(&request(&format!("new-{i}"), 1, 10, &format!("n{i}"), 1))
            .await;
        let reply = client.replies(&env.reply_queue, 1).await.remove(0);
        assert_eq!(reply.json["code"], json!(0), "{}", reply.json);
    }
    client.send(&request("clash", 1, 10, "n3", 1)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(1199014), "{}", reply.json);
    assert_eq!(
        reply.json["message"],
        json!(
            "processes[0].process_info.bk_process_name: \"n3-0\" already exists in the service instance"
        )
    );
    let page = env.worker(w).metrics().await;
    assert_eq!(
        metric(&page, "procinst_unread_collisions_total"),
        1.0,
        "the collision was met at the write, not read first"
    );
    assert_eq!(env.count("SELECT count(*) FROM process").await, 20);
    assert_eq!(
        env.count("SELECT count(*) FROM request_log WHERE request_id = 'clash'")
            .await,
        0
    );
    // And the worker goes on.
    client.send(&request("after", 1, 10, "after", 1)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
}
