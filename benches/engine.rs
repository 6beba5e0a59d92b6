//! Engine benchmarks: the wall time of a no-op rerun of a 100-stage pipeline (the whole
//! process, as a user sees it), BLAKE3 hashing throughput on a 1 GiB file, verified
//! reuse of a stored 1 GiB artifact (a stamp check against the full re-hash that
//! reuse cost before stamps), and validation of a file of 20,000 keys given twice.
//!
//! `cargo bench --bench engine`

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The median wall time of `runs` calls of `f`.
fn timed(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
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
    // Without stamps every reused object is re-hashed, as before stamps existed.
    let stamps = dir.path().join(".soma-flow/stamps");
    let rehashed: Vec<Duration> = (0..15)
        .map(|_| {
            std::fs::remove_dir_all(&stamps).unwrap();
            std::fs::create_dir(&stamps).unwrap();
            run()
        })
        .collect();
    println!(
        "100-stage pipeline: first run {first:.2?}, no-op rerun median {:.1?} with stamps, {:.1?} re-hashing every object (15 runs each)",
        median(reruns),
        median(rehashed)
    );
}

fn write_gib(path: &std::path::Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for _ in 0..1024 {
        f.write_all(&block).unwrap();
    }
}

fn verified_reuse() {
    use soma_flow_engine::store::{Check, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let out = dir.path().join("out.bin");
    write_gib(&out);
    let artifact = store.publish(&out).unwrap();
    let stamped = timed(15, || {
        assert!(matches!(store.verify(&artifact).unwrap(), Check::Ok));
    });
    let path = store.path_of(&artifact);
    let rehash = timed(3, || {
        soma_flow_engine::hash::hash_file(&path).unwrap();
    });
    println!(
        "verified reuse of a stored 1 GiB file: {stamped:.1?} with an unchanged stamp, {rehash:.1?} by full re-hash ({:.0}x)",
        rehash.as_secs_f64() / stamped.as_secs_f64()
    );
}

fn duplicate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from(
        "name: dup\nstages:\n  a:\n    kind: command\n    with:\n      run: 'true'\n      env:\n",
    );
    // 20,000 keys, then each again: a check that scans the keys seen so far is quadratic.
    for i in 0..40_000 {
        yaml.push_str(&format!("        K{}: v\n", i % 20_000));
    }
    std::fs::write(dir.path().join("dup.yaml"), yaml).unwrap();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_soma-flow"))
        .args(["validate", "dup.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    println!(
        "validate a file of 20,000 keys given twice: {:.1?} (whole process)",
        t.elapsed()
    );
}

fn hashing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("1gib.bin");
    write_gib(&path);
    let gb = 1024.0 * 1024.0 * 1024.0 / 1e9;
    let one_core = timed(3, || {
        blake3::Hasher::new().update_mmap(&path).unwrap().finalize();
    });
    let all_cores = timed(3, || {
        soma_flow_engine::hash::hash_file(&path).unwrap();
    });
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
    verified_reuse();
    duplicate_keys();
}
