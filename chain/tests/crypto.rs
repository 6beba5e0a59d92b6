//! The streaming cipher: chunking never changes the result, and CTR is its own
//! inverse.

use std::io::{self, Read};

use soma_flow_chain::{apply_stream, DecryptionKey, Digest};

/// A reader that hands out at most `.1` bytes per read, to cross chunk and AES
/// block boundaries at odd offsets.
pub struct Trickle<'a>(pub &'a [u8], pub usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn chunked_application_equals_one_pass() {
    let key = DecryptionKey::from_bytes([9; 32]);
    let plain = sample(5000);
    let mut whole = plain.clone();
    key.cipher().apply(&mut whole);
    assert_ne!(whole, plain);
    for sizes in [[1, 15, 16, 17], [7, 64, 3, 100], [4096, 1, 1, 1]] {
        let mut chunked = plain.clone();
        let mut cipher = key.cipher();
        let mut rest = chunked.as_mut_slice();
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at_mut((*size).min(rest.len()));
            cipher.apply(head);
            rest = tail;
        }
        assert_eq!(chunked, whole, "chunk sizes {sizes:?}");
    }
}

#[test]
fn streaming_round_trip_reports_both_hashes() {
    let key = DecryptionKey::from_bytes([3; 32]);
    // More than one stream chunk, ending mid-block.
    let plain = sample(soma_flow_chain::crypto::STREAM_CHUNK + 4099);
    let mut ciphertext = Vec::new();
    let enc = apply_stream(&key, &mut Trickle(&plain, 300_000), &mut ciphertext).unwrap();
    assert_eq!(enc.size, plain.len() as u64);
    assert_eq!(enc.input, Digest::of(&plain));
    assert_eq!(enc.output, Digest::of(&ciphertext));

    let mut decrypted = Vec::new();
    let dec = apply_stream(&key, &mut ciphertext.as_slice(), &mut decrypted).unwrap();
    assert_eq!(decrypted, plain);
    assert_eq!((dec.input, dec.output), (enc.output, enc.input));
}

#[test]
fn keys_are_fresh_and_redacted() {
    let a = DecryptionKey::generate().unwrap();
    let b = DecryptionKey::generate().unwrap();
    assert_ne!(a, b);
    let shown = format!("{a:?}");
    assert_eq!(shown, "DecryptionKey(<redacted>)");
    assert!(DecryptionKey::from_base58("too-short").is_err());
}
