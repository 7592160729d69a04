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
    for fetch in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(
            !html.contains(fetch),
            "the page fetches nothing, yet has {fetch}"
        );
    }

    let screenshot = dir.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = dir.join("chromium-profile");
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
            "--window-size=960,1500",
        ])
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
