//! `procinst health`: asks a running worker's `/readyz` (or `/healthz`)
//! and exits 0 or 1, for container health checks where no HTTP client is
//! installed.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for the worker's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Ask `/healthz` (the process answers) instead of `/readyz` (it is
    /// consuming with a healthy broker channel and database).
    #[arg(long)]
    live: bool,
}

/// Exit 0 when the endpoint answers 200; prints the answer's first line.
pub async fn run(addr: SocketAddr, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let path = if args.live { "/healthz" } else { "/readyz" };
    let target = probe_address(addr);
    let (status, body) = tokio::time::timeout(PROBE_TIMEOUT, get(target, path))
        .await
        .with_context(|| format!("no answer from http://{target}{path} within {PROBE_TIMEOUT:?}"))?
        .with_context(|| format!("cannot ask http://{target}{path}"))?;
    println!("{status} {}", body.lines().next().unwrap_or_default());
    Ok(if status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The worker listens on `addr`; a wildcard address is asked on loopback.
fn probe_address(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// A one-shot HTTP/1.0 GET: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("not an HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_probed_on_loopback() {
        let probed = probe_address("0.0.0.0:9464".parse().expect("addr"));
        assert_eq!(probed, "127.0.0.1:9464".parse().expect("addr"));
        let probed = probe_address("[::]:9464".parse().expect("addr"));
        assert_eq!(probed, "[::1]:9464".parse().expect("addr"));
        let given = "10.0.0.5:9464".parse().expect("addr");
        assert_eq!(probe_address(given), given);
    }
}
