//! The optimiser's side of training: Adam as the settings configure it, resuming
//! from the latest checkpoint, and one step over accumulated micro-batches with
//! seeded sampling, dropout and SIGReg noise. [`super::job::Job`] drives it.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{ensure, Result};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde_json::json;

use super::checkpoint::{self, State};
use super::objective::Objective;
use super::sampler::{derive_seed, SequenceIndex, Stream};
use super::settings::{Adam, Settings};
use crate::loss::BatchTensors;
use crate::model::SomaModel;
use crate::noise::normal_array;
use crate::sigreg::SLICES;

/// Dropout draws from the backend's global generator: seeding it and running
/// the forward pass happen under this lock so concurrent trainings in one
/// process cannot interleave their draws.
static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// Runs `f` with the backend's global generator seeded with `seed`, holding the
/// process-wide lock on it: whatever `f` draws (dropout masks) depends on `seed`
/// alone, whatever else runs in the process.
pub fn seeded<B: Backend, R>(device: &B::Device, seed: u64, f: impl FnOnce() -> R) -> R {
    let _draws = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(device, seed);
    f()
}

/// Adam with the settings' betas, epsilon and weight decay.
pub fn optimizer<B: AutodiffBackend>(s: &Adam) -> impl Optimizer<SomaModel<B>, B> {
    AdamConfig::new()
        .with_beta_1(s.beta1 as f32)
        .with_beta_2(s.beta2 as f32)
        .with_epsilon(s.eps as f32)
        .with_weight_decay(
            (s.weight_decay > 0.0).then(|| WeightDecayConfig::new(s.weight_decay as f32)),
        )
        .init::<B, SomaModel<B>>()
}

/// The latest checkpoint in `scratch`, loaded into `model` and a fresh optimiser. A
/// checkpoint that does not load (torn by a crash of an older version, or a damaged
/// disk) is discarded rather than failing every later run; one made with another
/// seed is an error.
pub fn resume<B, O, Obj>(
    s: &Settings<Obj>,
    scratch: &Path,
    model: SomaModel<B>,
    optim: O,
    progress: &(dyn Fn(&str) + Sync),
    device: &B::Device,
) -> Result<Option<(SomaModel<B>, O, State)>>
where
    B: AutodiffBackend,
    O: Optimizer<SomaModel<B>, B>,
{
    let Some(dir) = checkpoint::latest(scratch)? else {
        return Ok(None);
    };
    let (model, optim, state) = match checkpoint::load(&dir, model, optim, device) {
        Ok(loaded) => loaded,
        Err(e) => {
            progress(&format!(
                "checkpoint {} does not load ({e:#}); discarding it and starting over",
                dir.display()
            ));
            std::fs::remove_dir_all(&dir)?;
            return Ok(None);
        }
    };
    ensure!(
        state.seed == s.seed,
        "checkpoint {} was made with seed {}, not {}",
        dir.display(),
        state.seed,
        s.seed
    );
    progress(&format!("resuming from step {}/{}", state.step, s.steps));
    Ok(Some((model, optim, state)))
}

fn scalar<B: AutodiffBackend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// Optimiser step `step` (0-based): `accum` micro-batches of `batch` sequences, each
/// drawn, noised and dropped out from seeds derived from `(seed, step, micro)`, so a
/// resumed run takes the same steps. Returns the model and the step's metrics line
/// (`step` is the number of steps done after it).
pub fn step<B, O, Ob, Obj>(
    s: &Settings<Obj>,
    index: &SequenceIndex<'_>,
    objective: &Ob,
    model: SomaModel<B>,
    optim: &mut O,
    step: usize,
    device: &B::Device,
) -> (SomaModel<B>, serde_json::Value)
where
    B: AutodiffBackend,
    O: Optimizer<SomaModel<B>, B>,
    Ob: Objective<B>,
{
    let clock = std::time::Instant::now();
    let dim = model.config().embedding_dim;
    let mut accumulator = GradientsAccumulator::<SomaModel<B>>::new();
    let mut loss = 0.0;
    let mut parts: Vec<(&'static str, f64)> = Vec::new();
    let share = 1.0 / s.data.accum as f64;
    for micro in 0..s.data.accum as u64 {
        let seed = |stream| derive_seed(s.seed, stream, step as u64, micro);
        let picks = index.draw(seed(Stream::Sampling), s.data.batch);
        let batch = BatchTensors::new(&index.batch(&picks, s.data.positions), device);
        let noise = normal_array(seed(Stream::Noise), dim, SLICES);
        let noise = Tensor::from_data(TensorData::new(noise, [dim, SLICES]), device);
        let terms = seeded::<B, _>(device, seed(Stream::Dropout), || {
            objective.terms(&model, &batch, noise)
        });
        loss += scalar(terms.total.clone()) * share;
        for (i, (name, value)) in terms.parts.into_iter().enumerate() {
            let value = scalar(value) * share;
            match parts.get_mut(i) {
                Some((_, sum)) => *sum += value,
                None => parts.push((name, value)),
            }
        }
        let grads = terms.total.mul_scalar(share).backward();
        accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
    }
    let lr = s.lr_at(step);
    let model = optim.step(lr, model, accumulator.grads());
    let mut line = json!({
        "step": step + 1,
        "loss": loss,
        "lr": lr,
        "tokens_per_s": s.tokens_per_step() as f64 / clock.elapsed().as_secs_f64(),
    });
    for (name, value) in parts {
        line[name] = json!(value);
    }
    (model, line)
}
