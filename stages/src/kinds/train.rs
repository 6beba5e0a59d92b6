//! `train`: trains a model (fresh or from `init`) on a dataset with the
//! on-chain objective, resuming from its last checkpoint after a kill.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::{InputPort, Inputs, Outcome, RunContext, StageKind, WithError};

use super::score::competitor_files;
use crate::training::job::{Job, ObjectiveSpec, Outputs};
use crate::training::objective::TaskLoss;
use crate::training::settings::{reject_unknown, Settings};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TrainWith {
    #[serde(flatten)]
    pub settings: Settings,
    /// Keys no part claimed; `check` rejects them.
    #[serde(flatten, skip_serializing)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

pub struct TrainKind;

/// The inputs `train` and `distill` share.
pub fn training_inputs() -> Vec<InputPort> {
    vec![
        InputPort::required("data"),
        InputPort::optional("init"),
        InputPort::optional("holdout"),
    ]
}

/// The outputs `train` and `distill` share.
pub fn training_outputs() -> Vec<String> {
    vec!["model".into(), "metrics".into(), "curve".into()]
}

/// The metrics hold wall-clock speed (tokens/s); the model and curve do not.
pub fn training_irreproducible(output: &str) -> Option<&'static str> {
    (output == "metrics").then_some("holds wall-clock timings (tokens/s)")
}

/// The weights to start from: a safetensors file, or a fetch-competitors directory
/// holding one model or none (a continuous job's first epoch has no earlier model).
fn init_file(input: &Path) -> Result<Option<PathBuf>> {
    if !input.is_dir() {
        return Ok(Some(input.to_owned()));
    }
    let mut models = competitor_files(input)?;
    anyhow::ensure!(
        models.len() <= 1,
        "`init` ({}) holds {} models; give one (e.g. fetch-competitors with `ids: [N]` or `own: true`)",
        input.display(),
        models.len()
    );
    Ok(models.pop().map(|(_, path)| path))
}

/// Runs a training job for a stage and leaves its notes.
pub fn run_training<S: ObjectiveSpec>(
    settings: &Settings,
    spec: &S,
    title: &str,
    ctx: &RunContext<'_>,
) -> Result<Outcome> {
    let init = ctx.input("init").map(init_file).transpose()?.flatten();
    match (&init, ctx.input("init")) {
        (None, Some(dir)) => ctx.note(format!(
            "`init` ({}) holds no model: trained from a seeded initialisation",
            dir.display()
        )),
        (Some(file), _) => (ctx.progress)(&format!("starting from {}", file.display())),
        (None, None) => {}
    }
    let job = Job {
        settings,
        data: ctx.input("data").expect("required input"),
        init: init.as_deref(),
        holdout: ctx.input("holdout"),
        scratch: ctx.scratch,
        progress: ctx.progress,
        halt_after: None,
        title,
    };
    let outputs = Outputs {
        model: ctx.output("model"),
        metrics: ctx.output("metrics"),
        curve: ctx.output("curve"),
    };
    let report = job.run(spec, super::backend(ctx.backend)?, &outputs)?;
    ctx.note(format!("trained {} steps", report.steps));
    if let Some(note) = report.note() {
        ctx.note(note);
    }
    Ok(Outcome::Done)
}

impl StageKind for TrainKind {
    type With = TrainWith;
    const NAME: &'static str = "train";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Trains a model on a dataset with CE + 0.02 SIGReg (Adam, accumulation, checkpoints)";

    fn inputs(&self, _: &TrainWith) -> Inputs {
        Inputs::Fixed(training_inputs())
    }

    fn outputs(&self, _: &TrainWith) -> Vec<String> {
        training_outputs()
    }

    fn check(&self, with: &TrainWith) -> Result<(), WithError> {
        reject_unknown(&with.unknown)?;
        with.settings.check()
    }

    fn irreproducible(&self, _: &TrainWith, output: &str) -> Option<&'static str> {
        training_irreproducible(output)
    }

    fn uses_backend(&self, _: &TrainWith) -> bool {
        true
    }

    fn resource(&self, _: &TrainWith) -> Option<String> {
        Some(super::MODEL_RESOURCE.into())
    }

    fn run(&self, with: &TrainWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        run_training(&with.settings, &TaskLoss, "train: loss per step", ctx)
    }
}
