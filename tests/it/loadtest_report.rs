//! `procinst loadtest --report FILE.html`: one self-contained page, checked
//! in a real headless browser. The screenshot stays in
//! `target/tmp/loadtest-report/` for a person to look at.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::helpers::Env;

fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("loadtest-report");
    std::fs::create_dir_all(&dir).expect("output folder");
    dir
}

#[tokio::test]
async fn loadtest_reports_the_cpu_split_and_writes_a_self_contained_page_a_browser_renders() {
    let mut env = Env::new().await;
    let w = env.start_worker(&[]).await;
    let pid = env.worker(w).child.id().to_string();
    let dir = output_dir();
    let page = dir.join("report.html");
    let out = env.procinst(
        &[
            "loadtest",
            "--requests",
            "600",
            "--rate",
            "400",
            "--echo",
            "--json",
            "--worker-pid",
            &pid,
            "--report",
            page.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    let split = &report["worker_cpu"];
    assert!(
        split["busy_pct"].as_f64().is_some_and(|b| b > 0.0),
        "{split}"
    );
    for party in ["worker", "rabbitmq", "postgresql", "loadtest", "other"] {
        assert!(
            split["parties_pct"][party].as_f64().is_some(),
            "{party} in {split}"
        );
    }
    assert!(
        split["parties_pct"]["worker"]
            .as_f64()
            .is_some_and(|w| w > 0.0),
        "the worker used CPU: {split}"
    );

    let html = std::fs::read_to_string(&page).expect("report written");
    for part in [
        "Latency by percentile",
        "Throughput over time",
        "CPU split, worker phase",
        "<polyline",
        "<rect",
    ] {
        assert!(html.contains(part), "the page has {part}");
    }
    assert_self_contained(&html);

    render(&page, "report", 1500).await;
}

/// Renders `page` in headless chromium, `height` pixels tall, and checks
/// that the screenshot, left in the output folder as `NAME.png`, shows
/// charts.
async fn render(page: &std::path::Path, name: &str, height: u32) {
    let dir = output_dir();
    let screenshot = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&screenshot);
    // A profile of its own: chromium locks it, and tests run side by side.
    let profile = dir.join(format!("chromium-profile-{name}"));
    let mut browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size=960,{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium (Debian's package; tests/infra/services.sh installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while browser.try_wait().expect("chromium status").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromium took over 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a page with charts, not a blank one: {} bytes",
        png.len()
    );
    eprintln!("loadtest report screenshot: {}", screenshot.display());
}

fn assert_self_contained(html: &str) {
    for fetch in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(
            !html.contains(fetch),
            "the page fetches nothing, yet has {fetch}"
        );
    }
}

/// One row of the lanes table: lane and phase, then the figures.
#[derive(Debug)]
struct Row {
    requests: usize,
    answered: usize,
    seconds: f64,
    per_s: f64,
    /// p50, p95, p99 and max in ms; `None` where the table has `-`.
    latency_ms: [Option<f64>; 4],
    errors: usize,
}

/// The row of the lanes table whose lane and phase are `name`.
fn row(stdout: &str, name: &str) -> Row {
    let name: Vec<&str> = name.split_whitespace().collect();
    let fields: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.len() == name.len() + 9 && words.starts_with(&name))
        .unwrap_or_else(|| panic!("a row for {name:?} in:\n{stdout}"))
        .split_off(name.len());
    let line = fields.join(" ");
    let num = |i: usize| -> f64 { fields[i].parse().unwrap_or_else(|_| panic!("{line}")) };
    let ms = |i: usize| -> Option<f64> { (fields[i] != "-").then(|| num(i)) };
    Row {
        requests: num(0) as usize,
        answered: num(1) as usize,
        seconds: num(2),
        per_s: num(3),
        latency_ms: [ms(4), ms(5), ms(6), ms(7)],
        errors: num(8) as usize,
    }
}

#[tokio::test]
async fn loadtest_lanes_mode_drains_a_backfill_alone_and_beside_interactive_requests_and_draws_both_lanes()
 {
    let mut env = Env::new().await;
    let w = env.start_worker(&[]).await;
    let pid = env.worker(w).child.id().to_string();
    let page = output_dir().join("lanes.html");
    let backfill = 2000;
    let rate = 50.0;
    let out = env.procinst(
        &[
            "loadtest",
            "--backfill",
            &backfill.to_string(),
            "--rate",
            &rate.to_string(),
            "--worker-pid",
            &pid,
            "--report",
            page.to_str().expect("utf-8 path"),
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let alone = row(&stdout, "bulk alone");
    let beside = row(&stdout, "bulk with interactive");
    let again = row(&stdout, "bulk alone again");
    let interactive = row(&stdout, "interactive with bulk");
    for bulk in [&alone, &beside, &again] {
        assert_eq!(
            (bulk.requests, bulk.answered, bulk.errors),
            (backfill, backfill, 0),
            "{bulk:?}"
        );
        assert!(
            bulk.seconds > 0.0 && bulk.per_s > 0.0,
            "a drain takes time: {bulk:?}"
        );
        assert!(
            (bulk.per_s * bulk.seconds - backfill as f64).abs() < backfill as f64 * 0.02,
            "the drain rate is the backfill over the drain time: {bulk:?}"
        );
        assert_eq!(bulk.latency_ms, [None; 4], "{bulk:?}");
    }
    // Interactive requests arrive at the rate for as long as the second
    // backlog drains, and every one is answered.
    assert_eq!(
        interactive.answered, interactive.requests,
        "{interactive:?}"
    );
    assert_eq!(interactive.errors, 0, "{interactive:?}");
    let expected = rate * beside.seconds;
    assert!(
        interactive.requests > 0
            && (interactive.requests as f64 - expected).abs() <= expected * 0.25 + 3.0,
        "about {expected:.0} interactive requests in {} s: {interactive:?}",
        beside.seconds
    );
    let [p50, p95, p99, max] = interactive
        .latency_ms
        .map(|l| l.expect("interactive latency"));
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
        "{interactive:?}"
    );
    let ratio: f64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("bulk drain rate with interactive / alone (the mean of both): ")
        })
        .unwrap_or_else(|| panic!("the ratio in:\n{stdout}"))
        .parse()
        .expect("a number");
    let computed = beside.per_s / ((alone.per_s + again.per_s) / 2.0);
    assert!(
        ratio > 0.0 && (ratio - computed).abs() <= 0.02 + computed * 0.01,
        "ratio {ratio} against {computed}"
    );
    // The backlog that stood: some, and never more than the backfill.
    let most: Vec<usize> = stdout
        .lines()
        .find_map(|l| l.split_once("most unanswered at once: "))
        .unwrap_or_else(|| panic!("the largest backlog in:\n{stdout}"))
        .1
        .split(", ")
        .map(|part| {
            part.split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a count")
        })
        .collect();
    assert_eq!(most.len(), 2, "{most:?}");
    assert!(most.iter().all(|n| (1..=backfill).contains(n)), "{most:?}");
    for phase in ["bulk alone", "bulk with interactive"] {
        assert!(
            stdout.contains(&format!("{phase} phase CPU: machine busy")),
            "{phase} CPU in:\n{stdout}"
        );
    }
    // Every request of every phase was a new one: none got a stored reply.
    assert_eq!(
        env.count("SELECT count(*) FROM request_log").await,
        (3 * backfill + interactive.requests) as i64
    );

    let html = std::fs::read_to_string(&page).expect("report written");
    for part in [
        "Interactive latency by percentile",
        "Interactive latency over time",
        "Bulk replies per second over time",
        "Bulk backlog over time",
        "bulk with interactive",
        "CPU split, bulk alone phase",
        "CPU split, bulk with interactive phase",
        "<polyline",
    ] {
        assert!(html.contains(part), "the page has {part}");
    }
    assert_self_contained(&html);
    render(&page, "lanes", 2900).await;
}

/// `--queue-first`: the worker is stopped while each backlog is queued, so
/// the whole backlog stands when it continues, and the drains are timed
/// from then.
#[tokio::test]
async fn loadtest_lanes_mode_can_queue_each_backlog_whole_before_it_drains() {
    let mut env = Env::new().await;
    let w = env.start_worker(&[]).await;
    let pid = env.worker(w).child.id().to_string();
    let backfill = 1000;
    let out = env.procinst(
        &[
            "loadtest",
            "--backfill",
            &backfill.to_string(),
            "--rate",
            "50",
            "--queue-first",
            "--worker-pid",
            &pid,
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("each backlog queued whole with the workers stopped"),
        "{text}"
    );
    // Nearly the whole backlog stood at once: the worker answered nothing
    // while it was queued. (The figure is sampled at the end of each
    // 250 ms, so the drain's first moments can take a little off it.)
    let most: Vec<usize> = text
        .lines()
        .find_map(|l| l.split_once("most unanswered at once: "))
        .map(|(_, rest)| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().next()?.parse().ok())
                .collect()
        })
        .expect("the backlog line");
    assert_eq!(most.len(), 2, "{most:?}");
    assert!(
        most.iter()
            .all(|&n| n * 10 >= backfill * 9 && n <= backfill),
        "{most:?}"
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| !s.contains("State:\tT"))
            .unwrap_or(true),
        "the worker was continued"
    );
}
