//! `loadtest --backfill N --second-backfill M`: two businesses sharing the
//! bulk lane. A backfill of N for one business is published to the bulk
//! exchange as fast as confirms allow; once all of it is published, one of
//! M for a second business follows. The run reports the lane's drain rate
//! over both, when the second backfill was done, and that time against
//! the target: twice the time M takes at half the lane's rate.
//!
//! The two backfills differ by their routing key (the load test's business
//! and the one after it), which is what the lane shares by; their bodies
//! are the load test's requests, so that both create rows.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{
    LOAD_BIZ, LoadtestArgs,
    lanes::require_consumer,
    phase::{self, Load, Measured},
    request_body,
};
use crate::broker::Cluster;
use crate::config::{Lane, Settings};

/// What a sharing run measured.
#[derive(Debug, Serialize)]
pub struct SharingReport {
    pub mode: &'static str,
    pub first_backfill: usize,
    pub second_backfill: usize,
    pub first: Measured,
    pub second: Measured,
    /// Both backfills' requests over the first's drain, which spans the
    /// second's.
    pub lane_requests_per_s: f64,
    /// Twice the time the second backfill takes at half the lane's rate.
    pub second_target_s: f64,
    /// The second backfill's time over its target: at most 1 meets it.
    pub second_over_target: f64,
}

impl SharingReport {
    pub fn complete(&self) -> bool {
        self.first.answered == self.first_backfill
            && self.second.answered == self.second_backfill
            && self.first.errors + self.second.errors == 0
    }
}

pub async fn run(
    settings: &Settings,
    args: &LoadtestArgs,
    cluster: &Cluster,
    run_id: &str,
    first_backfill: usize,
    second_backfill: usize,
) -> anyhow::Result<SharingReport> {
    anyhow::ensure!(
        first_backfill > 0 && second_backfill > 0,
        "--backfill and --second-backfill must be at least 1"
    );
    require_consumer(cluster, &settings.topology.queue(Lane::Bulk)).await?;
    let (processes, instances) = (args.processes_per_request, args.service_instances.max(1));
    let backfill =
        |business: i64, suffix: &str, requests: usize, published: Option<CancellationToken>| {
            let cluster = cluster.clone();
            let route = settings.topology.route(Lane::Bulk, Some(business));
            let run_id = format!("{run_id}{suffix}");
            let reply_queue = settings.topology.reply_queue.clone();
            tokio::spawn(async move {
                let load = Load {
                    cluster: &cluster,
                    route: &route,
                    reply_queue: &reply_queue,
                    run_id: &run_id,
                    requests,
                    rate: None,
                    concurrency: requests,
                    until: None,
                    published: published.as_ref(),
                };
                phase::run(&load, |i| request_body(&run_id, i, processes, instances)).await
            })
        };
    eprintln!("business {LOAD_BIZ}: {first_backfill} bulk requests");
    let published = CancellationToken::new();
    let first = backfill(LOAD_BIZ, "a", first_backfill, Some(published.clone()));
    published.cancelled().await;
    eprintln!("business {}: {second_backfill} bulk requests", LOAD_BIZ + 1);
    let second = backfill(LOAD_BIZ + 1, "b", second_backfill, None).await??;
    let first = first.await??;
    let lane_requests_per_s =
        (first.answered + second.answered) as f64 / first.seconds.max(f64::EPSILON);
    let second_target_s =
        2.0 * second_backfill as f64 / (lane_requests_per_s / 2.0).max(f64::EPSILON);
    Ok(SharingReport {
        mode: "sharing",
        first_backfill,
        second_backfill,
        second_over_target: second.seconds / second_target_s,
        first,
        second,
        lane_requests_per_s,
        second_target_s,
    })
}

pub fn print(report: &SharingReport) {
    println!(
        "sharing: a backfill of {} for business {LOAD_BIZ}, then one of {} for business {} once the first was published",
        report.first_backfill,
        report.second_backfill,
        LOAD_BIZ + 1
    );
    println!(
        "bulk lane: {} requests in {:.2} s, {:.0} requests/s",
        report.first.answered + report.second.answered,
        report.first.seconds,
        report.lane_requests_per_s
    );
    println!(
        "first backfill: done after {:.2} s; second: done after {:.2} s (p50 {:.0} ms, p99 {:.0} ms)",
        report.first.seconds, report.second.seconds, report.second.p50_ms, report.second.p99_ms
    );
    println!(
        "second backfill against its target (twice its time at half the lane's rate, {:.2} s): {:.2}",
        report.second_target_s, report.second_over_target
    );
}
