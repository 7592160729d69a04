//! `procinst dlq list` and `procinst dlq replay`: inspecting dead-lettered
//! messages and moving them back to the request queue.
//!
//! Both read the dead-letter queue with `basic.get` on a channel of their
//! own and no auto-ack: what they do not remove is given back (and returned
//! by the broker, should the command die), so the queue keeps every message.
//! A replayed message is acked (removed) only after the broker confirmed its
//! copy on the request queue: an interruption can at worst replay a message
//! twice, which idempotency absorbs.
//!
//! Looking is not free on every broker: RabbitMQ 4.0 to 4.2 count each
//! `basic.get` that is given back as a delivery, and a quorum queue drops a
//! message at its delivery limit. procinst declares the dead-letter queue
//! with a limit browsing cannot reach (see `broker::DEAD_LETTER_DELIVERY_LIMIT`);
//! for a queue made otherwise (by an older procinst, or by hand) a message
//! browsed [`REFRESH_AFTER_DELIVERIES`] times is given back as a fresh,
//! confirmed copy rather than returned, so no number of listings can drop it.

use std::{collections::HashSet, process::ExitCode};

use clap::{Args, Subcommand};
use lapin::{
    BasicProperties, Channel, Confirmation,
    message::BasicGetMessage,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};
use serde::Serialize;

use crate::broker::{self, headers};
use crate::config::{Lane, Route, Settings};
use crate::domain;
use crate::store::{self, request_log};

/// Deliveries after which a browsed message is given back as a fresh copy:
/// half of RabbitMQ 4's default delivery limit (20), so a queue without an
/// explicit limit never drops a dead letter because it was looked at.
const REFRESH_AFTER_DELIVERIES: i64 = 10;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One row per dead-lettered message; removes nothing.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move dead-lettered messages back to a request queue (the bulk lane's
    /// unless --lane says otherwise).
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Replay at most N messages.
    #[arg(long)]
    limit: Option<usize>,
    /// Replay only messages with this request_id.
    #[arg(long)]
    request_id: Option<String>,
    /// Print what would move, and whether each would create rows or get a stored reply; move nothing.
    #[arg(long)]
    dry_run: bool,
    /// The lane to replay into: bulk (the default), so that a replay never
    /// holds up interactive requests; interactive for a few urgent ones.
    #[arg(long, value_enum, default_value = "bulk")]
    lane: Lane,
}

/// What `dlq list` shows of one message; never its body.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub request_id: String,
    pub reason: String,
    pub detail: Option<String>,
    pub first_death: Option<String>,
    pub last_death: Option<String>,
    pub count: i64,
    pub stored_result: bool,
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { json } => {
            print_entries(&browse(settings, "procinst dlq").await?, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let broker =
                broker::connect(&broker::Cluster::from_settings(settings)?, "procinst dlq").await?;
            broker::declare(&broker.connection, &settings.topology).await?;
            let messages = take_all(&broker.consume, &settings.topology.dead_letter_queue).await?;
            let result = match describe(settings, &messages).await {
                Ok(entries) => replay(settings, &broker, &messages, &entries, &args).await,
                Err(e) => Err(e),
            };
            broker.close().await;
            result
        }
    }
}

/// Every message in the dead-letter queue as `dlq list` shows it; the queue
/// keeps them all. `connection_name` tells the broker who is looking.
pub async fn browse(settings: &Settings, connection_name: &str) -> anyhow::Result<Vec<Entry>> {
    let broker =
        broker::connect(&broker::Cluster::from_settings(settings)?, connection_name).await?;
    broker::declare(&broker.connection, &settings.topology).await?;
    let dead_queue = settings.topology.dead_letter_queue.as_str();
    let messages = take_all(&broker.consume, dead_queue).await?;
    let entries = describe(settings, &messages).await;
    give_back(&broker.publish, dead_queue, &messages).await;
    broker.close().await;
    entries
}

/// Takes every message now in `queue` without acking it.
async fn take_all(channel: &Channel, queue: &str) -> anyhow::Result<Vec<BasicGetMessage>> {
    let depth = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let mut messages = Vec::with_capacity(depth as usize);
    while messages.len() < depth as usize {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(message) => messages.push(message),
            None => break,
        }
    }
    Ok(messages)
}

async fn describe(settings: &Settings, messages: &[BasicGetMessage]) -> anyhow::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = messages
        .iter()
        .map(|m| {
            entry(
                &m.delivery.data,
                &m.delivery.properties,
                settings.max_body_bytes,
            )
        })
        .collect();
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e.request_id.as_str())
        .filter(|id| *id != "unknown" && !id.contains('\0'))
        .collect();
    let stored: HashSet<String> = if ids.is_empty() {
        HashSet::new()
    } else {
        let pool = store::connect_pool(settings.database_url.expose(), 1)?;
        let client = pool.get().await?;
        request_log::stored_ids(&client, &ids, settings.retention()).await?
    };
    for entry in &mut entries {
        entry.stored_result = stored.contains(&entry.request_id);
    }
    Ok(entries)
}

/// Reads what the headers and the body say, keeping no secret.
fn entry(body: &[u8], properties: &BasicProperties, max_body_bytes: usize) -> Entry {
    let message_id = properties.message_id().as_ref().map(|m| m.as_str());
    let request_id = match domain::decode(body, message_id, max_body_bytes) {
        Ok(decoded) => Some(decoded.request_id),
        Err(unreadable) => unreadable.request_id,
    }
    .unwrap_or_else(|| "unknown".to_owned());
    let empty = FieldTable::default();
    let h = properties.headers().as_ref().unwrap_or(&empty);
    let (reason, count, first, last, detail) = match headers::text(h, headers::REASON) {
        Some(reason) => (
            reason,
            headers::int(h, headers::COUNT).unwrap_or(1),
            headers::int(h, headers::FIRST_DEATH),
            headers::int(h, headers::LAST_DEATH),
            headers::text(h, headers::DETAIL),
        ),
        None => match headers::x_death(h) {
            Some((reason, count, time)) => (reason, count, time, time, None),
            None => ("unknown".to_owned(), 1, None, None, None),
        },
    };
    Entry {
        request_id,
        reason,
        detail,
        first_death: first.map(format_time),
        last_death: last.map(format_time),
        count,
        stored_result: false,
    }
}

fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn print_entries(entries: &[Entry], json: bool) -> anyhow::Result<()> {
    if json {
        for entry in entries {
            println!("{}", serde_json::to_string(entry)?);
        }
        return Ok(());
    }
    println!(
        "{:<36} {:<16} {:>5} {:<25} {:<25} {:<6} DETAIL",
        "REQUEST_ID", "REASON", "COUNT", "FIRST_DEATH", "LAST_DEATH", "STORED"
    );
    for e in entries {
        println!(
            "{:<36} {:<16} {:>5} {:<25} {:<25} {:<6} {}",
            e.request_id,
            e.reason,
            e.count,
            e.first_death.as_deref().unwrap_or("-"),
            e.last_death.as_deref().unwrap_or("-"),
            if e.stored_result { "yes" } else { "no" },
            e.detail.as_deref().unwrap_or("")
        );
    }
    println!("{} dead-lettered message(s)", entries.len());
    Ok(())
}

/// Returns messages to the dead-letter queue they were taken from: by a
/// requeueing nack, or, for one delivered [`REFRESH_AFTER_DELIVERIES`] times
/// or more, as a fresh copy confirmed before the original is acked.
async fn give_back<'a>(
    publish: &Channel,
    queue: &str,
    messages: impl IntoIterator<Item = &'a BasicGetMessage>,
) {
    for message in messages {
        let deliveries = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| headers::int(h, headers::DELIVERY_COUNT))
            .unwrap_or(0);
        if deliveries >= REFRESH_AFTER_DELIVERIES {
            match refresh(publish, queue, message).await {
                Ok(()) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh a much-browsed message; returning it as it is")
                }
            }
        }
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        if let Err(e) = message.delivery.acker.nack(options).await {
            tracing::warn!(error = %e, "could not return a message; the broker will when the channel closes");
        }
    }
}

/// Publishes a copy of `message` to `queue` and, once the broker confirmed
/// it, acks the original: the message starts again with no deliveries.
async fn refresh(publish: &Channel, queue: &str, message: &BasicGetMessage) -> anyhow::Result<()> {
    copy_to(publish, &Route::queue(queue), message).await?;
    message
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await?;
    Ok(())
}

/// Publishes a copy of `message` by `route` (mandatory, confirmed),
/// without the broker's delivery count of the original.
async fn copy_to(
    publish: &Channel,
    route: &Route,
    message: &BasicGetMessage,
) -> anyhow::Result<()> {
    let properties = headers::without_delivery_count(message.delivery.properties.clone());
    let confirm = publish
        .basic_publish(
            route.exchange.as_str().into(),
            route.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &message.delivery.data,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => anyhow::bail!("no queue took the copy ({route:?})"),
        Confirmation::Nack(_) => anyhow::bail!("the broker refused the copy"),
        Confirmation::NotRequested => anyhow::bail!("the channel does not confirm"),
    }
}

async fn replay(
    settings: &Settings,
    broker: &broker::Broker,
    messages: &[BasicGetMessage],
    entries: &[Entry],
    args: &ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let mut chosen = Vec::new();
    let mut left = Vec::new();
    for (message, entry) in messages.iter().zip(entries) {
        let wanted = args
            .request_id
            .as_deref()
            .is_none_or(|id| id == entry.request_id)
            && args.limit.is_none_or(|limit| chosen.len() < limit);
        if wanted && !args.dry_run {
            chosen.push((message, entry));
        } else {
            if wanted {
                let effect = if entry.stored_result {
                    "stored reply"
                } else {
                    "would create"
                };
                println!(
                    "would replay {} ({}): {effect}",
                    entry.request_id, entry.reason
                );
            }
            left.push(message);
        }
    }
    give_back(&broker.publish, &settings.topology.dead_letter_queue, left).await;
    let queue = settings.topology.queue(args.lane);
    let queue = queue.as_str();
    let mut moved = 0;
    for (message, entry) in chosen {
        let business = serde_json::from_slice::<serde_json::Value>(&message.delivery.data)
            .ok()
            .and_then(|body| body.get("bk_biz_id").and_then(serde_json::Value::as_i64));
        let route = settings.topology.route(args.lane, business);
        if let Err(e) = copy_to(&broker.publish, &route, message).await {
            anyhow::bail!("{e}: {} stays dead-lettered", entry.request_id);
        }
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await?;
        moved += 1;
        println!("replayed {} ({})", entry.request_id, entry.reason);
    }
    if !args.dry_run {
        println!("replayed {moved} message(s) to {queue}");
    }
    Ok(ExitCode::SUCCESS)
}
