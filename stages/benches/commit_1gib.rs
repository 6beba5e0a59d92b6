//! Time and peak memory of committing a 1 GiB weights file to a `file://` store on
//! the devnet (hash pass + encrypt-and-upload pass), then fetching it back.
//!
//! Run: `cargo bench -p soma-flow-stages --bench commit_1gib`
//! Peak memory is the process's VmHWM from /proc/self/status.

use std::io::Write;
use std::time::Instant;

use soma_flow_stages::network::devnet::{Devnet, DevnetOptions};
use soma_flow_stages::network::lifecycle::{commit, fetch_revealed_weights, reveal, ModelTerms};
use soma_flow_stages::network::Network;

/// Input size in MiB; `SOMA_BENCH_MIB` overrides the 1 GiB default, e.g. to show
/// that peak memory does not grow with the file.
fn size_mib() -> usize {
    std::env::var("SOMA_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU time of the whole process (all threads), in seconds.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn main() {
    let mib = size_mib();
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&weights).unwrap());
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for _ in 0..mib {
            file.write_all(&block).unwrap();
        }
    }
    println!(
        "peak RSS after writing the input: {:.1} MiB",
        peak_rss_mib()
    );

    let devnet = Devnet::init(&dir.path().join("devnet"), &DevnetOptions::default()).unwrap();
    let (signer, _) = devnet.identity().unwrap();
    let bucket = format!("file://{}", dir.path().join("bucket").display());
    let keys = dir.path().join("keys");
    let embedding = vec![0.01f32; 2048];
    let terms = ModelTerms {
        stake: 1,
        commission_bps: 1000,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    let record = runtime
        .block_on(commit(
            &devnet, &signer, &bucket, &weights, &embedding, terms, &keys,
        ))
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "commit {mib} MiB to file://: {secs:.2} s wall, {:.2} s CPU, peak RSS {:.1} MiB",
        process_cpu_seconds() - cpu_start,
        peak_rss_mib()
    );

    devnet.advance_epoch().unwrap();
    reveal(&devnet, &signer, &record, &keys).unwrap();
    let model = devnet.model(record.model_id).unwrap();
    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    runtime
        .block_on(fetch_revealed_weights(&model, &dir.path().join("fetched")))
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fetch + decrypt + verify {mib} MiB from file://: {secs:.2} s wall, {:.2} s CPU, peak RSS {:.1} MiB",
        process_cpu_seconds() - cpu_start,
        peak_rss_mib()
    );
}
