//! Commitments and weights encryption (§5), exactly as the official SDK computes
//! them.
//!
//! Encryption is AES-256-CTR with a 16-byte zero IV and a 128-bit big-endian
//! counter (`ctr::Ctr128BE<Aes256>`); encrypting and decrypting are the same
//! operation. [`WeightsCipher`] works chunk by chunk, and [`apply_stream`] runs it
//! over a reader in fixed-size chunks, so multi-GB weights need constant memory.
//! The commitments: weights = Blake2b-256(ciphertext) (also the manifest
//! checksum), embedding = Blake2b-256(BCS(SomaTensor[n])), decryption key =
//! Blake2b-256(key).

use std::fmt;
use std::io::{self, Read, Write};

use aes::Aes256;
use blake2::{Blake2b256, Digest as _};
use ctr::cipher::{KeyIvInit, StreamCipher};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::base::{
    bytes32, DecryptionKeyCommitment, Digest, EmbeddingCommitment, ModelWeightsCommitment,
};
use crate::error::{Error, Result};
use crate::tensor::SomaTensor;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Chunk size of [`apply_stream`].
pub const STREAM_CHUNK: usize = 1 << 20;

/// A 32-byte AES-256 key. Secret until revealed: zeroed on drop, redacted in
/// `Debug`; Base58 is its display form (as the SDK's). BCS: serde bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DecryptionKey(Zeroizing<[u8; 32]>);

impl DecryptionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key, as the SDK draws when none is given.
    pub fn generate() -> Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|e| Error::Rng(e.to_string()))?;
        Ok(Self(key))
    }

    pub fn from_base58(text: &str) -> Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        match bs58::decode(text.trim()).onto(key.as_mut()) {
            Ok(32) => Ok(Self(key)),
            _ => Err(Error::Parse {
                what: "decryption key",
                expected: "Base58 of 32 bytes",
            }),
        }
    }

    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base58(&self) -> Zeroizing<String> {
        Zeroizing::new(bs58::encode(self.0.as_ref()).into_string())
    }

    /// `Blake2b-256(key)`, checked by the chain at reveal.
    pub fn commitment(&self) -> DecryptionKeyCommitment {
        Digest::of(self.0.as_ref())
    }

    pub fn cipher(&self) -> WeightsCipher {
        WeightsCipher(Aes256Ctr::new(&(*self.0).into(), &[0u8; 16].into()))
    }
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecryptionKey(<redacted>)")
    }
}

impl Serialize for DecryptionKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes32::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for DecryptionKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bytes32::deserialize(deserializer).map(Self::from_bytes)
    }
}

/// AES-256-CTR keystream state: apply it to consecutive chunks of any sizes and
/// the result equals one pass over the whole.
pub struct WeightsCipher(Aes256Ctr);

impl WeightsCipher {
    /// Encrypts or decrypts `chunk` in place and advances the keystream.
    pub fn apply(&mut self, chunk: &mut [u8]) {
        self.0.apply_keystream(chunk);
    }
}

/// What one streamed pass saw: the size and the hashes of both sides. For
/// encryption `output` is the weights commitment and manifest checksum; for
/// decryption `input` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamDigests {
    pub size: u64,
    pub input: Digest,
    pub output: Digest,
}

/// Encrypts (or decrypts) `reader` into `writer` in [`STREAM_CHUNK`] chunks.
pub fn apply_stream(
    key: &DecryptionKey,
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> io::Result<StreamDigests> {
    let mut cipher = key.cipher();
    let (mut input, mut output) = (Blake2b256::new(), Blake2b256::new());
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &mut buf[..n];
        input.update(&*chunk);
        cipher.apply(chunk);
        output.update(&*chunk);
        writer.write_all(chunk)?;
        size += n as u64;
    }
    writer.flush()?;
    Ok(StreamDigests {
        size,
        input: Digest(input.finalize().into()),
        output: Digest(output.finalize().into()),
    })
}

/// `Blake2b-256(ciphertext)`: the SDK's weights commitment, equal to the
/// manifest checksum. (Never checked on chain.)
pub fn weights_commitment(ciphertext: &[u8]) -> ModelWeightsCommitment {
    Digest::of(ciphertext)
}

/// `Blake2b-256(BCS(SomaTensor{[n]}))`, checked by the chain at reveal; the
/// reveal must carry bit-identical values.
pub fn embedding_commitment(embedding: &[f32]) -> Result<EmbeddingCommitment> {
    Ok(Digest::of(&bcs::to_bytes(&SomaTensor::vector(embedding))?))
}
