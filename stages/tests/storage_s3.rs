//! Storage against a real S3 protocol: a `moto_server` started on a free loopback
//! port for this test only. The server is required (install with
//! `pip install 'moto[server]'`): a missing server fails the test, it never skips.

use crate::moto;
use crate::network_fixtures;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moto::{free_port, ServerProcess};
use network_fixtures::*;
use soma_flow_chain::SecretKey;
use soma_flow_stages::crypto::{CtrStream, Hash256};
use soma_flow_stages::network::lifecycle::{
    self, commit, reveal, Publish, RevealOutcome, Revealed, Upload,
};
use soma_flow_stages::network::local::Settings;
use soma_flow_stages::network::{Endpoint, Network};
use soma_flow_stages::storage::{self, StorageError};

const BUCKET: &str = "soma-weights";

/// `python3 -m http.server` serving `dir` on a free loopback port.
fn start_static_http_server(dir: &std::path::Path) -> ServerProcess {
    let port = free_port();
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

#[test]
fn commit_reveal_and_fetch_through_a_local_s3_server() {
    let moto_port = moto::shared(BUCKET);

    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        genesis: false,
        ..Settings::default()
    };
    let net = Network::connect(&Endpoint::Local, dir.path(), &settings).unwrap();
    let me = SecretKey::from_bytes(&[3; 32]);
    let keys = dir.path().join("keys");
    let base = format!("s3://{BUCKET}/runs/1");
    let up = Publish {
        model: None,
        terms: TERMS,
        upload: Upload {
            upload: base.clone(),
            public: base.clone(),
        },
        key_dir: keys.clone(),
    };
    let quiet = |_: &str| {};

    // Over two 8 MiB chunks: exercises the multipart path.
    let (weights, plaintext) = write_weights(dir.path(), "w.safetensors", (18 << 20) + 5, 8);
    let emb = embedding(5.0);
    let record = commit(&net, &me, &weights, &emb, &up, &quiet).unwrap();
    assert!(record.url.starts_with(&base), "{}", record.url);
    assert_eq!(record.size, plaintext.len() as u64);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The stored object is the ciphertext, checked by a plain download.
        let manifest = storage::Manifest {
            url: record.url.clone(),
            checksum: record.checksum,
            size: record.size,
        };
        let raw = dir.path().join("raw.bin");
        let digests = storage::download(&manifest, &raw, CtrStream::passthrough(), None)
            .await
            .unwrap();
        assert_eq!(digests.input, record.checksum);
        assert_eq!(Hash256::of(&std::fs::read(&raw).unwrap()), record.checksum);
        assert!(std::fs::read(&raw).unwrap()[..4096] != plaintext[..4096]);
    });

    net.block_on(net.client.advance_epoch()).unwrap();
    assert_eq!(
        reveal(&net, &me, &record, &keys).unwrap(),
        RevealOutcome::Revealed { epoch: 1 }
    );
    let info = net.epoch().unwrap();
    let model = Revealed::of(info.system.model(&record.model().unwrap()).unwrap()).unwrap();
    let fetched = dir.path().join("fetched.safetensors");
    lifecycle::fetch(&net, &model, &fetched, &quiet).unwrap();
    assert!(std::fs::read(&fetched).unwrap() == plaintext);

    runtime.block_on(async {
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
        let http_url = format!("http://127.0.0.1:{}/{BUCKET}/via-http/small.bin", moto_port);
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
