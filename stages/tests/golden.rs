//! The on-chain score computed by Rust matches the one computed with the public
//! soma-models (Flax) and soma-arrgen packages.

use crate::common;

use std::path::Path;

use burn::tensor::backend::Backend;
use common::*;
use soma_flow_stages::model::{ArchConfig, Preset, SomaModel};
use soma_flow_stages::noise::normal_array;
use soma_flow_stages::score::{score_model, score_models};
use soma_flow_stages::BackendChoice;

#[test]
fn noise_stream_matches_soma_arrgen() {
    for case in expected().noise {
        let values = normal_array(case.seed, case.shape[0], case.shape[1]);
        assert_eq!(values, case.values, "seed {}", case.seed);
    }
}

#[test]
fn weights_saved_by_soma_models_infer_as_v1_tiny() {
    let config = ArchConfig::infer_from_weights(&fixture_weights(), TINY_HEADS).unwrap();
    assert_eq!(config, Preset::V1Tiny.config());
}

/// Rust's score of the weights at `path` on each case's blob, on backend `Back`,
/// equals soma-models'.
pub fn assert_scores_match<Back: Backend>(
    path: &Path,
    cases: &[Case],
    seed: u64,
    device: &Back::Device,
) {
    let model = SomaModel::<Back>::load_inferred(path, TINY_HEADS, 0.0, device).unwrap();
    for case in cases {
        let what = format!("{} on {}", path.display(), case.blob);
        let data = std::fs::read(fixtures().join(&case.blob)).unwrap();
        let (loss, embedding) = score_model(&model, &data, seed, device).unwrap();
        assert_close(&format!("{what}: loss"), loss, case.loss, case.loss.abs());
        assert_eq!(embedding.len(), case.embedding.len());
        let scale = rms(&case.embedding);
        for (i, (a, e)) in embedding.iter().zip(&case.embedding).enumerate() {
            assert_close(
                &format!("{what}: embedding[{i}]"),
                *a,
                *e,
                e.abs().max(scale),
            );
        }
    }
}

#[test]
fn scores_match_soma_models_on_every_blob() {
    let expected = expected();
    let weights = fixture_weights();
    assert_scores_match::<B>(
        &weights,
        &expected.cases,
        expected.seed,
        &Default::default(),
    );
}

/// Weights trained by soma-flow (the local network's genesis models, from the `train`
/// stage) load in soma-models, which writes them back unchanged and scores them as
/// soma-flow does.
#[test]
fn trained_weights_score_the_same_in_soma_models() {
    let expected = trained_expected();
    assert_eq!(expected.models.len(), 2);
    let genesis = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/genesis");
    for model in &expected.models {
        assert!(model.resaved_identically, "{}", model.weights);
        let weights = genesis.join(&model.weights);
        assert_scores_match::<B>(&weights, &model.cases, expected.seed, &Default::default());
    }
}

#[test]
fn score_models_reports_every_model_and_the_first_of_equal_losses_wins() {
    let expected = expected();
    let case = &expected.cases[0];
    let data = std::fs::read(fixtures().join(&case.blob)).unwrap();
    let paths = vec![fixture_weights(), fixture_weights()];
    let report = score_models(
        &paths,
        &data,
        expected.seed,
        TINY_HEADS,
        BackendChoice::NdArray,
    )
    .unwrap();
    assert_eq!(report.winner, 0);
    assert_eq!(report.models.len(), 2);
    assert_close(
        "report loss",
        report.models[1].loss,
        case.loss,
        case.loss.abs(),
    );
    assert!(report.winner_distance(&case.embedding).unwrap().abs() < 1e-6);

    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["winner"], 0);
    assert!(json["models"][0]["path"].is_string());
    assert!(json["models"][0]["loss"].is_number());
    assert_eq!(
        json["models"][0]["embedding"].as_array().unwrap().len(),
        128
    );

    assert!(score_models(&paths, &[], 0, TINY_HEADS, BackendChoice::NdArray).is_err());
}
