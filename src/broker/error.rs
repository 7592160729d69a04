use super::AddressError;

/// What went wrong with RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The connection could not be made; the URL is given redacted.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    /// The connection handshake did not finish in time: a node that is
    /// down behind a silent network, or one too busy to be useful.
    #[error("no answer from RabbitMQ at {url} within {after:?}")]
    ConnectTimeout {
        url: String,
        after: std::time::Duration,
    },
    /// Every node of the list failed; the last one's error is the source.
    #[error("none of the {nodes} RabbitMQ nodes could be reached")]
    NoNode {
        nodes: usize,
        #[source]
        last: Box<BrokerError>,
    },
    /// `AMQP_URL` cannot work.
    #[error("AMQP_URL")]
    Address(#[from] AddressError),
    /// `PROCINST_AMQP_CA_FILE` cannot be used.
    #[error("PROCINST_AMQP_CA_FILE {path} is not usable: {reason}")]
    CaFile { path: String, reason: String },
    /// The client certificate or its key cannot be used.
    #[error("{setting} {path} is not usable: {reason}")]
    ClientCert {
        setting: &'static str,
        path: String,
        reason: String,
    },
    /// RabbitMQ did not answer in time: a half-open network path, or a
    /// broker too busy to be useful. Treated like a lost connection.
    #[error("no answer from RabbitMQ within {after:?} while {what}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
    /// A queue or exchange exists with other arguments: a configuration
    /// error that retrying cannot fix.
    #[error("{kind} {name} exists with other arguments: {detail}")]
    Topology {
        kind: &'static str,
        name: String,
        detail: String,
    },
    /// The broker refused to take a message (basic.nack).
    #[error("the broker refused a message published to {routing_key}")]
    Nacked { routing_key: String },
    /// A message marked mandatory could not be routed to any queue: the
    /// queue or its binding is gone.
    #[error("no queue is bound to {exchange} for {routing_key}: the message came back")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    /// The channel closed before the broker took an ack.
    #[error("the channel closed before {what}")]
    ChannelClosed { what: &'static str },
    #[error("RabbitMQ error")]
    Amqp(#[from] lapin::Error),
}

impl BrokerError {
    /// Configuration errors stop the worker; everything else is retried.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            BrokerError::Topology { .. }
                | BrokerError::Address(_)
                | BrokerError::CaFile { .. }
                | BrokerError::ClientCert { .. }
        )
    }
}
