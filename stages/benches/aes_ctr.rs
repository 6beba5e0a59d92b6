//! AES-256-CTR throughput on one core, raw and as streamed by `CtrStream` (which
//! also hashes plaintext and ciphertext with Blake2b-256).
//!
//! Run: `cargo bench -p soma-flow-stages --bench aes_ctr`

use std::time::Instant;

use aes::cipher::{KeyIvInit, StreamCipher};
use soma_flow_chain::DecryptionKey;
use soma_flow_stages::crypto::{CtrStream, Hash256, CHUNK_SIZE};

const TOTAL: usize = 1 << 30;

fn gbps(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

/// Time this thread spent on a CPU, in seconds: unlike wall time it is not inflated
/// when other processes compete for the cores.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn measure(name: &str, mut work: impl FnMut(&mut [u8])) {
    let mut buf = vec![0x5au8; CHUNK_SIZE];
    work(&mut buf); // warm-up
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    for _ in 0..TOTAL / CHUNK_SIZE {
        work(&mut buf);
    }
    let cpu = thread_cpu_seconds() - cpu_start;
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>6.2} GB/s per CPU-second, {:>6.2} GB/s wall  ({} MiB)",
        gbps(TOTAL, cpu),
        gbps(TOTAL, wall),
        TOTAL >> 20
    );
}

fn main() {
    println!(
        "AES-NI detected at run time: {}  (VAES: {})",
        std::arch::is_x86_feature_detected!("aes"),
        std::arch::is_x86_feature_detected!("vaes")
    );
    let key = DecryptionKey::generate().unwrap();
    let mut raw = ctr::Ctr128BE::<aes::Aes256>::new(&[7u8; 32].into(), &[0u8; 16].into());
    measure("AES-256-CTR (raw ctr crate)", |b| raw.apply_keystream(b));
    let mut stream = CtrStream::keyed(&key);
    measure("CtrStream: AES-256-CTR + 2x Blake2b-256", |b| {
        stream.process(b)
    });
    measure("Blake2b-256 alone", |b| {
        std::hint::black_box(Hash256::of(b));
    });
}
