//! The rustls connector for tokio-postgres, checking as much of the
//! server's certificate as `sslmode` asks (see [`Verification`]).
//!
//! The crypto provider is chosen here, not taken from the process default:
//! ring, the one lapin's rustls uses too, so that two providers compiled
//! into the binary can never make rustls refuse to pick one.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::database_url::{ClientCert, DatabaseUrl, Roots, Verification};

/// Why no TLS connector could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read sslrootcert {path}")]
    RootFile {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("sslrootcert {0} holds no usable CA certificate")]
    NoRoots(String),
    #[error("no system root certificates found; give sslrootcert")]
    NoSystemRoots,
    #[error("cannot read sslcert {path}")]
    ClientCert {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("sslcert {0} holds no certificate")]
    NoClientCert(String),
    #[error("cannot read sslkey {path}")]
    ClientKey {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot set up TLS")]
    Rustls(#[from] rustls::Error),
    #[error("cannot set up certificate verification")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// The connector for `url`. With `sslmode=disable` tokio-postgres never
/// uses it.
pub fn connector(url: &DatabaseUrl) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match url.verification() {
        Verification::None => Arc::new(Unverified(provider.clone())),
        checked => {
            let roots = Arc::new(load_roots(&url.roots())?);
            let webpki =
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
            if checked == Verification::ChainAndName {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &url.client_cert {
        None => config.with_no_client_auth(),
        Some(client) => {
            let (chain, key) = load_client_cert(client)?;
            config.with_client_auth_cert(chain, key)?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The certificate chain and private key of `sslcert` and `sslkey`.
fn load_client_cert(
    client: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let shown = client.cert.display().to_string();
    let chain = CertificateDer::pem_file_iter(&client.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::ClientCert {
            path: shown.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoClientCert(shown));
    }
    let key = PrivateKeyDer::from_pem_file(&client.key).map_err(|source| TlsError::ClientKey {
        path: client.key.display().to_string(),
        source,
    })?;
    Ok((chain, key))
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let shown = path.display().to_string();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::RootFile {
                    path: shown.clone(),
                    source,
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::NoRoots(shown));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "skipping unreadable system root certificates");
            }
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted root, the name may be any.
/// WebPKI checks the chain before the name, so a wrong name alone means the
/// chain is good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate, as in libpq: any
/// certificate is accepted, the handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unverified_modes_need_no_root_certificate() {
        for mode in ["disable", "prefer", "require"] {
            let url =
                DatabaseUrl::parse(&format!("postgres://h/db?sslmode={mode}")).expect("parses");
            assert!(connector(&url).is_ok(), "{mode}");
        }
    }

    #[test]
    fn a_missing_root_certificate_file_is_named_in_the_error() {
        let url = DatabaseUrl::parse(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .expect("parses");
        let e = connector(&url).err().expect("no such file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
