use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::redact::redact_url;
use crate::store;

/// Creates the database if needed and applies pending migrations.
pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    prepare_database(settings).await?;
    Ok(ExitCode::SUCCESS)
}

/// Shared with `run`: the database exists and its schema is current.
pub async fn prepare_database(settings: &Settings) -> anyhow::Result<()> {
    let url = redact_url(settings.database_url.expose());
    store::ensure_database(settings.database_url.expose())
        .await
        .with_context(|| format!("cannot reach or create the database at {url}"))?;
    let applied = store::migrate(settings.database_url.expose())
        .await
        .with_context(|| format!("cannot migrate the database at {url}"))?;
    if applied.is_empty() {
        tracing::info!("database schema is up to date");
    } else {
        tracing::info!(?applied, "applied migrations");
    }
    Ok(())
}
