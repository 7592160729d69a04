//! What a worker's `/metrics` says over time, sampled during a fault, and
//! the figures drawn from it: how long answering stalled, how many
//! deliveries came again.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::helpers::http_get;

/// How often the worker's counters are read.
const EVERY: Duration = Duration::from_millis(50);

/// The worker's counters at one moment, `at` seconds after sampling began.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: f64,
    pub handled: u64,
    pub redelivered: u64,
    pub reconnects: u64,
}

/// Reads a worker's counters in the background until stopped.
pub struct Sampler {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(http: &str) -> Sampler {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let url = format!("http://{http}/metrics");
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some((200, body)) = http_get(&url).await {
                    let sample = Sample {
                        at: started.elapsed().as_secs_f64(),
                        handled: sum(&body, "procinst_requests_total{"),
                        redelivered: sum(&body, "procinst_redeliveries_total "),
                        reconnects: sum(&body, "procinst_reconnects_total "),
                    };
                    if let Ok(mut samples) = sink.lock() {
                        samples.push(sample);
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        Sampler {
            started,
            samples,
            task,
        }
    }

    /// Seconds since sampling began, to mark a fault with.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Stops sampling; every sample taken.
    pub fn stop(&self) -> Vec<Sample> {
        self.task.abort();
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The sum of the values of every series whose line starts with `prefix`.
fn sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The longest time without a newly answered request in a window.
#[derive(Debug)]
pub struct Stall {
    pub seconds: f64,
    /// When answering went on after that stall.
    pub resumed_at: f64,
}

impl Stall {
    /// The longest stall from `from` until `until` or until the last
    /// request was answered, whichever comes first.
    pub fn longest(samples: &[Sample], from: f64, until: f64) -> Stall {
        let total = samples.last().map(|s| s.handled).unwrap_or(0);
        let mut handled = samples
            .iter()
            .take_while(|s| s.at < from)
            .last()
            .map(|s| s.handled)
            .unwrap_or(0);
        let mut last_progress = from;
        let mut longest = Stall {
            seconds: 0.0,
            resumed_at: from,
        };
        for sample in samples.iter().filter(|s| s.at >= from && s.at < until) {
            if sample.handled > handled {
                let gap = sample.at - last_progress;
                if gap > longest.seconds {
                    longest = Stall {
                        seconds: gap,
                        resumed_at: sample.at,
                    };
                }
                handled = sample.handled;
                last_progress = sample.at;
            }
            if handled >= total {
                break;
            }
        }
        longest
    }
}
