use lapin::{
    Channel, Connection, ConnectionProperties, DefaultConnectionBuilder,
    options::ConfirmSelectOptions, tcp::OwnedTLSConfig,
};

use super::{Blocked, BrokerError, Endpoint, Endpoints, Rotation, tls};
use crate::config::Settings;
use crate::telemetry::error_chain;

/// Longest wait for a connection handshake; a half-open network path must
/// not stall the reconnect loop.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the broker is and how to trust it: the nodes of `AMQP_URL` and the
/// TLS settings every `amqps://` node is checked with.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub endpoints: Endpoints,
    tls: OwnedTLSConfig,
}

impl Cluster {
    /// The address list and the CA file of the settings; a bad list or an
    /// unreadable CA file is a configuration error.
    pub fn from_settings(settings: &Settings) -> Result<Cluster, BrokerError> {
        Ok(Cluster {
            endpoints: Endpoints::parse(settings.amqp_url.expose())?,
            tls: tls::tls_config(
                settings.amqp_ca_file.as_deref(),
                settings.amqp_client_cert(),
            )?,
        })
    }
}

/// A connection with the two channels the worker uses: one to consume and
/// acknowledge on, one in confirm mode to publish on. Keeping them apart
/// means a slow confirm never holds up the flow of deliveries.
pub struct Broker {
    pub connection: Connection,
    pub consume: Channel,
    pub publish: Channel,
    /// The node this connection is on.
    pub node: Endpoint,
    /// Whether the broker blocks this connection's publishes (an alarm).
    pub blocked: Blocked,
}

/// The channels of one lane of the worker: one to consume and acknowledge
/// on for each queue the lane consumes (its sources: a `multiple` ack
/// covers one channel's deliveries only, so each source keeps its own), and
/// one in confirm mode to publish its replies on, so that one lane's
/// confirms never hold up the other's.
#[derive(Clone)]
pub struct LaneChannels {
    pub consume: Vec<Channel>,
    pub publish: Channel,
}

impl LaneChannels {
    /// The broker's own two channels, for a lane of one source.
    pub fn of(broker: &Broker) -> Self {
        Self {
            consume: vec![broker.consume.clone()],
            publish: broker.publish.clone(),
        }
    }

    /// Channels on the broker's connection for a lane of `sources` queues.
    pub async fn open(broker: &Broker, sources: usize) -> Result<Self, BrokerError> {
        let (first, publish) = open_channels(&broker.connection).await?;
        let mut consume = vec![first];
        for _ in 1..sources {
            let channel = tokio::time::timeout(CONNECT_TIMEOUT, broker.connection.create_channel())
                .await
                .map_err(|_| BrokerError::Timeout {
                    what: "opening channels",
                    after: CONNECT_TIMEOUT,
                })??;
            consume.push(channel);
        }
        Ok(Self { consume, publish })
    }

    /// True while every channel is usable.
    pub fn is_healthy(&self) -> bool {
        self.consume.iter().all(|c| c.status().connected()) && self.publish.status().connected()
    }
}

/// A channel to consume on and one in confirm mode to publish on, bounded
/// by [`CONNECT_TIMEOUT`].
async fn open_channels(connection: &Connection) -> Result<(Channel, Channel), BrokerError> {
    let channels = async {
        let consume = connection.create_channel().await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>((consume, publish))
    };
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, channels)
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "opening channels",
            after: CONNECT_TIMEOUT,
        })??)
}

/// Connects to one node of the cluster, trying them in a shuffled order,
/// each under [`CONNECT_TIMEOUT`]; the first that answers wins.
pub async fn connect(cluster: &Cluster, name: &str) -> Result<Broker, BrokerError> {
    let mut rotation = Rotation::shuffled(cluster.endpoints.len());
    let mut tried = 0;
    loop {
        tried += 1;
        match connect_node(cluster, rotation.next_node(), name).await {
            Ok(broker) => return Ok(broker),
            Err(e) if tried < rotation.len() => {
                tracing::warn!(error = %error_chain(&e), "RabbitMQ node unavailable; trying the next");
            }
            Err(e) if tried == 1 => return Err(e),
            Err(e) => {
                return Err(BrokerError::NoNode {
                    nodes: tried,
                    last: Box::new(e),
                });
            }
        }
    }
}

/// Connects to the node at `index` of the list and opens both channels.
/// The connection is named `{name} @ host:port`, so that `rabbitmqctl
/// list_connections` tells which process is on which node.
pub async fn connect_node(
    cluster: &Cluster,
    index: usize,
    name: &str,
) -> Result<Broker, BrokerError> {
    let node = cluster.endpoints.get(index).clone();
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{name} @ {}", node.node()).into());
    let handshake = async {
        DefaultConnectionBuilder::new()?
            .with_uri_str(node.url().to_owned())
            .with_properties(properties)
            .with_tls_config(cluster.tls.clone())
            .connect()
            .await
    };
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| BrokerError::ConnectTimeout {
            url: node.redacted().to_owned(),
            after: CONNECT_TIMEOUT,
        })?
        .map_err(|source| BrokerError::Connect {
            url: node.redacted().to_owned(),
            source,
        })?;
    let blocked = Blocked::watch(&connection);
    let (consume, publish) = open_channels(&connection).await?;
    tracing::info!(node = %node, "connected to RabbitMQ");
    Ok(Broker {
        connection,
        consume,
        publish,
        node,
        blocked,
    })
}

impl Broker {
    /// True while the connection and both channels are usable.
    pub fn is_healthy(&self) -> bool {
        self.connection.status().connected()
            && self.consume.status().connected()
            && self.publish.status().connected()
    }

    /// Closes the channels and the connection, ignoring what is already
    /// gone, and giving up after [`CONNECT_TIMEOUT`] on a broker that does
    /// not answer (the socket is dropped with the connection anyway).
    pub async fn close(&self) {
        let close = async {
            let _ = self.consume.close(200, "bye".into()).await;
            let _ = self.publish.close(200, "bye".into()).await;
            let _ = self.connection.close(200, "bye".into()).await;
        };
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, close).await;
    }
}
