//! Streaming weights through the chain's encryption: [`CtrStream`] applies
//! `soma_flow_chain`'s AES-256-CTR keystream (zero IV, 128-bit big-endian counter)
//! chunk by chunk and hashes both sides with Blake2b-256 on the way, so multi-GB
//! weights are encrypted, uploaded, downloaded and checked in constant memory.
//! The ciphertext's hash is the manifest checksum and the weights commitment.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use blake2::{Blake2b256, Digest};
use serde::{Deserialize, Serialize};
use soma_flow_chain::{DecryptionKey, WeightsCipher};
use soma_flow_engine::hash::read_full;

/// Chunk size for streaming: large enough to amortise per-chunk overhead, small
/// enough to keep memory flat (and at least the 5 MiB minimum S3 part size).
pub const CHUNK_SIZE: usize = 8 << 20;

/// A Blake2b-256 hash, shown and serialised as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Blake2b256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({self})")
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a 32-byte hex string")]
pub struct InvalidHex;

impl FromStr for Hash256 {
    type Err = InvalidHex;
    fn from_str(s: &str) -> Result<Self, InvalidHex> {
        decode_hex32(s).map(Self)
    }
}

impl TryFrom<String> for Hash256 {
    type Error = InvalidHex;
    fn try_from(s: String) -> Result<Self, InvalidHex> {
        s.parse()
    }
}

impl From<Hash256> for String {
    fn from(h: Hash256) -> String {
        h.to_hex()
    }
}

fn decode_hex32(s: &str) -> Result<[u8; 32], InvalidHex> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| InvalidHex)?;
    Ok(out)
}

/// Hashes of both sides of a streamed transformation. For encryption `input` is
/// the plaintext and `output` the ciphertext; decryption is the same CTR operation
/// with the roles swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDigests {
    pub size: u64,
    pub input: Hash256,
    pub output: Hash256,
}

/// The incremental state of one streamed pass: optional AES-256-CTR plus hashes.
pub struct CtrStream {
    cipher: Option<WeightsCipher>,
    input: Blake2b256,
    output: Blake2b256,
    size: u64,
}

impl CtrStream {
    /// Encrypts or decrypts (CTR is symmetric) with `key` and the all-zero IV.
    pub fn keyed(key: &DecryptionKey) -> Self {
        Self::with_cipher(Some(key.cipher()))
    }

    /// Copies bytes unchanged, only hashing them (plain uploads and downloads).
    pub fn passthrough() -> Self {
        Self::with_cipher(None)
    }

    fn with_cipher(cipher: Option<WeightsCipher>) -> Self {
        Self {
            cipher,
            input: Blake2b256::new(),
            output: Blake2b256::new(),
            size: 0,
        }
    }

    /// Transforms the next chunk in place.
    pub fn process(&mut self, chunk: &mut [u8]) {
        self.input.update(&*chunk);
        if let Some(cipher) = &mut self.cipher {
            cipher.apply(chunk);
            self.output.update(&*chunk);
        }
        self.size += chunk.len() as u64;
    }

    pub fn finish(self) -> StreamDigests {
        let input = Hash256(self.input.finalize().into());
        let output = match self.cipher {
            Some(_) => Hash256(self.output.finalize().into()),
            None => input,
        };
        StreamDigests {
            size: self.size,
            input,
            output,
        }
    }
}

impl fmt::Debug for CtrStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtrStream")
            .field("keyed", &self.cipher.is_some())
            .field("size", &self.size)
            .finish()
    }
}

/// Streams `reader` through `stream` into `writer` in [`CHUNK_SIZE`] chunks.
pub fn transform(
    mut reader: impl Read,
    mut writer: impl Write,
    mut stream: CtrStream,
) -> io::Result<StreamDigests> {
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = read_full(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        stream.process(&mut buf[..n]);
        writer.write_all(&buf[..n])?;
    }
    writer.flush()?;
    Ok(stream.finish())
}

/// Hash of a file's contents and its size, streamed.
pub fn hash_file(path: &Path) -> io::Result<StreamDigests> {
    transform(
        std::fs::File::open(path)?,
        io::sink(),
        CtrStream::passthrough(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    use aes::Aes256;

    fn keystream(key: &DecryptionKey, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        CtrStream::keyed(key).process(&mut buf);
        buf
    }

    #[test]
    fn ctr_uses_a_zero_iv_and_a_big_endian_128_bit_counter() {
        let key = DecryptionKey::from_bytes([0u8; 32]);
        let stream = keystream(&key, 48);
        // FIPS-197 style known answer: AES-256 of the zero block under the zero key.
        assert_eq!(
            hex::encode(&stream[..16]),
            "dc95c078a2408989ad48a21492842087"
        );
        let aes = Aes256::new(&[0u8; 32].into());
        for (i, block) in stream.chunks(16).enumerate() {
            let mut counter = (i as u128).to_be_bytes().into();
            aes.encrypt_block(&mut counter);
            assert_eq!(block, &counter[..], "block {i}");
        }
    }

    #[test]
    fn chunked_streaming_matches_one_shot_and_round_trips() {
        let key = DecryptionKey::generate().unwrap();
        let plain: Vec<u8> = (0..CHUNK_SIZE + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut one_shot = plain.clone();
        CtrStream::keyed(&key).process(&mut one_shot);

        let mut cipher = Vec::new();
        let enc = transform(&plain[..], &mut cipher, CtrStream::keyed(&key)).unwrap();
        assert_eq!(cipher, one_shot);
        assert_eq!(enc.size, plain.len() as u64);
        assert_eq!(enc.input, Hash256::of(&plain));
        assert_eq!(enc.output, Hash256::of(&cipher));

        let mut back = Vec::new();
        let dec = transform(&cipher[..], &mut back, CtrStream::keyed(&key)).unwrap();
        assert!(back == plain);
        assert_eq!((dec.input, dec.output), (enc.output, enc.input));

        let plain_copy = transform(&plain[..], std::io::sink(), CtrStream::passthrough()).unwrap();
        assert_eq!(plain_copy.input, plain_copy.output);
    }

    #[test]
    fn hashes_serialise_as_hex() {
        let h = Hash256::of(b"abc");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<Hash256>(&json).unwrap(), h);
    }
}
