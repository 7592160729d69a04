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

impl TlsNode {
    fn start() -> TlsNode {
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
        let config = format!(
            "listeners.ssl.default = {tls_port}\n\
             ssl_options.cacertfile = {at}/ca.pem\n\
             ssl_options.certfile = {at}/server.pem\n\
             ssl_options.keyfile = {at}/server.key\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            at = inside.display()
        );
        std::fs::write(dir.join("rabbitmq.conf"), config).expect("write rabbitmq.conf");
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
            .status()
            .expect("run rabbitmq4.sh start");
        assert!(started.success(), "the TLS node starts");
        node
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
