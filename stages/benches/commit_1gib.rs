//! Time and peak memory of the client's end-to-end commit of a 1 GiB weights file
//! to the local network (hash pass; encrypt-and-upload pass to a `file://` bucket;
//! CreateModel and CommitModel built, signed, executed over gRPC and awaited on the
//! checkpoint stream), then the reveal and fetching it back (download, Blake2b
//! check, decrypt).
//!
//! Run: `cargo bench -p soma-flow-stages --bench commit_1gib`
//! Peak memory is the process's VmHWM from /proc/self/status.

use std::io::Write;
use std::time::Instant;

use soma_flow_chain::SecretKey;
use soma_flow_stages::network::lifecycle::{
    commit, fetch, reveal, ModelTerms, Publish, Revealed, Upload,
};
use soma_flow_stages::network::local::Settings;
use soma_flow_stages::network::{Endpoint, Network};

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

    let settings = Settings {
        genesis: false,
        ..Settings::default()
    };
    let net = Network::connect(&Endpoint::Local, dir.path(), &settings).unwrap();
    let key = SecretKey::from_bytes(&[5; 32]);
    let bucket = format!("file://{}", dir.path().join("bucket").display());
    let keys = dir.path().join("keys");
    let publish = Publish {
        model: None,
        terms: ModelTerms {
            stake: None,
            commission_bps: 1000,
        },
        upload: Upload {
            upload: bucket.clone(),
            public: bucket,
        },
        key_dir: keys.clone(),
    };
    let embedding = vec![0.01f32; 128];
    let quiet = |_: &str| {};

    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    let record = commit(&net, &key, &weights, &embedding, &publish, &quiet).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "commit {mib} MiB to the local network: {secs:.2} s wall, {:.2} s CPU, peak RSS {:.1} MiB",
        process_cpu_seconds() - cpu_start,
        peak_rss_mib()
    );

    net.block_on(net.client.advance_epoch()).unwrap();
    reveal(&net, &key, &record, &keys).unwrap();
    let info = net.epoch().unwrap();
    let model = Revealed::of(info.system.model(&record.model().unwrap()).unwrap()).unwrap();
    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    fetch(&net, &model, &dir.path().join("fetched"), &quiet).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fetch + verify + decrypt {mib} MiB: {secs:.2} s wall, {:.2} s CPU, peak RSS {:.1} MiB",
        process_cpu_seconds() - cpu_start,
        peak_rss_mib()
    );
}
