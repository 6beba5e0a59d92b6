//! A local network served in process on free ports (for the server tests), and a bare HTTP/1.1 GET.

use soma_flow_chain::client::{RetryPolicy, SomaClient};
use soma_flow_localnet::server::{serve, ServerConfig, ServerHandle};
use soma_flow_localnet::GenesisConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The localnet `--small-model` dimension.
pub const DIM: usize = 16;

pub async fn network(dir: &std::path::Path) -> ServerHandle {
    let config = ServerConfig::new(dir, GenesisConfig::new(DIM as u64)).ephemeral_ports();
    serve(config).await.expect("the local network starts")
}

pub fn client(handle: &ServerHandle) -> SomaClient {
    SomaClient::connect(&handle.rpc_url(), Some(&handle.faucet_url()))
        .unwrap()
        .with_admin(&handle.admin_url())
        .unwrap()
        .with_retry(RetryPolicy {
            lock_backoff: std::time::Duration::from_millis(50),
            ..RetryPolicy::default()
        })
}

pub fn embedding(seed: f32) -> Vec<f32> {
    (0..DIM).map(|i| seed + i as f32 / 8.0).collect()
}

/// `GET path` over HTTP/1.1: the status code, headers and body.
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    range: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let range = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{range}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, head, response[split + 4..].to_vec())
}
