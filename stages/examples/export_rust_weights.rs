//! Writes weights produced by the Rust code, with the scores Rust computes for
//! them on the golden blobs, so that tests/reference/make_fixtures.py
//! --check-rust DIR can show soma-models loads them with identical outputs.
//!
//! cargo run -p soma-flow-stages --example export_rust_weights -- DIR

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use soma_flow_stages::model::{Preset, SomaModel};
use soma_flow_stages::score::score_model;

type B = burn::backend::NdArray<f32>;

const SEED: u64 = 1234;
const BLOBS: [&str; 3] = ["blob_partial.bin", "blob_two_batches.bin", "blob_exact.bin"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/fixtures")
}

fn main() -> Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: export_rust_weights DIR")?,
    );
    std::fs::create_dir_all(&dir)?;
    let device = Default::default();
    let tiny = Preset::V1Tiny.config().with_dropout(0.0);

    // A fresh Rust initialisation, and the soma-models fixture re-saved by Rust.
    let fresh = SomaModel::<B>::init(&tiny, 7, &device);
    let resaved = SomaModel::<B>::load(
        &fixtures().join("tiny_soma_models.safetensors"),
        &tiny,
        &device,
    )?;
    let mut weights = Vec::new();
    for (file, model) in [
        ("rust_init.safetensors", &fresh),
        ("rust_resaved.safetensors", &resaved),
    ] {
        model.save(&dir.join(file))?;
        let reloaded = SomaModel::<B>::load(&dir.join(file), &tiny, &device)?;
        let mut cases = Vec::new();
        for blob in BLOBS {
            let data = std::fs::read(fixtures().join(blob))?;
            let (loss, embedding) = score_model(&reloaded, &data, SEED, &device)?;
            cases.push(json!({ "blob": blob, "loss": loss, "embedding": embedding }));
        }
        weights.push(json!({ "file": file, "cases": cases }));
    }
    let report = json!({ "seed": SEED, "weights": weights });
    std::fs::write(
        dir.join("rust_scores.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}
