//! Canonical weights: bit-exact round trips and clear errors for bad files.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use safetensors::tensor::{Dtype, TensorView};
use soma_flow_stages::model::{canonical_layout, ArchConfig, Preset, SomaModel};

fn tiny() -> ArchConfig {
    Preset::V1Tiny.config().with_dropout(0.0)
}

fn load_err(path: &Path, config: &ArchConfig) -> String {
    let error = SomaModel::<B>::load(path, config, &Default::default()).unwrap_err();
    format!("{error:#}")
}

fn forward(model: &SomaModel<B>) -> Vec<f32> {
    let device = Default::default();
    let tokens = Tensor::<B, 2, Int>::from_data(
        TensorData::new((0..64i64).map(|i| i * 3 % 258).collect(), [2, 32]),
        &device,
    );
    let positions = Tensor::<B, 2, Int>::from_data(
        TensorData::new((0..64i64).map(|i| i + 1000).collect(), [2, 32]),
        &device,
    );
    model
        .predict(model.encode(tokens, positions))
        .into_data()
        .into_vec()
        .unwrap()
}

#[test]
fn save_then_load_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    let device = Default::default();
    let model = SomaModel::<B>::init(&tiny(), 11, &device);
    model.save(&first).unwrap();
    let loaded = SomaModel::<B>::load(&first, &tiny(), &device).unwrap();
    loaded.save(&second).unwrap();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    assert_eq!(forward(&model), forward(&loaded));

    let header = soma_flow_stages::model::read_header(&first).unwrap();
    let layout = canonical_layout(&tiny());
    assert_eq!(header.len(), layout.len());
    for spec in layout {
        assert_eq!(header[&spec.key].shape, spec.shape, "{}", spec.key);
    }
}

#[test]
fn same_seed_same_weights_and_the_future_does_not_leak() {
    let device = Default::default();
    let a = forward(&SomaModel::<B>::init(&tiny(), 5, &device));
    let b = forward(&SomaModel::<B>::init(&tiny(), 5, &device));
    assert!(a == b, "same seed gave different weights");

    // Changing the last token must not change logits at earlier positions.
    let model = SomaModel::<B>::init(&tiny(), 5, &device);
    let run = |last: i64| {
        let mut ids: Vec<i64> = (0..16).collect();
        ids[15] = last;
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, 16]), &device);
        let positions =
            Tensor::<B, 2, Int>::from_data(TensorData::new((0..16i64).collect(), [1, 16]), &device);
        model
            .encode(tokens, positions)
            .into_data()
            .into_vec::<f32>()
            .unwrap()
    };
    let (x, y) = (run(1), run(200));
    let dim = tiny().embedding_dim;
    assert!(
        x[..15 * dim] == y[..15 * dim],
        "a later token changed earlier positions"
    );
    assert!(
        x[15 * dim..] != y[15 * dim..],
        "the last token had no effect"
    );
}

#[test]
fn wrong_layer_count_lists_missing_and_unexpected_keys() {
    let path = fixture_weights();
    let more = ArchConfig {
        num_layers: 3,
        ..tiny()
    };
    let message = load_err(&path, &more);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("16 missing keys"), "{message}");
    assert!(
        message.contains("`encoder.layers.2.norm_1.gamma`"),
        "{message}"
    );
    assert!(message.contains("(and 11 more)"), "{message}");

    let fewer = ArchConfig {
        num_layers: 1,
        ..tiny()
    };
    let message = load_err(&path, &fewer);
    assert!(message.contains("16 unexpected keys"), "{message}");
    assert!(!message.contains("missing"), "{message}");
}

#[test]
fn wrong_shapes_are_listed_with_both_shapes() {
    let narrow = ArchConfig {
        pwff_hidden_dim: 256,
        ..tiny()
    };
    let message = load_err(&fixture_weights(), &narrow);
    assert!(message.contains("6 shape mismatches"), "{message}");
    assert!(
        message.contains(
            "`encoder.layers.0.pwff.linear_inner.weight` expected [128, 256] found [128, 512]"
        ),
        "{message}"
    );
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(fixture_weights()).unwrap();
    for cut in [bytes.len() / 2, 100] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let message = load_err(&path, &tiny());
        assert!(message.contains("cut.safetensors"), "{message}");
        assert!(message.contains("truncated"), "{message}");
        assert!(
            message.contains(&format!("the file has {cut}")),
            "{message}"
        );
        assert!(ArchConfig::infer_from_weights(&path, TINY_HEADS).is_err());
    }
}

#[test]
fn other_files_are_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("text.safetensors", &b"hello, this is not a model"[..]),
        ("tiny.safetensors", &b"abc"[..]),
        ("empty.safetensors", &b""[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let message = load_err(&path, &tiny());
        assert!(
            message.contains(name) && message.contains("not a safetensors file"),
            "{message}"
        );
    }
    let message = load_err(&dir.path().join("absent.safetensors"), &tiny());
    assert!(message.contains("absent.safetensors"), "{message}");
}

#[test]
fn non_f32_tensors_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.safetensors");
    let config = ArchConfig {
        num_layers: 1,
        ..tiny()
    };
    let buffers: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = canonical_layout(&config)
        .into_iter()
        .map(|spec| {
            let half = spec.key == "final_norm.gamma";
            let (dtype, width) = if half {
                (Dtype::F16, 2)
            } else {
                (Dtype::F32, 4)
            };
            let bytes = vec![0u8; spec.num_elements() * width];
            (spec.key, (dtype, spec.shape, bytes))
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(k, (dtype, shape, bytes))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let message = load_err(&path, &config);
    assert!(
        message.contains("half.safetensors") && message.contains("`final_norm.gamma` is F16"),
        "{message}"
    );
}

#[test]
fn a_saved_v1_small_is_inferred_back_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.safetensors");
    let small = Preset::V1Small.config();
    SomaModel::<B>::init(&small, 3, &Default::default())
        .save(&path)
        .unwrap();
    assert_eq!(
        ArchConfig::infer_from_weights(&path, Some(small.num_heads)).unwrap(),
        small
    );
    // Without a head count the V1 default (8) is assumed.
    assert_eq!(
        ArchConfig::infer_from_weights(&path, None)
            .unwrap()
            .num_heads,
        8
    );
}
