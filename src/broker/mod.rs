//! All of lapin: connecting to one node of a cluster (over TLS when the
//! URL says `amqps://`), declaring the topology, consuming, and
//! publishing with confirms. Nothing here knows SQL or the request's rules.

mod acks;
mod blocked;
mod connection;
mod endpoints;
mod error;
pub mod headers;
mod inbox;
mod publisher;
mod tls;
mod topology;
pub mod trace_context;

pub use acks::{ack_through, requeue_through};
pub use blocked::Blocked;
pub use connection::{Broker, Cluster, LaneChannels, connect, connect_node};
pub use endpoints::{AddressError, Endpoint, Endpoints, Rotation, redact_list};
pub use error::BrokerError;
pub use inbox::{Inbox, InboxReply};
pub use publisher::{Outgoing, Publisher, reply_properties, started};
pub use tls::ClientCertFiles;
pub use topology::declare;

/// Direct reply-to pseudo-queue; replies to it reach the requester's channel.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
