//! Who signs: a key as the official SDK accepts it (64 hex digits, `somaprivkey1…`,
//! or a BIP-39 mnemonic), from `SOMA_SECRET_KEY`, from a key file made by
//! `soma-flow keygen`, or, on the local network only, a throwaway key created in
//! its folder on first use.
//!
//! Keys never reach logs or errors: errors name where a key came from and the
//! formats accepted, never its contents. Key files are written 0600.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use soma_flow_chain::{PublicKey, SecretKey};
use soma_flow_engine::remote::{Address, KeyScheme};
use zeroize::Zeroizing;

use crate::private_file::{self, Existing};

/// The environment variable the SOMA tools read the signing key from.
pub const SECRET_KEY_ENV: &str = "SOMA_SECRET_KEY";

/// The local network's throwaway key, inside its folder.
pub const LOCAL_KEY_FILE: &str = "signer.key";

const FORMATS: &str =
    "64 hex digits (0x optional), a somaprivkey1… string, or a 12- or 24-word BIP-39 mnemonic";

/// The remote store's entries signed with SOMA keys: key files as `soma-flow keygen`
/// writes them (or any form the SDK accepts), addresses as SOMA derives them.
pub const REMOTE_KEYS: KeyScheme = KeyScheme {
    load: |path| Ok(load(path)?.ed25519().clone()),
    address: |key| Address(PublicKey(key.to_bytes()).address().0),
};

/// Parses a key read from `origin` (named in errors; the text never is).
pub fn parse(text: &str, origin: &str) -> Result<SecretKey> {
    SecretKey::parse(text).map_err(|_| {
        anyhow::anyhow!("{origin} does not hold a SOMA secret key: expected {FORMATS}")
    })
}

/// Reads a key file.
pub fn load(path: &Path) -> Result<SecretKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    parse(&text, &format!("key file {}", path.display()))
}

/// Writes a new key file (mode 0600, never over an existing file) with a fresh
/// key in its `somaprivkey1…` form, and returns the key.
pub fn keygen(path: &Path) -> Result<SecretKey> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())
        .map_err(|e| anyhow::anyhow!("the system's random number generator failed: {e}"))?;
    let key = SecretKey::from_bytes(&seed);
    let mut text = Zeroizing::new(key.to_bech32().to_string());
    text.push('\n');
    match private_file::write(path, text.as_bytes(), Existing::Refuse) {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            bail!(
                "key file {} already exists; refusing to overwrite it",
                path.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot write key file {}", path.display())),
    }
}

/// Where the signer in use came from; its `Display` is the message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Environment,
    KeyFile(PathBuf),
    /// The local network's throwaway key; `created` when this call made it.
    LocalThrowaway {
        path: PathBuf,
        created: bool,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => write!(f, "signing with the key in {SECRET_KEY_ENV}"),
            Self::KeyFile(path) => write!(f, "signing with the key in {}", path.display()),
            Self::LocalThrowaway { path, created } => write!(
                f,
                "{} the local network's throwaway key in {} (local only; set {SECRET_KEY_ENV} \
                 or `key_file` from `soma-flow keygen` for testnet)",
                if *created { "created" } else { "signing with" },
                path.display()
            ),
        }
    }
}

/// The local network's throwaway key in `local_dir`, created on first use; safe
/// when processes race (the loser of the no-clobber create loads the winner's).
pub fn local_throwaway(local_dir: &Path) -> Result<(SecretKey, Source)> {
    let path = local_dir.join(LOCAL_KEY_FILE);
    let source = |created| Source::LocalThrowaway {
        path: path.clone(),
        created,
    };
    if path.exists() {
        return Ok((load(&path)?, source(false)));
    }
    match keygen(&path) {
        Ok(key) => Ok((key, source(true))),
        Err(_) if path.exists() => Ok((load(&path)?, source(false))),
        Err(e) => Err(e),
    }
}

/// The signer: `SOMA_SECRET_KEY`, else `key_file`, else (on the local network,
/// whose folder is `local_dir`) its throwaway key.
pub fn resolve(key_file: Option<&Path>, local_dir: Option<&Path>) -> Result<(SecretKey, Source)> {
    let env = std::env::var_os(SECRET_KEY_ENV)
        .map(|text| Zeroizing::new(text.to_string_lossy().into_owned()));
    resolve_from(env.as_deref().map(String::as_str), key_file, local_dir)
}

/// [`resolve`] with the value of `SOMA_SECRET_KEY` given rather than read, so that it
/// can be tested without changing the process's environment.
pub fn resolve_from(
    env: Option<&str>,
    key_file: Option<&Path>,
    local_dir: Option<&Path>,
) -> Result<(SecretKey, Source)> {
    if let Some(text) = env {
        return Ok((parse(text, SECRET_KEY_ENV)?, Source::Environment));
    }
    if let Some(path) = key_file {
        return Ok((load(path)?, Source::KeyFile(path.to_owned())));
    }
    match local_dir {
        Some(dir) => local_throwaway(dir),
        None => bail!(
            "no signing key: set {SECRET_KEY_ENV}, or give `key_file` (create one with \
             `soma-flow keygen`)"
        ),
    }
}
