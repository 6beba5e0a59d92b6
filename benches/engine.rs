//! Engine benchmarks: the wall time of a no-op rerun of a 100-stage pipeline (the whole
//! process, as a user sees it) and BLAKE3 hashing throughput on a 1 GiB file.
//!
//! `cargo bench --bench engine`

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn noop_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("name: bench100\nparams: {salt: x}\nstages:\n");
    for i in 0..100 {
        yaml.push_str(&format!("  s{i}:\n    kind: command\n"));
        if i >= 2 {
            // A DAG, not a chain: each stage reads two earlier ones.
            yaml.push_str(&format!(
                "    inputs: {{ a: s{}.o, b: s{}.o }}\n",
                i / 2,
                i - 1
            ));
        }
        yaml.push_str(&format!(
            "    with: {{ run: 'echo {i} ${{params.salt}} > outputs/o', outs: [o] }}\n"
        ));
    }
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let bin = env!("CARGO_BIN_EXE_soma-flow");
    let run = || {
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["run", "p.yaml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let first = run();
    let reruns: Vec<Duration> = (0..15).map(|_| run()).collect();
    println!(
        "100-stage pipeline: first run {first:.2?}, no-op rerun median {:.1?} (15 runs)",
        median(reruns)
    );
}

fn hashing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("1gib.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for _ in 0..1024 {
        f.write_all(&block).unwrap();
    }
    drop(f);
    let gb = 1024.0 * 1024.0 * 1024.0 / 1e9;
    let one_core = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                blake3::Hasher::new().update_mmap(&path).unwrap().finalize();
                t.elapsed()
            })
            .collect(),
    );
    let all_cores = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                soma_flow_engine::hash::hash_file(&path).unwrap();
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "BLAKE3 on a 1 GiB file: {:.2} GB/s on one core, {:.2} GB/s on {} cores (soma-flow's hash_file)",
        gb / one_core.as_secs_f64(),
        gb / all_cores.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

fn main() {
    noop_rerun();
    hashing();
}
