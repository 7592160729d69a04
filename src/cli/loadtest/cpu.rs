//! Where the machine's CPU goes during a load test: the machine's busy
//! share from /proc/stat, and the share of each party from /proc/PID/stat:
//! the worker(s), RabbitMQ, PostgreSQL, the load generator itself, and the
//! rest. Sampled at a fixed interval, so that idle time while a backlog
//! waits shows up in every run.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::procstat;

/// How often the sampler reads /proc.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The parties CPU time is split between, in report order.
pub const PARTIES: [Party; 5] = [
    Party::Worker,
    Party::Rabbitmq,
    Party::Postgresql,
    Party::Loadtest,
    Party::Other,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    Worker,
    Rabbitmq,
    Postgresql,
    Loadtest,
    Other,
}

impl Party {
    pub fn label(self) -> &'static str {
        match self {
            Party::Worker => "worker",
            Party::Rabbitmq => "rabbitmq",
            Party::Postgresql => "postgresql",
            Party::Loadtest => "loadtest",
            Party::Other => "other",
        }
    }

    /// Which party a process is, by its command name; `None` for others.
    fn of(pid: u32, comm: &str, workers: &[u32]) -> Option<Party> {
        if pid == std::process::id() {
            return Some(Party::Loadtest);
        }
        if workers.contains(&pid) {
            return Some(Party::Worker);
        }
        match comm {
            "beam.smp" | "erl_child_setup" | "epmd" | "inet_gethost" => Some(Party::Rabbitmq),
            "postgres" => Some(Party::Postgresql),
            _ => None,
        }
    }
}

/// One interval: the machine's busy share and each party's, in percent of
/// the whole machine (all cores = 100).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_s: f64,
    pub busy_pct: f64,
    pub parties_pct: HashMap<Party, f64>,
}

/// The whole run: averages over the samples, plus the samples.
#[derive(Debug, Clone, Serialize)]
pub struct CpuSplit {
    pub cores: usize,
    pub busy_pct: f64,
    pub parties_pct: HashMap<Party, f64>,
    /// Seconds of CPU the worker processes used during the run.
    pub worker_cpu_s: f64,
    pub samples: Vec<Sample>,
}

/// Samples until `stop`, then returns what it saw.
pub struct Sampler {
    task: tokio::task::JoinHandle<Vec<Sample>>,
    stop: CancellationToken,
}

impl Sampler {
    /// Starts sampling; `workers` are the worker pids (found by name when
    /// empty: processes named `procinst` other than this one).
    pub fn start(workers: Vec<u32>) -> Sampler {
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(workers, stop.clone()));
        Sampler { task, stop }
    }

    pub async fn finish(self) -> Option<CpuSplit> {
        self.stop.cancel();
        let samples = self.task.await.ok()?;
        summarize(samples)
    }
}

/// The worker pids to watch: those given, else every other `procinst`
/// process running `run`.
pub fn workers_or_found(given: &[u32]) -> Vec<u32> {
    if !given.is_empty() {
        return given.to_vec();
    }
    processes()
        .into_iter()
        .filter(|(pid, comm)| comm == "procinst" && *pid != std::process::id())
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"run"))
                .unwrap_or(false)
        })
        .map(|(pid, _)| pid)
        .collect()
}

fn processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim_end().to_owned()))
        })
        .collect()
}

/// CPU seconds used so far by each party's processes.
fn party_seconds(workers: &[u32]) -> HashMap<Party, f64> {
    let mut seconds = HashMap::new();
    for (pid, comm) in processes() {
        if let Some(party) = Party::of(pid, &comm, workers)
            && let Some(s) = procstat::cpu_seconds(pid)
        {
            *seconds.entry(party).or_insert(0.0) += s;
        }
    }
    seconds
}

async fn sample(workers: Vec<u32>, stop: CancellationToken) -> Vec<Sample> {
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last_machine = procstat::machine_jiffies();
    let mut last_parties = party_seconds(&workers);
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
        let machine = procstat::machine_jiffies();
        let parties = party_seconds(&workers);
        let elapsed = last_at.elapsed().as_secs_f64();
        last_at = Instant::now();
        if let (Some((busy0, total0)), Some((busy1, total1))) = (last_machine, machine)
            && total1 > total0
            && elapsed > 0.0
        {
            let busy_pct = 100.0 * (busy1 - busy0) as f64 / (total1 - total0) as f64;
            let cores = procstat::cores() as f64;
            let mut parties_pct: HashMap<Party, f64> = PARTIES
                .iter()
                .filter(|p| **p != Party::Other)
                .map(|p| {
                    let used = parties.get(p).copied().unwrap_or(0.0)
                        - last_parties.get(p).copied().unwrap_or(0.0);
                    (*p, (100.0 * used / elapsed / cores).max(0.0))
                })
                .collect();
            let known: f64 = parties_pct.values().sum();
            parties_pct.insert(Party::Other, (busy_pct - known).max(0.0));
            samples.push(Sample {
                at_s: start.elapsed().as_secs_f64(),
                busy_pct,
                parties_pct,
            });
        }
        last_machine = machine;
        last_parties = parties;
        if stop.is_cancelled() {
            return samples;
        }
    }
}

fn summarize(samples: Vec<Sample>) -> Option<CpuSplit> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len() as f64;
    let busy_pct = samples.iter().map(|s| s.busy_pct).sum::<f64>() / n;
    let parties_pct = PARTIES
        .iter()
        .map(|p| {
            let mean = samples
                .iter()
                .map(|s| s.parties_pct.get(p).copied().unwrap_or(0.0))
                .sum::<f64>()
                / n;
            (*p, mean)
        })
        .collect();
    let span = samples.last().map_or(0.0, |s| s.at_s);
    let cores = procstat::cores();
    let worker_cpu_s = samples
        .iter()
        .map(|s| s.parties_pct.get(&Party::Worker).copied().unwrap_or(0.0))
        .sum::<f64>()
        / n
        / 100.0
        * cores as f64
        * span;
    Some(CpuSplit {
        cores,
        busy_pct,
        parties_pct,
        worker_cpu_s,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_told_apart_by_name_and_pid() {
        assert_eq!(Party::of(1, "beam.smp", &[]), Some(Party::Rabbitmq));
        assert_eq!(Party::of(1, "postgres", &[]), Some(Party::Postgresql));
        assert_eq!(Party::of(7, "procinst", &[7]), Some(Party::Worker));
        assert_eq!(
            Party::of(std::process::id(), "procinst", &[]),
            Some(Party::Loadtest)
        );
        assert_eq!(Party::of(1, "bash", &[]), None);
    }

    #[tokio::test]
    async fn a_busy_loop_shows_as_machine_busy_time() {
        let sampler = Sampler::start(vec![]);
        let spin = tokio::task::spawn_blocking(|| {
            let until = Instant::now() + Duration::from_millis(1200);
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_mul(31).wrapping_add(1);
            }
            x
        });
        let _ = spin.await;
        let split = sampler.finish().await.expect("samples");
        // At least a quarter of one core, whatever else the machine runs.
        let quarter_core = 100.0 / split.cores as f64 * 0.25;
        assert!(split.busy_pct > quarter_core, "{split:?}");
        assert!(
            split.parties_pct[&Party::Loadtest] > quarter_core,
            "{split:?}"
        );
    }
}
