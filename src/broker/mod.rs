//! All of lapin: connecting, declaring the topology, consuming, and
//! publishing with confirms. Nothing here knows SQL or the request's rules.

mod connection;
mod error;
pub mod headers;
mod inbox;
mod publisher;
mod topology;

pub use connection::{Broker, connect};
pub use error::BrokerError;
pub use inbox::{Inbox, InboxReply};
pub use publisher::{Outgoing, Publisher, reply_properties};
pub use topology::declare;

/// Direct reply-to pseudo-queue; replies to it reach the requester's channel.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
