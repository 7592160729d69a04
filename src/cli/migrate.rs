use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::redact::redact_url;
use crate::store;

/// Creates the database if needed and applies pending migrations: the
/// schema owner's command.
pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let url = ensure_database(settings).await?;
    let applied = store::migrate(settings.database_url.expose())
        .await
        .with_context(|| format!("cannot migrate the database at {url}"))?;
    log_applied(&applied);
    Ok(ExitCode::SUCCESS)
}

/// Shared with `run` and the other commands that use the database: the
/// database exists and its schema is the one this procinst needs.
///
/// A current schema is only read, so a role that may read and write the
/// tables but not change the schema works. A missing or older schema is
/// migrated when the role may (a development database, a compose file);
/// when it may not, the error says which version is there, which is needed,
/// and who must migrate. A newer schema (a newer procinst migrated it) is
/// used with a warning: migrations only add.
pub async fn prepare_database(settings: &Settings) -> anyhow::Result<()> {
    let url = ensure_database(settings).await?;
    let needed = store::required_version();
    let found = store::schema_version(settings.database_url.expose())
        .await
        .with_context(|| format!("cannot read the schema version of the database at {url}"))?;
    match found {
        Some(version) if version == needed => {
            tracing::info!(version, "database schema is up to date");
            return Ok(());
        }
        Some(version) if version > needed => {
            tracing::warn!(
                version,
                needed,
                "the database schema is newer than this procinst's; using it (migrations only add)"
            );
            return Ok(());
        }
        _ => {}
    }
    match store::migrate(settings.database_url.expose()).await {
        Ok(applied) => {
            log_applied(&applied);
            Ok(())
        }
        Err(e) => {
            let there = match found {
                Some(version) => format!("schema at version {version}"),
                None => "no procinst schema".to_owned(),
            };
            Err(anyhow::Error::new(e).context(format!(
                "database at {url}: {there}, this procinst needs {needed}: \
                 run `procinst migrate` as the schema owner"
            )))
        }
    }
}

/// The database exists (created when missing and allowed); its URL with
/// the password hidden, for errors.
async fn ensure_database(settings: &Settings) -> anyhow::Result<String> {
    let url = redact_url(settings.database_url.expose());
    store::ensure_database(settings.database_url.expose())
        .await
        .with_context(|| format!("cannot reach or create the database at {url}"))?;
    Ok(url)
}

fn log_applied(applied: &[String]) {
    if applied.is_empty() {
        tracing::info!("database schema is up to date");
    } else {
        tracing::info!(?applied, "applied migrations");
    }
}
