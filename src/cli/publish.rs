//! `procinst publish`: bulk backfill from a JSON Lines file, with pipelined
//! publisher confirms and, with `--wait`, the replies collected.

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, Write},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use futures::{FutureExt, StreamExt, stream::FuturesUnordered};
use lapin::{BasicProperties, Confirmation, options::BasicPublishOptions};
use serde_json::Value;
use tokio::sync::watch;

use super::input::{Progress, open};
use crate::broker::{self, Cluster, Inbox, InboxReply};
use crate::config::{Lane, Route, Settings};
use crate::domain::MAX_REQUEST_ID_CHARS;

/// Times a line the broker refuses (nack) is published again.
const NACK_RETRIES: u32 = 5;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// JSON Lines file of requests; `-` or none for standard input.
    file: Option<String>,
    /// Wait for every reply; exit 0 only if all are `result: true`.
    #[arg(long)]
    wait: bool,
    /// With --wait: write the replies here, one envelope per line
    /// (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Most requests published per second (default: as fast as confirms allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Most messages awaiting a broker confirm at once.
    #[arg(long, default_value_t = 1024)]
    in_flight: usize,
    /// With --wait: give up after this many seconds without a reply.
    #[arg(long, default_value_t = 120)]
    reply_timeout_s: u64,
    /// The lane to publish to: bulk for backfills (the default), so that
    /// requests someone waits for never queue behind them; interactive for
    /// a handful of urgent lines.
    #[arg(long, value_enum, default_value = "bulk")]
    lane: Lane,
}

/// What happened to the lines of the file.
#[derive(Debug, Default)]
struct Tally {
    published: u64,
    bad_lines: u64,
    refused: u64,
}

pub async fn run(settings: &Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let (reader, size) = open(args.file.as_deref())?;
    let broker = broker::connect(&Cluster::from_settings(settings)?, "procinst publish").await?;
    broker::declare(&broker.connection, &settings.topology).await?;
    let (published_tx, published_rx) = watch::channel(None);
    let collector = if args.wait {
        let inbox = Inbox::open(&broker.consume, &settings.topology.reply_queue).await?;
        let out: Box<dyn Write + Send> = match &args.out {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        let name = inbox.name.clone();
        let timeout = Duration::from_secs(args.reply_timeout_s);
        Some((
            name,
            tokio::spawn(collect(inbox, out, published_rx, timeout)),
        ))
    } else {
        None
    };
    let reply_to = collector.as_ref().map(|(name, _)| name.clone());
    let tally = publish_lines(&broker.publish, settings, &args, reader, size, reply_to).await?;
    let _ = published_tx.send(Some(tally.published));

    eprintln!(
        "published {}, bad lines {}, refused by the broker {}",
        tally.published, tally.bad_lines, tally.refused
    );
    let mut ok = tally.bad_lines == 0 && tally.refused == 0;
    if let Some((_, handle)) = collector {
        let answers = handle.await??;
        let success = answers.by_code.get(&0).copied().unwrap_or(0);
        let errors: Vec<String> = answers
            .by_code
            .iter()
            .filter(|(code, _)| **code != 0)
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        eprintln!(
            "answered {} of {}: ok {success}{}{}",
            answers.total,
            tally.published,
            if errors.is_empty() { "" } else { ", errors " },
            errors.join(", ")
        );
        ok &= answers.total == tally.published && success == tally.published;
    }
    broker.close().await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn publish_lines(
    channel: &lapin::Channel,
    settings: &Settings,
    args: &PublishArgs,
    reader: Box<dyn BufRead + Send>,
    size: Option<u64>,
    reply_to: Option<String>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut pending = FuturesUnordered::new();
    let mut progress = Progress::new(size);
    let started = Instant::now();
    let mut position = 0u64;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read line {number}"))?;
        position += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (request_id, business) = match request_of(&line) {
            Ok(found) => found,
            Err(why) => {
                eprintln!("line {number}: {why}; skipped");
                tally.bad_lines += 1;
                continue;
            }
        };
        if let Some(rate) = args.rate.filter(|r| *r > 0.0) {
            let due = started
                + Duration::from_secs_f64((tally.published + pending.len() as u64) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        while pending.len() >= args.in_flight.max(1) {
            if let Some(done) = pending.next().await {
                settle(done, channel, &mut tally).await?;
            }
        }
        let properties = properties(&request_id, reply_to.as_deref());
        let body = line.into_bytes();
        let route = settings.topology.route(args.lane, business);
        let confirm = send(channel, &route, &body, properties.clone()).await?;
        pending.push(confirmed(confirm, route, body, properties));
        // Count the confirms that are in already, without waiting.
        while let Some(Some(done)) = pending.next().now_or_never() {
            settle(done, channel, &mut tally).await?;
        }
        let (confirmed_lines, sent) = (tally.published, tally.published + pending.len() as u64);
        progress.update(position, || {
            format!("sent {sent} lines, {confirmed_lines} confirmed")
        });
    }
    while let Some(done) = pending.next().await {
        settle(done, channel, &mut tally).await?;
    }
    progress.finish();
    Ok(tally)
}

type Confirmed = (
    Result<Confirmation, lapin::Error>,
    Route,
    Vec<u8>,
    BasicProperties,
);

async fn confirmed(
    confirm: lapin::PublisherConfirm,
    route: Route,
    body: Vec<u8>,
    properties: BasicProperties,
) -> Confirmed {
    (confirm.await, route, body, properties)
}

/// Counts one confirm; a nacked line is published again (and awaited
/// inline: nacks are rare) up to [`NACK_RETRIES`] times.
async fn settle(
    done: Confirmed,
    channel: &lapin::Channel,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let (mut result, route, body, properties) = done;
    for attempt in 0..=NACK_RETRIES {
        if !matches!(result?, Confirmation::Nack(_)) {
            tally.published += 1;
            return Ok(());
        }
        if attempt == NACK_RETRIES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        result = send(channel, &route, &body, properties.clone())
            .await?
            .await;
    }
    tally.refused += 1;
    Ok(())
}

async fn send(
    channel: &lapin::Channel,
    route: &Route,
    body: &[u8],
    properties: BasicProperties,
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    channel
        .basic_publish(
            route.exchange.as_str().into(),
            route.routing_key.as_str().into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
}

fn properties(request_id: &str, reply_to: Option<&str>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(request_id.into())
        .with_correlation_id(request_id.into());
    match reply_to {
        Some(queue) => properties.with_reply_to(queue.into()),
        None => properties,
    }
}

/// The line's request_id, or why the line cannot be a request.
/// A line's `request_id`, and its `bk_biz_id` when it is an integer (the
/// bulk lane's routing key: its business's share).
fn request_of(line: &str) -> Result<(String, Option<i64>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let business = object.get("bk_biz_id").and_then(Value::as_i64);
    match object.get("request_id").and_then(Value::as_str) {
        Some(id)
            if !id.is_empty()
                && id.chars().count() <= MAX_REQUEST_ID_CHARS
                && !id.contains('\0') =>
        {
            Ok((id.to_owned(), business))
        }
        _ => Err(format!(
            "no request_id string of 1..={MAX_REQUEST_ID_CHARS} characters"
        )),
    }
}

/// Replies counted by code, once per request_id: a redelivered request is
/// answered again (with the stored reply), and counting that second reply
/// would end the wait before another request is answered.
#[derive(Debug, Default)]
struct Answers {
    /// Distinct requests answered.
    total: u64,
    by_code: BTreeMap<i64, u64>,
    seen: HashSet<String>,
}

impl Answers {
    /// Counts a reply; false for a repeated answer to a counted request.
    fn record(&mut self, reply: &InboxReply) -> bool {
        let body = serde_json::from_slice::<Value>(&reply.body).ok();
        let request_id = body
            .as_ref()
            .and_then(|v| v.get("request_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| reply.correlation_id.clone());
        if let Some(id) = request_id
            && !self.seen.insert(id)
        {
            return false;
        }
        let code = body
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        *self.by_code.entry(code).or_default() += 1;
        self.total += 1;
        true
    }
}

async fn collect(
    inbox: Inbox,
    mut out: Box<dyn Write + Send>,
    mut published: watch::Receiver<Option<u64>>,
    timeout: Duration,
) -> anyhow::Result<Answers> {
    let mut answers = Answers::default();
    let mut replies = Box::pin(inbox.replies());
    let mut publisher_alive = true;
    loop {
        if published
            .borrow()
            .is_some_and(|expected| answers.total >= expected)
        {
            break;
        }
        let next = tokio::select! {
            next = tokio::time::timeout(timeout, replies.next()) => next,
            changed = published.changed(), if publisher_alive => {
                publisher_alive = changed.is_ok();
                continue;
            }
        };
        let Ok(Some(reply)) = next else {
            eprintln!("no reply for {timeout:?}; giving up waiting");
            break;
        };
        let reply = reply?;
        if !answers.record(&reply) {
            continue;
        }
        out.write_all(&reply.body)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_needs_an_object_with_a_request_id() {
        assert_eq!(
            request_of(r#"{"request_id":"a"}"#),
            Ok(("a".to_owned(), None))
        );
        assert_eq!(
            request_of(r#"{"request_id":"a","bk_biz_id":42}"#),
            Ok(("a".to_owned(), Some(42)))
        );
        assert_eq!(
            request_of(r#"{"request_id":"a","bk_biz_id":"42"}"#),
            Ok(("a".to_owned(), None))
        );
        assert!(request_of("{nope").is_err());
        assert!(request_of("[1]").is_err());
        assert!(request_of(r#"{"request_id":""}"#).is_err());
        assert!(request_of(r#"{"request_id":5}"#).is_err());
        assert!(request_of(&format!(r#"{{"request_id":"{}"}}"#, "x".repeat(129))).is_err());
    }

    fn reply(request_id: &str, code: i64) -> InboxReply {
        InboxReply {
            body: format!(r#"{{"code":{code},"request_id":"{request_id}"}}"#).into_bytes(),
            correlation_id: Some(request_id.to_owned()),
        }
    }

    #[test]
    fn a_repeated_reply_counts_once() {
        let mut answers = Answers::default();
        assert!(answers.record(&reply("a", 0)));
        assert!(!answers.record(&reply("a", 0)), "a redelivery's reply");
        assert!(answers.record(&reply("b", 1199019)));
        assert_eq!(answers.total, 2);
        assert_eq!(answers.by_code.get(&0), Some(&1));
    }
}
