//! Training-side behaviour: dropout only under autodiff, gradients reach every
//! parameter through CE + 0.02 SIGReg.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use soma_flow_stages::backend::Pass;
use soma_flow_stages::contract::Batches;
use soma_flow_stages::loss::{objective, BatchTensors};
use soma_flow_stages::model::ArchConfig;
use soma_flow_stages::model::{Preset, SomaModel};
use soma_flow_stages::noise::normal_array;
use soma_flow_stages::sigreg::{chain_noise, sigreg_by};
use soma_flow_stages::training::trainer::seeded;

type A = Autodiff<NdArray<f32>>;

fn encode<B: Backend>(model: &SomaModel<B>) -> Vec<f32> {
    let device = Default::default();
    let tokens = Tensor::<B, 2, Int>::from_data(
        TensorData::new((0..32i64).collect(), [1, 32]).convert::<B::IntElem>(),
        &device,
    );
    let positions = Tensor::<B, 2, Int>::from_data(
        TensorData::new((0..32i64).collect(), [1, 32]).convert::<B::IntElem>(),
        &device,
    );
    model
        .encode(tokens, positions)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap()
}

#[test]
fn dropout_acts_in_training_only() {
    let config = Preset::V1Tiny.config().with_dropout(0.5);
    let device = Default::default();
    let model = SomaModel::<A>::init(&config, 1, &device);
    let pass = |seed| seeded::<A, _>(&device, seed, || encode(&model));
    assert!(pass(1) != pass(2), "training passes should differ");
    assert!(pass(1) == pass(1), "dropout depends on the seed alone");
    let eval = model.valid();
    assert!(
        encode(&eval) == encode(&eval),
        "inference must be deterministic"
    );
}

#[test]
fn the_objective_reaches_every_parameter() {
    let config = Preset::V1Tiny.config().with_dropout(0.0);
    for pass in [Pass::Device, Pass::Host] {
        objective_reaches_every_parameter(&config, pass);
    }
}

fn objective_reaches_every_parameter(config: &ArchConfig, pass: Pass) {
    let device = Default::default();
    let model = SomaModel::<A>::init(config, 2, &device);
    let data: Vec<u8> = b"fn main() { println!(\"hello\"); }".repeat(3);
    let batch = Batches::new(&data, 64, 2).next().unwrap();
    let terms = objective(
        &model,
        &BatchTensors::new(&batch, &device),
        chain_noise::<A>(2, 0, config.embedding_dim, &device),
        pass,
    );
    assert!(terms.total.clone().into_scalar().is_finite());
    let grads = terms.total.backward();
    let embedding_grad = model
        .embedding
        .weight
        .grad(&grads)
        .expect("embedding gradient");
    let predictor_grad = model
        .predictor
        .weight
        .grad(&grads)
        .expect("predictor gradient");
    let first_norm_grad = model.encoder.layers[0]
        .norm_1
        .gamma
        .grad(&grads)
        .expect("norm gradient");
    for g in [embedding_grad.abs().sum(), predictor_grad.abs().sum()] {
        assert!(g.into_scalar() > 0.0);
    }
    assert!(first_norm_grad.abs().sum().into_scalar() > 0.0);
}

/// The host pass of SIGReg (one fused f64 pass giving value and gradient) against the
/// tensor operations autodiff differentiates, on representations near and far from
/// standard normal.
#[test]
fn host_sigreg_matches_the_tensor_ops_in_value_and_gradient() {
    let device = Default::default();
    assert_eq!(Pass::for_training::<A>(&device), Pass::Host);
    let [batch, len, dim] = [2, 48, 64];
    let noise = chain_noise::<A>(5, 0, dim, &device);
    for (seed, scale, shift) in [(1, 1.0, 0.0), (2, 0.3, 0.5), (3, 4.0, -1.0)] {
        let values: Vec<f32> = normal_array(seed, batch * len, dim)
            .into_iter()
            .map(|v| v * scale + shift)
            .collect();
        let run = |pass| {
            let rep = Tensor::<A, 3>::from_data(
                TensorData::new(values.clone(), [batch, len, dim]),
                &device,
            )
            .require_grad();
            let value = sigreg_by(rep.clone(), noise.clone(), pass);
            let grads = value.clone().mul_scalar(3.0).backward();
            let grad: Vec<f32> = rep.grad(&grads).unwrap().into_data().into_vec().unwrap();
            (value.into_scalar(), grad)
        };
        let (want, want_grad) = run(Pass::Device);
        let (got, got_grad) = run(Pass::Host);
        assert!(
            (got - want).abs() <= 1e-4 * want.abs(),
            "value {got} vs {want}"
        );
        let largest = want_grad.iter().fold(0f32, |m, g| m.max(g.abs()));
        assert!(largest > 0.0);
        let worst = want_grad
            .iter()
            .zip(&got_grad)
            .fold(0f32, |m, (w, g)| m.max((w - g).abs()));
        assert!(
            worst <= 1e-3 * largest,
            "gradient off by {worst} (largest {largest}), seed {seed}"
        );
        assert_eq!(
            run(Pass::Host),
            (got, got_grad),
            "the host pass is deterministic"
        );
    }
}

/// Scores and embeddings run on the inference backend, whose attention, linear
/// layers, GELU and SIGReg are host kernels there; they must give the values of Burn's
/// tensor operations (what the chain runs) bit for bit: the same model and batch on
/// the autodiff backend, which runs those as Burn's operations.
#[test]
fn the_inference_backend_gives_burns_operations_values_bit_for_bit() {
    type I = NdArray<f32>;
    let config = Preset::V1Tiny.config().with_dropout(0.0);
    let device = Default::default();
    let model = SomaModel::<A>::init(&config, 3, &device);
    let data: Vec<u8> = (0..2 * 1024).map(|i| (i * 37 % 251) as u8).collect();
    let batch = Batches::new(&data, 1024, 2).next().expect("one batch");
    let dim = config.embedding_dim;
    let burn = objective(
        &model,
        &BatchTensors::<A>::new(&batch, &device),
        chain_noise::<A>(0, 0, dim, &device),
        Pass::Device,
    );
    let host = objective(
        &model.valid(),
        &BatchTensors::<I>::new(&batch, &device),
        chain_noise::<I>(0, 0, dim, &device),
        Pass::Device,
    );
    let values = |t: Vec<f32>| t.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let of = |data: burn::tensor::TensorData| values(data.convert::<f32>().into_vec().unwrap());
    assert!(
        of(burn.rep.into_data()) == of(host.rep.into_data()),
        "representations"
    );
    for (what, a, b) in [
        ("cross-entropy", burn.cross_entropy, host.cross_entropy),
        ("SIGReg", burn.sigreg, host.sigreg),
        ("total", burn.total, host.total),
    ] {
        let (a, b) = (a.into_scalar(), b.into_scalar());
        assert_eq!(a.to_bits(), b.to_bits(), "{what}: {a} vs {b}");
    }
}
