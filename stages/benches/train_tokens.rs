//! Training throughput (tokens/s) of the `train` stage kind on the CPU
//! backend: batch 2 x 1024, no accumulation, for v1-tiny and v1-small. The
//! kind runs as the engine runs it, so the loop is the one compiled into the
//! stages library.
//!
//! cargo bench -p soma-flow-stages --bench train_tokens

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;
use soma_flow_engine::{RunContext, StageKind};
use soma_flow_stages::kinds::train::{TrainKind, TrainWith};

/// As `soma-flow` allocates (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEPS: usize = 4;

fn main() {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for preset in ["v1-tiny", "v1-small"] {
        // Kept after the run so the model, metrics and curve can be looked at.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/train_tokens")
            .join(preset);
        let _ = std::fs::remove_dir_all(&dir);
        let outputs = dir.join("outputs");
        std::fs::create_dir_all(&outputs).expect("output directory");
        let with: TrainWith = serde_json::from_value(json!({
            "arch": preset,
            "steps": STEPS,
            "batch": 2,
            "accum": 1,
            "checkpoint_every": 0,
        }))
        .expect("valid settings");
        let inputs = BTreeMap::from([("data".to_string(), vec![sources.clone()])]);
        let refs = BTreeMap::from([("data".to_string(), vec!["repo.sources".to_string()])]);
        let notes = Mutex::new(Vec::new());
        let at = |name: &str| -> PathBuf { dir.join(name) };
        let ctx = RunContext {
            stage: "bench",
            workdir: &dir,
            inputs: &inputs,
            input_refs: &refs,
            outputs_dir: &outputs,
            scratch: &at("scratch"),
            store: &at("store"),
            pipeline_dir: &dir,
            backend: "ndarray",
            log: &at("log"),
            progress: &|_| {},
            notes: &notes,
        };
        TrainKind.run(&with, &ctx).expect("training runs");
        let rates: Vec<f64> = std::fs::read_to_string(outputs.join("metrics"))
            .expect("metrics")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|m| m["tokens_per_s"].as_f64())
            .skip(1) // warm-up
            .collect();
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        let best = rates.iter().cloned().fold(0.0, f64::max);
        println!(
            "{preset}: train step (Adam, batch 2x1024), ndarray CPU: mean {mean:.0} tokens/s, best {best:.0} tokens/s over {} steps",
            rates.len()
        );
    }
}
