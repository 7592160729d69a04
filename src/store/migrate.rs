use super::StoreError;
use super::pool::connection;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Key of the advisory lock that serialises migrations of workers starting
/// together; arbitrary, fixed ("procinst" in ASCII).
const MIGRATION_LOCK: i64 = 0x7072_6f63_696e_7374;

/// The newest migration this binary carries: the schema version it needs.
pub fn required_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// The schema's version as `procinst migrate` recorded it, read without
/// writing anything (so a role that may not change the schema can ask);
/// `None` when the database has no procinst schema.
pub async fn schema_version(database_url: &str) -> Result<Option<i64>, StoreError> {
    let (config, tls) = connection(database_url)?;
    let (client, conn) = config.connect(tls).await?;
    let task = tokio::spawn(conn);
    let version = client
        .query_one(
            "SELECT CASE WHEN to_regclass('refinery_schema_history') IS NULL THEN NULL \
             ELSE (SELECT max(version)::int8 FROM refinery_schema_history) END",
            &[],
        )
        .await?
        .get(0);
    drop(client);
    let _ = task.await;
    Ok(version)
}

/// Applies pending migrations on a dedicated connection, holding an advisory
/// lock so that several workers starting at once migrate one at a time.
/// Returns the names of the migrations applied now.
pub async fn migrate(database_url: &str) -> Result<Vec<String>, StoreError> {
    let (config, tls) = connection(database_url)?;
    let (mut client, conn) = config.connect(tls).await?;
    let task = tokio::spawn(conn);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    drop(client);
    let _ = task.await;
    let applied = report?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    Ok(applied)
}
