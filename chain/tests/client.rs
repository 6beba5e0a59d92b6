//! `SomaClient` against broken endpoints: nothing listening, and a server that
//! answers garbage. Both must end in an error naming the URL, never a panic
//! or a hang. (The end-to-end run against a real server is in the localnet
//! crate's tests.)

use std::time::{Duration, Instant};

use soma_flow_chain::client::{ClientError, RetryPolicy, SomaClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(50),
        call_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

/// A free port with nothing listening on it.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test]
async fn no_server_is_retried_then_named() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let client = SomaClient::connect(&url, None).unwrap().with_retry(fast());
    let started = Instant::now();
    let error = client.service_info().await.unwrap_err();
    // Three attempts with 50 + 100 ms of backoff in between.
    assert!(started.elapsed() >= Duration::from_millis(150), "{error}");
    match &error {
        ClientError::Unreachable { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(error.to_string().contains(&url), "{error}");
}

#[tokio::test]
async fn a_server_sending_garbage_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(64)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let client = SomaClient::connect(&url, Some(&url))
        .unwrap()
        .with_admin(&url)
        .unwrap()
        .with_retry(fast());
    let key = soma_flow_chain::SecretKey::from_bytes(&[7; 32]);
    let errors = [
        client.service_info().await.unwrap_err(),
        client.epoch().await.unwrap_err(),
        client.balance(&key.address()).await.unwrap_err(),
        client.request_gas(&key.address()).await.unwrap_err(),
        client.advance_epoch().await.unwrap_err(),
        client.create_model(&key, 1, 0).await.unwrap_err(),
    ];
    for error in errors {
        assert!(error.to_string().contains(&url), "{error}");
    }
}

#[tokio::test]
async fn bad_urls_are_refused_up_front() {
    for url in ["fullnode.testnet.soma.org", "ftp://x", "http://exa mple"] {
        assert!(matches!(
            SomaClient::connect(url, None),
            Err(ClientError::BadUrl { .. })
        ));
    }
    // TLS endpoints build offline with the bundled roots.
    SomaClient::connect("https://fullnode.testnet.soma.org:443", None).unwrap();
}

#[test]
fn lock_conflicts_are_recognised_and_name_the_coin() {
    use soma_flow_chain::client::{is_lock_conflict, locked_object};
    let id = format!("0x{}", "ab".repeat(32));
    for message in [
        format!("Object ({id}, SequenceNumber(3), o#abc) already locked by a different transaction: x"),
        format!("Object ({id}, SequenceNumber(3), o#abc) is not available for consumption, its current version: SequenceNumber(4)"),
    ] {
        assert!(is_lock_conflict(&message));
        assert_eq!(locked_object(&message), Some(soma_flow_chain::ObjectID([0xab; 32])));
    }
    assert!(!is_lock_conflict("Invalid user signature: bad"));
    assert_eq!(locked_object("Object (zz, 1)"), None);
}
