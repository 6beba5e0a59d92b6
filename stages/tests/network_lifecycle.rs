//! Commit, reveal and fetch on the local network, through the same gRPC client
//! that talks to testnet: the local network checks signatures, commitments,
//! epochs and balances exactly as the chain does, so what passes here is what the
//! chain accepts.

use crate::network_fixtures;

use network_fixtures::*;
use soma_flow_chain::SecretKey;
use soma_flow_stages::network::lifecycle::{
    self, CommitRecord, Publish, RevealOutcome, Revealed, Upload,
};
use soma_flow_stages::network::local::Settings;
use soma_flow_stages::network::models::Selection;
use soma_flow_stages::network::{genesis, Endpoint, Network};

fn quiet(_: &str) {}

/// Publishing to a `file://` bucket and a key folder in `dir`.
fn publish(dir: &std::path::Path) -> Publish {
    let url = file_url(&dir.join("bucket"));
    Publish {
        model: None,
        terms: TERMS,
        upload: Upload {
            upload: url.clone(),
            public: url,
        },
        key_dir: dir.join("keys"),
    }
}

fn empty_network(store: &std::path::Path) -> Network {
    let settings = Settings {
        genesis: false,
        ..Settings::default()
    };
    Network::connect(&Endpoint::Local, store, &settings).unwrap()
}

/// Where `commit` left the escrow of `record`, in the `file://` bucket of `publish`.
fn escrow_path(dir: &std::path::Path, record: &CommitRecord) -> std::path::PathBuf {
    dir.join("bucket")
        .join(&record.model_id)
        .join(format!("{}.escrow", &record.key_commitment.to_hex()[..16]))
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

#[test]
fn a_new_local_network_reveals_the_genesis_models_and_fetch_decrypts_them() {
    let store = tempfile::tempdir().unwrap();
    let net = Network::connect(&Endpoint::Local, store.path(), &Settings::default()).unwrap();
    let info = net.epoch().unwrap();
    assert_eq!(info.epoch, 1, "committed in epoch 0, revealed in epoch 1");
    assert_eq!(info.system.parameters.target_embedding_dim, 128, "v1-tiny");
    let revealed: Vec<Revealed> = info.system.models.iter().filter_map(Revealed::of).collect();
    assert_eq!(revealed.len(), 2);
    for model in &revealed {
        let shipped = genesis::MODELS
            .iter()
            .find(|g| g.owner().address() == model.owner)
            .expect("a genesis owner");
        assert_eq!(model.embedding, shipped.embedding());
        let dest = store.path().join("fetched");
        lifecycle::fetch(&net, model, &dest, &quiet).unwrap();
        assert!(
            std::fs::read(&dest).unwrap() == shipped.weights,
            "{}",
            shipped.name
        );

        // A manifest URL that no longer answers: the fullnode's /model/{id} serves
        // the same verified bytes.
        let mut moved = model.clone();
        moved.manifest = soma_flow_chain::Manifest::new(
            "file:///nowhere/gone.bin",
            model.manifest.checksum(),
            model.manifest.size(),
        )
        .unwrap();
        std::fs::remove_file(&dest).unwrap();
        lifecycle::fetch(&net, &moved, &dest, &quiet).unwrap();
        assert!(std::fs::read(&dest).unwrap() == shipped.weights);

        // Decrypted as it arrives: an interrupted fetch left the plaintext so far
        // beside `dest`; the next one continues it (rebuilding the ciphertext's
        // hash from it) without falling back.
        let part = store.path().join(format!(
            ".fetch-{}.part",
            hex::encode(model.manifest.checksum().0)
        ));
        let notes = std::sync::Mutex::new(Vec::new());
        let note = |line: &str| notes.lock().unwrap().push(line.to_owned());
        std::fs::remove_file(&dest).unwrap();
        std::fs::write(&part, &shipped.weights[..shipped.weights.len() / 3]).unwrap();
        lifecycle::fetch(&net, model, &dest, &note).unwrap();
        assert!(std::fs::read(&dest).unwrap() == shipped.weights);
        assert!(!part.exists());
        let fell_back = |notes: &std::sync::Mutex<Vec<String>>| {
            notes.lock().unwrap().iter().any(|l| l.contains("trying"))
        };
        assert!(!fell_back(&notes), "{:?}", notes.lock().unwrap());
        // A damaged prefix fails the manifest's checksum at the URL; the fullnode's
        // copy, fetched afresh, passes.
        std::fs::remove_file(&dest).unwrap();
        std::fs::write(&part, vec![7u8; shipped.weights.len() / 3]).unwrap();
        lifecycle::fetch(&net, model, &dest, &note).unwrap();
        assert!(std::fs::read(&dest).unwrap() == shipped.weights);
        assert!(fell_back(&notes), "{:?}", notes.lock().unwrap());
    }
}

#[test]
fn commit_and_reveal_follow_the_chain_rules_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let net = empty_network(dir.path());
    let keys = dir.path().join("keys");
    let me = key(1);
    let (weights, plaintext) = write_weights(dir.path(), "w.safetensors", 3 << 20, 1);
    let emb = embedding(1.0);
    let up = publish(dir.path());

    let record = lifecycle::commit(&net, &me, &weights, &emb, &up, &quiet).unwrap();
    assert_eq!(record.commit_epoch, 0);
    assert_eq!(record.size, plaintext.len() as u64);
    assert!(record.digest.is_some());
    // The chain holds exactly the recorded manifest.
    let info = net.epoch().unwrap();
    let model = info.system.model(&record.model().unwrap()).unwrap();
    assert_eq!(model.state, "pending");
    let awaiting = lifecycle::awaiting(model).unwrap();
    assert_eq!(awaiting.manifest.url().as_str(), record.url);
    assert_eq!(awaiting.manifest.checksum().0, record.checksum.0);
    assert_eq!(model.owner, me.address());

    // Committing the same weights again is the same commit; other weights are
    // refused while it awaits its reveal.
    let again = lifecycle::commit(&net, &me, &weights, &emb, &up, &quiet).unwrap();
    assert_eq!(again, record);
    let (other, _) = write_weights(dir.path(), "other.safetensors", 4096, 2);
    let err = lifecycle::commit(&net, &me, &other, &emb, &up, &quiet).unwrap_err();
    assert!(
        format!("{err:#}").contains("awaiting its reveal in epoch 1"),
        "{err:#}"
    );

    // Exactly the next epoch.
    assert_eq!(
        lifecycle::reveal(&net, &me, &record, &keys).unwrap(),
        RevealOutcome::NotYet { from_epoch: 1 }
    );
    assert_eq!(net.block_on(net.client.advance_epoch()).unwrap(), 1);
    assert_eq!(
        lifecycle::reveal(&net, &me, &record, &keys).unwrap(),
        RevealOutcome::Revealed { epoch: 1 }
    );
    assert_eq!(
        lifecycle::reveal(&net, &me, &record, &keys).unwrap(),
        RevealOutcome::AlreadyRevealed { epoch: 1 }
    );
    // The chain checked key and embedding against their commitments; anyone can
    // now fetch and decrypt the weights.
    let info = net.epoch().unwrap();
    let model = info.system.model(&record.model().unwrap()).unwrap();
    let revealed = Revealed::of(model).expect("active");
    assert_eq!(revealed.embedding, emb);
    let fetched = dir.path().join("fetched");
    lifecycle::fetch(&net, &revealed, &fetched, &quiet).unwrap();
    assert!(std::fs::read(&fetched).unwrap() == plaintext);
    // Revealed weights committed again: nothing new is sent.
    let same = lifecycle::commit(&net, &me, &weights, &emb, &up, &quiet).unwrap();
    assert_eq!(same, record);

    // An update of the Active model, then a missed window.
    let update = lifecycle::commit(&net, &me, &other, &emb, &up, &quiet).unwrap();
    assert_eq!(
        (update.model_id.as_str(), update.commit_epoch),
        (record.model_id.as_str(), 1)
    );
    for _ in 0..2 {
        net.block_on(net.client.advance_epoch()).unwrap();
    }
    assert_eq!(
        lifecycle::reveal(&net, &me, &update, &keys).unwrap(),
        RevealOutcome::Missed {
            commit_epoch: 1,
            current_epoch: 3
        }
    );
    let kept: CommitRecord = serde_json::from_slice(
        &std::fs::read(keys.join(format!(
            "{}-{}.json",
            update.model_id, update.key_commitment
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        kept, update,
        "the key folder holds the record a later run reveals from"
    );
}

#[test]
fn a_machine_without_the_key_folder_reveals_from_the_escrow_with_the_signing_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let net = empty_network(dir.path());
    let me = key(1);
    let (weights, _) = write_weights(dir.path(), "w.safetensors", 1 << 20, 1);
    let emb = embedding(1.0);
    let up = publish(dir.path());
    let record = lifecycle::commit(&net, &me, &weights, &emb, &up, &quiet).unwrap();
    net.block_on(net.client.advance_epoch()).unwrap();

    // The escrow beside the ciphertext holds neither key nor embedding in the clear.
    let key_file = record.key_path(&dir.path().join("keys"));
    let key_hex = std::fs::read_to_string(&key_file).unwrap();
    let escrow_path = escrow_path(dir.path(), &record);
    let sealed = std::fs::read(&escrow_path).unwrap();
    let sealed_text = String::from_utf8_lossy(&sealed);
    assert!(!sealed_text.contains(key_hex.trim()) && !sealed_text.contains("embedding"));

    // Another owner's key does not open it; nothing is revealed.
    let fresh = dir.path().join("fresh-keys");
    let err =
        lifecycle::pending_record(&net, &me.address(), &Selection::Any, Some(&key(2)), &fresh)
            .unwrap_err();
    assert!(
        format!("{err:#}").contains("does not open with this signing key"),
        "{err:#}"
    );
    // Without a signing key there is nothing to open it with.
    assert!(lifecycle::pending_record(&net, &me.address(), &Selection::Any, None, &fresh).is_err());

    // The owner's key restores the record (the chain's epoch) and the key folder.
    let restored =
        lifecycle::pending_record(&net, &me.address(), &Selection::Any, Some(&me), &fresh)
            .unwrap()
            .expect("a pending commit");
    assert_eq!(restored.embedding, record.embedding);
    assert_eq!(restored.key_commitment, record.key_commitment);
    assert_eq!(restored.commit_epoch, record.commit_epoch);
    assert_eq!(
        std::fs::read_to_string(restored.key_path(&fresh)).unwrap(),
        key_hex
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(restored.key_path(&fresh))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The reveal, given only the record (from a shared cache, say), restores the key
    // from the escrow on its own.
    let bare = dir.path().join("bare-keys");
    assert_eq!(
        lifecycle::reveal(&net, &me, &record, &bare).unwrap(),
        RevealOutcome::Revealed { epoch: 1 }
    );
}

#[test]
fn a_tampered_escrow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = empty_network(dir.path());
    let me = key(1);
    let (weights, _) = write_weights(dir.path(), "w.safetensors", 4096, 1);
    let up = publish(dir.path());
    let record = lifecycle::commit(&net, &me, &weights, &embedding(1.0), &up, &quiet).unwrap();
    let escrow_path = escrow_path(dir.path(), &record);
    let mut sealed = std::fs::read(&escrow_path).unwrap();
    let n = sealed.len();
    sealed[n - 20] ^= 0x55; // inside the embedding's digits
    let mut perm = std::fs::metadata(&escrow_path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&escrow_path, perm).unwrap();
    std::fs::write(&escrow_path, &sealed).unwrap();
    let err = lifecycle::pending_record(
        &net,
        &me.address(),
        &Selection::Any,
        Some(&me),
        &dir.path().join("fresh"),
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("does not match the commitments on chain")
            || text.contains("does not open with this signing key"),
        "{text}"
    );
}

#[test]
fn what_the_chain_would_reject_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let net = empty_network(dir.path());
    let keys = dir.path().join("keys");
    let (weights, _) = write_weights(dir.path(), "w.safetensors", 4096, 3);
    let up = publish(dir.path());
    let me = key(2);

    let short = vec![0.5f32; 16];
    let err = lifecycle::commit(&net, &me, &weights, &short, &up, &quiet).unwrap_err();
    assert!(
        format!("{err:#}").contains("the embedding has 16 values"),
        "{err:#}"
    );
    let mut nan = embedding(2.0);
    nan[3] = f32::NAN;
    assert!(lifecycle::commit(&net, &me, &weights, &nan, &up, &quiet).is_err());

    // A fullnode without a faucet we can use: too little balance is said plainly.
    let rpc = net.client.rpc_url().to_owned();
    let remote = Network::connect(
        &Endpoint::Remote {
            rpc: rpc.clone(),
            faucet: None,
            admin: None,
        },
        dir.path(),
        &Settings::default(),
    )
    .unwrap();
    let err = lifecycle::commit(&remote, &me, &weights, &embedding(2.0), &up, &quiet).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("this commit needs") && text.contains("holds 0"),
        "{text}"
    );
    let info = net.epoch().unwrap();
    assert!(info.system.models.is_empty(), "nothing was created");
    assert!(!keys.exists() || std::fs::read_dir(&keys).unwrap().next().is_none());

    // An unreachable fullnode: an error naming the URL, after retries.
    let gone = Network::connect(
        &Endpoint::Remote {
            rpc: "http://127.0.0.1:9".into(),
            faucet: None,
            admin: None,
        },
        dir.path(),
        &Settings::default(),
    )
    .unwrap();
    let err = format!("{:#}", gone.epoch().unwrap_err());
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
}

#[test]
fn two_owners_commit_at_once_through_one_served_network() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_owned();
    let threads: Vec<_> = (0..2u8)
        .map(|n| {
            let store = store.clone();
            std::thread::spawn(move || {
                let net = empty_network(&store);
                let (weights, _) = write_weights(&store, &format!("w{n}"), 8192, n.into());
                let up = publish(&store);
                lifecycle::commit(
                    &net,
                    &key(10 + n),
                    &weights,
                    &embedding(n.into()),
                    &up,
                    &quiet,
                )
                .unwrap()
            })
        })
        .collect();
    let records: Vec<CommitRecord> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(records[0].model_id, records[1].model_id);
    let net = empty_network(&store);
    assert_eq!(net.epoch().unwrap().system.models.len(), 2);
}

/// `network.arch` makes a new local network only; a stage that meets one made for
/// another architecture says so in its notes (its models could not be committed).
#[test]
fn a_stage_notes_a_local_network_made_for_another_arch() {
    use soma_flow_stages::network::with::NetworkWith;
    let store = tempfile::tempdir().unwrap();
    drop(empty_network(store.path())); // v1-tiny
    let notes_for = |arch: &str| {
        let notes = std::sync::Mutex::new(Vec::new());
        let none = Default::default();
        let dir = store.path();
        let ctx = soma_flow_engine::RunContext {
            stage: "s",
            workdir: dir,
            inputs: &none,
            input_refs: &Default::default(),
            outputs_dir: dir,
            scratch: dir,
            store: dir,
            pipeline_dir: dir,
            backend: "ndarray",
            log: dir,
            progress: &|_| {},
            notes: &notes,
        };
        let with = NetworkWith {
            arch: arch.parse().unwrap(),
            ..NetworkWith::default()
        };
        drop(with.open_for(&ctx).unwrap());
        notes.into_inner().unwrap()
    };
    assert_eq!(notes_for("v1-tiny"), Vec::<String>::new());
    let notes = notes_for("v1-small");
    assert!(
        notes.len() == 1
            && notes[0].contains("demands v1-tiny models")
            && notes[0].contains("--store"),
        "{notes:?}"
    );
}
