//! A round of a batch against PostgreSQL in two round trips: the reads,
//! with the transaction begun and the COPY of processes started behind
//! them; then the COPY's data, the other rows and COMMIT, all sent at once.
//!
//! The server answers a connection's statements in the order they were
//! sent, and tokio-postgres sends a request queued behind a COPY only once
//! the COPY's data is done, so nothing waits on the network in between but
//! the round's own planning and its turn to write.

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::{CopyInSink, Statement, types::ToSql};

use super::lookup::{self, Lookup, Wanted};
use super::write::{NewRequest, RowColumns, process_rows};
use super::{Client, StoreError};

/// The statements of a round, prepared once per connection (tokio-postgres
/// caches them). All are prepared before any is sent, because a statement
/// prepared on first use would be sent behind the COPY and wait for it.
struct Statements {
    read: lookup::ReadStatements,
    copy_processes: Statement,
    expire_request_log: Statement,
    insert_rows: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, StoreError> {
        let (read, (copy_processes, expire_request_log, insert_rows)) =
            tokio::try_join!(lookup::ReadStatements::prepare(client), async {
                futures::future::try_join3(
                    client.prepare_cached(include_str!("sql/copy_processes.sql")),
                    client.prepare_cached(include_str!("sql/expire_request_log.sql")),
                    client.prepare_cached(include_str!("sql/insert_rows.sql")),
                )
                .await
                .map_err(StoreError::from)
            },)?;
        Ok(Self {
            read,
            copy_processes,
            expire_request_log,
            insert_rows,
        })
    }
}

/// A round between its reads and its write, holding its connection.
///
/// When the round may create processes, its transaction is open and the
/// server waits for the COPY's data. A round dropped before
/// [`Round::commit`] finishes closes its connection instead of handing it
/// back to the pool in that state.
pub struct Round {
    client: Option<Client>,
    statements: Statements,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    /// True while the connection may be inside a transaction or a COPY.
    unsettled: bool,
}

impl Round {
    /// Reads what `wanted` names in one round trip. When the round may
    /// create processes, BEGIN goes first and the COPY is started last.
    ///
    /// A failure there leaves the transaction aborted and the COPY refused
    /// (which tokio-postgres answers with one reply too many: see
    /// [`StoreError::CopyNotStarted`]), so the connection is closed. The
    /// first failure in statement order is returned.
    pub async fn begin(client: Client, wanted: &Wanted<'_>) -> Result<(Round, Lookup), StoreError> {
        let statements = Statements::prepare(&client).await?;
        let copies = wanted.new_processes > 0;
        let mut round = Round {
            client: Some(client),
            statements,
            copy: None,
            unsettled: copies,
        };
        let (client, st) = (round.client(), &round.statements);
        let read = lookup::read(client, &st.read, wanted);
        if !copies {
            let lookup = read.await?;
            return Ok((round, lookup));
        }
        // Sent in this order on the first poll; answered in it.
        let (begin, read, copy) = tokio::join!(
            client.batch_execute("BEGIN"),
            read,
            client.copy_in::<_, Bytes>(&st.copy_processes),
        );
        begin?;
        let lookup = read?;
        round.copy = Some(Box::pin(copy.map_err(StoreError::CopyNotStarted)?));
        Ok((round, lookup))
    }

    /// Writes the round's rows and commits, in one round trip: the COPY's
    /// data (or BEGIN, when none was started), the deletion of rows past
    /// retention that the new ones replace, one statement for the instance
    /// relations, the audit rows and the request log, COMMIT.
    ///
    /// Each request is all or nothing because the whole round is: callers
    /// only pass requests already checked against the database. When a
    /// concurrent worker wins a race (a `request_id` stored meanwhile, or a
    /// process name taken), a unique violation aborts the transaction, the
    /// server turns the COMMIT into a rollback, and the caller decides the
    /// round again with fresh reads (see
    /// [`StoreError::is_unique_violation`]). The first failure in
    /// statement order is returned: the later statements only fail with
    /// "current transaction is aborted".
    pub async fn commit(
        mut self,
        requests: &[NewRequest<'_>],
        retention: Duration,
    ) -> Result<(), StoreError> {
        let copy = self.copy.take();
        if copy.is_none() && requests.is_empty() {
            return Ok(());
        }
        self.unsettled = true;
        let (client, st) = (self.client(), &self.statements);
        let rows = RowColumns::from(requests);
        let retention_s = retention.as_secs_f64();
        let expired: Vec<&str> = requests
            .iter()
            .filter(|r| r.replaces_expired)
            .map(|r| r.request_id)
            .collect();
        let expire_params: [&(dyn ToSql + Sync); 2] = [&expired, &retention_s];
        let row_params = rows.params();
        let began = copy.is_some();
        let copied = async {
            let Some(mut sink) = copy else {
                return Ok(());
            };
            sink.send(process_rows(requests)).await?;
            sink.as_mut().finish().await.map(drop)
        };
        let (begin, copied, expire, inserted, commit) = tokio::join!(
            when(!began, client.batch_execute("BEGIN")),
            copied,
            when(
                !expired.is_empty(),
                client.execute(&st.expire_request_log, &expire_params)
            ),
            when(
                !requests.is_empty(),
                client.execute(&st.insert_rows, &row_params)
            ),
            client.batch_execute("COMMIT"),
        );
        let written = begin
            .and(copied)
            .and(expire.map(drop))
            .and(inserted.map(drop))
            .and(commit);
        if let Err(e) = written {
            // Normally the server rolled back already; this makes sure
            // before the connection goes back to the pool.
            self.unsettled = client.batch_execute("ROLLBACK").await.is_err();
            return Err(e.into());
        }
        self.unsettled = false;
        Ok(())
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a round holds its connection until dropped")
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        if self.unsettled
            && let Some(client) = self.client.take()
        {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// `statement` when `needed`, else nothing, without sending anything.
async fn when<T: Default>(
    needed: bool,
    statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    if needed {
        statement.await
    } else {
        Ok(T::default())
    }
}
