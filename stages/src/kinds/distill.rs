//! `distill`: trains a student towards frozen teachers' embeddings (and
//! optionally their softened logits) on top of the on-chain objective.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use burn::tensor::backend::AutodiffBackend;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::{InputPort, Move, Outcome, RunContext, WithError};

use crate::formats::competitors;
use crate::model::{ArchConfig, SomaModel};
use crate::training::job::ObjectiveSpec;
use crate::training::objective::Distillation;
use crate::training::settings::Settings;
use crate::training::stage::{run_training, Training, TrainingKind};

/// `objective:` how distillation weighs the teachers.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Distill")]
pub struct DistillSettings {
    /// Weight of the task loss; `1 − alpha` weighs the embedding MSE.
    #[serde_inline_default(0.5)]
    pub alpha: f64,
    /// One weight per teacher (normalised by their sum); default: equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_weights: Option<Vec<f64>>,
    /// Weight of the logit distillation term (KL with temperature); 0: off.
    #[serde(default)]
    pub kl_weight: f64,
    #[serde_inline_default(1.0)]
    pub temperature: f64,
}

pub type DistillWith = Settings<DistillSettings>;

impl Default for DistillSettings {
    fn default() -> Self {
        crate::training::settings::defaults()
    }
}

impl DistillSettings {
    pub fn check(&self) -> Result<(), WithError> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(WithError::at(&["alpha"], "`alpha` must be in [0, 1]"));
        }
        if !(self.kl_weight >= 0.0 && self.kl_weight.is_finite()) {
            return Err(WithError::at(
                &["kl_weight"],
                "`kl_weight` must be 0 or more",
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(WithError::at(
                &["temperature"],
                "`temperature` must be positive",
            ));
        }
        if let Some(w) = &self.teacher_weights {
            crate::merge::check_weights(w, w.len())
                .map_err(|e| WithError::at(&["teacher_weights"], e.to_string()))?;
        }
        Ok(())
    }
}

/// The teachers' weights files: each input is a safetensors file or a
/// fetch-competitors directory (`models.json`).
pub fn teacher_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let files = competitors::model_files(inputs)?;
    ensure!(!files.is_empty(), "no teachers to distill from");
    Ok(files)
}

/// Loads the teachers when the backend is known.
pub struct DistillSpec<'a> {
    pub teachers: Vec<PathBuf>,
    pub settings: &'a DistillSettings,
    pub heads: Option<usize>,
}

impl ObjectiveSpec for DistillSpec<'_> {
    type Built<B: AutodiffBackend> = Distillation<B::InnerBackend>;

    fn label(&self) -> String {
        let s = self.settings;
        let mut label = format!(
            "loss = {} task (CE + 0.02 SIGReg) + {} embedding MSE",
            s.alpha,
            1.0 - s.alpha
        );
        if s.kl_weight > 0.0 {
            label += &format!(" + {} KL", s.kl_weight);
        }
        label
    }

    fn build<B: AutodiffBackend>(
        &self,
        student: &ArchConfig,
        device: &B::Device,
    ) -> Result<Distillation<B::InnerBackend>> {
        let weights = match &self.settings.teacher_weights {
            Some(w) => w.clone(),
            None => vec![1.0; self.teachers.len()],
        };
        crate::merge::check_weights(&weights, self.teachers.len())
            .map_err(|e| anyhow::anyhow!("teacher_weights: {e}"))?;
        let sum: f64 = weights.iter().sum();
        let teachers = self
            .teachers
            .iter()
            .map(|path| load_teacher::<B::InnerBackend>(path, student, self.heads, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Distillation {
            teachers,
            weights: weights.iter().map(|w| w / sum).collect(),
            alpha: self.settings.alpha,
            kl_weight: self.settings.kl_weight,
            temperature: self.settings.temperature,
        })
    }
}

fn load_teacher<B: burn::tensor::backend::Backend>(
    path: &Path,
    student: &ArchConfig,
    heads: Option<usize>,
    device: &B::Device,
) -> Result<SomaModel<B>> {
    let teacher = SomaModel::<B>::load_inferred(path, heads, 0.0, device)?;
    let t = teacher.config();
    ensure!(
        t.embedding_dim == student.embedding_dim && t.vocab_size == student.vocab_size,
        "teacher {} has embedding_dim {} and vocab {}, the student {} and {}",
        path.display(),
        t.embedding_dim,
        t.vocab_size,
        student.embedding_dim,
        student.vocab_size
    );
    Ok(teacher)
}

pub struct Distill;

/// The `distill` kind.
pub const DISTILL: TrainingKind<Distill> = TrainingKind(Distill);

impl Training for Distill {
    const NAME: &'static str = "distill";
    // 2: the curve names the distillation objective and shows the held-out score.
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "Distils frozen teachers into a student: alpha task loss + (1 - alpha) embedding MSE";
    type Objective = DistillSettings;
    const MOVED: &'static [Move] = &[
        ("alpha", &["objective", "alpha"]),
        ("teacher_weights", &["objective", "teacher_weights"]),
        ("kl_weight", &["objective", "kl_weight"]),
        ("temperature", &["objective", "temperature"]),
    ];

    fn extra_inputs(&self) -> Vec<InputPort> {
        vec![InputPort::many("teachers")]
    }

    fn check(&self, objective: &DistillSettings) -> Result<(), WithError> {
        objective.check()
    }

    fn run(&self, settings: &DistillWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let spec = DistillSpec {
            teachers: teacher_files(ctx.input_list("teachers"))?,
            settings: &settings.objective,
            heads: settings.heads,
        };
        run_training(settings, &spec, "distill: loss per step", ctx)
    }
}
