//! Identities and keys: encodings, key files and that secrets never leak into text.

mod network_fixtures;

use network_fixtures::mode;
use soma_flow_stages::crypto::ContentKey;
use soma_flow_stages::identity::{self, IdentityError, IdentitySource, Signer};

#[test]
fn keygen_creates_an_owner_only_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/owner.key");
    let public = identity::keygen(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(Signer::load(&path).unwrap().public_key(), public);

    let before = std::fs::read(&path).unwrap();
    let err = identity::keygen(&path).unwrap_err();
    assert!(matches!(err, IdentityError::AlreadyExists { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // No temporary file is left behind by the refused attempt.
    assert_eq!(
        std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
        1
    );
}

#[test]
fn seed_and_keypair_encodings_give_the_same_signer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    identity::keygen(&path).unwrap();
    let seed_b58 = std::fs::read_to_string(&path).unwrap();
    let signer = Signer::from_base58(&seed_b58, "test").unwrap();

    let mut keypair = bs58::decode(seed_b58.trim()).into_vec().unwrap();
    keypair.extend_from_slice(&signer.public_key().0);
    let keypair_b58 = bs58::encode(&keypair).into_string();
    let from_pair = Signer::from_base58(&keypair_b58, "test").unwrap();
    assert_eq!(from_pair.public_key(), signer.public_key());

    // A keypair whose halves disagree is refused rather than silently truncated.
    keypair[40] ^= 1;
    let err = Signer::from_base58(&bs58::encode(&keypair).into_string(), "test").unwrap_err();
    assert!(
        matches!(err, IdentityError::KeypairMismatch { .. }),
        "{err}"
    );
}

#[test]
fn malformed_secrets_are_refused_without_echoing_them() {
    let short = bs58::encode([7u8; 20]).into_string();
    let not_base58 = format!("{short}0OIl");
    for secret in [short.as_str(), not_base58.as_str()] {
        let err = Signer::from_base58(secret, "SOMA_SECRET_KEY").unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(text.contains("SOMA_SECRET_KEY"), "{text}");
            assert!(!text.contains(secret), "secret leaked into: {text}");
            assert!(!text.contains(&secret[..8]), "secret leaked into: {text}");
        }
    }
    let err = Signer::from_base58(&short, "x").unwrap_err();
    assert!(err
        .to_string()
        .contains("32-byte Ed25519 seed or a 64-byte keypair"));
}

#[test]
fn debug_output_never_shows_secret_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    identity::keygen(&path).unwrap();
    let secret = std::fs::read_to_string(&path).unwrap();
    let signer = Signer::load(&path).unwrap();
    let shown = format!("{signer:?}");
    assert!(shown.contains(&signer.public_key().to_string()));
    assert!(!shown.contains(secret.trim()), "{shown}");

    let key = ContentKey::generate().unwrap();
    let hex = key.expose_hex().to_string();
    let shown = format!("{key:?}");
    assert_eq!(shown, "ContentKey(<redacted>)");
    assert!(!shown.contains(&hex));

    let key_path = dir.path().join("content.key");
    key.save(&key_path).unwrap();
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(
        ContentKey::load(&key_path).unwrap().commitment(),
        key.commitment()
    );

    std::fs::write(&key_path, "zz-not-a-key").unwrap();
    let err = ContentKey::load(&key_path).unwrap_err();
    assert!(!err.to_string().contains("zz-not-a-key"), "{err}");
}

#[test]
fn devnet_identity_is_created_once_with_owner_only_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (first, source) = identity::devnet_identity(dir.path()).unwrap();
    let IdentitySource::DevnetThrowaway { path, created } = &source else {
        panic!("{source:?}")
    };
    assert!(*created);
    assert_eq!(mode(path), 0o600);
    assert!(source
        .to_string()
        .contains("created a throwaway devnet identity"));
    let (second, source) = identity::devnet_identity(dir.path()).unwrap();
    assert_eq!(first.public_key(), second.public_key());
    assert!(matches!(
        source,
        IdentitySource::DevnetThrowaway { created: false, .. }
    ));
}
