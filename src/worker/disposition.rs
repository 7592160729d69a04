//! What a failure does to the messages it strikes, decided in one place
//! ([`Disposition::of`]) and carried out by the stage that met it: a
//! round of the decision (races, a request's bad data), the decider
//! (database trouble, contention) or the deliverer (refusals, a lost
//! channel). Contract section 5: broker or database trouble is never the
//! request's fault; only a database error caused by one request's data is.

use crate::broker::BrokerError;
use crate::store::StoreError;

/// Why the database refused one request's data, as `dlq list` shows it.
pub const STORE_REJECTED: &str = "store_rejected";

/// What happens to a batch (or a round of it) when something fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Another writer won a race for the same rows: read again and decide
    /// the round again at once, a bounded number of times.
    DecideAgain,
    /// The request's own data made the database refuse the write:
    /// dead-letter it with this reason (a round of several is split in
    /// halves until the one request is found; its neighbours go on).
    DeadLetter { reason: &'static str },
    /// The database is in trouble, not the request (no connection,
    /// read-only after a failover, privileges, missing objects): keep the
    /// batch, report not-ready, and try again after a capped backoff.
    RetryLater,
    /// The batch kept losing races: reject its deliveries with requeue so
    /// that it stops holding the write turn of the batches behind it.
    /// basic.reject counts toward the delivery limit, so a batch that can
    /// never be written ends in the dead-letter queue.
    HandBack,
    /// The broker refused or returned the batch's replies or dead letters
    /// (a full queue, a lost quorum, a missing dead-letter queue): requeue
    /// the batch after a pause that grows with each refusal in a row.
    Requeue,
    /// The channel or connection can no longer take acks: give the batch
    /// up and end the session (closing the channel if it is still open);
    /// the broker redelivers it, and its committed rows give the stored
    /// replies.
    EndSession,
}

/// A failure on a batch's way from delivery to ack.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'e> {
    /// Reading, planning or writing in PostgreSQL.
    Store(&'e StoreError),
    /// Publishing, confirming or acknowledging in RabbitMQ.
    Broker(&'e BrokerError),
}

impl<'e> From<&'e StoreError> for Failure<'e> {
    fn from(e: &'e StoreError) -> Self {
        Failure::Store(e)
    }
}

impl<'e> From<&'e BrokerError> for Failure<'e> {
    fn from(e: &'e BrokerError) -> Self {
        Failure::Broker(e)
    }
}

impl Disposition {
    /// Decides what `failure` does to the messages it struck. The stages
    /// carry out the dispositions their failures can have and pass the
    /// error on otherwise.
    pub fn of<'e>(failure: impl Into<Failure<'e>>) -> Self {
        match failure.into() {
            Failure::Store(StoreError::Contended) => Disposition::HandBack,
            Failure::Store(e) if e.is_unique_violation() => Disposition::DecideAgain,
            Failure::Store(e) if e.is_transient() => Disposition::RetryLater,
            Failure::Store(_) => Disposition::DeadLetter {
                reason: STORE_REJECTED,
            },
            Failure::Broker(BrokerError::Nacked { .. } | BrokerError::Unroutable { .. }) => {
                Disposition::Requeue
            }
            Failure::Broker(_) => Disposition::EndSession,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use deadpool_postgres::{PoolError, TimeoutType};

    use super::*;

    #[test]
    fn a_batch_that_keeps_losing_races_is_handed_back() {
        assert_eq!(
            Disposition::of(&StoreError::Contended),
            Disposition::HandBack
        );
    }

    #[test]
    fn no_database_connection_is_retried_later() {
        for pool in [
            PoolError::Timeout(TimeoutType::Wait),
            PoolError::Timeout(TimeoutType::Create),
            PoolError::Closed,
        ] {
            assert_eq!(
                Disposition::of(&StoreError::Pool(pool)),
                Disposition::RetryLater
            );
        }
    }

    #[test]
    fn refused_and_returned_messages_are_requeued_after_a_pause() {
        let refused = [
            BrokerError::Nacked {
                routing_key: "replies".into(),
            },
            BrokerError::Unroutable {
                exchange: "procinst.dlx".into(),
                routing_key: "procinst.dead".into(),
            },
        ];
        for e in &refused {
            assert_eq!(Disposition::of(e), Disposition::Requeue, "{e}");
        }
    }

    #[test]
    fn a_channel_that_cannot_take_acks_ends_the_session() {
        let lost = [
            BrokerError::Timeout {
                what: "publishing with confirms",
                after: Duration::from_secs(30),
            },
            BrokerError::ChannelClosed {
                what: "acknowledging a batch",
            },
            BrokerError::Amqp(lapin::ErrorKind::ChannelsLimitReached.into()),
        ];
        for e in &lost {
            assert_eq!(Disposition::of(e), Disposition::EndSession, "{e}");
        }
    }

    /// Needs the PostgreSQL of the integration tests: a SQLSTATE only comes
    /// from a server, so each one is raised there for real.
    #[tokio::test]
    async fn each_sqlstate_class_has_its_disposition() {
        let (client, connection) = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:5432/postgres",
            tokio_postgres::NoTls,
        )
        .await
        .expect("PostgreSQL");
        let connection = tokio::spawn(connection);
        let retry = Disposition::RetryLater;
        let dead_letter = Disposition::DeadLetter {
            reason: STORE_REJECTED,
        };
        let expected = [
            ("25006", retry, "read-only after a failover"),
            ("42501", retry, "a missing privilege"),
            ("42P01", retry, "a missing table"),
            ("57P01", retry, "an administrator shutdown"),
            ("53100", retry, "a full disk"),
            ("40P01", retry, "a deadlock"),
            ("XX000", retry, "an internal error"),
            ("23505", Disposition::DecideAgain, "a lost race"),
            ("22021", dead_letter, "a bad character"),
            ("22003", dead_letter, "a number out of range"),
            ("23502", dead_letter, "a null in a not-null column"),
            ("23514", dead_letter, "a failed check"),
            ("54000", dead_letter, "a program limit"),
        ];
        for (sqlstate, disposition, what) in expected {
            let raise =
                format!("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$");
            let e = StoreError::from(client.batch_execute(&raise).await.expect_err("raised"));
            assert_eq!(e.sqlstate(), Some(sqlstate));
            assert_eq!(Disposition::of(&e), disposition, "{sqlstate}: {what}");
        }

        connection.abort();
        let _ = connection.await;
        let closed = client.simple_query("SELECT 1").await.expect_err("closed");
        assert_eq!(
            Disposition::of(&StoreError::from(closed)),
            retry,
            "a lost connection"
        );
    }
}
