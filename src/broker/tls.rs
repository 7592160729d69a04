//! Whom an `amqps://` connection trusts: the system's roots, and the CA of
//! `PROCINST_AMQP_CA_FILE` when it is set (a private CA is the usual case
//! for a broker inside a company network); and the client certificate it
//! presents, when `PROCINST_AMQP_CLIENT_CERT_FILE` and
//! `PROCINST_AMQP_CLIENT_KEY_FILE` give one (for brokers with
//! `verify_peer` and `fail_if_no_peer_cert`, and for the EXTERNAL
//! mechanism: `?auth_mechanism=external` in `AMQP_URL`).

use std::path::Path;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

use super::BrokerError;

/// A client certificate chain and its key, as PEM files.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// The TLS settings for every node: what [`trust`] gives, presenting
/// `client`'s certificate when given.
pub fn tls_config(
    ca_file: Option<&Path>,
    client: Option<ClientCertFiles<'_>>,
) -> Result<OwnedTLSConfig, BrokerError> {
    let mut config = trust(ca_file)?;
    if let Some(client) = client {
        let read = |setting: &'static str, path: &Path, marker: &str| {
            let unusable = |reason: String| BrokerError::ClientCert {
                setting,
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
            if !String::from_utf8_lossy(&pem).contains(marker) {
                return Err(unusable(format!("no {marker} in it")));
            }
            Ok(pem)
        };
        config.identity = Some(OwnedIdentity::PKCS8 {
            pem: read(
                "PROCINST_AMQP_CLIENT_CERT_FILE",
                client.cert,
                "-----BEGIN CERTIFICATE-----",
            )?,
            key: read(
                "PROCINST_AMQP_CLIENT_KEY_FILE",
                client.key,
                "-----BEGIN PRIVATE KEY-----",
            )?,
        });
    }
    Ok(config)
}

/// The trusted roots for every node: the CA file's certificates added to
/// the system roots, or the system roots alone.
pub fn trust(ca_file: Option<&Path>) -> Result<OwnedTLSConfig, BrokerError> {
    let Some(path) = ca_file else {
        return Ok(OwnedTLSConfig::default());
    };
    let unusable = |reason: String| BrokerError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| unusable(e.to_string()))?;
    // rustls skips what it cannot parse; an empty trust list would only show
    // later as "unknown issuer", so say it here.
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(unusable("no PEM certificate in it".into()));
    }
    Ok(OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_ca_file_the_system_roots_are_used() {
        assert_eq!(trust(None).expect("default"), OwnedTLSConfig::default());
    }

    #[test]
    fn a_client_certificate_that_cannot_be_read_is_a_configuration_error_naming_its_setting() {
        let dir = std::env::temp_dir().join(format!("procinst-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let both = ClientCertFiles {
            cert: &cert,
            key: &key,
        };
        let config = tls_config(None, Some(both)).expect("readable files");
        assert!(matches!(config.identity, Some(OwnedIdentity::PKCS8 { .. })));
        let missing = Path::new("/nonexistent/key.pem");
        let err = tls_config(
            None,
            Some(ClientCertFiles {
                cert: &cert,
                key: missing,
            }),
        )
        .expect_err("no key file");
        assert!(err.is_fatal());
        assert!(
            err.to_string()
                .starts_with("PROCINST_AMQP_CLIENT_KEY_FILE /nonexistent/key.pem"),
            "{err}"
        );
        let err = tls_config(
            None,
            Some(ClientCertFiles {
                cert: &key,
                key: &key,
            }),
        )
        .expect_err("a key is no certificate");
        assert!(
            err.to_string().contains("no -----BEGIN CERTIFICATE-----"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_configuration_error() {
        let missing = trust(Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(missing.is_fatal());
        assert!(missing.to_string().contains("/nonexistent/ca.pem"));
        let dir = std::env::temp_dir().join(format!("procinst-ca-{}.pem", std::process::id()));
        std::fs::write(&dir, "not a certificate").expect("write");
        let empty = trust(Some(&dir)).expect_err("no certificate");
        let _ = std::fs::remove_file(&dir);
        assert!(empty.to_string().contains("no PEM certificate"), "{empty}");
    }
}
