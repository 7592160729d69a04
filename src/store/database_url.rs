//! `DATABASE_URL` as libpq reads it, as far as procinst needs: several
//! hosts with `target_session_attrs` (tokio-postgres parses those), and
//! `sslmode` with all five libpq values plus `sslrootcert`, `sslcert` and
//! `sslkey`, which tokio-postgres does not know and which are taken out
//! here.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::{Config, SslMode as WireSslMode};

/// libpq's `sslmode`. The default is `prefer`, as in libpq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Encryption against passive listeners only (libpq's `prefer` and
    /// `require` without a root certificate).
    None,
    /// The chain leads to a trusted root; any host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's store (no `sslrootcert`, or `sslrootcert=system`).
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

/// A `DATABASE_URL` that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Only the URL form can carry several hosts, `sslmode` and
    /// `sslrootcert` in a way every part of procinst reads alike (and
    /// redacts alike); libpq's `key=value` form is refused rather than
    /// half supported.
    #[error(
        "not a postgres:// URL (key=value connection strings are not supported; write postgres://user@host1:port1,host2:port2/db?sslmode=...)"
    )]
    NotAUrl,
    #[error("sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("sslrootcert is empty")]
    EmptyRootCert,
    #[error("{0} is empty")]
    EmptyPath(&'static str),
    #[error("sslcert and sslkey go together: {0} is given without {1}")]
    HalfClientCert(&'static str, &'static str),
    #[error(transparent)]
    Invalid(#[from] tokio_postgres::Error),
}

/// A parsed `DATABASE_URL`: what tokio-postgres connects with, and what
/// the TLS connector must check.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub config: Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<Roots>,
    /// The client certificate and its key (`sslcert`, `sslkey`: PEM files),
    /// presented when the server asks for one.
    pub client_cert: Option<ClientCert>,
}

/// A client certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err(UrlError::NotAUrl);
        }
        let (base, query) = raw.split_once('?').unwrap_or((raw, ""));
        let mut ssl_mode = SslMode::default();
        let mut root_cert = None;
        let (mut cert, mut cert_key) = (None, None);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(value).decode_utf8_lossy();
            match &*percent_decode_str(key).decode_utf8_lossy() {
                "sslmode" => ssl_mode = parse_ssl_mode(&value)?,
                "sslrootcert" if value.is_empty() => return Err(UrlError::EmptyRootCert),
                "sslrootcert" if value == "system" => root_cert = Some(Roots::System),
                "sslrootcert" => root_cert = Some(Roots::File(PathBuf::from(&*value))),
                "sslcert" if value.is_empty() => return Err(UrlError::EmptyPath("sslcert")),
                "sslkey" if value.is_empty() => return Err(UrlError::EmptyPath("sslkey")),
                "sslcert" => cert = Some(PathBuf::from(&*value)),
                "sslkey" => cert_key = Some(PathBuf::from(&*value)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: Config = rest.parse()?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            _ => WireSslMode::Require,
        });
        let client_cert = match (cert, cert_key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (Some(_), None) => return Err(UrlError::HalfClientCert("sslcert", "sslkey")),
            (None, Some(_)) => return Err(UrlError::HalfClientCert("sslkey", "sslcert")),
            (None, None) => None,
        };
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
            client_cert,
        })
    }

    /// As libpq: a root certificate given to `prefer` or `require` makes
    /// them check the chain, like `verify-ca`.
    pub fn verification(&self) -> Verification {
        match (self.ssl_mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verification::ChainAndName,
            (SslMode::VerifyCa, _) => Verification::Chain,
            (SslMode::Prefer | SslMode::Require, Some(_)) => Verification::Chain,
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Verification::None,
        }
    }

    /// Trusted roots for a verifying connection.
    pub fn roots(&self) -> Roots {
        self.root_cert.clone().unwrap_or(Roots::System)
    }
}

fn parse_ssl_mode(value: &str) -> Result<SslMode, UrlError> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => return Err(UrlError::SslMode(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::{Host, TargetSessionAttrs};

    use super::*;

    fn parse(raw: &str) -> DatabaseUrl {
        DatabaseUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn a_client_certificate_is_a_cert_and_a_key_or_nothing() {
        let url = parse("postgres://u@h/db?sslmode=verify-full&sslcert=/s/c.pem&sslkey=/s/k.pem");
        assert_eq!(
            url.client_cert,
            Some(ClientCert {
                cert: "/s/c.pem".into(),
                key: "/s/k.pem".into()
            })
        );
        assert!(parse("postgres://u@h/db").client_cert.is_none());
        for half in ["sslcert=/s/c.pem", "sslkey=/s/k.pem", "sslcert=&sslkey=/k"] {
            let raw = format!("postgres://u@h/db?{half}");
            assert!(DatabaseUrl::parse(&raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn several_hosts_with_read_write_find_the_primary() {
        let url = parse("postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write");
        assert_eq!(
            url.config.get_hosts(),
            [Host::Tcp("h1".into()), Host::Tcp("h2".into())]
        );
        assert_eq!(url.config.get_ports(), [5432, 5433]);
        assert_eq!(
            url.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(url.config.get_dbname(), Some("db"));
    }

    #[test]
    fn without_sslmode_tls_is_preferred_and_unverified_as_in_libpq() {
        let url = parse("postgres://postgres@127.0.0.1:5432/procinst");
        assert_eq!(url.ssl_mode, SslMode::Prefer);
        assert_eq!(url.config.get_ssl_mode(), WireSslMode::Prefer);
        assert_eq!(url.verification(), Verification::None);
    }

    #[test]
    fn each_sslmode_sets_what_is_checked() {
        for (mode, wire, checked) in [
            ("disable", WireSslMode::Disable, Verification::None),
            ("prefer", WireSslMode::Prefer, Verification::None),
            ("require", WireSslMode::Require, Verification::None),
            ("verify-ca", WireSslMode::Require, Verification::Chain),
            (
                "verify-full",
                WireSslMode::Require,
                Verification::ChainAndName,
            ),
        ] {
            let url = parse(&format!(
                "postgres://h/db?sslmode={mode}&application_name=x"
            ));
            assert_eq!(url.config.get_ssl_mode(), wire, "{mode}");
            assert_eq!(url.verification(), checked, "{mode}");
            assert_eq!(url.config.get_application_name(), Some("x"));
        }
    }

    #[test]
    fn a_root_certificate_makes_require_check_the_chain_as_in_libpq() {
        let url = parse("postgres://h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem");
        assert_eq!(url.verification(), Verification::Chain);
        assert_eq!(url.roots(), Roots::File("/tmp/ca.pem".into()));
    }

    #[test]
    fn verify_without_a_root_certificate_trusts_the_system_roots() {
        assert_eq!(
            parse("postgres://h/db?sslmode=verify-full").roots(),
            Roots::System
        );
        assert_eq!(
            parse("postgres://h/db?sslmode=verify-full&sslrootcert=system").roots(),
            Roots::System
        );
    }

    #[test]
    fn unknown_sslmodes_and_key_value_strings_are_refused_clearly() {
        let e = DatabaseUrl::parse("postgres://h/db?sslmode=allow").expect_err("allow");
        assert!(e.to_string().contains("\"allow\""), "{e}");
        let e = DatabaseUrl::parse("host=h dbname=db").expect_err("key=value");
        assert!(e.to_string().contains("key=value"), "{e}");
        assert!(DatabaseUrl::parse("postgres://h/db?sslrootcert=").is_err());
        assert!(DatabaseUrl::parse("postgres://h:notaport/db").is_err());
        assert!(DatabaseUrl::parse("postgres://h/db?no_such_option=1").is_err());
    }
}
