//! The failure ladder: what a failure does to the messages it strikes,
//! from the smallest remedy to the largest. Contract section 5: broker or
//! database trouble is never the request's fault; only a database error
//! caused by one request's data is.
//!
//! | rung | when | what is done | stage |
//! |---|---|---|---|
//! | 1. decide again | another writer won a race for the same rows (a unique violation) | the round is read and decided again at once, within [`RACE_ATTEMPTS`] attempts | decide |
//! | 2. split in halves | the database refuses a round because of a request's data | the round is split until the one request is found; it is dead-lettered ([`STORE_REJECTED`]), its neighbours go on | decide |
//! | 3. retry later | the database is in trouble (no connection, read-only after a failover, privileges, missing objects) | the batch is kept, the worker reports not-ready, the round is tried again after a capped backoff | decide |
//! | 4. hand back | a round lost [`RACE_ATTEMPTS`] races in a row | the batch is rejected with requeue, so it stops holding the write turn of the batches behind it; basic.reject counts toward the delivery limit | decide |
//! | 5. requeue | the broker refused or returned the batch's replies or dead letters (a full queue, a lost quorum, a missing dead-letter queue) | the batch is requeued after a pause that grows with each refusal in a row | deliver |
//! | 6. end the session | the channel can no longer take acks | the batch is given up and the session ends (closing the channel if it is still open); the broker redelivers, and committed rows give the stored replies | decide, deliver |
//!
//! [`OnStore::of`] and [`OnBroker::of`] classify; each stage carries out
//! its rungs in one match (`decide::Decider::decide` and
//! `deliver::Deliverer::deliver`).

use crate::broker::BrokerError;
use crate::store::StoreError;

/// Why the database refused one request's data, as `dlq list` shows it.
pub const STORE_REJECTED: &str = "store_rejected";

/// Attempts a round gets at writing while other writers win races for its
/// rows; the batch is handed back when the last one loses too.
pub const RACE_ATTEMPTS: usize = 8;

/// What a database failure does to the round it struck (rungs 1 to 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStore {
    /// Rung 1: another writer won a race for the same rows.
    DecideAgain,
    /// Rung 2: the request's own data made the database refuse the write.
    Split,
    /// Rung 3: the database's trouble, not the request's.
    RetryLater,
}

impl OnStore {
    pub fn of(e: &StoreError) -> Self {
        if e.is_unique_violation() {
            OnStore::DecideAgain
        } else if e.is_transient() {
            OnStore::RetryLater
        } else {
            OnStore::Split
        }
    }
}

/// What a broker failure does to the batches it struck (rungs 5 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBroker {
    /// Rung 5: the broker refused or returned messages.
    Requeue,
    /// Rung 6: the channel or connection can no longer take acks.
    EndSession,
}

impl OnBroker {
    pub fn of(e: &BrokerError) -> Self {
        match e {
            BrokerError::Nacked { .. } | BrokerError::Unroutable { .. } => OnBroker::Requeue,
            _ => OnBroker::EndSession,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use deadpool_postgres::{PoolError, TimeoutType};

    use super::*;

    #[test]
    fn no_database_connection_is_retried_later() {
        for pool in [
            PoolError::Timeout(TimeoutType::Wait),
            PoolError::Timeout(TimeoutType::Create),
            PoolError::Closed,
        ] {
            assert_eq!(OnStore::of(&StoreError::Pool(pool)), OnStore::RetryLater);
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
            assert_eq!(OnBroker::of(e), OnBroker::Requeue, "{e}");
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
            assert_eq!(OnBroker::of(e), OnBroker::EndSession, "{e}");
        }
    }
}
