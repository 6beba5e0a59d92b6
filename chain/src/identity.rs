//! Identity (§4): the Ed25519 secret key in the forms the SDK accepts, the public
//! key, and the address derived from it.
//!
//! Accepted secret key forms: 32 bytes as 64 hex digits (optional `0x`), Bech32
//! `somaprivkey1…` (classic BIP-173 checksum, data `00 ‖ sk32`), and a BIP-39
//! English mnemonic (empty passphrase, SLIP-0010 ed25519 at `m/44'/784'/0'/0'/0'`).
//! Base58 is not accepted, as in the SDK. No error and no `Debug` output ever
//! contains key material.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha512;
use zeroize::Zeroizing;

use crate::base::{blake2b256, SomaAddress};
use crate::error::{Error, Result};

/// The Bech32 human-readable part of a secret key.
pub const SECRET_KEY_HRP: &str = "somaprivkey";
/// The signature scheme flag of Ed25519.
pub const ED25519_FLAG: u8 = 0x00;
/// SLIP-0010 path of the SDK's mnemonic keys: m/44'/784'/0'/0'/0'.
const DERIVATION_PATH: [u32; 5] = [44, 784, 0, 0, 0];

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// `Blake2b-256(flag 0x00 ‖ pk)`.
    pub fn address(&self) -> SomaAddress {
        SomaAddress(blake2b256(&[&[ED25519_FLAG], &self.0]))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// An Ed25519 signing key. Zeroed on drop; `Debug` shows only the address.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    /// Parses any accepted form (see the module docs). Surrounding whitespace is
    /// ignored.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.contains(char::is_whitespace) {
            return Self::from_mnemonic(text);
        }
        if text
            .get(..SECRET_KEY_HRP.len() + 1)
            .is_some_and(|p| p.eq_ignore_ascii_case("somaprivkey1"))
        {
            return Self::from_bech32(text);
        }
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, bytes.as_mut()).map_err(|_| Error::SecretKey)?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bech32(text: &str) -> Result<Self> {
        let parsed = CheckedHrpstring::new::<Bech32>(text).map_err(|_| Error::SecretKey)?;
        if parsed.hrp().to_lowercase() != SECRET_KEY_HRP {
            return Err(Error::SecretKey);
        }
        let data = Zeroizing::new(parsed.byte_iter().collect::<Vec<u8>>());
        match data.split_first() {
            Some((&ED25519_FLAG, sk)) if sk.len() == 32 => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                bytes.copy_from_slice(sk);
                Ok(Self::from_bytes(&bytes))
            }
            _ => Err(Error::SecretKey),
        }
    }

    /// BIP-39 English, empty passphrase, SLIP-0010 ed25519 at m/44'/784'/0'/0'/0'.
    pub fn from_mnemonic(phrase: &str) -> Result<Self> {
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, phrase)
            .map_err(|_| Error::SecretKey)?;
        let seed = Zeroizing::new(mnemonic.to_seed_normalized(""));
        let (mut key, mut chain) = slip10_step(b"ed25519 seed", &[seed.as_slice()]);
        for index in DERIVATION_PATH {
            let hardened = (index | 0x8000_0000).to_be_bytes();
            (key, chain) = slip10_step(chain.as_slice(), &[&[0u8], key.as_slice(), &hardened]);
        }
        Ok(Self::from_bytes(&key))
    }

    /// The Ed25519 key itself, for signing other things than transactions (the remote
    /// store's entries).
    pub fn ed25519(&self) -> &SigningKey {
        &self.0
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn address(&self) -> SomaAddress {
        self.public_key().address()
    }

    /// The `somaprivkey1…` form (what `soma` keystores hold).
    pub fn to_bech32(&self) -> Zeroizing<String> {
        let mut data = Zeroizing::new(vec![ED25519_FLAG]);
        data.extend_from_slice(self.0.as_bytes());
        let hrp = Hrp::parse_unchecked(SECRET_KEY_HRP);
        // Encoding fails only past Bech32's 1023-character limit; 33 bytes are far below.
        Zeroizing::new(bech32::encode::<Bech32>(hrp, &data).unwrap_or_default())
    }

    /// The key as 64 hex digits (the SDK's `Keypair.to_secret_key()`).
    pub fn expose_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_bytes()))
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

/// One SLIP-0010 step: `HMAC-SHA512(key, data) = (IL, IR)`.
fn slip10_step(key: &[u8], data: &[&[u8]]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    // HMAC accepts keys of every length.
    let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in data {
        mac.update(part);
    }
    let mut out = mac.finalize().into_bytes();
    let (mut left, mut right) = (Zeroizing::new([0u8; 32]), Zeroizing::new([0u8; 32]));
    left.copy_from_slice(&out[..32]);
    right.copy_from_slice(&out[32..]);
    zeroize::Zeroize::zeroize(out.as_mut_slice());
    (left, right)
}

impl FromStr for SecretKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<redacted>, address {})", self.address())
    }
}
