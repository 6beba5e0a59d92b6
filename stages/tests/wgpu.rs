//! The GPU code path: Burn's CubeCL kernels through wgpu, on whatever device wgpu finds.
//! On CI that is lavapipe, Mesa's Vulkan device on the CPU (scripts/test.sh installs
//! it): the kernels, transfers and device code that a GPU runs, at CPU speed. A machine
//! with no device fails these tests with the error that names what to install.

use std::path::Path;

use burn::backend::Wgpu;
use soma_flow_stages::backend::wgpu_device;
use soma_flow_stages::model::SomaModel;
use soma_flow_stages::score::score_model;
use soma_flow_stages::training::objective::TaskLoss;
use soma_flow_stages::training::settings::Settings;
use soma_flow_stages::BackendChoice;

use crate::common::*;
use crate::golden::assert_scores_match;
use crate::training::{metrics, quick_settings, train_on};

type G = Wgpu<f32, i32>;

fn device() -> burn::backend::wgpu::WgpuDevice {
    wgpu_device().unwrap_or_else(|e| panic!("{e:#}"))
}

/// `actual` within `rel` of `expected`, relative to `scale`.
fn assert_near(what: &str, actual: f64, expected: f64, scale: f64, rel: f64) {
    let gap = (actual - expected).abs();
    assert!(
        gap <= rel * scale,
        "{what}: {actual} on wgpu vs {expected} on the CPU (gap {gap:e}, bound {:e})",
        rel * scale
    );
}

#[test]
fn a_forward_pass_on_wgpu_gives_the_cpu_backends_loss_and_embedding() {
    let expected = expected();
    let weights = fixture_weights();
    let cpu =
        SomaModel::<B>::load_inferred(&weights, TINY_HEADS, 0.0, &Default::default()).unwrap();
    let gpu = SomaModel::<G>::load_inferred(&weights, TINY_HEADS, 0.0, &device()).unwrap();
    for case in &expected.cases {
        let data = std::fs::read(fixtures().join(&case.blob)).unwrap();
        let (cpu_loss, cpu_embedding) =
            score_model(&cpu, &data, expected.seed, &Default::default()).unwrap();
        let (loss, embedding) = score_model(&gpu, &data, expected.seed, &device()).unwrap();
        let what = format!("{}: loss", case.blob);
        assert_near(
            &what,
            loss.into(),
            cpu_loss.into(),
            cpu_loss.abs().into(),
            1e-4,
        );
        let scale = rms(&cpu_embedding);
        for (i, (g, c)) in embedding.iter().zip(&cpu_embedding).enumerate() {
            let what = format!("{}: embedding[{i}]", case.blob);
            assert_near(
                &what,
                (*g).into(),
                (*c).into(),
                c.abs().max(scale).into(),
                1e-4,
            );
        }
    }
}

/// The chain's reference (soma-models) within the bound the CPU backend meets.
#[test]
fn scores_on_wgpu_match_soma_models_as_the_cpu_backends_do() {
    let expected = expected();
    let weights = fixture_weights();
    assert_scores_match::<G>(&weights, &expected.cases, expected.seed, &device());
}

/// v1-tiny without dropout (whose random masks come from each backend's own generator),
/// so that both backends start from the same loss.
fn settings(steps: usize) -> Settings {
    Settings {
        dropout: 0.0,
        ..quick_settings(steps)
    }
}

/// The loss of each step, in order.
fn losses(out: &Path) -> Vec<f64> {
    metrics(out)
        .iter()
        .filter_map(|l| l.get("loss")?.as_f64())
        .collect()
}

#[test]
fn training_on_wgpu_lowers_the_loss_from_where_the_cpu_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |backend: BackendChoice, name: &str| {
        let out = dir.path().join(name);
        let scratch = dir.path().join(format!("{name}-scratch"));
        let report = train_on(backend, &settings(6), &TaskLoss, None, &scratch, &out, None);
        assert!(report.finished);
        losses(&out)
    };
    let gpu = run(BackendChoice::Wgpu, "wgpu");
    let cpu = run(BackendChoice::NdArray, "cpu");
    assert_eq!(gpu.len(), 6);
    assert_near("the first step's loss", gpu[0], cpu[0], cpu[0].abs(), 1e-4);
    let (first, last) = (gpu[..2].iter().sum::<f64>(), gpu[4..].iter().sum::<f64>());
    assert!(last < first, "the loss did not fall on wgpu: {gpu:?}");
}

#[test]
fn a_checkpoint_written_on_one_backend_resumes_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        checkpoint_every: 2,
        ..settings(4)
    };
    let straight = dir.path().join("straight");
    let s = dir.path().join("s1");
    train_on(
        BackendChoice::NdArray,
        &settings,
        &TaskLoss,
        None,
        &s,
        &straight,
        None,
    );
    // Killed on the CPU after step 3 (its checkpoint of step 2 kept), finished on wgpu;
    // and the other way round.
    for (first, then) in [
        (BackendChoice::NdArray, BackendChoice::Wgpu),
        (BackendChoice::Wgpu, BackendChoice::NdArray),
    ] {
        let scratch = dir.path().join(format!("{first}-{then}"));
        let out = dir.path().join(format!("{first}-{then}-out"));
        let halted = train_on(first, &settings, &TaskLoss, None, &scratch, &out, Some(3));
        assert!(!halted.finished);
        assert!(scratch.join("checkpoint-2").is_dir());
        let finished = train_on(then, &settings, &TaskLoss, None, &scratch, &out, None);
        assert!(finished.finished, "{first} then {then}");
        let (want, got) = (losses(&straight), losses(&out));
        assert_eq!(got.len(), want.len(), "{first} then {then}");
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            let what = format!("{first} then {then}: step {}", step + 1);
            assert_near(&what, *g, *w, w.abs(), 1e-3);
        }
        SomaModel::<B>::load_inferred(
            &out.join("model.safetensors"),
            TINY_HEADS,
            0.0,
            &Default::default(),
        )
        .unwrap();
    }
}
