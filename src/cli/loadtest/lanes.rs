//! `loadtest --backfill N`: the two lanes against each other. A backfill of
//! N bulk requests drains three times against the same running worker(s):
//! alone, then while interactive requests arrive at a fixed rate, then
//! alone again. The run reports the interactive requests' publish-to-reply
//! latency, the bulk lane's drain rate in each phase, and the ratio of the
//! second drain's rate to the mean of the other two (the database grows
//! from one phase to the next, which alone slows each drain a little).
//!
//! - A drain is timed from the phase's first bulk publish to its last bulk
//!   reply, so it includes the time the load generator takes to queue the
//!   backlog (it publishes as fast as confirms allow, with no bound on the
//!   replies awaited); the phases are alike in that, so the ratio compares
//!   like with like. The time the backlog took to be queued, and the
//!   largest backlog that stood (published, not yet answered), are
//!   reported beside it.
//! - Interactive requests are published from the second phase's start
//!   until its last bulk reply, at `--rate` (50/s by default) and at most
//!   `--requests` of them; each is awaited to the end.
//! - Every phase has its own request ids and process names, so nothing is
//!   answered from a stored reply. The bulk-alone phase runs first, on the
//!   smaller database, which if anything favours it in the ratio.
//! - Each stream (bulk, interactive) has its own inbox, so their replies
//!   never mix.
//! - With `--queue-first`, the workers are stopped (SIGSTOP) while each
//!   backlog is queued and continued (SIGCONT) once all of it is confirmed:
//!   the whole backlog then stands, the drain is timed from that moment,
//!   and interactive requests start with it, so that no publishing of the
//!   backlog competes with the drain for the machine.

use std::time::Duration;

use anyhow::Context;
use lapin::{
    options::QueueDeclareOptions,
    types::{FieldTable, ShortString},
};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    LoadtestArgs, cpu,
    phase::{self, Load, Measured},
    request_body,
};
use crate::broker::{self, Cluster};
use crate::config::{Lane, Route, Settings};

/// Interactive requests per second when `--rate` is not given.
pub const DEFAULT_RATE: f64 = 50.0;

/// What a lanes run measured.
#[derive(Debug, Serialize)]
pub struct LanesReport {
    pub mode: &'static str,
    pub processes_per_request: usize,
    pub body_bytes: usize,
    /// Bulk requests in each phase's backlog.
    pub backfill: usize,
    /// Interactive requests per second asked for.
    pub interactive_rate: f64,
    /// Phase 1: the backlog drains with no interactive traffic.
    pub bulk_alone: Measured,
    /// Where the machine's CPU went during phase 1.
    pub bulk_alone_cpu: Option<cpu::CpuSplit>,
    /// Phase 2: the backlog drains again while interactive requests arrive.
    pub bulk_with_interactive: Measured,
    /// Phase 3: a third backlog drains alone, on the database the first two
    /// grew, so that the ratio compares phase 2 with the mean of the drains
    /// on either side of it rather than with one on a smaller database.
    pub bulk_alone_again: Measured,
    /// The interactive requests of phase 2.
    pub interactive: Measured,
    /// Where the machine's CPU went during phase 2.
    pub with_interactive_cpu: Option<cpu::CpuSplit>,
    /// The most bulk requests published and not yet answered at once, in
    /// phase 1 and in phase 2: the backlog that actually stood, since the
    /// worker drains while the backlog is being queued.
    pub bulk_most_unanswered: [u32; 2],
    /// Phase 2's bulk drain rate over the mean of phases 1 and 3.
    pub bulk_with_interactive_over_alone: f64,
    /// Whether phase 2 ran out of interactive requests (`--requests`)
    /// before its backlog drained: then part of its drain had no
    /// interactive traffic and the ratio flatters it.
    pub interactive_ran_out: bool,
    /// Whether the backlogs were queued with the workers stopped, and the
    /// drains timed from when they were continued.
    pub queued_first: bool,
}

/// What every request of the run looks like.
#[derive(Clone, Copy)]
struct Shape {
    processes: usize,
    service_instances: i64,
}

/// One stream of requests to one lane, owned so that it runs as a task of
/// its own: the bulk publisher's bursts then never delay an interactive
/// publish.
struct Stream {
    route: Route,
    reply_queue: String,
    run_id: String,
    requests: usize,
    rate: Option<f64>,
    concurrency: usize,
    until: Option<CancellationToken>,
    published: Option<CancellationToken>,
}

fn spawn(cluster: &Cluster, shape: Shape, stream: Stream) -> JoinHandle<anyhow::Result<Measured>> {
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let load = Load {
            cluster: &cluster,
            route: &stream.route,
            reply_queue: &stream.reply_queue,
            run_id: &stream.run_id,
            requests: stream.requests,
            rate: stream.rate,
            concurrency: stream.concurrency,
            until: stream.until.as_ref(),
            published: stream.published.as_ref(),
        };
        phase::run(&load, |i| {
            request_body(&stream.run_id, i, shape.processes, shape.service_instances)
        })
        .await
    })
}

/// A backlog of `backfill` bulk requests, published as fast as confirms
/// allow: every request may await its reply at once.
fn backlog(settings: &Settings, run_id: String, backfill: usize) -> Stream {
    Stream {
        route: Route::queue(&settings.topology.queue(Lane::Bulk)),
        reply_queue: settings.topology.reply_queue.clone(),
        run_id,
        requests: backfill,
        rate: None,
        concurrency: backfill,
        until: None,
        published: Some(CancellationToken::new()),
    }
}

/// Sends `signal` (`STOP`, `CONT`) to every worker.
fn signal(workers: &[u32], signal: &str) -> anyhow::Result<()> {
    for pid in workers {
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        anyhow::ensure!(sent.success(), "cannot send SIG{signal} to worker {pid}");
    }
    Ok(())
}

/// With `--queue-first`: the workers stopped until the backlog `queued`
/// says it is all confirmed, then continued. Without, nothing.
async fn queue_first(
    on: bool,
    workers: &[u32],
    queued: Option<CancellationToken>,
) -> anyhow::Result<()> {
    let Some(queued) = queued.filter(|_| on) else {
        return Ok(());
    };
    anyhow::ensure!(
        !workers.is_empty(),
        "--queue-first needs the workers' processes (--worker-pid, or `procinst run` on this machine)"
    );
    queued.cancelled().await;
    signal(workers, "CONT")
}

/// A drain timed from when its backlog was all queued (with the workers
/// stopped until then).
fn from_queued(mut drain: Measured) -> Measured {
    drain.seconds -= drain.published_s;
    drain.requests_per_s = drain.answered as f64 / drain.seconds.max(f64::EPSILON);
    drain
}

pub async fn run(
    settings: &Settings,
    args: &LoadtestArgs,
    cluster: &Cluster,
    run_id: &str,
    backfill: usize,
) -> anyhow::Result<LanesReport> {
    anyhow::ensure!(backfill > 0, "--backfill must be at least 1");
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    anyhow::ensure!(
        rate > 0.0 && rate.is_finite(),
        "--rate must be a positive number of interactive requests per second"
    );
    for lane in Lane::ALL {
        require_consumer(cluster, &settings.topology.queue(lane)).await?;
    }
    let shape = Shape {
        processes: args.processes_per_request,
        service_instances: args.service_instances.max(1),
    };
    let workers = cpu::workers_or_found(&args.worker_pids);
    let workers_again = workers.clone();

    let first = args.queue_first;
    let stop = |backlog: &Stream| -> anyhow::Result<Option<CancellationToken>> {
        if first {
            signal(&workers, "STOP")?;
        }
        Ok(backlog.published.clone())
    };

    eprintln!("bulk alone: {backfill} bulk requests");
    let alone = backlog(settings, format!("{run_id}b"), backfill);
    let queued = stop(&alone)?;
    let bulk = spawn(cluster, shape, alone);
    let resumed = queue_first(first, &workers, queued).await;
    let sampler = cpu::Sampler::start(workers.clone());
    resumed?;
    let mut bulk_alone = bulk.await??;
    let bulk_alone_cpu = sampler.finish().await;

    eprintln!("bulk with interactive: {backfill} bulk requests, interactive at {rate}/s");
    let drained = CancellationToken::new();
    let beside = backlog(settings, format!("{run_id}w"), backfill);
    let queued = stop(&beside)?;
    let bulk = spawn(cluster, shape, beside);
    let resumed = queue_first(first, &workers, queued).await;
    let sampler = cpu::Sampler::start(workers.clone());
    resumed?;
    let interactive = spawn(
        cluster,
        shape,
        Stream {
            route: Route::queue(&settings.topology.queue(Lane::Interactive)),
            reply_queue: settings.topology.reply_queue.clone(),
            run_id: format!("{run_id}i"),
            requests: args.requests,
            rate: Some(rate),
            concurrency: args.concurrency,
            until: Some(drained.clone()),
            published: None,
        },
    );
    let bulk = bulk.await;
    drained.cancel();
    let interactive = interactive.await??;
    let mut bulk_with_interactive = bulk??;
    let with_interactive_cpu = sampler.finish().await;

    eprintln!("bulk alone again: {backfill} bulk requests");
    let again = backlog(settings, format!("{run_id}a"), backfill);
    let queued = stop(&again)?;
    let bulk = spawn(cluster, shape, again);
    queue_first(first, &workers_again, queued).await?;
    let mut bulk_alone_again = bulk.await??;
    if first {
        bulk_alone = from_queued(bulk_alone);
        bulk_with_interactive = from_queued(bulk_with_interactive);
        bulk_alone_again = from_queued(bulk_alone_again);
    }
    let alone_rate = (bulk_alone.requests_per_s + bulk_alone_again.requests_per_s) / 2.0;

    // The interactive stream stops at the backlog's last reply; having
    // sent all it may before that means it ran out.
    let interactive_ran_out = interactive.requests == args.requests
        && interactive.published_s < bulk_with_interactive.seconds - 1.0 / rate;
    let most_unanswered = |m: &Measured| m.unanswered_per_bucket().into_iter().max().unwrap_or(0);
    Ok(LanesReport {
        mode: "lanes",
        bulk_most_unanswered: [
            most_unanswered(&bulk_alone),
            most_unanswered(&bulk_with_interactive),
        ],
        processes_per_request: args.processes_per_request,
        body_bytes: request_body(run_id, 0, shape.processes, shape.service_instances).len(),
        backfill,
        interactive_rate: rate,
        bulk_with_interactive_over_alone: bulk_with_interactive.requests_per_s
            / alone_rate.max(f64::EPSILON),
        bulk_alone_again,
        bulk_alone,
        bulk_alone_cpu,
        bulk_with_interactive,
        interactive,
        with_interactive_cpu,
        interactive_ran_out,
        queued_first: first,
    })
}

impl LanesReport {
    /// The table's rows, as printed and drawn: lane, phase, figures, and
    /// whether the row has latencies.
    pub fn rows(&self) -> [(&'static str, &'static str, &Measured, bool); 4] {
        [
            ("bulk", "alone", &self.bulk_alone, false),
            (
                "bulk",
                "with interactive",
                &self.bulk_with_interactive,
                false,
            ),
            ("bulk", "alone again", &self.bulk_alone_again, false),
            ("interactive", "with bulk", &self.interactive, true),
        ]
    }

    /// Every request of every phase was answered, successfully.
    pub fn complete(&self) -> bool {
        [
            (&self.bulk_alone, self.backfill),
            (&self.bulk_with_interactive, self.backfill),
            (&self.bulk_alone_again, self.backfill),
            (&self.interactive, self.interactive.requests),
        ]
        .iter()
        .all(|(m, expected)| m.requests == *expected && m.answered == *expected && m.errors == 0)
    }
}

/// Refuses to start unless the lane's queue exists and something consumes
/// it: publishing to a missing queue drops every request, and a queue
/// nobody serves would only be timed out.
pub(super) async fn require_consumer(cluster: &Cluster, queue: &str) -> anyhow::Result<()> {
    let broker = broker::connect(cluster, "procinst loadtest").await?;
    let declared = tokio::time::timeout(
        Duration::from_secs(10),
        broker.consume.queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .with_context(|| format!("RabbitMQ did not say whether queue {queue} exists"))?;
    broker.close().await;
    let declared = declared.with_context(|| {
        format!("queue {queue} does not exist: start a worker (`procinst run`) first")
    })?;
    anyhow::ensure!(
        declared.consumer_count() > 0,
        "nothing consumes queue {queue}: start a worker (`procinst run`) first"
    );
    Ok(())
}

pub fn print(report: &LanesReport) {
    println!(
        "{} processes per request, {} bytes per request",
        report.processes_per_request, report.body_bytes
    );
    println!(
        "backfill of {} bulk requests, drained alone, then again with interactive requests at {}/s",
        report.backfill, report.interactive_rate
    );
    if report.queued_first {
        println!(
            "each backlog queued whole with the workers stopped; drains timed from when they continued"
        );
    }
    println!(
        "{:<12} {:<17} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "lane",
        "phase",
        "requests",
        "answered",
        "seconds",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    for (lane, phase, m, latency) in report.rows() {
        let ms = |v: f64| {
            if latency {
                format!("{v:.1}")
            } else {
                "-".to_owned()
            }
        };
        println!(
            "{lane:<12} {phase:<17} {:>9} {:>9} {:>8.2} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>7}",
            m.requests,
            m.answered,
            m.seconds,
            m.requests_per_s,
            ms(m.p50_ms),
            ms(m.p95_ms),
            ms(m.p99_ms),
            ms(m.max_ms),
            m.errors
        );
    }
    println!(
        "bulk drain rate with interactive / alone (the mean of both): {:.2}",
        report.bulk_with_interactive_over_alone
    );
    println!(
        "bulk backlog queued in {:.2} s alone, {:.2} s with interactive; \
         most unanswered at once: {} alone, {} with interactive",
        report.bulk_alone.published_s,
        report.bulk_with_interactive.published_s,
        report.bulk_most_unanswered[0],
        report.bulk_most_unanswered[1]
    );
    if report.interactive_ran_out {
        println!(
            "warning: the {} interactive requests (--requests) were all sent {:.1} s before the backlog drained; \
             raise --requests",
            report.interactive.requests,
            report.bulk_with_interactive.seconds - report.interactive.published_s
        );
    }
    for (name, split) in [
        ("bulk alone", &report.bulk_alone_cpu),
        ("bulk with interactive", &report.with_interactive_cpu),
    ] {
        if let Some(split) = split {
            super::print_cpu(name, split);
        }
    }
}
