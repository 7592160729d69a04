//! Whom an `amqps://` connection trusts: the system's roots, and the CA of
//! `PROCINST_AMQP_CA_FILE` when it is set (a private CA is the usual case
//! for a broker inside a company network).

use std::path::Path;

use lapin::tcp::OwnedTLSConfig;

use super::BrokerError;

/// The TLS settings for every node: the CA file's certificates added to
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
