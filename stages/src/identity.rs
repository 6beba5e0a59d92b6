//! Who signs network requests: an Ed25519 key from `SOMA_SECRET_KEY`, from a key
//! file made by [`keygen`], or (devnet only) a throwaway key created on first use.
//!
//! Secret material never reaches `Debug`/`Display` output or error messages: errors
//! name where the secret came from, never its contents.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::private_file::{self, Existing};

/// Environment variable holding the Base58 secret key exported by the SOMA wallet.
pub const SECRET_KEY_ENV: &str = "SOMA_SECRET_KEY";

/// File name of the devnet's throwaway identity inside the devnet directory.
pub const DEVNET_IDENTITY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{origin} is not valid Base58")]
    NotBase58 { origin: String },
    #[error(
        "{origin} decodes to {len} bytes; expected a 32-byte Ed25519 seed or a 64-byte keypair"
    )]
    BadLength { origin: String, len: usize },
    #[error("{origin} is a 64-byte keypair whose public half does not match its secret half")]
    KeypairMismatch { origin: String },
    #[error("key file {path} already exists; refusing to overwrite it")]
    AlreadyExists { path: PathBuf },
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the operating system's random number generator failed: {0}")]
    Rng(getrandom::Error),
    #[error(
        "no signing identity: set {SECRET_KEY_ENV} or create a key file with `soma-flow keygen`"
    )]
    Missing,
}

/// An Ed25519 public key, shown and serialised in Base58 (the wallet's address form).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct PublicKey(pub [u8; 32]);

#[derive(Debug, thiserror::Error)]
#[error("not a Base58 Ed25519 public key")]
pub struct InvalidPublicKey;

impl PublicKey {
    /// Checks `signature` over `message` (strict: rejects malleable signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(&self.0)
            .and_then(|key| key.verify_strict(message, &Signature::from_bytes(signature)))
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = InvalidPublicKey;
    fn from_str(s: &str) -> Result<Self, InvalidPublicKey> {
        let bytes = bs58::decode(s.trim())
            .into_vec()
            .map_err(|_| InvalidPublicKey)?;
        bytes.try_into().map(Self).map_err(|_| InvalidPublicKey)
    }
}

impl TryFrom<String> for PublicKey {
    type Error = InvalidPublicKey;
    fn try_from(s: String) -> Result<Self, InvalidPublicKey> {
        s.parse()
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_string()
    }
}

/// An owner's signing key. `Debug` shows only the public key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(IdentityError::Rng)?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A signer whose secret is known to anyone holding `seed` (the devnet's genesis
    /// owners).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Parses a Base58 secret: a 32-byte seed or a 64-byte seed+public keypair.
    /// `origin` names the source in errors (e.g. "SOMA_SECRET_KEY").
    pub fn from_base58(secret: &str, origin: &str) -> Result<Self, IdentityError> {
        let bytes = Zeroizing::new(bs58::decode(secret.trim()).into_vec().map_err(|_| {
            IdentityError::NotBase58 {
                origin: origin.to_owned(),
            }
        })?);
        let key = match bytes.len() {
            32 => {
                let seed: Zeroizing<[u8; 32]> =
                    Zeroizing::new(bytes[..].try_into().expect("length checked"));
                SigningKey::from_bytes(&seed)
            }
            64 => {
                let pair: Zeroizing<[u8; 64]> =
                    Zeroizing::new(bytes[..].try_into().expect("length checked"));
                SigningKey::from_keypair_bytes(&pair).map_err(|_| {
                    IdentityError::KeypairMismatch {
                        origin: origin.to_owned(),
                    }
                })?
            }
            len => {
                return Err(IdentityError::BadLength {
                    origin: origin.to_owned(),
                    len,
                })
            }
        };
        Ok(Self { key })
    }

    /// The signer from `SOMA_SECRET_KEY`, or `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>, IdentityError> {
        match std::env::var(SECRET_KEY_ENV) {
            Ok(secret) if !secret.trim().is_empty() => {
                let secret = Zeroizing::new(secret);
                Self::from_base58(&secret, SECRET_KEY_ENV).map(Some)
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(IdentityError::NotBase58 {
                origin: SECRET_KEY_ENV.to_owned(),
            }),
            _ => Ok(None),
        }
    }

    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::from_base58(&text, &format!("key file {}", path.display()))
    }

    /// Writes the 32-byte seed in Base58 to a new 0600 file; never overwrites.
    pub fn save_new(&self, path: &Path) -> Result<(), IdentityError> {
        let encoded = Zeroizing::new(bs58::encode(self.key.to_bytes()).into_string());
        private_file::write(path, encoded.as_bytes(), Existing::Refuse).map_err(|source| {
            match source.kind() {
                io::ErrorKind::AlreadyExists => IdentityError::AlreadyExists {
                    path: path.to_owned(),
                },
                _ => IdentityError::Io {
                    path: path.to_owned(),
                    source,
                },
            }
        })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Creates a new key file (mode 0600) and returns its public key (`soma-flow keygen`).
pub fn keygen(path: &Path) -> Result<PublicKey, IdentityError> {
    let signer = Signer::generate()?;
    signer.save_new(path)?;
    Ok(signer.public_key())
}

/// Where the signer in use came from; its `Display` is the message to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    Environment,
    KeyFile(PathBuf),
    /// A devnet-only key; `created` is true when this call made it.
    DevnetThrowaway {
        path: PathBuf,
        created: bool,
    },
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => write!(f, "using the identity from {SECRET_KEY_ENV}"),
            Self::KeyFile(path) => write!(f, "using the identity in {}", path.display()),
            Self::DevnetThrowaway {
                path,
                created: true,
            } => write!(
                f,
                "created a throwaway devnet identity in {} (devnet only; set {SECRET_KEY_ENV} \
                 or use `soma-flow keygen` for a real network)",
                path.display()
            ),
            Self::DevnetThrowaway {
                path,
                created: false,
            } => write!(
                f,
                "using the throwaway devnet identity in {}",
                path.display()
            ),
        }
    }
}

/// The devnet's throwaway identity in `devnet_dir`, created on first use. Safe when
/// several processes race: the loser of the no-clobber create loads the winner's key.
pub fn devnet_identity(devnet_dir: &Path) -> Result<(Signer, IdentitySource), IdentityError> {
    let path = devnet_dir.join(DEVNET_IDENTITY_FILE);
    let existing = |created| IdentitySource::DevnetThrowaway {
        path: path.clone(),
        created,
    };
    if path.exists() {
        return Ok((Signer::load(&path)?, existing(false)));
    }
    let signer = Signer::generate()?;
    match signer.save_new(&path) {
        Ok(()) => Ok((signer, existing(true))),
        Err(IdentityError::AlreadyExists { .. }) => Ok((Signer::load(&path)?, existing(false))),
        Err(e) => Err(e),
    }
}

/// Picks the signer: `SOMA_SECRET_KEY`, else `key_file`, else (when a devnet
/// directory is given) the devnet's throwaway identity.
pub fn resolve(
    key_file: Option<&Path>,
    devnet_dir: Option<&Path>,
) -> Result<(Signer, IdentitySource), IdentityError> {
    if let Some(signer) = Signer::from_env()? {
        return Ok((signer, IdentitySource::Environment));
    }
    if let Some(path) = key_file {
        return Ok((
            Signer::load(path)?,
            IdentitySource::KeyFile(path.to_owned()),
        ));
    }
    match devnet_dir {
        Some(dir) => devnet_identity(dir),
        None => Err(IdentityError::Missing),
    }
}
