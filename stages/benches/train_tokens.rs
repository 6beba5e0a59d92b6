//! Training throughput (tokens/s) of the `train` and `distill` stage kinds on the
//! CPU backend (or `BACKEND=wgpu`, …): batch 2 x 1024, no accumulation, for v1-tiny
//! and v1-small. `distill`
//! learns from two teachers, as the main job's does (the model `train` just wrote,
//! twice). The kinds run as the engine runs them, so the loops are the ones compiled
//! into the stages library.
//!
//! [BACKEND=wgpu] cargo bench -p soma-flow-stages --bench train_tokens [-- PRESET...]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;
use soma_flow_engine::{RunContext, StageKind};
use soma_flow_stages::kinds::distill::DISTILL;
use soma_flow_stages::kinds::train::TRAIN;

/// As `soma-flow` allocates (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEPS: usize = 4;

fn main() {
    soma_flow_stages::backend::prepare_process();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Presets named on the command line, or both (cargo passes `--bench` itself).
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for preset in ["v1-tiny", "v1-small"] {
        if !named.is_empty() && !named.iter().any(|n| n == preset) {
            continue;
        }
        // Kept after the run so the models, metrics and curves can be looked at.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/train_tokens")
            .join(preset);
        let _ = std::fs::remove_dir_all(&dir);
        let with = json!({
            "arch": preset,
            "steps": STEPS,
            "data": {"batch": 2, "accum": 1},
            "checkpoint_every": 0,
        });
        let data = ("data", vec![sources.clone()]);
        let trained = run(TRAIN, &with, &dir, [data.clone()]);
        let teachers = ("teachers", vec![trained.clone(), trained]);
        run(DISTILL, &with, &dir, [data, teachers]);
    }
}

/// The backend to train on: `BACKEND`, else the CPU's.
fn backend() -> String {
    std::env::var("BACKEND").unwrap_or_else(|_| "ndarray".into())
}

/// Runs `kind` in `<preset dir>/<kind>`, prints its tokens/s, and returns its model.
fn run<K: StageKind, const N: usize>(
    kind: K,
    with: &serde_json::Value,
    preset_dir: &Path,
    inputs: [(&str, Vec<PathBuf>); N],
) -> PathBuf {
    let dir = &preset_dir.join(K::NAME);
    let outputs = dir.join("outputs");
    std::fs::create_dir_all(&outputs).expect("output directory");
    let settings: K::With = serde_json::from_value(with.clone()).expect("valid settings");
    let refs = inputs
        .iter()
        .map(|(name, paths)| (name.to_string(), vec![format!("bench.{name}"); paths.len()]))
        .collect();
    let inputs = inputs
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect();
    let notes = Mutex::new(Vec::new());
    let at = |name: &str| -> PathBuf { dir.join(name) };
    let ctx = RunContext {
        stage: "bench",
        workdir: dir,
        inputs: &inputs,
        input_refs: &refs,
        outputs_dir: &outputs,
        scratch: &at("scratch"),
        store: &at("store"),
        pipeline_dir: dir,
        backend: &backend(),
        log: &at("log"),
        progress: &|_| {},
        notes: &notes,
    };
    kind.run(&settings, &ctx).expect("training runs");
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
        "{} {}: step (Adam, batch 2x1024), {}: mean {mean:.0} tokens/s, best {best:.0} tokens/s over {} steps",
        with["arch"].as_str().unwrap_or_default(),
        K::NAME,
        backend(),
        rates.len()
    );
    outputs.join("model")
}
