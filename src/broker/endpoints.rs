//! The broker's address list: `AMQP_URL` names one node or a cluster's
//! nodes, comma-separated, each with its own credentials. It is parsed once,
//! so that a bad entry is found at start and named (redacted) there, and
//! every later log line or error can name a node without its password.

use std::fmt;

use crate::redact::redact_url;

/// One node of the list.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    redacted: String,
    node: String,
}

impl Endpoint {
    /// Parses one entry: an `amqp://` or `amqps://` URL with a host, in a
    /// form lapin accepts too.
    fn parse(entry: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(entry).map_err(|e| e.to_string())?;
        let default_port = match url.scheme() {
            "amqp" => 5672,
            "amqps" => 5671,
            other => return Err(format!("scheme {other} is not amqp or amqps")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        entry
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|reason| reason.to_string())?;
        Ok(Endpoint {
            url: entry.to_owned(),
            redacted: redact_url(entry),
            node: format!("{host}:{}", url.port().unwrap_or(default_port)),
        })
    }

    /// The URL with its credentials, for lapin only.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `host:port`: short enough for a connection name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The URL with its password hidden, for log lines and errors.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// The nodes to try, in the order written; never empty.
#[derive(Clone, Debug)]
pub struct Endpoints(Vec<Endpoint>);

impl Endpoints {
    /// Splits on commas, trims, and parses every entry.
    pub fn parse(list: &str) -> Result<Endpoints, AddressError> {
        let nodes = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
            .map(|(i, entry)| {
                Endpoint::parse(entry).map_err(|reason| AddressError::Invalid {
                    position: i + 1,
                    entry: redact_url(entry),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(AddressError::Empty);
        }
        Ok(Endpoints(nodes))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a list has at least one node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, index: usize) -> &Endpoint {
        &self.0[index % self.0.len()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.0.iter()
    }
}

/// The list as written, every entry's password hidden, for settings
/// summaries. Works on lists that do not parse, entry by entry.
pub fn redact_list(list: &str) -> String {
    list.split(',')
        .map(|entry| redact_url(entry.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// An address list that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("no broker address given")]
    Empty,
    #[error("broker address {position} ({entry}) is not usable: {reason}")]
    Invalid {
        position: usize,
        entry: String,
        reason: String,
    },
}

/// The order a process goes through the nodes: shuffled once, so that
/// many workers spread over a cluster, then taken round and round, so that
/// after losing a node the next attempt goes to another one.
#[derive(Clone, Debug)]
pub struct Rotation {
    order: Vec<usize>,
    next: usize,
}

impl Rotation {
    pub fn shuffled(nodes: usize) -> Rotation {
        let mut order: Vec<usize> = (0..nodes.max(1)).collect();
        fastrand::shuffle(&mut order);
        Rotation { order, next: 0 }
    }

    /// The index of the node to try now; the following call gives the
    /// node after it.
    pub fn next_node(&mut self) -> usize {
        let node = self.order[self.next];
        self.next = (self.next + 1) % self.order.len();
        node
    }

    /// Nodes in one round.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Always false: a rotation has at least one node.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_list_of_three_nodes_is_split_trimmed_and_named_by_host_and_port() {
        let list = Endpoints::parse(
            "amqp://guest:guest@127.0.0.1:5682/%2f, amqp://a:b@localhost:5683/%2f ,amqps://rabbit.example/vh",
        )
        .expect("a valid list");
        let nodes: Vec<&str> = list.iter().map(Endpoint::node).collect();
        assert_eq!(
            nodes,
            ["127.0.0.1:5682", "localhost:5683", "rabbit.example:5671"]
        );
        assert_eq!(list.get(1).url(), "amqp://a:b@localhost:5683/%2f");
    }

    #[test]
    fn a_single_url_is_a_list_of_one() {
        let list = Endpoints::parse("amqp://127.0.0.1/%2f").expect("valid");
        assert_eq!(list.len(), 1);
        assert_eq!(list.get(0).node(), "127.0.0.1:5672");
    }

    #[test]
    fn a_bad_entry_is_named_without_its_password() {
        let err = Endpoints::parse("amqp://u:p1@good:5672,http://u:hunter2@bad:81")
            .expect_err("http is not amqp");
        let message = err.to_string();
        assert!(message.contains("http://u:***@bad:81"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(matches!(
            Endpoints::parse("amqp://u:p@good,not a url"),
            Err(AddressError::Invalid { .. })
        ));
        assert!(matches!(Endpoints::parse(" , "), Err(AddressError::Empty)));
    }

    #[test]
    fn every_entry_is_redacted() {
        let list = "amqp://a:one@h1:1/%2f, amqps://b:two@h2:2/%2f";
        let shown = redact_list(list);
        assert_eq!(shown, "amqp://a:***@h1:1/%2f,amqps://b:***@h2:2/%2f");
        let parsed = Endpoints::parse(list).expect("valid");
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("one") && !debug.contains("two"), "{debug}");
    }

    #[test]
    fn a_rotation_visits_every_node_once_per_round_and_then_starts_over() {
        let mut rotation = Rotation::shuffled(3);
        let first: Vec<usize> = (0..3).map(|_| rotation.next_node()).collect();
        assert_eq!(first.iter().copied().collect::<HashSet<_>>().len(), 3);
        let second: Vec<usize> = (0..3).map(|_| rotation.next_node()).collect();
        assert_eq!(first, second);
    }

    #[test]
    fn after_a_node_the_rotation_goes_on_to_another() {
        let mut rotation = Rotation::shuffled(2);
        let lost = rotation.next_node();
        assert_ne!(rotation.next_node(), lost);
    }
}
