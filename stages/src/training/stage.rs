//! One implementation of the training kinds (`train`, `distill`): [`TrainingKind`] is
//! the stage kind, and a [`Training`] says only what sets one apart (its name, its
//! objective's settings, extra inputs, its objective).

use std::fmt::Debug;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value as Json};
use soma_flow_engine::{
    CachedOutputs, Curve, InputPort, Inputs, Move, Outcome, Requirements, RunContext, StageKind,
    WithError,
};

use super::job::{Job, ObjectiveSpec, Outputs};
use super::settings::{self, Settings};

/// What sets a training kind apart.
pub trait Training: Send + Sync + 'static {
    const NAME: &'static str;
    const VERSION: u32;
    const ABOUT: &'static str;
    /// Its `objective:` settings.
    type Objective: DeserializeOwned
        + Serialize
        + JsonSchema
        + Default
        + Clone
        + Debug
        + Send
        + Sync
        + 'static;
    /// Where its own flat keys of the last release moved (beside the shared ones).
    const MOVED: &'static [Move] = &[];
    /// Inputs beside `data`, `init` and `holdout`.
    fn extra_inputs(&self) -> Vec<InputPort> {
        Vec::new()
    }
    fn check(&self, _objective: &Self::Objective) -> Result<(), WithError> {
        Ok(())
    }
    /// Trains, with [`run_training`] and its objective.
    fn run(&self, settings: &Settings<Self::Objective>, ctx: &RunContext<'_>) -> Result<Outcome>;
}

/// The stage kind of a [`Training`].
pub struct TrainingKind<T>(pub T);

impl<T: Training> StageKind for TrainingKind<T> {
    type With = Settings<T::Objective>;
    const NAME: &'static str = T::NAME;
    const VERSION: u32 = T::VERSION;
    const ABOUT: &'static str = T::ABOUT;

    fn inputs(&self, _: &Self::With) -> Inputs {
        Inputs::Fixed([training_inputs(), self.0.extra_inputs()].concat())
    }

    fn outputs(&self, _: &Self::With) -> Vec<String> {
        vec!["model".into(), "metrics".into(), "curve".into()]
    }

    fn moved(&self) -> Vec<Move> {
        [settings::MOVED, T::MOVED].concat()
    }

    fn check(&self, with: &Self::With) -> Result<(), WithError> {
        with.check()?;
        self.0
            .check(&with.objective)
            .map_err(|e| e.within("objective"))
    }

    /// The metrics hold wall-clock speed (tokens/s); the model and curve do not.
    fn irreproducible(&self, _: &Self::With, output: &str) -> Option<&'static str> {
        (output == "metrics").then_some("holds wall-clock timings (tokens/s)")
    }

    fn headline(&self, _: &Self::With, outputs: &CachedOutputs<'_>) -> Result<Vec<(String, Json)>> {
        training_headline(outputs)
    }

    fn curves(&self, _: &Self::With, outputs: &CachedOutputs<'_>) -> Result<Vec<Curve>> {
        training_curves(outputs)
    }

    fn requirements(&self, _: &Self::With) -> Requirements {
        Requirements::backend_in(crate::kinds::MODEL_RESOURCE)
    }

    fn run(&self, with: &Self::With, ctx: &RunContext<'_>) -> Result<Outcome> {
        self.0.run(with, ctx)
    }
}
use crate::backend::run_on;
use crate::formats::competitors::single_model;

/// The inputs every training kind takes.
fn training_inputs() -> Vec<InputPort> {
    vec![
        InputPort::required("data"),
        InputPort::optional("init"),
        InputPort::optional("holdout"),
    ]
}

/// What `compare` shows of a training: the last step's loss, the holdout score before
/// and after, and the mean tokens/s, from the `metrics` output.
fn training_headline(outputs: &CachedOutputs<'_>) -> Result<Vec<(String, Json)>> {
    let lines = metric_lines(outputs)?;
    let values = |key: &str| -> Vec<f64> { lines.iter().filter_map(|l| l[key].as_f64()).collect() };
    let (losses, holdout, speeds) = (
        values("loss"),
        values("holdout_score"),
        values("tokens_per_s"),
    );
    let mut out = Vec::new();
    if let Some(last) = losses.last() {
        out.push(("final loss".to_string(), json!(last)));
    }
    if let (Some(before), Some(after)) = (holdout.first(), holdout.last()) {
        out.push(("holdout before".to_string(), json!(before)));
        out.push(("holdout after".to_string(), json!(after)));
    }
    if !speeds.is_empty() {
        let mean = speeds.iter().sum::<f64>() / speeds.len() as f64;
        out.push(("tokens/s".to_string(), json!(mean.round() as u64)));
    }
    Ok(out)
}

/// What `report --compare` draws of a training: the loss (the objective) and the
/// holdout score per step.
fn training_curves(outputs: &CachedOutputs<'_>) -> Result<Vec<Curve>> {
    let lines = metric_lines(outputs)?;
    let series = |key: &str| -> Vec<(f64, f64)> {
        lines
            .iter()
            .filter_map(|l| Some((l["step"].as_f64()?, l[key].as_f64()?)))
            .collect()
    };
    Ok(["loss", "holdout_score"]
        .into_iter()
        .map(|key| (key.replace('_', " "), series(key)))
        .filter(|(_, points)| !points.is_empty())
        .collect())
}

/// The `metrics` output: one JSON object per line.
fn metric_lines(outputs: &CachedOutputs<'_>) -> Result<Vec<Json>> {
    let path = outputs.output("metrics")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not JSON Lines", path.display()))
}

/// Runs a training job for a stage and leaves its notes.
pub fn run_training<S: ObjectiveSpec, O: Sync>(
    settings: &Settings<O>,
    spec: &S,
    title: &str,
    ctx: &RunContext<'_>,
) -> Result<Outcome> {
    let init = ctx.input("init").map(single_model).transpose()?.flatten();
    match (&init, ctx.input("init")) {
        (None, Some(dir)) => ctx.note(format!(
            "`init` ({}) holds no model: trained from a seeded initialisation",
            dir.display()
        )),
        (Some(file), _) => (ctx.progress)(&format!("starting from {}", file.display())),
        (None, None) => {}
    }
    let outputs = Outputs {
        model: ctx.output("model"),
        metrics: ctx.output("metrics"),
        curve: ctx.output("curve"),
    };
    let job = Job {
        settings,
        spec,
        data: ctx.input("data").expect("required input"),
        init: init.as_deref(),
        holdout: ctx.input("holdout"),
        scratch: ctx.scratch,
        progress: ctx.progress,
        halt_after: None,
        title,
        outputs: &outputs,
    };
    let report = run_on(crate::backend::resolve(ctx.backend)?, job)??;
    ctx.note(format!("trained {} steps", report.steps));
    if let Some(note) = report.note() {
        ctx.note(note);
    }
    Ok(Outcome::Done)
}
