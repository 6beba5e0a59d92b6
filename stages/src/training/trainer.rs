//! The optimisation loop shared by `train` and `distill`: Adam over
//! accumulated micro-batches, seeded sampling, dropout and SIGReg noise,
//! progress lines, metrics and resumable checkpoints.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{ensure, Result};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde_json::json;

use super::checkpoint::{self, State};
use super::documents::Documents;
use super::objective::Objective;
use super::sampler::{derive_seed, SequenceIndex, Stream};
use super::settings::Settings;
use crate::loss::BatchTensors;
use crate::model::SomaModel;
use crate::noise::normal_array;
use crate::sigreg::SLICES;

/// Dropout draws from the backend's global generator: seeding it and running
/// the forward pass happen under this lock so concurrent trainings in one
/// process cannot interleave their draws.
static BACKEND_RNG: Mutex<()> = Mutex::new(());

pub struct Trainer<'a> {
    pub settings: &'a Settings,
    pub docs: &'a dyn Documents,
    /// Where checkpoints live; a run finding one there resumes from it.
    pub scratch: &'a Path,
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Test hook: return after this many steps as if killed there.
    pub halt_after: Option<usize>,
}

pub struct Trained<B: AutodiffBackend> {
    pub model: SomaModel<B>,
    /// JSON Lines records: one per step, plus whatever `initial` added.
    pub metrics: Vec<serde_json::Value>,
    /// False when `halt_after` stopped the run early.
    pub finished: bool,
}

fn scalar<B: AutodiffBackend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

impl Trainer<'_> {
    /// Trains `model` (fresh or from `init`) with `objective`. `initial` runs
    /// only on a fresh start (not on resume) and gives its first metric lines.
    pub fn run<B, O>(
        &self,
        model: SomaModel<B>,
        objective: &O,
        device: &B::Device,
        initial: impl FnOnce(&SomaModel<B>) -> Result<Vec<serde_json::Value>>,
    ) -> Result<Trained<B>>
    where
        B: AutodiffBackend,
        O: Objective<B>,
    {
        let s = self.settings;
        ensure!(
            s.seq_len <= model.config().max_seq_len,
            "seq_len {} exceeds the model's max_seq_len {}",
            s.seq_len,
            model.config().max_seq_len
        );
        let index = SequenceIndex::new(self.docs, s.seq_len, false)?;
        let make_optim = || {
            AdamConfig::new()
                .with_beta_1(s.beta1 as f32)
                .with_beta_2(s.beta2 as f32)
                .with_epsilon(s.eps as f32)
                .with_weight_decay(
                    (s.weight_decay > 0.0).then(|| WeightDecayConfig::new(s.weight_decay as f32)),
                )
                .init::<B, SomaModel<B>>()
        };
        // A checkpoint that does not load (torn by a crash of an older version, or a
        // damaged disk) is discarded rather than failing every later run.
        let resumed = match checkpoint::latest(self.scratch)? {
            Some(dir) => match checkpoint::load(&dir, model.clone(), make_optim(), device) {
                Ok(loaded) => Some((dir, loaded)),
                Err(e) => {
                    (self.progress)(&format!(
                        "checkpoint {} does not load ({e:#}); discarding it and starting over",
                        dir.display()
                    ));
                    std::fs::remove_dir_all(&dir)?;
                    None
                }
            },
            None => None,
        };
        let (mut model, mut optim, mut state) = match resumed {
            Some((dir, (model, optim, state))) => {
                ensure!(
                    state.seed == s.seed,
                    "checkpoint {} was made with seed {}, not {}",
                    dir.display(),
                    state.seed,
                    s.seed
                );
                (self.progress)(&format!("resuming from step {}/{}", state.step, s.steps));
                (model, optim, state)
            }
            None => {
                let metrics = initial(&model)?;
                let state = State {
                    step: 0,
                    seed: s.seed,
                    metrics,
                };
                (model, make_optim(), state)
            }
        };
        let dim = model.config().embedding_dim;
        let started = Instant::now();
        let first_step = state.step;
        while state.step < s.steps {
            let step = state.step as u64;
            let clock = Instant::now();
            let mut accumulator = GradientsAccumulator::<SomaModel<B>>::new();
            let mut loss = 0.0;
            let mut parts: Vec<(&'static str, f64)> = Vec::new();
            for micro in 0..s.accum as u64 {
                let picks = index.draw(derive_seed(s.seed, Stream::Sampling, step, micro), s.batch);
                let batch = BatchTensors::new(&index.batch(&picks, s.positions), device);
                let noise =
                    normal_array(derive_seed(s.seed, Stream::Noise, step, micro), dim, SLICES);
                let noise = Tensor::from_data(TensorData::new(noise, [dim, SLICES]), device);
                let terms = {
                    let _draws = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
                    B::seed(device, derive_seed(s.seed, Stream::Dropout, step, micro));
                    objective.terms(&model, &batch, noise)
                };
                let share = 1.0 / s.accum as f64;
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
            let lr = s.lr_at(state.step);
            model = optim.step(lr, model, accumulator.grads());
            state.step += 1;
            let tokens_per_s = s.tokens_per_step() as f64 / clock.elapsed().as_secs_f64();
            let mut line = json!({
                "step": state.step,
                "loss": loss,
                "lr": lr,
                "tokens_per_s": tokens_per_s,
            });
            for (name, value) in &parts {
                line[*name] = json!(value);
            }
            state.metrics.push(line);
            let done = state.step - first_step;
            let eta = started.elapsed().as_secs_f64() / done as f64 * (s.steps - state.step) as f64;
            (self.progress)(&format!(
                "step {}/{} loss {loss:.4} {tokens_per_s:.0} tok/s ETA {}",
                state.step,
                s.steps,
                humantime::format_duration(std::time::Duration::from_secs(eta as u64))
            ));
            let every = s.checkpoint_every;
            if every > 0 && state.step.is_multiple_of(every) && state.step < s.steps {
                checkpoint::save(self.scratch, &model, &optim, &state)?;
            }
            if self.halt_after == Some(state.step) && state.step < s.steps {
                return Ok(Trained {
                    model,
                    metrics: state.metrics,
                    finished: false,
                });
            }
        }
        Ok(Trained {
            model,
            metrics: state.metrics,
            finished: true,
        })
    }
}
