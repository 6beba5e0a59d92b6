//! Training throughput (tokens/s) of the `train` loop on the CPU backend:
//! batch 2 x 1024, no accumulation, for v1-tiny and v1-small.
//!
//! cargo bench -p soma-flow-stages --bench train_tokens

use std::path::Path;

use soma_flow_stages::training::job::{Job, Outputs};
use soma_flow_stages::training::objective::TaskLoss;
use soma_flow_stages::training::settings::Settings;
use soma_flow_stages::BackendChoice;

const STEPS: usize = 4;

fn main() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for preset in ["v1-tiny", "v1-small"] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let settings = Settings {
            arch: Some(preset.parse().expect("preset")),
            steps: STEPS,
            batch: 2,
            accum: 1,
            checkpoint_every: 0,
            ..Settings::default()
        };
        let outputs = Outputs {
            model: dir.path().join("model.safetensors"),
            metrics: dir.path().join("metrics.jsonl"),
            curve: dir.path().join("curve.png"),
        };
        let job = Job {
            settings: &settings,
            data: &data,
            init: None,
            holdout: None,
            scratch: &dir.path().join("scratch"),
            progress: &|_| {},
            halt_after: None,
            title: preset,
        };
        job.run(&TaskLoss, BackendChoice::NdArray, &outputs)
            .expect("training runs");
        let rates: Vec<f64> = std::fs::read_to_string(&outputs.metrics)
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
