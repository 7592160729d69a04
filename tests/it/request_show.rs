//! `procinst request show ID`: the stored reply, the rows a request created,
//! and whether it sits in the dead-letter queue.

use lapin::BasicProperties;
use serde_json::{Value, json};

use crate::helpers::{Env, request};

fn show(env: &Env, request_id: &str) -> (bool, Value) {
    let out = env.procinst(&["request", "show", request_id, "--json"], None);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "request show --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

#[tokio::test]
async fn a_created_request_shows_its_reply_processes_relations_and_audit_row() {
    let mut env = Env::new().await;
    env.service_instance(48, 10, "0", 0, 7).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("show-1", 48, 10, "web", 2)).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));

    let (ok, report) = show(&env, "show-1");
    assert!(ok, "a stored request is known: {report}");
    let stored = &report["stored"];
    assert_eq!(stored["code"], json!(0));
    assert_eq!(stored["process_ids"], reply.json["data"]);
    assert_eq!(
        stored["reply"].as_str().expect("reply text").as_bytes(),
        reply.body.as_slice(),
        "the reply as published, byte for byte"
    );
    assert_eq!(stored["expired"], json!(false));
    assert!(
        stored["expires"].as_str().expect("expires") > stored["written"].as_str().expect("written")
    );
    let processes = report["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 2);
    assert_eq!(processes[0]["bk_process_name"], json!("web-0"));
    assert_eq!(processes[0]["bk_host_id"], json!(7), "the relation row");
    assert_eq!(processes[0]["process_template_id"], json!(0));
    assert_eq!(processes[0]["bk_created_by"], json!("admin"));
    let audit = report["audit"].as_array().expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["operator"], json!("admin"));
    assert_eq!(audit[0]["resource_id"], json!(48));
    assert_eq!(report["dead_letters"], json!({"checked": []}));

    let table = env.procinst(&["request", "show", "show-1"], None);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("stored reply    code 0 (success)"), "{text}");
    assert!(text.contains("web-1"), "{text}");
}

#[tokio::test]
async fn an_unknown_request_id_is_reported_unknown_with_a_failing_exit() {
    let env = Env::new().await;
    let (ok, report) = show(&env, "never-sent");
    assert!(!ok);
    assert_eq!(report["known"], json!(false));
    assert_eq!(report["stored"], Value::Null);
    let table = env.procinst(&["request", "show", "never-sent"], None);
    assert!(!table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("unknown"));
}

#[tokio::test]
async fn a_dead_lettered_request_is_shown_with_its_reason_and_stays_in_the_queue() {
    let mut env = Env::new().await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client
        .publish(
            b"{\"request_id\": \"show-dead\", oops",
            BasicProperties::default().with_message_id("show-dead".into()),
        )
        .await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(1199000));
    assert!(client.settles_at(&env.dead_queue, 1).await);

    let (ok, report) = show(&env, "show-dead");
    assert!(ok, "a dead-lettered request is known: {report}");
    assert_eq!(
        report["stored"],
        Value::Null,
        "failed requests are not stored"
    );
    let dead = report["dead_letters"]["checked"]
        .as_array()
        .expect("the queue was checked");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], json!("not_json"));
    assert!(
        client.settles_at(&env.dead_queue, 1).await,
        "looking removed nothing"
    );
}
