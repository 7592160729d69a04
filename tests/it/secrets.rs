use serde_json::json;

use crate::helpers::{Env, request};

#[tokio::test]
async fn secrets_never_reach_logs_tables_or_replies() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let db_url = env
        .database_url()
        .replace("postgres@", "postgres:db-password-7781@");
    env.start_worker(&[("RUST_LOG", "trace"), ("DATABASE_URL", &db_url)])
        .await;
    let client = env.client().await;
    let mut good = request("secret-1", 1, 10, "p", 1);
    good["bk_app_secret"] = json!("app-secret-4242");
    good["bk_token"] = json!("token-9191");
    let mut bad = request("secret-2", 1, 10, "q", 1);
    bad["bk_app_secret"] = json!("app-secret-4242");
    bad["bk_token"] = json!("token-9191");
    bad["processes"][0]["process_info"]["proc_num"] = json!("x");
    client.send(&good).await;
    client.send(&bad).await;
    let mut broken = serde_json::to_string(&good).expect("json");
    broken.push_str(" trailing garbage");
    client.publish(broken.as_bytes(), Default::default()).await;
    let replies = client.replies(&env.reply_queue, 2).await;
    // The broken one is logged when it is dead-lettered.
    env.worker(0).wait_for_log("dead-lettered").await;

    let log = env.worker(0).log();
    assert!(
        log.contains("secret-1"),
        "the log is really captured at trace level"
    );
    for secret in [
        "app-secret-4242",
        "token-9191",
        "db-password-7781",
        "guest:guest",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
        for reply in &replies {
            assert!(
                !String::from_utf8_lossy(&reply.body).contains(secret),
                "{secret} in a reply"
            );
        }
    }
    let db = env.db().await;
    let dump: String = db
        .query_one(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM ( \
               SELECT row_to_json(p)::text AS t FROM process p UNION ALL \
               SELECT row_to_json(a)::text FROM audit_log a UNION ALL \
               SELECT encode(reply, 'escape') FROM request_log) s",
            &[],
        )
        .await
        .expect("dump")
        .get(0);
    assert!(!dump.is_empty());
    for secret in ["app-secret-4242", "token-9191"] {
        assert!(!dump.contains(secret), "{secret} stored in a table");
    }
}

#[tokio::test]
async fn debug_logs_print_no_sql_parameters_or_message_bodies() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[("RUST_LOG", "debug")]).await;
    let client = env.client().await;
    let mut needle = request("debug-1", 1, 10, "needle-proc-7731", 1);
    needle["processes"][0]["process_info"]["start_cmd"] = json!("./start --body-marker-5150");
    client.send(&needle).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
    env.worker(w).wait_for_log("answered").await;
    let log = env.worker(w).log();
    assert!(log.contains("debug-1"), "request ids may be logged: {log}");
    for content in ["needle-proc-7731", "body-marker-5150"] {
        assert!(
            !log.contains(content),
            "{content} leaked into the debug log:\n{log}"
        );
    }
}

/// `AMQP_URL_FILE` and `DATABASE_URL_FILE` (Docker and Kubernetes secrets)
/// take the place of `AMQP_URL` and `DATABASE_URL`, here set to addresses
/// where nothing listens, for the worker and the other commands alike; a
/// file that cannot be read stops a command at once, naming the variable.
#[tokio::test]
async fn connection_urls_come_from_secret_files_for_every_command() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let dir = std::env::temp_dir().join(crate::helpers::unique("secrets"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (amqp_file, database_file) = (dir.join("amqp_url"), dir.join("database_url"));
    std::fs::write(&amqp_file, format!("{}\n", env.amqp)).expect("write");
    std::fs::write(&database_file, format!("{}\n", env.database_url())).expect("write");
    let (amqp_file, database_file) = (
        amqp_file.to_str().expect("utf-8").to_owned(),
        database_file.to_str().expect("utf-8").to_owned(),
    );
    let from_files = [
        ("AMQP_URL", "amqp://nobody:wrong@127.0.0.1:1/%2f"),
        ("AMQP_URL_FILE", amqp_file.as_str()),
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing"),
        ("DATABASE_URL_FILE", database_file.as_str()),
    ];

    env.start_worker(&from_files).await;
    let client = env.client().await;
    client.send(&request("from-files", 1, 10, "f", 1)).await;
    let replies = client.replies_by_id(&env.reply_queue, 1).await;
    assert_eq!(replies["from-files"].json["code"], 0);
    for args in [
        &["migrate"][..],
        &["request", "show", "from-files"],
        &["dlq", "list"],
    ] {
        let out = env.procinst_within(args, &from_files).await;
        assert!(
            out.status.success(),
            "procinst {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let missing = dir.join("missing");
    let missing = missing.to_str().expect("utf-8");
    for (variable, args) in [
        ("DATABASE_URL_FILE", &["migrate"][..]),
        ("AMQP_URL_FILE", &["dlq", "list"]),
    ] {
        let began = std::time::Instant::now();
        let out = env.procinst_within(args, &[(variable, missing)]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "procinst {args:?} with {variable} unreadable"
        );
        assert!(
            stderr.contains(&format!("{variable} ({missing}): cannot read the file")),
            "{stderr}"
        );
        assert!(
            began.elapsed() < std::time::Duration::from_secs(5),
            "it fails at once"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
