//! One measured run: publish N requests by a route (or fewer, when told to
//! stop), wait for their replies on a private inbox, and record each
//! publish-to-reply latency.

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
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Cluster, Inbox, started};
use crate::config::Route;

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
    /// The exchange and routing key each request is published with.
    pub route: &'a Route,
    /// The reply queue, which the phase's private inbox is named after.
    pub reply_queue: &'a str,
    pub run_id: &'a str,
    pub requests: usize,
    pub rate: Option<f64>,
    pub concurrency: usize,
    /// Stop publishing once this is cancelled (at most `requests` are sent
    /// either way); the phase then waits for the replies of those sent.
    pub until: Option<&'a CancellationToken>,
    /// Cancelled once every request is published and confirmed.
    pub published: Option<&'a CancellationToken>,
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
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Seconds from the phase's start until every request was published
    /// and confirmed by the broker.
    pub published_s: f64,
    /// Publish-to-reply latencies in microseconds.
    #[serde(skip)]
    pub latency_us: Histogram<u64>,
    /// Requests published in each [`THROUGHPUT_BUCKET`] since the phase
    /// began.
    #[serde(skip)]
    pub published_per_bucket: Vec<u32>,
    /// Replies received in each [`THROUGHPUT_BUCKET`] since the phase began.
    #[serde(skip)]
    pub replies_per_bucket: Vec<u32>,
    /// The latencies of the replies received in each [`THROUGHPUT_BUCKET`].
    #[serde(skip)]
    pub latency_per_bucket: Vec<BucketLatency>,
}

/// Publish-to-reply latencies of the replies of one [`THROUGHPUT_BUCKET`],
/// in milliseconds (all zero for a bucket without replies).
#[derive(Debug, Clone, Copy, Default)]
pub struct BucketLatency {
    pub p50_ms: f64,
    pub max_ms: f64,
}

/// Publishes `body(i)` for every request (until `load.until` is
/// cancelled) and measures until all replies of those published are in.
pub async fn run(load: &Load<'_>, body: impl Fn(usize) -> Vec<u8>) -> anyhow::Result<Measured> {
    // Whatever happens, `published` ends up cancelled: a caller that
    // stopped the workers until then continues them.
    let _published_at_the_latest = load.published.map(|t| t.clone().drop_guard());
    let broker = broker::connect(load.cluster, "procinst loadtest").await?;
    let inbox = Inbox::open(&broker.consume, load.reply_queue).await?;
    let reply_to = inbox.name.clone();
    let start = Instant::now();
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..load.requests).map(|_| AtomicU64::new(0)).collect());
    let permits = Arc::new(Semaphore::new(load.concurrency.max(1)));
    // How many replies to wait for: known from the start unless the phase
    // may be stopped early, else once publishing has stopped.
    let (published, expected) = watch::channel(load.until.is_none().then_some(load.requests));
    let reader = tokio::spawn(read_replies(
        inbox,
        expected,
        start,
        sent.clone(),
        permits.clone(),
    ));
    let stopped = async {
        match load.until {
            Some(until) => until.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);

    // Each publish is started (its frames queued) in turn and awaited,
    // written and then confirmed, with the others.
    let exchange = ShortString::from(load.route.exchange.as_str());
    let routing_key = ShortString::from(load.route.routing_key.as_str());
    let mut confirms = FuturesUnordered::new();
    let mut count = 0;
    'publish: for i in 0..load.requests {
        tokio::select! {
            biased;
            _ = &mut stopped => break 'publish,
            permit = permits.acquire() => permit?.forget(),
        }
        if let Some(rate) = load.rate.filter(|r| *r > 0.0) {
            let due =
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into());
            tokio::pin!(due);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break 'publish,
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
        let (exchange, routing_key) = (exchange.clone(), routing_key.clone());
        let body = body(i);
        let publish = async move {
            let confirm = channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?;
            anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a request");
            Ok(())
        };
        confirms.push(started(publish).await);
        count = i + 1;
        while confirms.len() >= CONFIRMS_IN_FLIGHT {
            if let Some(confirmed) = confirms.next().await {
                confirmed?;
            }
        }
    }
    let _ = published.send(Some(count));
    while let Some(confirmed) = confirms.next().await {
        confirmed?;
    }
    let published_s = start.elapsed().as_secs_f64();
    if let Some(all) = load.published {
        all.cancel();
    }
    let mut published_per_bucket = Vec::new();
    for at in sent.iter().take(count) {
        let bucket = (at.load(Ordering::Relaxed) / THROUGHPUT_BUCKET.as_nanos() as u64) as usize;
        if published_per_bucket.len() <= bucket {
            published_per_bucket.resize(bucket + 1, 0);
        }
        published_per_bucket[bucket] += 1;
    }
    let replies = reader.await??;
    let seconds = start.elapsed().as_secs_f64();
    broker.close().await;
    let mut measured = summarize(count, replies, seconds, published_s);
    measured.published_per_bucket = published_per_bucket;
    Ok(measured)
}

impl Measured {
    /// Requests published and not yet answered at the end of each
    /// [`THROUGHPUT_BUCKET`].
    pub fn unanswered_per_bucket(&self) -> Vec<u32> {
        let buckets = self
            .published_per_bucket
            .len()
            .max(self.replies_per_bucket.len());
        let (mut published, mut answered) = (0u64, 0u64);
        (0..buckets)
            .map(|i| {
                published += u64::from(self.published_per_bucket.get(i).copied().unwrap_or(0));
                answered += u64::from(self.replies_per_bucket.get(i).copied().unwrap_or(0));
                u32::try_from(published.saturating_sub(answered)).unwrap_or(u32::MAX)
            })
            .collect()
    }
}

/// What the reply reader saw.
struct Replies {
    latency_us: Histogram<u64>,
    per_bucket: Vec<u32>,
    /// Each bucket's latencies, in microseconds.
    latencies_per_bucket: Vec<Vec<u32>>,
    errors: usize,
}

async fn read_replies(
    inbox: Inbox,
    mut expected: watch::Receiver<Option<usize>>,
    start: Instant,
    sent: Arc<Vec<AtomicU64>>,
    permits: Arc<Semaphore>,
) -> anyhow::Result<Replies> {
    let mut seen = Replies {
        latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?,
        per_bucket: Vec::new(),
        latencies_per_bucket: Vec::new(),
        errors: 0,
    };
    let mut replies = Box::pin(inbox.replies());
    loop {
        let target = *expected.borrow_and_update();
        if target.is_some_and(|t| seen.latency_us.len() as usize >= t) {
            break;
        }
        let next = tokio::select! {
            next = tokio::time::timeout(REPLY_IDLE_LIMIT, replies.next()) => next,
            Ok(()) = expected.changed(), if target.is_none() => continue,
        };
        let Ok(Some(reply)) = next else {
            eprintln!(
                "no reply for {REPLY_IDLE_LIMIT:?}; stopping with {} of {}",
                seen.latency_us.len(),
                target.map_or_else(|| "the requests sent".to_owned(), |t| t.to_string())
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
        let latency_us = (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        seen.latency_us.saturating_record(latency_us);
        let bucket = (now.as_millis() / THROUGHPUT_BUCKET.as_millis()) as usize;
        if seen.per_bucket.len() <= bucket {
            seen.per_bucket.resize(bucket + 1, 0);
            seen.latencies_per_bucket.resize(bucket + 1, Vec::new());
        }
        seen.per_bucket[bucket] += 1;
        seen.latencies_per_bucket[bucket].push(u32::try_from(latency_us).unwrap_or(u32::MAX));
        if !reply.body.starts_with(br#"{"result":true"#) {
            seen.errors += 1;
        }
        permits.add_permits(1);
    }
    Ok(seen)
}

fn summarize(requests: usize, replies: Replies, seconds: f64, published_s: f64) -> Measured {
    let h = &replies.latency_us;
    let ms = |q: f64| -> f64 {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let answered = h.len() as usize;
    let latency_per_bucket = replies
        .latencies_per_bucket
        .into_iter()
        .map(|mut us| {
            us.sort_unstable();
            let ms = |us: Option<&u32>| us.map_or(0.0, |v| f64::from(*v) / 1000.0);
            BucketLatency {
                // The nearest-rank median.
                p50_ms: ms(us.get(us.len().saturating_sub(1) / 2)),
                max_ms: ms(us.last()),
            }
        })
        .collect();
    Measured {
        requests,
        answered,
        errors: replies.errors,
        seconds,
        requests_per_s: answered as f64 / seconds.max(f64::EPSILON),
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
        published_s,
        latency_us: replies.latency_us,
        published_per_bucket: Vec::new(),
        replies_per_bucket: replies.per_bucket,
        latency_per_bucket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(latencies_per_bucket: Vec<Vec<u32>>) -> Replies {
        let mut latency_us = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("bounds");
        for us in latencies_per_bucket.iter().flatten() {
            latency_us.record(u64::from(*us)).expect("in range");
        }
        Replies {
            latency_us,
            per_bucket: latencies_per_bucket
                .iter()
                .map(|b| b.len() as u32)
                .collect(),
            latencies_per_bucket,
            errors: 0,
        }
    }

    #[test]
    fn each_bucket_gets_its_own_percentiles() {
        let slow_tail: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let m = summarize(101, replies(vec![vec![], slow_tail, vec![7000]]), 2.0, 1.0);
        assert_eq!(m.answered, 101);
        assert_eq!(m.latency_per_bucket.len(), 3);
        assert_eq!(m.latency_per_bucket[0].max_ms, 0.0);
        let b = m.latency_per_bucket[1];
        assert_eq!((b.p50_ms, b.max_ms), (50.0, 100.0));
        let one = m.latency_per_bucket[2];
        assert_eq!((one.p50_ms, one.max_ms), (7.0, 7.0));
        assert!(m.p95_ms >= m.p90_ms && m.p99_ms >= m.p95_ms, "{m:?}");
    }

    #[test]
    fn the_unanswered_are_the_published_less_the_answered_so_far() {
        let mut m = summarize(
            5,
            replies(vec![vec![], vec![1000, 1000], vec![1000; 3]]),
            1.0,
            0.5,
        );
        m.published_per_bucket = vec![4, 1];
        assert_eq!(m.unanswered_per_bucket(), vec![4, 3, 0]);
    }
}
