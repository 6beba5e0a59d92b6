//! Training-side behaviour: dropout only under autodiff, gradients reach every
//! parameter through CE + 0.02 SIGReg.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use soma_flow_stages::contract::Batches;
use soma_flow_stages::loss::{objective, BatchTensors};
use soma_flow_stages::model::{Preset, SomaModel};
use soma_flow_stages::sigreg::chain_noise;
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
    let device = Default::default();
    let config = Preset::V1Tiny.config().with_dropout(0.0);
    let model = SomaModel::<A>::init(&config, 2, &device);
    let data: Vec<u8> = b"fn main() { println!(\"hello\"); }".repeat(3);
    let batch = Batches::new(&data, 64, 2).next().unwrap();
    let terms = objective(
        &model,
        &BatchTensors::new(&batch, &device),
        chain_noise::<A>(2, 0, config.embedding_dim, &device),
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
