//! One training run as a stage performs it: resolve the architecture, start
//! from a seeded init, `init`'s weights or the latest checkpoint, score the holdout
//! before and after, take the optimiser's steps (`trainer`), and write the model,
//! metrics and loss curve.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;

use super::checkpoint::{self, State};
use super::curve::plot_loss;
use super::documents::open_documents;
use super::objective::{Objective, TaskLoss};
use super::sampler::SequenceIndex;
use super::settings::{NoObjective, Settings};
use super::trainer;
use crate::backend::BackendTask;
use crate::model::{ArchConfig, SomaModel};
use crate::score::score_model;

/// Builds a step objective on the backend chosen at run time.
pub trait ObjectiveSpec: Sync {
    type Built<B: AutodiffBackend>: Objective<B>;
    /// What the `loss` metric is, for the loss curve's legend.
    fn label(&self) -> String;
    fn build<B: AutodiffBackend>(
        &self,
        student: &ArchConfig,
        device: &B::Device,
    ) -> Result<Self::Built<B>>;
}

impl ObjectiveSpec for TaskLoss {
    type Built<B: AutodiffBackend> = TaskLoss;
    fn label(&self) -> String {
        "loss = CE + 0.02 SIGReg".into()
    }
    fn build<B: AutodiffBackend>(&self, _: &ArchConfig, _: &B::Device) -> Result<TaskLoss> {
        Ok(TaskLoss)
    }
}

/// Where a job writes its results.
pub struct Outputs {
    pub model: PathBuf,
    pub metrics: PathBuf,
    pub curve: PathBuf,
}

/// A training run, handed to [`crate::backend::run_on`].
pub struct Job<'a, S, O = NoObjective> {
    pub settings: &'a Settings<O>,
    /// The step objective (`TaskLoss`, or distillation's).
    pub spec: &'a S,
    pub data: &'a Path,
    pub init: Option<&'a Path>,
    pub holdout: Option<&'a Path>,
    /// Where checkpoints live; a run finding one there resumes from it.
    pub scratch: &'a Path,
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Test hook: return after this many steps as if killed there.
    pub halt_after: Option<usize>,
    /// Title of the loss curve.
    pub title: &'a str,
    pub outputs: &'a Outputs,
}

/// What a finished (or halted) job reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub finished: bool,
    pub steps: usize,
    /// On-chain score of the holdout blob before and after training.
    pub holdout: Option<(f64, f64)>,
}

impl Report {
    pub fn note(&self) -> Option<String> {
        self.holdout.map(|(before, after)| {
            format!("holdout score: {before:.4} before, {after:.4} after training")
        })
    }
}

impl<S, O> Job<'_, S, O> {
    /// The architecture to train: `init`'s (read from its weights) or `arch`
    /// (default `v1`), with the training dropout.
    pub fn arch(&self) -> Result<ArchConfig> {
        let s = self.settings;
        let arch = match (self.init, &s.arch) {
            (Some(init), given) => {
                let inferred = ArchConfig::infer_from_weights(init, s.heads)?;
                if let Some(given) = given {
                    ensure!(
                        given.shape() == inferred.shape(),
                        "`arch` is {given}, but the weights of `init` ({}) are {inferred}: \
                         give `init`'s architecture, or no `arch` to take it from `init`",
                        init.display()
                    );
                }
                inferred
            }
            (None, Some(given)) => given.clone(),
            (None, None) => ArchConfig::preset(crate::model::Preset::V1),
        };
        Ok(arch.with_dropout(s.dropout))
    }

    /// The holdout documents joined into one blob, as the chain scores a submission.
    fn holdout_blob(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = self.holdout else {
            return Ok(None);
        };
        let docs = open_documents(path)?;
        let blob: Vec<u8> = (0..docs.len())
            .flat_map(|i| docs.get(i).iter().copied())
            .collect();
        ensure!(!blob.is_empty(), "the holdout data is empty");
        Ok(Some(blob))
    }
}

impl<S: ObjectiveSpec, O: Sync> BackendTask for Job<'_, S, O> {
    type Output = Result<Report>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Report> {
        let s = self.settings;
        let docs = open_documents(self.data)?;
        let holdout = self.holdout_blob()?;
        let score = |model: &SomaModel<B>, step: usize| -> Result<Option<serde_json::Value>> {
            let Some(blob) = &holdout else {
                return Ok(None);
            };
            (self.progress)("scoring the holdout data");
            let (loss, _) = score_model(&model.valid(), blob, s.seed, &device)?;
            Ok(Some(
                json!({"step": step, "holdout_score": f64::from(loss)}),
            ))
        };
        let arch = self.arch()?;
        ensure!(
            s.data.seq_len <= arch.max_seq_len,
            "seq_len {} exceeds the model's max_seq_len {}",
            s.data.seq_len,
            arch.max_seq_len
        );
        let index = SequenceIndex::new(docs.as_ref(), s.data.seq_len, false)?;
        let model = match self.init {
            Some(init) => SomaModel::<B>::load(init, &arch, &device)?,
            None => SomaModel::<B>::init(&arch, s.seed, &device),
        };
        let objective = self.spec.build::<B>(&arch, &device)?;
        let resumed = trainer::resume(
            s,
            self.scratch,
            model.clone(),
            trainer::optimizer(&s.optimizer),
            self.progress,
            &device,
        )?;
        let (mut model, mut optim, mut state) = match resumed {
            Some(resumed) => resumed,
            None => {
                let metrics = score(&model, 0)?.into_iter().collect();
                let state = State {
                    step: 0,
                    seed: s.seed,
                    metrics,
                };
                (model, trainer::optimizer(&s.optimizer), state)
            }
        };
        let started = Instant::now();
        let first_step = state.step;
        while state.step < s.steps {
            let (next, line) = trainer::step(
                s, &index, &objective, model, &mut optim, state.step, &device,
            );
            model = next;
            state.step += 1;
            let done = state.step - first_step;
            let eta = started.elapsed().as_secs_f64() / done as f64 * (s.steps - state.step) as f64;
            (self.progress)(&format!(
                "step {}/{} loss {:.4} {:.0} tok/s ETA {}",
                state.step,
                s.steps,
                line["loss"].as_f64().unwrap_or(f64::NAN),
                line["tokens_per_s"].as_f64().unwrap_or(0.0),
                humantime::format_duration(std::time::Duration::from_secs(eta as u64))
            ));
            state.metrics.push(line);
            if state.step < s.steps {
                let every = s.checkpoint_every;
                if every > 0 && state.step.is_multiple_of(every) {
                    checkpoint::save(self.scratch, &model, &optim, &state)?;
                }
                if self.halt_after == Some(state.step) {
                    return Ok(Report {
                        finished: false,
                        steps: s.steps,
                        holdout: None,
                    });
                }
            }
        }
        let mut metrics = state.metrics;
        let after = score(&model, s.steps)?;
        let holdout = after.map(|line| {
            let after = line["holdout_score"].as_f64().unwrap_or(f64::NAN);
            let before = metrics
                .iter()
                .find_map(|m| m.get("holdout_score")?.as_f64())
                .unwrap_or(after);
            metrics.push(line);
            (before, after)
        });
        let out = self.outputs;
        model.save(&out.model)?;
        let lines: String = metrics.iter().map(|m| format!("{m}\n")).collect();
        std::fs::write(&out.metrics, lines)
            .with_context(|| format!("writing {}", out.metrics.display()))?;
        plot_loss(&metrics, self.title, &self.spec.label(), &out.curve)?;
        Ok(Report {
            finished: true,
            steps: s.steps,
            holdout,
        })
    }
}
