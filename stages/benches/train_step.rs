//! Forward + backward time of one training step (batch 2 x 1024, CE + 0.02 SIGReg)
//! on the CPU backend, for v1-tiny and v1-small; and one inference forward pass to the
//! representation, as a `distill` teacher runs it.
//!
//! cargo bench -p soma-flow-stages --bench train_step

use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use soma_flow_stages::backend::Pass;
use soma_flow_stages::contract::{Batches, SEQ_LEN};
use soma_flow_stages::loss::{objective, BatchTensors};
use soma_flow_stages::model::{Preset, SomaModel};
use soma_flow_stages::sigreg::chain_noise;

/// As `soma-flow` allocates (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Autodiff<NdArray<f32>>;

const BATCH: usize = 2;
const STEPS: usize = 3;

fn main() {
    soma_flow_stages::backend::prepare_process();
    let device = Default::default();
    let data: Vec<u8> = (0..BATCH * SEQ_LEN).map(|i| (i * 31 % 251) as u8).collect();
    let batch = Batches::new(&data, SEQ_LEN, BATCH)
        .next()
        .expect("one batch");
    let tensors = BatchTensors::<B>::new(&batch, &device);
    for preset in [Preset::V1Tiny, Preset::V1Small] {
        let config = preset.config();
        let model = SomaModel::<B>::init(&config, 0, &device);
        let step = || {
            let start = Instant::now();
            let terms = objective(
                &model,
                &tensors,
                chain_noise::<B>(0, 0, config.embedding_dim, &device),
                Pass::for_training::<B>(&device),
            );
            let grads = terms.total.backward();
            drop(grads);
            start.elapsed().as_secs_f64()
        };
        report(preset, "forward+backward", step);
        let teacher = model.valid();
        let tokens = tensors.token_ids.clone().inner();
        let positions = tensors.positions.clone().inner();
        let forward = || {
            let start = Instant::now();
            teacher
                .encode(tokens.clone(), positions.clone())
                .into_data();
            start.elapsed().as_secs_f64()
        };
        report(preset, "inference forward (a teacher's)", forward);
    }
}

/// Prints the mean and best of `STEPS` timings of `once` after a warm-up.
fn report(preset: Preset, what: &str, once: impl Fn() -> f64) {
    once();
    let times: Vec<f64> = (0..STEPS).map(|_| once()).collect();
    let mean = times.iter().sum::<f64>() / STEPS as f64;
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "{preset}: {what}, batch {BATCH}x{SEQ_LEN}, ndarray CPU: mean {:.0} ms, best {:.0} ms over {STEPS} steps",
        mean * 1e3,
        best * 1e3
    );
}
