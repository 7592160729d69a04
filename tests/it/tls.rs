//! TLS to PostgreSQL: a CA made by the test signs a server certificate for
//! localhost and 127.0.0.1, and a cluster of the test's own serves it,
//! refusing plain TCP connections.

use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::helpers::{Env, connect};
use crate::support::pg_cluster::{Cluster, Tcp};

/// A certificate authority of the test's own.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("self-signed ca");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate for `user` (its common name) and its key, in
    /// PEM.
    fn client(&self, user: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate and its key, in PEM.
    fn server(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS-only cluster serving a certificate of `ca` for localhost and
/// 127.0.0.1.
fn tls_cluster(ca: &Ca) -> Cluster {
    tls_cluster_with(ca, Tcp::TlsOnly)
}

/// Like [`tls_cluster`], with `tcp`'s authentication; client certificates
/// are checked against `ca`.
fn tls_cluster_with(ca: &Ca, tcp: Tcp) -> Cluster {
    let cluster = Cluster::create("it_tls", tcp, &[]);
    let (cert, key) = ca.server(&["localhost", "127.0.0.1"]);
    let cert = cluster.file("server.crt", &cert, 0o644);
    let key = cluster.file("server.key", &key, 0o600);
    let ca_file = cluster.file("client-ca.pem", &ca.pem, 0o644);
    let conf = format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
        cert.display(),
        key.display(),
        ca_file.display()
    );
    let conf_d = format!("/etc/postgresql/15/{}/conf.d/tls.conf", cluster.name);
    std::fs::write(conf_d, conf).expect("write tls.conf");
    cluster.start();
    cluster
}

#[tokio::test]
async fn migrate_over_verified_tls_succeeds_and_an_untrusted_certificate_fails_fast() {
    let mut env = Env::new().await;
    let ca = Ca::new("procinst test CA");
    let cluster = tls_cluster(&ca);
    let ca_file = cluster.file("ca.pem", &ca.pem, 0o644);
    let stranger = cluster.file("stranger.pem", &Ca::new("someone else").pem, 0o644);
    let url = |host: &str, query: &str| {
        format!(
            "postgres://postgres@{host}:{}/procinst?{query}",
            cluster.port
        )
    };

    let verified = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &verified)])
        .await;
    assert!(
        out.status.success(),
        "migrate over verify-full: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A worker's pooled connections are TLS too.
    let worker_url = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    env.start_worker(&[("DATABASE_URL", &worker_url)]).await;
    let admin = connect(&cluster.socket("procinst")).await;
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'procinst'",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let (connections, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(connections > 0, "the worker is connected");
    assert_eq!(encrypted, connections, "every worker connection is TLS");

    // verify-ca checks the chain only; verify-full also the name.
    let elsewhere = |mode: &str| {
        url(
            "db.invalid",
            &format!(
                "sslmode={mode}&sslrootcert={}&hostaddr=127.0.0.1",
                ca_file.display()
            ),
        )
    };
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &elsewhere("verify-ca"))])
        .await;
    assert!(
        out.status.success(),
        "verify-ca ignores the name: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &elsewhere("verify-full"))])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "verify-full checks the name");
    assert!(stderr.contains("not valid for name"), "{stderr}");

    // verify-ca forgives the name, never the chain.
    let untrusted_chain = url(
        "db.invalid",
        &format!(
            "sslmode=verify-ca&sslrootcert={}&hostaddr=127.0.0.1",
            stranger.display()
        ),
    );
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &untrusted_chain)])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "verify-ca checks the chain");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");

    let untrusted = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", stranger.display()),
    );
    let started = Instant::now();
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &untrusted)])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an untrusted certificate is refused");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused fast, not after a hang"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
    eprintln!(
        "untrusted certificate refused in {:?}: {stderr}",
        started.elapsed()
    );
}

/// `sslcert` and `sslkey`, as libpq reads them, against a server that
/// authenticates by client certificate (`cert`, which implies
/// `clientcert=verify-full`): a certificate of its CA for the user works;
/// none, or one of another CA, fails at once with the server's reason.
#[tokio::test]
async fn a_client_certificate_authenticates_and_a_missing_or_untrusted_one_fails_fast() {
    let mut env = Env::new().await;
    let ca = Ca::new("procinst test CA");
    let cluster = tls_cluster_with(&ca, Tcp::ClientCert);
    let ca_file = cluster.file("ca.pem", &ca.pem, 0o644);
    let (cert, key) = ca.client("postgres");
    let (cert, key) = (
        cluster.file("client.crt", &cert, 0o644),
        cluster.file("client.key", &key, 0o600),
    );
    let stranger = Ca::new("someone else");
    let (bad_cert, bad_key) = stranger.client("postgres");
    let (bad_cert, bad_key) = (
        cluster.file("stranger.crt", &bad_cert, 0o644),
        cluster.file("stranger.key", &bad_key, 0o600),
    );
    let url = |client: &str| {
        format!(
            "postgres://postgres@localhost:{}/procinst?sslmode=verify-full&sslrootcert={}{client}",
            cluster.port,
            ca_file.display()
        )
    };
    let good = url(&format!(
        "&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    ));
    let out = env
        .procinst_within(&["migrate"], &[("DATABASE_URL", &good)])
        .await;
    assert!(
        out.status.success(),
        "migrate with a client certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.start_worker(&[("DATABASE_URL", &good)]).await;

    for (what, client, why) in [
        (
            "no client certificate",
            String::new(),
            "connection requires a valid client certificate",
        ),
        (
            "a certificate of another CA",
            format!(
                "&sslcert={}&sslkey={}",
                bad_cert.display(),
                bad_key.display()
            ),
            "received fatal alert: UnknownCA",
        ),
    ] {
        let started = Instant::now();
        let out = env
            .procinst_within(&["migrate"], &[("DATABASE_URL", &url(&client))])
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} is refused");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: refused fast"
        );
        assert!(stderr.contains(why), "{what}: the error says why: {stderr}");
    }
}
