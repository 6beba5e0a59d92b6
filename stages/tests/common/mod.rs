//! Shared access to the golden fixtures written by tests/reference/make_fixtures.py.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub type B = burn::backend::NdArray<f32>;

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub weights: String,
    pub seed: u64,
    pub cases: Vec<Case>,
    pub noise: Vec<NoiseCase>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub blob: String,
    pub loss: f32,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct NoiseCase {
    pub seed: u64,
    pub shape: [usize; 2],
    pub values: Vec<f32>,
}

/// `trained_expected.json`: soma-models' scores of models trained by soma-flow.
#[derive(Debug, Deserialize)]
pub struct TrainedExpected {
    pub seed: u64,
    pub models: Vec<TrainedModel>,
}

#[derive(Debug, Deserialize)]
pub struct TrainedModel {
    /// A file in stages/assets/genesis/.
    pub weights: String,
    pub resaved_identically: bool,
    pub cases: Vec<Case>,
}

pub fn trained_expected() -> TrainedExpected {
    let path = fixtures().join("trained_expected.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixtures/trained_expected.json"))
        .expect("valid trained_expected.json")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/fixtures")
}

pub fn expected() -> Expected {
    let text =
        std::fs::read_to_string(fixtures().join("expected.json")).expect("fixtures/expected.json");
    serde_json::from_str(&text).expect("valid expected.json")
}

pub fn fixture_weights() -> PathBuf {
    fixtures().join(expected().weights)
}

/// v1-tiny has 4 heads, which the weights' shapes cannot tell.
pub const TINY_HEADS: Option<usize> = Some(4);

/// Agreement with soma-models within 1e-5 relative to `scale`.
///
/// Losses use their own magnitude. An embedding element is a mean of O(1)
/// values that largely cancel, so summation order alone moves it by ~1e-6
/// whatever its own size; its scale is max(|element|, RMS of the embedding).
pub fn assert_close(what: &str, actual: f32, expected: f32, scale: f32) {
    let bound = 1e-5 * scale;
    let gap = (actual - expected).abs();
    assert!(
        gap <= bound,
        "{what}: {actual} vs {expected} (gap {gap:e}, bound {bound:e})"
    );
}

pub fn rms(values: &[f32]) -> f32 {
    (values.iter().map(|x| x * x).sum::<f32>() / values.len() as f32).sqrt()
}
