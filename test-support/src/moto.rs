//! A local S3-compatible server (`moto_server`) for the object-store tests. It is
//! required (scripts/test.sh puts it in the project's `.venv`): a missing server fails
//! the test, it never skips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const INSTALL: &str = "this test needs a local S3 server: run the project's test script \
                       (scripts/test.sh, which makes .venv with it), or put .venv/bin first \
                       on PATH";

/// A server child process, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `moto_server` from PATH, else moto's module through `python3` (a pip install
/// under pyenv may not have created the shim yet). `MOTO_SERVER` overrides both.
fn moto_commands() -> Vec<Vec<String>> {
    if let Ok(command) = std::env::var("MOTO_SERVER") {
        return vec![command.split_whitespace().map(String::from).collect()];
    }
    vec![
        vec!["moto_server".into()],
        vec!["python3".into(), "-m".into(), "moto.server".into()],
    ]
}

pub fn start_moto() -> ServerProcess {
    start_moto_with(&[])
}

/// A moto server with extra environment, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0`, which
/// makes it check credentials as S3 does.
pub fn start_moto_with(env: &[(&str, &str)]) -> ServerProcess {
    let port = free_port();
    for command in moto_commands() {
        let spawned = Command::new(&command[0])
            .args(&command[1..])
            .envs(env.iter().copied())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = spawned else { continue };
        let mut server = ServerProcess { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if server.child.try_wait().unwrap().is_some() {
                break; // e.g. python3 without moto: try the next command
            }
            assert!(
                Instant::now() < deadline,
                "{command:?} did not listen on port {port} within 60 s; {INSTALL}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!(
        "no working moto server found (tried {:?}); {INSTALL}",
        moto_commands()
    );
}

/// What moto needs to take a request as the test account's (it checks no signatures).
const AUTHORIZATION: &str =
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0";

/// One bare HTTP request to moto: the status line and body.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} /{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Authorization: {AUTHORIZATION}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, response[split + 4..].to_vec())
}

pub fn create_bucket(port: u16, bucket: &str) {
    let (status, body) = request(port, "PUT", bucket, b"");
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "create bucket: {status} {}",
        String::from_utf8_lossy(&body)
    );
}

/// Writes an object, as anyone with access to the bucket might.
pub fn put_object(port: u16, bucket: &str, key: &str, bytes: &[u8]) {
    let (status, _) = request(port, "PUT", &format!("{bucket}/{key}"), bytes);
    assert!(status.starts_with("HTTP/1.1 200"), "put {key}: {status}");
}

/// An object's bytes, or `None` when there is none.
pub fn get_object(port: u16, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let (status, body) = request(port, "GET", &format!("{bucket}/{key}"), b"");
    status.starts_with("HTTP/1.1 200").then_some(body)
}

/// The process's one moto server, with its endpoint and test credentials in the
/// environment the way users set them (object_store reads `AWS_*`). The tests share
/// one process, so they share one server and one environment; each uses its own
/// bucket, created here.
pub fn shared(bucket: &str) -> u16 {
    static MOTO: OnceLock<ServerProcess> = OnceLock::new();
    let port = MOTO
        .get_or_init(|| {
            let moto = start_moto();
            std::env::set_var(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", moto.port),
            );
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
            moto
        })
        .port;
    create_bucket(port, bucket);
    port
}
