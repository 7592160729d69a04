//! The operator commands, through the real broker and database.

use lapin::BasicProperties;
use serde_json::{Value, json};

use crate::helpers::{Env, request, unique};

fn lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

#[tokio::test]
async fn service_instance_import_upserts_and_refuses_a_file_with_a_bad_line() {
    let env = Env::new().await;
    let good = "{\"id\":1,\"bk_biz_id\":2,\"bk_supplier_account\":\"0\",\"name\":\"a\",\"service_template_id\":0,\"bk_host_id\":3}\n\
                {\"id\":2,\"bk_biz_id\":2}\n";
    let out = env.procinst(&["service-instance", "import", "-"], Some(good));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.count("SELECT count(*) FROM service_instance").await, 2);
    let updated = "{\"id\":1,\"bk_biz_id\":5}\n";
    assert!(
        env.procinst(&["service-instance", "import", "-"], Some(updated))
            .status
            .success()
    );
    assert_eq!(
        env.count("SELECT bk_biz_id FROM service_instance WHERE id = 1")
            .await,
        5
    );

    let bad = "{\"id\":7,\"bk_biz_id\":2}\n{\"id\":\"eight\"}\n";
    let out = env.procinst(&["service-instance", "import", "-"], Some(bad));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert_eq!(
        env.count("SELECT count(*) FROM service_instance WHERE id = 7")
            .await,
        0,
        "nothing imported"
    );
}

#[tokio::test]
async fn publish_wait_reports_a_bad_line_by_number_and_writes_every_reply() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let dir = std::env::temp_dir().join(unique("publish"));
    std::fs::create_dir_all(&dir).expect("dir");
    let input = dir.join("in.jsonl");
    let out = dir.join("out.jsonl");
    let mut text = lines(&[
        request("pub-1", 1, 10, "a", 2),
        request("pub-2", 1, 10, "b", 2),
    ]);
    text.push_str("{this is not json\n");
    text.push_str(&lines(&[request("pub-3", 1, 10, "c", 2)]));
    std::fs::write(&input, text).expect("write input");
    let args = [
        "publish",
        "--wait",
        "--out",
        out.to_str().expect("path"),
        input.to_str().expect("path"),
    ];

    let run = env.procinst(&args, None);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a bad line makes the exit non-zero");
    assert!(stderr.contains("line 3"), "{stderr}");
    let replies: Vec<Value> = std::fs::read_to_string(&out)
        .expect("out file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("envelope"))
        .collect();
    assert_eq!(replies.len(), 3);
    assert!(replies.iter().all(|r| r["code"] == json!(0)));

    // Re-running the good lines is a no-op: stored replies, nothing new.
    let good = lines(&[
        request("pub-1", 1, 10, "a", 2),
        request("pub-2", 1, 10, "b", 2),
    ]);
    let again = env.procinst(&["publish", "--wait", "-"], Some(&good));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(env.count("SELECT count(*) FROM process").await, 6);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn publish_wait_fails_when_a_request_is_answered_with_an_error() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    let out = env.procinst(
        &["publish", "--wait", "-"],
        Some(&lines(&[request("pub-err", 404, 10, "a", 1)])),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1199019"));
}

#[tokio::test]
async fn dlq_list_shows_reasons_without_removing_and_replay_moves_after_the_fix() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let small = env
        .start_worker(&[("PROCINST_MAX_BODY_BYTES", "600")])
        .await;
    let client = env.client().await;
    client
        .publish(
            b"{not json",
            BasicProperties::default().with_message_id("dlq-bad".into()),
        )
        .await;
    let big = request("dlq-big", 1, 10, "big", 4);
    let own = format!("{}.own", env.id);
    client.declare_quorum(&own).await;
    client
        .publish(
            &serde_json::to_vec(&big).expect("json"),
            BasicProperties::default()
                .with_reply_to(own.as_str().into())
                .with_message_id("dlq-big".into()),
        )
        .await;
    client.replies(&env.reply_queue, 1).await; // the not-JSON one has an id to answer
    client.replies(&own, 1).await; // 1300002 to its own reply_to
    assert!(client.settles_at(&env.dead_queue, 2).await);

    let listed = env.procinst(&["dlq", "list", "--json"], None);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    let reasons: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().expect("id"),
                r["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    assert!(reasons.contains(&("dlq-bad", "not_json")), "{reasons:?}");
    assert!(reasons.contains(&("dlq-big", "too_large")), "{reasons:?}");
    assert!(
        rows.iter()
            .all(|r| r["stored_result"] == json!(false) && r["count"] == json!(1))
    );
    assert!(
        client.settles_at(&env.dead_queue, 2).await,
        "list removes nothing"
    );

    let dry = env.procinst(
        &["dlq", "replay", "--dry-run", "--request-id", "dlq-big"],
        None,
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would create"));
    assert!(
        client.settles_at(&env.dead_queue, 2).await,
        "a dry run moves nothing"
    );

    // Fix the cause (the body limit), then replay just that message.
    env.worker(small).kill();
    env.start_worker(&[]).await;
    let replay = env.procinst(&["dlq", "replay", "--request-id", "dlq-big"], None);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let reply = client.replies(&own, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0), "{}", reply.json);
    assert_eq!(env.count("SELECT count(*) FROM process").await, 4);
    assert!(
        client.settles_at(&env.dead_queue, 1).await,
        "only the replayed message left"
    );
    client
        .channel
        .queue_delete(own.as_str().into(), Default::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn prune_removes_only_expired_request_log_rows() {
    let env = Env::new().await;
    let db = env.db().await;
    db.batch_execute(
        "INSERT INTO request_log (request_id, meaning, reply, created_at) VALUES \
         ('old', '\\x00', '\\x00', now() - interval '200 hours'), \
         ('new', '\\x00', '\\x00', now() - interval '1 hour')",
    )
    .await
    .expect("seed request_log");
    let out = env.procinst(&["prune"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM request_log WHERE request_id = 'old'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM request_log WHERE request_id = 'new'")
            .await,
        1
    );
}

#[tokio::test]
async fn loadtest_completes_a_small_run_with_the_echo_baseline() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    let out = env.procinst(&["loadtest", "--requests", "200", "--echo", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["worker"]["answered"], json!(200));
    assert_eq!(report["echo"]["answered"], json!(200));
    assert!(report["worker_over_echo"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(env.count("SELECT count(*) FROM request_log").await, 200);
}

#[tokio::test]
async fn loadtest_refuses_a_database_with_other_data_unless_allowed() {
    let env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let out = env.procinst(&["loadtest", "--requests", "1"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--allow-foreign-data"), "{stderr}");
    assert_eq!(
        env.count("SELECT count(*) FROM service_instance").await,
        1,
        "nothing written"
    );
}

#[tokio::test]
async fn publish_wait_counts_a_repeated_reply_once_and_still_notices_a_missing_one() {
    use futures::StreamExt;
    use std::io::Write;
    let env = Env::new().await;
    let mut publish = std::process::Command::new(env!("CARGO_BIN_EXE_procinst"))
        .args(["publish", "--wait", "--reply-timeout-s", "3", "-"])
        .envs(env.vars())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn publish");
    let input = lines(&[
        request("dup-1", 1, 10, "a", 1),
        request("dup-2", 1, 10, "b", 1),
    ]);
    publish
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");

    // A stand-in worker: answers dup-1 twice (as after a redelivery) and
    // dup-2 never.
    let client = env.client().await;
    let mut consumer = None;
    for _ in 0..100 {
        // A failed subscription closes its channel: a new one each time.
        let channel = client.connection.create_channel().await.expect("channel");
        let subscribed = channel
            .basic_consume(
                env.bulk_queue().as_str().into(),
                unique("stand-in").as_str().into(),
                Default::default(),
                Default::default(),
            )
            .await;
        if let Ok(subscribed) = subscribed {
            consumer = Some((channel, subscribed));
            break;
        }
        // The publish command has not declared the queue yet.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_channel, mut consumer) = consumer.expect("the bulk lane's queue is declared");
    for _ in 0..2 {
        let delivery = tokio::time::timeout(crate::helpers::WAIT, consumer.next())
            .await
            .expect("a request")
            .expect("stream")
            .expect("delivery");
        let body: Value = serde_json::from_slice(&delivery.data).expect("json");
        let id = body["request_id"].as_str().expect("id").to_owned();
        if id == "dup-1" {
            let reply_to = delivery
                .properties
                .reply_to()
                .as_ref()
                .expect("reply_to")
                .as_str()
                .to_owned();
            let reply = format!(
                r#"{{"result":true,"code":0,"message":"success","permission":null,"request_id":"{id}","data":[1]}}"#
            );
            for _ in 0..2 {
                client
                    .publish_to(
                        &reply_to,
                        reply.as_bytes(),
                        BasicProperties::default().with_correlation_id(id.as_str().into()),
                    )
                    .await;
            }
        }
        delivery.acker.ack(Default::default()).await.expect("ack");
    }
    let out = tokio::task::spawn_blocking(move || publish.wait_with_output())
        .await
        .expect("join")
        .expect("publish output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dup-2 was never answered: {stderr}");
    assert!(stderr.contains("answered 1 of 2"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "one envelope per request"
    );
}
