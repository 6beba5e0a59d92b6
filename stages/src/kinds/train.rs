//! `train`: trains a model (fresh or from `init`) on a dataset with the
//! on-chain objective, resuming from its last checkpoint after a kill.

use std::collections::BTreeMap;

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::{
    CachedOutputs, Curve, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::training::objective::TaskLoss;
use crate::training::settings::{reject_unknown, Settings};
use crate::training::stage::{
    run_training, training_curves, training_headline, training_inputs, training_irreproducible,
    training_outputs,
};

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

impl StageKind for TrainKind {
    type With = TrainWith;
    const NAME: &'static str = "train";
    // 2: the curve shows the held-out score.
    const VERSION: u32 = 2;
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

    fn headline(
        &self,
        _: &TrainWith,
        outputs: &CachedOutputs<'_>,
    ) -> Result<Vec<(String, serde_json::Value)>> {
        training_headline(outputs)
    }

    fn curves(&self, _: &TrainWith, outputs: &CachedOutputs<'_>) -> Result<Vec<Curve>> {
        training_curves(outputs)
    }

    fn requirements(&self, _: &TrainWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn run(&self, with: &TrainWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        run_training(&with.settings, &TaskLoss, "train: loss per step", ctx)
    }
}
