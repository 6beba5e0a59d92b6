//! The 32-byte base types of SOMA's BCS (§3.1): addresses, object ids, digests and
//! object references, with the text forms the SDK and the RPC use (§2.0, §4).
//!
//! Addresses and ids are 32 raw bytes in BCS; digest-like values are serde bytes
//! (`20` ‖ 32 bytes). Getting either wrong shifts every later field of a signed
//! transaction, so both live here, once.

use std::fmt;
use std::str::FromStr;

use blake2::{Blake2b256, Digest as _};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One SOMA in shannons, the chain's unit of account.
pub const SHANNONS_PER_SOMA: u64 = 1_000_000_000;

/// Blake2b-256 over the concatenation of `parts`: the one hash of the protocol.
pub fn blake2b256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Blake2b256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Parses 64 hex digits with an optional `0x`, or `0x` followed by fewer digits
/// (left-padded with zeros), as SOMA's `SomaAddress`/`ObjectID` parsers do.
fn parse_hex32(s: &str, what: &'static str) -> Result<[u8; 32]> {
    let err = || Error::Parse {
        what,
        expected: "64 hex digits with optional 0x, or 0x followed by up to 64 hex digits",
    };
    let (digits, prefixed) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    if digits.is_empty() || digits.len() > 64 || (!prefixed && digits.len() != 64) {
        return Err(err());
    }
    let padded = format!("{digits:0>64}");
    let mut out = [0u8; 32];
    hex::decode_to_slice(padded, &mut out).map_err(|_| err())?;
    Ok(out)
}

/// An account address: `Blake2b-256(0x00 ‖ ed25519 public key)`. Displayed as bare
/// lowercase hex, as `SomaAddress` Display and the SDK's `Keypair.address()` do.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SomaAddress(pub [u8; 32]);

/// An object id. Displayed as `0x` + 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectID(pub [u8; 32]);

/// A model id: not an object, but derived and encoded like one.
pub type ModelId = ObjectID;
/// A target id.
pub type TargetId = ObjectID;

impl SomaAddress {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl ObjectID {
    /// The system state object `0x…05`.
    pub const SYSTEM_STATE: ObjectID = {
        let mut id = [0u8; 32];
        id[31] = 5;
        ObjectID(id)
    };

    /// `0x` + 64 hex digits (ObjectID Display).
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// `0x` + hex with leading zero digits stripped (`to_hex_literal`), the form of
    /// proto `Target.id`, `model_ids` and `winning_model_id`.
    pub fn to_hex_literal(&self) -> String {
        let full = hex::encode(self.0);
        let trimmed = full.trim_start_matches('0');
        format!("0x{}", if trimmed.is_empty() { "0" } else { trimmed })
    }
}

impl fmt::Display for SomaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SomaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SomaAddress({self})")
    }
}

impl fmt::Display for ObjectID {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectID {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectID({self})")
    }
}

impl FromStr for SomaAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex32(s, "address").map(Self)
    }
}

impl FromStr for ObjectID {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex32(s, "object id").map(Self)
    }
}

/// A 32-byte digest-like value (`ObjectDigest`, `TransactionDigest`, `Checksum`,
/// and the three commitments). BCS: serde bytes `20` ‖ 32 bytes. Text: Base58.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

pub type ObjectDigest = Digest;
pub type TransactionDigest = Digest;
pub type Checksum = Digest;
pub type ModelWeightsCommitment = Digest;
pub type EmbeddingCommitment = Digest;
pub type DecryptionKeyCommitment = Digest;

impl Digest {
    /// Blake2b-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(blake2b256(&[bytes]))
    }

    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).into_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        match bs58::decode(s).onto(&mut out) {
            Ok(32) => Ok(Self(out)),
            _ => Err(Error::Parse {
                what: "digest",
                expected: "Base58 of 32 bytes",
            }),
        }
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes32::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bytes32::deserialize(deserializer).map(Self)
    }
}

/// Serde for `[u8; 32]` as serde bytes (`20` ‖ 32 bytes in BCS), for
/// `#[serde(with = "…")]`.
pub(crate) mod bytes32 {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        deserializer.deserialize_bytes(Bytes32Visitor)
    }

    struct Bytes32Visitor;

    impl<'de> Visitor<'de> for Bytes32Visitor {
        type Value = [u8; 32];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("32 bytes")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<[u8; 32], E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 32], A::Error> {
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<u8>()?.is_some() {
                return Err(de::Error::invalid_length(33, &self));
            }
            Ok(out)
        }
    }
}

/// `(ObjectID, version, ObjectDigest)`: 73 bytes of BCS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub object_id: ObjectID,
    pub version: u64,
    pub digest: ObjectDigest,
}
