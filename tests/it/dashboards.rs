//! Every procinst metric that the Grafana dashboard and the Prometheus
//! alert rules (`deploy/`) use is exported by a running worker, under that
//! exact name and with those labels.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::BasicProperties;

use crate::helpers::{Env, WAIT, http_get, request};

/// Labels Prometheus adds or computes itself, not the exporter.
const SCRAPE_LABELS: [&str; 3] = ["instance", "job", "le"];

/// Metric names and the labels each expression uses with them: labels in a
/// `{...}` selector belong to that metric; labels in `by (...)` to every
/// procinst metric of the same expression.
fn used(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for expr in expressions(text) {
        let mut metrics = Vec::new();
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("procinst_") {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            rest = &tail[end..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"') {
                continue;
            }
            let labels = used.entry(name.to_owned()).or_default();
            if let Some(selector) = rest.strip_prefix('{') {
                let close = selector.find('}').unwrap_or(selector.len());
                for matcher in selector[..close].split(',') {
                    let label = matcher.split(['=', '!']).next().unwrap_or("").trim();
                    if !label.is_empty() {
                        labels.insert(label.to_owned());
                    }
                }
            }
            metrics.push(name.to_owned());
        }
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("by (") {
            let list = &rest[at + 4..];
            let close = list.find(')').unwrap_or(list.len());
            for label in list[..close].split(',') {
                for metric in &metrics {
                    used.entry(metric.clone())
                        .or_default()
                        .insert(label.trim().to_owned());
                }
            }
            rest = &list[close..];
        }
    }
    for labels in used.values_mut() {
        labels.retain(|l| !SCRAPE_LABELS.contains(&l.as_str()));
    }
    used
}

/// The PromQL expressions of a dashboard (`"expr": "..."`) or a rules file
/// (`expr:` with a plain or folded value).
fn expressions(text: &str) -> Vec<String> {
    if let Ok(dashboard) = serde_json::from_str::<serde_json::Value>(text) {
        let mut out = Vec::new();
        collect_exprs(&dashboard, &mut out);
        return out;
    }
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if let Some(value) = line.strip_prefix("expr:") {
            let indent = lines[i].len() - line.len();
            let mut expr = value.trim().trim_start_matches(">-").to_owned();
            while i + 1 < lines.len()
                && (lines[i + 1].trim().is_empty()
                    || lines[i + 1].len() - lines[i + 1].trim_start().len() > indent)
            {
                i += 1;
                expr.push(' ');
                expr.push_str(lines[i].trim());
            }
            out.push(expr);
        }
        i += 1;
    }
    out
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Exported series: metric name → every label name seen on it.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_owned()).or_default();
        if let Some(set) = line[end..].strip_prefix('{') {
            let close = set.find('}').unwrap_or(set.len());
            for pair in set[..close].split(',') {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
    }
    series
}

#[test]
fn the_dashboard_and_the_rules_are_read() {
    let dashboard = used(include_str!("../../deploy/grafana/procinst.json"));
    let rules = used(include_str!("../../deploy/prometheus/alerts.yml"));
    assert!(
        dashboard.contains_key("procinst_batch_seconds_bucket"),
        "{dashboard:?}"
    );
    assert_eq!(
        dashboard.get("procinst_requests_total"),
        Some(&BTreeSet::from([
            "code".to_owned(),
            "lane".to_owned(),
            "outcome".to_owned()
        ]))
    );
    assert!(rules.contains_key("procinst_ready"), "{rules:?}");
    assert!(rules.contains_key("procinst_db_retries_total"), "{rules:?}");
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_exported_by_a_running_worker() {
    let mut env = Env::new().await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let w = env.start_worker(&[]).await;
    let client = env.client().await;
    // One created request and one dead letter: the labelled series appear
    // with their first use.
    client.send(&request("dash-1", 1, 10, "d", 1)).await;
    client
        .publish(
            b"not json",
            BasicProperties::default().with_message_id("dash-2".into()),
        )
        .await;
    client.replies(&env.reply_queue, 2).await;

    let mut wanted = used(include_str!("../../deploy/grafana/procinst.json"));
    for (metric, labels) in used(include_str!("../../deploy/prometheus/alerts.yml")) {
        wanted.entry(metric).or_default().extend(labels);
    }
    let url = format!("http://{}/metrics", env.worker(w).http);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, text) = http_get(&url).await.expect("/metrics");
        let series = exported(&text);
        let missing: Vec<String> = wanted
            .iter()
            .flat_map(|(metric, labels)| match series.get(metric) {
                None => vec![metric.clone()],
                Some(have) => labels
                    .iter()
                    .filter(|l| !have.contains(*l))
                    .map(|l| format!("{metric}{{{l}}}"))
                    .collect(),
            })
            .collect();
        if missing.is_empty() {
            assert!(
                text.contains("procinst_ready 1"),
                "a consuming worker is ready"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "used but not exported: {missing:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each alert rule links its own section of `docs/runbook.md`, and that
/// section is there.
#[test]
fn every_alert_links_its_runbook_section() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml"))
        .expect("alert rules");
    let runbook = std::fs::read_to_string(format!("{root}/docs/runbook.md")).expect("runbook");
    let sections: BTreeSet<&str> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: "))
        .map(|l| l.trim_matches('"'))
        .collect();
    assert!(!alerts.is_empty());
    assert_eq!(alerts.len(), links.len(), "one runbook link per alert");
    for (alert, link) in alerts.iter().zip(&links) {
        assert_eq!(
            *link,
            format!("docs/runbook.md#{}", alert.to_lowercase()),
            "{alert}'s runbook link"
        );
        assert!(
            sections.contains(alert),
            "docs/runbook.md has a section for {alert}"
        );
    }
}
