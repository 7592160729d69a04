//! What a worker tells about its work: metrics and health endpoints, and
//! JSON logs to the last line at shutdown.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Env, http_get, metric, request};

#[tokio::test]
async fn metrics_and_health_endpoints_report_the_work() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("m-1", 1, 10, "m", 3)).await;
    client.send(&request("m-2", 404, 10, "m", 1)).await;
    client.replies(&env.reply_queue, 2).await;
    let base = format!("http://{}", env.worker(w).http);
    assert_eq!(
        http_get(&format!("{base}/healthz")).await.map(|r| r.0),
        Some(200)
    );
    // Counters are bumped after the ack, a moment after the reply is out.
    let expected = [
        r#"procinst_requests_total{outcome="created",code="0",lane="interactive"} 1"#,
        r#"procinst_requests_total{outcome="rejected",code="1199019",lane="interactive"} 1"#,
        "procinst_processes_created_total 3",
        "procinst_batch_seconds_bucket",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(&format!("{base}/metrics")).await.expect("metrics");
        assert_eq!(status, 200);
        if expected.iter().all(|line| body.contains(line)) {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{expected:?} in {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Every batch taken is timed to its ack.
    let timed = metric(&body, "procinst_batch_seconds_count");
    assert!(timed >= 1.0, "{body}");
    assert_eq!(timed, metric(&body, "procinst_batch_size_count"), "{body}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_sigint_stops_cleanly() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env
        .start_worker(&[
            ("PROCINST_LOG_FORMAT", "json"),
            ("RUST_LOG", "procinst=debug"),
        ])
        .await;
    let client = env.client().await;
    client.send(&request("json-1", 1, 10, "j", 1)).await;
    client.replies(&env.reply_queue, 1).await;
    // SIGINT takes the same graceful path as SIGTERM.
    env.worker(w).signal("INT");
    assert_eq!(
        env.worker(w).wait_exit(Duration::from_secs(25)).await,
        Some(0)
    );
    let log = env.worker(w).log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["request_id"] == json!("json-1"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == json!("procinst starting"))
    );
    let stopped = lines
        .iter()
        .find(|l| l["fields"]["message"] == json!("procinst stopped"))
        .expect("a summary at shutdown");
    assert_eq!(stopped["fields"]["answered"], json!(1));
}
