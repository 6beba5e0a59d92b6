//! Streaming weights through the chain's encryption: [`CtrStream`] applies
//! `soma_flow_chain`'s AES-256-CTR keystream (zero IV, 128-bit big-endian counter)
//! chunk by chunk and hashes both sides with Blake2b-256 on the way (the input's
//! hash beside the cipher, on a second thread), so multi-GB weights are encrypted,
//! uploaded, downloaded and checked in constant memory; [`Decrypting`] does it
//! inside a download.
//! The ciphertext's hash is the manifest checksum and the weights commitment.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use blake2::{Blake2b256, Digest};
use serde::{Deserialize, Serialize};
use soma_flow_chain::{DecryptionKey, WeightsCipher};
use soma_flow_engine::hash::read_full;

use crate::data::download::Through;

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
    /// `None` when nobody needs the output's hash (a download's plaintext).
    output: Option<Blake2b256>,
    size: u64,
    /// The input of the chunk being transformed, for hashing beside the cipher.
    copy: Vec<u8>,
}

/// Below this, a chunk is hashed and transformed on one thread.
const PARALLEL_FROM: usize = 1 << 20;

impl CtrStream {
    /// Encrypts or decrypts (CTR is symmetric) with `key` and the all-zero IV,
    /// hashing both sides.
    pub fn keyed(key: &DecryptionKey) -> Self {
        Self::with_cipher(Some(key.cipher()), true)
    }

    /// Copies bytes unchanged, only hashing them (plain uploads and downloads).
    pub fn passthrough() -> Self {
        Self::with_cipher(None, false)
    }

    fn with_cipher(cipher: Option<WeightsCipher>, hash_output: bool) -> Self {
        Self {
            cipher,
            input: Blake2b256::new(),
            output: hash_output.then(Blake2b256::new),
            size: 0,
            copy: Vec::new(),
        }
    }

    /// Transforms the next chunk in place. With a cipher, a large chunk's input
    /// is hashed on a second thread while this one applies the keystream and
    /// hashes the output: Blake2b runs at about 0.7 GB/s a core, so two hashes
    /// in a row would bound a transfer at 0.35 GB/s.
    pub fn process(&mut self, chunk: &mut [u8]) {
        self.size += chunk.len() as u64;
        let Some(cipher) = &mut self.cipher else {
            self.input.update(&*chunk);
            return;
        };
        let mut transform = |chunk: &mut [u8], output: &mut Option<Blake2b256>| {
            cipher.apply(chunk);
            if let Some(output) = output {
                output.update(&*chunk);
            }
        };
        if chunk.len() < PARALLEL_FROM {
            self.input.update(&*chunk);
            transform(chunk, &mut self.output);
            return;
        }
        self.copy.clear();
        self.copy.extend_from_slice(chunk);
        let (input, copy, output) = (&mut self.input, &self.copy, &mut self.output);
        std::thread::scope(|s| {
            s.spawn(|| input.update(copy));
            transform(chunk, output);
        });
    }

    /// Catches up with bytes this stream already produced (read back from a
    /// resumed download), as if their input had been processed; `output` is
    /// left holding that input.
    pub fn catch_up(&mut self, output: &mut [u8]) {
        self.size += output.len() as u64;
        if let Some(hash) = &mut self.output {
            hash.update(&*output);
        }
        // CTR is its own inverse: the keystream turns the output back.
        if let Some(cipher) = &mut self.cipher {
            cipher.apply(output);
        }
        self.input.update(&*output);
    }

    pub fn finish(self) -> StreamDigests {
        let input = Hash256(self.input.finalize().into());
        // Without an output hash the output is the input (a passthrough), or
        // unused (a `Decrypting`, which reports only the input's hash).
        let output = self
            .output
            .map_or(input, |output| Hash256(output.finalize().into()));
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

/// A download's decryption (a [`Through`]): the ciphertext is hashed (what a
/// manifest checks) and decrypted as it arrives; the plaintext is not hashed.
pub struct Decrypting<'k> {
    key: &'k DecryptionKey,
    stream: CtrStream,
}

impl<'k> Decrypting<'k> {
    pub fn new(key: &'k DecryptionKey) -> Self {
        Self {
            key,
            stream: Self::fresh(key),
        }
    }

    fn fresh(key: &DecryptionKey) -> CtrStream {
        CtrStream::with_cipher(Some(key.cipher()), false)
    }

    /// The ciphertext's Blake2b-256 so far.
    pub fn checksum(&self) -> Hash256 {
        Hash256(self.stream.input.clone().finalize().into())
    }
}

impl Through for Decrypting<'_> {
    fn position(&self) -> u64 {
        self.stream.size
    }

    fn restart(&mut self, part: &Path, len: u64) -> io::Result<()> {
        self.stream = Self::fresh(self.key);
        let mut file = std::fs::File::open(part)?.take(len);
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let n = read_full(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            self.stream.catch_up(&mut buf[..n]);
        }
        match self.stream.size == len {
            true => Ok(()),
            false => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} holds {} of {len} bytes",
                    part.display(),
                    self.stream.size
                ),
            )),
        }
    }

    fn process(&mut self, chunk: &mut [u8]) {
        self.stream.process(chunk);
    }
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
