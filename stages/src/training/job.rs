//! One training run as a stage performs it: resolve the architecture, start
//! from a seeded init or `init`'s weights, score the holdout before and after,
//! train, and write the model, metrics and loss curve.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;

use super::curve::plot_loss;
use super::documents::{open_documents, Documents};
use super::objective::{Objective, TaskLoss};
use super::settings::Settings;
use super::trainer::Trainer;
use crate::backend::{run_on, BackendChoice, BackendTask};
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

pub struct Job<'a> {
    pub settings: &'a Settings,
    pub data: &'a Path,
    pub init: Option<&'a Path>,
    pub holdout: Option<&'a Path>,
    pub scratch: &'a Path,
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Test hook: stop after this many steps as if killed (see [`Trainer`]).
    pub halt_after: Option<usize>,
    /// Title of the loss curve.
    pub title: &'a str,
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

impl Job<'_> {
    /// The architecture to train: `init`'s (read from its weights) or `arch`
    /// (default `v1`), with the training dropout.
    pub fn arch(&self) -> Result<ArchConfig> {
        let s = self.settings;
        let arch = match (self.init, &s.arch) {
            (Some(init), given) => {
                let inferred = ArchConfig::infer_from_weights(init, s.heads)?;
                if let Some(given) = given {
                    let shape = |c: &ArchConfig| {
                        (
                            c.embedding_dim,
                            c.num_layers,
                            c.pwff_hidden_dim,
                            c.vocab_size,
                        )
                    };
                    ensure!(
                        shape(given) == shape(&inferred),
                        "`arch` does not match the weights of `init` ({})",
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

    pub fn run<S: ObjectiveSpec>(
        &self,
        spec: &S,
        backend: BackendChoice,
        outputs: &Outputs,
    ) -> Result<Report> {
        let docs = open_documents(self.data)?;
        let holdout = match self.holdout {
            Some(path) => Some(joined(open_documents(path)?.as_ref())),
            None => None,
        };
        if let Some(blob) = &holdout {
            ensure!(!blob.is_empty(), "the holdout data is empty");
        }
        run_on(
            backend,
            Task {
                job: self,
                spec,
                docs: docs.as_ref(),
                holdout: holdout.as_deref(),
                outputs,
            },
        )?
    }
}

fn joined(docs: &dyn Documents) -> Vec<u8> {
    (0..docs.len())
        .flat_map(|i| docs.get(i).iter().copied())
        .collect()
}

struct Task<'a, S> {
    job: &'a Job<'a>,
    spec: &'a S,
    docs: &'a dyn Documents,
    holdout: Option<&'a [u8]>,
    outputs: &'a Outputs,
}

impl<S: ObjectiveSpec> BackendTask for Task<'_, S> {
    type Output = Result<Report>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Report> {
        let job = self.job;
        let s = job.settings;
        let arch = job.arch()?;
        let model = match job.init {
            Some(init) => SomaModel::<B>::load(init, &arch, &device)?,
            None => SomaModel::<B>::init(&arch, s.seed, &device),
        };
        let objective = self.spec.build::<B>(&arch, &device)?;
        let score = |model: &SomaModel<B>| -> Result<Option<f64>> {
            self.holdout
                .map(|blob| {
                    (job.progress)("scoring the holdout data");
                    let (loss, _) = score_model(&model.valid(), blob, s.seed, &device)?;
                    Ok(f64::from(loss))
                })
                .transpose()
        };
        let trainer = Trainer {
            settings: s,
            docs: self.docs,
            scratch: job.scratch,
            progress: job.progress,
            halt_after: job.halt_after,
        };
        let trained = trainer.run(model, &objective, &device, |m| {
            Ok(score(m)?
                .map(|v| vec![json!({"step": 0, "holdout_score": v})])
                .unwrap_or_default())
        })?;
        let mut metrics = trained.metrics;
        let mut report = Report {
            finished: trained.finished,
            steps: s.steps,
            holdout: None,
        };
        if trained.finished {
            if let Some(after) = score(&trained.model)? {
                metrics.push(json!({"step": s.steps, "holdout_score": after}));
                let before = metrics
                    .iter()
                    .find_map(|m| m.get("holdout_score")?.as_f64())
                    .unwrap_or(after);
                report.holdout = Some((before, after));
            }
            trained.model.save(&self.outputs.model)?;
            let lines: String = metrics.iter().map(|m| format!("{m}\n")).collect();
            std::fs::write(&self.outputs.metrics, lines)
                .with_context(|| format!("writing {}", self.outputs.metrics.display()))?;
            plot_loss(&metrics, job.title, &self.spec.label(), &self.outputs.curve)?;
        }
        Ok(report)
    }
}
