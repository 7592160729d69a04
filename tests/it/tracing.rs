//! W3C Trace Context through procinst: request → reply, dead letter and
//! replay; log lines naming the trace; spans exported over OTLP only when
//! an endpoint is configured.

use std::time::Duration;

use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicNackOptions},
    types::{AMQPValue, FieldTable},
};
use serde_json::json;

use crate::helpers::{Env, WAIT, header_text, request};
use crate::support::otlp::Receiver;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// `(trace id, span id, flags)` of a traceparent, checked for form.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    assert_eq!(fields[1].len(), 32, "{traceparent}");
    assert_eq!(fields[2].len(), 16, "{traceparent}");
    assert_ne!(fields[1], "0".repeat(32));
    (fields[1].into(), fields[2].into(), fields[3].into())
}

fn traced(traceparent: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(traceparent.into()),
    );
    BasicProperties::default().with_headers(headers)
}

fn parent() -> String {
    format!("00-{TRACE}-{PARENT_SPAN}-01")
}

#[tokio::test]
async fn a_reply_continues_the_publishers_trace_from_a_span_of_its_own() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    let body = serde_json::to_vec(&request("tr-1", 1, 10, "t", 1)).expect("json");
    client.publish(&body, traced(&parent())).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(reply.json["code"], json!(0));
    let (trace, span, flags) = parts(reply.traceparent.as_deref().expect("traceparent"));
    assert_eq!(trace, TRACE, "the same trace");
    assert_ne!(span, PARENT_SPAN, "a span of the worker's own");
    assert_eq!(flags, "01", "still sampled");
}

#[tokio::test]
async fn a_request_without_trace_context_starts_a_trace_of_its_own() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[]).await;
    let client = env.client().await;
    client.send(&request("tr-a", 1, 10, "a", 1)).await;
    client.send(&request("tr-b", 1, 10, "b", 1)).await;
    let replies = client.replies_by_id(&env.reply_queue, 2).await;
    let a = parts(replies["tr-a"].traceparent.as_deref().expect("traceparent"));
    let b = parts(replies["tr-b"].traceparent.as_deref().expect("traceparent"));
    assert_ne!(a.0, b.0, "each request is a trace of its own");
}

/// Peeks at the dead-letter queue's first message without removing it.
async fn peek_dead_letter(env: &Env, client: &crate::helpers::Client) -> BasicProperties {
    let channel = client.connection.create_channel().await.expect("channel");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(message) = channel
            .basic_get(
                env.dead_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .expect("basic.get")
        {
            let properties = message.delivery.properties.clone();
            message
                .delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .expect("give it back");
            let _ = channel.close(200, "bye".into()).await;
            return properties;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_dead_letter_and_its_replay_stay_in_the_publishers_trace() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let small = env
        .start_worker(&[("PROCINST_MAX_BODY_BYTES", "300")])
        .await;
    let client = env.client().await;
    let body = serde_json::to_vec(&request("tr-big", 1, 10, "big", 3)).expect("json");
    assert!(body.len() > 300);
    client
        .publish(&body, traced(&parent()).with_message_id("tr-big".into()))
        .await;
    let refused = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(refused.json["code"], json!(1300002));
    let (trace, worker_span, _) = parts(refused.traceparent.as_deref().expect("traceparent"));
    assert_eq!(trace, TRACE);

    let copy = peek_dead_letter(&env, &client).await;
    let (copy_trace, copy_span, _) =
        parts(&header_text(&copy, "traceparent").expect("the dead letter's traceparent"));
    assert_eq!(copy_trace, TRACE, "the dead letter stays in the trace");
    assert_eq!(copy_span, worker_span, "made by the same request span");

    env.worker(small).kill();
    env.start_worker(&[]).await;
    let replayed = env.procinst(&["dlq", "replay"], None);
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let created = client.replies(&env.reply_queue, 1).await.remove(0);
    assert_eq!(created.json["code"], json!(0));
    let (replay_trace, replay_span, _) =
        parts(created.traceparent.as_deref().expect("traceparent"));
    assert_eq!(replay_trace, TRACE, "the replay keeps the original trace");
    assert_ne!(replay_span, worker_span);
}

#[tokio::test]
async fn a_requests_log_lines_name_its_trace_and_request_id() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[("RUST_LOG", "procinst=debug")]).await;
    let client = env.client().await;
    let body = serde_json::to_vec(&request("tr-log", 1, 10, "l", 1)).expect("json");
    client.publish(&body, traced(&parent())).await;
    client.replies(&env.reply_queue, 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = env.worker(w).log();
        if let Some(line) = log.lines().find(|l| l.contains("answered")) {
            assert!(line.contains(&format!("trace_id={TRACE}")), "{line}");
            assert!(
                line.contains("request_id=\"tr-log\"") || line.contains("request_id=tr-log"),
                "{line}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answered line: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn spans_are_exported_over_otlp_with_the_batch_linked_to_its_requests() {
    let receiver = Receiver::start().await;
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    env.start_worker(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let client = env.client().await;
    let body = serde_json::to_vec(&request("tr-otlp", 1, 10, "o", 1)).expect("json");
    client.publish(&body, traced(&parent())).await;
    let reply = client.replies(&env.reply_queue, 1).await.remove(0);
    let (_, reply_span, _) = parts(reply.traceparent.as_deref().expect("traceparent"));

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let spans = receiver.spans();
        let request = spans
            .iter()
            .find(|s| s.name == "request" && s.trace_id == TRACE);
        let batch = spans
            .iter()
            .find(|s| s.name == "batch" && s.link_trace_ids.iter().any(|t| t == TRACE));
        if let (Some(request), Some(batch)) = (request, batch) {
            assert_eq!(
                request.parent_span_id, PARENT_SPAN,
                "a child of the publisher's span"
            );
            assert_eq!(
                request.span_id, reply_span,
                "the reply names the exported span"
            );
            assert_ne!(
                batch.trace_id, TRACE,
                "the batch is a trace of its own, linked"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request and linked batch span exported: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
