//! Waits that poll a condition until it holds, each under a limit.

use std::time::Duration;

/// Polls `check` every 100 ms until it holds; false after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Polls `sql`, a query of one boolean, until it answers true; false after
/// `limit` (an error or NULL is not true yet).
pub async fn eventually_true(client: &tokio_postgres::Client, limit: Duration, sql: &str) -> bool {
    eventually(limit, || async move {
        client
            .query_one(sql, &[])
            .await
            .is_ok_and(|row| row.get::<_, Option<bool>>(0) == Some(true))
    })
    .await
}
