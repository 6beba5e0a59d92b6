//! Storage against a real S3 protocol: a `moto_server` started on a free loopback
//! port for this test only. The server is required (install with
//! `pip install 'moto[server]'`): a missing server fails the test, it never skips.

mod network_fixtures;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use network_fixtures::*;
use soma_flow_stages::crypto::CtrStream;
use soma_flow_stages::network::devnet::Devnet;
use soma_flow_stages::network::lifecycle::{commit, fetch_revealed_weights, reveal, RevealOutcome};
use soma_flow_stages::network::Network;
use soma_flow_stages::storage::{self, StorageError};

const BUCKET: &str = "soma-weights";

/// A server child process, killed when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn start_moto() -> ServerProcess {
    const INSTALL: &str = "this test needs a local S3 server: install it with \
                           `python3 -m pip install 'moto[server]'`";
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for command in moto_commands() {
        let spawned = Command::new(&command[0])
            .args(&command[1..])
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

/// `python3 -m http.server` serving `dir` on a free loopback port.
fn start_static_http_server(dir: &std::path::Path) -> ServerProcess {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for the static HTTP server");
    let server = ServerProcess { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// moto does not check signatures, so a bare HTTP request is enough to make a bucket.
fn create_bucket(port: u16) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket: {response}"
    );
}

#[test]
fn commit_reveal_and_fetch_through_a_local_s3_server() {
    let moto = start_moto();
    create_bucket(moto.port);
    std::env::set_var(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", moto.port),
    );
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let devnet = Devnet::init(&dir.path().join("devnet"), None).unwrap();
        let (signer, _) = devnet.identity().unwrap();
        let keys = dir.path().join("keys");
        let base = format!("s3://{BUCKET}/runs/1");

        // Over two 8 MiB chunks: exercises the multipart path.
        let (weights, plaintext) = write_weights(dir.path(), "w.safetensors", (18 << 20) + 5, 8);
        let emb = embedding(5.0);
        let record = commit(&devnet, &signer, &base, &weights, &emb, TERMS, &keys)
            .await
            .unwrap();
        assert!(
            record.manifest.url.starts_with(&base),
            "{}",
            record.manifest.url
        );
        assert_eq!(record.manifest.size, plaintext.len() as u64);

        // The stored object is the ciphertext, checked by a plain download.
        let raw = dir.path().join("raw.bin");
        let digests = storage::download(&record.manifest, &raw, CtrStream::passthrough(), None)
            .await
            .unwrap();
        assert_eq!(digests.input, record.manifest.checksum);
        assert!(std::fs::read(&raw).unwrap()[..4096] != plaintext[..4096]);

        devnet.advance_epoch().unwrap();
        assert_eq!(
            reveal(&devnet, &signer, &record, &keys).unwrap(),
            RevealOutcome::Revealed { epoch: 1 }
        );
        let model = devnet.model(record.model_id).unwrap();
        let fetched = dir.path().join("fetched.safetensors");
        fetch_revealed_weights(&model, &fetched).await.unwrap();
        assert!(std::fs::read(&fetched).unwrap() == plaintext);

        // A plain small file round trip, and a size check against a wrong manifest.
        let (small, small_bytes) = write_weights(dir.path(), "small.bin", 1234, 9);
        let url = storage::join_url(&base, "small.bin");
        let manifest = storage::upload_file(&small, &url).await.unwrap();
        let back = dir.path().join("small.back");
        storage::download(&manifest, &back, CtrStream::passthrough(), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), small_bytes);
        let mut wrong = manifest.clone();
        wrong.size += 1;
        let err = storage::download(
            &wrong,
            &dir.path().join("never"),
            CtrStream::passthrough(),
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StorageError::SizeMismatch { .. }), "{err}");
        assert!(!dir.path().join("never").exists());

        // http(s):// URLs: a plain HTTP PUT (moto takes it as an unsigned PutObject,
        // read back through S3), and a verified GET from Python's static file server.
        let http_url = format!("http://127.0.0.1:{}/{BUCKET}/via-http/small.bin", moto.port);
        let manifest = storage::upload_file(&small, &http_url).await.unwrap();
        let via_s3 = soma_flow_stages::storage::Manifest {
            url: format!("s3://{BUCKET}/via-http/small.bin"),
            ..manifest.clone()
        };
        let back = dir.path().join("small.s3");
        storage::download(&via_s3, &back, CtrStream::passthrough(), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), small_bytes);

        let served = start_static_http_server(dir.path());
        let from_http = soma_flow_stages::storage::Manifest {
            url: format!("http://127.0.0.1:{}/small.bin", served.port),
            ..manifest
        };
        let back = dir.path().join("small.http");
        storage::download(&from_http, &back, CtrStream::passthrough(), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), small_bytes);
    });
}
