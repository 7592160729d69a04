use super::StoreError;
use super::pool::connection;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Key of the advisory lock that serialises migrations of workers starting
/// together; arbitrary, fixed ("procinst" in ASCII).
const MIGRATION_LOCK: i64 = 0x7072_6f63_696e_7374;

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
