//! What the training kinds (`train`, `distill`) share as stages: their inputs and
//! outputs, and running a [`Job`] from a stage's context.

use anyhow::{Context, Result};
use serde_json::{json, Value as Json};
use soma_flow_engine::{CachedOutputs, Curve, InputPort, Outcome, RunContext};

use super::job::{Job, ObjectiveSpec, Outputs};
use super::settings::Settings;
use crate::backend::run_on;
use crate::formats::competitors::single_model;

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

/// What `compare` shows of a training: the last step's loss, the holdout score before
/// and after, and the mean tokens/s, from the `metrics` output.
pub fn training_headline(outputs: &CachedOutputs<'_>) -> Result<Vec<(String, Json)>> {
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
pub fn training_curves(outputs: &CachedOutputs<'_>) -> Result<Vec<Curve>> {
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
pub fn run_training<S: ObjectiveSpec>(
    settings: &Settings,
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
