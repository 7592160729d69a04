//! One measured run: publish N requests to a queue, wait for N replies on a
//! private inbox, and record each publish-to-reply latency.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use hdrhistogram::Histogram;
use lapin::{BasicProperties, options::BasicPublishOptions, types::ShortString};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::broker::{self, Cluster, Inbox, started};

/// Longest silence tolerated while waiting for replies.
const REPLY_IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Most confirms awaited at once while publishing.
const CONFIRMS_IN_FLIGHT: usize = 1024;
/// Width of one throughput-over-time bucket.
pub const THROUGHPUT_BUCKET: Duration = Duration::from_millis(250);
/// Largest latency the histogram keeps exactly (longer ones are clamped):
/// one hour, in microseconds.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// How a phase is driven.
pub struct Load<'a> {
    pub cluster: &'a Cluster,
    pub queue: &'a str,
    pub run_id: &'a str,
    pub requests: usize,
    pub rate: Option<f64>,
    pub concurrency: usize,
}

/// What a phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub requests: usize,
    pub answered: usize,
    pub errors: usize,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Publish-to-reply latencies in microseconds.
    #[serde(skip)]
    pub latency_us: Histogram<u64>,
    /// Replies received in each [`THROUGHPUT_BUCKET`] since the phase began.
    #[serde(skip)]
    pub replies_per_bucket: Vec<u32>,
}

/// Publishes `body(i)` for every request and measures until all replies are in.
pub async fn run(load: &Load<'_>, body: impl Fn(usize) -> Vec<u8>) -> anyhow::Result<Measured> {
    let broker = broker::connect(load.cluster, "procinst loadtest").await?;
    let inbox = Inbox::open(&broker.consume).await?;
    let reply_to = inbox.name.clone();
    let start = Instant::now();
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..load.requests).map(|_| AtomicU64::new(0)).collect());
    let permits = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let reader = tokio::spawn(read_replies(
        inbox,
        load.requests,
        start,
        sent.clone(),
        permits.clone(),
    ));

    // Each publish is started (its frames queued) in turn and awaited,
    // written and then confirmed, with the others.
    let queue = ShortString::from(load.queue);
    let mut confirms = FuturesUnordered::new();
    for i in 0..load.requests {
        permits.acquire().await?.forget();
        if let Some(rate) = load.rate.filter(|r| *r > 0.0) {
            let due =
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into());
            tokio::pin!(due);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut due => break,
                    Some(confirmed) = confirms.next() => confirmed?,
                }
            }
        }
        let correlation = format!("{}-{i}", load.run_id);
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(correlation.as_str().into());
        sent[i].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let channel = broker.publish.clone();
        let queue = queue.clone();
        let body = body(i);
        let publish = async move {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue,
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?;
            anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a request");
            Ok(())
        };
        confirms.push(started(publish).await);
        while confirms.len() >= CONFIRMS_IN_FLIGHT {
            if let Some(confirmed) = confirms.next().await {
                confirmed?;
            }
        }
    }
    while let Some(confirmed) = confirms.next().await {
        confirmed?;
    }
    let replies = reader.await??;
    let seconds = start.elapsed().as_secs_f64();
    broker.close().await;
    Ok(summarize(load.requests, replies, seconds))
}

/// What the reply reader saw.
struct Replies {
    latency_us: Histogram<u64>,
    per_bucket: Vec<u32>,
    errors: usize,
}

async fn read_replies(
    inbox: Inbox,
    expected: usize,
    start: Instant,
    sent: Arc<Vec<AtomicU64>>,
    permits: Arc<Semaphore>,
) -> anyhow::Result<Replies> {
    let mut seen = Replies {
        latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?,
        per_bucket: Vec::new(),
        errors: 0,
    };
    let mut replies = Box::pin(inbox.replies());
    while (seen.latency_us.len() as usize) < expected {
        let Ok(Some(reply)) = tokio::time::timeout(REPLY_IDLE_LIMIT, replies.next()).await else {
            eprintln!(
                "no reply for {REPLY_IDLE_LIMIT:?}; stopping with {} of {expected}",
                seen.latency_us.len()
            );
            break;
        };
        let reply = reply?;
        let now = start.elapsed();
        let index = reply
            .correlation_id
            .as_deref()
            .and_then(|c| c.rsplit('-').next())
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < sent.len());
        let Some(index) = index else { continue };
        let latency = Duration::from_nanos(
            (now.as_nanos() as u64).saturating_sub(sent[index].load(Ordering::Relaxed)),
        );
        seen.latency_us
            .saturating_record((latency.as_micros() as u64).clamp(1, LATENCY_MAX_US));
        let bucket = (now.as_millis() / THROUGHPUT_BUCKET.as_millis()) as usize;
        if seen.per_bucket.len() <= bucket {
            seen.per_bucket.resize(bucket + 1, 0);
        }
        seen.per_bucket[bucket] += 1;
        if !reply.body.starts_with(br#"{"result":true"#) {
            seen.errors += 1;
        }
        permits.add_permits(1);
    }
    Ok(seen)
}

fn summarize(requests: usize, replies: Replies, seconds: f64) -> Measured {
    let h = &replies.latency_us;
    let ms = |q: f64| -> f64 {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let answered = h.len() as usize;
    Measured {
        requests,
        answered,
        errors: replies.errors,
        seconds,
        requests_per_s: answered as f64 / seconds.max(f64::EPSILON),
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
        latency_us: replies.latency_us,
        replies_per_bucket: replies.per_bucket,
    }
}
