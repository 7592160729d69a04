use lapin::{Channel, Connection, ConnectionProperties, options::ConfirmSelectOptions};

use super::BrokerError;
use crate::config::redact_url;

/// Longest wait for a connection handshake; a half-open network path must
/// not stall the reconnect loop.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection with the two channels the worker uses: one to consume and
/// acknowledge on, one in confirm mode to publish on. Keeping them apart
/// means a slow confirm never holds up the flow of deliveries.
pub struct Broker {
    pub connection: Connection,
    pub consume: Channel,
    pub publish: Channel,
}

/// Connects and opens both channels.
pub async fn connect(url: &str, name: &str) -> Result<Broker, BrokerError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties))
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "connecting",
            after: CONNECT_TIMEOUT,
        })?
        .map_err(|source| BrokerError::Connect {
            url: redact_url(url),
            source,
        })?;
    let channels = async {
        let consume = connection.create_channel().await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>((consume, publish))
    };
    let (consume, publish) = tokio::time::timeout(CONNECT_TIMEOUT, channels)
        .await
        .map_err(|_| BrokerError::Timeout {
            what: "opening channels",
            after: CONNECT_TIMEOUT,
        })??;
    Ok(Broker {
        connection,
        consume,
        publish,
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
