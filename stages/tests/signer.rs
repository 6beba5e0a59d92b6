//! Signing keys: `SOMA_SECRET_KEY`, key files, formats, and that a key never
//! leaks into an error. The environment's value is passed in (`resolve_from`): tests
//! share one process and must not change its environment.

use soma_flow_chain::SecretKey;
use soma_flow_stages::network::signer::{self, Source, SECRET_KEY_ENV};

#[test]
fn keys_come_from_the_environment_a_key_file_or_the_local_throwaway_and_never_leak() {
    let dir = tempfile::tempdir().unwrap();

    // keygen: a 0600 somaprivkey1… file that is never overwritten.
    let file = dir.path().join("me.key");
    let made = signer::keygen(&file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("somaprivkey1"), "the SDK's keystore form");
    assert!(signer::keygen(&file)
        .unwrap_err()
        .to_string()
        .contains("refusing to overwrite"));

    let (key, source) = signer::resolve_from(None, Some(&file), Some(dir.path())).unwrap();
    assert_eq!(source, Source::KeyFile(file.clone()));
    assert_eq!(key.address(), made.address());

    // Every form the SDK accepts names the same key.
    let hex = made.expose_hex();
    for form in [
        hex.to_string(),
        format!("0x{}", &*hex),
        made.to_bech32().to_string(),
    ] {
        assert_eq!(
            signer::parse(&form, "test").unwrap().address(),
            made.address()
        );
    }

    // The environment wins over the file.
    let other = SecretKey::from_bytes(&[7; 32]);
    let (key, source) =
        signer::resolve_from(Some(other.to_bech32().as_str()), Some(&file), None).unwrap();
    assert_eq!(source, Source::Environment);
    assert_eq!(key.address(), other.address());

    // A malformed key is named by where it came from, never shown.
    let mangled = format!("{}xyz", &*other.expose_hex());
    let err = format!(
        "{:#}",
        signer::resolve_from(Some(&mangled), None, None).unwrap_err()
    );
    assert!(
        err.contains(SECRET_KEY_ENV) && err.contains("somaprivkey1"),
        "{err}"
    );
    assert!(!err.contains(&mangled[..16]), "{err}");
    std::fs::write(dir.path().join("bad.key"), &mangled).unwrap();
    let err = format!(
        "{:#}",
        signer::load(&dir.path().join("bad.key")).unwrap_err()
    );
    assert!(
        err.contains("bad.key") && !err.contains(&mangled[..16]),
        "{err}"
    );

    // No key anywhere: say how to make one; on the local network, a throwaway.
    let err = signer::resolve_from(None, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("soma-flow keygen"), "{err}");
    let local = dir.path().join("localnet");
    let (first, source) = signer::resolve_from(None, None, Some(&local)).unwrap();
    assert!(
        matches!(source, Source::LocalThrowaway { created: true, .. }),
        "{source:?}"
    );
    let (again, source) = signer::resolve_from(None, None, Some(&local)).unwrap();
    assert!(matches!(
        source,
        Source::LocalThrowaway { created: false, .. }
    ));
    assert_eq!(first.address(), again.address());
    assert_eq!(
        local
            .join(signer::LOCAL_KEY_FILE)
            .metadata()
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}
