//! `procinst loadtest`: synthetic requests against a running worker, with
//! an optional broker-only baseline (`--echo`) measured in the same run, or
//! the two lanes against each other (`--backfill N`, see [`lanes`]), or two
//! businesses sharing the bulk lane (`--backfill N --second-backfill M`,
//! see [`sharing`]).

mod cpu;
mod echo;
mod lanes;
mod phase;
mod procstat;
mod report;
mod sharing;

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::broker::Cluster;
use crate::config::{Route, Settings};
use crate::redact::redact_url;
use crate::store::{self, service_instance::ServiceInstanceRow};
use phase::{Load, Measured};

/// Business and first service instance id the load generator owns.
const LOAD_BIZ: i64 = 900_000;
const LOAD_SI_BASE: i64 = 900_000_000;

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// Requests to send (with --backfill: the most interactive requests
    /// to send while the backlog drains).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Processes in each request.
    #[arg(long, default_value_t = 4)]
    processes_per_request: usize,
    /// Requests per second (default: as fast as --concurrency allows;
    /// with --backfill: interactive requests per second, default 50).
    #[arg(long)]
    rate: Option<f64>,
    /// Most requests awaiting their reply at once.
    #[arg(long, default_value_t = 2_000)]
    concurrency: usize,
    /// First measure the broker-only round trip with an in-process
    /// responder, and report the worker as a fraction of it.
    #[arg(long)]
    echo: bool,
    /// Lanes mode: drain a backlog of N bulk requests alone, then drain
    /// another N while interactive requests arrive at --rate; report the
    /// interactive latency and both drain rates.
    #[arg(long, value_name = "N", conflicts_with = "echo")]
    backfill: Option<usize>,
    /// With --backfill: stop the workers (SIGSTOP) while each backlog is
    /// queued and continue them (SIGCONT) once it all is, so that a whole
    /// backlog of N drains, timed from then, with no publishing beside it.
    /// For a worker on this machine only.
    #[arg(long, requires = "backfill")]
    queue_first: bool,
    /// Sharing mode, with --backfill N: a backfill of N for one business
    /// on the bulk lane, then, once it is published, one of M for another;
    /// report when the second was done against twice its time at half the
    /// lane's rate.
    #[arg(
        long,
        value_name = "M",
        requires = "backfill",
        conflicts_with = "queue_first"
    )]
    second_backfill: Option<usize>,
    /// Service instances the requests are spread over.
    #[arg(long, default_value_t = 64)]
    service_instances: i64,
    /// A worker process whose CPU time and peak RSS to report (repeatable;
    /// default: every `procinst run` process on this machine).
    #[arg(long = "worker-pid")]
    worker_pids: Vec<u32>,
    /// Also write a self-contained HTML report (latency percentiles,
    /// throughput over time, CPU split) to this file.
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the synthetic service instances and processes even though
    /// the database holds other data (never on a production database).
    #[arg(long)]
    allow_foreign_data: bool,
}

/// WAL bytes, rows and index entries per answered request.
#[derive(Debug, Serialize)]
struct DbCostPerRequest {
    wal_bytes: f64,
    rows: f64,
    index_entries: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    processes_per_request: usize,
    body_bytes: usize,
    echo: Option<Measured>,
    /// Where the machine's CPU went while the echo phase ran.
    echo_cpu: Option<cpu::CpuSplit>,
    worker: Measured,
    /// Where the machine's CPU went while the worker phase ran.
    worker_cpu: Option<cpu::CpuSplit>,
    worker_processes_per_s: f64,
    worker_over_echo: Option<f64>,
    worker_cpu_s_per_1000_requests: Option<f64>,
    /// PostgreSQL's cost per answered request during the worker phase.
    database_per_request: Option<DbCostPerRequest>,
    worker_peak_rss_mib: Option<f64>,
}

pub async fn run(settings: &Settings, args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::from_settings(settings)?;
    let run_id = format!(
        "lt{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    prepare_service_instances(
        settings,
        args.service_instances.max(1),
        args.allow_foreign_data,
    )
    .await?;
    if let (Some(backfill), Some(second)) = (args.backfill, args.second_backfill) {
        let report = sharing::run(settings, &args, &cluster, &run_id, backfill, second).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            sharing::print(&report);
        }
        return Ok(if report.complete() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Some(backfill) = args.backfill {
        let report = lanes::run(settings, &args, &cluster, &run_id, backfill).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            lanes::print(&report);
        }
        if let Some(path) = &args.report {
            std::fs::write(path, report::lanes_html(&report))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("report written to {}", path.display());
        }
        return Ok(if report.complete() && !report.interactive_ran_out {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let body = |i: usize| {
        request_body(
            &run_id,
            i,
            args.processes_per_request,
            args.service_instances.max(1),
        )
    };
    let body_bytes = body(0).len();

    let echo = if args.echo {
        let queue = format!("procinst.loadtest.echo.{run_id}");
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let (settings, queue, stop) = (settings.clone(), queue.clone(), stop.clone());
            async move { echo::serve(&settings, &queue, stop).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let route = Route::queue(&queue);
        let load = Load {
            cluster: &cluster,
            route: &route,
            reply_queue: &settings.topology.reply_queue,
            run_id: &format!("{run_id}e"),
            requests: args.requests,
            rate: args.rate,
            concurrency: args.concurrency,
            until: None,
            published: None,
        };
        let sampler = cpu::Sampler::start(Vec::new());
        let measured = phase::run(&load, &body).await;
        let split = sampler.finish().await;
        stop.cancel();
        server.await??;
        Some((measured?, split))
    } else {
        None
    };
    let (echo, echo_cpu) = echo.map_or((None, None), |(m, c)| (Some(m), c));

    let workers = cpu::workers_or_found(&args.worker_pids);
    let cpu_before: Vec<Option<f64>> = workers.iter().map(|p| procstat::cpu_seconds(*p)).collect();
    let peak = Arc::new(Mutex::new(None::<f64>));
    let sampler = tokio::spawn(sample_rss(workers.clone(), peak.clone()));
    let db_before = db_snapshot(settings).await;
    let split = cpu::Sampler::start(workers.clone());
    let route = Route::queue(&settings.topology.request_queue);
    let load = Load {
        cluster: &cluster,
        route: &route,
        reply_queue: &settings.topology.reply_queue,
        run_id: &run_id,
        requests: args.requests,
        rate: args.rate,
        concurrency: args.concurrency,
        until: None,
        published: None,
    };
    let worker = phase::run(&load, &body).await?;
    sampler.abort();
    let worker_cpu = split.finish().await;
    let database_per_request = match db_before {
        Some(before) if worker.answered > 0 => db_snapshot(settings).await.map(|after| {
            let cost = after.since(&before);
            let n = worker.answered as f64;
            DbCostPerRequest {
                wal_bytes: cost.wal_bytes as f64 / n,
                rows: cost.rows as f64 / n,
                index_entries: cost.index_entries as f64 / n,
            }
        }),
        _ => None,
    };
    let cpu: Option<f64> = if workers.is_empty() {
        None
    } else {
        workers
            .iter()
            .zip(cpu_before)
            .map(|(pid, before)| Some(procstat::cpu_seconds(*pid)? - before?))
            .sum()
    };

    let report = Report {
        processes_per_request: args.processes_per_request,
        body_bytes,
        worker_processes_per_s: worker.requests_per_s * args.processes_per_request as f64,
        worker_over_echo: echo
            .as_ref()
            .map(|e| worker.requests_per_s / e.requests_per_s.max(f64::EPSILON)),
        worker_cpu_s_per_1000_requests: cpu
            .filter(|_| worker.answered > 0)
            .map(|c| c * 1000.0 / worker.answered as f64),
        worker_peak_rss_mib: *peak
            .lock()
            .map_err(|_| anyhow::anyhow!("sampler panicked"))?,
        database_per_request,
        echo,
        echo_cpu,
        worker,
        worker_cpu,
    };
    print_report(&report, args.json)?;
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    let complete = report.worker.answered == args.requests && report.worker.errors == 0;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// PostgreSQL's counters, or `None` (with a warning) when they cannot be
/// read: the cost report is extra, the run goes on.
async fn db_snapshot(settings: &Settings) -> Option<store::stats::Snapshot> {
    let read = async {
        let pool = store::connect_pool(settings.database_url.expose(), 1)?;
        let client = pool.get().await?;
        store::stats::snapshot(&client).await
    };
    match read.await {
        Ok(snapshot) => Some(snapshot),
        Err(e) => {
            eprintln!("cannot read PostgreSQL's counters: {e}");
            None
        }
    }
}

/// Loads the synthetic service instances, refusing a database with other
/// data in it unless `allow_foreign_data`: the load test adds rows there
/// that nothing removes.
async fn prepare_service_instances(
    settings: &Settings,
    count: i64,
    allow_foreign_data: bool,
) -> anyhow::Result<()> {
    super::migrate::prepare_database(settings).await?;
    let pool = store::connect_pool(settings.database_url.expose(), 1)?;
    let mut client = pool.get().await?;
    if !allow_foreign_data
        && store::service_instance::has_foreign_rows(&client, LOAD_BIZ, LOAD_SI_BASE).await?
    {
        anyhow::bail!(
            "the database at {} holds service instances or processes that a load test did not make; \
             the load test would add its own rows beside them. Use a database of its own, \
             or pass --allow-foreign-data",
            redact_url(settings.database_url.expose())
        );
    }
    let rows: Vec<ServiceInstanceRow> = (0..count)
        .map(|i| ServiceInstanceRow {
            id: LOAD_SI_BASE + i,
            bk_biz_id: LOAD_BIZ,
            bk_supplier_account: "0".to_owned(),
            name: format!("loadtest-{i}"),
            service_template_id: 0,
            bk_host_id: 1,
        })
        .collect();
    store::service_instance::upsert_all(&mut client, &rows).await?;
    Ok(())
}

/// A request of about 1.9 KB with `processes` processes and bind_info,
/// unique to this run so that every request creates rows.
fn request_body(run_id: &str, i: usize, processes: usize, service_instances: i64) -> Vec<u8> {
    let processes: Vec<serde_json::Value> = (0..processes)
        .map(|p| {
            json!({"process_info": {
                "bk_process_name": format!("{run_id}-{i}-{p}"),
                "bk_func_name": format!("func-{run_id}-{i}-{p}"),
                "bk_start_param_regex": "--port=\\d+",
                "work_path": "/data/app/current",
                "pid_file": "/data/app/run/app.pid",
                "start_cmd": "./bin/start.sh --daemon",
                "stop_cmd": "./bin/stop.sh",
                "user": "app",
                "proc_num": 1, "priority": 1, "timeout": 30, "auto_start": true,
                "bind_info": [{"enable": true, "ip": "127.0.0.1", "port": "8000-8010", "protocol": "1", "template_row_id": p}]
            }})
        })
        .collect();
    let si = LOAD_SI_BASE + (i as i64 % service_instances);
    serde_json::to_vec(&json!({
        "request_id": format!("{run_id}-{i}"),
        "bk_biz_id": LOAD_BIZ,
        "service_instance_id": si,
        "bk_username": "loadtest",
        "processes": processes,
    }))
    .unwrap_or_default()
}

async fn sample_rss(pids: Vec<u32>, peak: Arc<Mutex<Option<f64>>>) {
    loop {
        if pids.is_empty() {
            return;
        }
        let total: Option<f64> = pids.iter().map(|p| procstat::rss_mib(*p)).sum();
        if let (Some(total), Ok(mut peak)) = (total, peak.lock()) {
            *peak = Some(peak.map_or(total, |p| p.max(total)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "{} processes per request, {} bytes per request",
        report.processes_per_request, report.body_bytes
    );
    println!(
        "{:<8} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "mode",
        "requests",
        "answered",
        "seconds",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    let row = |name: &str, m: &Measured| {
        println!(
            "{name:<8} {:>9} {:>9} {:>8.2} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7}",
            m.requests,
            m.answered,
            m.seconds,
            m.requests_per_s,
            m.p50_ms,
            m.p90_ms,
            m.p99_ms,
            m.max_ms,
            m.errors
        );
    };
    if let Some(echo) = &report.echo {
        row("echo", echo);
    }
    row("worker", &report.worker);
    println!("worker processes/s: {:.0}", report.worker_processes_per_s);
    if let Some(ratio) = report.worker_over_echo {
        println!("worker / echo: {ratio:.2}");
    }
    if let Some(cpu) = report.worker_cpu_s_per_1000_requests {
        println!("worker CPU per 1000 requests: {cpu:.3} s");
    }
    if let Some(rss) = report.worker_peak_rss_mib {
        println!("worker peak RSS: {rss:.1} MiB");
    }
    if let Some(db) = &report.database_per_request {
        println!(
            "PostgreSQL per request: {:.0} WAL bytes, {:.1} rows, {:.1} index entries",
            db.wal_bytes, db.rows, db.index_entries
        );
    }
    for (name, split) in [("echo", &report.echo_cpu), ("worker", &report.worker_cpu)] {
        if let Some(split) = split {
            print_cpu(name, split);
        }
    }
    Ok(())
}

/// One line: where the machine's CPU went during a phase.
fn print_cpu(name: &str, split: &cpu::CpuSplit) {
    let parties: Vec<String> = cpu::PARTIES
        .iter()
        .map(|p| {
            format!(
                "{} {:.0} %",
                p.label(),
                split.parties_pct.get(p).copied().unwrap_or(0.0)
            )
        })
        .collect();
    println!(
        "{name} phase CPU: machine busy {:.0} % of {} cores ({})",
        split.busy_pct,
        split.cores,
        parties.join(", ")
    );
}
