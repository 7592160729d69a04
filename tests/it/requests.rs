use lapin::BasicProperties;
use serde_json::json;

use crate::helpers::{Env, request, seed_request};

#[tokio::test]
async fn the_seed_example_creates_its_process_and_returns_the_new_id() {
    let mut env = Env::new().await;
    env.service_instance(48, 1, "0", 0, 7).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&seed_request("seed-1")).await;
    let reply = &client.replies(&env.reply_queue, 1).await[0];
    assert_eq!(reply.json["result"], json!(true), "{}", reply.json);
    assert_eq!(reply.json["code"], json!(0));
    assert_eq!(reply.json["message"], json!("success"));
    assert_eq!(reply.json["permission"], json!(null));
    assert_eq!(reply.json["request_id"], json!("seed-1"));
    let id = reply.json["data"][0].as_i64().expect("an id");
    assert_eq!(reply.correlation_id.as_deref(), Some("seed-1"));

    let db = env.db().await;
    let row = db
        .query_one(
            "SELECT bk_process_name, bk_func_name, bk_biz_id, bk_supplier_account, service_instance_id, \
             work_path, timeout, proc_num, priority, bind_info, bk_created_by \
             FROM process WHERE bk_process_id = $1",
            &[&id],
        )
        .await
        .expect("process row");
    assert_eq!(row.get::<_, String>(0), "job_java");
    assert_eq!(row.get::<_, String>(1), "java");
    // bk_biz_id 2 and bk_process_id 1 inside process_info are ignored.
    assert_eq!(row.get::<_, i64>(2), 1);
    assert_eq!(row.get::<_, String>(3), "0");
    assert_eq!(row.get::<_, i64>(4), 48);
    assert_eq!(row.get::<_, String>(5), "/data/bkee");
    assert_eq!(row.get::<_, Option<i32>>(6), Some(30));
    assert_eq!(row.get::<_, Option<i32>>(7), Some(1));
    assert_eq!(row.get::<_, Option<i32>>(8), Some(1));
    assert_eq!(
        row.get::<_, serde_json::Value>(9),
        json!([{"enable": false, "ip": "127.0.0.1", "port": "80", "protocol": "1", "template_row_id": 1234}])
    );
    assert_eq!(row.get::<_, String>(10), "xxx");
    let relation = db
        .query_one(
            "SELECT service_instance_id, process_template_id, bk_host_id, bk_biz_id FROM process_instance_relation WHERE bk_process_id = $1",
            &[&id],
        )
        .await
        .expect("relation row");
    assert_eq!(relation.get::<_, i64>(0), 48);
    assert_eq!(relation.get::<_, i64>(1), 0);
    assert_eq!(relation.get::<_, i64>(2), 7);
    assert_eq!(relation.get::<_, i64>(3), 1);
    let audit = db
        .query_one(
            "SELECT resource_type, action, resource_id, operator, detail FROM audit_log",
            &[],
        )
        .await
        .expect("one audit row");
    assert_eq!(audit.get::<_, String>(0), "service_instance");
    assert_eq!(audit.get::<_, String>(1), "update");
    assert_eq!(audit.get::<_, i64>(2), 48);
    assert_eq!(audit.get::<_, String>(3), "xxx");
    let detail: serde_json::Value = audit.get(4);
    assert_eq!(detail["created_processes"][0]["bk_process_id"], json!(id));
    let stored: Vec<u8> = db
        .query_one(
            "SELECT reply FROM request_log WHERE request_id = 'seed-1'",
            &[],
        )
        .await
        .expect("request_log row")
        .get(0);
    assert_eq!(
        stored, reply.body,
        "request_log keeps the exact bytes published"
    );
}

#[tokio::test]
async fn ids_come_back_in_input_order() {
    let mut env = Env::new().await;
    env.service_instance(5, 3, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("order-1", 5, 3, "p", 20)).await;
    let reply = &client.replies(&env.reply_queue, 1).await[0];
    let ids: Vec<i64> = reply.json["data"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 20);
    let db = env.db().await;
    for (i, id) in ids.iter().enumerate() {
        let name: String = db
            .query_one(
                "SELECT bk_process_name FROM process WHERE bk_process_id = $1",
                &[id],
            )
            .await
            .expect("row")
            .get(0);
        assert_eq!(name, format!("p-{i}"));
    }
}

#[tokio::test]
async fn strings_are_trimmed_and_server_fields_ignored() {
    let mut env = Env::new().await;
    env.service_instance(9, 2, "tenant", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client
        .send(&json!({
            "request_id": "trim-1", "bk_biz_id": 2, "bk_supplier_account": "tenant", "service_instance_id": 9,
            "unknown_top_level": {"x": 1},
            "processes": [{"process_info": {
                "bk_process_name": "  nginx  ", "bk_func_name": "\tnginx\n", "user": " root ",
                "bk_process_id": 999999, "bk_biz_id": 77, "service_instance_id": 1234,
                "bk_supplier_account": "other", "auto_time_gap": 5, "bk_func_id": "1"
            }}]
        }))
        .await;
    let reply = &client.replies(&env.reply_queue, 1).await[0];
    assert_eq!(reply.json["code"], json!(0), "{}", reply.json);
    let id = reply.json["data"][0].as_i64().expect("id");
    assert_ne!(id, 999999);
    let row = env
        .db()
        .await
        .query_one(
            "SELECT bk_process_name, bk_func_name, \"user\", bk_biz_id, service_instance_id, bk_supplier_account, auto_start \
             FROM process WHERE bk_process_id = $1",
            &[&id],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "nginx");
    assert_eq!(row.get::<_, String>(1), "nginx");
    assert_eq!(row.get::<_, String>(2), "root");
    assert_eq!(row.get::<_, i64>(3), 2);
    assert_eq!(row.get::<_, i64>(4), 9);
    assert_eq!(row.get::<_, String>(5), "tenant");
    assert!(!row.get::<_, bool>(6));
}

#[tokio::test]
async fn a_burst_of_200_with_bad_requests_mixed_in_answers_each_correctly() {
    let mut env = Env::new().await;
    env.service_instance(11, 1, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    for i in 0..200 {
        let mut body = request(&format!("burst-{i}"), 11, 1, &format!("b{i}"), 2);
        match i % 10 {
            3 => body["processes"][1]["process_info"]["proc_num"] = json!(0),
            5 => body["service_instance_id"] = json!(404),
            7 => body["processes"][0]["process_info"]["bk_process_name"] = json!("b0-0"), // taken by request 0
            _ => {}
        }
        client
            .publish(
                &serde_json::to_vec(&body).expect("json"),
                BasicProperties::default(),
            )
            .await;
    }
    let replies = client.replies_by_id(&env.reply_queue, 200).await;
    assert_eq!(replies.len(), 200);
    let mut created = 0;
    for i in 0..200 {
        let reply = &replies[&format!("burst-{i}")];
        let expected = match i % 10 {
            3 => 1199011,
            5 => 1199019,
            7 => 1199014,
            _ => 0,
        };
        assert_eq!(
            reply.json["code"],
            json!(expected),
            "request {i}: {}",
            reply.json
        );
        if expected == 0 {
            created += 2;
        }
    }
    assert_eq!(env.count("SELECT count(*) FROM process").await, created);
    assert_eq!(
        env.count("SELECT count(*) FROM process_instance_relation")
            .await,
        created
    );
    assert_eq!(
        env.count("SELECT count(*) FROM request_log").await,
        created / 2
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_log").await,
        created / 2
    );
}
