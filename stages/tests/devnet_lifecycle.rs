//! Commit-reveal on the devnet through the stage-level operations.

mod network_fixtures;

use network_fixtures::*;
use soma_flow_stages::crypto::ContentKey;
use soma_flow_stages::identity::{IdentitySource, Signer};
use soma_flow_stages::network::devnet::{Devnet, DevnetOptions};
use soma_flow_stages::network::lifecycle::{
    commit, fetch_revealed_weights, reveal, LifecycleError, ModelTerms, RecordStatus, RevealOutcome,
};
use soma_flow_stages::network::{ModelState, Network, NetworkError, Rejection};
use soma_flow_stages::storage::StorageError;

struct Fixture {
    dir: tempfile::TempDir,
    devnet: Devnet,
    signer: Signer,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let devnet = Devnet::init(&dir.path().join("devnet"), &DevnetOptions::default()).unwrap();
        let (signer, source) = devnet.identity().unwrap();
        assert!(matches!(
            source,
            IdentitySource::DevnetThrowaway { created: true, .. }
        ));
        assert!(source.to_string().contains("throwaway devnet identity"));
        Self {
            dir,
            devnet,
            signer,
        }
    }

    fn bucket(&self) -> String {
        file_url(&self.dir.path().join("bucket"))
    }

    fn keys(&self) -> std::path::PathBuf {
        self.dir.path().join("keys")
    }
}

#[tokio::test]
async fn full_cycle_commit_reveal_fetch_and_update() {
    let fx = Fixture::new();
    // Larger than one streaming chunk, and not a multiple of the AES block.
    let (weights, plaintext) = write_weights(fx.dir.path(), "w.safetensors", (9 << 20) + 13, 1);
    let emb = embedding(0.5);

    let record = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    assert_eq!(record.commit_epoch, 0);
    assert_eq!(record.manifest.size, plaintext.len() as u64);
    assert_eq!(mode(&record.key_path(&fx.keys())), 0o600);

    let ciphertext = std::fs::read(url_path(&record.manifest.url)).unwrap();
    assert_eq!(ciphertext.len(), plaintext.len());
    assert_ne!(ciphertext[..4096], plaintext[..4096]);

    let model = fx.devnet.model(record.model_id).unwrap();
    assert_eq!(model.state, ModelState::Pending);
    assert_eq!(model.owner, fx.signer.public_key());
    assert_eq!(model.commission_bps, 1_000);

    // Re-running the stage must not commit a second time.
    let again = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    assert_eq!(again, record);
    assert_eq!(fx.devnet.models().unwrap().len(), 1);

    let rows = fx.devnet.model_rows().unwrap();
    assert_eq!(rows[0].state, ModelState::Pending);
    assert_eq!(rows[0].decryption_key, None);
    assert_eq!(rows[0].embedding, None);

    let outcome = reveal(&fx.devnet, &fx.signer, &record, &fx.keys()).unwrap();
    assert_eq!(outcome, RevealOutcome::NotYet { from_epoch: 1 });

    assert_eq!(fx.devnet.advance_epoch().unwrap(), 1);
    assert_eq!(
        reveal(&fx.devnet, &fx.signer, &record, &fx.keys()).unwrap(),
        RevealOutcome::Revealed { epoch: 1 }
    );
    assert_eq!(
        reveal(&fx.devnet, &fx.signer, &record, &fx.keys()).unwrap(),
        RevealOutcome::AlreadyRevealed { epoch: 1 }
    );
    assert_eq!(
        record.check(&fx.devnet).unwrap(),
        RecordStatus::Revealed { reveal_epoch: 1 }
    );

    let rows = fx.devnet.model_rows().unwrap();
    let key = ContentKey::load(&record.key_path(&fx.keys())).unwrap();
    assert_eq!(rows[0].state, ModelState::Active);
    assert_eq!(rows[0].embedding.as_deref(), Some(&emb[..]));
    assert_eq!(
        rows[0].decryption_key.as_deref(),
        Some(key.expose_hex().as_str())
    );
    assert!(serde_json::to_string(&rows)
        .unwrap()
        .contains("decryption_key"));

    let model = fx.devnet.model(record.model_id).unwrap();
    let fetched = fx.dir.path().join("fetched/w.safetensors");
    fetch_revealed_weights(&model, &fetched).await.unwrap();
    assert!(std::fs::read(&fetched).unwrap() == plaintext);

    // An Active model's next commit is a pending update until revealed.
    let (weights2, _) = write_weights(fx.dir.path(), "w2.safetensors", 4096, 2);
    let update = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights2,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    assert_eq!(update.model_id, record.model_id);
    assert_eq!(update.commit_epoch, 1);
    let row = &fx.devnet.model_rows().unwrap()[0];
    assert_eq!(row.state, ModelState::Active);
    assert!(row.pending_update);
    assert_eq!(row.decryption_key, None);
    fx.devnet.advance_epoch().unwrap();
    assert_eq!(
        reveal(&fx.devnet, &fx.signer, &update, &fx.keys()).unwrap(),
        RevealOutcome::Revealed { epoch: 2 }
    );
    assert_eq!(record.check(&fx.devnet).unwrap(), RecordStatus::Superseded);
}

#[tokio::test]
async fn reveal_two_epochs_late_is_missed_and_rejected_then_recommit_works() {
    let fx = Fixture::new();
    let (weights, _) = write_weights(fx.dir.path(), "w.safetensors", 1000, 3);
    let emb = embedding(1.0);
    let record = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    fx.devnet.advance_epoch().unwrap();
    fx.devnet.advance_epoch().unwrap();

    assert_eq!(
        reveal(&fx.devnet, &fx.signer, &record, &fx.keys()).unwrap(),
        RevealOutcome::Missed {
            commit_epoch: 0,
            current_epoch: 2
        }
    );
    let message = RevealOutcome::Missed {
        commit_epoch: 0,
        current_epoch: 2,
    }
    .to_string();
    assert!(message.contains("new commit is needed"), "{message}");

    let key = ContentKey::load(&record.key_path(&fx.keys())).unwrap();
    let err = fx
        .devnet
        .reveal_model(&fx.signer, record.model_id, &key, &emb)
        .unwrap_err();
    assert!(matches!(
        err,
        NetworkError::Rejected(Rejection::RevealEpochMismatch {
            current_epoch: 2,
            required_epoch: 1,
            ..
        })
    ));
    let text = err.to_string();
    assert!(text.contains("reveal-epoch mismatch"), "{text}");
    assert!(text.contains("it is epoch 2"), "{text}");
    assert!(text.contains("only be revealed in epoch 1"), "{text}");

    // Same weights again: the dead commit is not reused, a fresh one is made.
    let fresh = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    assert_eq!(fresh.commit_epoch, 2);
    assert_ne!(fresh.commitments.key, record.commitments.key);
    fx.devnet.advance_epoch().unwrap();
    assert_eq!(
        reveal(&fx.devnet, &fx.signer, &fresh, &fx.keys()).unwrap(),
        RevealOutcome::Revealed { epoch: 3 }
    );
}

#[tokio::test]
async fn only_the_owner_and_the_committed_key_and_embedding_are_accepted() {
    let fx = Fixture::new();
    let (weights, _) = write_weights(fx.dir.path(), "w.safetensors", 1000, 4);
    let emb = embedding(2.0);
    let record = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    fx.devnet.advance_epoch().unwrap();
    let key = ContentKey::load(&record.key_path(&fx.keys())).unwrap();
    let key_hex = key.expose_hex().to_string();

    let intruder = Signer::generate().unwrap();
    let err = fx
        .devnet
        .reveal_model(&intruder, record.model_id, &key, &emb)
        .unwrap_err();
    assert!(
        matches!(err, NetworkError::Rejected(Rejection::NotOwner { .. })),
        "{err}"
    );
    let err = reveal(&fx.devnet, &intruder, &record, &fx.keys()).unwrap_err();
    assert!(err.to_string().contains("not by the signer"), "{err}");

    let wrong_key = ContentKey::generate().unwrap();
    let err = fx
        .devnet
        .reveal_model(&fx.signer, record.model_id, &wrong_key, &emb)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rejected by the network: the revealed decryption key does not match its commitment"
    );
    assert!(!err.to_string().contains(wrong_key.expose_hex().as_str()));

    let err = fx
        .devnet
        .reveal_model(&fx.signer, record.model_id, &key, &embedding(9.0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetworkError::Rejected(Rejection::CommitmentMismatch { what: "embedding" })
        ),
        "{err}"
    );
    for text in [format!("{err}"), format!("{err:?}"), format!("{record:?}")] {
        assert!(!text.contains(&key_hex), "key leaked into: {text}");
    }

    // A request whose body was altered after signing fails verification.
    let mut forged = soma_flow_stages::network::Request::CreateModel {
        stake: 1,
        commission_bps: 1,
    }
    .sign(&fx.signer);
    forged.request = soma_flow_stages::network::Request::CreateModel {
        stake: 1,
        commission_bps: 2,
    };
    assert!(matches!(
        fx.devnet.submit(&forged).unwrap_err(),
        NetworkError::Rejected(Rejection::BadSignature)
    ));

    // Nothing above changed the model; the real reveal still works.
    assert_eq!(
        reveal(&fx.devnet, &fx.signer, &record, &fx.keys()).unwrap(),
        RevealOutcome::Revealed { epoch: 1 }
    );
}

#[tokio::test]
async fn commission_above_10000_bps_is_rejected() {
    let fx = Fixture::new();
    let err = fx.devnet.create_model(&fx.signer, 1, 10_001).unwrap_err();
    assert!(matches!(
        err,
        NetworkError::Rejected(Rejection::CommissionTooHigh { bps: 10_001 })
    ));
    fx.devnet.create_model(&fx.signer, 1, 10_000).unwrap();

    let fx = Fixture::new();
    let (weights, _) = write_weights(fx.dir.path(), "w.safetensors", 100, 5);
    let terms = ModelTerms {
        stake: 1,
        commission_bps: 20_000,
    };
    let err = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &embedding(0.0),
        terms,
        &fx.keys(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("exceeds the maximum of 10000 bps"),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_ciphertext_is_detected_and_not_written() {
    let fx = Fixture::new();
    let (weights, _) = write_weights(fx.dir.path(), "w.safetensors", 5000, 6);
    let emb = embedding(3.0);
    let record = commit(
        &fx.devnet,
        &fx.signer,
        &fx.bucket(),
        &weights,
        &emb,
        TERMS,
        &fx.keys(),
    )
    .await
    .unwrap();
    fx.devnet.advance_epoch().unwrap();
    reveal(&fx.devnet, &fx.signer, &record, &fx.keys()).unwrap();

    let stored = url_path(&record.manifest.url);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();

    let model = fx.devnet.model(record.model_id).unwrap();
    let dest = fx.dir.path().join("fetched.safetensors");
    let err = fetch_revealed_weights(&model, &dest).await.unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::Storage(StorageError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn timed_epochs_follow_the_clock_and_refuse_manual_advance() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::init(
        &dir.path().join("devnet"),
        &DevnetOptions {
            epoch_duration: Some("1s".into()),
            genesis: false,
        },
    )
    .unwrap();
    let (signer, _) = devnet.identity().unwrap();
    let start = devnet.current_epoch().unwrap();
    let err = devnet.advance_epoch().unwrap_err();
    assert!(
        err.to_string().contains("cannot be advanced by hand"),
        "{err}"
    );

    let (weights, _) = write_weights(dir.path(), "w.safetensors", 100, 7);
    let emb = embedding(4.0);
    let keys = dir.path().join("keys");
    let bucket = file_url(&dir.path().join("bucket"));
    let record = commit(
        &devnet,
        &signer,
        &bucket,
        &weights,
        &emb,
        network_fixtures::TERMS,
        &keys,
    )
    .await
    .unwrap();
    assert!(record.commit_epoch >= start);

    let status = devnet.status().unwrap();
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["epochs"]["mode"], "timed");
    assert_eq!(json["epochs"]["epoch_duration"], "1s");

    // Wait for the next epoch and reveal in it; bounded so a broken clock fails fast.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match reveal(&devnet, &signer, &record, &keys).unwrap() {
            RevealOutcome::NotYet { from_epoch } => {
                assert_eq!(from_epoch, record.commit_epoch + 1);
                assert!(std::time::Instant::now() < deadline, "epoch never advanced");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            RevealOutcome::Revealed { epoch } => {
                assert_eq!(epoch, record.commit_epoch + 1);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let reopened = Devnet::open(&dir.path().join("devnet")).unwrap();
    assert!(reopened.current_epoch().unwrap() > start);
}

#[test]
fn devnet_init_refuses_an_existing_devnet_and_open_requires_init() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devnet");
    let err = Devnet::open(&path).unwrap_err();
    assert!(err.to_string().contains("soma-flow devnet init"), "{err}");
    Devnet::init(&path, &DevnetOptions::default()).unwrap();
    let err = Devnet::init(&path, &DevnetOptions::default()).unwrap_err();
    assert!(err.to_string().contains("already initialised"), "{err}");
    let err = Devnet::init(
        &dir.path().join("other"),
        &DevnetOptions {
            epoch_duration: Some("soon".into()),
            genesis: false,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a duration"), "{err}");
    let net = Devnet::open_or_init(&path, &DevnetOptions::default()).unwrap();
    assert_eq!(net.status().unwrap().epoch, 0);
}
