//! Shared fixtures for the network tests.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use soma_flow_stages::network::lifecycle::ModelTerms;

pub const TERMS: ModelTerms = ModelTerms {
    stake: None,
    commission_bps: 1_000,
};

/// Deterministic, non-repeating bytes standing in for a safetensors file.
pub fn weights_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn write_weights(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let bytes = weights_bytes(len, seed);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// A v1-tiny embedding (128 values, the local network's default dimension).
pub fn embedding(seed: f32) -> Vec<f32> {
    (0..128).map(|i| (i as f32 + seed).sin() / 4.0).collect()
}

pub fn file_url(dir: &Path) -> String {
    soma_flow_stages::storage::local_url(dir).unwrap()
}

/// Local path behind a `file://` URL.
pub fn url_path(url: &str) -> PathBuf {
    url::Url::parse(url).unwrap().to_file_path().unwrap()
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
