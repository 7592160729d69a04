//! `procinst request show ID`: what happened to one request, in one place.
//!
//! It reads what procinst stored (the reply in `request_log`, the process,
//! relation and audit rows) and browses the dead-letter queue the way
//! `dlq list` does, so the queue keeps every message. A request_id found in
//! neither is unknown: failed requests are not stored, so it was never
//! sent, failed validation, or expired and was pruned.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;

use super::dlq::{self, Entry};
use crate::config::Settings;
use crate::store::{
    self,
    history::{self, AuditEntry, CreatedProcess, StoredRequest},
};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// What happened to one request: its stored reply, the rows it created,
    /// and whether it sits in the dead-letter queue. Exits 1 when unknown.
    Show {
        /// The request's `request_id`.
        request_id: String,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Everything `request show` found.
#[derive(Debug, Serialize)]
struct Report {
    request_id: String,
    known: bool,
    stored: Option<Stored>,
    processes: Vec<CreatedProcess>,
    audit: Vec<AuditEntry>,
    dead_letters: DeadLetters,
}

/// The stored reply, decoded, with its request_log times.
#[derive(Debug, Serialize)]
struct Stored {
    code: i64,
    message: String,
    process_ids: Vec<i64>,
    #[serde(flatten)]
    row: StoredRequest,
    /// The reply as published, byte for byte (it is JSON text).
    reply: String,
}

/// The dead-letter queue's messages with this request_id, or why the queue
/// could not be looked at.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum DeadLetters {
    Checked(Vec<Entry>),
    Unavailable(String),
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Show { request_id, json } = command;
    let report = gather(settings, request_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.known {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn gather(settings: &Settings, request_id: String) -> anyhow::Result<Report> {
    let pool = store::connect_pool(settings.database_url.expose(), 1)?;
    let client = pool.get().await.context("cannot connect to the database")?;
    let stored = history::stored_request(&client, &request_id, settings.retention()).await?;
    let stored = stored.map(decode).transpose()?;
    let ids = stored
        .as_ref()
        .map(|s| s.process_ids.clone())
        .unwrap_or_default();
    let processes = history::processes(&client, &ids).await?;
    let mut instances: Vec<i64> = processes.iter().map(|p| p.service_instance_id).collect();
    instances.sort_unstable();
    instances.dedup();
    let audit = history::audit(&client, &request_id, &instances).await?;
    drop(client);
    let dead_letters = match dlq::browse(settings, "procinst request show").await {
        Ok(entries) => DeadLetters::Checked(
            entries
                .into_iter()
                .filter(|e| e.request_id == request_id)
                .collect(),
        ),
        Err(e) => DeadLetters::Unavailable(format!("{e:#}")),
    };
    let in_dead_letters = matches!(&dead_letters, DeadLetters::Checked(e) if !e.is_empty());
    Ok(Report {
        known: stored.is_some() || in_dead_letters,
        request_id,
        stored,
        processes,
        audit,
        dead_letters,
    })
}

/// Reads code, message and process ids out of the stored reply bytes.
fn decode(row: StoredRequest) -> anyhow::Result<Stored> {
    let reply: Value =
        serde_json::from_slice(&row.reply).context("the stored reply is not JSON")?;
    let process_ids = reply["data"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    Ok(Stored {
        code: reply["code"].as_i64().unwrap_or(-1),
        message: reply["message"].as_str().unwrap_or_default().to_owned(),
        process_ids,
        reply: String::from_utf8_lossy(&row.reply).into_owned(),
        row,
    })
}

fn print_report(report: &Report) {
    println!("request {}", report.request_id);
    match &report.stored {
        Some(s) => {
            let expiry = if s.row.expired {
                "expired, waiting to be pruned"
            } else {
                "expires"
            };
            println!(
                "  stored reply    code {} ({}), written {}, {expiry} {}",
                s.code, s.message, s.row.written, s.row.expires
            );
            println!("  reply           {}", s.reply);
            println!(
                "  lane            {}",
                s.row
                    .lane
                    .as_deref()
                    .unwrap_or("unknown (written before lanes)")
            );
        }
        None => println!("  stored reply    none"),
    }
    if !report.processes.is_empty() {
        println!("  processes");
        println!(
            "    {:<10} {:<24} {:<16} {:>12} {:>10} {:>8}  {:<12} CREATED",
            "ID", "NAME", "FUNC", "SVC_INSTANCE", "HOST", "TEMPLATE", "CREATED_BY"
        );
        for p in &report.processes {
            println!(
                "    {:<10} {:<24} {:<16} {:>12} {:>10} {:>8}  {:<12} {}",
                p.bk_process_id,
                p.bk_process_name,
                p.bk_func_name,
                p.service_instance_id,
                p.bk_host_id.map_or("-".into(), |h| h.to_string()),
                p.process_template_id.map_or("-".into(), |t| t.to_string()),
                p.bk_created_by,
                p.create_time
            );
        }
    }
    for a in &report.audit {
        println!(
            "  audit           #{} {} {} {} by {:?} at {}",
            a.id, a.action, a.resource_type, a.resource_id, a.operator, a.operation_time
        );
    }
    match &report.dead_letters {
        DeadLetters::Checked(entries) if entries.is_empty() => {
            println!("  dead letters    none")
        }
        DeadLetters::Checked(entries) => {
            for e in entries {
                println!(
                    "  dead letter     {} (dead-lettered {} time(s), last {}){}",
                    e.reason,
                    e.count,
                    e.last_death.as_deref().unwrap_or("-"),
                    e.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
        }
        DeadLetters::Unavailable(why) => println!("  dead letters    not checked: {why}"),
    }
    if !report.known {
        println!("  unknown: no stored reply and no dead letter with this request_id");
    }
}
