//! Starting up: the HTTP address comes first, probes answer while the
//! database is awaited, the version is logged, and logs carry no colours
//! when they are not written to a terminal.

use std::time::{Duration, Instant};

use crate::helpers::{Env, Worker, http_get};

/// A database URL nothing listens on: the worker waits for it.
const NO_DATABASE: &str = "postgres://postgres@127.0.0.1:1/procinst";

#[tokio::test]
async fn a_taken_http_address_stops_the_worker_at_once_naming_the_address() {
    let env = Env::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut worker = Worker::spawn(&env, &[("PROCINST_HTTP_ADDR", &addr)]);
    let code = worker.wait_exit(Duration::from_secs(5)).await;
    assert!(
        code.is_some_and(|c| c != 0),
        "exit non-zero: {code:?}\n{}",
        worker.log()
    );
    let log = worker.log();
    assert!(log.contains(&addr), "the error names the address: {log}");
}

#[tokio::test]
async fn health_answers_from_the_first_second_while_the_database_is_awaited() {
    let env = Env::new().await;
    let mut worker = Worker::spawn(&env, &[("DATABASE_URL", NO_DATABASE)]);
    let base = format!("http://{}", worker.http);
    let started = Instant::now();
    let mut live = None;
    while started.elapsed() < Duration::from_secs(2) {
        live = http_get(&format!("{base}/healthz")).await;
        if live.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        live.map(|(status, _)| status),
        Some(200),
        "/healthz within the first seconds; log:\n{}",
        worker.log()
    );
    let (status, reason) = http_get(&format!("{base}/readyz"))
        .await
        .expect("readyz answers");
    assert_eq!(status, 503);
    assert!(reason.contains("waiting for the database"), "{reason}");
    assert!(
        worker.log().contains("database not ready"),
        "it is really waiting"
    );

    // The probe command of the container image says the same.
    let probe = |args: &[&str]| {
        env.procinst_with(args, None, &[("PROCINST_HTTP_ADDR", &worker.http)])
            .status
            .code()
    };
    assert_eq!(probe(&["health"]), Some(1), "not ready");
    assert_eq!(probe(&["health", "--live"]), Some(0), "alive");
    worker.kill();
}

#[tokio::test]
async fn a_ready_worker_passes_the_health_command() {
    let mut env = Env::new().await;
    let w = env.start_worker(&[]).await;
    let http = env.worker(w).http.clone();
    let out = env.procinst_with(&["health"], None, &[("PROCINST_HTTP_ADDR", &http)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn the_first_log_line_gives_the_version_and_logs_have_no_colour_codes() {
    let env = Env::new().await;
    let version = env!("CARGO_PKG_VERSION");
    let out = env.procinst(&["--version"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("procinst {version}")
    );

    let mut worker = Worker::spawn(&env, &[("DATABASE_URL", NO_DATABASE)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !worker.log().contains("database not ready") {
        assert!(Instant::now() < deadline, "log:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.kill();
    let log = worker.log();
    let first = log.lines().next().unwrap_or_default();
    assert!(first.contains("procinst starting"), "{first}");
    assert!(first.contains(&format!("version={version}")), "{first}");
    assert!(!log.contains('\u{1b}'), "escape codes in a pipe: {log:?}");
}
