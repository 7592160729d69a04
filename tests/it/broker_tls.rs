//! `amqps://` against a RabbitMQ 4 node with a TLS listener, started by the
//! test with a certificate from a CA made in the test: trusted through
//! `PROCINST_AMQP_CA_FILE` it works; signed by a CA nobody named it fails
//! fast with an error that says so.
//!
//! Needs the chroot of `tests/infra/rabbitmq4.sh up`; CI runs it with
//! `cargo test --test it broker_tls:: -- --ignored`.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::helpers::{Env, request, unique};
use crate::support::rabbitmq4::script;

/// How long an untrusted certificate may take to be refused.
const REFUSED_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test]
#[ignore = "needs the RabbitMQ 4 chroot: tests/infra/rabbitmq4.sh up"]
async fn amqps_works_with_the_ca_file_and_an_untrusted_certificate_fails_fast_and_clearly() {
    let node = TlsNode::start();
    let url = format!("amqps://guest:guest@localhost:{}/%2f", node.tls_port);
    let mut env = Env::on_broker(&url).await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let trusted = node.ca_file.to_string_lossy().into_owned();

    // The worker and `publish --wait` both connect over TLS and trust the CA.
    env.start_worker(&[("PROCINST_AMQP_CA_FILE", &trusted)])
        .await;
    let line = request("tls-1", 1, 10, "tls", 1).to_string();
    let out = env.procinst_with(
        &["publish", "--wait", "-"],
        Some(&line),
        &[("PROCINST_AMQP_CA_FILE", &trusted)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "publish over amqps: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""result":true"#), "{stdout}");

    // A CA that did not sign the node's certificate: refused, promptly.
    let stranger = node.dir.join("stranger-ca.pem");
    std::fs::write(&stranger, Ca::new("a stranger's CA").pem()).expect("write the stranger CA");
    let started = Instant::now();
    let out = env.procinst_with(
        &["dlq", "list"],
        None,
        &[("PROCINST_AMQP_CA_FILE", &stranger.to_string_lossy())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an untrusted certificate is refused");
    assert!(
        started.elapsed() < REFUSED_WITHIN,
        "refused within {REFUSED_WITHIN:?}, took {:?}",
        started.elapsed()
    );
    eprintln!("refused in {:?}: {}", started.elapsed(), stderr.trim());
    assert!(stderr.contains("certificate"), "{stderr}");
    let redacted = format!("amqps://guest:***@localhost:{}/%2f", node.tls_port);
    assert!(stderr.contains(&redacted), "names the node: {stderr}");
}

/// A broker that asks for a client certificate: one of its CA logs in by
/// its common name (EXTERNAL) or with a password beside it (PLAIN); none,
/// or one of another CA, fails at once and says so.
#[tokio::test]
#[ignore = "needs the RabbitMQ 4 chroot: tests/infra/rabbitmq4.sh up"]
async fn a_client_certificate_logs_in_by_its_name_and_a_missing_or_untrusted_one_fails_fast() {
    let (node, ca) = TlsNode::start_with(Peers::Certified);
    let user = "procinst-by-certificate";
    node.ctl(&["add_user", user, &unique("unused-password")]);
    node.ctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"]);
    let write = |name: &str, pem: String| {
        let path = node.dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.to_string_lossy().into_owned()
    };
    let (cert, key) = ca.client(user);
    let (cert, key) = (write("client.pem", cert), write("client.key", key));
    let (stranger_cert, stranger_key) = Ca::new("a stranger's CA").client(user);
    let (stranger_cert, stranger_key) = (
        write("stranger.pem", stranger_cert),
        write("stranger.key", stranger_key),
    );
    let trusted = node.ca_file.to_string_lossy().into_owned();
    let external = format!(
        "amqps://localhost:{}/%2f?auth_mechanism=external",
        node.tls_port
    );
    let mut env = Env::on_broker(&external).await;
    env.service_instance(1, 10, "0", 0, 1).await;
    let certified = [
        ("PROCINST_AMQP_CA_FILE", trusted.as_str()),
        ("PROCINST_AMQP_CLIENT_CERT_FILE", cert.as_str()),
        ("PROCINST_AMQP_CLIENT_KEY_FILE", key.as_str()),
    ];

    // EXTERNAL: the worker and `publish --wait` log in by the certificate.
    env.start_worker(&certified).await;
    let connections = node.ctl(&["list_connections", "-q", "user", "auth_mechanism"]);
    assert!(
        connections
            .lines()
            .any(|l| l.split_whitespace().eq([user, "EXTERNAL"])),
        "the worker logged in as {user} by EXTERNAL: {connections}"
    );
    let line = request("cert-1", 1, 10, "c", 1).to_string();
    let out = env.procinst_with(&["publish", "--wait", "-"], Some(&line), &certified);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "publish with a client certificate: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""result":true"#), "{stdout}");
    // PLAIN beside the certificate.
    let plain = format!("amqps://guest:guest@localhost:{}/%2f", node.tls_port);
    let mut with_password = certified.to_vec();
    with_password.push(("AMQP_URL", plain.as_str()));
    let out = env.procinst_with(&["dlq", "list"], None, &with_password);
    assert!(
        out.status.success(),
        "PLAIN with a certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (what, extra) in [
        (
            "no client certificate",
            vec![("PROCINST_AMQP_CA_FILE", trusted.as_str())],
        ),
        (
            "a certificate of another CA",
            vec![
                ("PROCINST_AMQP_CA_FILE", trusted.as_str()),
                ("PROCINST_AMQP_CLIENT_CERT_FILE", stranger_cert.as_str()),
                ("PROCINST_AMQP_CLIENT_KEY_FILE", stranger_key.as_str()),
            ],
        ),
    ] {
        let started = Instant::now();
        let out = env.procinst_with(&["dlq", "list"], None, &extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} is refused");
        assert!(
            started.elapsed() < REFUSED_WITHIN,
            "{what}: refused within {REFUSED_WITHIN:?}, took {:?}",
            started.elapsed()
        );
        assert!(
            stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownCA"),
            "{what}: {stderr}"
        );
        eprintln!(
            "{what}: refused in {:?}: {}",
            started.elapsed(),
            stderr.trim()
        );
    }
}

/// A certificate authority of the test's own.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Ca(CertifiedIssuer::self_signed(params, key).expect("CA certificate"))
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A client certificate whose common name is `user`, and its key.
    fn client(&self, user: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.0).expect("client certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for localhost and 127.0.0.1, and its key.
    fn server(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.0).expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A RabbitMQ 4 node of the chroot with a TLS listener, stopped and its
/// files removed when dropped, however the test ends.
struct TlsNode {
    name: String,
    tls_port: u16,
    /// The test's directory inside the chroot, as the host sees it.
    dir: PathBuf,
    ca_file: PathBuf,
}

/// What a [`TlsNode`] asks of its clients.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peers {
    /// Nothing: any client may connect (`verify_none`).
    Anyone,
    /// A certificate of the node's CA (`verify_peer`,
    /// `fail_if_no_peer_cert`), and EXTERNAL among the mechanisms, logging
    /// in by the certificate's common name.
    Certified,
}

impl TlsNode {
    fn start() -> TlsNode {
        TlsNode::start_with(Peers::Anyone).0
    }

    /// The node and its CA.
    fn start_with(peers: Peers) -> (TlsNode, Ca) {
        let root = chroot_root();
        let id = unique("tls");
        let inside = PathBuf::from("/tmp").join(&id);
        let dir = root.join(inside.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(&dir).expect("test directory in the chroot");
        let ca = Ca::new("procinst test CA");
        let (cert, key) = ca.server();
        let ca_file = dir.join("ca.pem");
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("server.pem", cert),
            ("server.key", key),
        ] {
            std::fs::write(dir.join(file), pem).expect("write PEM");
        }
        let tcp_port = free_port();
        let tls_port = free_port();
        let mut config = format!(
            "listeners.ssl.default = {tls_port}\n\
             ssl_options.cacertfile = {at}/ca.pem\n\
             ssl_options.certfile = {at}/server.pem\n\
             ssl_options.keyfile = {at}/server.key\n",
            at = inside.display()
        );
        config.push_str(match peers {
            Peers::Anyone => {
                "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
            }
            Peers::Certified => {
                "ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n\
                 auth_mechanisms.1 = PLAIN\n\
                 auth_mechanisms.2 = AMQPLAIN\n\
                 auth_mechanisms.3 = EXTERNAL\n\
                 ssl_cert_login_from = common_name\n"
            }
        });
        std::fs::write(dir.join("rabbitmq.conf"), config).expect("write rabbitmq.conf");
        std::fs::write(
            dir.join("enabled_plugins"),
            "[rabbitmq_auth_mechanism_ssl].\n",
        )
        .expect("write enabled_plugins");
        open_up(&dir);
        let node = TlsNode {
            name: format!("procinst4tls{}", std::process::id()),
            tls_port,
            dir,
            ca_file,
        };
        let started = Command::new(script())
            .args(["start", &node.name, &tcp_port.to_string()])
            .env("RABBITMQ_CONFIG_FILE", inside.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                inside.join("enabled_plugins"),
            )
            .status()
            .expect("run rabbitmq4.sh start");
        assert!(started.success(), "the TLS node starts");
        (node, ca)
    }

    /// `rabbitmqctl ARGS` on this node, which must succeed; its output.
    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(script())
            .args(["ctl", &self.name])
            .args(args)
            .output()
            .expect("rabbitmq4.sh ctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", &self.name]).status();
        let root = chroot_root();
        let data = root.join("var/lib/rabbitmq/mnesia");
        for suffix in ["", "-feature_flags", "-plugins-expand", ".pid"] {
            let path = data.join(format!("{}@localhost{suffix}", self.name));
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&path);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chroot_root() -> PathBuf {
    let out = Command::new(script())
        .arg("root")
        .output()
        .expect("rabbitmq4.sh root");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The node may run as the `rabbitmq` user: let it read the test's files.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644));
    }
}

/// A port nothing listens on, with room for the node's distribution port
/// (the script puts it 20000 above).
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if port < 45_000 && TcpListener::bind(("127.0.0.1", port + 20_000)).is_ok() {
            return port;
        }
    }
}
