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
    let cluster = Cluster::create("it_tls", Tcp::TlsOnly, &[]);
    let (cert, key) = ca.server(&["localhost", "127.0.0.1"]);
    let cert = cluster.file("server.crt", &cert, 0o644);
    let key = cluster.file("server.key", &key, 0o600);
    let conf = format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        cert.display(),
        key.display()
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
