//! `SOMA_SECRET_KEY` handling. Kept in its own test binary (one test) because it
//! changes the process environment.

use soma_flow_stages::identity::{self, IdentitySource, Signer, SECRET_KEY_ENV};

#[test]
fn secret_key_from_the_environment_takes_precedence_and_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.key");
    let from_file = identity::keygen(&file).unwrap();

    let (signer, source) = identity::resolve(Some(&file), Some(dir.path())).unwrap();
    assert_eq!(source, IdentitySource::KeyFile(file.clone()));
    assert_eq!(signer.public_key(), from_file);

    let env_key = dir.path().join("env.key");
    let env_public = identity::keygen(&env_key).unwrap();
    let secret = std::fs::read_to_string(&env_key).unwrap();
    std::env::set_var(SECRET_KEY_ENV, &secret);
    let (signer, source) = identity::resolve(Some(&file), None).unwrap();
    assert_eq!(source, IdentitySource::Environment);
    assert_eq!(signer.public_key(), env_public);

    let mangled = format!("{}xyz", secret.trim());
    std::env::set_var(SECRET_KEY_ENV, &mangled);
    let err = Signer::from_env().unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains(SECRET_KEY_ENV), "{text}");
    assert!(!text.contains(&mangled[..10]), "{text}");

    std::env::remove_var(SECRET_KEY_ENV);
    let err = identity::resolve(None, None).unwrap_err();
    assert!(err.to_string().contains("soma-flow keygen"), "{err}");
}
