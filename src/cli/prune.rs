use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::store::{self, request_log};

/// Deletes expired request_log rows in small chunks; suited to cron.
pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let pool = store::connect_pool(settings.database_url.expose(), 1)?;
    let client = pool.get().await.context("cannot connect to the database")?;
    let deleted = request_log::prune(&client, settings.retention()).await?;
    println!(
        "pruned {deleted} request_log rows older than {} hours",
        settings.request_retention_hours
    );
    Ok(ExitCode::SUCCESS)
}
